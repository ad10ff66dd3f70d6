"""Remedy cases mutation testing found untested (scripts/mutation runner/remedies.py): what
the journal says of a remedy that failed, succeeded, waited for a busy target, passed its
deadline and ended late or not at all, and the evidence file of a success. The main tests
are test_remedies.py, whose engine-in-a-thread helpers are reused."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from runner.errors import PermanentError
from runner.journal import new_run_id
from runner.registry import StepKind
from runner.state import AWAITING, FAILED
from tests.enginekit import Kit, mem_registry
from tests.support import membackend
from tests.support.polling import wait_for
from tests.unit.test_remedies import SLOW, event_data, run_in_thread

FIX = """
steps:
  - {id: a, run: mem.sleep, with: {value: [1, 2, 3]}}
remedies:
  - {id: fix, run: %s, with: {items: "{{ steps.a.value }}"}}
"""


def refuse(handle: Any, params: membackend.Act) -> dict[str, Any]:
    raise PermanentError(f"refused to act on {len(params.items)} item(s)")


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    registry = mem_registry()
    registry.add(StepKind("mem.refuse", "mem", refuse, membackend.Act, True,
                          "an action that fails", timeout=120))
    return Kit(tmp_path, registry)


def only(events: list[dict[str, Any]]) -> dict[str, Any]:
    [event] = events
    return event


def test_a_failed_remedy_is_journaled_failed_with_its_error(kit: Kit) -> None:
    state = kit.run(FIX % "mem.refuse", approve=frozenset({"fix=mem.refuse"}))
    assert state.status == FAILED
    assert state.remedies["fix"].status == "failed"
    finished = only(event_data(kit, "remedy.finished"))
    assert finished["duration_ms"] >= 0
    assert {k: v for k, v in finished.items() if k != "duration_ms"} == {
        "remedy": "fix", "status": "failed", "error": "refused to act on 3 item(s)"}
    assert not (kit.journal.run_dir(state.run_id) / "evidence" / "remedy-fix.json").exists()


def test_a_succeeded_remedy_is_journaled_with_its_result_and_kept_as_evidence(
        kit: Kit) -> None:
    state = kit.run(FIX % "mem.act", approve=frozenset({"fix=mem.act"}))
    finished = only(event_data(kit, "remedy.finished"))
    assert {k: v for k, v in finished.items() if k != "duration_ms"} == {
        "remedy": "fix", "status": "succeeded", "result": {"done": 3}}
    assert finished["duration_ms"] >= 0
    evidence = kit.journal.run_dir(state.run_id) / "evidence" / "remedy-fix.json"
    assert json.loads(evidence.read_text()) == {
        "remedy": "fix", "kind": "mem.act", "target": "box",
        "args": {"items": [1, 2, 3], "wait_for": None, "undo_on_interrupt": False},
        "result": {"done": 3}}


def test_a_busy_target_leaves_the_remedy_proposed_and_says_who_holds_it(kit: Kit) -> None:
    holder = new_run_id() + "x"
    kit.journal.create_run(holder, "other", "P3", {})
    kit.journal.lock_target("box", holder)
    state = kit.run(FIX % "mem.act", approve=frozenset({"fix=mem.act"}))
    assert state.status == AWAITING
    assert state.remedies["fix"].status == "proposed"
    assert only(event_data(kit, "remedy.skipped")) == {
        "remedy": "fix", "status": "proposed",
        "reason": f"target 'box' is being remediated by run {holder}; resume this run later"}
    assert kit.actions() == []


def test_past_its_deadline_the_journal_says_unknown_then_how_it_ended(kit: Kit) -> None:
    thread, _ = run_in_thread(kit, SLOW % "true")  # it undoes its work when asked
    thread.join(timeout=60)
    assert not thread.is_alive()
    finished = only(event_data(kit, "remedy.finished"))
    assert finished["error"] == ("no answer within 0.3s: asked it to stop where it safely "
                                 "can; its outcome is unknown, and box stays locked until it "
                                 "ends")
    assert (finished["remedy"], finished["status"]) == ("fix", "outcome_unknown")
    assert finished["duration_ms"] >= 0
    late = only(event_data(kit, "remedy.ended_late"))
    assert {k: v for k, v in late.items() if k != "duration_ms"} == {
        "remedy": "fix", "result": {"done": 0, "undone": True}}
    assert late["duration_ms"] >= finished["duration_ms"]


def test_past_the_grace_period_the_warning_names_the_remedy_run_and_target(
        kit: Kit, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="runbook.remedies"):
        thread, states = run_in_thread(kit, SLOW % "false", grace=0.2)
        thread.join(timeout=60)
    [state] = states
    message = (f"remedy fix of run {state.run_id} is still running 0.2s past its 0.3s "
               "deadline; runbook stops waiting for it. If this process exits, box stays "
               "locked until a later run finds this process gone")
    assert only(event_data(kit, "remedy.still_running")) == {"remedy": "fix",
                                                            "reason": message}
    assert message in [r.getMessage() for r in caplog.records]
    (kit.box / "release-act").touch()
    wait_for(lambda: kit.journal.target_lock("box") is None, "the action to end")
