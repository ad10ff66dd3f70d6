"""The daemon's config checked against what it will meet: each route's playbook exists and
loads, the roles and params it sets are the playbook's, the targets it may bind are in the
inventory with the right kind, and every role a run needs gets a target. `runbook daemon
--check` reports these as file:line:col, and the daemon refuses to start on them: a route
to a playbook that does not exist is found before the first alert, not at it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PlaybookError, Problem, UsageError

if TYPE_CHECKING:
    from ..inventory import Inventory
    from ..registry import Registry
    from ..yamlsource import Document
    from .config import DaemonConfig, Route


def problems(config_path: Path, config: DaemonConfig, registry: Registry
             ) -> tuple[list[Problem], list[Problem]]:
    """The problems the daemon refuses to start on, and what it only warns about: a name in
    an allow-list that this inventory lacks (the same config may serve several)."""
    from .. import inventory, yamlsource

    doc, _ = yamlsource.read(config_path)  # it loaded already: only its positions are used
    found: list[Problem] = []
    inventory_paths = config.inventory_paths()
    targets = None
    if not inventory_paths and config.routes:
        found.append(doc.problem(("inventory",), "no inventory: none named here, by "
                                 "RUNBOOK_INVENTORY, or found in ./inventory or the config "
                                 "dirs; the routes' targets cannot be bound"))
    else:
        try:
            targets = inventory.load(inventory_paths, registry)
        except PlaybookError as exc:
            found += exc.problems
    unknown: list[Problem] = []
    for index, route in enumerate(config.routes):
        found += _route(doc, ("routes", index), route, config, registry, targets, unknown)
    found += _triage(doc, config, registry)
    return sorted(set(found)), sorted(set(unknown))


def _triage(doc: Document, config: DaemonConfig, registry: Registry) -> list[Problem]:
    """Each triage playbook exists, loads, and never changes anything."""
    from .. import loader
    from ..catalog import resolve

    found: list[Problem] = []
    for kind, playbook in (config.triage.playbooks.items() if config.triage else []):
        where = ("triage", "playbooks", kind)
        try:
            book = loader.load(resolve(playbook, config.playbook_dirs()), registry).playbook
        except (UsageError, PlaybookError) as exc:
            found.append(doc.problem(where, f"triage for {kind}: {exc}".splitlines()[0]))
            continue
        if book.remedies:
            found.append(doc.problem(where, f"triage for {kind}: {playbook} has remedies; an "
                                            "alert no route takes may only start a diagnosis"))
    return found


def _route(doc: Document, at: tuple[str | int, ...], route: Route, config: DaemonConfig,
           registry: Registry, targets: Inventory | None, unknown: list[Problem]
           ) -> list[Problem]:
    from .. import loader
    from ..catalog import resolve

    try:
        path = resolve(route.playbook, config.playbook_dirs())
    except UsageError as exc:
        return [doc.problem((*at, "playbook"), f"route {route.name}: {exc}")]
    try:
        book = loader.load(path, registry).playbook
    except PlaybookError as exc:
        return [doc.problem((*at, "playbook"), f"route {route.name}: playbook {path} does "
                            f"not load ({len(exc.problems)} problem(s): runbook validate "
                            f"{path})"), *exc.problems]
    found: list[Problem] = []
    for role, rule in route.targets.items():
        where = (*at, "targets", role)
        if role not in book.targets:
            found.append(doc.problem(where, f"route {route.name}: {book.name} has no target "
                                     f"role {role!r}; roles: {', '.join(book.targets)}"))
        elif targets is not None:
            found += _names(doc, where, route, role, book.targets[role].kind, rule, targets,
                            unknown)
    for role, spec in book.targets.items():
        if role in route.targets or spec.optional or targets is None:
            continue
        candidates = targets.of_kind(spec.kind)
        if len(candidates) != 1:
            found.append(doc.problem((*at, "targets"), (
                f"route {route.name}: {book.name} needs a {spec.kind} target for role "
                f"{role!r}; the inventory has {len(candidates) or 'no'} {spec.kind} "
                f"target(s): bind it under targets:")))
    for name in route.params:
        if name not in book.params:
            found.append(doc.problem((*at, "params", name), (
                f"route {route.name}: {book.name} has no param {name!r}; params: "
                f"{', '.join(book.params) or 'none'}")))
    for name, param in book.params.items():
        if param.default is None and name not in route.params:
            found.append(doc.problem((*at, "params"), (
                f"route {route.name}: {book.name} needs param {name!r} "
                f"({param.description}): set it under params:")))
    return found


def _names(doc: Document, where: tuple[str | int, ...], route: Route, role: str, kind: str,
           rule: Any, targets: Inventory, unknown: list[Problem]) -> list[Problem]:
    """The target names a role may be bound to that are known now: an allow-list (a name
    missing here is a warning), or a template with nothing to render (an error)."""
    fixed = isinstance(rule, str)
    if fixed:
        names = [rule] if "{" not in rule else []
    else:
        names, where = list(rule.allow or []), (*where, "allow")
    known = {t.name: t for t in targets}
    found: list[Problem] = []
    for name in names:
        target = known.get(name)
        if target is None:
            (found if fixed else unknown).append(doc.problem(
                where, f"route {route.name}: target {role} may be {name!r}, which is not in "
                "the inventory"))
        elif target.kind != kind:
            found.append(doc.problem(where, f"route {route.name}: target {role} needs a {kind} "
                                     f"target; {name!r} is {target.kind}"))
    return found
