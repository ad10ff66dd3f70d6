"""Reaching hosts over SSH (paramiko): inventory settings, verified connections, the
fixed commands a probe may run, fan-out over a group, and the connector.

See `diagnostics.ssh` for what is enforced and the step kinds built on this.
"""

from __future__ import annotations

import errno
import getpass
import io
import os
import re
import select
import shlex
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from runner.errors import PermanentError, StepError, TemporaryError
from runner.model import Duration
from runner.redact import SECRETS
from runner.registry import Target

from .knownhosts import CertificateOrReject, KnownHosts, transport_factory
from .knownhosts import load as load_known_hosts
from .sshconfig import load as load_ssh_config

KIND = "ssh"
KILL_GRACE = 2.0  # seconds between `timeout`'s TERM and its KILL
MAX_JUMPS = 8  # hops before a ProxyJump chain is taken for a loop


# Validation shared by settings and params


def _argument(value: str) -> str:
    """A path or name that becomes one argv element: never an option, never two lines."""
    if not value or value.startswith("-") or "\0" in value or "\n" in value:
        raise ValueError(f"{value!r} must be non-empty, one line, and not start with '-'")
    return value


Argument = Annotated[str, AfterValidator(_argument)]


# systemd units and process names (pgrep -x): letters, digits and @ . _ : + \ -
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.@:+\\][A-Za-z0-9_.@:+\\-]*$", max_length=255)]


_JUMP = re.compile(r"\[(?P<v6>[^]]+)\](?::(?P<p6>\d+))?|(?P<host>[^:\[\]\s]+)(?::(?P<port>\d+))?")


def parse_jump(spec: str) -> tuple[str | None, str, int | None]:
    """ProxyJump's `[user@]host[:port]` (an IPv6 address in brackets) as (user, host, port);
    ValueError when it is not one."""
    user, at, rest = spec.strip().rpartition("@")
    match = _JUMP.fullmatch(rest)
    if not match or rest.startswith("-") or (at and not user):
        raise ValueError(f"jump host {spec!r}: expected [user@]host[:port]")
    port = match["p6"] or match["port"]
    return user or None, match["v6"] or match["host"], int(port) if port else None


def _jump_hosts(value: str) -> str:
    if value.lower() != "none":
        for spec in value.split(","):
            parse_jump(spec)
    return value


# Bastions as ProxyJump lists them: `[user@]host[:port]`, comma-separated, or `none`.
JumpHosts = Annotated[str, AfterValidator(_jump_hosts)]


def parse_max_errors(value: Any) -> int | str:
    """A count (2, "2") or a percent of the hosts ("25%"); returns 2 or "25%"."""
    match = re.fullmatch(r"(\d+)(%?)", str(value).strip())
    if isinstance(value, bool) or not match or (match[2] and int(match[1]) > 100):
        raise ValueError('max_errors is a count (2) or a percent of the hosts ("25%")')
    return f"{int(match[1])}%" if match[2] else int(match[1])


def error_budget(max_errors: int | str, hosts: int) -> int:
    """How many hosts may fail before the rest are not started; a percent rounds down, as
    SSM's does (10% of 50 hosts: the sixth failure stops it)."""
    if isinstance(max_errors, str):
        return hosts * int(max_errors.rstrip("%")) // 100
    return max_errors


MaxErrors = Annotated[int | str, BeforeValidator(parse_max_errors)]


# Inventory


