"""The engine: ordering, concurrency, timeouts, retries, findings and verify."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.model import Playbook
from runner.state import AWAITING, COMPLETED, FAILED
from tests.enginekit import Kit
from tests.support import membackend
from tests.support.polling import wait_for


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    return Kit(tmp_path)


def order(state, type_: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.data["step"] for e in state.timeline if e.type == type_]


def test_independent_steps_run_concurrently_within_the_bound(kit: Kit) -> None:
    steps = "".join(f"  - {{id: s{i}, run: mem.sleep, with: {{seconds: 0.3}}}}\n" for i in range(6))
    membackend.reset_peak()
    state = kit.run("steps:\n" + steps, concurrency=3)
    assert membackend.reset_peak() == 3
    assert {s.status for s in state.steps.values()} == {"ok"}
    assert state.status == COMPLETED


def test_a_step_waits_for_what_it_needs_and_reads_its_result(kit: Kit) -> None:
    state = kit.run("""
        steps:
          - {id: b, run: mem.sleep, needs: [a]}
          - {id: c, run: mem.sleep, with: {value: "{{ steps.a.value * 2 }}"}}
          - {id: a, run: mem.sleep, with: {seconds: 0.2, value: 21}}
        """)
    finished, started = order(state, "step.finished"), order(state, "step.started")
    assert finished.index("a") < started.index("b")
    assert finished.index("a") < started.index("c")
    assert state.steps["c"].result["value"] == 42


def test_a_timed_out_step_is_cancelled_and_the_others_carry_on(kit: Kit) -> None:
    state = kit.run("""
        steps:
          - {id: slow, run: mem.sleep, timeout: 200ms, with: {seconds: 30}}
          - {id: quick, run: mem.sleep, with: {seconds: 0.1}}
        """)
    assert state.steps["slow"].status == "timeout"
    assert "0.2s" in (state.steps["slow"].error or "")
    assert state.steps["quick"].status == "ok"
    # The engine cancelled through the handle; the abandoned thread notices soon after.
    wait_for((kit.box / "cancelled.jsonl").exists, "the slow step to see its cancel")
    assert [s.id for s in state.not_checked()] == ["slow"]


def test_temporary_failures_are_retried_and_permanent_ones_are_not(kit: Kit) -> None:
    state = kit.run("""
        steps:
          - {id: flaky, run: mem.fail, retries: 2, with: {temporary: true, times: 2, key: t}}
          - {id: broken, run: mem.fail, retries: 3, with: {temporary: false, key: p}}
        """)
    assert state.steps["flaky"].status == "ok"
    assert state.steps["flaky"].attempts == 3
    assert state.steps["broken"].status == "failed"
    assert state.steps["broken"].attempts == 1
    assert "failure number 1" in (state.steps["broken"].error or "")


def test_dependents_of_a_failed_step_are_skipped_with_the_reason(kit: Kit) -> None:
    state = kit.run("""
        steps:
          - {id: broken, run: mem.fail}
          - {id: after, run: mem.sleep, needs: [broken]}
          - {id: other, run: mem.sleep}
        """)
    assert state.steps["after"].status == "skipped"
    assert "broken" in (state.steps["after"].error or "")
    assert state.steps["other"].status == "ok"


def test_a_false_condition_skips_a_step(kit: Kit) -> None:
    state = kit.run("""
        steps:
          - {id: a, run: mem.sleep, with: {value: 1}}
          - {id: b, run: mem.sleep, when: "steps.a.value > 5"}
        """)
    assert state.steps["b"].status == "skipped"


def test_findings_fire_clear_or_say_why_they_could_not_be_judged(kit: Kit) -> None:
    state = kit.run("""
        steps:
          - {id: a, run: mem.sleep, with: {value: 7}}
          - {id: broken, run: mem.fail}
        findings:
          - {id: high, when: steps.a.value > 5, say: "value is {{ steps.a.value }}"}
          - {id: low, when: steps.a.value < 5, say: low}
          - {id: blind, when: steps.broken.ok, say: never}
        """)
    assert state.findings["high"].status == "fired"
    assert state.findings["high"].message == "value is 7"
    assert state.findings["low"].status == "clear"
    assert state.findings["blind"].status == "unknown"
    assert "broken" in (state.findings["blind"].reason or "")


def test_verify_watches_for_the_whole_window(kit: Kit) -> None:
    state = kit.run("""
        steps:
          - {id: a, run: mem.sleep, with: {value: [1, 2]}}
        remedies:
          - {id: fix, run: mem.act, with: {items: "{{ steps.a.value }}"}}
        verify:
          - {id: steady, run: mem.sleep, for: 300ms, interval: 100ms, expect: result.ok}
          - {id: wrong, run: mem.sleep, with: {value: 1}, expect: "result.value == 2",
             within: 300ms, interval: 100ms}
        """, approve=frozenset({"fix=mem.act"}))
    assert state.verify["steady"].status == "passed"
    assert state.verify["steady"].checks >= 3
    assert state.verify["wrong"].status == "failed"
    assert state.status == FAILED


def test_verify_does_not_run_when_no_remedy_ran(kit: Kit) -> None:
    state = kit.run("""
        steps:
          - {id: a, run: mem.sleep}
        remedies:
          - {id: fix, run: mem.act}
        verify:
          - {run: mem.sleep}
        """)
    assert state.status == AWAITING
    assert state.verify == {}


def test_the_engine_refuses_a_mutating_step_even_when_validation_is_bypassed(kit: Kit) -> None:
    plan = kit.plan("steps:\n  - {id: a, run: mem.sleep}\n")
    # Swap in a playbook that never went through validation, with an action as a step.
    rogue = Playbook.model_validate({
        "name": "pb", "summary": "rogue", "targets": {"box": {"kind": "mem"}},
        "steps": [{"id": "sneaky", "run": "mem.act", "with": {"items": [1]}}]})
    from dataclasses import replace

    plan = replace(plan, loaded=replace(plan.loaded, playbook=rogue))
    state = kit.engine().start(plan, "rogue-run", trigger="test", requested_by="tester")
    assert state.steps["sneaky"].status == "failed"
    assert "approved remedy" in (state.steps["sneaky"].error or "")
    assert kit.actions() == []


def test_verify_waits_for_the_fix_to_show_within_its_settling_time(kit: Kit) -> None:
    state = kit.run("""
        steps:
          - {id: a, run: mem.sleep}
        remedies:
          - {id: fix, run: mem.act}
        verify:
          - {id: settles, run: mem.fail, with: {times: 2, key: v}, within: 2s, interval: 100ms}
          - {id: never, run: mem.fail, with: {key: n}, within: 300ms, interval: 100ms}
        """, approve=frozenset({"fix=mem.act"}))
    assert state.verify["settles"].status == "passed"
    assert state.verify["settles"].checks == 3
    assert state.verify["never"].status == "failed"
    assert "failure number" in (state.verify["never"].error or "")



def test_an_optional_role_without_a_target_skips_what_it_would_do(tmp_path: Path) -> None:
    from runner.registry import Backend, StepKind

    kit = Kit(tmp_path)
    kit.registry.add_backend(Backend("spare", membackend.MemConnector(), membackend.MemSettings))
    kit.registry.add(StepKind("spare.sleep", "spare", membackend.sleep, membackend.Sleep, False,
                              "sleep"))
    kit.registry.add(StepKind("spare.act", "spare", membackend.act, membackend.Act, True, "act"))
    plan = kit.plan("""
        steps:
          - {id: a, run: mem.sleep}
          - {id: b, run: spare.sleep, target: spare}
        remedies:
          - {id: fix, run: spare.act, target: spare}
        verify:
          - {id: check, run: spare.sleep, target: spare}
        """.replace("steps:", "steps:", 1), optional_role=("spare", "spare"))
    state = kit.engine().start(plan, "optional", trigger="test", requested_by="tester")
    assert state.steps["a"].status == "ok"
    assert state.steps["b"].status == "skipped"
    assert "optional role spare" in (state.steps["b"].error or "")
    assert state.remedies["fix"].status == "not_needed"
    assert state.status == COMPLETED


def test_conditions_about_a_skipped_step_are_false_and_its_dependents_skip(kit: Kit) -> None:
    state = kit.run("""
        steps:
          - {id: a, run: mem.sleep, with: {value: 1}}
          - {id: b, run: mem.sleep, when: "steps.a.value > 5", with: {value: 2}}
          - {id: c, run: mem.sleep, when: "not steps.b.value"}
          - {id: d, run: mem.sleep, with: {value: "{{ steps.b.value }}"}}
          - {id: e, run: mem.fail}
        findings:
          - {id: about-skipped, when: "steps.b.value == 2", say: never}
          - {id: about-failed, when: "steps.e.ok", say: never}
        """)
    assert state.steps["b"].status == "skipped"
    assert state.steps["c"].status == "ok"  # "not none" holds
    assert state.steps["d"].status == "skipped"
    assert state.findings["about-skipped"].status == "clear"
    assert state.findings["about-failed"].status == "unknown"


def test_remedies_read_the_concluded_findings(kit: Kit) -> None:
    state = kit.run("""
        steps:
          - {id: usage, run: mem.sleep, with: {value: 95}}
          - {id: broken, run: mem.fail}
        findings:
          - {id: full, when: steps.usage.value >= 90, say: full}
          - {id: empty, when: steps.usage.value == 0, say: empty}
          - {id: unknowable, when: steps.broken.x > 1, say: never evaluated}
        remedies:
          - {id: when-fired, run: mem.act, when: "findings['full'] and not findings['empty']"}
          - {id: when-clear, run: mem.act, when: "findings['empty']"}
          - {id: when-unknown, run: mem.act, when: "not findings['unknowable']"}
        """)
    assert {f.id: f.status for f in state.findings.values()} == {
        "full": "fired", "empty": "clear", "unknowable": "unknown"}
    assert {r.id: r.status for r in state.remedies.values()} == {
        "when-fired": "proposed", "when-clear": "not_needed",
        # A finding that could not be concluded never lets a remedy through, even negated.
        "when-unknown": "skipped"}
    assert state.status == AWAITING


def test_a_steps_own_timeout_reaches_the_backend(kit: Kit) -> None:
    state = kit.run("""
        steps:
          - {id: own, run: mem.sleep, timeout: 7s}
          - {id: default, run: mem.sleep}
        remedies:
          - {id: fix, run: mem.act}
        verify:
          - {id: check, run: mem.sleep, timeout: 3s, expect: "result.timeout == 3"}
        """, approve=frozenset({"fix=mem.act"}))
    # What the connector was given, as the mem backend's handle recorded it.
    assert state.steps["own"].result["timeout"] == 7
    assert state.steps["default"].result["timeout"] == 30  # mem.sleep's own default
    assert state.verify["check"].status == "passed"
    assert state.verify["check"].result["timeout"] == 3
