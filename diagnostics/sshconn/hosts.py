"""A target's hosts, connected to on demand: the route to each through its jump hosts
(ProxyJump, as ssh resolves it from the inventory and ~/.ssh/config), and a connection whose
every hop's host key is verified. `cancel()` closes every connection and starts none."""

from __future__ import annotations

import getpass
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runner.errors import PermanentError, TemporaryError
from runner.registry import Target

from ..knownhosts import CertificateOrReject, transport_factory
from .commands import Limits
from .failures import first_line, translated_errors
from .host import Endpoint, Host
from .hostkeys import read_known_hosts, refuse_unknown_key
from .settings import SshSettings, parse_jump

MAX_JUMPS = 8  # hops before a ProxyJump chain is taken for a loop


class Hosts:
    """A target's hosts, connected to on demand by the fan-out; `cancel()` (from the
    engine's thread, when the step's time is up) closes every connection and starts none."""

    def __init__(self, target: Target, timeout: float, pkey: Any, ssh_config: Any) -> None:
        settings = target.settings
        assert isinstance(settings, SshSettings)
        self.target, self.settings = target.name, settings
        self._pkey, self._config = pkey, ssh_config  # loaded once for all the hosts
        self.limits = Limits(min(settings.connect_timeout, timeout),
                             min(settings.command_timeout, timeout), settings.max_output)
        self._cancelled = threading.Event()
        self._open: set[Any] = set()
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()
        with self._lock:
            clients = list(self._open)
        for client in clients:
            client.close()

    def route(self, host: str) -> list[Endpoint]:
        """The hops to `host`: its jump hosts in order (ProxyJump), then the host itself.
        The inventory's port and user are the host's; jump hosts take theirs from
        ~/.ssh/config, as ssh does, and so does a jump host's own ProxyJump."""
        settings = self.settings
        return self._route(host, settings.port, settings.user, settings.jump, depth=0)

    def _route(self, host: str, port: int | None, user: str | None, jump: str | None,
               depth: int) -> list[Endpoint]:
        if depth > MAX_JUMPS:
            raise PermanentError(f"{self.target}: more than {MAX_JUMPS} jump hosts on the "
                                 f"way to {host}: is ProxyJump circular in the ssh config?")
        seen = self._config.lookup(host) if self._config is not None else {}
        if seen.get("proxycommand", "none").lower() != "none":
            raise PermanentError(f"{self.target}: the ssh config gives {host} a ProxyCommand, "
                                 "which runbook does not run; use ProxyJump (or `jump:`)")
        endpoint = Endpoint(host if depth == 0 else f"jump host {host}",
                            seen.get("hostname", host), port or int(seen.get("port", 22)),
                            user or seen.get("user") or getpass.getuser(),
                            tuple(seen.get("identityfile", ())))
        jump = jump or seen.get("proxyjump")
        hops: list[Endpoint] = []
        if jump and jump.lower() != "none":
            for spec in jump.split(","):
                try:
                    jump_user, jump_host, jump_port = parse_jump(spec)
                except ValueError as exc:  # from the ssh config: the inventory's is checked
                    raise PermanentError(f"{self.target}: {exc}") from None
                hops += self._route(jump_host, jump_port, jump_user, None, depth + 1)
        return [*hops, endpoint]

    @contextmanager
    def connect(self, host: str) -> Iterator[Host]:
        """A verified connection to `host`, through its jump hosts: each hop's host key is
        checked against known_hosts, and the next hop is reached over a direct-tcpip channel
        of the one before (what ssh -J does)."""
        route = self.route(host)
        known_hosts = Path(self.settings.known_hosts).expanduser()
        clients: list[Any] = []
        try:
            sock = None
            for hop, following in zip(route, [*route[1:], None], strict=True):
                client = self._client(hop, known_hosts, sock)
                clients.append(client)
                if following is not None:
                    sock = channel_to(client, hop, following, self.limits.connect_timeout)
            yield Host(clients[-1], route[-1], self.limits)
        finally:
            for client in reversed(clients):
                with self._lock:
                    self._open.discard(client)
                client.close()

    def _client(self, endpoint: Endpoint, known_hosts: Path, sock: Any) -> Any:
        """An SSHClient connected to `endpoint` (over `sock`, a channel of the hop before,
        when given), its host key verified; registered for cancel()."""
        import paramiko

        client = paramiko.SSHClient()
        file = read_known_hosts(self.target, known_hosts)
        known = client.get_host_keys()  # filled here, never saved
        for names, key in file.entries:
            for name in names:
                known.add(name, key.get_name(), key)
        # never auto-accept: a host certificate from a @cert-authority, or a refusal
        client.set_missing_host_key_policy(
            CertificateOrReject(file, endpoint.host, endpoint.hostname))
        with self._lock:
            if self._cancelled.is_set():
                raise TemporaryError(f"{endpoint.host}: cancelled")
            self._open.add(client)
        timeout = self.limits.connect_timeout
        try:
            with translated_errors(endpoint, known_hosts, timeout, self._key_source(endpoint)):
                try:
                    client.connect(
                        endpoint.hostname, port=endpoint.port, username=endpoint.user,
                        pkey=self._pkey, key_filename=list(endpoint.identity_files) or None,
                        passphrase=self._passphrase(), allow_agent=self._pkey is None,
                        look_for_keys=False, timeout=timeout, banner_timeout=timeout,
                        auth_timeout=timeout, channel_timeout=timeout, sock=sock,
                        transport_factory=transport_factory(file, endpoint.known_hosts_name))
                except paramiko.SSHException:
                    refuse_unknown_key(client, known, endpoint, known_hosts, file.skipped)
                    raise
        except BaseException:
            with self._lock:
                self._open.discard(client)
            client.close()
            raise
        return client

    def _key_source(self, endpoint: Endpoint) -> str:
        settings = self.settings
        if settings.key_file or settings.key_env:
            return f"key_file {settings.key_file}" if settings.key_file else \
                f"the key in {settings.key_env}"
        return f"IdentityFile {', '.join(endpoint.identity_files)}" \
            if endpoint.identity_files else "the SSH agent's keys"

    def _passphrase(self) -> str | None:
        name = self.settings.passphrase_env
        return os.environ.get(name) if name else None


def channel_to(client: Any, hop: Endpoint, following: Endpoint, timeout: float) -> Any:
    """A direct-tcpip channel from `hop` to the next hop's SSH port."""
    import paramiko

    try:
        return client.get_transport().open_channel(
            "direct-tcpip", (following.hostname, following.port), ("127.0.0.1", 0),
            timeout=timeout)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise TemporaryError(f"{hop.host} ({hop.hostname}) cannot reach {following.hostname} "
                             f"port {following.port}: {first_line(exc)}") from None