class SshSettings(BaseModel):
    """One host or a group; keys only from a file, an env var or the agent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: Argument | None = Field(None, description="a host name, address or ~/.ssh/config alias")
    hosts: list[Argument] | None = Field(None, min_length=1, description="a group of hosts")
    port: int | None = Field(None, ge=1, le=65535, description="default: ~/.ssh/config, else 22")
    user: str | None = Field(None, description="default: ~/.ssh/config's User, else yours")
    key_file: str | None = Field(None, description="path of the private key")
    key_env: str | None = Field(None, description="env var holding the private key text")
    passphrase_env: str | None = Field(None, description="env var holding the key's passphrase")
    known_hosts: str = "~/.ssh/known_hosts"
    ssh_config: str = Field("~/.ssh/config",
                            description="for aliases, port, user, IdentityFile, ProxyJump")
    jump: JumpHosts | None = Field(
        None, description="bastions to go through, as ssh's ProxyJump: [user@]host[:port], "
                    "comma-separated; default: ~/.ssh/config's ProxyJump; `none` for none")
    connect_timeout: Duration = 5.0
    command_timeout: Duration = Field(20.0, le=86400)
    max_output: int = Field(1 << 20, ge=1, description="bytes kept of stdout and of stderr")

    @field_validator("hosts")
    @classmethod
    def _distinct(cls, hosts: list[str] | None) -> list[str] | None:
        if hosts and len(set(hosts)) != len(hosts):
            raise ValueError("a host is listed twice")
        return hosts

    @model_validator(mode="after")
    def _one_of_each(self) -> SshSettings:
        if (self.host is None) == (self.hosts is None):
            raise ValueError("give either `host` or `hosts`")
        if self.key_file and self.key_env:
            raise ValueError("give either `key_file` or `key_env`, not both")
        return self

    @property
    def all_hosts(self) -> list[str]:
        return [self.host] if self.host else list(self.hosts or [])


# Commands


@dataclass(frozen=True)
class CommandResult:
    command: str  # the argv as shlex.join quoted it (without the `timeout` wrapper)
    exit_code: int | None  # None: stopped before it exited
    stdout: str
    stderr: str
    truncated: bool  # a stream went past max_output and was cut
    timed_out: bool  # stopped at command_timeout
    duration_ms: float

    def first_error_line(self) -> str:
        lines = [ln.strip() for ln in (self.stderr or self.stdout).splitlines() if ln.strip()]
        return str(SECRETS.scrub(lines[-1][:200])) if lines else "no output"


@dataclass(frozen=True)
class Limits:
    connect_timeout: float
    command_timeout: float
    max_output: int


def command_line(argv: Sequence[str], timeout: float | None = None) -> str:
    """The line sshd hands to the login shell: each argv element quoted, none interpreted.
    With a timeout, coreutils `timeout` stops the remote command (TERM, then KILL)."""
    if not argv or not all(isinstance(a, str) for a in argv):
        raise PermanentError("a command is a non-empty list of strings")
    if timeout is not None:
        argv = ["timeout", "-k", f"{KILL_GRACE:g}", f"{timeout:.3f}", *argv]
    return shlex.join(argv)


# Log tail + grep as one fixed script: the parameters are positional arguments ($1..$3),
# never part of the script's text.
_TAIL_GREP = '[ -r "$2" ] || exit 66; tail -n "$1" -- "$2" | grep -E -i -e "$3"'
_UNIT_PROPERTIES = "LoadState,ActiveState,SubState,MainPID,NRestarts,ActiveEnterTimestamp"

# The only commands a probe may run: name -> argv built from string arguments.
FIXED: dict[str, Callable[..., list[str]]] = {
    "ps": lambda: ["ps", "-eww", "-o", "pid=,user=,pcpu=,pmem=,rss=,etimes=,args="],
    "df": lambda: ["df", "-P", "-k", "-x", "tmpfs", "-x", "devtmpfs", "-x", "squashfs"],
    "loadavg": lambda: ["cat", "/proc/loadavg", "/proc/uptime"],
    "nproc": lambda: ["nproc"],
    "has_systemd": lambda: ["test", "-d", "/run/systemd/system"],
    "systemctl_show": lambda unit: ["systemctl", "show", "--no-pager",
                                    f"--property={_UNIT_PROPERTIES}", "--", unit],
    "service_status": lambda name: ["/usr/sbin/service", name, "status"],
    "pgrep": lambda name: ["pgrep", "-a", "-x", "--", name],
    "tail": lambda lines, path: ["tail", "-n", lines, "--", path],
    "tail_grep": lambda lines, path, pattern: ["sh", "-c", _TAIL_GREP, "sh", lines, path,
                                               pattern],
    "now": lambda: ["date", "+%s"],
    "mtime": lambda path: ["stat", "-L", "-c", "%Y %s", "--", path],
    # NUL-terminated: a file name may hold a newline, and so forge a line of its own.
    "newest": lambda directory, glob: ["find", "-H", directory, "-maxdepth", "1", "-type", "f",
                                       "-name", glob, "-printf", r"%T@ %s %f\0"],
    "realpath": lambda *paths: ["realpath", "-e", "-z", "--", *paths],
}


class CommandFailed(PermanentError):
    """A command ran and failed (exit code, or stopped): the result goes with the error."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


