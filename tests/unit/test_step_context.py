"""The step context: what the engine tells a backend about the step it serves (its own
timeout and deadline, the run, the run's directory, runbook's home, a cancellation signal)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from diagnostics import ansible
from runner import inventory, loader
from runner.context import StepContext
from runner.engine import Engine
from runner.gate import Gate
from runner.journal import Journal, new_run_id
from runner.plan import make_plan
from runner.registry import Registry, StepKind
from runner.vocabulary import EventKind
from tests.enginekit import Kit


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    return Kit(tmp_path)


def test_a_probe_sees_its_own_timeout_its_deadline_its_run_and_its_directory(kit: Kit) -> None:
    state = kit.run("""
        steps:
          - {id: own, run: mem.sleep, timeout: 90s}
          - {id: default, run: mem.sleep}
        """)
    own = state.steps["own"].result["context"]
    assert own["timeout"] == 90
    assert 0 < own["remaining"] <= 90
    assert own["run_id"] == state.run_id and own["step"] == "own"
    assert own["run_dir"] == str(kit.journal.run_dir(state.run_id))
    assert state.steps["default"].result["context"]["timeout"] == \
        kit.registry.kind("mem.sleep").timeout


def test_a_step_given_up_on_is_told_so_through_its_context(kit: Kit) -> None:
    from tests.support.polling import wait_for

    state = kit.run("steps:\n  - {id: slow, run: mem.sleep, timeout: 200ms, with: {seconds: 30}}\n")
    assert state.steps["slow"].status == "timeout"
    log = kit.box / "cancelled.jsonl"
    wait_for(log.exists, "the slow step to see its cancel")
    # The engine set the context's signal before it cancelled the handle.
    assert json.loads(log.read_text().splitlines()[0])["context_cancelled"] is True


def test_a_verify_check_gets_its_own_timeout_and_id(kit: Kit) -> None:
    state = kit.run("""
        steps:
          - {id: a, run: mem.sleep, with: {value: [1]}}
        remedies:
          - {id: fix, run: mem.act, with: {items: "{{ steps.a.value }}"}}
        verify:
          - {run: mem.sleep, timeout: 45s}
        """, approve=frozenset({"fix=mem.act"}))
    [verified] = [e.data for e in state.timeline if e.type == EventKind.VERIFY_FINISHED]
    assert verified["status"] == "passed"
    assert verified["result"]["context"]["timeout"] == 45
    assert verified["result"]["context"]["step"] == verified["verify"]


def test_a_context_outside_a_run_counts_down_from_now() -> None:
    ctx = StepContext.outside_a_run(5, home=Path("/nowhere"))
    assert 0 < ctx.remaining() <= 5
    assert ctx.run_dir == Path("/nowhere/runs/-") and not ctx.cancelled.is_set()
    with pytest.raises(AttributeError):
        ctx.timeout = 1  # type: ignore[misc]  # frozen: a backend cannot change it


def test_ansible_check_with_a_ten_minute_timeout_is_given_ten_minutes_not_its_default(
        tmp_path: Path) -> None:
    """The step's `timeout: 10m` reaches ansible-runner's whole-run timeout, above the
    kind's 300 s default: the handle the connector opens carries it."""
    registry = Registry()
    ansible.register(registry)
    assert registry.kind("ansible.check").timeout == 300
    # A kind on the real ansible connector that reports what its handle was told.
    registry.add(StepKind("ansible.told", "ansible",
                          lambda h, p: {"timeout": h.timeout, "home": str(h.home)},
                          registry.kind("ansible.check").params, False, "test only"))
    (tmp_path / "playbooks").mkdir()
    inv = tmp_path / "inventory.yaml"
    inv.write_text(f"targets:\n  fleet:\n    kind: ansible\n"
                   f"    playbook_dir: {tmp_path / 'playbooks'}\n    hosts: [127.0.0.1]\n")
    text = ("name: pb\nsummary: test\ntargets:\n  fleet: {kind: ansible}\nsteps:\n"
            "  - {id: check, run: ansible.told, timeout: 10m, with: {playbook: site.yml}}\n")
    plan = make_plan(loader.parse(text, "pb.yaml", registry),
                     inventory.load([inv], registry), registry, {}, {})
    journal = Journal(tmp_path / "home")
    engine = Engine(registry, journal, Gate(journal, registry, approver="tester"))
    state = engine.start(plan, new_run_id(), trigger="test", requested_by="tester")
    assert state.steps["check"].status == "ok", state.steps["check"].error
    assert state.steps["check"].result == {"timeout": 600, "home": str(tmp_path / "home")}


def test_a_temporary_error_that_names_its_delay_is_retried_after_it(kit: Kit) -> None:
    """Outcomes are values: a backend's `TemporaryError(delay=...)` (a 429's Retry-After)
    sets when the engine tries again, instead of its own back-off (0.5 s here)."""
    state = kit.run("steps:\n  - {id: flaky, run: mem.fail, retries: 1,"
                    " with: {temporary: true, times: 1, delay: 1.5}}\n")
    assert state.steps["flaky"].status == "ok"
    retried = next(e for e in state.timeline if e.type == EventKind.STEP_RETRY)
    again = [e for e in state.timeline if e.type == EventKind.STEP_STARTED][1]
    assert (_at(again.at) - _at(retried.at)).total_seconds() >= 1.5


def test_an_outcome_says_whether_it_may_pass_and_when() -> None:
    from runner.calls import Outcome
    from runner.errors import PermanentError, TemporaryError

    assert Outcome({"x": 1}, None).ok
    assert Outcome(None, TemporaryError("busy", delay=3)).retry_delay == 3
    assert Outcome(None, TemporaryError("busy")).temporary
    assert not Outcome(None, PermanentError("denied")).temporary
    assert Outcome(None, PermanentError("denied")).retry_delay is None


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)
