"""The daemon's lifecycle around one journal: start (recover, then the intake writer, the
dispatcher and the workers), the dispatcher's loop, approvals, and a graceful stop. The
HTTP layer (`http.py`) is built on top of it.

Runs started here never approve anything themselves: remedies wait for an approval over
HTTP (or `runbook approve`), after which the dispatcher queues the run's resume and a
worker carries it on through the same gate, under the same per-target lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..vocabulary import AlertOutcome
from . import notify
from .announce import Announcer
from .auth import Access, Credentials
from .escalation import Escalator
from .inbox import Inbox
from .logonce import LogOnce
from .metrics import Metrics
from .slackapp import SlackApprovals, slack_api
from .triage import Triage
from .watcher import Watcher
from .workers import Workers
from .writer import IntakeWriter

if TYPE_CHECKING:
    from ..journal import Approval, Journal
    from ..registry import Registry
    from .config import DaemonConfig

log = logging.getLogger("runbook.daemon")
HEARTBEAT = 5.0  # seconds between a replica's heartbeats (the journal's LEASE is 30)


class Daemon:
    """Dispatcher and workers around one journal; the HTTP app is built on top."""

    def __init__(self, config: DaemonConfig, journal: Journal, registry: Registry,
                 clock: Callable[[], float] = time.time) -> None:
        self.config, self.journal, self.registry = config, journal, registry
        self.inbox = Inbox(journal, config, clock, fallback=Triage(config, registry).route_for)
        self.log_once = LogOnce(log)
        self.writer = IntakeWriter(self.inbox)
        self.metrics = Metrics(self.inbox)
        self.announcer = Announcer(notify.Notifier(list(config.notify), journal), journal,
                                   self.inbox, self.metrics, config.public_url)
        self.stopping = threading.Event()
        self.new_alerts = threading.Event()
        self.new_work = threading.Event()
        self.workers = Workers(config, journal, registry, self.inbox, self.metrics,
                               self.announcer, self.log_once, self.stopping, self.new_work)
        self.threads: list[threading.Thread] = []
        self.access = Access(config, Credentials.from_env(config))  # a missing secret: here
        self.slack = SlackApprovals(config, journal, self.approve) if config.slack_app else None
        self.watcher = Watcher(config, journal, registry, self.inbox, self.announcer,
                               self.log_once, self.stopping, self.new_work)
        self.escalator = Escalator(config, journal, self.announcer.send, slack_api(config),
                                   clock, self.stopping)

    # Lifecycle

    def start(self) -> None:
        interrupted = self.journal.mark_interrupted()
        requeued = self.inbox.requeue_running()
        if interrupted or requeued:
            log.warning("recovered after a stop: %d run(s) interrupted, %d work item(s) "
                        "requeued", len(interrupted), requeued)
        self.writer.thread.start()
        threading.Thread(target=self._retry_undelivered, name="retry-notify",
                         daemon=True).start()
        self.threads = [threading.Thread(target=self._dispatch_loop, name="dispatcher",
                                         daemon=True), *self.workers.threads(),
                        self.escalator.thread(), self.watcher.thread()]
        for thread in self.threads:
            thread.start()

    def _retry_undelivered(self) -> None:
        """Messages that failed before a stop (their sink was down) are sent again."""
        from ..comms.notifier import runs_with_undelivered

        try:
            for run_id in runs_with_undelivered(self.journal):
                self.announcer.notifier.retry_undelivered(run_id)
        except Exception as exc:  # a retry must never keep the daemon from serving
            self.log_once("retry-notify", f"retrying undelivered messages failed: {exc}",
                          level=logging.ERROR, exc_info=True)

    def stop(self, grace: float = 30.0) -> None:
        """Stop claiming work; let running runs finish within the grace period. A run still
        going after it stays `running` and shows as interrupted, resumable, on restart."""
        self.stopping.set()
        self.writer.stop()
        self.new_alerts.set()
        self.new_work.set()
        for thread in self.threads:
            thread.join(timeout=grace)

    # Dispatcher

    def _dispatch_loop(self) -> None:
        beat = 0.0
        while not self.stopping.is_set():
            try:
                if time.monotonic() - beat >= HEARTBEAT:
                    beat = time.monotonic()
                    self._heartbeat()
                handled = self.dispatch_once()
            except Exception as exc:  # keep the loop alive; the alerts stay stored and retried
                self.log_once(f"dispatch:{type(exc).__name__}", f"dispatch failed: {exc}",
                              level=logging.ERROR, exc_info=True)
                handled = 0
            if not handled:
                self.new_alerts.wait(0.5)
                self.new_alerts.clear()

    def _heartbeat(self) -> None:
        """Say this replica lives, and take over what dead ones left: their runs become
        interrupted and their claimed work is queued again (on one host, a replica is known
        dead by its pid; on another, by a heartbeat older than the journal's LEASE)."""
        self.journal.heartbeat()
        interrupted = self.journal.mark_interrupted()
        requeued = self.inbox.requeue_running()
        if interrupted or requeued:
            log.warning("took over from a stopped process: %d run(s) interrupted, %d work "
                        "item(s) requeued", len(interrupted), requeued)
            self.new_work.set()

    def dispatch_once(self) -> int:
        dispatched = self.inbox.dispatch()
        for item in dispatched:
            self.metrics.dispatched.labels(item.outcome).inc()
            if item.reason:
                self.log_once(item.reason_class, f"alert {item.alert.name} {item.outcome}: "
                                                 f"{item.reason}")
            if item.closes and item.run_id:
                self.announcer.resolved(item.run_id)
        resumes = self.inbox.queue_approved_resumes()
        if any(d.outcome == AlertOutcome.STARTED for d in dispatched) or resumes:
            self.new_work.set()
        return len(dispatched) + len(resumes)

    # Approvals

    def approve(self, run_id: str, remedy_id: str, decision: str, approver: str,
                fingerprint: str | None = None, how: str | None = None) -> Approval:
        """Through the run lifecycle's one approval path, as `runbook approve` is;
        `fingerprint`, when given, must be the proposal's now."""
        from ..approval import APPROVED, DECLINED, ApprovalRefused
        from ..lifecycle import decide

        try:
            approval = decide(self.journal, run_id, remedy_id,
                              decision=APPROVED if decision == "approve" else DECLINED,
                              by=approver,
                              how=how or f"HTTP POST /v1/runs/{run_id}/approvals",
                              policy=self.config.policy(), fingerprint=fingerprint).approval
        except ApprovalRefused as exc:
            if exc.forbidden:
                raise PermissionError(str(exc)) from None
            raise
        self.new_alerts.set()  # the dispatcher queues the resume
        return approval
