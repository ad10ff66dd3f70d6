"""The alert daemon on loopback: intake, auth, validation, routing, dedup, approvals over
HTTP, notifications and metrics. Real HTTP both ways; the playbook runs on `mem`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemonkit import RunningDaemon, daemon_in_thread, write_world
from tests.slackhook import SlackStandIn, slack_stand_in

CONFIG = """
auth: {{mode: bearer, token_env: TEST_INTAKE_TOKEN}}
body_limit: 4096
dedup_window: 10m
approvers:
  alice: {{token_env: TEST_ALICE_TOKEN}}
  bob: {{token_env: TEST_BOB_TOKEN}}
four_eyes: true
routes:
  - name: mem
    match: ['alertname="BoxTooHigh"', 'env=~"prod|staging"']
    playbook: mem-incident
    targets: {{box: box}}
    params: {{value: "{{{{ labels.level }}}}"}}
    group_by: [alertname, box]
notify:
  - {{kind: slack, url_env: TEST_SLACK_URL, retries: 1}}
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""


def am_payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    """An Alertmanager version 4 webhook body."""
    return {"version": "4", "groupKey": '{}:{alertname="BoxTooHigh"}', "status": status,
            "receiver": "runbook", "groupLabels": {}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://am", "truncatedAlerts": 0,
            "alerts": [{"status": status, "annotations": {"summary": "box too high"},
                        "startsAt": "2026-11-22T07:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "", "fingerprint": "", **a} for a in alerts]}


def box_alert(box: str = "b1", level: int = 3, **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": "BoxTooHigh", "env": "prod", "box": box,
                       "level": str(level), **labels}}


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    """Slack, as far as its webhook goes: every message the daemon sends is checked against
    Block Kit's limits, and none may be refused."""
    with slack_stand_in() as hook:
        yield hook
        assert hook.refused == [] or hook.status != 200, hook.refused


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slack: SlackStandIn,
           runbook_home: Path) -> Iterator[RunningDaemon]:
    for name, value in {"TEST_INTAKE_TOKEN": "intake-tok-123", "TEST_ALICE_TOKEN": "alice-tok-1",
                        "TEST_BOB_TOKEN": "bob-tok-22", "TEST_SLACK_URL": slack.url}.items():
        monkeypatch.setenv(name, value)
    with daemon_in_thread(write_world(tmp_path, CONFIG), runbook_home, "intake-tok-123") as d:
        yield d


def test_intake_needs_the_token(daemon: RunningDaemon) -> None:
    anonymous = daemon.post("/v1/alerts/alertmanager", am_payload(box_alert()), token="")
    assert anonymous.status_code == 401
    assert daemon.post("/v1/alerts/alertmanager", am_payload(box_alert()),
                       token="wrong").status_code == 401
    answer = daemon.post("/v1/alerts/alertmanager", am_payload(box_alert()))
    assert answer.status_code == 202
    assert answer.json()["accepted"] == 1


@pytest.mark.parametrize("payload, fragment", [
    ({"version": "3", "groupKey": "k", "status": "firing", "receiver": "r",
      "alerts": [{"status": "firing", "labels": {"a": "b"}}]}, "version"),
    (am_payload(box_alert()) | {"alerts": []}, "alerts"),
    (am_payload({"labels": {"alertname": "X"}, "status": "burning"}), "alerts.0.status"),
    (am_payload({"labels": {}}), "alerts.0.labels"),
])
def test_a_bad_payload_gets_a_400_that_says_what_is_wrong(
        daemon: RunningDaemon, payload: dict[str, Any], fragment: str) -> None:
    answer = daemon.post("/v1/alerts/alertmanager", payload)
    assert answer.status_code == 400
    assert any(p.startswith(fragment) for p in answer.json()["problems"]), answer.json()


def test_not_json_and_too_big_are_refused(daemon: RunningDaemon) -> None:
    answer = httpx.post(daemon.url + "/v1/alerts", content=b"{nope",
                        headers={"Authorization": f"Bearer {daemon.token}"})
    assert answer.status_code == 400 and "not JSON" in answer.json()["problems"][0]
    big = {"labels": {"alertname": "x" * 5000}}
    assert daemon.post("/v1/alerts", big).status_code == 413


def test_a_firing_alert_diagnoses_at_once_and_the_report_reaches_the_channel(
        daemon: RunningDaemon, slack: SlackStandIn) -> None:
    daemon.post("/v1/alerts/alertmanager", am_payload(box_alert(level=7)))
    [run] = daemon.wait_run(lambda runs: bool(runs) and runs[0]["status"] == "awaiting_approval")
    assert run["playbook"] == "mem-incident"
    assert run["params"] == {"value": 7}
    assert run["findings"][0]["message"] == "value is 7"
    assert run["remedies"][0]["status"] == "proposed"  # diagnostics only: nothing approved
    assert run["requested_by"] == "alert:mem"
    slack.wait_for(lambda got: len(got) == 1)
    message = slack.got[0]
    assert message["text"].startswith("INCIDENT ALERT [P2] mem-incident")
    text = json.dumps(message["blocks"])
    assert "value is 7" in text and "box too high" in text and "fix" in text
    assert daemon.get(f"/v1/runs/{run['run_id']}").json()["run_id"] == run["run_id"]


def test_alerts_of_one_group_join_one_run_and_unrouted_ones_are_counted(
        daemon: RunningDaemon) -> None:
    for level in (1, 2, 3):
        daemon.post("/v1/alerts/alertmanager", am_payload(box_alert("b1", level)))
    daemon.post("/v1/alerts/alertmanager", am_payload(box_alert("b2")))
    daemon.post("/v1/alerts", {"labels": {"alertname": "SomethingElse"}})
    daemon.post("/v1/alerts/alertmanager", am_payload(box_alert("b3", env="dev")))
    runs = daemon.wait_run(lambda runs: len(runs) == 2
                           and all(r["status"] == "awaiting_approval" for r in runs))
    assert sorted(r["params"]["value"] for r in runs) == [1, 3]  # b1's first alert, and b2
    # a run shows in the journal a moment before its metrics: wait for them, then read
    wait_metric(daemon, 'runbook_alerts_dispatched_total{outcome="unrouted"}', 2)
    wait_metric(daemon, 'runbook_step_duration_seconds_count{kind="mem.sleep"}', 2)
    metrics = daemon.get("/metrics").text
    assert 'runbook_alerts_dispatched_total{outcome="joined"} 2.0' in metrics
    assert 'runbook_alerts_dispatched_total{outcome="unrouted"} 2.0' in metrics
    assert 'runbook_alerts_received_total{source="alertmanager",status="firing"} 5.0' in metrics
    assert "runbook_queue_depth 0.0" in metrics
    assert 'runbook_step_duration_seconds_count{kind="mem.sleep"} 2.0' in metrics


def test_a_resolved_alert_annotates_the_run_and_never_starts_one(
        daemon: RunningDaemon, slack: SlackStandIn) -> None:
    daemon.post("/v1/alerts/alertmanager", am_payload(box_alert("b9"), status="resolved"))
    daemon.post("/v1/alerts/alertmanager", am_payload(box_alert("b1")))
    daemon.wait_run(lambda runs: bool(runs) and runs[0]["status"] == "awaiting_approval")
    daemon.post("/v1/alerts/alertmanager", am_payload(box_alert("b1"), status="resolved"))
    slack.wait_for(lambda got: any(m["text"].startswith("RESOLVED") for m in got))
    assert len(daemon.get("/v1/runs").json()["runs"]) == 1


def test_approval_over_http_runs_the_remedy_once_through_the_gate(
        daemon: RunningDaemon, slack: SlackStandIn, tmp_path: Path) -> None:
    daemon.post("/v1/alerts/alertmanager", am_payload(box_alert(level=5)))
    [run] = daemon.wait_run(lambda runs: bool(runs) and runs[0]["status"] == "awaiting_approval")
    path = f"/v1/runs/{run['run_id']}/approvals"
    assert daemon.post(path, {"remedy": "fix"}, token="intake-tok-123").status_code == 401
    assert daemon.post(path, {"remedy": "nope"}, token="alice-tok-1").status_code == 409
    assert daemon.post(path, {"remedy": "fix", "decision": "maybe"},
                       token="alice-tok-1").status_code == 400
    answer = daemon.post(path, {"remedy": "fix"}, token="alice-tok-1")
    assert answer.status_code == 202 and answer.json()["by"] == "alice"
    # four-eyes on an alert-started run: two people must approve; alice's resume waits
    settled_again(daemon, run["run_id"])
    assert daemon.post(path, {"remedy": "fix"}, token="alice-tok-1").status_code == 403
    assert daemon.post(path, {"remedy": "fix"}, token="bob-tok-22").status_code == 202
    [run] = daemon.wait_run(lambda runs: runs[0]["status"] == "completed")
    assert run["remedies"][0]["approved_by"] == "bob"
    assert run["verify"][0]["status"] == "passed"
    actions = (tmp_path / "box" / "actions.jsonl").read_text().splitlines()
    assert [json.loads(a)["items"] for a in actions] == [[5], [5]]  # one start, one end
    slack.wait_for(lambda got: any(m["text"].startswith("UPDATE") for m in got))
    assert daemon.post(path, {"remedy": "fix"}, token="bob-tok-22").status_code == 409


def settled_again(daemon: RunningDaemon, run_id: str) -> None:
    """Wait until the run, resumed after the latest approval, is awaiting approval again."""
    def settled(runs: list[dict[str, Any]]) -> bool:
        events = daemon.daemon.journal.events(run_id)
        last_approval = max(e.seq for e in events if e.type == "approval")
        return any(e.type == "run.finished" and e.seq > last_approval for e in events) \
            and runs[0]["status"] == "awaiting_approval"
    daemon.wait_run(settled)


def test_a_decline_over_http_is_recorded_and_nothing_runs(
        daemon: RunningDaemon, tmp_path: Path) -> None:
    daemon.post("/v1/alerts/alertmanager", am_payload(box_alert(level=4)))
    [run] = daemon.wait_run(lambda runs: bool(runs) and runs[0]["status"] == "awaiting_approval")
    answer = daemon.post(f"/v1/runs/{run['run_id']}/approvals",
                         {"remedy": "fix", "decision": "decline"}, token="bob-tok-22")
    assert answer.status_code == 202 and answer.json()["decision"] == "declined"
    [run] = daemon.wait_run(lambda runs: runs[0]["remedies"][0]["status"] == "declined")
    assert run["status"] != "awaiting_approval"
    [approval] = daemon.daemon.journal.approvals(run["run_id"], "fix")
    assert (approval.decision, approval.by) == ("declined", "bob")
    assert not (tmp_path / "box" / "actions.jsonl").exists()  # the action never ran


def test_four_eyes_the_requester_may_not_approve(
        daemon: RunningDaemon, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from runner.cli import main

    monkeypatch.setenv("RUNBOOK_PLAYBOOKS", str(tmp_path / "playbooks"))
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(tmp_path / "inventory.yaml"))
    monkeypatch.setenv("RUNBOOK_BACKENDS", "tests.support.membackend:register")
    assert main(["run", "mem-incident", "--as", "alice", "--no-input"]) == 1
    [run] = daemon.get("/v1/runs").json()["runs"]
    path = f"/v1/runs/{run['run_id']}/approvals"
    answer = daemon.post(path, {"remedy": "fix"}, token="alice-tok-1")
    assert answer.status_code == 403 and "four-eyes" in answer.json()["error"]
    assert daemon.post(path, {"remedy": "fix"}, token="bob-tok-22").status_code == 202
    daemon.wait_run(lambda runs: runs[0]["status"] == "completed")


def test_a_failing_channel_never_fails_the_run_and_is_recorded(
        daemon: RunningDaemon, slack: SlackStandIn) -> None:
    slack.status = 500
    daemon.post("/v1/alerts/alertmanager", am_payload(box_alert()))
    [run] = daemon.wait_run(lambda runs: bool(runs) and runs[0]["status"] == "awaiting_approval")
    wait_metric(daemon, "runbook_notifications_failed_total", 1)  # recorded after its retry
    assert len(slack.got) == 2  # the first try and one retry
    events = daemon.daemon.journal.events(run["run_id"])
    failed = [e for e in events if e.type == "notify.failed"]
    assert failed and failed[0].data["error"] == "HTTP 500"


def test_a_config_without_auth_is_refused_off_loopback(tmp_path: Path) -> None:
    from runner.daemon.config import load
    from runner.errors import PlaybookError

    path = write_world(tmp_path, "listen: {{host: 0.0.0.0}}\nauth: {{mode: none}}\n")
    with pytest.raises(PlaybookError, match="loopback"):
        load(path)
    path.write_text("routes:\n  - {name: r, playbook: p, match: ['alertname=\"X']}\n"
                    "auth: {mode: none}\n")
    with pytest.raises(PlaybookError, match="bad matcher"):
        load(path)


def test_the_shipped_example_config_loads() -> None:
    from runner.daemon.config import load

    config = load(Path(__file__).resolve().parents[2] / "deploy" / "daemon.yaml")
    assert [r.name for r in config.routes] == ["pool", "api-down"]
    assert config.four_eyes


THROTTLED = """
auth: {{mode: bearer, token_env: TEST_INTAKE_TOKEN}}
max_concurrent_runs: 1
routes:
  - name: slow
    match: ['alertname="Slow"']
    playbook: mem-slow
    targets: {{box: box}}
    group_by: [alertname, box]
    once_within: 1s
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""

SLOW_PLAYBOOK = """
name: mem-slow
summary: a diagnosis that takes a while
severity: P3
targets:
  box: {kind: mem}
steps:
  - {id: look, run: mem.sleep, with: {seconds: 0.3, value: 1}}
findings:
  - {id: seen, when: steps.look.value > 0, say: seen}
"""


@pytest.fixture
def throttled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              runbook_home: Path) -> Iterator[RunningDaemon]:
    monkeypatch.setenv("TEST_INTAKE_TOKEN", "intake-tok-123")
    config = write_world(tmp_path, THROTTLED)
    (tmp_path / "playbooks" / "mem-slow.yaml").write_text(SLOW_PLAYBOOK)
    with daemon_in_thread(config, runbook_home, "intake-tok-123") as d:
        yield d


def slow_alert(box: str) -> dict[str, Any]:
    return {"labels": {"alertname": "Slow", "box": box}}


def test_the_cap_on_concurrent_runs_queues_the_rest_and_drops_none(
        throttled: RunningDaemon) -> None:
    from tests.support import membackend

    membackend.reset_peak()
    for box in ("b1", "b2", "b3", "b4"):
        assert throttled.post("/v1/alerts", slow_alert(box)).status_code == 202
    runs = throttled.wait_run(lambda runs: len(runs) == 4
                              and all(r["status"] == "completed" for r in runs))
    assert membackend.reset_peak() == 1  # one worker: the others waited in the queue
    # Queued in arrival order, run one after another: each started after the one before.
    started = sorted((r["started_at"], r["finished_at"]) for r in runs)
    assert all(prev[1] <= nxt[0] for prev, nxt in pairwise(started))


def wait_metric(d: RunningDaemon, sample: str, value: float, timeout: float = 20) -> None:
    """Until /metrics shows `sample` at `value`: the positive signal that a thing happened."""
    deadline = time.monotonic() + timeout
    while f"{sample} {value:.1f}" not in (text := d.get("/metrics").text).splitlines():
        assert time.monotonic() < deadline, f"{sample} never reached {value}: {text}"
        time.sleep(0.05)


class Clock:
    """Unix time that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


def test_once_within_a_group_gets_one_run_then_a_new_one(throttled: RunningDaemon) -> None:
    clock = Clock()
    throttled.daemon.inbox.clock = clock
    throttled.post("/v1/alerts", slow_alert("b1"))
    throttled.post("/v1/alerts", slow_alert("b1"))  # within once_within: joins the run
    throttled.wait_run(lambda runs: len(runs) == 1 and runs[0]["status"] == "completed")
    clock.now += 0.999  # just inside once_within (1 s): still joins
    throttled.post("/v1/alerts", slow_alert("b1"))
    wait_metric(throttled, 'runbook_alerts_dispatched_total{outcome="joined"}', 2)
    clock.now += 0.001  # once_within has passed: the next alert starts a new run
    throttled.post("/v1/alerts", slow_alert("b1"))
    runs = throttled.wait_run(lambda runs: len(runs) == 2
                              and all(r["status"] == "completed" for r in runs))
    assert len(runs) == 2
    metrics = throttled.get("/metrics").text
    assert 'runbook_alerts_dispatched_total{outcome="joined"} 2.0' in metrics
    assert 'runbook_alerts_dispatched_total{outcome="started"} 2.0' in metrics
