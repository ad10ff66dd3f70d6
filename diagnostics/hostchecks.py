"""Host health over SSH: read-only `ssh.*` checks with thresholds, each saying why.

inode usage, file descriptors, memory and OOM kills, zombie processes, failed systemd units,
listening ports against the expected ones, clock sync. Each check runs fixed commands (argv
lists, no parameter ever reaches a shell: the scripts below take none) on each host of the
target, as the other ssh probes do, and returns `ok`, `level` (ok, warning, critical), a
one-line `summary` that names the cause, and what it measured. On a group, `level` is the
worst of the hosts and `summary` names each host that is not ok.

A check that cannot look says so: no systemd, no timedatectl or chronyc, is an error
("not checked: ..."), so the step fails and the report leads with it, never an all-clear;
an unreadable kernel log is `oom_log: "not checked"`, never "no OOM kills".

These commands join the ssh backend's fixed table (`sshconn.FIXED`) when this module is
imported: a probe still runs only named, fixed commands.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from ipaddress import IPv6Address
from typing import Any, Literal

from pydantic import Field, model_validator

from runner.errors import PermanentError
from runner.registry import Registry, StepKind

from .grading import Level, above, below, worst
from .sshconn import FIXED, KIND, CommandResult, FanOut, FixedCommands, SshProbe

# Per process: "PID FDS SOFT_LIMIT COMM", for the processes whose fd directory the login
# user may read (its own; all of them as root). Pure sh: no program started per process.
_FD_COUNTS = r"""
set -- /proc/[0-9]*; echo "processes $#"
for p in /proc/[0-9]*; do
  set -- "$p"/fd/*
  [ -L "$1" ] || continue
  n=$#; lim=-
  while IFS= read -r line; do
    case $line in "Max open files"*) set -- $line; lim=$4;; esac
  done <"$p/limits"
  IFS= read -r comm <"$p/comm" || comm=?
  echo "${p#/proc/} $n $lim $comm"
done 2>/dev/null
exit 0
"""

# The kernel log's OOM-killer lines, from the first source that can be read: a first line
# "source NAME", or "unreadable" when none could.
_OOM_LOG = r"""
pat='out of memory|oom-kill|killed process|oom_reaper'
if out=$(dmesg 2>/dev/null) && [ -n "$out" ]; then
  echo "source dmesg"; printf '%s\n' "$out" | grep -E -i -e "$pat" | tail -n 50; exit 0
fi
if out=$(journalctl -k -b -q --no-pager 2>/dev/null) && [ -n "$out" ]; then
  echo "source journalctl -k"; printf '%s\n' "$out" | grep -E -i -e "$pat" | tail -n 50; exit 0
fi
if [ -r /var/log/kern.log ]; then
  echo "source /var/log/kern.log"; tail -n 100000 /var/log/kern.log | grep -E -i -e "$pat" \
    | tail -n 50; exit 0
fi
echo unreadable
"""

# This host's (or container's) memory cgroup: limit, usage, OOM kills; v2 then v1 names.
_CGROUP_MEMORY = r"""
for f in /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory.current /sys/fs/cgroup/memory.events \
    /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.usage_in_bytes \
    /sys/fs/cgroup/memory/memory.oom_control; do
  [ -r "$f" ] && { echo "== ${f##*/}"; cat "$f"; }
