"""The run's vocabulary: defined once as enums whose members are the journal's on-disk
strings, so old journals still fold and what is written does not change."""

from __future__ import annotations

import json
import sqlite3
from enum import StrEnum
from pathlib import Path

import pytest

from runner.daemon.alerts import Alert, fingerprint
from runner.daemon.config import DaemonConfig
from runner.daemon.inbox import Inbox
from runner.journal import Journal, new_run_id
from runner.state import Event, RunState
from runner.vocabulary import (
    AlertOutcome,
    Decision,
    EventKind,
    FindingStatus,
    RemedyStatus,
    RunStatus,
    StepStatus,
    VerifyStatus,
    WorkKind,
    WorkStatus,
)
from tests.enginekit import Kit

# The strings journals hold today: a change here breaks every journal already written.
ON_DISK: dict[type[StrEnum], set[str]] = {
    RunStatus: {"running", "awaiting_approval", "monitoring", "completed", "failed",
                "interrupted"},
    StepStatus: {"pending", "running", "ok", "failed", "timeout", "skipped"},
    FindingStatus: {"fired", "clear", "unknown"},
    RemedyStatus: {"proposed", "declined", "not_needed", "skipped", "running", "succeeded",
                   "failed", "interrupted", "outcome_unknown"},
    VerifyStatus: {"pending", "passed", "failed", "skipped"},
    Decision: {"approved", "declined", "pending"},
    EventKind: {"run.started", "run.finished", "run.interrupted", "run.resumed",
                "step.started", "step.retry", "step.finished", "finding", "remedy.proposed",
                "remedy.skipped", "remedy.started", "remedy.finished", "remedy.ended_late",
                "remedy.still_running", "remedy.interrupted", "verify.started",
                "watch.started", "watch.relapsed",
                "verify.finished", "approval", "approval.policy", "approval.refused",
                "approval.void", "approval.expired", "lock.broken", "alert.resolved",
                "notify.sent", "notify.failed", "escalation", "severity", "note"},
    AlertOutcome: {"started", "joined", "resolved", "unrouted", "refused"},
    WorkKind: {"run", "resume"},
    WorkStatus: {"queued", "running", "done", "failed"},
}


@pytest.mark.parametrize("enum", list(ON_DISK), ids=lambda e: e.__name__)
def test_each_vocabulary_is_exactly_the_strings_on_disk(enum: type[StrEnum]) -> None:
    assert {member.value for member in enum} == ON_DISK[enum]


def test_an_old_journal_of_bare_strings_folds_into_the_vocabulary() -> None:
    """Events as a journal written before the enums holds them: plain JSON strings."""
    raw = [
        ("run.started", {"status": "running", "playbook": "pb", "severity": "P2"}),
        ("step.started", {"step": "a", "kind": "mem.sleep", "target": "box"}),
        ("step.finished", {"step": "a", "kind": "mem.sleep", "target": "box", "status": "ok"}),
        ("finding", {"finding": "high", "status": "fired", "severity": "P2"}),
        ("remedy.proposed", {"remedy": "fix", "kind": "mem.act", "target": "box",
                             "args": {}, "fingerprint": "f" * 64}),
        ("approval", {"remedy": "fix", "decision": "approved", "by": "ann", "how": "cli"}),
        ("remedy.started", {"remedy": "fix"}),
        ("remedy.finished", {"remedy": "fix", "status": "succeeded"}),
        ("verify.finished", {"verify": "v", "kind": "mem.sleep", "target": "box",
                             "status": "passed"}),
        ("run.finished", {"status": "completed"}),
    ]
    events = [Event(i, "r1", "2026-01-01T00:00:00+00:00", type_, json.loads(json.dumps(data)))
              for i, (type_, data) in enumerate(raw, 1)]
    state = RunState.fold("r1", events)
    assert state.status is RunStatus.COMPLETED
    assert state.steps["a"].status is StepStatus.OK
    assert state.findings["high"].status is FindingStatus.FIRED
    assert state.remedies["fix"].status is RemedyStatus.SUCCEEDED
    assert state.remedies["fix"].approved_by == "ann"
    assert state.verify["v"].status is VerifyStatus.PASSED
    shown = json.loads(json.dumps(state.to_json()))
    assert (shown["status"], shown["steps"][0]["status"], shown["remedies"][0]["status"]) == (
        "completed", "ok", "succeeded")


def test_a_journal_written_now_holds_the_same_bare_strings(tmp_path: Path) -> None:
    """What the engine writes through the enums is byte-for-byte the old text, read back
    with plain SQL, not through runbook."""
    kit = Kit(tmp_path)
    state = kit.run("""
        steps:
          - {id: a, run: mem.sleep, with: {value: 7}}
          - {id: broken, run: mem.fail}
        findings:
          - {id: high, when: steps.a.value > 5, say: high}
        remedies:
          - {id: fix, run: mem.act, with: {items: [1]}}
        verify:
          - {id: v, run: mem.sleep}
        """, approve=frozenset({"fix=mem.act"}))
    with sqlite3.connect(kit.journal.home / "journal.sqlite3") as db:
        status = db.execute("SELECT status FROM runs WHERE id=?", (state.run_id,)).fetchone()[0]
        rows = db.execute("SELECT type, data FROM events WHERE run_id=? ORDER BY seq",
                          (state.run_id,)).fetchall()
    assert status == "completed"
    written = {(type_, json.loads(data).get("status")) for type_, data in rows}
    assert {("run.started", "running"), ("step.finished", "ok"), ("step.finished", "failed"),
            ("finding", "fired"), ("remedy.finished", "succeeded"),
            ("verify.finished", "passed"), ("run.finished", "completed")} <= written
    # Every kind the engine wrote is one of the vocabulary's: nothing is spelt ad hoc.
    assert {type_ for type_, _ in rows} <= {kind.value for kind in EventKind}


def test_a_status_the_vocabulary_does_not_know_is_refused_when_folded(tmp_path: Path) -> None:
    """A typo'd status cannot slip into a run's state unnoticed."""
    journal = Journal(tmp_path / "home")
    run_id = new_run_id()
    journal.create_run(run_id, "pb", "P3", {})
    journal.append(run_id, "run.finished", {"status": "complete"})
    with pytest.raises(ValueError, match="complete"):
        journal.state(run_id)


def test_the_daemons_tables_hold_the_strings_its_vocabulary_names(tmp_path: Path) -> None:
    """The inbox's SQL spells outcomes, kinds and statuses in its text: what it stores is
    what the enums say, read back with plain SQL."""
    with Journal(tmp_path / "home") as journal:
        box = Inbox(journal, DaemonConfig.model_validate({
            "auth": {"mode": "none"}, "routes": [{"name": "r", "playbook": "p",
                                                  "match": ['alertname="X"']}]}))
        labels = [{"alertname": "X"}, {"alertname": "X"}, {"alertname": "Y"}]  # X twice: joins
        box.store([Alert(source="generic", status="firing", labels=ls,
                         fingerprint=fingerprint(ls)) for ls in labels])
        outcomes = [d.outcome for d in box.dispatch()]
        assert outcomes == [AlertOutcome.STARTED, AlertOutcome.JOINED, AlertOutcome.UNROUTED]
        work = box.claim()
        assert work is not None and work.kind is WorkKind.RUN
        box.finish(work.id)
        rows = journal.read("SELECT outcome FROM alerts ORDER BY id")
        assert [r[0] for r in rows] == [str(o) for o in outcomes]
        assert journal.read("SELECT kind, status FROM work") == [
            (WorkKind.RUN.value, WorkStatus.DONE.value)]
