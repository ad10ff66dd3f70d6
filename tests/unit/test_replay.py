"""Replay: a playbook judged against a recorded run's step results, nothing live touched.

Runs are recorded for real by the engine with the in-process `mem` and `vault` test
backends, then replayed through `runbook replay` and `runner.replay`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner import loader, recording, replay
from runner.cli import main
from runner.errors import NotApproved
from runner.registry import Registry
from tests.enginekit import Kit
from tests.support import membackend

BODY = """\
params:
  limit: {type: int, default: 3}
steps:
  - {id: a, run: mem.sleep, with: {value: {n: 5}}}
  - {id: b, run: mem.fail}
  - {id: c, run: mem.sleep, when: "steps.a.value.n > 100"}
findings:
  - {id: big, when: "steps.a.value.n > params.limit", say: "n is {{ steps.a.value.n }}"}
  - {id: small, when: "steps.a.value.n < 2", say: "tiny", severity: P2}
  - {id: bfail, when: "steps.b.ok", say: "b"}
remedies:
  - {id: fix, run: mem.act, when: "findings.big", with: {items: [1, 2]}}
  - {id: shrink, run: mem.act, when: "findings.small", with: {items: [3]}}
verify:
  - {id: v, run: mem.sleep, with: {value: 1}, expect: "result.value == 1"}
"""


@pytest.fixture
def kit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Kit:
    monkeypatch.setenv("RUNBOOK_BACKENDS", "tests.support.membackend:register")
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))
    return Kit(tmp_path)


def recorded_run(kit: Kit) -> str:
    state = kit.run(BODY, approve=frozenset({"fix=mem.act"}))
    assert state.remedies["fix"].status == "succeeded" and state.verify["v"].status == "passed"
    return state.run_id


def act(items: list[int]) -> dict[str, Any]:
    """mem.act's resolved arguments, defaults included, as a proposal shows them."""
    return {"items": items, "wait_for": None, "undo_on_interrupt": False}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_replay_of_a_recorded_run_reproduces_its_findings_and_remedies(kit: Kit) -> None:
    run_id = recorded_run(kit)
    document = replay.replay(recording.from_journal(kit.journal.home, run_id), kit.registry)
    assert document["diff"] == []
    assert {f["id"]: f["status"] for f in document["findings"]} == {
        "big": "fired", "small": "clear", "bfail": "unknown"}
    assert document["findings"][0]["message"] == "n is 5"
    (fix, shrink) = document["remedies"]
    assert (fix["status"], fix["args"], fix["target"]) == ("proposed", act([1, 2]), "box")
    assert fix["fingerprint"] == kit.journal.state(run_id).remedies["fix"].fingerprint
    assert shrink["status"] == "not_needed"
    assert document["verify"] == [{"id": "v", "recorded": "passed", "status": "passed",
                                   "error": None}]
    assert [s["status"] for s in document["steps"]] == ["ok", "failed", "skipped"]