done
exit 0
"""

HOST_COMMANDS: dict[str, Callable[..., list[str]]] = {
    "df_inodes": lambda: ["df", "-P", "-i", "-x", "squashfs", "-x", "devtmpfs"],
    "file_nr": lambda: ["cat", "/proc/sys/fs/file-nr"],
    "fd_counts": lambda: ["sh", "-c", _FD_COUNTS],
    "meminfo": lambda: ["cat", "/proc/meminfo"],
    "cgroup_memory": lambda: ["sh", "-c", _CGROUP_MEMORY],
    "oom_log": lambda: ["sh", "-c", _OOM_LOG],
    "ps_states": lambda: ["ps", "-e", "-o", "pid=,ppid=,stat=,comm="],
    "failed_units_json": lambda: ["systemctl", "list-units", "--state=failed", "--all",
                                  "--output=json", "--no-pager"],  # systemd 246 and later
    "failed_units": lambda: ["systemctl", "list-units", "--state=failed", "--all",
                             "--no-legend", "--plain", "--no-pager"],
    "listening_tcp": lambda: ["cat", "/proc/net/tcp", "/proc/net/tcp6"],
    # Which process holds which socket: the fd links of the processes the user may read.
    "socket_links": lambda: ["sh", "-c", "ls -l /proc/[0-9]*/fd 2>/dev/null; exit 0"],
    "timedatectl": lambda: ["timedatectl", "show"],
    "chrony_tracking": lambda: ["chronyc", "-n", "tracking"],
}
_CLASH = FIXED.keys() & HOST_COMMANDS.keys()
if _CLASH:  # a name may mean one command only
    raise RuntimeError(f"fixed ssh commands defined twice: {sorted(_CLASH)}")
FIXED.update(HOST_COMMANDS)


# Grading


def graded(level: Level, summary: str, **values: Any) -> dict[str, Any]:
    return {"ok": level == "ok", "level": level, "summary": summary, **values}


class Thresholds(FanOut):
    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        pairs = [(name[: -len("_warning")], value) for name, value in self if
                 name.endswith("_warning")]
        for stem, warning in pairs:
            critical = getattr(self, f"{stem}_critical", None)
            if warning is None or critical is None:
                continue
            worse_is_lower = stem.endswith(("available_pct", "free_pct"))
            if (warning < critical) if worse_is_lower else (warning > critical):
                raise ValueError(f"{stem}_warning must come before {stem}_critical")
        return self


def _each(probe: SshProbe, params: FanOut, on: Callable[[FixedCommands], dict[str, Any]]
          ) -> dict[str, Any]:
    """The check on each host; on a group, the worst level and the hosts that are not ok."""
    result = probe.each(params, on)
    if "level" in result:  # one host: its fields are at the top
        return result
    hosts = result["hosts"]
    done = {h: e["result"] for h, e in hosts.items() if e.get("ok")}
    level = worst(r["level"] for r in done.values())
    said = [f"{h}: {r['summary']}" for h, r in done.items() if r["level"] != "ok"]
    said += [f"{h}: {e['error']}" for h, e in hosts.items() if not e.get("ok")]
    said += [f"not run on {', '.join(result['not_run'])}"] if result["not_run"] else []
    summary = "; ".join(said) if said else f"all {len(done)} hosts ok"
    return {**result, "ok": level == "ok", "level": level, "summary": summary}


def _failed(host: FixedCommands, out: CommandResult) -> PermanentError:
    if out.timed_out:
        return PermanentError(f"{host.name}: `{out.command}` did not finish within "
                              "command_timeout (stopped)")
    return PermanentError(f"{host.name}: `{out.command}` exited {out.exit_code}: "
                          f"{out.first_error_line()}")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 'es' if noun.endswith('s') else 's'}"


# Inodes


class InodeParams(Thresholds):
    used_pct_warning: float | None = Field(80.0, ge=0, le=100,
                                           description="inodes used, % of a filesystem's")
    used_pct_critical: float | None = Field(90.0, ge=0, le=100)


def parse_df_inodes(text: str) -> list[dict[str, Any]]:
    """`df -P -i` rows with an inode count (some filesystems have none: skipped)."""
    rows = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 6 or not fields[1].isdigit() or int(fields[1]) == 0:
            continue
        total, used = int(fields[1]), int(fields[2])
        rows.append({"mount": " ".join(fields[5:]), "filesystem": fields[0], "inodes": total,
                     "used": used, "free": int(fields[3]),
                     "used_pct": round(100.0 * used / total, 1)})
    return rows


def grade_inodes(rows: list[dict[str, Any]], params: InodeParams) -> dict[str, Any]:
    for row in rows:
        row["level"] = above(row["used_pct"], params.used_pct_warning, params.used_pct_critical)
    bad = sorted((r for r in rows if r["level"] != "ok"), key=lambda r: -r["used_pct"])
    level = worst(r["level"] for r in rows)
    if bad:
        summary = "; ".join(f"{r['mount']} has used {r['used_pct']:g}% of its inodes "
                            f"({r['used']}/{r['inodes']}, {r['free']} free)" for r in bad[:3])
        summary += ": many small files (a cache, a spool, session files) - new files fail " \
                   "with 'No space left on device' even with free blocks"
    else:
        fullest = max(rows, key=lambda r: r["used_pct"], default=None)
        summary = (f"inodes ok: fullest {fullest['mount']} at {fullest['used_pct']:g}%"
                   if fullest else "no filesystem reports inodes")
    return graded(level, summary, filesystems=rows,
                  over_threshold=[r["mount"] for r in bad])


def inode_usage(probe: SshProbe, params: InodeParams) -> dict[str, Any]:
    def on(host: FixedCommands) -> dict[str, Any]:
        df = host.run_fixed("df_inodes")
        if not df.stdout.strip():  # an unreadable mount alone makes df exit 1: keep the rest
            raise _failed(host, df)
        return grade_inodes(parse_df_inodes(df.stdout), params)
    return _each(probe, params, on)


# File descriptors


class FdParams(Thresholds):
    system_pct_warning: float | None = Field(80.0, ge=0, le=100,
                                             description="open files, % of fs.file-max")
    system_pct_critical: float | None = Field(90.0, ge=0, le=100)
    process_pct_warning: float | None = Field(80.0, ge=0, le=100, description=
                                              "a process's fds, % of its soft RLIMIT_NOFILE")
    process_pct_critical: float | None = Field(95.0, ge=0, le=100)
    top: int = Field(5, ge=1, le=100, description="processes listed, most fds first")


def parse_file_nr(text: str) -> tuple[int, int]:
    """(allocated, max) from /proc/sys/fs/file-nr: "allocated unused max"."""
    allocated, _unused, maximum = (int(f) for f in text.split()[:3])
    return allocated, maximum


def parse_fd_counts(text: str) -> list[dict[str, Any]]:
    """"PID FDS LIMIT COMM" lines; LIMIT is "unlimited" or "-" (unread) as well."""
    procs = []
    for line in text.splitlines():
        fields = line.split(None, 3)
        if len(fields) < 3 or not (fields[0].isdigit() and fields[1].isdigit()):
            continue
        limit = int(fields[2]) if fields[2].isdigit() else None
        fds = int(fields[1])
        procs.append({"pid": int(fields[0]), "fds": fds, "limit": limit,
                      "pct_of_limit": round(100.0 * fds / limit, 1) if limit else None,
                      "command": fields[3] if len(fields) > 3 else "?"})
    return sorted(procs, key=lambda p: (-(p["pct_of_limit"] or 0), -p["fds"]))


def parse_process_total(text: str) -> int | None:
    """The fd script's first line, "processes N": every process, readable or not."""
    first = text.split("\n", 1)[0].split()
    return int(first[1]) if len(first) == 2 and first[0] == "processes" \
        and first[1].isdigit() else None


