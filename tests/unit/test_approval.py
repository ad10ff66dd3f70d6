"""One approval path, one policy: TTL at its boundary with a clock the test controls,
four-eyes as two distinct people across the CLI and the daemon, who may approve what, and
an approval bound to what the target's name resolved to (the `mem` backend's `instance`
file stands in for the container behind a name)."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.approval import APPROVED, PENDING, ApprovalRefused, record, verdict
from runner.cli import main
from runner.context import StepContext
from runner.errors import NotApproved, PlaybookError
from runner.gate import Gate, Proposal, fingerprint
from runner.journal import Approval
from runner.policy import Policy, load, locate
from runner.state import AWAITING, COMPLETED, RunState
from tests.enginekit import Kit

FIX = """
steps:
  - {id: scan, run: mem.sleep, with: {value: [3, 5, 8]}}
remedies:
  - {id: fix, run: mem.act, with: {items: "{{ steps.scan.value }}"}}
"""

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    return Kit(tmp_path)


def proposed(state: RunState, remedy: str = "fix") -> Proposal:
    """The proposal as it was journaled (what the approver was shown)."""
    event = [e for e in state.timeline if e.type == "remedy.proposed"
             and e.data["remedy"] == remedy][-1].data
    return Proposal(state.run_id, remedy, event["kind"], event["target"], event["args"],
                    event.get("explain", ""), event["identity"])


def approve_at(kit: Kit, state: RunState, at: datetime, by: str = "alice") -> None:
    kit.journal.record_approval(Approval(state.run_id, "fix", state.remedies["fix"].fingerprint,
                                         APPROVED, by, "runbook approve", at.isoformat()))


def starts(kit: Kit) -> int:
    return len([a for a in kit.actions() if a["phase"] == "start"])


# TTL


@pytest.mark.parametrize("age, holds", [(timedelta(seconds=60), True),
                                        (timedelta(seconds=60, milliseconds=1), False)])
def test_ttl_just_inside_holds_and_just_past_does_not(kit: Kit, age: timedelta,
                                                      holds: bool) -> None:
    state = kit.run(FIX)
    approve_at(kit, state, T0)
    found = verdict(kit.journal, state.run_id, "fix", state.remedies["fix"].fingerprint,
                    requested_by="tester", policy=Policy(ttl=60), clock=lambda: T0 + age)
    assert found.decision == (APPROVED if holds else PENDING)
    assert bool(found.expired) is not holds


def test_gate_execute_with_an_expired_approval_raises_not_approved(kit: Kit) -> None:
    state = kit.run(FIX)
    approve_at(kit, state, T0)
    target = next(iter(kit.inventory))
    late = Gate(kit.journal, kit.registry, approver="x", ttl=60,
                clock=lambda: T0 + timedelta(seconds=61))
    with pytest.raises(NotApproved, match="expired"):
        late.execute(proposed(state), target, StepContext.outside_a_run(5))
    assert starts(kit) == 0
    in_time = Gate(kit.journal, kit.registry, approver="x", ttl=60,
                   clock=lambda: T0 + timedelta(seconds=59))
    in_time.execute(proposed(state), target, StepContext.outside_a_run(5))
    assert starts(kit) == 1


def test_resume_enforces_the_ttl_of_the_policy_file(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`runbook resume` applies the policy's TTL: an approval older than it is void."""
    world = mem_world(tmp_path, monkeypatch, "ttl: 1h\n")
    assert main(["run", "mem-incident", "--no-input"]) == 1
    run_id = only_run(world)
    kit_journal = journal()
    state = kit_journal.state(run_id)
    kit_journal.record_approval(Approval(run_id, "fix", state.remedies["fix"].fingerprint,
                                         APPROVED, "alice", "runbook approve",
                                         (datetime.now(UTC) - timedelta(hours=2)).isoformat()))
    capsys.readouterr()
    assert main(["resume", run_id, "--no-input"]) == 1
    assert "expired approval of fix: approvals are good for 3600s" in capsys.readouterr().err
    state = kit_journal.state(run_id)
    assert state.status == AWAITING
    assert [e.data["reason"] for e in state.timeline if e.type == "approval.expired"] \
        == ["approvals are good for 3600s"]
    assert not (world / "box" / "actions.jsonl").exists()


# The target behind the name


