"""Engine cases mutation testing found untested (scripts/mutation runner/engine.py): a
remedy resumed unchanged is not proposed again, and one whose target now resolves to
something else is proposed again with everything the approver must see. The main tests are
test_engine.py, test_gate.py and test_approval.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.journal import Approval, now
from runner.state import AWAITING, COMPLETED
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


def approve(kit: Kit, run_id: str, fingerprint: str) -> None:
    kit.journal.record_approval(Approval(run_id, "fix", fingerprint, "approved", "alice",
                                         "runbook approve", now()))


def test_a_remedy_resumed_unchanged_is_proposed_once(kit: Kit) -> None:
    plan = kit.plan(FIX)
    state = kit.run(FIX)
    approve(kit, state.run_id, state.remedies["fix"].fingerprint)
    state = kit.engine().resume(plan, state.run_id, by="alice")
    assert state.status == COMPLETED
    assert [e.type for e in state.timeline].count("remedy.proposed") == 1


def test_a_remedy_whose_target_moved_is_proposed_again_with_what_changed(kit: Kit) -> None:
    (kit.box / "instance").write_text("container-X")
    plan = kit.plan(FIX)
    state = kit.run(FIX)
    shown = state.remedies["fix"].fingerprint
    approve(kit, state.run_id, shown)
    (kit.box / "instance").write_text("container-Y")
    state = kit.engine().resume(plan, state.run_id, by="alice")
    assert state.status == AWAITING
    again = [e.data for e in state.timeline if e.type == "remedy.proposed"][-1]
    assert again == {
        "remedy": "fix", "kind": "mem.act", "target": "box",
        "args": {"items": [3, 5, 8], "wait_for": None, "undo_on_interrupt": False},
        "explain": "act on 3 item(s)",
        "identity": {"path": str(kit.box.resolve()), "instance": "container-Y"},
        "fingerprint": state.remedies["fix"].fingerprint,
        "reason": "proposed again, approval void: the action resolves differently from the "
                  'one approved: target instance "container-X" -> "container-Y"'}
    assert again["fingerprint"] != shown
    assert kit.actions() == []


MANY = """
steps:
  - {id: scan, run: mem.sleep, target: box, with: {value: [3, 5, 8]}}
remedies:
  - {id: never, run: mem.act, target: box, when: "steps.scan.value | length > 5",
     with: {items: [1]}}
  - {id: broken, run: mem.act, target: box,
     with: {items: "{{ steps.scan.value.nothing.here }}"}}
  - {id: fix, run: mem.act, target: box, with: {items: "{{ steps.scan.value }}"}}
"""


def test_remedies_not_needed_or_unresolvable_are_said_and_the_next_is_still_proposed(
        kit: Kit) -> None:
    plan = kit.plan(MANY)
    state = kit.engine().start(plan, "20261122-075345-0007", trigger="test",
                               requested_by="tester")
    skipped = {e.data["remedy"]: e.data for e in state.timeline if e.type == "remedy.skipped"}
    assert skipped["never"] == {"remedy": "never", "kind": "mem.act", "target": "box",
                                "status": "not_needed",
                                "reason": "condition is false: steps.scan.value | length > 5"}
    assert skipped["broken"]["status"] == "skipped"
    assert skipped["broken"]["reason"].startswith("cannot be resolved: ")
    assert state.remedies["fix"].status == "proposed"


def test_a_no_at_the_gate_is_journaled_as_declined_at_the_gate(kit: Kit) -> None:
    state = kit.run(FIX, prompter=lambda proposal: False)
    [declined] = [e.data for e in state.timeline if e.type == "remedy.skipped"]
    assert declined == {"remedy": "fix", "status": "declined", "reason": "declined at the gate"}


def test_the_start_of_a_remedy_is_in_the_runs_own_timeline(kit: Kit) -> None:
    state = kit.run(FIX, approve=frozenset({"fix=mem.act"}))
    types = [e.type for e in state.timeline]
    assert types.index("remedy.started") < types.index("remedy.finished")
