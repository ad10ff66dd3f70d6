"""Which playbooks exist, by name. Light on purpose: `runbook list` imports only this."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

from .errors import UsageError


def discover(dirs: Iterable[Path]) -> dict[str, Path]:
    """Playbook name (file stem) -> file, earlier folders winning."""
    found: dict[str, Path] = {}
    for folder in dirs:
        for path in sorted(folder.glob("*.y*ml")):
            if path.suffix in {".yaml", ".yml"}:
                found.setdefault(path.stem, path)
    return found


def resolve(name_or_path: str, dirs: Iterable[Path]) -> Path:
    """A playbook file from its name or path; UsageError with suggestions otherwise."""
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"} and candidate.is_file():
        return candidate
    known = discover(dirs)
    if name_or_path in known:
        return known[name_or_path]
    close = difflib.get_close_matches(name_or_path, known, n=2)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise UsageError(f"no playbook named {name_or_path!r}{hint}; "
                     f"`runbook list` shows the {len(known)} there are")
