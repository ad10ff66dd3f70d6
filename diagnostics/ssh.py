"""Hosts over SSH (paramiko): read-only probes that run fixed commands, a gated `ssh.exec`.

    targets:
      sync-hosts:
        kind: ssh
        hosts: [sync-1, sync-2.example.com]   # or `host:` for one; ~/.ssh/config aliases work
        user: ops                             # else ~/.ssh/config's User, else yours
        key_file: ~/.ssh/runbook_ed25519      # or key_env: VAR holding the key; else the agent
        known_hosts: ~/.ssh/known_hosts

What is enforced:
* Host keys are checked against `known_hosts` with paramiko's RejectPolicy: an unknown key
  or a changed one is refused with a message saying which key and how to record it once
  checked. Nothing is ever added to known_hosts.
* A probe's handle runs only the commands of `FIXED`, by name. Every command line is built
  from an argv list by shlex.join, so a parameter is an argument, never shell code; paths
  and names that start with "-" are refused, so none is read as an option either.
* Every command runs under coreutils `timeout` (the remote process dies too) and a local
  deadline that closes the channel; past `max_output` bytes a stream is read but not kept.
* `ssh.exec` runs the argv a playbook gives: mutating, so only as an approved remedy.
  `ssh.exec_read_only` is the same runner registered read-only on the playbook author's
  word: `runbook plan` and `show` display that mark.

Fan-out: on a group a step runs on each host, `max_concurrency` at once; once more hosts
than `max_errors` (a count, or a percent of the hosts: "25%") have failed, the hosts not yet
started are not started (AWS SSM's MaxErrors). The result holds `hosts` ({host: {ok, result
| error}}), `ok_count`, `failed_count` and `not_run`; a one-host target's result fields are
at the top level as well. The step fails only when no host succeeded.
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
from datetime import UTC, datetime
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
from runner.registry import Backend, Registry, StepKind, Target

from . import logclass

KIND = "ssh"
KILL_GRACE = 2.0  # seconds between `timeout`'s TERM and its KILL


# Validation shared by settings and params


def _argument(value: str) -> str:
    """A path or name that becomes one argv element: never an option, never two lines."""
    if not value or value.startswith("-") or "\0" in value or "\n" in value:
        raise ValueError(f"{value!r} must be non-empty, one line, and not start with '-'")
    return value


Argument = Annotated[str, AfterValidator(_argument)]
# systemd units and process names (pgrep -x): letters, digits and @ . _ : + \ -
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.@:+\\][A-Za-z0-9_.@:+\\-]*$", max_length=255)]


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
    ssh_config: str = Field("~/.ssh/config", description="for aliases, port, user, IdentityFile")
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
    "newest": lambda directory, glob: ["find", directory, "-maxdepth", "1", "-type", "f",
                                       "-name", glob, "-printf", r"%T@ %s %p\n"],
}


class CommandFailed(PermanentError):
    """A command ran and failed (exit code, or stopped): the result goes with the error."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


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

    def endpoint(self, host: str) -> Endpoint:
        seen = self._config.lookup(host) if self._config is not None else {}
        return Endpoint(host, seen.get("hostname", host),
                        self.settings.port or int(seen.get("port", 22)),
                        self.settings.user or seen.get("user") or getpass.getuser(),
                        tuple(seen.get("identityfile", ())))

    @contextmanager
    def connect(self, host: str) -> Iterator[Host]:
        import paramiko

        endpoint = self.endpoint(host)
        known_hosts = Path(self.settings.known_hosts).expanduser()
        client = paramiko.SSHClient()
        known = paramiko.HostKeys()
        if known_hosts.is_file():
            client.load_system_host_keys(str(known_hosts))  # system keys: never written back
            known.load(str(known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())  # never auto-accept
        with self._lock:
            self._open.add(client)
        try:
            timeout = self.limits.connect_timeout
            with _translated_errors(endpoint, known_hosts, timeout, self._key_source(endpoint)):
                try:
                    client.connect(
                        endpoint.hostname, port=endpoint.port, username=endpoint.user,
                        pkey=self._pkey, key_filename=list(endpoint.identity_files) or None,
                        passphrase=self._passphrase(), allow_agent=self._pkey is None,
                        look_for_keys=False, timeout=timeout, banner_timeout=timeout,
                        auth_timeout=timeout, channel_timeout=timeout)
                except paramiko.SSHException:
                    _refuse_unknown_key(client, known, endpoint, known_hosts)
                    raise
                yield Host(client, endpoint, self.limits)
        finally:
            with self._lock:
                self._open.discard(client)
            client.close()

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

    def each_vouched(self, params: ExecParams) -> dict[str, Any]:
        """The argv of `ssh.exec_read_only`, read-only on its playbook author's word."""
        return self._fan_out(params, lambda host: _exec(host, params.argv))


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


def _refuse_unknown_key(client: Any, known: Any, endpoint: Endpoint, known_hosts: Path) -> None:
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
        f">> {known_hosts}")


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
            config = paramiko.SSHConfig.from_path(str(config_path)) \
                if config_path.is_file() else None
        except (OSError, paramiko.SSHException) as exc:
            raise PermanentError(f"{target.name}: cannot read {config_path}: "
                                 f"{_first_line(exc)}") from None
        return _private_key(settings, target.name), config

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


