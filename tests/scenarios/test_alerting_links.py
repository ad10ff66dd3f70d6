"""A real Alertmanager (Debian's) as it sends: a route written as alertmanager.yml writes
matchers (unquoted, braces), a group cut by the webhook's `max_alerts` (its
`truncatedAlerts` said in the message and kept on the alerts), and links built from its
`externalURL` and the alerts' `generatorURL` that reach the Slack stand-in
(tests/slackhook.py) as real links, and open the group Alertmanager holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.daemonkit import daemon_in_thread, write_world
from tests.lab.alerting import alert, alertmanager
from tests.slackhook import SlackStandIn, slack_stand_in

pytestmark = pytest.mark.lab

CONFIG = """
auth: {{mode: bearer, token_env: LINKS_INTAKE_TOKEN}}
routes:
  - name: boxes
    match: ['{{alertname=BoxTooHigh, env=~"prod|staging"}}']
    playbook: mem-incident
    targets: {{box: box}}
    group_by: [alertname]
notify:
  - {{kind: slack, url_env: LINKS_SLACK_URL, retries: 1}}
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""
TOKEN = "links-intake-token"


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with slack_stand_in() as hook:
        yield hook
        assert hook.refused == []


def test_a_truncated_group_from_alertmanager_is_said_and_linked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runbook_home: Path,
        slack: SlackStandIn) -> None:
    monkeypatch.setenv("LINKS_INTAKE_TOKEN", TOKEN)
    monkeypatch.setenv("LINKS_SLACK_URL", slack.url)
    # a missing Alertmanager binary raises PeerMissing: a failure, never a skip
    with daemon_in_thread(write_world(tmp_path, CONFIG), runbook_home, TOKEN) as daemon, \
            alertmanager(tmp_path, daemon_url=daemon.url, token=TOKEN,
                         group_by=("alertname",), max_alerts=2) as am:
        # one POST, so the group's first notification holds all four
        am.post_alerts([alert({"alertname": "BoxTooHigh", "env": "prod", "box": box})
                        for box in ("b1", "b2", "b3", "b4")])
        slack.wait_for(lambda got: any(m["text"].startswith("INCIDENT ALERT") for m in got),
                       timeout=60)
        [run] = daemon.wait_run(lambda runs: len(runs) >= 1)
        stored = daemon.daemon.inbox.alerts_of(run["run_id"])
        held = am.alerts()
        # the group link's filter selects exactly the alerts Alertmanager holds for it
        filtered = am.alerts(filter=['alertname="BoxTooHigh"'])
    [incident] = [m for m in slack.got if m["text"].startswith("INCIDENT ALERT")][:1]
    assert "2 more alert(s) were truncated by Alertmanager" in json.dumps(incident)
    assert {a.truncated_alerts for a in stored} == {2} and len(stored) == 2
    links = {}
    for control in slack.controls:
        url, _, label = control[1:-1].partition("|")
        links[label] = url.replace("&amp;", "&")
    assert links["Source of BoxTooHigh"] == "http://runbook.test/alert"
    group = parse_qs(urlsplit(links["Open in Alertmanager"]).fragment.partition("?")[2])
    assert links["Open in Alertmanager"].startswith(am.url + "/#/alerts?")
    assert group == {"receiver": ["runbook"], "filter": ['{alertname="BoxTooHigh"}']}
    assert len(filtered) == len(held) == 4
    silences = [label for label in links if label.startswith("Silence")]
    assert silences == ["Silence BoxTooHigh"]  # each alert's, once per URL: the first kept
