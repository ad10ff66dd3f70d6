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

paramiko does not follow `Include` itself, so `load` puts each included file in place of
its `Include` line (globs expanded, a relative path under ~/.ssh, as OpenSSH finds them) and
hands paramiko that one text: a host defined in an included file keeps its HostName, User
and Port. After the included text, the includer's own `Host`/`Match` line is repeated, so
what follows the `Include` stays in the block it was written in (OpenSSH restores it too).
An `Include` inside a `Host`/`Match` block includes its file unconditionally here, while
OpenSSH reads it only when that block matches; for a file without its own `Host`/`Match`
lines this is the same. A file beside the config (not under ~/.ssh) is scanned for the
directives above but not used, since OpenSSH would not read it.
"""

from __future__ import annotations

import glob
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import PermanentError

MAX_INCLUDE_DEPTH = 16  # OpenSSH's READCONF_MAX_DEPTH
# paramiko's SSHConfig.SETTINGS_REGEX: `Key value` or `Key = value`.
_SETTING = re.compile(r"(\w+)(?:\s*=\s*|\s+)(.+)")
_GLOBAL = "Host *"  # the block of lines before any Host/Match
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


def load(target: str, path: Path) -> Any:
    """paramiko's SSHConfig of the file at `path` with its `Include`s in place; refused
    first (PermanentError, naming each directive) when any of it asks for a local command."""
    import paramiko

    scan = refuse_local_commands(target, path)
    return paramiko.SSHConfig.from_text("\n".join(scan.lines))


def refuse_local_commands(target: str, path: Path) -> _Scan:
    """PermanentError, naming each directive, when the config at `path` asks for one; else
    what was read."""
    try:
        scan = _scan(path)
        asked = scan.asked()
    except OSError as exc:
        raise PermanentError(f"{target}: cannot read the ssh config {path} (or a file it "
                             f"includes): {exc.strerror or exc}") from None
    if asked:
        raise PermanentError(
            f"{target}: refusing the ssh config {path}: it asks to run a command on this "
            f"machine ({'; '.join(map(str, asked))}), and runbook runs none for SSH. "
            "Remove it (ProxyJump instead of ProxyCommand), or give the target an "
            "`ssh_config:` without it")
    return scan


def local_commands(path: Path) -> list[LocalCommand]:
    """Every directive in `path` and the files it includes that would run a local command.
    A file that cannot be read raises OSError (it might hold anything)."""
    return _scan(path).asked()


def _scan(path: Path) -> _Scan:
    scan = _Scan()
    scan.file(path.expanduser(), depth=0, block=_GLOBAL, used=True)
    return scan


@dataclass
class _Scan:
    found: list[LocalCommand] = field(default_factory=list)
    local: list[LocalCommand] = field(default_factory=list)
    permits_local_command: bool = False
    seen: set[Path] = field(default_factory=set)
    lines: list[str] = field(default_factory=list)  # the config, its Includes in place

    def asked(self) -> list[LocalCommand]:
        # LocalCommand runs only where PermitLocalCommand is yes, which any file may say.
        return self.found + (self.local if self.permits_local_command else [])

    def file(self, path: Path, depth: int, block: str, used: bool) -> None:
        """Scan `path`; when OpenSSH would read it (`used`), add its lines, in `block` (the
        includer's Host/Match line) until it opens its own."""
        if path.resolve() in self.seen:
            return
        self.seen.add(path.resolve())
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            setting = _SETTING.match(line) if line and not line.startswith("#") else None
            key = setting.group(1).lower() if setting else ""
            if key in ("host", "match"):
                block = line
            if used and key != "include":
                self.lines.append(raw)
            if setting:
                self.directive(path, number, key, setting.group(2).strip(), depth,
                               block if used else None)

    def directive(self, path: Path, number: int, key: str, value: str, depth: int,
                  block: str | None = None) -> None:
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
            for included, by_openssh in _included(path, value):
                self.file(included, depth + 1, block or _GLOBAL, block is not None and by_openssh)
            if block is not None:
                self.lines.append(block)  # back in the includer's block


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


def _included(config: Path, value: str) -> list[tuple[Path, bool]]:
    """The files an `Include` line names, as OpenSSH finds them: `~` expanded, a relative
    path under ~/.ssh; globs expanded, in name order. The config's own directory is searched
    as well, so that a file meant to sit beside it is not missed by the scan (the bool:
    whether OpenSSH reads the file)."""
    try:
        patterns = shlex.split(value)
    except ValueError:
        patterns = value.split()
    files: dict[Path, bool] = {}
    for pattern in patterns:
        expanded = Path(pattern).expanduser()
        bases = [(expanded, True)] if expanded.is_absolute() else \
            [(Path("~/.ssh").expanduser() / expanded, True), (config.parent / expanded, False)]
        for base, by_openssh in bases:
            for name in sorted(glob.glob(str(base))):
                if Path(name).is_file():
                    files[Path(name)] = files.get(Path(name), False) or by_openssh
    return list(files.items())
