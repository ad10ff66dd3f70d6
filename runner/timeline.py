"""An incident's timeline: one line per thing that happened, with its time.

It merges the alerts that started or joined the run (given by the caller: they live in the
daemon's inbox) with the run's own journal events: steps, findings, the severity and why,
approvals, remedies, verify, notifications, people's notes (`runbook note`), and whatever
other event a newer runbook journals (shown by its kind, never dropped). Each entry keeps
the journal event's `seq` (and the run's evidence file, for a step or a remedy) so that a
reader, or the post-incident draft, can find what it rests on.

This module reads only a run's fold (`runner.state`), so the report can include it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .durations import format_duration
from .state import Event, RunState
from .vocabulary import EventKind, FindingStatus, RemedyStatus, StepStatus

# Events that only say something is about to happen: the event that ends it says it all.
_QUIET = frozenset({EventKind.STEP_STARTED, EventKind.VERIFY_STARTED, EventKind.REMEDY_STARTED,
                    EventKind.APPROVAL_POLICY})


@dataclass(frozen=True)
class Entry:
    at: str  # ISO 8601, UTC
    kind: str  # alert, run, step, finding, severity, approval, remedy, verify, notify, note ...
    what: str  # one line a person reads
    by: str = ""  # who did it, when a person or a process did
    run_id: str = ""
    seq: int | None = None  # the journal event (None for an alert)
    evidence: str | None = None  # the run-directory file it rests on, if any

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def entries(state: RunState, alerts: Iterable[Mapping[str, Any]] = (), *,
            verbose: bool = False) -> list[Entry]:
    """The run's entries (and its alerts'), in time order. `verbose` keeps the events that
    only announce a start, and findings judged clear."""
    found = [_alert(alert, state.run_id) for alert in alerts]
    for event in state.timeline:
        entry = _entry(event, verbose)
        if entry is not None:
            found.append(entry)
    # Alerts first at equal times (they came first); events by their journal order.
    return sorted(found, key=lambda e: (e.at, e.seq is not None, e.seq or 0))


def merge(*timelines: Iterable[Entry]) -> list[Entry]:
    """Several runs' timelines as one (an incident that took more than one run)."""
    return sorted((e for timeline in timelines for e in timeline),
                  key=lambda e: (e.at, e.seq is not None, e.run_id, e.seq or 0))


def _alert(alert: Mapping[str, Any], run_id: str) -> Entry:
    labels = alert.get("labels") or {}
    name = labels.get("alertname", "alert")
    where = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
    at = str(alert.get("starts_at") or alert.get("received_at") or "")
    summary = (alert.get("annotations") or {}).get("summary", "")
    what = f"alert {name} {alert.get('status', 'firing')}" + (f" ({where})" if where else "")
    return Entry(_utc(at), "alert", what + (f": {summary}" if summary else ""),
                 str(alert.get("source", "")), run_id)


def _utc(at: str) -> str:
    """Alertmanager's `2026-12-02T11:25:26.1Z` and the journal's `+00:00` sort together."""
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        return at
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