def grade_fds(allocated: int, maximum: int, procs: list[dict[str, Any]], params: FdParams,
              processes_total: int | None = None) -> dict[str, Any]:
    system_pct = round(100.0 * allocated / maximum, 2) if maximum else None
    system_level = above(system_pct, params.system_pct_warning, params.system_pct_critical)
    for proc in procs:
        proc["level"] = above(proc["pct_of_limit"], params.process_pct_warning,
                              params.process_pct_critical)
    bad = [p for p in procs if p["level"] != "ok"]
    said = []
    if system_level != "ok":
        said.append(f"{allocated} of {maximum} file handles in use system-wide "
                    f"({system_pct:g}% of fs.file-max): a leak, or file-max set too low")
    said += [f"pid {p['pid']} ({p['command']}) holds {p['fds']} fds, {p['pct_of_limit']:g}% "
             f"of its limit {p['limit']}: it leaks descriptors or its nofile limit is too low "
             "(next open fails with EMFILE)" for p in bad[:3]]
    level = worst([system_level, *(p["level"] for p in procs)])
    summary = "; ".join(said) if said else (
        f"fds ok: {allocated}/{maximum} system-wide, busiest "
        + (f"pid {procs[0]['pid']} ({procs[0]['command']}) at {procs[0]['fds']}"
           if procs else "process unreadable")
        # A non-root login reads only its own processes' fds: say how much was looked at.
        + (f"; per process: {len(procs)} of {processes_total} processes readable"
           if processes_total is not None and len(procs) < processes_total else ""))
    return graded(level, summary, allocated=allocated, max=maximum, system_pct=system_pct,
                  top=sorted(procs, key=lambda p: -p["fds"])[:params.top],
                  over_threshold=bad[:params.top], processes_read=len(procs),
                  processes_total=processes_total)