# Fan-out over a group


class FanOut(BaseModel):
    """What every ssh step takes: how a group is worked through."""

    model_config = ConfigDict(extra="forbid")

    max_concurrency: int = Field(10, ge=1, le=100, description="hosts at once")
    max_errors: MaxErrors = Field("100%", description='failed hosts allowed: 2 or "25%"')


def run_argv(host: Host, argv: list[str]) -> dict[str, Any]:
    out = host.run(argv)
    result = asdict(out)
    if out.timed_out:
        raise CommandFailed(f"{host.name}: `{out.command}` did not finish within "
                            f"{host.limits.command_timeout:g}s: stopped", result)
    if out.exit_code != 0:
        raise CommandFailed(f"{host.name}: `{out.command}` exited {out.exit_code}: "
                            f"{out.first_error_line()}", result)
    return result


# Connections


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


class FixedCommands:
    """What a probe gets of one host: the commands of FIXED, by name, and nothing else."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self.name = host.name

    def run_fixed(self, name: str, *args: str) -> CommandResult:
        build = FIXED.get(name)
        if build is None:
            raise PermanentError(f"{name!r} is not one of the fixed commands a probe may run")
        if not all(isinstance(a, str) for a in args):
            raise PermanentError(f"the arguments of {name!r} must be strings")
        return self._host.run(build(*args))


class _Hosts:
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
                    sock = _channel_to(client, hop, following, self.limits.connect_timeout)
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
        file = _known_hosts(self.target, known_hosts)
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
            with _translated_errors(endpoint, known_hosts, timeout, self._key_source(endpoint)):
                try:
                    client.connect(
                        endpoint.hostname, port=endpoint.port, username=endpoint.user,
                        pkey=self._pkey, key_filename=list(endpoint.identity_files) or None,
                        passphrase=self._passphrase(), allow_agent=self._pkey is None,
                        look_for_keys=False, timeout=timeout, banner_timeout=timeout,
                        auth_timeout=timeout, channel_timeout=timeout, sock=sock,
                        transport_factory=transport_factory(file, endpoint.known_hosts_name))
                except paramiko.SSHException:
                    _refuse_unknown_key(client, known, endpoint, known_hosts, file.skipped)
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

    def _fan_out(self, params: FanOut, work: Callable[[Host], dict[str, Any]]) -> dict[str, Any]:
        hosts = self.settings.all_hosts
        budget = error_budget(params.max_errors, len(hosts))
        entries: dict[str, dict[str, Any]] = {}
        failures: list[StepError] = []
        lock = threading.Lock()

        def one(host: str) -> None:
            with lock:
                if len(failures) > budget or self._cancelled.is_set():
                    return  # not started: reported as not_run
            try:
                with self.connect(host) as connected:
                    entry: dict[str, Any] = {"ok": True, "result": work(connected)}
            except StepError as exc:
                entry = {"ok": False, "error": str(SECRETS.scrub(str(exc)))}
                if isinstance(exc, CommandFailed):
                    entry["result"] = exc.result
                with lock:
                    failures.append(exc)
            with lock:
                entries[host] = entry

        with ThreadPoolExecutor(min(params.max_concurrency, len(hosts)),
                                thread_name_prefix=f"ssh-{self.target}") as pool:
            list(pool.map(one, hosts))  # in order: with one at a time, the first hosts first
        ok = [h for h in hosts if entries.get(h, {}).get("ok")]
        result: dict[str, Any] = {
            "hosts": {h: entries[h] for h in hosts if h in entries},
            "ok_count": len(ok), "failed_count": len(failures),
            "not_run": [h for h in hosts if h not in entries]}
        if not ok:
            raise _none_succeeded(self.target, hosts, result, failures)
        if len(hosts) == 1:
            return {**entries[hosts[0]]["result"], **result}
        return result


def _none_succeeded(target: str, hosts: list[str], result: dict[str, Any],
                    failures: list[StepError]) -> StepError:
    if len(hosts) == 1 and failures:
        return failures[0]  # its own kind: a temporary one may be retried
    said = [e["error"] for e in result["hosts"].values()]  # each names its host
    if result["not_run"]:
        said.append(f"not run: {', '.join(result['not_run'])}")
    kind = TemporaryError if all(isinstance(f, TemporaryError) for f in failures) \
        else PermanentError
    return kind(f"{target}: no host succeeded ({'; '.join(said)})")


class SshProbe(_Hosts):
    """What a probe gets: fixed commands on each host."""

    def each(self, params: FanOut, work: Callable[[FixedCommands], dict[str, Any]]
             ) -> dict[str, Any]:
        return self._fan_out(params, lambda host: work(FixedCommands(host)))

    def each_vouched(self, params: FanOut, argv: list[str]) -> dict[str, Any]:
        """The argv of `ssh.exec_read_only`, read-only on its playbook author's word."""
        return self._fan_out(params, lambda host: run_argv(host, argv))


