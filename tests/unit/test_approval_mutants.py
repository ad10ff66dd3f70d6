"""Approval-policy cases mutation testing found untested (scripts/mutation
runner/approval.py runner/policy.py): which refusals are the policy's (HTTP 403) and what
each says, a decline that resets who has approved, the policy a run recorded when it
started, and how a policy file is found and read. The main tests are test_approval.py and
test_policy.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import approval
from runner.approval import ApprovalRefused, record, run_policy, verdict
from runner.errors import PlaybookError, UsageError
from runner.journal import Approval, now
from runner.policy import Policy, locate, read
from runner.policy import load as load_policy
from runner.state import RunState
from tests.enginekit import Kit

FIX = """
steps:
  - {id: scan, run: mem.sleep, with: {value: [3, 5, 8]}}
remedies:
  - {id: fix, run: mem.act, with: {items: "{{ steps.scan.value }}"}}
  - {id: tidy, run: mem.act, with: {items: [tidy]}}
"""


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    return Kit(tmp_path)


def refusal(kit: Kit, state: RunState, by: str, policy: Policy, how: str = "test",
            remedy: str = "fix", fingerprint: str | None = None) -> ApprovalRefused:
    with pytest.raises(ApprovalRefused) as refused:
        record(kit.journal, state.run_id, remedy, decision="approved", by=by, how=how,
               policy=policy, fingerprint=fingerprint)
    return refused.value


@pytest.mark.parametrize(("source", "names", "says"), [
    ("/etc/runbook/policy.yaml", ("alice", "carol"), "policy /etc/runbook/policy.yaml: "
                                                     "alice, carol"),
    ("", ("alice",), "policy of the run: alice"),
    ("", (), "policy of the run: nobody"),
])
def test_a_name_the_policy_does_not_allow_is_forbidden_and_told_who_may(
        kit: Kit, source: str, names: tuple[str, ...], says: str) -> None:
    state = kit.run(FIX)
    refused = refusal(kit, state, "bob", Policy(approvers=({"pb/fix": names},), source=source))
    assert str(refused) == f"bob may not approve pb/fix ({says})"
    assert refused.forbidden is True


def test_four_eyes_refusals_are_forbidden_and_say_why(kit: Kit) -> None:
    state = kit.run(FIX)  # requested by "tester"
    four_eyes = Policy(four_eyes=True)
    record(kit.journal, state.run_id, "fix", decision="approved", by="alice",
           how="runbook approve (OS user alice-unix)", policy=four_eyes)
    again = refusal(kit, state, "alice", four_eyes)
    assert str(again) == ("four-eyes: alice has approved fix already; another person must "
                          "approve it too")
    assert again.forbidden is True
    requester = refusal(kit, state, "dave", four_eyes, how="runbook approve (OS user tester)")
    assert str(requester) == ("four-eyes: OS user tester requested this run and may not "
                              "approve it, as dave or any other name")
    assert requester.forbidden is True
    same_account = refusal(kit, state, "eve", four_eyes,
                           how="runbook approve (OS user alice-unix)")
    assert str(same_account) == ("four-eyes: OS user alice-unix approved fix already (as "
                                 "alice); another person must approve it from their own "
                                 "account")
    assert same_account.forbidden is True


def test_refusals_of_the_runs_state_are_not_forbidden_and_say_what_waits(kit: Kit) -> None:
    state = kit.run(FIX)
    unknown = refusal(kit, state, "alice", Policy(), remedy="nope")
    assert str(unknown) == f"run {state.run_id} has no proposed remedy 'nope'; waiting: fix, tidy"
    assert unknown.forbidden is False
    stale = refusal(kit, state, "alice", Policy(), fingerprint="0" * 64)
    shown = state.remedies["fix"].fingerprint
    assert str(stale) == (f"fix is proposed now as {shown[:16]}..., not {'0' * 16}...: look "
                          f"at it again (runbook report {state.run_id})")

    done = kit.run(FIX, approve=frozenset({"fix=mem.act", "tidy=mem.act"}))
    finished = refusal(kit, done, "alice", Policy())
    assert str(finished) == (f"run {done.run_id} is completed: only a run awaiting approval "
                             "(or interrupted) takes one")


def test_a_remedy_that_ran_is_not_proposed_any_more_and_says_what_it_is(kit: Kit) -> None:
    state = kit.run(FIX, approve=frozenset({"fix=mem.act"}))  # fix ran; tidy waits
    assert state.remedies["tidy"].status == "proposed"
    refused = refusal(kit, state, "alice", Policy())
    assert str(refused) == (f"run {state.run_id} has no proposed remedy 'fix' (it is "
                            "succeeded); waiting: tidy")


def test_a_decline_is_the_verdicts_reason(kit: Kit) -> None:
    state = kit.run(FIX)
    fingerprint = state.remedies["fix"].fingerprint
    record(kit.journal, state.run_id, "fix", decision="declined", by="alice", how="test",
           policy=Policy())
    found = verdict(kit.journal, state.run_id, "fix", fingerprint, requested_by="tester",
                    policy=Policy())
    assert (found.decision, found.reason) == ("declined", "declined by alice")


def test_approvals_before_a_decline_no_longer_count(kit: Kit) -> None:
    """An alert's run under four-eyes needs two people; alice's approval came before bob's
    decline, so carol's alone is not enough."""
    state = kit.run(FIX)
    fingerprint = state.remedies["fix"].fingerprint
    for by, decision in (("alice", "approved"), ("bob", "declined"), ("carol", "approved")):
        kit.journal.record_approval(Approval(state.run_id, "fix", fingerprint, decision, by,
                                             "test", now()))
    found = verdict(kit.journal, state.run_id, "fix", fingerprint, requested_by="alert:pool",
                    policy=Policy(four_eyes=True))
    assert found.decision == "pending"
    assert found.by == ()
    assert found.reason == ("four-eyes: approved by carol only; a second person must "
                            "approve")
    assert found.expired == ()