def fd_usage(probe: SshProbe, params: FdParams) -> dict[str, Any]:
    def on(host: FixedCommands) -> dict[str, Any]:
        file_nr = host.run_fixed("file_nr")
        if file_nr.exit_code != 0:
            raise _failed(host, file_nr)
        counts = host.run_fixed("fd_counts")
        allocated, maximum = parse_file_nr(file_nr.stdout)
        return grade_fds(allocated, maximum, parse_fd_counts(counts.stdout), params,
                         parse_process_total(counts.stdout))
    return _each(probe, params, on)


# Memory, swap and the OOM killer


class MemoryParams(Thresholds):
    available_pct_warning: float | None = Field(10.0, ge=0, le=100,
                                                description="MemAvailable, % of MemTotal")
    available_pct_critical: float | None = Field(5.0, ge=0, le=100)
    swap_used_pct_warning: float | None = Field(50.0, ge=0, le=100)
    swap_used_pct_critical: float | None = Field(80.0, ge=0, le=100)
    cgroup_used_pct_warning: float | None = Field(90.0, ge=0, le=100, description=
                                                  "usage, % of the memory cgroup's limit")
    cgroup_used_pct_critical: float | None = Field(98.0, ge=0, le=100)
    oom_kills_warning: int | None = Field(1, ge=0, description="OOM kills seen (kernel log "
                                          "lines, or the memory cgroup's oom_kill count)")
    oom_kills_critical: int | None = Field(None, ge=0)


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as {field: kB}."""
    values = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[name.strip()] = int(fields[0])
    return values


_UNLIMITED = 2**60  # cgroup v1 writes "no limit" as about 2^63


def parse_cgroup_memory(text: str) -> dict[str, int | None]:
    """The `== FILE` sections of the cgroup script: limit and usage in bytes (None: no
    limit, or not read), and the OOM kills counted in the cgroup (None: not read)."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("== "):
            current = sections.setdefault(line[3:].strip(), [])
        else:
            current.append(line.strip())

    def number(name: str) -> int | None:
        lines = sections.get(name)
        if not lines or not lines[0].isdigit():
            return None
        return int(lines[0]) if int(lines[0]) < _UNLIMITED else None

    def counter(name: str, key: str) -> int | None:
        for line in sections.get(name, []):
            field, _, value = line.partition(" ")
            if field == key and value.strip().isdigit():
                return int(value)
        return None

    limit = number("memory.max") or number("memory.limit_in_bytes")
    usage = number("memory.current") or number("memory.usage_in_bytes")
    kills = counter("memory.events", "oom_kill")
    if kills is None:
        kills = counter("memory.oom_control", "oom_kill")
    return {"limit": limit, "usage": usage, "oom_kills": kills}