def test_an_approval_is_void_when_the_name_resolves_to_another_thing(kit: Kit) -> None:
    (kit.box / "instance").write_text("container-X")
    plan = kit.plan(FIX)
    state = kit.run(FIX)
    assert proposed(state).identity["instance"] == "container-X"
    approve_at(kit, state, datetime.now(UTC))
    (kit.box / "instance").write_text("container-Y")  # the same name, another thing
    state = kit.engine().resume(plan, state.run_id, by="alice")
    assert state.status == AWAITING
    assert starts(kit) == 0
    [void] = [e.data for e in state.timeline if e.type == "approval.void"]
    assert 'instance "container-X" -> "container-Y"' in void["reason"]
    assert "container-Y" in (state.remedies["fix"].reason or "")  # the report says why
    assert state.remedies["fix"].status == "proposed"  # proposed again, for a new approval
    assert proposed(state).identity["instance"] == "container-Y"


def test_gate_execute_resolves_the_target_again_right_before_the_action(kit: Kit) -> None:
    (kit.box / "instance").write_text("container-X")
    state = kit.run(FIX)
    approve_at(kit, state, datetime.now(UTC))
    gate = Gate(kit.journal, kit.registry, approver="x")
    assert gate.decide(proposed(state)) == APPROVED
    (kit.box / "instance").write_text("container-Y")  # swapped between decision and action
    with pytest.raises(NotApproved, match='instance "container-X" -> "container-Y"'):
        gate.execute(proposed(state), next(iter(kit.inventory)), StepContext.outside_a_run(5))
    assert starts(kit) == 0
    assert any(e.type == "approval.void" for e in kit.journal.events(state.run_id))


def _not(old: object) -> Any:
    return lambda value: value != old


@given(st.data())
def test_changing_kind_any_identity_field_or_any_argument_changes_the_fingerprint(
        data: st.DataObject) -> None:
    text = st.text(max_size=12)
    values = st.one_of(text, st.integers(), st.booleans(), st.none(),
                       st.lists(st.integers(), max_size=3))
    kind = data.draw(text)
    identity = data.draw(st.dictionaries(text, text, max_size=4))
    args = data.draw(st.dictionaries(text, values, max_size=4))
    base = fingerprint(kind, "svc", identity, args)
    assert fingerprint(data.draw(text.filter(_not(kind))), "svc", identity, args) != base
    for key in identity:
        changed = {**identity, key: data.draw(text.filter(_not(identity[key])))}
        assert fingerprint(kind, "svc", changed, args) != base
    extra_field = data.draw(text.filter(lambda k: k not in identity))
    assert fingerprint(kind, "svc", {**identity, extra_field: ""}, args) != base
    for key in args:
        changed_args = {**args, key: data.draw(values.filter(_not(args[key])))}
        assert fingerprint(kind, "svc", identity, changed_args) != base
    extra_arg = data.draw(text.filter(lambda k: k not in args))
    assert fingerprint(kind, "svc", identity, {**args, extra_arg: None}) != base


# Four-eyes and who may approve


def test_four_eyes_the_requester_may_not_approve_another_person_may(kit: Kit) -> None:
    state = kit.run(FIX)  # requested by "tester"
    policy = Policy(four_eyes=True)
    with pytest.raises(ApprovalRefused, match="four-eyes: tester requested") as refused:
        record(kit.journal, state.run_id, "fix", decision=APPROVED, by="tester", how="t",
               policy=policy)
    assert refused.value.forbidden
    record(kit.journal, state.run_id, "fix", decision=APPROVED, by="bob", how="t",
           policy=policy)
    found = verdict(kit.journal, state.run_id, "fix", state.remedies["fix"].fingerprint,
                    requested_by="tester", policy=policy)
    assert (found.decision, found.by) == (APPROVED, ("bob",))


def test_four_eyes_on_an_alert_run_takes_two_distinct_approvers(kit: Kit) -> None:
    plan = kit.plan(FIX)
    state = kit.engine().start(plan, "alert-run-1", trigger="alert", requested_by="alert:mem")
    policy = Policy(four_eyes=True)
    fp = state.remedies["fix"].fingerprint

    def now_verdict() -> Any:
        return verdict(kit.journal, state.run_id, "fix", fp, requested_by="alert:mem",
                       policy=policy)

    record(kit.journal, state.run_id, "fix", decision=APPROVED, by="alice", how="t",
           policy=policy)
    assert now_verdict().decision == PENDING
    assert "second person" in now_verdict().reason
    with pytest.raises(ApprovalRefused, match="alice has approved fix already"):
        record(kit.journal, state.run_id, "fix", decision=APPROVED, by="alice", how="t",
               policy=policy)
    gate = Gate(kit.journal, kit.registry, approver="daemon", policy=policy)
    with pytest.raises(NotApproved, match="second person"):
        gate.execute(proposed(state), next(iter(kit.inventory)), StepContext.outside_a_run(5))
    record(kit.journal, state.run_id, "fix", decision=APPROVED, by="bob", how="t",
           policy=policy)
    assert now_verdict().decision == APPROVED
    state = Kit.engine(kit, approve=frozenset()).resume(plan, state.run_id, by="daemon")
    assert state.status == COMPLETED and starts(kit) == 1


