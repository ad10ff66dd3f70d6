"""The daemon's Prometheus metrics, in a registry of their own (served at GET /metrics)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..state import RunState
    from .inbox import Inbox


class Metrics:
    """The daemon's Prometheus metrics, in a registry of its own."""

    def __init__(self, inbox: Inbox) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.received = Counter("runbook_alerts_received_total", "alerts accepted",
                                ["source", "status"], registry=self.registry)
        self.dispatched = Counter("runbook_alerts_dispatched_total",
                                  "alerts routed: started, joined (deduplicated), resolved, "
                                  "unrouted, refused (a target outside the route's rule)",
                                  ["outcome"], registry=self.registry)
        self.refused = Counter("runbook_alerts_refused_total", "requests refused at intake, "
                               "by reason", ["reason"], registry=self.registry)
        self.fingerprint_mismatch = Counter(
            "runbook_alerts_fingerprint_mismatch_total",
            "alerts whose sent fingerprint differs from their labels' (the computed one is "
            "used)", registry=self.registry)
        self.work_failed = Counter("runbook_work_failed_total", "work items that raised",
                                   ["kind"], registry=self.registry)
        self.runs = Counter("runbook_runs_total", "engine passes by the status they ended in",
                            ["playbook", "status"], registry=self.registry)
        self.steps = Histogram("runbook_step_duration_seconds", "diagnostic step durations",
                               ["kind"], registry=self.registry,
                               buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300))
        self.notify_failed = Counter("runbook_notifications_failed_total",
                                     "notifications that failed after their retries",
                                     registry=self.registry)
        depth = Gauge("runbook_queue_depth", "queued runs waiting for a worker",
                      registry=self.registry)
        depth.set_function(inbox.queue_depth)
        pending = Gauge("runbook_alerts_undispatched", "stored alerts not yet routed",
                        registry=self.registry)
        pending.set_function(inbox.undispatched)
        from ..shadow import ShadowCollector  # per route: how often shadow matched people

        self.registry.register(ShadowCollector(inbox.journal))

    def observe_run(self, state: RunState) -> None:
        self.runs.labels(state.playbook, state.status).inc()
        for step in state.steps.values():
            if step.duration_ms is not None:
                self.steps.labels(step.kind).observe(step.duration_ms / 1000)