class SshAction(_Hosts):
    """What a remedy gets, only through the gate: any argv on each host."""

    def each(self, params: FanOut, work: Callable[[Host], dict[str, Any]]) -> dict[str, Any]:
        return self._fan_out(params, work)


# Keys, host keys and errors


def _private_key(settings: SshSettings, target: str) -> Any:
    """The inventory's key (None: ~/.ssh/config's IdentityFile, else the agent)."""
    import paramiko

    passphrase = None
    if settings.passphrase_env:
        passphrase = os.environ.get(settings.passphrase_env)
        if not passphrase:
            raise PermanentError(f"{settings.passphrase_env} is not set: it holds the "
                                 f"passphrase of {target}'s key")
        SECRETS.register(passphrase)
    failures = (paramiko.SSHException, ValueError, TypeError, paramiko.pkey.UnknownKeyType)
    if settings.key_file:
        path = Path(settings.key_file).expanduser()
        try:
            return paramiko.PKey.from_path(path, password=passphrase)
        except OSError as exc:
            raise PermanentError(f"{target}: cannot read key_file {path}: "
                                 f"{exc.strerror or exc}") from None
        except failures as exc:
            raise PermanentError(f"{target}: key_file {path} is not a private key paramiko "
                                 f"can use ({type(exc).__name__})") from None
    if settings.key_env:
        text = os.environ.get(settings.key_env, "")
        if not text.strip():
            raise PermanentError(f"{settings.key_env} is not set: it holds {target}'s "
                                 "private key")
        SECRETS.register(text.strip())
        for line in text.splitlines():  # a line of it, should one ever be printed alone
            if not line.startswith("-----"):
                SECRETS.register(line.strip())
        for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
            try:
                return key_class.from_private_key(io.StringIO(text), password=passphrase)
            except failures:
                continue
        raise PermanentError(f"{settings.key_env} does not hold a private key paramiko can "
                             "read (OpenSSH or PEM format; Ed25519, ECDSA or RSA)")
    return None


