"""Host keys: known_hosts read (never written), and what runbook says when a host presents a
key known_hosts does not hold, or one other than the key it records."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runner.errors import PermanentError

from ..knownhosts import KnownHosts
from ..knownhosts import load as load_known_hosts
from .host import Endpoint


def read_known_hosts(target: str, path: Path) -> KnownHosts:
    try:
        return load_known_hosts(path)
    except OSError as exc:
        raise PermanentError(f"{target}: cannot read known_hosts {path}: "
                             f"{exc.strerror or exc}") from None


def refuse_unknown_key(client: Any, known: Any, endpoint: Endpoint, known_hosts: Path,
                        skipped: Sequence[str] = ()) -> None:
    """After a failed connect: when RejectPolicy refused a host missing from known_hosts,
    say which key it presented and how to record it once checked."""
    import paramiko

    try:
        key = client.get_transport().get_remote_server_key()
    except (AttributeError, paramiko.SSHException):  # it failed before the key exchange
        return
    if known.lookup(endpoint.known_hosts_name) is not None:
        return
    raise PermanentError(
        f"{endpoint.host}: unknown host key: {endpoint.hostname} port {endpoint.port} presents "
        f"{key.get_name()} {key.fingerprint}, and {known_hosts} has no key for "
        f"{endpoint.known_hosts_name}; refusing to connect. Check that fingerprint with "
        f"the host's owner, then add it: ssh-keyscan -p {endpoint.port} {endpoint.hostname} "
        f">> {known_hosts}" + (f" ({len(skipped)} line(s) of {known_hosts} could not be read: "
                               f"{'; '.join(skipped[:3])})" if skipped else ""))


def changed_key(endpoint: Endpoint, known_hosts: Path, got: Any, expected: Any) -> str:
    name = endpoint.known_hosts_name
    return (f"{endpoint.host}: WARNING: HOST KEY CHANGED: {name} presents {got.get_name()} "
            f"{got.fingerprint}, but {known_hosts} records {expected.get_name()} "
            f"{expected.fingerprint}. Someone may be intercepting this connection "
            "(man-in-the-middle), or the host was reinstalled; refusing to connect. Only once "
            "the new key is confirmed with the host's owner: "
            f"ssh-keygen -R '{name}' -f {known_hosts}, then "
            f"ssh-keyscan -p {endpoint.port} {endpoint.hostname} >> {known_hosts}")