def test_a_pre_approval_by_the_requester_does_not_pass_four_eyes(kit: Kit) -> None:
    plan = kit.plan(FIX)
    engine = kit.engine(approve=frozenset({"fix=mem.act"}))
    engine.gate.policy = Policy(four_eyes=True)
    state = engine.start(plan, "self-approved", trigger="cli", requested_by="tester")
    assert state.status == AWAITING and starts(kit) == 0
    [refused] = [e.data for e in state.timeline if e.type == "approval.refused"]
    assert "four-eyes" in refused["reason"]


def test_the_policy_says_who_may_approve_which_remedy(kit: Kit) -> None:
    state = kit.run(FIX)  # playbook "pb"
    policy = Policy(approvers=({"*": ("alice", "bob"), "pb/fix": ("carol",)},))
    with pytest.raises(ApprovalRefused, match="alice may not approve pb/fix") as refused:
        record(kit.journal, state.run_id, "fix", decision=APPROVED, by="alice", how="t",
               policy=policy)
    assert refused.value.forbidden
    record(kit.journal, state.run_id, "fix", decision=APPROVED, by="carol", how="t",
           policy=policy)


def test_an_approval_names_the_proposal_it_saw_and_the_run_must_wait(kit: Kit) -> None:
    state = kit.run(FIX)
    with pytest.raises(ApprovalRefused, match="is proposed now as"):
        record(kit.journal, state.run_id, "fix", decision=APPROVED, by="bob", how="t",
               policy=Policy(), fingerprint="0" * 64)
    with pytest.raises(ApprovalRefused, match="no proposed remedy 'nope'"):
        record(kit.journal, state.run_id, "nope", decision=APPROVED, by="bob", how="t",
               policy=Policy())
    record(kit.journal, state.run_id, "fix", decision=APPROVED, by="bob", how="t",
           policy=Policy())
    kit.engine().resume(kit.plan(FIX), state.run_id, by="bob")
    with pytest.raises(ApprovalRefused, match="is completed"):
        record(kit.journal, state.run_id, "fix", decision=APPROVED, by="carol", how="t",
               policy=Policy())


# The policy file


