"""What runs on a host: the command line sshd is handed, the fixed commands a probe may run
(and nothing else), and what a command's run gives back."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.errors import PermanentError
from runner.redact import SECRETS

if TYPE_CHECKING:
    from .host import Host

KILL_GRACE = 2.0  # seconds between `timeout`'s TERM and its KILL


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
