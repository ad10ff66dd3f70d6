"""Gate cases mutation testing found untested (scripts/mutation runner/gate.py): the
fingerprint's exact recipe (an approval stored or printed today must match tomorrow), a
"yes" at the terminal, the OS user beside the approver, the words of every refusal and
the fields of every journaled void. The safety model's main tests are test_gate.py and
test_approval.py."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runner.context import StepContext
from runner.errors import NotApproved
from runner.gate import Gate, Proposal, changes, fingerprint
from runner.journal import Approval, now
from runner.state import COMPLETED
from tests.enginekit import Kit

FIX = """
steps:
  - {id: scan, run: mem.sleep, with: {value: [3, 5, 8]}}
remedies:
  - {id: fix, run: mem.act, with: {items: "{{ steps.scan.value }}"}}
"""


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    return Kit(tmp_path)


def test_the_fingerprint_is_sha256_of_the_canonical_json_of_what_was_shown() -> None:
    identity = {"container_id": "3f2a", "image": "sha256:9c1d"}
    args = {"to_image": "api:1.4", "stop_timeout": 10, "options": {"b": 2, "a": 1}}
    canonical = ('{"args":{"options":{"a":1,"b":2},"stop_timeout":10,"to_image":"api:1.4"},'
                 '"identity":{"container_id":"3f2a","image":"sha256:9c1d"},'
                 '"kind":"service.rollback","target":"api"}')
    assert fingerprint("service.rollback", "api", identity, args) == (
        hashlib.sha256(canonical.encode()).hexdigest())
    # the order the arguments come in is not part of it
    assert fingerprint("service.rollback", "api", dict(reversed(identity.items())),
                       dict(reversed(args.items()))) == fingerprint(
        "service.rollback", "api", identity, args)


def test_an_argument_json_cannot_hold_is_fingerprinted_as_its_text() -> None:
    at = datetime(2026, 11, 22, 7, 53, tzinfo=UTC)
    assert fingerprint("mem.act", "box", {}, {"at": at}) == fingerprint(
        "mem.act", "box", {}, {"at": str(at)})


def test_what_changed_names_an_argument_that_is_new_or_gone() -> None:
    assert changes({"args": {}}, {"args": {"force": True}}) == ["force (none) -> true"]
    assert changes({"args": {"force": True}}, {"args": {}}) == ["force true -> (none)"]


def test_what_changed_keeps_80_characters_and_shortens_81() -> None:
    eighty, eighty_one = "x" * 78, "x" * 79  # 80 and 81 characters once JSON-quoted
    assert changes({"args": {"a": eighty}}, {"args": {}}) == [f'a "{eighty}" -> (none)']
    assert changes({"args": {"a": eighty_one}}, {"args": {}}) == [
        f'a "{eighty_one[:76]}... -> (none)']


def test_a_yes_at_the_terminal_approves_and_says_so(kit: Kit) -> None:
    state = kit.run(FIX, prompter=lambda proposal: True)
    assert state.status == COMPLETED
    [approval] = kit.journal.approvals(state.run_id, "fix")
    assert (approval.decision, approval.by, approval.how) == (
        "approved", "tester", "answered at the terminal")
    assert [a["items"] for a in kit.actions() if a["phase"] == "end"] == [[3, 5, 8]]


def test_the_os_user_is_recorded_beside_the_approver(kit: Kit) -> None:
    engine = kit.engine()
    engine.gate = Gate(kit.journal, kit.registry, approver="alice",
                       pre_approved=frozenset({"fix=mem.act"}), os_user="deploy")
    state = engine.start(kit.plan(FIX), "20261122-075345-0001", trigger="test",
                         requested_by="bob")
    [approval] = kit.journal.approvals(state.run_id, "fix")
    assert approval.how == "--approve on the command line (OS user deploy)"


def test_without_an_os_user_the_how_is_left_as_it_is(kit: Kit) -> None:
    state = kit.run(FIX, approve=frozenset({"fix=mem.act"}))
    [approval] = kit.journal.approvals(state.run_id, "fix")
    assert approval.how == "--approve on the command line"


def proposal_of(kit: Kit, run_id: str, items: list[int]) -> Proposal:
    target = next(iter(kit.inventory))
    identity = Gate(kit.journal, kit.registry, approver="tester").identity(
        kit.registry.kind("mem.act"), target, 5)
    return Proposal(run_id, "fix", "mem.act", target.name,
                    {"items": items, "wait_for": None, "undo_on_interrupt": False},
                    identity=identity)


def test_execute_with_only_a_decline_recorded_says_there_is_no_approval(kit: Kit) -> None:
    state = kit.run(FIX)
    gate = Gate(kit.journal, kit.registry, approver="tester")
    proposal = proposal_of(kit, state.run_id, [3, 5, 8])
    gate.record(state.run_id, "fix", proposal.fingerprint, "declined", "alice", "test")
    with pytest.raises(NotApproved) as refused:
        gate.execute(proposal, next(iter(kit.inventory)), StepContext.outside_a_run(5))
    assert str(refused.value) == (f"remedy 'fix' of run {state.run_id} has no recorded "
                                  "approval")
    assert kit.actions() == []


def test_execute_for_other_arguments_says_what_differs(kit: Kit) -> None:
    state = kit.run(FIX)
    gate = Gate(kit.journal, kit.registry, approver="tester")
    proposal = proposal_of(kit, state.run_id, [3, 5, 8, 13])
    shown = state.remedies["fix"].fingerprint
    gate.record(state.run_id, "fix", shown, "approved", "alice", "test")
    with pytest.raises(NotApproved) as refused:
        gate.execute(proposal, next(iter(kit.inventory)), StepContext.outside_a_run(5))
    assert str(refused.value) == (
        "the approval of 'fix' was for other arguments: the action resolves differently "
        "from the one approved: items [3, 5, 8] -> [3, 5, 8, 13]")


def test_execute_with_an_expired_approval_says_expired(kit: Kit) -> None:
    state = kit.run(FIX)
    gate = Gate(kit.journal, kit.registry, approver="tester", ttl=3600)
    proposal = proposal_of(kit, state.run_id, [3, 5, 8])
    kit.journal.record_approval(Approval(state.run_id, "fix", proposal.fingerprint,
                                         "approved", "alice", "test",
                                         "2020-01-01T00:00:00.000+00:00"))
    with pytest.raises(NotApproved) as refused:
        gate.execute(proposal, next(iter(kit.inventory)), StepContext.outside_a_run(5))
    assert str(refused.value).startswith("the approval of 'fix' does not hold (expired): ")


def test_a_void_approval_is_journaled_with_the_remedy_and_who_approved(kit: Kit) -> None:
    plan = kit.plan(FIX)
    state = kit.run(FIX)
    kit.journal.record_approval(Approval(state.run_id, "fix", "0" * 64, "approved", "mallory",
                                         "runbook approve", now()))
    state = kit.engine().resume(plan, state.run_id, by="mallory")
    [void] = [e.data for e in state.timeline if e.type == "approval.void"]
    assert void["remedy"] == "fix" and void["by"] == "mallory"
    assert void["reason"] == "the approval was for another action than the one resolved now"


def test_an_expired_approval_is_journaled_with_when_and_by_whom(kit: Kit) -> None:
    plan = kit.plan(FIX)
    state = kit.run(FIX)
    old = "2020-01-01T00:00:00.000+00:00"
    kit.journal.record_approval(Approval(state.run_id, "fix", state.remedies["fix"].fingerprint,
                                         "approved", "alice", "runbook approve", old))
    engine = kit.engine()
    engine.gate = Gate(kit.journal, kit.registry, approver="daemon", ttl=3600)
    state = engine.resume(plan, state.run_id, by="alice")
    [expired] = [e.data for e in state.timeline if e.type == "approval.expired"]
    assert (expired["remedy"], expired["by"], expired["approved_at"]) == ("fix", "alice", old)
    assert expired["reason"]


def test_a_refused_approval_is_journaled_with_the_remedy_who_and_why(kit: Kit) -> None:
    from runner.policy import Policy

    engine = kit.engine()
    # four-eyes: the one who asked for the run may not approve it, even with --approve
    engine.gate = Gate(kit.journal, kit.registry, approver="tester",
                       pre_approved=frozenset({"fix=mem.act"}), policy=Policy(four_eyes=True))
    state = engine.start(kit.plan(FIX), "20261122-075345-0002", trigger="test",
                         requested_by="tester")
    [refused] = [e.data for e in state.timeline if e.type == "approval.refused"]
    assert (refused["remedy"], refused["by"]) == ("fix", "tester")
    assert "four-eyes" in refused["reason"]
    assert kit.actions() == []


def test_the_serialized_fingerprint_of_a_proposal_is_the_functions(kit: Kit) -> None:
    proposal = Proposal("r", "fix", "mem.act", "box", {"items": [1]}, identity={"id": "7"})
    assert proposal.fingerprint == fingerprint("mem.act", "box", {"id": "7"}, {"items": [1]})
    assert json.loads(json.dumps(proposal.args)) == {"items": [1]}


def test_execute_on_a_target_that_moved_journals_and_says_every_change(kit: Kit) -> None:
    state = kit.run(FIX)
    gate = Gate(kit.journal, kit.registry, approver="tester")
    target = next(iter(kit.inventory))
    args = {"items": [3, 5, 8], "wait_for": None, "undo_on_interrupt": False}
    approved = Proposal(state.run_id, "fix", "mem.act", target.name, args,
                        identity={"instance": "container-X", "path": "/elsewhere"})
    gate.record(state.run_id, "fix", approved.fingerprint, "approved", "alice", "test")
    with pytest.raises(NotApproved) as refused:
        gate.execute(approved, target, StepContext.outside_a_run(5))
    moved = ('the target resolves differently from the one approved: target instance '
             f'"container-X" -> ""; target path "/elsewhere" -> "{kit.box.resolve()}"')
    assert str(refused.value) == f"approval of 'fix' void: {moved}"
    [void] = [e.data for e in kit.journal.events(state.run_id) if e.type == "approval.void"]
    assert void == {"remedy": "fix", "by": "alice", "reason": moved}
    assert kit.actions() == []


def test_what_changed_joins_every_change_and_writes_any_value() -> None:
    at = datetime(2026, 11, 22, 7, 53, tzinfo=UTC)
    assert changes({"args": {"a": 1, "b": at}}, {"args": {"a": 2, "b": None}}) == [
        "a 1 -> 2", f'b "{at}" -> (none)']


def test_a_refusal_that_is_not_about_age_does_not_say_expired(kit: Kit) -> None:
    from runner.policy import Policy

    state = kit.engine().start(kit.plan(FIX), "20261122-075345-0006", trigger="test",
                               requested_by="alert:pool")  # no person: two must approve
    gate = Gate(kit.journal, kit.registry, approver="tester", policy=Policy(four_eyes=True))
    proposal = proposal_of(kit, state.run_id, [3, 5, 8])
    gate.record(state.run_id, "fix", proposal.fingerprint, "approved", "alice", "test")
    with pytest.raises(NotApproved) as refused:
        gate.execute(proposal, next(iter(kit.inventory)), StepContext.outside_a_run(5))
    assert str(refused.value) == ("the approval of 'fix' does not hold: four-eyes: approved "
                                  "by alice only; a second person must approve")


def test_four_eyes_at_the_gate_counts_another_persons_approval(kit: Kit) -> None:
    from runner.policy import Policy

    state = kit.run(FIX)  # requested by the person "tester"
    gate = Gate(kit.journal, kit.registry, approver="tester", policy=Policy(four_eyes=True))
    proposal = proposal_of(kit, state.run_id, [3, 5, 8])
    gate.record(state.run_id, "fix", proposal.fingerprint, "approved", "tester", "test")
    assert gate.decide(proposal) == "pending"  # the requester's own does not count
    gate.record(state.run_id, "fix", proposal.fingerprint, "approved", "alice", "test")
    assert gate.decide(proposal) == "approved"


def test_execute_hands_the_action_its_handle_and_its_timeout(tmp_path: Path) -> None:
    from runner.registry import StepKind
    from tests.enginekit import mem_registry
    from tests.support import membackend

    registry = mem_registry()
    registry.add(StepKind("mem.report", "mem",
                          lambda handle, params: {"timeout": handle.timeout},
                          membackend.Act, True, "say the handle's timeout"))
    kit = Kit(tmp_path, registry)
    state = kit.run(FIX.replace("mem.act", "mem.report"))
    gate = Gate(kit.journal, kit.registry, approver="tester")
    target = next(iter(kit.inventory))
    proposal = Proposal(state.run_id, "fix", "mem.report", target.name,
                        state.remedies["fix"].args,
                        identity=gate.identity(kit.registry.kind("mem.report"), target, 5))
    gate.record(state.run_id, "fix", proposal.fingerprint, "approved", "alice", "test")
    handles: list[object] = []
    assert gate.execute(proposal, target,
            StepContext.outside_a_run(7.5), handles.append) == {"timeout": 7.5}
    [handle] = handles
    assert isinstance(handle, membackend.Handle) and handle.writable
