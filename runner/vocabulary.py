"""The run's vocabulary, defined once: run, step, finding, remedy and verify statuses, the
decisions on a remedy, and the kinds of journal event.

Each is a `StrEnum`, so a member *is* its string: the journal's on-disk text is unchanged,
old journals fold as before, and `status == "completed"` still holds. Code names a member
(`RunStatus.COMPLETED`), never the bare string, so mypy catches a typo.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    RUNNING = "running"  # a live process drives it
    AWAITING_APPROVAL = "awaiting_approval"  # a proposed remedy needs a person
    # Fixed and settled; its verify checks are watched until the window ends (no process
    # holds it meanwhile: the daemon's watcher or `runbook watch` checks it when due).
    MONITORING = "monitoring"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the process driving it died; resumable


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"


# A step that ended so has run its course; one that FAILED or TIMED OUT checked nothing.
STEP_DONE = frozenset({StepStatus.OK, StepStatus.FAILED, StepStatus.TIMEOUT, StepStatus.SKIPPED})
STEP_NOT_CHECKED = frozenset({StepStatus.FAILED, StepStatus.TIMEOUT})


class FindingStatus(StrEnum):
    FIRED = "fired"
    CLEAR = "clear"
    UNKNOWN = "unknown"  # its inputs failed or its expression could not be evaluated


class RemedyStatus(StrEnum):
    PROPOSED = "proposed"  # waits for approval
    DECLINED = "declined"
    NOT_NEEDED = "not_needed"  # its condition is false or its optional role is unbound
    SKIPPED = "skipped"  # it cannot be resolved
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the process died while it ran: never re-run by itself
    # Still running at its deadline: asked to stop, never re-run by itself.
    OUTCOME_UNKNOWN = "outcome_unknown"


# A remedy settled so is not run again; one that ended BROKEN fails the run and is never
# run again by itself.
REMEDY_SETTLED = frozenset({RemedyStatus.SUCCEEDED, RemedyStatus.DECLINED,
                            RemedyStatus.NOT_NEEDED, RemedyStatus.SKIPPED})
REMEDY_BROKEN = frozenset({RemedyStatus.FAILED, RemedyStatus.INTERRUPTED,
                           RemedyStatus.OUTCOME_UNKNOWN})


class Verdict(StrEnum):
    """What a run's diagnosis amounts to: "nothing found" only when every check ran."""

    PROBLEMS_FOUND = "problems_found"  # a finding fired (other checks may not have run)
    NOTHING_FOUND = "nothing_found"  # every step ran and every finding was judged clear
    INCONCLUSIVE = "inconclusive"  # nothing fired, but something could not be checked


class VerifyStatus(StrEnum):
    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


class Decision(StrEnum):
    """A person's decision on a proposed remedy, or (PENDING) the gate's verdict that none
    lets it run yet."""

    APPROVED = "approved"
    DECLINED = "declined"
    PENDING = "pending"


class EventKind(StrEnum):
    """The `type` of a journal event."""

    RUN_STARTED = "run.started"
    RUN_FINISHED = "run.finished"
    RUN_INTERRUPTED = "run.interrupted"
    RUN_RESUMED = "run.resumed"
    STEP_STARTED = "step.started"
    STEP_RETRY = "step.retry"
    STEP_FINISHED = "step.finished"
    FINDING = "finding"
    SEVERITY = "severity"  # the run's severity from its diagnosis, with the rule that set it
    NOTE = "note"  # a person's note on the incident (`runbook note`)
    REMEDY_PROPOSED = "remedy.proposed"
    REMEDY_SKIPPED = "remedy.skipped"
    REMEDY_STARTED = "remedy.started"
    REMEDY_FINISHED = "remedy.finished"
    REMEDY_ENDED_LATE = "remedy.ended_late"
    REMEDY_STILL_RUNNING = "remedy.still_running"
    REMEDY_INTERRUPTED = "remedy.interrupted"
    VERIFY_STARTED = "verify.started"
    VERIFY_FINISHED = "verify.finished"
    WATCH_STARTED = "watch.started"  # verify checks to watch, until when, how often
    WATCH_RELAPSED = "watch.relapsed"  # a watched check stopped holding: the incident reopens
    APPROVAL = "approval"
    APPROVAL_POLICY = "approval.policy"
    APPROVAL_REFUSED = "approval.refused"
    APPROVAL_VOID = "approval.void"
    APPROVAL_EXPIRED = "approval.expired"
    LOCK_BROKEN = "lock.broken"
    # The daemon's notes on a run.
    ALERT_RESOLVED = "alert.resolved"
    NOTIFY_SENT = "notify.sent"
    NOTIFY_FAILED = "notify.failed"
    # A proposed remedy waited past its deadline: who was told, at which level.
    ESCALATED = "escalation"


class AlertOutcome(StrEnum):
    """What the daemon's dispatcher did with one stored alert (the `alerts.outcome` column)."""

    STARTED = "started"  # it queued a new run
    JOINED = "joined"  # its group's run was open: it joined it
    RESOLVED = "resolved"  # a resolved alert: it starts nothing, it may close its run
    UNROUTED = "unrouted"  # no route takes it, or its route's template failed
    REFUSED = "refused"  # its route refused the target it named


class WorkKind(StrEnum):
    """What a queued work item asks a daemon worker for (the `work.kind` column)."""

    RUN = "run"
    RESUME = "resume"


class WorkStatus(StrEnum):
    """A daemon work item's status (the `work.status` column)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


# Events after which the run's status changes (they carry the new one).
RUN_STATUS_EVENTS = frozenset({EventKind.RUN_STARTED, EventKind.RUN_FINISHED,
                               EventKind.RUN_INTERRUPTED, EventKind.RUN_RESUMED})
# The gate's notes on an approval that does not (or no longer) count.
APPROVAL_NOTES = frozenset({EventKind.APPROVAL_REFUSED, EventKind.APPROVAL_VOID,
                            EventKind.APPROVAL_EXPIRED})
