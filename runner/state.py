"""A run's state, folded from its journal events.

The engine appends events; this fold turns them into what the report shows. The live run,
`runbook report RUN_ID` and `runbook resume RUN_ID` all read the same fold, so they agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from .vocabulary import (
    STEP_NOT_CHECKED,
    Decision,
    EventKind,
    FindingStatus,
    RemedyStatus,
    RunStatus,
    StepStatus,
    Verdict,
    VerifyStatus,
)

# Short names of the run statuses, kept for the modules and tests that import them.
RUNNING, AWAITING, COMPLETED, FAILED, INTERRUPTED = (
    RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL, RunStatus.COMPLETED, RunStatus.FAILED,
    RunStatus.INTERRUPTED)


@dataclass(frozen=True)
class Event:
    seq: int
    run_id: str
    at: str
    type: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "run_id": self.run_id, "at": self.at, "type": self.type,
                **self.data}


@dataclass
class StepState:
    id: str
    kind: str
    target: str
    mutating: bool = False
    status: StepStatus = StepStatus.PENDING
    duration_ms: float | None = None
    attempts: int = 0
    result: Any = None
    error: str | None = None
    blocked_by: list[str] = field(default_factory=list)  # skipped: these did not succeed


@dataclass
class FindingState:
    id: str
    status: FindingStatus
    severity: str
    message: str | None = None
    hint: str = ""
    reason: str | None = None


@dataclass
class RemedyState:
    id: str
    kind: str
    target: str
    status: RemedyStatus = RemedyStatus.PROPOSED
    args: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    explain: str = ""
    approved_by: str | None = None
    approved_how: str | None = None
    duration_ms: float | None = None
    result: Any = None
    error: str | None = None
    reason: str | None = None


@dataclass
class VerifyState:
    id: str
    kind: str
    target: str
    status: VerifyStatus = VerifyStatus.PENDING
    checks: int = 0
    result: Any = None
    error: str | None = None


@dataclass
class RunState:
    run_id: str
    playbook: str = ""
    summary: str = ""
    severity: str = ""
    severity_why: str = ""  # the rule (or finding) that set it; empty: the playbook's label
    status: RunStatus = RunStatus.RUNNING
    trigger: str = ""
    requested_by: str = ""
    started_at: str = ""
    finished_at: str | None = None
    targets: dict[str, dict[str, str]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, StepState] = field(default_factory=dict)
    findings: dict[str, FindingState] = field(default_factory=dict)
    remedies: dict[str, RemedyState] = field(default_factory=dict)
    verify: dict[str, VerifyState] = field(default_factory=dict)
    # While MONITORING: the watched checks, `until` (ISO time), `interval` and `for` (s).
    watch: dict[str, Any] | None = None
    timeline: list[Event] = field(default_factory=list)

    @classmethod
    def fold(cls, run_id: str, events: Iterable[Event]) -> RunState:
        state = cls(run_id)
        for event in events:
            state.apply(event)
        return state

    def apply(self, event: Event) -> None:
        self.timeline.append(event)
        d, kind = event.data, event.type
        if kind == EventKind.RUN_STARTED:
            self.playbook, self.summary = d["playbook"], d.get("summary", "")
            self.severity, self.trigger = d["severity"], d.get("trigger", "")
            self.requested_by, self.started_at = d.get("requested_by", ""), event.at
            self.targets, self.params = d.get("targets", {}), d.get("params", {})
        elif kind in {EventKind.RUN_FINISHED, EventKind.RUN_INTERRUPTED, EventKind.RUN_RESUMED}:
            self.status = RunStatus(d["status"])
            self.finished_at = event.at if kind == EventKind.RUN_FINISHED else None
            if kind == EventKind.RUN_FINISHED and self.status != RunStatus.MONITORING:
                self.watch = None
        elif kind == EventKind.WATCH_STARTED:
            self.watch = dict(d)
        elif kind == EventKind.WATCH_RELAPSED:
            self.watch = None
        elif kind == EventKind.STEP_STARTED:
            step = self.steps.setdefault(d["step"], StepState(d["step"], d["kind"], d["target"]))
            step.status, step.attempts = StepStatus.RUNNING, d.get("attempt", 1)
        elif kind == EventKind.STEP_FINISHED:
            step = self.steps.setdefault(d["step"], StepState(d["step"], d["kind"], d["target"]))
            step.status, step.duration_ms = StepStatus(d["status"]), d.get("duration_ms")
            step.result, step.error = d.get("result"), d.get("error")
            step.attempts = d.get("attempts", step.attempts)
            step.blocked_by = list(d.get("blocked_by", []))
        elif kind == EventKind.FINDING:
            self.findings[d["finding"]] = FindingState(
                d["finding"], FindingStatus(d["status"]), d["severity"], d.get("message"),
                d.get("hint", ""), d.get("reason"))
        elif kind == EventKind.SEVERITY:
            self.severity, self.severity_why = d["level"], d.get("why", "")
        elif kind == EventKind.REMEDY_PROPOSED:
            self.remedies[d["remedy"]] = RemedyState(
                d["remedy"], d["kind"], d["target"], RemedyStatus.PROPOSED, d["args"],
                d["fingerprint"], d.get("explain", ""), reason=d.get("reason"))
        elif kind == EventKind.REMEDY_SKIPPED:
            remedy = self.remedies.setdefault(
                d["remedy"], RemedyState(d["remedy"], d.get("kind", ""), d.get("target", "")))
            remedy.status = RemedyStatus(d.get("status", RemedyStatus.SKIPPED))
            remedy.reason = d["reason"]
        elif kind == EventKind.APPROVAL:
            approved = self.remedies.get(d["remedy"])
            if approved and d["decision"] == Decision.APPROVED:
                approved.approved_by, approved.approved_how = d["by"], d["how"]
        elif kind == EventKind.REMEDY_STARTED:
            self.remedies[d["remedy"]].status = RemedyStatus.RUNNING
        elif kind == EventKind.REMEDY_FINISHED:
            remedy = self.remedies[d["remedy"]]
            remedy.status, remedy.duration_ms = RemedyStatus(d["status"]), d.get("duration_ms")
            remedy.result, remedy.error = d.get("result"), d.get("error")
        elif kind == EventKind.REMEDY_ENDED_LATE:  # it stays outcome_unknown: a person looks
            remedy = self.remedies[d["remedy"]]
            remedy.duration_ms, remedy.result = d.get("duration_ms"), d.get("result")
            ended = f"failed: {d['error']}" if d.get("error") else "succeeded"
            remedy.reason = f"it ended after its deadline and {ended}"
        elif kind == EventKind.REMEDY_STILL_RUNNING:
            self.remedies[d["remedy"]].reason = d["reason"]
        elif kind == EventKind.REMEDY_INTERRUPTED:
            remedy = self.remedies[d["remedy"]]
            remedy.status, remedy.reason = RemedyStatus.INTERRUPTED, d["reason"]
        elif kind == EventKind.VERIFY_FINISHED:
            self.verify[d["verify"]] = VerifyState(
                d["verify"], d["kind"], d["target"], VerifyStatus(d["status"]), d.get("checks", 0),
                d.get("result"), d.get("error"))

    # What the run learned, for reports and exit codes.
    def fired(self) -> list[FindingState]:
        """The findings that fired, most severe first, then in the playbook's order."""
        return _by_severity(f for f in self.findings.values() if f.status == FindingStatus.FIRED)

    def not_checked(self) -> list[StepState]:
        return [s for s in self.steps.values() if s.status in STEP_NOT_CHECKED]

    def unknown(self) -> list[FindingState]:
        return _by_severity(f for f in self.findings.values()
                            if f.status == FindingStatus.UNKNOWN)

    def could_not_check(self) -> list[dict[str, str]]:
        """What could not be checked and why: steps that failed or timed out, those skipped
        because of them, those that never ended (the run stopped), and findings that could
        not be judged."""
        gaps = [{"what": "step", "id": s.id, "kind": s.kind, "target": s.target,
                 "reason": f"{s.status}: {s.error}" if s.error else str(s.status)}
                for s in self.not_checked()]
        gaps += [{"what": "step", "id": s.id, "kind": s.kind, "target": s.target,
                  "reason": f"skipped: {s.error}"} for s in self.steps.values() if s.blocked_by]
        gaps += [{"what": "step", "id": s.id, "kind": s.kind, "target": s.target,
                  "reason": f"did not finish ({s.status}): the run stopped before it ended"}
                 for s in self.steps.values()
                 if s.status in {StepStatus.PENDING, StepStatus.RUNNING}]
        gaps += [{"what": "finding", "id": f.id, "kind": "", "target": "",
                  "reason": f.reason or "could not be judged"} for f in self.unknown()]
        return gaps

    def verdict(self) -> Verdict:
        """"Nothing found" only when every check ran; a fired finding is a finding even
        when other checks did not run (the report and JSON then list those as well)."""
        if self.fired():
            return Verdict.PROBLEMS_FOUND
        if self.could_not_check():
            return Verdict.INCONCLUSIVE
        return Verdict.NOTHING_FOUND

    def to_json(self) -> dict[str, Any]:
        """The documented JSON shape of a run (`--format json`, the daemon's API)."""
        return {
            "run_id": self.run_id,
            "playbook": self.playbook,
            "summary": self.summary,
            "status": self.status,
            "severity": self.severity,
            "severity_why": self.severity_why,
            "trigger": self.trigger,
            "requested_by": self.requested_by,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "targets": self.targets,
            "params": self.params,
            "verdict": self.verdict(),
            "not_checked": self.could_not_check(),
            "findings": [asdict(f) for f in _by_severity(self.findings.values())
                         if f.status != FindingStatus.CLEAR],
            "steps": [asdict(s) for s in self.steps.values()],
            "remedies": [asdict(r) for r in self.remedies.values()],
            "verify": [asdict(v) for v in self.verify.values()],
            "watch": self.watch,
        }


def _by_severity(findings: Iterable[FindingState]) -> list[FindingState]:
    """P1 before P2 ...; a stable sort, so the playbook's order within one severity."""
    return sorted(findings, key=lambda f: (not f.severity.startswith("P"), f.severity))
