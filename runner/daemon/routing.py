"""Routes: which playbook an alert starts, on what (matchers are in `matchers.py`).

Targets and params are templates over the alert's `labels` and `annotations` (the same
sandbox as playbooks); a target with an allow-list or a `match` regex refuses any other name, so an
alert's labels cannot point a run at a target the route does not name.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .alerts import Alert
    from .config import Route


def route_for(alert: Alert, routes: list[Route]) -> Route | None:
    """The first route whose matchers all match the alert's labels."""
    for route in routes:
        if all(m.matches(alert.labels) for m in route.matchers):
            return route
    return None


def group_key(alert: Alert, route: Route) -> str:
    """Alerts with the same key join one run: the route plus its group_by labels (or the
    alert's own fingerprint when the route groups by nothing)."""
    if route.group_by:
        identity: Any = {label: alert.labels.get(label, "") for label in route.group_by}
    else:
        identity = alert.fingerprint
    digest = hashlib.sha256(json.dumps([route.name, identity], sort_keys=True).encode())
    return f"{route.name}:{digest.hexdigest()[:16]}"


class TargetRefused(ValueError):
    """An alert named a target its route does not allow: stored, answered, no run."""

    def __init__(self, route: str, role: str, name: str) -> None:
        self.route, self.role = route, role
        super().__init__(f"route {route}: target {role} = {name[:200]!r} is not allowed by "
                         "the route's allow-list/match")


def bindings(alert: Alert, route: Route) -> tuple[dict[str, str], dict[str, Any]]:
    """(targets, params) for the run, rendered from the alert's labels and annotations;
    TargetRefused when a constrained target renders to a name outside its rule."""
    from ..expressions import render

    context = {"labels": alert.labels, "annotations": alert.annotations}
    targets = {}
    for role, spec in route.targets.items():
        name = str(render(route.target_template(role), context))
        if not isinstance(spec, str) and not spec.permits(name):
            raise TargetRefused(route.name, role, name)
        targets[role] = name
    params = {name: render(template, context) for name, template in route.params.items()}
    return targets, params
