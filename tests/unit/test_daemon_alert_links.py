"""What Alertmanager and Grafana send beyond labels: links (the group and a silence in the
sender's UI, each alert's generatorURL) that reach Slack as real links while alert text
stays text, `truncatedAlerts` kept on the alert record and said in the message, and
Grafana's webhook (version "1") on both endpoints. A real daemon on loopback, a real
Slack stand-in (tests/slackhook.py) that records every link Slack would render."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from runner.daemon.alerts import from_alertmanager
from runner.daemon.config import Notify
from runner.daemon.notify import Notifier, slack_blocks
from tests.daemonkit import RunningDaemon, daemon_in_thread, receiver, write_world
from tests.slackhook import SlackStandIn, slack_stand_in

# matchers as copied from an alertmanager.yml: unquoted, and the brace form
CONFIG = """
auth: {{mode: bearer, token_env: TEST_INTAKE_TOKEN}}
routes:
  - name: mem
    match: ['alertname=BoxTooHigh', '{{env=~"prod|staging"}}']
    playbook: mem-incident
    targets: {{box: box}}
    group_by: [alertname]
notify:
  - {{kind: slack, url_env: TEST_SLACK_URL, retries: 0}}
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""
HOSTILE = "<!channel> <http://evil.example|click>"
AM = "http://alertmanager.example:9093"


def payload(version: str = "4", truncated: int = 0, **extra: Any) -> dict[str, Any]:
    alert = {"status": "firing", "labels": {"alertname": "BoxTooHigh", "env": "prod",
                                            "note": HOSTILE},
             "annotations": {"summary": HOSTILE}, "startsAt": "2026-11-22T07:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up&g0.tab=1",
             **extra}
    return {"version": version, "groupKey": '{}:{alertname="BoxTooHigh"}', "status": "firing",
            "receiver": "run book", "groupLabels": {"alertname": "BoxTooHigh"},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": AM,
            "truncatedAlerts": truncated, "alerts": [alert]}


def grafana(**extra: Any) -> dict[str, Any]:
    """Grafana's webhook contact point: Alertmanager's shape, version "1", its own fields."""
    body = payload("1", silenceURL="http://grafana.example:3000/alerting/silence/new?"
                                   "alertmanager=grafana&matchers=alertname%3DBoxTooHigh",
                   dashboardURL="", panelURL="", values={"B": 44.2, "C": 1}, **extra)
    body.update(externalURL="http://grafana.example:3000/", orgId=1, state="alerting",
                title="[FIRING:1] BoxTooHigh", message="**Firing**", groupKey="{}/{}:{}")
    return body


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with slack_stand_in() as hook:
        yield hook
        assert hook.refused == []


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slack: SlackStandIn,
           runbook_home: Path) -> Iterator[RunningDaemon]:
    monkeypatch.setenv("TEST_INTAKE_TOKEN", "intake-tok-123")
    monkeypatch.setenv("TEST_SLACK_URL", slack.url)
    with daemon_in_thread(write_world(tmp_path, CONFIG), runbook_home, "intake-tok-123") as d:
        yield d


def links_in(hook: SlackStandIn) -> dict[str, str]:
    """label -> URL of every `<url|label>` Slack would render (entities unescaped)."""
    found = {}
    for control in hook.controls:
        url, _, label = control[1:-1].partition("|")
        found[label] = url.replace("&amp;", "&")
    return found


