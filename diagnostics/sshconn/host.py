"""One SSH connection to one host: where it goes (an endpoint) and running an argv on it
within the target's limits."""

from __future__ import annotations

import select
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runner.errors import TemporaryError

from .commands import CommandResult, Limits, command_line


@dataclass(frozen=True)
class Endpoint:
    host: str  # as the inventory names it
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]

    @property
    def known_hosts_name(self) -> str:
        """How known_hosts (and ssh-keyscan) name this host."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


class Host:
    """One SSH connection to one host: runs argv lists within the target's limits."""

    def __init__(self, client: Any, endpoint: Endpoint, limits: Limits) -> None:
        self.client, self.endpoint, self.limits = client, endpoint, limits
        self.name = endpoint.host

    def run(self, argv: Sequence[str]) -> CommandResult:
        limits = self.limits
        line = command_line(argv, limits.command_timeout)
        started = time.monotonic()
        # A second more than the remote `timeout`: it normally stops the command first, and
        # its exit status (124, 137) comes back.
        deadline = started + limits.command_timeout + 1.0
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise TemporaryError(f"{self.name}: the connection is closed")
        channel = transport.open_session(timeout=limits.connect_timeout)
        try:
            channel.exec_command(line)
            channel.shutdown_write()  # no stdin: a command waiting for input gets EOF
            out, err, truncated, stopped = _collect(channel, deadline, limits.max_output)
            code = channel.recv_exit_status() if channel.exit_status_ready() else None
        finally:
            channel.close()
        elapsed = time.monotonic() - started
        if code is None and not stopped:
            raise TemporaryError(f"{self.name}: the connection closed before the command ended")
        timed_out = stopped or (code in (124, 137) and elapsed >= limits.command_timeout)
        return CommandResult(shlex.join(argv), None if stopped else code,
                             out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
                             truncated, timed_out, round(elapsed * 1000, 1))


def _collect(channel: Any, deadline: float, limit: int) -> tuple[bytes, bytes, bool, bool]:
    """(stdout, stderr, cut, stopped): read until the command exits or the deadline passes.
    Past `limit`, a stream is still read (so the command can finish) but no longer kept."""
    out, err = bytearray(), bytearray()
    truncated = False
    while True:
        busy = False
        for ready, receive, kept in ((channel.recv_ready, channel.recv, out),
                                     (channel.recv_stderr_ready, channel.recv_stderr, err)):
            if ready():
                data = receive(65536)
                busy = True
                room = limit - len(kept)
                truncated |= len(data) > room
                kept += data[:max(room, 0)]
        if busy:
            continue
        if channel.exit_status_ready() or channel.closed:
            if channel.recv_ready() or channel.recv_stderr_ready():
                continue  # output that came just before the exit status
            return bytes(out), bytes(err), truncated, False
        if time.monotonic() >= deadline:
            return bytes(out), bytes(err), truncated, True
        # Wakes on stdout data or close; stderr is polled at this pace.
        select.select([channel], [], [], 0.05)
