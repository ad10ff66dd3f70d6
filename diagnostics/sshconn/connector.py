"""The SSH connector: reads a target's ssh config and key once, then hands a probe its
fixed commands and a remedy its argv, each over verified connections; and says what a target
resolves to (user@hostname:port and host key, through its jump hosts) for approvals."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runner.context import StepContext
from runner.errors import PermanentError
from runner.registry import Target

from ..sshconfig import load as load_ssh_config
from .failures import first_line
from .fanout import SshAction, SshProbe
from .hostkeys import read_known_hosts
from .hosts import Hosts
from .keys import private_key
from .settings import SshSettings


class SshConnector:
    def prepare(self) -> None:
        from runner.extras import client_of

        with client_of("ssh", "the ssh backend"):
            import paramiko  # noqa: F401 - imported before the steps' clocks start

    def extras(self, target: Target) -> list[str]:
        return ["ssh"]  # paramiko (runner.extras)

    def _open(self, target: Target, timeout: float) -> tuple[Any, Any]:
        import paramiko

        settings = target.settings
        assert isinstance(settings, SshSettings)
        config_path = Path(settings.ssh_config).expanduser()
        try:
            # refused before paramiko's lookup could run `Match exec`; Includes in place
            config = load_ssh_config(target.name, config_path) if config_path.is_file() \
                else None
        except (OSError, paramiko.SSHException) as exc:
            raise PermanentError(f"{target.name}: cannot read {config_path}: "
                                 f"{first_line(exc)}") from None
        return private_key(settings, target.name), config

    def identity(self, target: Target, timeout: float) -> dict[str, str]:
        """Each host as it resolves (user@hostname:port, through its jump hosts) and the
        host key known_hosts holds for it: the only key a connection accepts, so an approval
        binds to the machine, and a host key swapped in known_hosts voids it; a host known
        only through a @cert-authority binds to that CA."""
        hosts = Hosts(target, timeout, None, self._open(target, timeout)[1])
        file = read_known_hosts(target.name, Path(hosts.settings.known_hosts).expanduser())
        known = file.host_keys()
        identity: dict[str, str] = {}
        for host in hosts.settings.all_hosts:
            hops = []
            for hop in hosts.route(host):
                keys = known.lookup(hop.known_hosts_name) or {}
                # no plain key: the CAs whose certificate it must present
                prints = ",".join(sorted(f"{kind} {key.fingerprint}"
                                         for kind, key in keys.items())) or ",".join(
                    sorted(f"cert-authority {a.key.get_name()} {a.key.fingerprint}"
                           for a in file.authorities_for(hop.known_hosts_name))) \
                    or "no known key"
                hops.append(f"{hop.user}@{hop.hostname}:{hop.port} [{prints}]")
            identity[f"host {host}"] = " via ".join(reversed(hops))
        return identity

    @contextmanager
    def probe(self, target: Target, ctx: StepContext) -> Iterator[SshProbe]:
        handle = SshProbe(target, ctx.timeout, *self._open(target, ctx.timeout))
        try:
            yield handle
        finally:
            handle.cancel()

    @contextmanager
    def action(self, target: Target, ctx: StepContext) -> Iterator[SshAction]:
        handle = SshAction(target, ctx.timeout, *self._open(target, ctx.timeout))
        try:
            yield handle
        finally:
            handle.cancel()