def test_four_eyes_pending_lists_approvals_too_old_to_count(kit: Kit) -> None:
    state = kit.run(FIX)
    fingerprint = state.remedies["fix"].fingerprint
    old = Approval(state.run_id, "fix", fingerprint, "approved", "alice", "test",
                   "2020-01-01T00:00:00.000+00:00")
    kit.journal.record_approval(old)
    kit.journal.record_approval(Approval(state.run_id, "fix", fingerprint, "approved", "bob",
                                         "test", now()))
    found = verdict(kit.journal, state.run_id, "fix", fingerprint, requested_by="alert:pool",
                    policy=Policy(four_eyes=True, ttl=3600))
    assert found.decision == "pending" and found.expired == (old,)


def test_the_policy_a_run_was_planned_with_is_the_runs(kit: Kit) -> None:
    run_id = "20261122-075345-0003"
    kit.journal.create_run(run_id, "pb", "P3", {"policy": Policy(
        ttl=60, four_eyes=True, source="planned").to_json()})
    assert run_policy(kit.journal, run_id, Policy()) == Policy(60, True, (), "planned")
    assert approval.run_policy(kit.journal, run_id, Policy(ttl=30)).ttl == 30


def test_from_json_without_a_source_says_none() -> None:
    assert Policy.from_json({"ttl": 5}).source == ""


def test_a_policy_file_without_approvers_has_no_table(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("ttl: 1h\n")
    assert read(path) == Policy(3600.0, False, (), str(path))
    path.write_text("")
    assert read(path) == Policy(None, False, (), str(path))


def test_a_policy_file_that_does_not_parse_names_its_problems(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("ttl: [\n")
    with pytest.raises(PlaybookError) as wrong:
        read(path)
    assert wrong.value.problems and str(path) in str(wrong.value)


def test_the_policy_file_is_found_in_an_inventory_folder_or_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNBOOK_POLICY", raising=False)
    folder = tmp_path / "inventory"
    folder.mkdir()
    (folder / "policy.yaml").write_text("four_eyes: true\n")
    assert locate(None, [folder]) == folder / "policy.yaml"
    assert load_policy(None, [folder]).four_eyes is True
    named = tmp_path / "strict.yaml"
    named.write_text("ttl: 10m\n")
    assert load_policy(named, [folder]) == Policy(600.0, False, (), str(named))
    missing = tmp_path / "absent.yaml"
    with pytest.raises(UsageError) as refused:
        locate(missing, [])
    assert str(refused.value) == f"no policy file at {missing}"
