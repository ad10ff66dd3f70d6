"""Severity through the real daemon on loopback: a route's `severity:` raises what the run
found (the INCIDENT ALERT says it), and a run that found nothing announces no severity."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemonkit import RunningDaemon, daemon_in_thread, write_world
from tests.slackhook import SlackStandIn, slack_stand_in

CONFIG = """
auth: {{mode: bearer, token_env: TEST_INTAKE_TOKEN}}
routes:
  - name: hot
    match: ['alertname="BoxTooHigh"', 'box="hot"']
    playbook: mem-incident
    targets: {{box: box}}
    params: {{value: "{{{{ labels.level }}}}"}}
    severity: SEV1
  - name: mem
    match: ['alertname="BoxTooHigh"']
    playbook: mem-incident
    targets: {{box: box}}
    params: {{value: "{{{{ labels.level }}}}"}}
    group_by: [alertname, box]
notify:
  - {{kind: slack, url_env: TEST_SLACK_URL, retries: 1}}
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""


def alert(box: str, level: int) -> dict[str, object]:
    return {"version": "4", "groupKey": "{}", "status": "firing", "receiver": "runbook",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://am", "truncatedAlerts": 0,
            "alerts": [{"status": "firing", "annotations": {}, "generatorURL": "",
                        "startsAt": "2026-11-22T07:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                        "fingerprint": "", "labels": {"alertname": "BoxTooHigh", "box": box,
                                                      "level": str(level)}}]}


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with slack_stand_in() as hook:
        yield hook


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slack: SlackStandIn,
           runbook_home: Path) -> Iterator[RunningDaemon]:
    monkeypatch.setenv("TEST_INTAKE_TOKEN", "intake-tok-123")
    monkeypatch.setenv("TEST_SLACK_URL", slack.url)
    with daemon_in_thread(write_world(tmp_path, CONFIG), runbook_home, "intake-tok-123") as d:
        yield d


def test_a_route_raises_the_severity_the_alert_announces(daemon: RunningDaemon,
                                                         slack: SlackStandIn) -> None:
    daemon.post("/v1/alerts/alertmanager", alert("hot", 7))
    [run] = daemon.wait_run(lambda runs: bool(runs) and runs[0]["status"] != "running")
    assert run["severity"] == "P0"  # the playbook's P2, raised by the route's SEV1
    assert "raised to P0 by route hot" in run["severity_why"]
    slack.wait_for(lambda got: len(got) == 1)
    assert slack.got[0]["text"].startswith("INCIDENT ALERT [P0] mem-incident")


def test_a_run_that_found_nothing_announces_no_severity(daemon: RunningDaemon,
                                                        slack: SlackStandIn) -> None:
    daemon.post("/v1/alerts/alertmanager", alert("cold", 0))  # value 0: nothing fires
    [run] = daemon.wait_run(lambda runs: bool(runs) and runs[0]["status"] != "running")
    assert run["severity"] == "none" and run["findings"] == []
    slack.wait_for(lambda got: len(got) == 1)
    said = str(slack.got[0])
    assert "[none]" in said and "P1" not in said and "P2" not in said