def parse_oom_log(text: str) -> tuple[str | None, list[str]]:
    """(the kernel log read, or None when none was readable; its OOM-killer lines)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("source "):
        return None, []
    return lines[0][len("source "):], [line for line in lines[1:] if line.strip()]


def _mb(kb_or_bytes: float, unit: int = 1024) -> str:
    return f"{kb_or_bytes * unit / 2**20:.0f} MB"


def grade_memory(meminfo: Mapping[str, int], cgroup: Mapping[str, int | None],
                 oom_source: str | None, oom_lines: list[str], params: MemoryParams
                 ) -> dict[str, Any]:
    total, available = meminfo.get("MemTotal", 0), meminfo.get("MemAvailable")
    available_pct = round(100.0 * available / total, 1) if total and available is not None \
        else None
    swap_total, swap_free = meminfo.get("SwapTotal", 0), meminfo.get("SwapFree", 0)
    swap_used_pct = round(100.0 * (swap_total - swap_free) / swap_total, 1) if swap_total \
        else None
    limit, usage = cgroup["limit"], cgroup["usage"]
    cgroup_pct = round(100.0 * usage / limit, 1) if limit and usage is not None else None
    # The cgroup's counter is exact for what runs here; the log may see the whole machine.
    kills = max(len([ln for ln in oom_lines if "killed process" in ln.lower()]),
                cgroup["oom_kills"] or 0)
    oom_checked = oom_source is not None or cgroup["oom_kills"] is not None
    levels = {
        "available": below(available_pct, params.available_pct_warning,
                           params.available_pct_critical),
        "swap": above(swap_used_pct, params.swap_used_pct_warning,
                      params.swap_used_pct_critical),
        "cgroup": above(cgroup_pct, params.cgroup_used_pct_warning,
                        params.cgroup_used_pct_critical),
        "oom": above(kills if oom_checked else None, params.oom_kills_warning,
                     params.oom_kills_critical),
    }
    said = []
    if levels["oom"] != "ok":
        where = f"memory cgroup (limit {_mb(limit, 1)})" if limit else "kernel log"
        last = f"; last: {oom_lines[-1].strip()[:160]}" if oom_lines else ""
        said.append(f"the OOM killer killed {_plural(kills, 'process')} (per the {where}): "
                    f"memory ran out{last}")
    if levels["available"] != "ok":
        said.append(f"only {available_pct:g}% of memory available "
                    f"({_mb(available or 0)} of {_mb(total)})")
    if levels["cgroup"] != "ok" and limit is not None and usage is not None:
        said.append(f"memory cgroup at {cgroup_pct:g}% of its limit "
                    f"({_mb(usage, 1)} of {_mb(limit, 1)})")
    if levels["swap"] != "ok":
        said.append(f"{swap_used_pct:g}% of swap in use: the host has been short of memory")
    oom_log = oom_source or "not checked: no readable kernel log (dmesg, journalctl -k, " \
        "/var/log/kern.log)"
    if not said:
        said.append((f"memory ok: {available_pct:g}% available" if available_pct is not None
                     else "memory not graded: no MemAvailable (kernel before 3.14)")
                    + (f", swap {swap_used_pct:g}% used" if swap_used_pct is not None
                       else ", no swap")
                    + (f", {cgroup['oom_kills']} OOM kills in its cgroup"
                       if cgroup["oom_kills"] is not None else "")
                    + ("" if oom_source else "; kernel log not checked (unreadable)"))
    return graded(worst(levels.values()), "; ".join(said), total_kb=total,
                  available_kb=available, available_pct=available_pct,
                  swap_total_kb=swap_total, swap_used_pct=swap_used_pct,
                  cgroup_limit=limit, cgroup_usage=usage, cgroup_used_pct=cgroup_pct,
                  oom_kills=kills if oom_checked else None, oom_log=oom_log,
                  oom_lines=oom_lines[-10:])


def memory(probe: SshProbe, params: MemoryParams) -> dict[str, Any]:
    def on(host: FixedCommands) -> dict[str, Any]:
        meminfo = host.run_fixed("meminfo")
        if meminfo.exit_code != 0:
            raise _failed(host, meminfo)
        source, lines = parse_oom_log(host.run_fixed("oom_log").stdout)
        return grade_memory(parse_meminfo(meminfo.stdout),
                            parse_cgroup_memory(host.run_fixed("cgroup_memory").stdout),
                            source, lines, params)
    return _each(probe, params, on)


# Zombies


class ZombieParams(Thresholds):
    zombies_warning: int | None = Field(5, ge=0, description="zombie processes (nagios "
                                        "check_procs -s Z defaults)")
    zombies_critical: int | None = Field(20, ge=0)


def parse_zombies(text: str) -> list[dict[str, Any]]:
    """Processes in state Z from `ps -o pid=,ppid=,stat=,comm=`, each with its parent."""
    rows = [line.split(None, 3) for line in text.splitlines()]
    procs = {int(r[0]): r for r in rows if len(r) >= 3 and r[0].isdigit() and r[1].isdigit()}
    zombies = []
    for pid, (_, ppid, stat, *comm) in procs.items():
        if stat.startswith("Z"):
            parent = procs.get(int(ppid))
            zombies.append({"pid": pid, "command": comm[0] if comm else "?",
                            "ppid": int(ppid),
                            "parent": parent[3] if parent and len(parent) > 3 else None})
    return zombies


def grade_zombies(zombies: list[dict[str, Any]], params: ZombieParams) -> dict[str, Any]:
    parents: dict[int, dict[str, Any]] = {}
    for zombie in zombies:
        entry = parents.setdefault(zombie["ppid"], {"ppid": zombie["ppid"],
                                                    "command": zombie["parent"], "zombies": 0})
        entry["zombies"] += 1
    by_parent = sorted(parents.values(), key=lambda p: -p["zombies"])
    level = above(len(zombies), params.zombies_warning, params.zombies_critical)
    if not zombies:
        summary = "no zombie processes"
    else:
        named = ", ".join(f"{p['zombies']} of pid {p['ppid']} ({p['command'] or '?'})"
                          for p in by_parent[:3])
        summary = (f"{_plural(len(zombies), 'zombie process')} ({named}): the parent does "
                   "not reap its children (wait()); fix or restart the parent, killing the "
                   "zombies does nothing")
    return graded(level, summary, zombies=len(zombies), by_parent=by_parent,
                  processes=zombies[:50])


def zombies(probe: SshProbe, params: ZombieParams) -> dict[str, Any]:
    def on(host: FixedCommands) -> dict[str, Any]:
        ps = host.run_fixed("ps_states")
        if ps.exit_code != 0:
            raise _failed(host, ps)
        return grade_zombies(parse_zombies(ps.stdout), params)
    return _each(probe, params, on)


# Failed systemd units


class FailedUnitsParams(Thresholds):
    failed_warning: int | None = Field(None, ge=0, description="failed units for a warning")
    failed_critical: int | None = Field(1, ge=0, description="failed units for critical")


def parse_failed_units(text: str) -> list[dict[str, str]]:
    """`systemctl list-units --state=failed --plain --no-legend`: UNIT LOAD ACTIVE SUB DESC."""
    units = []
    for line in text.splitlines():
        fields = line.split(None, 4)
        if len(fields) >= 4:
            units.append({"unit": fields[0], "load": fields[1], "active": fields[2],
                          "sub": fields[3], "description": fields[4] if len(fields) > 4
                          else ""})
    return units


def parse_failed_units_json(text: str) -> list[dict[str, str]]:
    """`systemctl list-units --output=json`: [{unit, load, active, sub, description}]."""
    import json

    return [{field: str(unit.get(field, "")) for field in
             ("unit", "load", "active", "sub", "description")} for unit in json.loads(text)]


def grade_failed_units(units: list[dict[str, str]], params: FailedUnitsParams
                       ) -> dict[str, Any]:
    level = above(len(units), params.failed_warning, params.failed_critical)
    if units:
        names = ", ".join(f"{u['unit']} ({u['sub']})" for u in units[:5])
        summary = (f"{_plural(len(units), 'failed systemd unit')}: {names}; "
                   "`journalctl -u UNIT` says why")
    else:
        summary = "no failed systemd units"
    return graded(level, summary, failed=len(units), units=units)


def failed_units(probe: SshProbe, params: FailedUnitsParams) -> dict[str, Any]:
    def on(host: FixedCommands) -> dict[str, Any]:
        if host.run_fixed("has_systemd").exit_code != 0:
            raise PermanentError(f"{host.name}: not checked: no systemd (no "
                                 "/run/systemd/system), so no unit state to read")
        as_json = host.run_fixed("failed_units_json")
        if as_json.exit_code == 0 and not as_json.truncated:
            return grade_failed_units(parse_failed_units_json(as_json.stdout), params)
        out = host.run_fixed("failed_units")  # a systemd without JSON output
        if out.exit_code != 0:
            raise _failed(host, out)
        return grade_failed_units(parse_failed_units(out.stdout), params)
    return _each(probe, params, on)


# Listening ports


Port = int


class PortParams(FanOut):
    expected: list[Port] = Field(default_factory=list, max_length=200,
                                 description="TCP ports that must be listening")
    allowed: list[Port] = Field(default_factory=list, max_length=200, description=
                                "ports that may listen without being required")
    unexpected_level: Literal["ok", "warning", "critical"] = Field(
        "warning", description="level of a port listening that is neither")
    missing_level: Literal["warning", "critical"] = Field("critical")

    @model_validator(mode="after")
    def _ports(self) -> PortParams:
        if any(not 1 <= p <= 65535 for p in [*self.expected, *self.allowed]):
            raise ValueError("a port is 1..65535")
        return self


_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return ".".join(str(b) for b in reversed(raw))
    # IPv6: four 32-bit words, each in host (little-endian) order
    words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
    return str(IPv6Address(b"".join(words)))


def parse_proc_net_tcp(text: str) -> list[dict[str, Any]]:
    """The listening sockets of /proc/net/tcp and tcp6: [{address, port, inode}], sorted."""
    seen = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[0] == "sl" or fields[3] != _LISTEN:
            continue
        address, _, port = fields[1].partition(":")
        inode = int(fields[9]) if len(fields) > 9 and fields[9].isdigit() else None
        seen[(_address(address), int(port, 16))] = inode
    return [{"address": a, "port": p, "inode": seen[(a, p)]}
            for a, p in sorted(seen, key=lambda s: (s[1], s[0]))]


def parse_socket_links(text: str) -> dict[int, int]:
    """{socket inode: pid} from `ls -l /proc/*/fd`: "/proc/PID/fd:" headers, then links
    "... 3 -> socket:[INODE]"."""
    owners: dict[int, int] = {}
    pid = None
    for line in text.splitlines():
        if line.startswith("/proc/") and line.endswith("/fd:"):
            number = line.split("/")[2]
            pid = int(number) if number.isdigit() else None
        elif pid is not None and "-> socket:[" in line:
            inode = line.rsplit("socket:[", 1)[1].rstrip("]")
            if inode.isdigit():
                owners.setdefault(int(inode), pid)
    return owners


def name_owners(listening: list[dict[str, Any]], owners: dict[int, int],
                commands: dict[int, str]) -> None:
    """Each socket's `pid` and `command` where the login user could see its process."""
    for socket in listening:
        pid = owners.get(socket["inode"]) if socket["inode"] else None
        socket["pid"], socket["command"] = pid, commands.get(pid) if pid else None