# Params


class FanOut(BaseModel):
    """What every ssh step takes: how a group is worked through."""

    model_config = ConfigDict(extra="forbid")

    max_concurrency: int = Field(10, ge=1, le=100, description="hosts at once")
    max_errors: MaxErrors = Field("100%", description='failed hosts allowed: 2 or "25%"')


class TopParams(FanOut):
    count: int = Field(10, ge=1, le=200, description="processes in each list")


class DiskParams(FanOut):
    threshold_pct: float = Field(90.0, ge=0, le=100, description="flag mounts fuller than this")


class ServiceParams(FanOut):
    unit: Name | None = Field(None, description="systemd unit, or init script for `service`")
    process: Name | None = Field(None, description="a process name to look for (pgrep -x)")

    @model_validator(mode="after")
    def _something(self) -> ServiceParams:
        if not (self.unit or self.process):
            raise ValueError("give a `unit`, a `process`, or both")
        return self


class LogTailParams(FanOut):
    path: Argument
    lines: int = Field(500, ge=1, le=100_000, description="the last N lines")
    pattern: str | None = Field(None, description="keep lines matching it (grep -E -i)")
    excerpt: int = Field(15, ge=0, le=200, description="last error lines to show")

    @field_validator("pattern")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and ("\0" in value or "\n" in value):
            raise ValueError("the pattern must be one line")
        return value


class FileAgeParams(FanOut):
    path: Argument = Field(description="a file, or with `glob` the directory to look in")
    glob: Argument | None = Field(None, description="the newest file matching it counts")


class ExecParams(FanOut):
    argv: list[str] = Field(min_length=1, description="the command and its arguments")

    @field_validator("argv")
    @classmethod
    def _strings(cls, argv: list[str]) -> list[str]:
        if not argv[0] or any("\0" in a for a in argv):
            raise ValueError("argv[0] must name a command, and no argument may hold NUL")
        return argv


class RemedyExecParams(ExecParams):
    # A change stops at the first failed host unless the playbook allows more.
    max_errors: MaxErrors = Field(0, description='failed hosts allowed: 2 or "25%"')


# Probes


