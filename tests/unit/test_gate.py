"""The safety model: a mutating step runs only with a recorded approval for exactly what
was shown, and never twice by itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.context import StepContext
from runner.errors import NotApproved
from runner.gate import Gate, Proposal
from runner.journal import Approval, now
from runner.state import AWAITING, COMPLETED
from tests.enginekit import Kit

FIX = """
steps:
  - {id: scan, run: mem.sleep, with: {value: [3, 5, 8]}}
remedies:
  - {id: fix, run: mem.act, when: "steps.scan.value | length > 0",
     with: {items: "{{ steps.scan.value }}"}}
  - {id: tidy, run: mem.act, with: {items: [tidy]}}
"""


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    return Kit(tmp_path)


def test_without_approval_remedies_are_only_proposed(kit: Kit) -> None:
    state = kit.run(FIX)
    assert state.status == AWAITING
    assert state.remedies["fix"].status == "proposed"
    assert state.remedies["fix"].args == {"items": [3, 5, 8], "wait_for": None,
                                          "undo_on_interrupt": False}
    assert kit.actions() == []


def test_a_pre_approved_remedy_runs_and_the_approval_says_who_and_how(kit: Kit) -> None:
    state = kit.run(FIX, approve=frozenset({"fix=mem.act", "tidy=mem.act"}))
    assert state.status == COMPLETED
    assert state.remedies["fix"].status == "succeeded"
    assert state.remedies["fix"].approved_by == "tester"
    [approval] = kit.journal.approvals(state.run_id, "fix")
    assert (approval.by, approval.decision) == ("tester", "approved")
    assert "--approve" in approval.how
    assert approval.fingerprint == state.remedies["fix"].fingerprint
    assert [a["items"] for a in kit.actions() if a["phase"] == "end"] == [[3, 5, 8], ["tidy"]]


def test_remedies_run_in_order_and_stop_at_the_first_unapproved(kit: Kit) -> None:
    state = kit.run(FIX, approve=frozenset({"tidy=mem.act"}))
    assert state.status == AWAITING
    assert state.remedies["tidy"].status == "proposed"  # approved, but waits behind fix
    assert kit.actions() == []


def test_the_prompt_shows_the_resolved_action_and_a_no_is_recorded(kit: Kit) -> None:
    seen: list[Proposal] = []

    def say_no(proposal: Proposal) -> bool:
        seen.append(proposal)
        return False

    state = kit.run(FIX, prompter=say_no)
    assert [p.remedy for p in seen] == ["fix", "tidy"]
    assert seen[0].args["items"] == [3, 5, 8]
    assert seen[0].explain == "act on 3 item(s)"
    assert state.remedies["fix"].status == "declined"
    assert kit.journal.approvals(state.run_id, "fix")[0].decision == "declined"
    assert kit.actions() == []


def test_approve_then_resume_runs_the_remedy_once(kit: Kit) -> None:
    plan = kit.plan(FIX)
    state = kit.run(FIX)
    for remedy in ("fix", "tidy"):
        kit.journal.record_approval(Approval(state.run_id, remedy,
                                             state.remedies[remedy].fingerprint, "approved",
                                             "alice", "runbook approve", now()))
    state = kit.engine().resume(plan, state.run_id, by="alice")
    assert state.status == COMPLETED
    assert state.remedies["fix"].approved_by == "alice"
    state = kit.engine().resume(plan, state.run_id, by="alice")  # nothing left to do
    assert len([a for a in kit.actions() if a["phase"] == "start"]) == 2


def test_an_approval_for_other_arguments_is_void(kit: Kit) -> None:
    plan = kit.plan(FIX)
    state = kit.run(FIX)
    kit.journal.record_approval(Approval(state.run_id, "fix", "0" * 64, "approved", "mallory",
                                         "runbook approve", now()))
    state = kit.engine().resume(plan, state.run_id, by="mallory")
    assert state.status == AWAITING
    assert any(e.type == "approval.void" for e in state.timeline)
    assert kit.actions() == []


def test_gate_execute_refuses_without_a_matching_recorded_approval(kit: Kit) -> None:
    state = kit.run(FIX)
    gate = Gate(kit.journal, kit.registry, approver="tester")
    target = next(iter(kit.inventory))
    proposal = Proposal(state.run_id, "fix", "mem.act", target.name, {"items": [3, 5, 8]})
    with pytest.raises(NotApproved, match="no recorded approval"):
        gate.execute(proposal, target, StepContext.outside_a_run(5))
    other = Proposal(state.run_id, "fix", "mem.act", target.name, {"items": [1]})
    gate.record(state.run_id, "fix", other.fingerprint, "approved", "tester", "test")
    with pytest.raises(NotApproved, match="other arguments"):
        gate.execute(proposal, target, StepContext.outside_a_run(5))
    assert kit.actions() == []


def test_a_remedy_waits_while_another_run_holds_its_target(kit: Kit) -> None:
    kit.journal.lock_target("box", "someone-else")  # held by this (live) process
    state = kit.run(FIX, approve=frozenset({"fix=mem.act"}))
    assert state.status == AWAITING
    assert "someone-else" in (state.remedies["fix"].reason or "")
    assert kit.actions() == []


def test_verify_follows_each_round_of_remedies(kit: Kit) -> None:
    body = FIX + "verify:\n  - {id: check, run: mem.sleep, within: 1s}\n"
    plan = kit.plan(body)
    state = kit.run(body, approve=frozenset({"fix=mem.act"}))
    assert state.status == AWAITING  # tidy still waits for a person
    assert state.verify["check"].status == "passed"
    kit.journal.record_approval(Approval(state.run_id, "tidy", state.remedies["tidy"].fingerprint,
                                         "approved", "alice", "runbook approve", now()))
    state = kit.engine().resume(plan, state.run_id, by="alice")
    assert state.status == COMPLETED
    verified = [e for e in state.timeline if e.type == "verify.finished"]
    assert len(verified) == 2


def test_an_expired_approval_is_void_and_says_so(kit: Kit) -> None:
    from runner.gate import Gate

    plan = kit.plan(FIX)
    state = kit.run(FIX)
    old = "2020-01-01T00:00:00.000+00:00"
    kit.journal.record_approval(Approval(state.run_id, "fix", state.remedies["fix"].fingerprint,
                                         "approved", "alice", "runbook approve", old))
    engine = kit.engine()
    engine.gate = Gate(kit.journal, kit.registry, approver="daemon", ttl=3600)
    state = engine.resume(plan, state.run_id, by="alice")
    assert state.status == AWAITING
    assert any(e.type == "approval.expired" for e in state.timeline)
    assert kit.actions() == []