def _entry(event: Event, verbose: bool) -> Entry | None:
    d, kind = event.data, event.type

    def make(kind: str, what: str, by: str = "", evidence: str | None = None) -> Entry:
        return Entry(event.at, kind, what, by, event.run_id, event.seq, evidence)

    if kind in _QUIET and not verbose:
        return None
    if kind == EventKind.RUN_STARTED:
        return make("run", f"run of {d.get('playbook')} started ({d.get('trigger')})",
                     by=d.get("requested_by", ""))
    if kind in {EventKind.RUN_FINISHED, EventKind.RUN_INTERRUPTED, EventKind.RUN_RESUMED}:
        error = f": {d['error']}" if d.get("error") else ""
        verb = {EventKind.RUN_FINISHED: "ended", EventKind.RUN_INTERRUPTED: "interrupted",
                EventKind.RUN_RESUMED: "resumed"}[EventKind(kind)]
        return make("run", f"run {verb}: {d.get('status')}{error}",
                     by=d.get("by", ""))
    if kind == EventKind.STEP_FINISHED:
        status = d.get("status")
        took = f" in {format_duration(d['duration_ms'] / 1000)}" if d.get("duration_ms") else ""
        why = f": {d['error']}" if d.get("error") else ""
        evidence = f"evidence/{d['step']}.json" if status == StepStatus.OK else None
        return make("step", f"step {d['step']} ({d.get('kind')} on "
                     f"{d.get('target')}) {status}{took}{why}", evidence=evidence)
    if kind == EventKind.STEP_RETRY:
        return make("step", f"step {d['step']} retried: {d.get('error')}")
    if kind == EventKind.FINDING:
        if d.get("status") == FindingStatus.CLEAR and not verbose:
            return None
        said = d.get("message") or d.get("reason") or ""
        return make("finding", f"finding {d['finding']} {d.get('status')} "
                     f"[{d.get('severity')}]" + (f": {said}" if said else ""))
    if kind == EventKind.SEVERITY:
        return make("severity", f"severity {d.get('level')}: {d.get('why', '')}")
    if kind == EventKind.NOTE:
        return make("note", f"note: {d.get('text', '')}", by=d.get("by", ""))
    if kind == EventKind.APPROVAL:
        return make("approval", f"{d.get('decision')} {d.get('remedy')} "
                     f"({d.get('how', '')})", by=d.get("by", ""))
    if kind.startswith("approval."):
        return make("approval", f"{kind} {d.get('remedy', '')}: "
                     f"{d.get('reason') or d.get('error') or ''}".rstrip(": "))
    if kind == EventKind.REMEDY_PROPOSED:
        return make("remedy", f"remedy {d['remedy']} proposed: {d.get('kind')} on "
                     f"{d.get('target')}" + (f" ({d['explain']})" if d.get("explain") else ""))
    if kind == EventKind.REMEDY_SKIPPED:
        if d.get("status") == RemedyStatus.NOT_NEEDED and not verbose:
            return None
        return make("remedy", f"remedy {d['remedy']} {d.get('status', 'skipped')}: "
                     f"{d.get('reason', '')}")
    if kind == EventKind.REMEDY_FINISHED:
        why = f": {d['error']}" if d.get("error") else ""
        return make("remedy", f"remedy {d['remedy']} {d.get('status')}{why}",
                     evidence=f"evidence/remedy-{d['remedy']}.json")
    if kind.startswith("remedy."):
        return make("remedy", f"remedy {d.get('remedy')} {kind.split('.', 1)[1]}: "
                     f"{d.get('reason', '')}".rstrip(": "))
    if kind == EventKind.VERIFY_FINISHED:
        why = f": {d['error']}" if d.get("error") else ""
        return make("verify", f"verify {d.get('verify')} {d.get('status')} after "
                     f"{d.get('checks', 0)} check(s){why}")
    if kind.startswith("notify."):
        outcome = "sent" if kind == EventKind.NOTIFY_SENT else kind.split(".", 1)[1]
        error = f": {d['error']}" if d.get("error") else ""
        return make("notify", f"{d.get('message', 'message')} {outcome} to "
                     f"{d.get('channel', '?')}{error}")
    if kind == EventKind.ALERT_RESOLVED:
        return make("alert", f"alerts resolved ({d.get('alerts', '?')})")
    if kind == EventKind.WATCH_STARTED:
        return make("watch", f"watching {', '.join(d.get('checks', []))} until "
                     f"{d.get('until')} (every {d.get('interval')}s)")
    if kind == EventKind.WATCH_RELAPSED:
        return make("watch", f"relapsed: {d.get('verify')} stopped holding: {d.get('error')}")
    if kind == EventKind.ESCALATED:
        sent = "" if d.get("delivered", True) else f", not delivered: {d.get('error')}"
        return make("escalate", f"escalation level {d.get('level')} of {d.get('of')}: "
                     f"{d.get('remedy')} waited {d.get('waited_s')}s, to "
                     f"{d.get('target') or 'the run channels'}{sent}")
    # An event kind this module does not know: shown, not dropped.
    subject = " ".join(str(d[k]) for k in ("remedy", "step", "verify", "status", "reason",
                                            "target") if d.get(k))
    return make(kind.split(".", 1)[0], f"{kind} {subject}".rstrip(),
                 by=str(d.get("by", "")))


def text_lines(timeline: Iterable[Entry], *, indent: str = "  ") -> list[str]:
    """`2026-12-02 11:25:26.123  note  alice: the customer says it is back`."""
    return [f"{indent}{e.at[:23].replace('T', ' ')}  {e.kind:<8} "
            f"{e.by + ': ' if e.by and e.kind in {'note', 'approval'} else ''}{e.what}"
            for e in timeline]


def markdown_lines(timeline: Iterable[Entry]) -> list[str]:
    return [f"- {e.at[:23].replace('T', ' ')} **{e.kind}** "
            f"{e.by + ': ' if e.by and e.kind in {'note', 'approval'} else ''}{e.what}"
            for e in timeline]
