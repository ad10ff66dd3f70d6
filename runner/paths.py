"""Where runbook finds playbooks, inventory and configuration, and keeps its journal."""

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


def _shipped(env_var: str, folder: str) -> list[Path]:
    if explicit := os.environ.get(env_var):
        return [Path(p).expanduser() for p in explicit.split(os.pathsep) if p]
    candidates = [
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
    return _shipped("RUNBOOK_PLAYBOOKS", "playbooks")


def config_dirs() -> list[Path]:
    """The user's config dir, $XDG_CONFIG_HOME/runbook (default ~/.config/runbook), then the
    system's, /etc/runbook."""
    user = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return [Path(user) / "runbook", SYSTEM_CONFIG]


SYSTEM_CONFIG = Path("/etc/runbook")


def inventory_candidates() -> list[Path]:
    """Where an inventory is looked for, in order, when none is named: ./inventory, then
    `inventory` in each config dir; each a folder of YAML files or an `inventory.yaml`."""
    places = [Path.cwd(), *config_dirs()]
    return [place / name for place in places for name in ("inventory", "inventory.yaml")]


def inventory_paths() -> list[Path]:
    """RUNBOOK_INVENTORY (files or dirs, os.pathsep-separated), else the first of
    `inventory_candidates()` that exists; else none.

    Inventories do not stack, and the lab's inventory shipped with runbook is never a
    fallback: outside the repository, a command must not silently bind the lab's targets.
    """
    if explicit := os.environ.get("RUNBOOK_INVENTORY"):
        return [Path(p).expanduser() for p in explicit.split(os.pathsep) if p]
    return next(([path] for path in inventory_candidates() if path.exists()), [])