def test_alertmanagers_links_reach_slack_as_links_and_its_text_as_text(
        daemon: RunningDaemon, slack: SlackStandIn) -> None:
    assert daemon.post("/v1/alerts/alertmanager", payload(truncated=7)).status_code == 202
    slack.wait_for(lambda got: len(got) >= 1)
    links = links_in(slack)
    assert set(links) == {"Open in Alertmanager", "Silence BoxTooHigh",
                          "Source of BoxTooHigh"}  # and nothing from the alert's text
    group = urlsplit(links["Open in Alertmanager"])
    assert links["Open in Alertmanager"].startswith(f"{AM}/#/alerts?")
    assert parse_qs(group.fragment.partition("?")[2]) == {
        "receiver": ["run book"], "filter": ['{alertname="BoxTooHigh"}']}
    silence = parse_qs(urlsplit(links["Silence BoxTooHigh"]).fragment.partition("?")[2])
    assert silence["filter"] == [
        '{alertname="BoxTooHigh", env="prod", note="<!channel> <http://evil.example|click>"}']
    assert links["Source of BoxTooHigh"] == \
        "http://prometheus.example:9090/graph?g0.expr=up&g0.tab=1"
    posted = json.dumps(slack.got[0])
    assert "&lt;!channel&gt;" in posted  # the summary, escaped as before
    assert "7 more alert(s) were truncated by Alertmanager" in posted


def test_truncated_alerts_are_kept_on_the_alert_record_of_the_run(
        daemon: RunningDaemon, slack: SlackStandIn) -> None:
    daemon.post("/v1/alerts/alertmanager", payload(truncated=12))
    [run] = daemon.wait_run(lambda runs: len(runs) == 1)
    [alert] = daemon.daemon.inbox.alerts_of(run["run_id"])
    assert alert.truncated_alerts == 12 and alert.source == "alertmanager"


def test_a_request_with_nothing_truncated_says_nothing_of_it(
        daemon: RunningDaemon, slack: SlackStandIn) -> None:
    daemon.post("/v1/alerts/alertmanager", payload(truncated=0))
    slack.wait_for(lambda got: len(got) >= 1)
    assert "truncated" not in json.dumps(slack.got[0])


@pytest.mark.parametrize("path", ["/v1/alerts/grafana", "/v1/alerts/alertmanager"])
def test_grafanas_webhook_is_accepted_and_its_silence_link_used(
        daemon: RunningDaemon, slack: SlackStandIn, path: str) -> None:
    answer = daemon.post(path, grafana(truncated=0))
    assert answer.status_code == 202, answer.text
    [run] = daemon.wait_run(lambda runs: len(runs) == 1)
    [alert] = daemon.daemon.inbox.alerts_of(run["run_id"])
    assert alert.source == "grafana"
    slack.wait_for(lambda got: len(got) >= 1)
    links = links_in(slack)
    assert links["Silence BoxTooHigh"] == ("http://grafana.example:3000/alerting/silence/new?"
                                           "alertmanager=grafana&matchers=alertname%3DBoxTooHigh")
    assert links["Open in Grafana"] == "http://grafana.example:3000"


def test_grafanas_truncation_is_said_as_grafanas(
        daemon: RunningDaemon, slack: SlackStandIn) -> None:
    daemon.post("/v1/alerts/grafana", {**grafana(), "truncatedAlerts": 3})
    slack.wait_for(lambda got: len(got) >= 1)
    assert "3 more alert(s) were truncated by Grafana" in json.dumps(slack.got[0])


def test_the_grafana_endpoint_takes_only_grafanas_version(daemon: RunningDaemon) -> None:
    answer = daemon.post("/v1/alerts/grafana", payload("4"))
    assert answer.status_code == 400
    assert "Grafana's webhook sends version" in answer.text
    assert daemon.post("/v1/alerts/alertmanager", payload("3")).status_code == 400


@pytest.mark.parametrize("url", [
    "javascript:alert(1)", "data:text/html,x", "ftp://x.example/", "http://a.example/ b",
    "http://a.example/\nx", "//evil.example/", "http://" + "a" * 2001])
def test_a_link_that_is_not_plainly_http_is_dropped(url: str) -> None:
    [alert] = from_alertmanager(json.dumps(payload(generatorURL=url,
                                                   silenceURL=url)).encode())
    assert alert.generator_url == ""
    [alert] = from_alertmanager(json.dumps({**payload(), "externalURL": url}).encode())
    assert alert.group_url == "" and alert.silence_url == ""


