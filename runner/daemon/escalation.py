"""Escalation: a proposed remedy that nobody approved within its severity's deadline
(`escalate_after`; by default P0 5 minutes, P1 30 minutes) is said again in the run's
channels and sent to the next target of its route's `escalation` list: after N deadlines,
the Nth target (a Slack channel or user through the Slack app, a generic JSON webhook, or
PagerDuty's Events API v2). A route without a list gets the reminder only.

The schedule is the journal, not a timer: each step taken is an `escalation` event on the
run (level, target, delivered or the error), and one thread looks, at start and every
`escalation_check` seconds, for proposals waiting past a deadline whose level is not
journaled yet. So no worker waits, a step is taken once, and a restarted daemon carries on
where the last one stopped. A step is journaled after it was tried: a crash in between sends
it again, which PagerDuty folds into the same alert by its `dedup_key`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..comms.buttons import proposal_blocks, short
from ..durations import format_duration
from ..journal import Journal
from ..redact import SECRETS
from ..state import AWAITING, RunState
from ..vocabulary import EventKind, RemedyStatus
from . import notify
from .config import DaemonConfig, EscalationTarget, Route
from .slackapp import SlackApi, SlackError

log = logging.getLogger("runbook.daemon.escalation")

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
# The seeds' SEV1-4 are P0-P3; PagerDuty knows four severities of its own.
ALIASES = {"SEV1": "P0", "SEV2": "P1", "SEV3": "P2", "SEV4": "P3"}
PAGERDUTY_SEVERITY = {"P0": "critical", "P1": "error", "P2": "warning", "P3": "info",
                      "P4": "info"}
RUNS_LOOKED_AT = 500  # awaiting runs per look; one team's daemon has a handful


@dataclass(frozen=True)
class Due:
    """One escalation step a waiting proposal is owed."""

    state: RunState
    remedy: str
    fingerprint: str
    severity: str
    level: int  # 1-based
    levels: int
    waited: float  # seconds since it was first proposed
    route: Route

    @property
    def target(self) -> EscalationTarget | None:
        return self.route.escalation[self.level - 1] if self.route.escalation else None


def severity_of(state: RunState) -> str:
    return ALIASES.get(state.severity.upper(), state.severity.upper())


def _unix(at: str) -> float:
    return datetime.fromisoformat(at).timestamp()


class Escalator:
    def __init__(self, config: DaemonConfig, journal: Journal,
                 renotify: Callable[[str, dict[str, Any]], None], slack: SlackApi | None,
                 clock: Callable[[], float], stopping: threading.Event) -> None:
        self.config, self.journal, self.renotify, self.slack = config, journal, renotify, slack
        self.clock, self.stopping = clock, stopping
        self.routes = {route.name: route for route in config.routes}
        self.deadlines = {ALIASES.get(k.upper(), k.upper()): v
                          for k, v in config.escalate_after.items()}
        self._one_at_a_time = threading.Lock()

    def thread(self) -> threading.Thread:
        return threading.Thread(target=self.loop, name="escalation", daemon=True)

    def loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.tick()
            except Exception as exc:  # keep looking; the journal still says what is owed
                log.error("escalation failed: %s", SECRETS.scrub_output(str(exc)),
                          exc_info=True)
            self.stopping.wait(self.config.escalation_check)

    def tick(self, now: float | None = None) -> list[dict[str, Any]]:
        """Take every step owed now; returns the events journaled."""
        with self._one_at_a_time:
            return [self.escalate(due) for due in self.due(self.clock() if now is None else now)]

    def due(self, now: float) -> list[Due]:
        owed: list[Due] = []
        for row in self.journal.runs(RUNS_LOOKED_AT, AWAITING):
            events = self.journal.events(row.id)
            state = RunState.fold(row.id, events)
            route = self.routes.get(state.requested_by.removeprefix("alert:")) \
                if state.requested_by.startswith("alert:") else None
            severity = severity_of(state)
            deadline = self.deadlines.get(severity)
            if route is None or not deadline or state.status != AWAITING:
                continue  # a run nobody routed here, or a severity that never escalates
            levels = max(len(route.escalation), 1)
            for remedy in state.remedies.values():
                if remedy.status != RemedyStatus.PROPOSED:
                    continue
                fingerprint = remedy.fingerprint
                since = min((_unix(e.at) for e in events if e.type == EventKind.REMEDY_PROPOSED
                             and e.data.get("remedy") == remedy.id
                             and e.data.get("fingerprint") == fingerprint), default=now)
                done = {e.data.get("level") for e in events if e.type == EventKind.ESCALATED
                        and e.data.get("remedy") == remedy.id
                        and e.data.get("fingerprint") == fingerprint}
                reached = min(int((now - since) // deadline), levels)
                owed += [Due(state, remedy.id, fingerprint, severity, level, levels,
                             now - since, route)
                         for level in range(1, reached + 1) if level not in done]
        return owed

    def escalate(self, due: Due) -> dict[str, Any]:
        """The reminder in the run's channels, then the level's target; journaled."""
        message = self.message(due)
        self.renotify(due.state.run_id, message)
        target = due.target
        record: dict[str, Any] = {
            "remedy": due.remedy, "fingerprint": due.fingerprint, "level": due.level,
            "of": due.levels, "severity": due.severity, "waited_s": round(due.waited),
            "target": describe(target)}
        if target is not None:
            error = self.send(target, due, message)
            record.update({"delivered": error is None, "error": error})
            if error:
                log.warning("escalation of run %s to %s failed: %s", due.state.run_id,
                            record["target"], error)
        self.journal.append(due.state.run_id, EventKind.ESCALATED, record)
        return record

    def message(self, due: Due) -> dict[str, Any]:
        state, remedy = due.state, due.state.remedies[due.remedy]
        waited = format_duration(due.waited)
        return {
            "kind": "escalation",
            "title": f"ESCALATION [{due.severity}] {state.playbook}: {remedy.id} waits for "
                     f"approval ({waited})",
            "fields": {"Severity": due.severity,
                       "Service": ", ".join(t["name"] for t in state.targets.values()) or "?",
                       "Waiting": waited, "Escalation": f"level {due.level} of {due.levels}",
                       "Run": state.run_id},
            "waiting": [f"{remedy.id}: {remedy.explain or remedy.kind} on {remedy.target} "
                        f"(fingerprint {short(remedy.fingerprint)})"],
            "next": f"approve: the buttons, POST /v1/runs/{state.run_id}/approvals or "
                    f"`runbook approve {state.run_id} {remedy.id}`",
        }

    def send(self, target: EscalationTarget, due: Due, message: dict[str, Any]) -> str | None:
        """None when delivered; else why not (after retries)."""
        clean = SECRETS.scrub_output(message)
        try:
            if target.kind == "slack":
                return self._slack(str(target.to), due, clean)
            if target.kind == "webhook":
                url = _resolved(target.url, target.url_env)
                return post_json(url, clean)[0]
            return self._pagerduty(target, due, clean)
        except Exception as exc:  # a missing URL or key is a failed step, said and journaled
            return str(SECRETS.scrub_output(str(exc)))

    def _slack(self, to: str, due: Due, message: dict[str, Any]) -> str | None:
        if self.slack is None:
            return "no slack_app configured"
        remedy = due.state.remedies[due.remedy]
        body = notify.slack_blocks(message)
        body["blocks"][-1:-1] = proposal_blocks(due.state.run_id, [{
            "id": remedy.id, "kind": remedy.kind, "target": remedy.target,
            "args": SECRETS.scrub_output(remedy.args), "fingerprint": remedy.fingerprint,
            "explain": SECRETS.scrub_output(remedy.explain)}])
        try:
            self.slack.call("chat.postMessage", {"channel": to, **body})
        except SlackError as exc:
            return str(exc)
        return None

    def _pagerduty(self, target: EscalationTarget, due: Due,
                   message: dict[str, Any]) -> str | None:
        key = _resolved(None, target.routing_key_env)
        remedy = due.state.remedies[due.remedy]
        event = {
            "event_action": "trigger",
            # one alert per waiting proposal: every level and a re-send fold into it
            "dedup_key": f"runbook/{due.state.run_id}/{due.remedy}/{short(due.fingerprint)}",
            "client": "runbook",
            "payload": {
                "summary": str(message["title"])[:1024],
                "source": remedy.target or "runbook",
                "severity": PAGERDUTY_SEVERITY.get(due.severity, "error"),
                "component": due.state.playbook, "group": due.route.name,
                "class": "approval overdue",
                "custom_details": {"run_id": due.state.run_id, "remedy": remedy.id,
                                   "action": remedy.kind, "args": remedy.args,
                                   "fingerprint": short(remedy.fingerprint),
                                   "waited_s": round(due.waited), "level": due.level},
            },
        }
        # scrubbed before the key goes in: the key is a registered secret itself
        body = {"routing_key": key, **SECRETS.scrub_output(event)}
        error, answer = post_json(_resolved(target.url, target.url_env) if (
            target.url or target.url_env) else PAGERDUTY_URL, body)
        if error is None and answer.get("status") != "success":
            return f"PagerDuty answered {str(answer)[:200]}"
        return error


def describe(target: EscalationTarget | None) -> dict[str, str]:
    """The target as journaled: never a URL from the environment (it may carry a secret)."""
    if target is None:
        return {"kind": "reminder"}
    if target.kind == "slack":
        return {"kind": "slack", "to": str(target.to)}
    where = f"${target.url_env}" if target.url_env else (target.url or PAGERDUTY_URL)
    return {"kind": target.kind, "to": where}


def _resolved(value: str | None, env: str | None) -> str:
    if env:
        value = os.environ.get(env, "")
        if not value:
            raise ValueError(f"{env} is not set")
        SECRETS.register(value)
    if not value:
        raise ValueError("no URL")
    return value


def post_json(url: str, body: Any, retries: int = 2,
              timeout: float = 5.0) -> tuple[str | None, dict[str, Any]]:
    """(None, the JSON answer) when a 2xx came back; else (the last error, {}). A 4xx other
    than 429 is final (the event itself is wrong); 429 and 5xx are tried again."""
    data = json.dumps(body, default=str).encode()
    error = "not sent"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(0.5 * 2 ** (attempt - 1))
        request = urllib.request.Request(url, data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            # the URL comes from the daemon config: http(s) only by construction
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                text = answer.read().decode("utf-8", "replace")
                try:
                    parsed = json.loads(text) if text.strip() else {}
                except ValueError:
                    parsed = {}
                return None, parsed if isinstance(parsed, dict) else {}
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}: {exc.read()[:200].decode('utf-8', 'replace')}"
            if 400 <= exc.code < 500 and exc.code != 429:
                break
        except (urllib.error.URLError, OSError) as exc:
            error = str(getattr(exc, "reason", exc))
    return str(SECRETS.scrub_output(error)), {}
