"""The daemon's messages through the same sinks as the CLI's: with a Slack bot token (the
Web API stand-in, tests/slackapi.py, speaking the real protocol on loopback) the INCIDENT
ALERT opens a thread and UPDATE and RESOLVED reply in it; a customer sink gets the customer
update on each change of status; and a message that could not be delivered goes out, first,
with the run's next one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemonkit import RunningDaemon, daemon_in_thread, receiver, write_world
from tests.slackapi import TOKEN, SlackApiStandIn, slack_api_stand_in

CONFIG = """
auth: {{mode: bearer, token_env: TEST_INTAKE_TOKEN}}
approvers:
  alice: {{token_env: TEST_ALICE_TOKEN}}
routes:
  - name: mem
    match: ['alertname="BoxTooHigh"']
    playbook: mem-incident
    targets: {{box: box}}
    params: {{value: "{{{{ labels.level }}}}"}}
notify:
  - {{kind: slack, bot_token_env: TEST_SLACK_BOT, channel: "#incidents",
     api_url: "{api}", retries: 0}}
  - {{kind: webhook, url_env: TEST_STATUS_PAGE, audience: customer, retries: 0}}
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""


def alert(status: str = "firing") -> dict[str, Any]:
    return {"version": "4", "groupKey": "{}:{}", "status": status, "receiver": "runbook",
            "externalURL": "http://am", "truncatedAlerts": 0,
            "alerts": [{"status": status, "labels": {"alertname": "BoxTooHigh", "level": "6"},
                        "annotations": {"summary": "box too high <!channel>"},
                        "startsAt": "2026-11-22T07:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "", "fingerprint": "f1"}]}


@pytest.fixture
def api() -> Iterator[SlackApiStandIn]:
    with slack_api_stand_in() as stand_in:
        yield stand_in


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: SlackApiStandIn,
           runbook_home: Path) -> Iterator[tuple[RunningDaemon, Any]]:
    with receiver() as status_page:
        for name, value in {"TEST_INTAKE_TOKEN": "intake-tok-123", "TEST_SLACK_BOT": TOKEN,
                            "TEST_ALICE_TOKEN": "alice-tok-1",
                            "TEST_STATUS_PAGE": status_page.url}.items():
            monkeypatch.setenv(name, value)
        config = write_world(tmp_path, CONFIG.replace("{api}", api.url))
        with daemon_in_thread(config, runbook_home, "intake-tok-123") as running:
            yield running, status_page


def test_the_daemon_threads_update_and_resolved_under_its_alert(
        daemon: tuple[RunningDaemon, Any], api: SlackApiStandIn) -> None:
    d, status_page = daemon
    d.post("/v1/alerts/alertmanager", alert())
    [run] = d.wait_run(lambda runs: bool(runs) and runs[0]["status"] == "awaiting_approval")
    api.wait_for(lambda got: len(got) == 1)
    [first] = api.messages
    assert first.text == "INCIDENT ALERT [P2] mem-incident" and first.thread_ts is None
    shown = json.dumps(first.blocks)
    assert "*Status*\\nIdentified" in shown
    assert "*Symptoms*\\nbox too high &lt;!channel&gt;" in shown
    assert [c for c in api.controls if c.startswith(("<!", "<@"))] == []  # links only
    answer = d.post(f"/v1/runs/{run['run_id']}/approvals", {"remedy": "fix"},
                    token="alice-tok-1")
    assert answer.status_code == 202
    api.wait_for(lambda got: any(m.text.startswith("UPDATE") for m in got))
    d.post("/v1/alerts/alertmanager", alert("resolved"))
    api.wait_for(lambda got: any(m.text.startswith("RESOLVED") for m in got))
    assert [m.text.split()[0] for m in api.thread(first.ts)] == ["UPDATE", "RESOLVED"]
    assert len(api.top_level()) == 1
    resolved = api.thread(first.ts)[-1]
    assert "*Root cause*\\nas found: value is 6" in json.dumps(resolved.blocks)
    # The status page heard each change, in its own words.
    status_page.wait_for(lambda got: len(got) == 2)
    assert [m["title"] for m in status_page.got] == ["our service: Identified",
                                                     "our service: Resolved"]
    assert "box" not in json.dumps(status_page.got)


def test_a_message_slack_refused_goes_out_first_with_the_next_one(
        daemon: tuple[RunningDaemon, Any], api: SlackApiStandIn) -> None:
    d, _ = daemon
    api.down = 1  # the ALERT meets a 503
    d.post("/v1/alerts/alertmanager", alert())
    [run] = d.wait_run(lambda runs: bool(runs) and runs[0]["status"] == "awaiting_approval")
    d.wait_run(lambda runs: any(e.type == "notify.failed"
                                for e in d.daemon.journal.events(run["run_id"])))
    assert api.messages == []
    d.post(f"/v1/runs/{run['run_id']}/approvals", {"remedy": "fix"}, token="alice-tok-1")
    api.wait_for(lambda got: len(got) == 2)
    alert_message, update = api.messages
    assert alert_message.text.startswith("INCIDENT ALERT") and alert_message.thread_ts is None
    assert update.text.startswith("UPDATE") and update.thread_ts == alert_message.ts