def _failed(host: FixedCommands, result: CommandResult) -> PermanentError:
    if result.timed_out:
        return PermanentError(f"{host.name}: `{result.command}` did not finish within "
                              "command_timeout (stopped)")
    return PermanentError(f"{host.name}: `{result.command}` exited {result.exit_code}: "
                          f"{result.first_error_line()}")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def top_processes(probe: SshProbe, params: TopParams) -> dict[str, Any]:
    def on(host: FixedCommands) -> dict[str, Any]:
        ps = host.run_fixed("ps")
        if ps.exit_code != 0:
            raise _failed(host, ps)
        rows = [line.split(None, 6) for line in ps.stdout.splitlines()]
        procs: list[dict[str, Any]] = [{"pid": int(r[0]), "user": r[1], "cpu_pct": _number(r[2]),
                  "mem_pct": _number(r[3]), "rss_kb": int(_number(r[4])),
                  "elapsed_s": int(_number(r[5])), "command": r[6]}
                 for r in rows if len(r) == 7 and r[0].isdigit()]
        return {"processes": len(procs), "truncated": ps.truncated,
                "by_memory": sorted(procs, key=lambda p: -p["rss_kb"])[:params.count],
                "by_cpu": sorted(procs, key=lambda p: -p["cpu_pct"])[:params.count]}
    return probe.each(params, on)


def parse_df(text: str, threshold_pct: float) -> dict[str, Any]:
    mounts: list[dict[str, Any]] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 6 or not fields[1].isdigit():
            continue
        used_pct = int(fields[4].rstrip("%")) if fields[4].rstrip("%").isdigit() else None
        mounts.append({"mount": " ".join(fields[5:]), "filesystem": fields[0],
                       "size_kb": int(fields[1]), "used_kb": int(fields[2]),
                       "avail_kb": int(fields[3]), "used_pct": used_pct,
                       "over": used_pct is not None and used_pct > threshold_pct})
    return {"mounts": mounts, "threshold_pct": threshold_pct,
            "over_threshold": [m["mount"] for m in mounts if m["over"]],
            "max_used_pct": max((m["used_pct"] or 0 for m in mounts), default=0)}


def disk_usage(probe: SshProbe, params: DiskParams) -> dict[str, Any]:
    def on(host: FixedCommands) -> dict[str, Any]:
        df = host.run_fixed("df")
        if not df.stdout.strip():  # an unreadable mount alone makes df exit 1: keep the rest
            raise _failed(host, df)
        return parse_df(df.stdout, params.threshold_pct)
    return probe.each(params, on)


def load(probe: SshProbe, params: FanOut) -> dict[str, Any]:
    def on(host: FixedCommands) -> dict[str, Any]:
        proc, nproc = host.run_fixed("loadavg"), host.run_fixed("nproc")
        if proc.exit_code != 0 or nproc.exit_code != 0:
            raise _failed(host, proc if proc.exit_code else nproc)
        load_line, uptime_line = proc.stdout.splitlines()[:2]
        one, five, fifteen, runnable, _ = load_line.split()
        running, total = runnable.split("/")
        cpus = int(nproc.stdout.strip())
        return {"load1": float(one), "load5": float(five), "load15": float(fifteen),
                "cpus": cpus, "load_per_core": round(float(one) / max(cpus, 1), 2),
                "running": int(running), "processes": int(total),
                "uptime_s": int(float(uptime_line.split()[0]))}
    return probe.each(params, on)


def _unit_status(host: FixedCommands, unit: str) -> dict[str, Any]:
    if host.run_fixed("has_systemd").exit_code == 0:
        show = host.run_fixed("systemctl_show", unit)
        if show.exit_code != 0:
            raise _failed(host, show)
        props = dict(line.partition("=")[::2] for line in show.stdout.splitlines())
        state = props.get("ActiveState", "unknown")
        return {"via": "systemd", "unit_active": state == "active", "state": state,
                "sub_state": props.get("SubState"), "loaded": props.get("LoadState"),
                "main_pid": int(props.get("MainPID") or 0) or None,
                "restarts": int(props.get("NRestarts") or 0),
                "since": props.get("ActiveEnterTimestamp") or None}
    status = host.run_fixed("service_status", unit)
    if status.exit_code == 127:  # no `service` either
        return {"via": None, "unit_active": None, "state": "unknown"}
    detail = status.first_error_line() if status.exit_code else status.stdout.strip()[:200]
    # LSB: 0 running; 1-3 not running (3: stopped); 4 unknown
    return {"via": "service", "unit_active": status.exit_code == 0,
            "state": "active" if status.exit_code == 0 else f"inactive (exit {status.exit_code})",
            "detail": detail}


