"""What the daemon says about a run in the incident channel, and when: a notification that
failed after its retries is counted, and RESOLVED is said once per run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..vocabulary import EventKind
from . import notify

if TYPE_CHECKING:
    from ..journal import Journal
    from .inbox import Inbox
    from .metrics import Metrics


class Announcer:
    def __init__(self, notifier: notify.Notifier, journal: Journal, inbox: Inbox,
                 metrics: Metrics, public_url: str | None = None) -> None:
        self.notifier, self.journal, self.inbox, self.metrics = notifier, journal, inbox, metrics
        self.public_url = public_url  # the run pages' base, linked from every message

    def send(self, run_id: str, message: dict[str, Any]) -> None:
        if self._shadow(run_id):  # a shadow route tells no one
            return
        self.metrics.notify_failed.inc(self.notifier.send(run_id, message))

    def resolved(self, run_id: str) -> None:
        """RESOLVED, once, after the run's own messages (the dispatcher and the worker both
        ask; whichever comes second, when the run is finished and all alerts resolved, wins)."""
        if self._shadow(run_id) or not self.inbox.claim_resolved_notice(run_id):
            return
        alerts = self.inbox.alerts_of(run_id)
        self.journal.append(run_id, EventKind.ALERT_RESOLVED, {"alerts": len(alerts)})
        self.send(run_id, notify.resolved(self.journal.state(run_id), alerts, self.public_url))

    def _shadow(self, run_id: str) -> bool:
        from ..shadow import is_shadow

        return is_shadow(self.journal.state(run_id))
