"""The daemon's messages: runner.comms's INCIDENT ALERT, UPDATE and RESOLVED (the same
templates and sinks the CLI uses), with what the alerts add: when they started, their
summaries as symptoms, what the sender truncated, and links to the group, a silence and each
alert's source in Alertmanager or Grafana.

Links the sender gave are the only links runbook makes: http(s) only (checked at intake),
built by runner.comms.slack as `<url|label>` with the URL and label escaped.
"""

from __future__ import annotations

from typing import Any

from ..comms import notifier, setup
from ..comms.announce import TEAM, build, said_of
from ..comms.config import Sink
from ..comms.delivery import deliver
from ..comms.facts import status_of
from ..comms.slack import fit, mrkdwn_escape, slack_blocks
from ..state import RunState
from .alerts import Alert

__all__ = ["Notifier", "fit", "incident", "links", "mrkdwn_escape", "notes", "resolved",
           "slack_blocks", "update"]

MAX_LINKS = 20  # a group of hundreds of alerts must not bury the message in links


class Notifier(notifier.Notifier):
    def send(self, run_id: str, message: dict[str, Any]) -> int:
        """The message; and beside an ALERT, UPDATE or RESOLVED, the customer update when
        a customer sink is configured and the status customers were told changed."""
        failures = super().send(run_id, message)
        if message.get("kind") in TEAM and any(s.audience == "customer" for s in self.sinks):
            state = self.journal.state(run_id)
            if said_of(self.journal, run_id).status != str(status_of(state)):
                failures += super().send(run_id, customer(state))
        return failures

    @staticmethod
    def _post(sink: Sink, payload: dict[str, Any]) -> str | None:
        """One payload to one sink: None when delivered, else the last error."""
        return deliver(sink, payload).error


def links(alerts: list[Alert]) -> list[dict[str, str]]:
    """Where to look: the group in its sender's UI, a silence, each alert's source; once
    each, in the alerts' order."""
    found: list[dict[str, str]] = []
    seen: set[str] = set()
    for alert in alerts:
        sender = "Grafana" if alert.source == "grafana" else "Alertmanager"
        for text, url in ((f"Open in {sender}", alert.group_url),
                          (f"Silence {alert.name}", alert.silence_url),
                          (f"Source of {alert.name}", alert.generator_url)):
            if url and url not in seen and len(found) < MAX_LINKS:
                seen.add(url)
                found.append({"text": text, "url": url})
    return found


def notes(alerts: list[Alert]) -> list[str]:
    """What the sender left out: `truncatedAlerts` of the request the alerts came in."""
    truncated = max((a.truncated_alerts for a in alerts), default=0)
    if not truncated:
        return []
    sender = "Grafana" if any(a.source == "grafana" for a in alerts) else "Alertmanager"
    return [f"{truncated} more alert(s) were truncated by {sender} (its max_alerts): this run "
            "saw only the alerts it was sent; the sender's UI lists them all"]


def _alert_facts(state: RunState, alerts: list[Alert],
                 public_url: str | None) -> dict[str, Any]:
    starts = [a.starts_at for a in alerts if a.starts_at]
    page = f"{public_url.rstrip('/')}/runs/{state.run_id}" if public_url else None
    return {
        "started": min(starts).isoformat() if starts else None,
        "symptoms": "; ".join(sorted({a.annotations.get("summary") or a.name
                                      for a in alerts})) or "(no alert annotations)",
        "notes": notes(alerts),
        "links": ([{"text": "Run page", "url": page}] if page else []) + links(alerts),
        "approve": (f"sign in on the run page {page}" if page else
                    f"POST /v1/runs/{state.run_id}/approvals")
                   + f" or `runbook approve {state.run_id} REMEDY`",
    }


def incident(state: RunState, alerts: list[Alert],
             public_url: str | None = None) -> dict[str, Any]:
    """INCIDENT ALERT: severity, service, started, impact, symptoms, responding, status,
    and what waits."""
    templates, settings = setup.daemon_templates()
    return build("incident", state, templates, settings,
                 alert=_alert_facts(state, alerts, public_url))


def update(state: RunState, alerts: list[Alert] | None = None,
           public_url: str | None = None) -> dict[str, Any]:
    """UPDATE: time, status, what was found or done, next step, ETA."""
    templates, settings = setup.daemon_templates()
    return build("update", state, templates, settings,
                 alert=_alert_facts(state, alerts or [], public_url))


def resolved(state: RunState, alerts: list[Alert],
             public_url: str | None = None) -> dict[str, Any]:
    """RESOLVED: duration (from the first alert), summary, root cause, resolution, review
    date."""
    templates, settings = setup.daemon_templates()
    return build("resolved", state, templates, settings,
                 alert=_alert_facts(state, alerts, public_url))


def customer(state: RunState) -> dict[str, Any]:
    """The customer-facing update, for sinks whose audience is customer."""
    templates, settings = setup.daemon_templates()
    return build("customer", state, templates, settings)