def service_status(probe: SshProbe, params: ServiceParams) -> dict[str, Any]:
    def on(host: FixedCommands) -> dict[str, Any]:
        result: dict[str, Any] = {"unit": params.unit, "process": params.process}
        if params.unit:
            result.update(_unit_status(host, params.unit))
        if params.process:
            found = host.run_fixed("pgrep", params.process)
            if found.exit_code not in (0, 1):
                raise _failed(host, found)
            result["processes"] = [{"pid": int(pid), "command": command}
                                   for pid, _, command in (line.partition(" ") for line in
                                                           found.stdout.splitlines())]
            result["process_running"] = found.exit_code == 0
        checks = [v for v in (result.get("unit_active"), result.get("process_running"))
                  if v is not None]
        if not checks:
            raise PermanentError(f"{host.name}: neither systemd nor `service` here; name a "
                                 "`process` to look for instead")
        result["active"] = all(checks)
        return result
    return probe.each(params, on)


def log_tail(probe: SshProbe, params: LogTailParams) -> dict[str, Any]:
    def on(host: FixedCommands) -> dict[str, Any]:
        lines = str(params.lines)
        if params.pattern is None:
            out = host.run_fixed("tail", lines, params.path)
            failed = out.exit_code != 0
        else:
            out = host.run_fixed("tail_grep", lines, params.path, params.pattern)
            failed = out.exit_code not in (0, 1)  # grep: 1 is "no line matched"
            if out.exit_code == 66:
                raise PermanentError(f"{host.name}: cannot read {params.path}")
        if failed:
            raise _failed(host, out)
        text = out.stdout.splitlines()
        errors = [logclass.split_timestamp(line)[1] for line in text if logclass.is_error(line)]
        return {**logclass.classify(text), "path": params.path, "pattern": params.pattern,
                "truncated": out.truncated,
                "excerpt": errors[-params.excerpt:] if params.excerpt else []}
    return probe.each(params, on)


def file_age(probe: SshProbe, params: FileAgeParams) -> dict[str, Any]:
    def on(host: FixedCommands) -> dict[str, Any]:
        now = host.run_fixed("now")  # the host's clock, not ours: no skew in the age
        if now.exit_code != 0:
            raise _failed(host, now)
        if params.glob is None:
            out = host.run_fixed("mtime", params.path)
            rows = [(float(t), int(s), params.path) for t, s in
                    (line.split() for line in out.stdout.splitlines())]
        else:
            out = host.run_fixed("newest", params.path, params.glob)
            rows = [(float(t), int(s), p) for t, s, p in
                    (line.split(" ", 2) for line in out.stdout.splitlines())]
        absent = {"path": params.path, "glob": params.glob, "exists": False, "matched": 0,
                  "mtime": None, "age_s": None, "size": None}
        if out.exit_code != 0 and not rows:
            if "No such file" in out.stderr:
                return absent
            raise _failed(host, out)
        if not rows:
            return absent
        mtime, size, path = max(rows)
        return {"path": path, "glob": params.glob, "exists": True, "matched": len(rows),
                "mtime": datetime.fromtimestamp(mtime, UTC).isoformat(),
                "age_s": round(int(now.stdout.strip()) - mtime, 1), "size": size}
    return probe.each(params, on)


