"""Where a command finds what it works on: playbook folders, the step-kind registry, the
inventory, the approval policy, the journal, and who is at the keyboard."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..inventory import Inventory
    from ..journal import Journal
    from ..loader import LoadedPlaybook
    from ..policy import Policy
    from ..registry import Registry


def playbook_dirs(args: argparse.Namespace) -> list[Path]:
    from .. import paths

    return [Path(p) for p in args.playbooks] if args.playbooks else paths.playbook_dirs()


def registry_of() -> Registry:
    from ..registry import default_registry

    return default_registry()


def inventory_paths_of(args: argparse.Namespace) -> list[Path]:
    from ..paths import inventory_paths

    return [Path(p) for p in args.inventory] if args.inventory else inventory_paths()


def inventory_of(args: argparse.Namespace, registry: Registry,
                 paths: list[Path] | None = None) -> Inventory:
    from .. import inventory
    from ..errors import UsageError
    from ..paths import inventory_candidates

    paths = paths if paths is not None else inventory_paths_of(args)
    if not paths:
        looked = ", ".join(str(p) for p in inventory_candidates()[::2])
        raise UsageError(f"no inventory: none named (--inventory, RUNBOOK_INVENTORY) and none "
                         f"found in {looked} (a folder, or a file named inventory.yaml); "
                         "`runbook init` creates one")
    return inventory.load(paths, registry)


def policy_of(args: argparse.Namespace, inventory_paths: list[Path]) -> Policy:
    from ..policy import load

    return load(getattr(args, "policy", None), inventory_paths)


def load_playbook(args: argparse.Namespace, registry: Registry) -> LoadedPlaybook:
    from .. import loader
    from ..catalog import resolve

    return loader.load(resolve(args.playbook, playbook_dirs(args)), registry)


def journal() -> Journal:
    from ..journal import Journal
    from ..paths import home

    return Journal(home())


def who(args: argparse.Namespace) -> str:
    return str(args.who or os_user())


def os_user() -> str:
    import getpass

    return getpass.getuser()


def how(what: str) -> str:
    """How an approval was given, with the OS user beside the name given by --as."""
    from ..approval import with_os_user

    return with_os_user(what, os_user())