def _channel_to(client: Any, hop: Endpoint, following: Endpoint, timeout: float) -> Any:
    """A direct-tcpip channel from `hop` to the next hop's SSH port."""
    import paramiko

    try:
        return client.get_transport().open_channel(
            "direct-tcpip", (following.hostname, following.port), ("127.0.0.1", 0),
            timeout=timeout)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise TemporaryError(f"{hop.host} ({hop.hostname}) cannot reach {following.hostname} "
                             f"port {following.port}: {_first_line(exc)}") from None


def _known_hosts(target: str, path: Path) -> KnownHosts:
    try:
        return load_known_hosts(path)
    except OSError as exc:
        raise PermanentError(f"{target}: cannot read known_hosts {path}: "
                             f"{exc.strerror or exc}") from None


def _refuse_unknown_key(client: Any, known: Any, endpoint: Endpoint, known_hosts: Path,
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


def _changed_key(endpoint: Endpoint, known_hosts: Path, got: Any, expected: Any) -> str:
    name = endpoint.known_hosts_name
    return (f"{endpoint.host}: WARNING: HOST KEY CHANGED: {name} presents {got.get_name()} "
            f"{got.fingerprint}, but {known_hosts} records {expected.get_name()} "
            f"{expected.fingerprint}. Someone may be intercepting this connection "
            "(man-in-the-middle), or the host was reinstalled; refusing to connect. Only once "
            "the new key is confirmed with the host's owner: "
            f"ssh-keygen -R '{name}' -f {known_hosts}, then "
            f"ssh-keyscan -p {endpoint.port} {endpoint.hostname} >> {known_hosts}")


@contextmanager
def _translated_errors(endpoint: Endpoint, known_hosts: Path, timeout: float,
                       key_source: str) -> Iterator[None]:
    """paramiko and socket errors as temporary/permanent ones; no secret in a message."""
    import paramiko

    where = f"{endpoint.host} ({endpoint.user}@{endpoint.hostname}:{endpoint.port})"
    try:
        yield
    except StepError:
        raise
    except paramiko.BadHostKeyException as exc:
        raise PermanentError(_changed_key(endpoint, known_hosts, exc.key,
                                          exc.expected_key)) from None
    except paramiko.AuthenticationException:
        raise PermanentError(f"{where}: authentication failed with {key_source}: is its "
                             f"public key in {endpoint.user}'s authorized_keys?") from None
    except paramiko.ssh_exception.NoValidConnectionsError as exc:
        codes = {e.errno for e in exc.errors.values()}
        said = "connection refused" if codes == {errno.ECONNREFUSED} else "no route to host"
        raise TemporaryError(f"{where}: {said}") from None
    except TimeoutError:
        raise TemporaryError(f"{where}: timed out (connect_timeout {timeout:g}s)") from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise TemporaryError(f"{where}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return str(SECRETS.scrub(lines[0] if lines else type(exc).__name__))


# The connector


class SshConnector:
    def prepare(self) -> None:
        import paramiko  # noqa: F401 - imported before the steps' clocks start

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
                                 f"{_first_line(exc)}") from None
        return _private_key(settings, target.name), config

    def identity(self, target: Target, timeout: float) -> dict[str, str]:
        """Each host as it resolves (user@hostname:port, through its jump hosts) and the
        host key known_hosts holds for it: the only key a connection accepts, so an approval
        binds to the machine, and a host key swapped in known_hosts voids it; a host known
        only through a @cert-authority binds to that CA."""
        hosts = _Hosts(target, timeout, None, self._open(target, timeout)[1])
        file = _known_hosts(target.name, Path(hosts.settings.known_hosts).expanduser())
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
    def probe(self, target: Target, timeout: float) -> Iterator[SshProbe]:
        handle = SshProbe(target, timeout, *self._open(target, timeout))
        try:
            yield handle
        finally:
            handle.cancel()

    @contextmanager
    def action(self, target: Target, timeout: float) -> Iterator[SshAction]:
        handle = SshAction(target, timeout, *self._open(target, timeout))
        try:
            yield handle
        finally:
            handle.cancel()