def test_policy_file_is_found_beside_the_inventory_and_checked(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.delenv("RUNBOOK_POLICY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("targets: {}\n")
    assert load(None, [inventory]) == Policy()
    (tmp_path / "policy.yaml").write_text("ttl: 15m\nfour_eyes: true\n"
                                          "approvers:\n  bad-deploy/roll-back: [alice]\n")
    policy = load(None, [inventory])
    assert (policy.ttl, policy.four_eyes) == (900.0, True)
    assert policy.allowed("bad-deploy", "roll-back") == ("alice",)
    assert policy.allowed("bad-deploy", "other") is None
    (tmp_path / "policy.yaml").write_text("ttl: 15m\nfour_eys: true\n")
    with pytest.raises(PlaybookError) as bad:
        load(None, [inventory])
    assert str(bad.value.problems[0]).startswith(f"{tmp_path / 'policy.yaml'}:2:")
    explicit = tmp_path / "elsewhere.yaml"
    explicit.write_text("four_eyes: true\n")
    monkeypatch.setenv("RUNBOOK_POLICY", str(explicit))
    assert locate(None, [inventory]) == explicit


# The CLI and the daemon: one path


def mem_world(root: Path, monkeypatch: pytest.MonkeyPatch, policy: str | None = None) -> Path:
    from tests.daemonkit import write_world

    write_world(root, "{{}}\n")
    if policy is not None:
        (root / "policy.yaml").write_text(policy)
    monkeypatch.setenv("RUNBOOK_PLAYBOOKS", str(root / "playbooks"))
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(root / "inventory.yaml"))
    monkeypatch.setenv("RUNBOOK_BACKENDS", "tests.support.membackend:register")
    monkeypatch.delenv("RUNBOOK_POLICY", raising=False)
    return root


def journal() -> Any:
    from runner.journal import Journal
    from runner.paths import home

    return Journal(home())


def only_run(world: Path) -> str:
    [row] = journal().runs()
    return str(row.id)


def test_runbook_approve_records_the_os_user_beside_as(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    world = mem_world(tmp_path, monkeypatch)
    assert main(["run", "mem-incident", "--no-input"]) == 1
    run_id = only_run(world)
    assert main(["approve", run_id, "fix", "--as", "bob"]) == 0
    [approval] = journal().approvals(run_id, "fix")
    assert approval.by == "bob"
    assert approval.how == f"runbook approve (OS user {getpass.getuser()})"
    assert "approved: fix" in capsys.readouterr().out


def test_the_daemon_refuses_a_name_for_four_eyes_and_so_does_runbook_approve(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runbook_home: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """alice requests a run; the daemon (four-eyes) refuses her approval; `runbook approve
    --as alice` is then refused too, with no policy file of its own: the run keeps it."""
    from tests.daemonkit import daemon_in_thread, write_world

    world = mem_world(tmp_path, monkeypatch)
    monkeypatch.setenv("TEST_ALICE_TOKEN", "alice-tok-1")
    monkeypatch.setenv("TEST_INTAKE_TOKEN", "intake-tok-123")
    config = write_world(world, """
        auth: {{mode: bearer, token_env: TEST_INTAKE_TOKEN}}
        approvers:
          alice: {{token_env: TEST_ALICE_TOKEN}}
        four_eyes: true
        routes: []
        playbooks: [{root}/playbooks]
        inventory: [{root}/inventory.yaml]
        """)
    assert main(["run", "mem-incident", "--as", "alice", "--no-input"]) == 1
    run_id = only_run(world)
    with daemon_in_thread(config, runbook_home, "intake-tok-123") as daemon:
        answer = daemon.post(f"/v1/runs/{run_id}/approvals", {"remedy": "fix"},
                             token="alice-tok-1")
        assert answer.status_code == 403 and "four-eyes" in answer.json()["error"]
        stale = daemon.post(f"/v1/runs/{run_id}/approvals",
                            {"remedy": "fix", "fingerprint": "0" * 64}, token="alice-tok-1")
        assert stale.status_code == 409 and "is proposed now as" in stale.json()["error"]
    capsys.readouterr()
    assert main(["approve", run_id, "fix", "--as", "alice"]) == 2
    assert "four-eyes: alice requested this run" in capsys.readouterr().err
    assert journal().approvals(run_id, "fix") == []
    assert main(["approve", run_id, "fix", "--as", "bob"]) == 0


def test_approve_in_advance_by_fingerprint_as_the_run_printed_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    world = mem_world(tmp_path, monkeypatch)
    assert main(["run", "mem-incident", "--no-input"]) == 1
    run_id = only_run(world)
    printed = capsys.readouterr().out
    [line] = [ln.split()[1] for ln in printed.splitlines() if ln.strip().startswith("fingerprint ")]
    assert main(["resume", run_id, "--no-input", "--approve", "fix"]) == 2  # a bare id: refused
    assert "REMEDY=KIND" in capsys.readouterr().err
    assert main(["resume", run_id, "--no-input", "--approve", "0" * 64]) == 1  # another action
    assert journal().state(run_id).status == AWAITING
    assert main(["resume", run_id, "--no-input", "--approve", line, "--as", "carol"]) == 1
    state = journal().state(run_id)
    assert state.status == COMPLETED and state.remedies["fix"].approved_by == "carol"


def test_a_decline_wins_over_earlier_approvals_and_a_later_approval_over_it(kit: Kit) -> None:
    state = kit.run(FIX)
    fp = state.remedies["fix"].fingerprint

    def decided() -> str:
        return verdict(kit.journal, state.run_id, "fix", fp, requested_by="tester",
                       policy=Policy()).decision

    assert verdict(kit.journal, state.run_id, "fix", fp, requested_by="tester",
                   policy=Policy()).reason == "no approval recorded"
    for decision, expected in (("approved", "approved"), ("declined", "declined"),
                               ("approved", "approved")):
        record(kit.journal, state.run_id, "fix", decision=decision, by="bob", how="t",
               policy=Policy())
        assert decided() == expected
    with pytest.raises(ValueError, match="decision must be"):
        record(kit.journal, state.run_id, "fix", decision="maybe", by="bob", how="t",
               policy=Policy())


def test_an_approval_of_another_action_says_so(kit: Kit) -> None:
    state = kit.run(FIX)
    gate = Gate(kit.journal, kit.registry, approver="x")
    gate.record(state.run_id, "fix", "f" * 64, APPROVED, "mallory", "t")
    found = verdict(kit.journal, state.run_id, "fix", state.remedies["fix"].fingerprint,
                    requested_by="tester", policy=Policy())
    assert (found.decision, found.reason) == (
        PENDING, "approved for another action than the one resolved now")
    assert gate.void_reason(proposed(state), "f" * 64) == \
        "the approval was for another action than the one resolved now"


def test_what_changed_names_kind_target_identity_and_arguments() -> None:
    from runner.gate import changes

    before = {"kind": "service.restart", "target": "svc", "identity": {"container_id": "a"},
              "args": {"to_image": "app:v2", "max": 3}}
    after = {"kind": "service.rollback", "target": "svc2", "identity": {"container_id": "b"},
             "args": {"to_image": "app:v3", "max": 3}}
    assert changes(before, after) == [
        "kind 'service.restart' -> 'service.rollback'", "target 'svc' -> 'svc2'",
        'target container_id "a" -> "b"', 'to_image "app:v2" -> "app:v3"']
    assert changes(before, before) == []


def test_a_run_records_the_inventory_and_policy_it_was_planned_with(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    world = mem_world(tmp_path, monkeypatch, "four_eyes: true\n")
    assert main(["run", "mem-incident", "--no-input"]) == 1
    source = journal().get_run(only_run(world)).source
    inventory = world / "inventory.yaml"
    digest = hashlib.sha256(str(inventory.resolve()).encode() + b"\0"
                            + inventory.read_bytes() + b"\0").hexdigest()
    assert source["inventory"]["paths"] == [str(inventory.resolve())]
    assert source["inventory"]["sha256"] == digest
    assert source["inventory"]["targets"]["box"]["settings"] == {"path": str(world / "box")}
    assert source["policy"]["four_eyes"] is True
    assert source["policy"]["source"] == str(world / "policy.yaml")


def test_four_eyes_two_names_typed_from_one_account_are_one_person(kit: Kit) -> None:
    from runner.approval import with_os_user

    plan = kit.plan(FIX)
    state = kit.engine().start(plan, "alert-run-2", trigger="alert", requested_by="alert:mem")
    policy = Policy(four_eyes=True)
    record(kit.journal, state.run_id, "fix", decision=APPROVED, by="alice",
           how=with_os_user("runbook approve", "ops"), policy=policy)
    with pytest.raises(ApprovalRefused, match="OS user ops approved fix already"):
        record(kit.journal, state.run_id, "fix", decision=APPROVED, by="bob",
               how=with_os_user("runbook approve", "ops"), policy=policy)
    record(kit.journal, state.run_id, "fix", decision=APPROVED, by="bob",
           how=with_os_user("runbook approve", "bob"), policy=policy)
    assert verdict(kit.journal, state.run_id, "fix", state.remedies["fix"].fingerprint,
                   requested_by="alert:mem", policy=policy).decision == APPROVED
    requested = kit.run(FIX)  # by "tester", the OS user it ran as
    with pytest.raises(ApprovalRefused, match="OS user tester requested this run"):
        record(kit.journal, requested.run_id, "fix", decision=APPROVED, by="carol",
               how=with_os_user("runbook approve", "tester"), policy=policy)


# Edges the gate and the approval path must hold


def test_a_pin_runs_on_a_read_only_handle_and_its_result_is_what_is_approved(kit: Kit) -> None:
    from pydantic import BaseModel, ConfigDict

    from runner.registry import StepKind

    class Tagged(BaseModel):
        model_config = ConfigDict(extra="forbid")
        tag: str
        pinned: str | None = None

    seen: list[bool] = []

    def pin(handle: Any, params: Tagged) -> Tagged:
        seen.append(handle.writable)
        if params.pinned is not None:  # pinned when proposed: kept (the pin contract)
            return params
        return params.model_copy(update={"pinned": (kit.box / "tag").read_text()})

    kit.registry.add(StepKind("mem.deploy", "mem", lambda h, p: {"deployed": p.pinned},
                              Tagged, True, "deploy a tag", pin=pin))
    (kit.box / "tag").write_text("id-1")
    body = "remedies:\n  - {id: deploy, run: mem.deploy, with: {tag: v2}}\n"
    state = kit.run(body)
    assert seen and not any(seen)  # through a probe handle, never an action handle
    assert state.remedies["deploy"].args == {"tag": "v2", "pinned": "id-1"}
    approve = Approval(state.run_id, "deploy", state.remedies["deploy"].fingerprint, APPROVED,
                       "alice", "t", datetime.now(UTC).isoformat())
    kit.journal.record_approval(approve)
    (kit.box / "tag").write_text("id-2")  # the tag moves after the approval
    state = kit.engine().resume(kit.plan(body), state.run_id, by="alice")
    assert state.remedies["deploy"].status == "succeeded"
    assert state.remedies["deploy"].result == {"deployed": "id-1"}


def test_a_connector_without_identity_binds_by_name_kind_and_arguments(tmp_path: Path) -> None:
    from runner.registry import Backend, Registry, StepKind
    from tests.support.membackend import MemSettings

    class Bare:  # a third-party connector that predates identity()
        def probe(self, target: Any, timeout: float) -> Any:
            raise AssertionError("not needed")

        action = probe

    registry = Registry()
    registry.add_backend(Backend("bare", Bare(), MemSettings))
    kind = StepKind("bare.act", "bare", lambda h, p: {}, MemSettings, True, "act")
    registry.add(kind)
    gate = Gate(journal_at(tmp_path), registry, approver="x")
    target = next(iter(Kit(tmp_path).inventory))
    assert gate.identity(kind, target, 5) == {}


def journal_at(root: Path) -> Any:
    from runner.journal import Journal

    return Journal(root / "other-home")


def test_gate_execute_refuses_a_proposal_for_another_target_name(kit: Kit) -> None:
    state = kit.run(FIX)
    shown = proposed(state)
    elsewhere = Proposal(shown.run_id, shown.remedy, shown.kind, "not-box", shown.args,
                         shown.explain, shown.identity)
    gate = Gate(kit.journal, kit.registry, approver="x")
    gate.record(state.run_id, "fix", elsewhere.fingerprint, APPROVED, "alice", "t")
    with pytest.raises(NotApproved, match="target 'not-box' -> 'box'"):
        gate.execute(elsewhere, next(iter(kit.inventory)), StepContext.outside_a_run(5))
    assert starts(kit) == 0


def test_an_interrupted_run_takes_an_approval(kit: Kit) -> None:
    state = kit.run(FIX)
    kit.journal.append(state.run_id, "run.interrupted", {"status": "interrupted",
                                                         "reason": "the process stopped"})
    record(kit.journal, state.run_id, "fix", decision=APPROVED, by="bob", how="t",
           policy=Policy())
    assert kit.journal.approvals(state.run_id, "fix")[0].by == "bob"


def test_under_four_eyes_the_requesters_own_approval_never_counts(kit: Kit) -> None:
    state = kit.run(FIX)  # requested by "tester"
    approve_at(kit, state, datetime.now(UTC), by="tester")  # written past the approval path
    fp = state.remedies["fix"].fingerprint
    assert verdict(kit.journal, state.run_id, "fix", fp, requested_by="tester",
                   policy=Policy()).decision == APPROVED
    assert verdict(kit.journal, state.run_id, "fix", fp, requested_by="tester",
                   policy=Policy(four_eyes=True)).decision == PENDING


def test_a_run_adopts_a_stricter_policy_once(kit: Kit) -> None:
    from runner.approval import is_person, run_policy

    state = kit.run(FIX)
    for name in ("bob", "carol"):
        record(kit.journal, state.run_id, "fix", decision=APPROVED, by=name, how="t",
               policy=Policy(ttl=600))
    adopted = [e for e in kit.journal.events(state.run_id) if e.type == "approval.policy"]
    assert len(adopted) == 1
    assert run_policy(kit.journal, state.run_id, Policy()).ttl == 600
    assert (is_person("alice"), is_person("alert:pool"), is_person("")) == (True, False, False)


def test_what_changed_shortens_long_values() -> None:
    from runner.gate import changes

    long = "x" * 200
    [change] = changes({"args": {"items": long}}, {"args": {"items": "y"}})
    assert change == f'items "{long[:76]}... -> "y"'
    assert len(change.split(" -> ")[0]) == len("items ") + 80
