"""The fallback route: an alert no route takes runs the triage playbook of the target it
names (`triage:` in the daemon config).

The alert can only name a target that the inventory holds (the route built here allows
that one name and nothing else), and triage playbooks only read: an unrouted alert can start
a diagnosis, never a remedy. The target's kind picks the playbook (for a service, its
runtime: Docker or Kubernetes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import Route, TargetRule

if TYPE_CHECKING:
    from ..registry import Registry
    from .alerts import Alert
    from .config import DaemonConfig


class Triage:
    def __init__(self, config: DaemonConfig, registry: Registry) -> None:
        self.config, self.registry = config, registry

    def route_for(self, alert: Alert) -> Route | None:
        """A route to the triage playbook of the inventory target the alert names, or None
        (no triage configured, no label names a known target, no playbook for its kind)."""
        settings = self.config.triage
        if settings is None:
            return None
        from .. import inventory, lifecycle
        from ..errors import RunbookError

        known = inventory.load(self.config.inventory_paths(), self.registry)
        for label in settings.target_labels:
            name = alert.labels.get(label)
            target = next((t for t in known if t.name == name), None) if name else None
            if target is None:
                continue
            kind = str(getattr(target.settings, "runtime", None) or target.kind)
            playbook = settings.playbooks.get(kind)
            if playbook is None:
                return None
            try:
                loaded = lifecycle.load_playbook(playbook, self.config.playbook_dirs(),
                                                 self.registry)
            except RunbookError:
                return None  # `runbook daemon --check` reports it; the alert stays unrouted
            if loaded.playbook.remedies:
                return None  # the daemon refuses to start on this too (preflight)
            role = next(r for r, spec in loaded.playbook.targets.items()
                        if spec.kind == target.kind)
            return Route(name=f"triage-{kind}", playbook=playbook, severity=settings.severity,
                         targets={role: TargetRule.model_validate(
                             {"from": f"{{{{ labels.{label} }}}}", "allow": [target.name]})},
                         group_by=[label])
        return None