def test_a_link_cannot_break_out_of_its_markup(slack: SlackStandIn) -> None:
    """A URL holding `|` and `>` (legal in a query) stays one link with runbook's label."""
    url = "http://a.example/?q=x|<!channel>&b=>"
    message = {"kind": "incident", "title": "t", "fields": {"A": "b"},
               "links": [{"text": "Source of <!here>|x", "url": url}]}
    assert Notifier._post(Notify(kind="slack", url=slack.url, retries=0),
                          slack_blocks(message)) is None
    [control] = slack.controls
    assert control == ("<http://a.example/?q=x%7C&lt;!channel&gt;&amp;b=&gt;"
                       "|Source of &lt;!here&gt;/x>")


def test_a_generic_webhook_gets_the_links_and_the_truncation_as_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runbook_home: Path) -> None:
    monkeypatch.setenv("TEST_INTAKE_TOKEN", "intake-tok-123")
    config = CONFIG.replace("{{kind: slack, url_env: TEST_SLACK_URL, retries: 0}}",
                            "{{kind: webhook, url_env: TEST_HOOK_URL, retries: 0}}")
    with receiver() as hook:
        monkeypatch.setenv("TEST_HOOK_URL", hook.url)
        with daemon_in_thread(write_world(tmp_path, config), runbook_home,
                              "intake-tok-123") as d:
            d.post("/v1/alerts/alertmanager", payload(truncated=2))
            hook.wait_for(lambda got: len(got) >= 1)
    [message] = hook.got[:1]
    assert message["kind"] == "incident"
    assert [link["text"] for link in message["links"]] == [
        "Open in Alertmanager", "Silence BoxTooHigh", "Source of BoxTooHigh"]
    assert message["notes"] == ["2 more alert(s) were truncated by Alertmanager (its "
                                "max_alerts): this run saw only the alerts it was sent; the "
                                "sender's UI lists them all"]


def test_with_a_public_url_every_message_links_the_run_page(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slack: SlackStandIn,
        runbook_home: Path) -> None:
    monkeypatch.setenv("TEST_INTAKE_TOKEN", "intake-tok-123")
    monkeypatch.setenv("TEST_SLACK_URL", slack.url)
    config = write_world(tmp_path, CONFIG + "public_url: https://runbook.example.com/\n")
    with daemon_in_thread(config, runbook_home, "intake-tok-123") as daemon:
        daemon.post("/v1/alerts/alertmanager", payload())
        [run] = daemon.wait_run(lambda runs: len(runs) == 1)
        slack.wait_for(lambda got: len(got) >= 1)
    page = f"https://runbook.example.com/runs/{run['run_id']}"
    assert links_in(slack)["Run page"] == page
    assert f"sign in on the run page {page}" in json.dumps(slack.got[0])


def test_messages_that_failed_before_a_restart_are_delivered_after_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slack: SlackStandIn,
        runbook_home: Path) -> None:
    from runner.comms.notifier import undelivered

    monkeypatch.setenv("TEST_INTAKE_TOKEN", "intake-tok-123")
    monkeypatch.setenv("TEST_SLACK_URL", slack.url)
    config = write_world(tmp_path, CONFIG)
    slack.status = 500  # the channel is down
    with daemon_in_thread(config, runbook_home, "intake-tok-123") as daemon:
        daemon.post("/v1/alerts/alertmanager", payload())
        [run] = daemon.wait_run(lambda runs: len(runs) == 1 and runs[0]["status"] !=
                                "running")
        journal = daemon.daemon.journal
        from tests.support.polling import wait_for

        wait_for(lambda: bool(undelivered(journal, run["run_id"])), "a failed message")
    slack.status = 200
    slack.got.clear()
    slack.refused.clear()  # what it refused while down, on purpose
    with daemon_in_thread(config, runbook_home, "intake-tok-123") as daemon:
        slack.wait_for(lambda got: len(got) >= 1)
        wait_for(lambda: not undelivered(daemon.daemon.journal, run["run_id"]),
                 "the failed message delivered")