def _exec(host: Host, argv: list[str]) -> dict[str, Any]:
    out = host.run(argv)
    result = asdict(out)
    if out.timed_out:
        raise CommandFailed(f"{host.name}: `{out.command}` did not finish within "
                            f"{host.limits.command_timeout:g}s: stopped", result)
    if out.exit_code != 0:
        raise CommandFailed(f"{host.name}: `{out.command}` exited {out.exit_code}: "
                            f"{out.first_error_line()}", result)
    return result


def exec_command(action: SshAction, params: RemedyExecParams) -> dict[str, Any]:
    return action.each(params, lambda host: _exec(host, params.argv))


def exec_read_only(probe: SshProbe, params: ExecParams) -> dict[str, Any]:
    return probe.each_vouched(params)


def _explain(params: RemedyExecParams) -> str:
    return (f"run `{shlex.join(params.argv)}` on each host, {params.max_concurrency} at a "
            f"time; stop after {params.max_errors} failed host(s)")


_PER_HOST = {"hosts": "{host: {ok, result | error}}", "ok_count / failed_count": "hosts",
             "not_run": "hosts not started once max_errors was passed"}
_COMMAND = {"command": "the argv, quoted", "exit_code": "None when stopped",
            "stdout / stderr": "at most max_output bytes each", "truncated": "output was cut",
            "timed_out": "stopped at command_timeout", "duration_ms": "how long it ran"}


def register(registry: Registry) -> None:
    registry.add_backend(Backend(KIND, SshConnector(), SshSettings,
                                 "hosts over SSH (paramiko): fixed read-only commands"))

    def probe(name: str, func: Any, params: type[BaseModel], summary: str,
              result: dict[str, str]) -> None:
        registry.add(StepKind(f"ssh.{name}", KIND, func, params, False, summary,
                              {**result, **_PER_HOST}, timeout=60.0))

    probe("top_processes", top_processes, TopParams, "top processes by memory and by CPU (ps)",
          {"by_memory / by_cpu": "[{pid, user, cpu_pct, mem_pct, rss_kb, elapsed_s, command}]",
           "processes": "how many in all"})
    probe("disk_usage", disk_usage, DiskParams, "used and free space per mount (df -P)",
          {"mounts": "[{mount, filesystem, size_kb, used_kb, avail_kb, used_pct, over}]",
           "over_threshold": "mounts fuller than threshold_pct", "max_used_pct": "fullest"})
    probe("load", load, FanOut, "load averages, CPUs, load per core, uptime (/proc)",
          {"load1 / load5 / load15": "load averages", "cpus": "nproc",
           "load_per_core": "load1 / cpus", "uptime_s": "since boot",
           "running / processes": "runnable and all tasks"})
    probe("service_status", service_status, ServiceParams,
          "a unit's state (systemctl, else `service NAME status`) and/or a process (pgrep -x)",
          {"active": "every check made says it runs", "via": "systemd or service",
           "state": "e.g. active, failed", "processes": "[{pid, command}] found by name"})
    probe("log_tail", log_tail, LogTailParams,
          "the last lines of a log file, optionally grep -E -i, errors classified",
          {"classes": "{class: {count, first_seen, last_seen, sample}}",
           "error_lines": "errors found", "top_class": "the commonest",
           "excerpt": "the last error lines", "truncated": "output was cut"})
    probe("file_age", file_age, FileAgeParams,
          "seconds since a file, or the newest file matching a glob, was last written",
          {"exists": "false when nothing matched", "age_s": "now - mtime, by the host's clock",
           "path": "the file", "mtime": "ISO time", "matched": "files matching the glob"})
    registry.add(StepKind(
        "ssh.exec_read_only", KIND, exec_read_only, ExecParams, False,
        "run a command the playbook's author vouches is read-only", {**_COMMAND, **_PER_HOST},
        timeout=60.0, read_only_by_author=True))
    registry.add(StepKind(
        "ssh.exec", KIND, exec_command, RemedyExecParams, True,
        "run a command on the host(s): exit code, output", {**_COMMAND, **_PER_HOST},
        timeout=120.0, explain=_explain))
