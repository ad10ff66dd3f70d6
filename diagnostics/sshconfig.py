"""The ssh config files runbook reads, checked before paramiko looks anything up in them.

paramiko's `SSHConfig.lookup` runs a `Match exec` command on this machine (through invoke)
while it matches hosts, so a config that says `Match exec "touch FILE"` would run that just
by being read. runbook runs no local command for SSH: a config that asks for one anywhere
(in the file or in one it `Include`s, as OpenSSH would read them) is refused as a whole,
before any lookup, with the file and line that asks:

* `Match ... exec CMD` (and `!exec`): OpenSSH and paramiko run CMD to decide the match;
* `ProxyCommand CMD` (except `none`): use ProxyJump, which runbook follows itself;
* `LocalCommand` together with `PermitLocalCommand yes`: runs CMD after connecting;
* `KnownHostsCommand CMD`: runs CMD to list host keys.

paramiko does not follow `Include` itself; the included files are read here only to find
such directives (OpenSSH reads them, so a config meant for both must not hide one there).
"""

from __future__ import annotations

import glob
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import PermanentError

MAX_INCLUDE_DEPTH = 16  # OpenSSH's READCONF_MAX_DEPTH
# paramiko's SSHConfig.SETTINGS_REGEX: `Key value` or `Key = value`.
_SETTING = re.compile(r"(\w+)(?:\s*=\s*|\s+)(.+)")
# Match criteria that take no argument (the others take one).
_BARE_CRITERIA = {"all", "canonical", "final"}


@dataclass(frozen=True)
class LocalCommand:
    """A directive that would run a command on this machine."""

    file: Path
    line: int
    directive: str  # as written, e.g. "Match exec"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.directive}"


def refuse_local_commands(target: str, path: Path) -> None:
    """PermanentError, naming each directive, when the config at `path` asks for one."""
    try:
        asked = local_commands(path)
    except OSError as exc:
        raise PermanentError(f"{target}: cannot read the ssh config {path} (or a file it "
                             f"includes): {exc.strerror or exc}") from None
    if asked:
        raise PermanentError(
            f"{target}: refusing the ssh config {path}: it asks to run a command on this "
            f"machine ({'; '.join(map(str, asked))}), and runbook runs none for SSH. "
            "Remove it (ProxyJump instead of ProxyCommand), or give the target an "
            "`ssh_config:` without it")


def local_commands(path: Path) -> list[LocalCommand]:
    """Every directive in `path` and the files it includes that would run a local command.
    A file that cannot be read raises OSError (it might hold anything)."""
    scan = _Scan()
    scan.file(path.expanduser(), depth=0)
    # LocalCommand runs only where PermitLocalCommand is yes, which any file may say.
    return scan.found + (scan.local if scan.permits_local_command else [])


@dataclass
class _Scan:
    found: list[LocalCommand] = field(default_factory=list)
    local: list[LocalCommand] = field(default_factory=list)
    permits_local_command: bool = False
    seen: set[Path] = field(default_factory=set)

    def file(self, path: Path, depth: int) -> None:
        if path.resolve() in self.seen:
            return
        self.seen.add(path.resolve())
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            setting = _SETTING.match(line) if line and not line.startswith("#") else None
            if setting:
                self.directive(path, number, setting.group(1).lower(),
                               setting.group(2).strip(), depth)

    def directive(self, path: Path, number: int, key: str, value: str, depth: int) -> None:
        bare = value.strip('"').lower()
        if key == "match" and _matches_by_exec(value):
            self.found.append(LocalCommand(path, number, "Match exec"))
        elif key in ("proxycommand", "knownhostscommand") and bare != "none":
            name = "ProxyCommand" if key == "proxycommand" else "KnownHostsCommand"
            self.found.append(LocalCommand(path, number, name))
        elif key == "localcommand":
            self.local.append(LocalCommand(path, number, "LocalCommand"))
        elif key == "permitlocalcommand" and bare in ("yes", "true"):
            self.permits_local_command = True
        elif key == "include":
            if depth >= MAX_INCLUDE_DEPTH:
                self.found.append(LocalCommand(path, number, "Include nested too deep"))
                return
            for included in _included(path, value):
                self.file(included, depth + 1)


def _matches_by_exec(value: str) -> bool:
    try:
        tokens = shlex.split(value)
    except ValueError:
        return "exec" in value.lower()  # unparsable: refuse on the word alone
    while tokens:
        criterion = tokens.pop(0).lstrip("!").lower()
        if criterion == "exec":
            return True
        if criterion not in _BARE_CRITERIA and tokens:
            tokens.pop(0)  # its argument
    return False


def _included(config: Path, value: str) -> list[Path]:
    """The files an `Include` line names, as OpenSSH finds them: `~` expanded, a relative
    path under ~/.ssh; globs expanded. The config's own directory is searched as well, so
    that a file meant to sit beside it is not missed."""
    try:
        patterns = shlex.split(value)
    except ValueError:
        patterns = value.split()
    files: set[Path] = set()
    for pattern in patterns:
        expanded = Path(pattern).expanduser()
        bases = [expanded] if expanded.is_absolute() else \
            [Path("~/.ssh").expanduser() / expanded, config.parent / expanded]
        for base in bases:
            files.update(Path(p) for p in glob.glob(str(base)) if Path(p).is_file())
    return sorted(files)
