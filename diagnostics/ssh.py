"""Hosts over SSH (paramiko): read-only probes that run fixed commands, a gated `ssh.exec`.

    targets:
      sync-hosts:
        kind: ssh
        hosts: [sync-1, sync-2.example.com]   # or `host:` for one; ~/.ssh/config aliases work
        user: ops                             # else ~/.ssh/config's User, else yours
        key_file: ~/.ssh/runbook_ed25519      # or key_env: VAR holding the key; else the agent
        known_hosts: ~/.ssh/known_hosts
        jump: ops@bastion                     # optional; else ~/.ssh/config's ProxyJump

What is enforced:
* Host keys are checked against `known_hosts` as OpenSSH reads it (`knownhosts`): an
  unknown key or a changed one is refused with a message saying which key and how to record
  it once checked; a key on a `@revoked` line is refused; a host certificate is accepted
  only from a `@cert-authority` line's CA for that host (principal, validity, signature).
  Nothing is ever added to known_hosts. Through jump hosts (ProxyJump) every hop's key is
  checked the same way.
* The ssh config is read with its `Include`s in place and `Match host` blocks (`sshconfig`).
* No command runs on this machine: an ssh config (or a file it Includes) with `Match exec`,
  `ProxyCommand`, `KnownHostsCommand` or a permitted `LocalCommand` is refused as a whole
  before paramiko looks anything up in it (its lookup runs `Match exec`): `sshconfig`.
* A probe's handle runs only the commands of `FIXED`, by name. Every command line is built
  from an argv list by shlex.join, so a parameter is an argument, never shell code; paths
  and names that start with "-" are refused, so none is read as an option either. An
  `ssh.exec` argv element produced by a template is refused when it starts with "-", unless
  the step says `allow_options: true` (`runner.options`).
* `file_age` reads find's output NUL-separated: a file name holding a newline cannot forge
  a record for another file; a name that is not a plain match of the glob is skipped, and
  the newest file must resolve (realpath on the host) directly inside the directory.
* `log_tail` takes a `literal` (a client's name from a param) as text: escaped before it
  reaches grep's regex.
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

import fnmatch
import posixpath
import re
import shlex
from datetime import UTC, datetime
from typing import Any

from pydantic import (
    BaseModel,
    Field,
    field_validator,
    model_validator,
)

from runner.errors import PermanentError
from runner.registry import Backend, Registry, StepKind

from . import logclass
from .sshconn import (  # the connection layer; some names are re-exported for tests
    KIND,
    Argument,
    CommandResult,
    FanOut,
    FixedCommands,
    MaxErrors,
    Name,
    SshAction,
    SshConnector,
    SshProbe,
    SshSettings,
    run_argv,
)
from .sshconn import (
    command_line as command_line,
)
from .sshconn import (
    error_budget as error_budget,
)
from .sshconn import (
    parse_max_errors as parse_max_errors,
)

# Params


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


LITERAL = "{literal}"  # where a pattern takes its escaped literal


class LogTailParams(FanOut):
    path: Argument
    lines: int = Field(500, ge=1, le=100_000, description="the last N lines")
    pattern: str | None = Field(None, description="keep lines matching it (grep -E -i); "
                                f"with `literal`, {LITERAL} marks where that text goes")
    literal: str | None = Field(None, description="text taken as it is, never as a regex "
                                "(a name from a param): escaped, then matched alone or at "
                                f"{LITERAL} in the pattern; empty: not given")
    excerpt: int = Field(15, ge=0, le=200, description="last error lines to show")

    @field_validator("pattern", "literal")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and ("\0" in value or "\n" in value):
            raise ValueError("must be one line")
        return value

    @model_validator(mode="after")
    def _literal_placed(self) -> LogTailParams:
        if self.literal and self.pattern is not None and self.pattern.count(LITERAL) != 1:
            raise ValueError(f"with a `literal`, the pattern says where it goes: {LITERAL} "
                             "once")
        if not self.literal and self.pattern is not None and LITERAL in self.pattern:
            raise ValueError(f"the pattern has {LITERAL} but no `literal` is given")
        return self

    def grep_pattern(self) -> str | None:
        """The extended regex grep gets: the literal escaped into the pattern."""
        if not self.literal:
            return self.pattern
        escaped = ere_escape(self.literal)
        return escaped if self.pattern is None else self.pattern.replace(LITERAL, escaped)


def ere_escape(text: str) -> str:
    """`text` as a POSIX extended regex matching exactly it."""
    return re.sub(r"([\\.\[\](){}*+?|^$])", r"\\\1", text)


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
        pattern = params.grep_pattern()
        if pattern is None:
            out = host.run_fixed("tail", lines, params.path)
            failed = out.exit_code != 0
        else:
            out = host.run_fixed("tail_grep", lines, params.path, pattern)
            failed = out.exit_code not in (0, 1)  # grep: 1 is "no line matched"
            if out.exit_code == 66:
                raise PermanentError(f"{host.name}: cannot read {params.path}")
        if failed:
            raise _failed(host, out)
        text = out.stdout.splitlines()
        errors = [logclass.split_timestamp(line)[1] for line in text if logclass.is_error(line)]
        return {**logclass.classify(text), "path": params.path, "pattern": pattern,
                "truncated": out.truncated,
                "excerpt": errors[-params.excerpt:] if params.excerpt else []}
    return probe.each(params, on)


FileRow = tuple[float, int, str]  # mtime, size, path


def newest_rows(stdout: str, directory: str, glob: str) -> tuple[list[FileRow], int]:
    """find's NUL-terminated `MTIME SIZE NAME` records as (mtime, size, directory/NAME), and
    how many were skipped: a name that could not be passed on as one argument (a newline,
    a leading '-'), that is not a plain name in the directory, or that does not match the
    glob (as find's -name would)."""
    rows: list[FileRow] = []
    skipped = 0
    for record in stdout.split("\0"):
        if not record:
            continue
        mtime, _, rest = record.partition(" ")
        size, _, name = rest.partition(" ")
        try:
            stamp, length = float(mtime), int(size)
        except ValueError:
            skipped += 1
            continue
        plain = name not in ("", ".", "..") and "/" not in name
        if not plain or "\n" in name or name.startswith("-") \
                or not fnmatch.fnmatchcase(name, glob):
            skipped += 1
            continue
        rows.append((stamp, length, posixpath.join(directory, name)))
    return rows, skipped


def _require_inside(host: FixedCommands, directory: str, path: str) -> None:
    """The file, symlinks resolved on the host, lies directly in the directory."""
    out = host.run_fixed("realpath", directory, path)
    resolved = out.stdout.split("\0")
    if out.exit_code != 0 or len(resolved) < 2:
        raise _failed(host, out)
    if posixpath.dirname(resolved[1]) != resolved[0]:
        raise PermanentError(f"{host.name}: {path} resolves to {resolved[1]}, outside "
                             f"{resolved[0]}: refusing it")


def file_age(probe: SshProbe, params: FileAgeParams) -> dict[str, Any]:
    def on(host: FixedCommands) -> dict[str, Any]:
        now = host.run_fixed("now")  # the host's clock, not ours: no skew in the age
        if now.exit_code != 0:
            raise _failed(host, now)
        skipped = 0
        if params.glob is None:
            out = host.run_fixed("mtime", params.path)
            rows = [(float(t), int(s), params.path) for t, s in
                    (line.split() for line in out.stdout.splitlines())]
        else:
            out = host.run_fixed("newest", params.path, params.glob)
            rows, skipped = newest_rows(out.stdout, params.path, params.glob)
        absent = {"path": params.path, "glob": params.glob, "exists": False, "matched": 0,
                  "mtime": None, "age_s": None, "size": None, "skipped_names": skipped}
        if out.exit_code != 0 and not rows:
            if "No such file" in out.stderr:
                return absent
            raise _failed(host, out)
        if not rows:
            return absent
        mtime, size, path = max(rows)
        if params.glob is not None:
            _require_inside(host, params.path, path)
        return {"path": path, "glob": params.glob, "exists": True, "matched": len(rows),
                "mtime": datetime.fromtimestamp(mtime, UTC).isoformat(),
                "age_s": round(int(now.stdout.strip()) - mtime, 1), "size": size,
                "skipped_names": skipped}
    return probe.each(params, on)


def exec_command(action: SshAction, params: RemedyExecParams) -> dict[str, Any]:
    return action.each(params, lambda host: run_argv(host, params.argv))


def exec_read_only(probe: SshProbe, params: ExecParams) -> dict[str, Any]:
    return probe.each_vouched(params, params.argv)


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