def grade_ports(listening: list[dict[str, Any]], params: PortParams) -> dict[str, Any]:
    ports = sorted({s["port"] for s in listening})
    missing = sorted(set(params.expected) - set(ports))
    unexpected = sorted(set(ports) - set(params.expected) - set(params.allowed))
    levels: list[str] = [params.missing_level] if missing else []
    if unexpected:
        levels.append(params.unexpected_level)
    said = []
    if missing:
        said.append(f"nothing listens on expected port(s) {', '.join(map(str, missing))}: "
                    "the service is down or bound elsewhere")
    if unexpected and params.unexpected_level != "ok":
        where = ", ".join(f"{s['address']}:{s['port']}" + (
            f" (pid {s['pid']} {s['command']})" if s.get("pid") else "")
            for s in listening if s["port"] in unexpected)
        said.append(f"unexpected listener(s) on {where}: a stray or unknown service")
    summary = "; ".join(said) if said else (
        f"ports ok: listening on {', '.join(map(str, ports)) or 'nothing'}")
    return graded(worst(levels), summary, listening=listening, ports=ports, missing=missing,
                  unexpected=unexpected)


def listening_ports(probe: SshProbe, params: PortParams) -> dict[str, Any]:
    def on(host: FixedCommands) -> dict[str, Any]:
        out = host.run_fixed("listening_tcp")
        if not out.stdout.strip():  # no IPv6 makes cat exit 1: the IPv4 table still counts
            raise _failed(host, out)
        listening = parse_proc_net_tcp(out.stdout)
        ps = host.run_fixed("ps_states")
        commands = {int(pid): comm for pid, _, _, comm in
                    (line.split(None, 3) for line in ps.stdout.splitlines()
                     if len(line.split(None, 3)) == 4) if pid.isdigit()}
        name_owners(listening, parse_socket_links(host.run_fixed("socket_links").stdout),
                    commands)
        return grade_ports(listening, params)
    return _each(probe, params, on)


