"""Where runbook finds playbooks and inventory, and keeps its journal."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def home() -> Path:
    """RUNBOOK_HOME, else the user's state dir (XDG), e.g. ~/.local/state/runbook."""
    if explicit := os.environ.get("RUNBOOK_HOME"):
        return Path(explicit).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "runbook"


def _search(env_var: str, folder: str, *, cwd: bool) -> list[Path]:
    if explicit := os.environ.get(env_var):
        return [Path(p).expanduser() for p in explicit.split(os.pathsep) if p]
    candidates = [
        *([Path.cwd() / folder] if cwd else []),
        _PACKAGE.parent / folder,  # a source checkout (editable install)
        _PACKAGE / "_bundled" / folder,  # an installed wheel
    ]
    found: list[Path] = []
    for candidate in candidates:
        if candidate.is_dir() and candidate.resolve() not in {p.resolve() for p in found}:
            found.append(candidate)
    return found


def playbook_dirs() -> list[Path]:
    """RUNBOOK_PLAYBOOKS (os.pathsep-separated), else the shipped ones.

    Never the working directory's ./playbooks unless asked (`--playbooks .` or the
    variable): a file planted where a cron job runs must not decide what it does.
    """
    return _search("RUNBOOK_PLAYBOOKS", "playbooks", cwd=False)


def inventory_paths() -> list[Path]:
    """RUNBOOK_INVENTORY (files or dirs), else ./inventory or the shipped examples.

    Unlike playbooks, inventories do not stack: the first that exists is used, so a team's
    own inventory never mixes with the shipped lab examples.
    """
    return _search("RUNBOOK_INVENTORY", "inventory", cwd=True)[:1]
