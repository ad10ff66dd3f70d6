"""The one run lifecycle: load -> plan -> start -> resume -> approve, as the command line and
the daemon both drive it. A real journal, the in-memory backend, real remedies."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import lifecycle
from runner.approval import APPROVED, DECLINED, PENDING, ApprovalRefused
from runner.errors import UsageError
from runner.journal import Journal
from runner.policy import Policy
from runner.state import AWAITING, COMPLETED
from tests.enginekit import Kit

BOOK = """
steps:
  - {id: a, run: mem.sleep, with: {value: 7}}
remedies:
  - {id: fix, run: mem.act, with: {items: [1]}}
"""


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    return Kit(tmp_path)


def started(kit: Kit, policy: Policy, requested_by: str = "ann") -> str:
    """A run started the way both callers start one; it waits for an approval of `fix`."""
    heard: list[tuple[str, bool]] = []
    engine = lifecycle.engine_for(kit.registry, kit.journal, approver="daemon", policy=policy)
    state = lifecycle.start(
        engine, kit.plan(BOOK), inventory_paths=[kit.root / "inventory.yaml"], policy=policy,
        trigger="test", requested_by=requested_by,
        on_run_id=lambda run_id: heard.append((run_id, lifecycle.exists(kit.journal, run_id))))
    # The caller hears the id before anything of the run exists (the daemon links it to its
    # alerts, the CLI prints it, before the first step runs).
    assert heard == [(state.run_id, False)]
    assert state.status == AWAITING
    assert state.remedies["fix"].status == "proposed"
    return state.run_id


def test_a_run_starts_waits_takes_an_approval_and_resumes_to_its_end(kit: Kit) -> None:
    run_id = started(kit, Policy())
    source = kit.journal.get_run(run_id).source
    assert source["inventory"]["paths"] == [str((kit.root / "inventory.yaml").resolve())]
    assert source["policy"] == Policy().to_json()
    decided = lifecycle.decide(kit.journal, run_id, "fix", decision=APPROVED, by="bob",
                               how="test", policy=Policy())
    assert (decided.approval.by, decided.remedy.id) == ("bob", "fix")
    assert decided.standing is not None and decided.standing.decision == APPROVED
    assert kit.actions() == []  # approving runs nothing by itself
    plan = lifecycle.replan_run(kit.journal, run_id, kit.inventory, kit.registry)
    engine = lifecycle.engine_for(kit.registry, kit.journal, approver="daemon", policy=Policy())
    state = lifecycle.resume(engine, plan, run_id, by="daemon")
    assert state.status == COMPLETED
    assert state.remedies["fix"].status == "succeeded"
    assert state.remedies["fix"].approved_by == "bob"
    assert kit.actions() == [{"items": [1], "phase": "start"}, {"items": [1], "phase": "end"}]


def test_an_approval_under_four_eyes_says_it_is_not_yet_standing(kit: Kit) -> None:
    """The first of two people: recorded, and the caller learns that it cannot run yet."""
    policy = Policy(four_eyes=True)
    run_id = started(kit, policy, requested_by="alert:db")
    decided = lifecycle.decide(kit.journal, run_id, "fix", decision=APPROVED, by="bob",
                               how="test", policy=policy)
    assert decided.standing is not None and decided.standing.decision == PENDING
    assert "second person" in decided.standing.reason
    with pytest.raises(ApprovalRefused, match="four-eyes") as refused:
        lifecycle.decide(kit.journal, run_id, "fix", decision=APPROVED, by="bob",
                         how="test", policy=policy)
    assert refused.value.forbidden


def test_a_decline_has_no_standing_and_a_settled_remedy_takes_no_decision(kit: Kit) -> None:
    run_id = started(kit, Policy())
    decided = lifecycle.decide(kit.journal, run_id, "fix", decision=DECLINED, by="bob",
                               how="test", policy=Policy())
    assert decided.standing is None
    engine = lifecycle.engine_for(kit.registry, kit.journal, approver="daemon", policy=Policy())
    plan = lifecycle.replan_run(kit.journal, run_id, kit.inventory, kit.registry)
    assert lifecycle.resume(engine, plan, run_id, by="daemon").status == COMPLETED
    with pytest.raises(ApprovalRefused, match="completed"):
        lifecycle.decide(kit.journal, run_id, "fix", decision=APPROVED, by="bob", how="test",
                         policy=Policy())
    assert kit.actions() == []


def test_a_run_resumes_with_the_inventory_it_was_planned_with(kit: Kit) -> None:
    run_id = started(kit, Policy())
    assert lifecycle.recorded_inventory(kit.journal, run_id) == [
        (kit.root / "inventory.yaml").resolve()]
    (kit.root / "inventory.yaml").unlink()
    with pytest.raises(UsageError, match="no longer exists: pass --inventory"):
        lifecycle.recorded_inventory(kit.journal, run_id)


def test_a_run_journaled_before_runs_recorded_their_inventory_says_so(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "home")
    journal.create_run("old-run", "pb", "P3", {"playbook_text": "", "playbook_path": ""})
    assert lifecycle.recorded_inventory(journal, "old-run") is None
    assert lifecycle.exists(journal, "old-run")
    assert not lifecycle.exists(journal, "no-such-run")
