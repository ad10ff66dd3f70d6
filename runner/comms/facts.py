"""What a message may say about a run, as named values for the templates: the seeds'
fields (severity, service, started, impact, symptoms, responding, status, what was found or
done, next step, ETA, duration, summary, root cause, resolution, review date), each derived
from the journal's fold of the run, never invented.

The customer's facts are a separate, small set (status, times, the service's public name):
a customer template cannot reach a host name, a finding or a command, even by mistake.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from ..durations import format_duration
from ..state import RunState
from ..vocabulary import RemedyStatus, RunStatus, Verdict, VerifyStatus
from .config import Settings


class Status(StrEnum):
    """The seeds' incident status, as the channel reads it."""

    INVESTIGATING = "Investigating"
    IDENTIFIED = "Identified"
    MONITORING = "Monitoring"
    RESOLVED = "Resolved"


def status_of(state: RunState) -> Status:
    """Investigating until something is found; Identified once it is; Monitoring once a
    remedy worked and verify (or a watch) runs; Resolved when the run completed after a
    remedy or verify passed."""
    remedied = any(r.status == RemedyStatus.SUCCEEDED for r in state.remedies.values())
    verified = bool(state.verify) and all(v.status == VerifyStatus.PASSED
                                          for v in state.verify.values())
    waiting = any(r.status == RemedyStatus.PROPOSED for r in state.remedies.values())
    if state.status == RunStatus.COMPLETED and (remedied or verified) and not waiting:
        return Status.RESOLVED
    if remedied and state.status not in {RunStatus.FAILED, RunStatus.COMPLETED}:
        return Status.MONITORING  # verify or the watch window runs
    if str(state.status) in {"monitoring", "watching"}:  # a watch window the engine keeps
        return Status.MONITORING
    return Status.IDENTIFIED if state.fired() else Status.INVESTIGATING


def notable(state: RunState) -> bool:
    """Whether a run is an incident worth telling the channel about: something fired or
    could not be checked. A run that found nothing and checked everything says nothing."""
    return state.verdict() != Verdict.NOTHING_FOUND


def _utc(at: str | None) -> datetime:
    return datetime.fromisoformat(at) if at else datetime.now(UTC)


def _shown(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def service_of(state: RunState) -> str:
    return ", ".join(f"{t['name']}" for t in state.targets.values()) or "?"


def found(state: RunState) -> list[str]:
    from ..charts import charts_of, spark_line

    # "Nothing wrong" only when every check ran; else the gaps say what did not.
    return ([f"[{f.severity}] {f.message}" for f in state.fired()] or (
        ["nothing wrong found"] if state.verdict() == Verdict.NOTHING_FOUND
        else ["INCONCLUSIVE: nothing found, but some checks could not run"])) + [
        spark_line(series) for series in charts_of(state)]  # what sampled, at a glance


def done(state: RunState) -> list[str]:
    remedies = [f"{r.id}: {r.status}" + (f" (approved by {r.approved_by})"
                                          if r.approved_by else "")
                for r in state.remedies.values()
                if r.status not in {RemedyStatus.NOT_NEEDED, RemedyStatus.PROPOSED}]
    return remedies + [f"{v.id}: {v.status}" for v in state.verify.values()]


def waiting(state: RunState) -> list[str]:
    return [f"{r.id}: {r.explain or r.kind}" for r in state.remedies.values()
            if r.status == RemedyStatus.PROPOSED]


def _next_and_eta(state: RunState, status: Status, approve_how: str,
                  review: str) -> tuple[str, str]:
    proposed = [r.id for r in state.remedies.values() if r.status == RemedyStatus.PROPOSED]
    if proposed:
        return (f"waiting for approval of {', '.join(proposed)}: {approve_how}",
                "none until a person approves")
    if status == Status.RESOLVED:
        return f"post-incident review by {review}", "resolved"
    if status == Status.MONITORING:
        return "verify watches the fix", "when verify passes"
    if state.status == RunStatus.FAILED:
        return f"a person takes over: `runbook report {state.run_id}`", "unknown"
    if state.status == RunStatus.RUNNING:
        return "diagnosis continues", "when the diagnosis ends"
    return "nothing waits on runbook", "unknown"


def run_facts(state: RunState, settings: Settings, *,
              alert: Mapping[str, Any] | None = None, now: datetime | None = None) -> dict[
                  str, Any]:
    """The names a team template may use. `alert` adds what the alerts said (the daemon's
    `started`, `symptoms`, `links`, `notes`, and how to approve over HTTP)."""
    alert = alert or {}
    now = now or datetime.now(UTC)
    status = status_of(state)
    started = _utc(alert.get("started") or state.started_at)
    ended = _utc(state.finished_at) if state.status != RunStatus.RUNNING else now
    review = _shown(ended + timedelta(seconds=settings.review_after))
    approve_how = alert.get("approve") or f"`runbook approve {state.run_id} REMEDY`"
    next_step, eta = _next_and_eta(state, status, approve_how, review)
    fired = state.fired()
    approvers = sorted({r.approved_by for r in state.remedies.values() if r.approved_by})
    succeeded = [f"{r.id} ({r.approved_by})" if r.approved_by else r.id
                 for r in state.remedies.values() if r.status == RemedyStatus.SUCCEEDED]
    return {
        "run_id": state.run_id,
        "playbook": state.playbook,
        "severity": state.severity or "-",
        "service": service_of(state),
        "started": alert.get("started") or state.started_at,
        "started_at": _shown(started),
        "time": _shown(now),
        "impact": state.summary,
        "symptoms": alert.get("symptoms") or "; ".join(
            f.message or f.id for f in fired[:3]) or "(none seen)",
        "responding": settings.responding or ", ".join(
            dict.fromkeys([state.requested_by or "runbook", *approvers])),
        "status": str(status),
        "run_status": str(state.status),
        "verdict": str(state.verdict()),
        "found": found(state),
        "not_checked": [f"{gap['id']}: {gap['reason']}" for gap in state.could_not_check()],
        "waiting": waiting(state),
        "done": done(state),
        "next_step": next_step,
        "eta": eta,
        "duration": format_duration(max((ended - started).total_seconds(), 0)),
        "summary": state.summary,
        "root_cause": (f"as found: {fired[0].message}" if fired
                       else "not established by runbook"),
        "resolution": ", ".join(succeeded) or "resolved without a remedy from runbook",
        "review_date": review,
        "notes": list(alert.get("notes") or []),
    }


def customer_facts(state: RunState, settings: Settings, *,
                   now: datetime | None = None) -> dict[str, Any]:
    """The only names a customer template gets: no target, finding, remedy, person or run."""
    now = now or datetime.now(UTC)
    return {
        "service": settings.service or "our service",
        "status": str(status_of(state)),
        "started_at": _shown(_utc(state.started_at)),
        "time": _shown(now),
    }
