"""Shadow mode: a daemon route with `mode: shadow` diagnoses for real, records the remedies
it would have proposed and what they would touch, proposes none for approval and tells no
one (the Slack stand-in of tests/slackhook.py receives nothing); `runbook history --shadow`
and /metrics say how often that matched what people then approved. Real HTTP both ways;
the playbook runs on the in-process `mem` backend."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from tests.daemonkit import RunningDaemon, daemon_in_thread, write_world
from tests.slackhook import SlackStandIn, slack_stand_in
from tests.unit.test_daemon import am_payload, box_alert

CONFIG = """
auth: {{mode: bearer, token_env: TEST_INTAKE_TOKEN}}
approvers:
  alice: {{token_env: TEST_ALICE_TOKEN}}
routes:
  - name: mem-shadow
    mode: shadow
    match: ['alertname="BoxTooHigh"']
    playbook: mem-incident
    targets: {{box: box}}
    params: {{value: "{{{{ labels.level }}}}"}}
    group_by: [alertname, box]
metrics: {{auth: none}}
notify:
  - {{kind: slack, url_env: TEST_SLACK_URL, retries: 0}}
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with slack_stand_in() as hook:
        yield hook


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slack: SlackStandIn,
           runbook_home: Path) -> Iterator[RunningDaemon]:
    for name, value in {"TEST_INTAKE_TOKEN": "intake-tok-123", "TEST_ALICE_TOKEN": "alice-tok-1",
                        "TEST_SLACK_URL": slack.url}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RUNBOOK_BACKENDS", "tests.support.membackend:register")
    monkeypatch.setenv("RUNBOOK_PLAYBOOKS", str(tmp_path / "playbooks"))
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(tmp_path / "inventory.yaml"))
    with daemon_in_thread(write_world(tmp_path, CONFIG), runbook_home, "intake-tok-123") as d:
        yield d


def shadow_run(daemon: RunningDaemon, level: int, count: int) -> dict[str, Any]:
    daemon.post("/v1/alerts/alertmanager", am_payload(box_alert(box=f"b{count}", level=level)))
    runs = daemon.wait_run(lambda runs: len(runs) >= count
                           and all(r["status"] == "completed" for r in runs))
    return runs[0]


def history(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["history", "--shadow", "-o", "json"]) == 0
    return dict(json.loads(capsys.readouterr().out))


def test_a_shadow_route_diagnoses_records_would_be_remedies_and_tells_no_one(
        daemon: RunningDaemon, slack: SlackStandIn, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    run = shadow_run(daemon, level=7, count=1)
    assert run["requested_by"] == "shadow:mem-shadow" and run["trigger"] == \
        "shadow route mem-shadow"
    assert run["steps"][0]["status"] == "ok"  # diagnosed for real
    assert run["findings"][0]["message"] == "value is 7"
    [fix] = run["remedies"]
    assert fix["status"] == "skipped" and fix["reason"].startswith("shadow: would have")
    assert fix["args"]["items"] == [7] and fix["target"] == "box"
    # nothing can approve it: it was never proposed for approval
    answer = daemon.post(f"/v1/runs/{run['run_id']}/approvals", {"remedy": "fix"},
                         token="alice-tok-1")
    assert answer.status_code == 409, answer.text
    # its alert resolves; then another alert: the dispatcher handles them in order, so once
    # the second run is done, the first one's RESOLVED notice has been decided
    daemon.post("/v1/alerts/alertmanager", am_payload(box_alert(box="b1", level=7),
                                                      status="resolved"))
    shadow_run(daemon, level=5, count=2)
    assert not (tmp_path / "box" / "actions.jsonl").exists()  # no action ran
    assert slack.got == []  # no incident message, no approval request, no RESOLVED

    found = history(capsys)
    assert found["routes"] == {"mem-shadow": {"runs": 2, "compared": 0, "matched": 0,
                                              "match_ratio": None}}
    shown = found["runs"][0]
    assert shown["outcome"] == "pending" and shown["would_propose"][0]["remedy"] == "fix"
    assert shown["would_propose"][0]["identity"]  # what it would have touched, resolved


def test_history_and_metrics_say_how_often_shadow_matched_what_people_did(
        daemon: RunningDaemon, slack: SlackStandIn, capsys: pytest.CaptureFixture[str]) -> None:
    shadow_run(daemon, level=3, count=1)
    # people then ran it for real on the same target and approved the fix: matched
    assert main(["run", "mem-incident", "-t", "box=box", "-p", "value=3", "--no-input",
                 "--approve", "fix=mem.act"]) == 1
    shadow_run(daemon, level=4, count=3)
    # ... and the next time they declined it: differs
    assert main(["run", "mem-incident", "-t", "box=box", "-p", "value=4", "--no-input"]) == 1
    run_id = json.loads(_last_run_json(capsys))["id"]
    assert main(["approve", run_id, "fix", "--decline", "--as", "bob"]) == 0
    assert main(["resume", run_id, "--no-input"]) in {0, 1}
    found = history(capsys)
    assert [r["outcome"] for r in found["runs"]] == ["matched", "differs"]
    assert found["routes"]["mem-shadow"] == {"runs": 2, "compared": 2, "matched": 1,
                                             "match_ratio": 0.5}
    capsys.readouterr()
    assert main(["history", "--shadow"]) == 0
    text = capsys.readouterr().out
    assert "route mem-shadow: 2 shadow run(s), 2 compared, 1 matched (50%)" in text
    metrics = daemon.get("/metrics", token="").text
    assert 'runbook_shadow_match_ratio{route="mem-shadow"} 0.5' in metrics
    assert 'runbook_shadow_runs{route="mem-shadow"} 2.0' in metrics
    assert slack.got == []  # the CLI runs do not notify either (no notify config)


def _last_run_json(capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["history", "--limit", "1", "-o", "json"]) == 0
    return json.dumps(json.loads(capsys.readouterr().out)["runs"][0])


def test_a_shadow_run_cut_short_after_proposing_stays_shadow_when_resumed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from runner import shadow
    from runner.journal import new_run_id
    from tests.enginekit import Kit

    monkeypatch.setenv("RUNBOOK_BACKENDS", "tests.support.membackend:register")
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))
    kit = Kit(tmp_path)
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(tmp_path / "inventory.yaml"))
    body = """
    steps:
      - {id: a, run: mem.sleep, with: {value: 2}}
    findings:
      - {id: high, when: steps.a.value > 1, say: high}
    remedies:
      - {id: fix, run: mem.act, with: {items: [1]}}
    """
    # the plain engine stands for a shadow run that stopped between proposing and settling
    state = kit.engine().start(kit.plan(body), new_run_id(), trigger=shadow.trigger("r"),
                               requested_by="shadow:r")
    assert state.remedies["fix"].status == "proposed"
    capsys.readouterr()
    assert main(["resume", state.run_id, "--no-input", "--approve", "fix=mem.act"]) == 1
    after = kit.journal.state(state.run_id)
    assert after.remedies["fix"].status == "skipped" and after.status == "completed"
    assert kit.actions() == []  # even --approve on the command line ran nothing