# Clock


class ClockParams(Thresholds):
    offset_ms_warning: float | None = Field(100.0, ge=0, description="|offset| from NTP, ms")
    offset_ms_critical: float | None = Field(1000.0, ge=0)
    unsynchronised: Literal["warning", "critical"] = Field(
        "critical", description="level when the clock is not synchronised")


def parse_timedatectl(text: str) -> dict[str, str]:
    return dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)


def parse_chrony_tracking(text: str) -> dict[str, Any]:
    """`chronyc tracking`: offset (s, + fast), leap status, reference."""
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":")
                                                   for line in text.splitlines()) if v}
    offset = None
    system_time = fields.get("System time", "").split()
    if len(system_time) >= 3:
        offset = float(system_time[0]) * (-1 if system_time[2] == "slow" else 1)
    return {"offset_s": offset, "leap_status": fields.get("Leap status"),
            "reference": fields.get("Reference ID"),
            "synchronised": fields.get("Leap status") not in (None, "Not synchronised")}


def grade_clock(source: str, synchronised: bool, offset_s: float | None,
                params: ClockParams, detail: dict[str, Any]) -> dict[str, Any]:
    offset_ms = None if offset_s is None else round(offset_s * 1000, 3)
    offset_level = above(None if offset_ms is None else abs(offset_ms),
                         params.offset_ms_warning, params.offset_ms_critical)
    said = []
    if not synchronised:
        said.append(f"clock not synchronised ({source}): NTP is off or cannot reach a "
                    "server; time drifts, and TLS, tokens and log order go wrong")
    if offset_level != "ok":
        said.append(f"clock {offset_ms:g} ms off NTP time ({source})")
    level = worst([offset_level, "ok" if synchronised else params.unsynchronised])
    summary = "; ".join(said) if said else (
        f"clock synchronised ({source})"
        + (f", offset {offset_ms:g} ms" if offset_ms is not None else ""))
    return graded(level, summary, source=source, synchronised=synchronised,
                  offset_ms=offset_ms, **detail)


