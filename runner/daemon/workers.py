"""The daemon's workers: threads that claim queued work and run it through the run lifecycle
(`runner.lifecycle`, as `runbook run/resume` do), a new run for an alert or the resume of an
approved one. No terminal: remedies wait for an approval, and the resume goes through the
same gate under the same per-target lock."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from ..journal import Journal
from ..vocabulary import WorkKind
from . import notify

if TYPE_CHECKING:
    from ..registry import Registry
    from ..state import RunState
    from .announce import Announcer
    from .config import DaemonConfig
    from .inbox import Inbox, Work
    from .logonce import LogOnce
    from .metrics import Metrics


class Workers:
    def __init__(self, config: DaemonConfig, journal: Journal, registry: Registry,
                 inbox: Inbox, metrics: Metrics, announcer: Announcer, log_once: LogOnce,
                 stopping: threading.Event, new_work: threading.Event) -> None:
        self.config, self.journal, self.registry = config, journal, registry
        self.inbox, self.metrics, self.announcer, self.log_once = (
            inbox, metrics, announcer, log_once)
        self.stopping, self.new_work = stopping, new_work

    def threads(self) -> list[threading.Thread]:
        return [threading.Thread(target=self.loop, name=f"worker-{i}", daemon=True)
                for i in range(self.config.max_concurrent_runs)]

    def loop(self) -> None:
        while not self.stopping.is_set():
            item = self.inbox.claim()
            if item is None:
                self.new_work.wait(0.5)
                self.new_work.clear()
                continue
            try:
                state = self.run(item)
                self.inbox.finish(item.id)
                self.announcer.resolved(state.run_id)  # its alerts may have resolved meanwhile
            except Exception as exc:
                self.metrics.work_failed.labels(item.kind).inc()
                self.log_once(f"work:{item.kind}:{item.playbook}:{type(exc).__name__}",
                              f"work {item.id} ({item.kind} {item.playbook}) failed: {exc}",
                              level=logging.ERROR, exc_info=True)
                self.inbox.finish(item.id, error=str(exc)[:2000])

    def run(self, item: Work) -> RunState:
        from ..redact import SECRETS

        with SECRETS.scope():  # one run's secrets never mask another concurrent run's data
            return self._run_in_scope(item)

    def _run_in_scope(self, item: Work) -> RunState:
        from .. import lifecycle

        policy = self.config.policy()
        engine = lifecycle.engine_for(self.registry, self.journal, approver="daemon",
                                      policy=policy)
        trigger, requested_by = f"alert route {item.route}", f"alert:{item.route}"
        if self._shadow(item.route):
            from .. import shadow

            engine = shadow.engine_for(self.registry, self.journal, policy)
            trigger, requested_by = shadow.trigger(item.route), f"shadow:{item.route}"
        inventory = self._inventory()
        run_id = item.run_id
        resuming = item.kind == WorkKind.RESUME or (
            run_id is not None and lifecycle.exists(self.journal, run_id))
        if resuming and run_id is not None:
            from .. import shadow

            if shadow.is_shadow(self.journal.state(run_id)):  # a shadow run stays one
                engine = shadow.engine_for(self.registry, self.journal, policy)
            plan = lifecycle.replan_run(self.journal, run_id, inventory, self.registry)
            state = lifecycle.resume(engine, plan, run_id, by="daemon")
            message = notify.update(state, public_url=self.config.public_url)
        else:
            loaded = lifecycle.load_playbook(item.playbook, self.config.playbook_dirs(),
                                             self.registry)
            plan = lifecycle.plan_run(loaded, inventory, self.registry, item.targets,
                                      item.params)
            state = lifecycle.start(
                engine, plan, inventory_paths=self.config.inventory_paths(), policy=policy,
                trigger=trigger, requested_by=requested_by,
                on_run_id=lambda new_id: self.inbox.set_run(item.id, new_id),
                route_severity=self._route_severity(item.route))
            run_id = state.run_id
            message = notify.incident(state, self.inbox.alerts_of(run_id),
                                      self.config.public_url)
        self.metrics.observe_run(state)
        self.announcer.send(run_id, message)
        return state

    def _shadow(self, name: str | None) -> bool:
        route = next((r for r in self.config.routes if r.name == name), None)
        return route is not None and route.mode == "shadow"

    def _route_severity(self, name: str) -> dict[str, str] | None:
        """The route's `severity:`, which raises (never lowers) what the run finds."""
        from ..severity import route_floor

        route = next((r for r in self.config.routes if r.name == name), None)
        return route_floor(name, route.severity) if route is not None else None

    def _inventory(self) -> Any:
        from .. import inventory

        return inventory.load(self.config.inventory_paths(), self.registry)