def test_replay_json_is_byte_identical_and_touches_nothing(
        kit: Kit, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = recorded_run(kit)
    fails_before = (kit.box / "fail.count").read_text()
    actions_before = kit.actions()
    first = cli(capsys, "replay", run_id, "--format", "json")
    second = cli(capsys, "replay", str(kit.journal.run_dir(run_id)), "--format", "json")
    assert first[0] == 0 and first[1] == second[1]
    assert json.loads(first[1])["run_id"] == run_id
    # mem.fail counts its calls in the target folder, mem.act logs each action: neither ran
    assert (kit.box / "fail.count").read_text() == fails_before
    assert kit.actions() == actions_before


def test_an_edited_threshold_changes_the_outcome_and_the_diff_says_so(
        kit: Kit, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = recorded_run(kit)
    edited = tmp_path / "pb.yaml"
    text = kit.journal.get_run(run_id).source["playbook_text"]
    edited.write_text(text.replace("steps.a.value.n > params.limit",
                                   "steps.a.value.n > params.limit * 2")
                      .replace("steps.a.value.n < 2", "steps.a.value.n < 6"))
    code, out, _ = cli(capsys, "replay", run_id, "--playbook", str(edited), "-o", "json")
    document = json.loads(out)
    assert code == 1  # differs from the recorded run
    assert {f["id"]: f["status"] for f in document["findings"]}["big"] == "clear"
    assert [(c.get("finding") or c.get("remedy"), c["recorded"], c["replayed"])
            for c in document["diff"]] == [
        ("big", {"status": "fired", "severity": "P3", "message": "n is 5"},
         {"status": "clear", "severity": "P3", "message": None}),
        ("small", {"status": "clear", "severity": "P2", "message": None},
         {"status": "fired", "severity": "P2", "message": "tiny"}),
        ("fix", {"proposed": True, "kind": "mem.act", "target": "box", "args": act([1, 2])},
         {"proposed": False}),
        ("shrink", {"proposed": False},
         {"proposed": True, "kind": "mem.act", "target": "box", "args": act([3])})]
    code, text_out, _ = cli(capsys, "replay", run_id, "--playbook", str(edited))
    assert "finding big: fired P3 -> clear P3" in text_out
    assert 'remedy shrink: not proposed -> proposed {"items": [3], ' in text_out
    # a param given at replay moves the threshold back
    code, out, _ = cli(capsys, "replay", run_id, "--playbook", str(edited), "-p", "limit=1",
                       "-o", "json")
    assert {f["id"]: f["status"] for f in json.loads(out)["findings"]}["big"] == "fired"


def test_steps_the_edit_adds_or_changes_are_not_recorded_and_never_run(kit: Kit) -> None:
    run_id = recorded_run(kit)
    text = kit.journal.get_run(run_id).source["playbook_text"]
    edited = text.replace(
        "  - {id: b, run: mem.fail}\n",
        "  - {id: b, run: mem.fail, with: {key: other}}\n"
        "  - {id: added, run: mem.fail}\n").replace(
        "findings:\n", "findings:\n  - {id: new, when: steps.added.ok, say: added}\n")
    loaded = loader.parse(edited, "pb.yaml", kit.registry)
    document = replay.replay(recording.from_journal(kit.journal.home, run_id), kit.registry,
                             loaded)
    steps = {s["id"]: s for s in document["steps"]}
    assert steps["added"] == {"id": "added", "status": "not recorded",
                              "reason": "the recorded run has no result for it"}
    assert steps["b"]["status"] == "not recorded"
    assert steps["b"]["reason"] == "defined differently from the recorded step"
    new = next(f for f in document["findings"] if f["id"] == "new")
    assert new["status"] == "unknown" and "not recorded" in new["reason"]
    assert not (kit.box / "other.count").exists()


def test_the_replay_registry_has_no_way_to_reach_a_system() -> None:
    real = Registry()
    membackend.register(real)
    fake = replay.replay_registry(real)
    assert [k.name for k in fake] == [k.name for k in real]
    connector: Any = fake.backend("mem").connector
    for reach in (connector.probe, connector.action, connector.identity):
        with pytest.raises(NotApproved):
            reach(None, None)
    for kind in fake:
        assert kind.pin is None
        with pytest.raises(NotApproved):
            kind.func(None, None)


SECRET = "Qz7-hunter2-Kx9"

VAULT_PLAYBOOK = """\
name: echo
summary: a backend that echoes its password
severity: P2
targets:
  box: {kind: vault}
steps:
  - {id: echo, run: vault.echo, target: box}
  - {id: broken, run: vault.fail, target: box}
findings:
  - {id: said, when: steps.echo.ok, say: "it said {{ steps.echo.log }}"}
remedies:
  - {id: restart, run: vault.restart, target: box, with: {items: ["{{ steps.echo.log }}"]}}
"""


def test_replay_of_a_run_with_a_secret_in_its_inventory_prints_no_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RUNBOOK_BACKENDS", "tests.support.secretbackend:register")
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VAULT_PW", SECRET)
    (tmp_path / "inventory.yaml").write_text(
        f"targets:\n  box:\n    kind: vault\n    path: {tmp_path / 'box'}\n"
        "    password_env: VAULT_PW\n")
    (tmp_path / "echo.yaml").write_text(VAULT_PLAYBOOK)
    code, out, err = cli(capsys, "run", str(tmp_path / "echo.yaml"), "--inventory",
                         str(tmp_path / "inventory.yaml"), "--no-input", "-o", "json")
    run_id = json.loads(out)["run_id"]
    assert code == 1 and SECRET not in out + err
    for argv in (["replay", run_id], ["replay", run_id, "-o", "json"],
                 ["record", run_id, "--to", str(tmp_path / "f.yaml")]):
        code, out, err = cli(capsys, *argv)
        assert code == 0, err
        assert SECRET not in out + err and "hunter2" not in out + err
    replayed = json.loads(cli(capsys, "replay", run_id, "-o", "json")[1])
    assert replayed["findings"][0]["status"] == "fired"
    assert replayed["remedies"][0]["status"] == "proposed"
    fixture = (tmp_path / "f.yaml").read_text()
    assert "hunter2" not in fixture and "login" in fixture


def test_a_copied_run_directory_needs_the_playbook_named(
        kit: Kit, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    run_id = recorded_run(kit)
    copy = tmp_path / "elsewhere" / run_id
    shutil.copytree(kit.journal.run_dir(run_id), copy)
    code, _, err = cli(capsys, "replay", str(copy))
    assert code == 2 and "name one with --playbook" in err
    book = tmp_path / "pb.yaml"
    book.write_text(kit.journal.get_run(run_id).source["playbook_text"])
    code, out, _ = cli(capsys, "replay", str(copy), "--playbook", str(book), "-o", "json")
    document = json.loads(out)
    assert {f["id"]: f["status"] for f in document["findings"]}["big"] == "fired"
    assert document["run_id"] == run_id