def clock(probe: SshProbe, params: ClockParams) -> dict[str, Any]:
    def on(host: FixedCommands) -> dict[str, Any]:
        chrony = host.run_fixed("chrony_tracking")
        if chrony.exit_code == 0:
            tracking = parse_chrony_tracking(chrony.stdout)
            return grade_clock("chronyc tracking", tracking["synchronised"],
                               tracking["offset_s"], params,
                               {"leap_status": tracking["leap_status"],
                                "reference": tracking["reference"]})
        if host.run_fixed("has_systemd").exit_code == 0:
            show = host.run_fixed("timedatectl")
            if show.exit_code == 0:
                props = parse_timedatectl(show.stdout)
                return grade_clock("timedatectl", props.get("NTPSynchronized") == "yes", None,
                                   params, {"ntp_enabled": props.get("NTP") == "yes"})
        raise PermanentError(f"{host.name}: not checked: neither chronyc tracking nor "
                             "timedatectl answered (no chrony, no systemd)")
    return _each(probe, params, on)


# Registration

_GRADED = {"ok": "level is ok", "level": "ok, warning or critical (on a group: the worst)",
           "summary": "one line: what is wrong and why"}
_PER_HOST = {"hosts": "{host: {ok, result | error}}", "ok_count / failed_count": "hosts",
             "not_run": "hosts not started once max_errors was passed"}

KINDS: tuple[tuple[str, Callable[..., dict[str, Any]], type[FanOut], str, dict[str, str]],
             ...] = (
    ("inode_usage", inode_usage, InodeParams, "inodes used per filesystem (df -i)",
     {"filesystems": "[{mount, filesystem, inodes, used, free, used_pct, level}]",
      "over_threshold": "mounts at a warning or worse"}),
    ("fd_usage", fd_usage, FdParams,
     "open file descriptors: system-wide (/proc/sys/fs/file-nr) and per process against its "
     "nofile limit (/proc/PID/fd, the processes the login user may read)",
     {"allocated / max / system_pct": "file handles", "top": "[{pid, fds, limit, "
      "pct_of_limit, command}] most fds first", "over_threshold": "processes near their limit",
      "processes_read / processes_total": "processes whose fds were counted (a non-root login "
      "reads only its own) / all"}),
    ("memory", memory, MemoryParams,
     "memory and swap (/proc/meminfo), the memory cgroup's limit and OOM kills, OOM-killer "
     "lines of the kernel log (dmesg, else journalctl -k, else /var/log/kern.log)",
     {"available_pct / swap_used_pct / cgroup_used_pct": "%", "oom_kills": "None: not checked",
      "oom_log": "the log read, or 'not checked: ...'", "oom_lines": "the last OOM lines"}),
    ("zombies", zombies, ZombieParams, "zombie processes (ps state Z) and their parents",
     {"zombies": "how many", "by_parent": "[{ppid, command, zombies}]"}),
    ("failed_units", failed_units, FailedUnitsParams,
     "failed systemd units (systemctl list-units --state=failed, JSON where systemd has it); "
     "fails 'not checked' "
     "without systemd", {"failed": "how many", "units": "[{unit, load, active, sub, "
                         "description}]"}),
    ("listening_ports", listening_ports, PortParams,
     "TCP listeners (/proc/net/tcp, tcp6) against the expected ports: missing and unexpected",
     {"ports": "listening", "missing": "expected, not listening", "unexpected": "listening, "
      "neither expected nor allowed", "listening": "[{address, port, inode, pid, command}] "
      "(pid: when the login user may read the process)"}),
    ("clock", clock, ClockParams,
     "NTP sync and offset (chronyc tracking, else timedatectl show); fails 'not checked' "
     "with neither", {"synchronised": "bool", "offset_ms": "+ fast (chrony only)",
                      "source": "what was read"}),
)


def register(registry: Registry) -> None:
    for name, func, params, summary, result in KINDS:
        registry.add(StepKind(f"ssh.{name}", KIND, func, params, False, summary,
                              {**_GRADED, **result, **_PER_HOST}, timeout=60.0))
