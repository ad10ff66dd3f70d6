"""Delivery to Slack's Web API (tests/slackapi.py, a stand-in speaking the real protocol on
loopback): Retry-After is honoured, a refusal is not retried, and a message that could not
be delivered is recorded on the run and delivered by a later retry, never lost. Waits are
measured through an injected sleep, not the wall clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from runner.comms.config import Sink
from runner.comms.notifier import Notifier, thread_of, undelivered
from runner.journal import Journal
from runner.vocabulary import EventKind
from tests.slackapi import TOKEN, SlackApiStandIn, slack_api_stand_in


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackApiStandIn]:
    monkeypatch.setenv("TEST_SLACK_BOT", TOKEN)
    with slack_api_stand_in() as stand_in:
        yield stand_in


@pytest.fixture
def journal(runbook_home: Path) -> Journal:
    journal = Journal(runbook_home)
    journal.create_run("r1", "mem-incident", "P2", {})
    return journal


class Sleeps(list[float]):
    """An injected sleep: remembers each pause instead of taking it."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def bot(api: SlackApiStandIn, **settings: Any) -> Sink:
    return Sink(kind="slack", bot_token_env="TEST_SLACK_BOT", channel="#incidents",
                api_url=api.url, **settings)


def message(kind: str = "incident", title: str = "INCIDENT ALERT [P2] mem-incident") -> dict[
        str, Any]:
    return {"kind": kind, "title": title, "fields": {"Status": "Identified"},
            "status": "Identified"}


def events(journal: Journal, kind: str) -> list[dict[str, Any]]:
    return [e.data for e in journal.events("r1") if e.type == kind]


def test_a_429_is_waited_out_for_at_least_its_retry_after(
        api: SlackApiStandIn, journal: Journal) -> None:
    api.ratelimit, api.retry_after = 2, 7
    sleeps = Sleeps()
    assert Notifier([bot(api)], journal, sleep=sleeps).send("r1", message()) == 0
    assert sleeps == [7, 7]  # Slack asked for 7 s each time: more than the back-off
    assert [c["method"] for c in api.calls] == ["chat.postMessage"] * 3
    assert len(api.messages) == 1
    [sent] = events(journal, EventKind.NOTIFY_SENT)
    assert sent["attempts"] == 3 and sent["waited"] == 14 and sent["ts"] == api.messages[0].ts


def test_a_retry_after_longer_than_the_sink_waits_is_recorded_for_later(
        api: SlackApiStandIn, journal: Journal) -> None:
    api.ratelimit, api.retry_after = 1, 120
    sleeps = Sleeps()
    assert Notifier([bot(api)], journal, sleep=sleeps).send("r1", message()) == 1
    assert sleeps == [] and api.messages == []  # never sent before Slack allowed it
    [failed] = events(journal, EventKind.NOTIFY_FAILED)
    assert failed["error"].startswith("HTTP 429 ratelimited: Retry-After 120s")
    assert failed["pending"]["title"] == "INCIDENT ALERT [P2] mem-incident"


def test_a_bad_token_is_refused_once_and_recorded_with_slacks_word(
        api: SlackApiStandIn, journal: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SLACK_BOT", "xoxb-wrong-token-000")
    sleeps = Sleeps()
    assert Notifier([bot(api)], journal, sleep=sleeps).send("r1", message()) == 1
    assert len(api.calls) == 1 and sleeps == []  # a retry cannot fix invalid_auth
    [failed] = events(journal, EventKind.NOTIFY_FAILED)
    assert failed["error"] == "HTTP 200 invalid_auth"
    assert "xoxb-wrong-token-000" not in json.dumps([e.data for e in journal.events("r1")])


def test_a_sink_that_is_down_is_recorded_then_retried_later_and_delivered(
        api: SlackApiStandIn, journal: Journal) -> None:
    api.down = 10  # the next 10 calls: 503
    sleeps = Sleeps()
    notifier = Notifier([bot(api, retries=2)], journal, sleep=sleeps)
    assert notifier.send("r1", message()) == 1
    assert sleeps == [0.5, 1.0]  # back-off between its three tries
    [failed] = undelivered(journal, "r1")
    assert failed.data["error"] == "HTTP 503 service_unavailable"
    api.down = 0  # Slack is back
    assert notifier.retry_undelivered("r1") == (1, 0)
    [alert] = api.messages
    assert alert.text == "INCIDENT ALERT [P2] mem-incident"
    assert undelivered(journal, "r1") == []
    [sent] = events(journal, EventKind.NOTIFY_SENT)
    assert sent["retry_of"] == failed.seq
    assert notifier.retry_undelivered("r1") == (0, 0)  # delivered once, not again
    assert len(api.messages) == 1


def test_update_and_resolved_reply_in_the_thread_of_the_first_message(
        api: SlackApiStandIn, journal: Journal) -> None:
    notifier = Notifier([bot(api)], journal)
    for kind, title in (("incident", "INCIDENT ALERT"), ("update", "UPDATE"),
                        ("resolved", "RESOLVED")):
        assert notifier.send("r1", message(kind, title)) == 0
    alert, update, resolved = api.messages
    assert alert.thread_ts is None
    assert update.thread_ts == alert.ts and resolved.thread_ts == alert.ts
    assert thread_of(journal, "r1", "slack:#incidents") == ("C0INCIDENTS", alert.ts)
    assert [e["thread_ts"] for e in events(journal, EventKind.NOTIFY_SENT)[1:]] == [
        alert.ts, alert.ts]


def test_runbook_notify_retry_delivers_what_a_cli_run_could_not(
        api: SlackApiStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from tests.daemonkit import write_world

    write_world(tmp_path, "")
    monkeypatch.setenv("RUNBOOK_PLAYBOOKS", str(tmp_path / "playbooks"))
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(tmp_path / "inventory.yaml"))
    monkeypatch.setenv("RUNBOOK_BACKENDS", "tests.support.membackend:register")
    (tmp_path / "notify.yaml").write_text(
        "notify: true\nsinks:\n  - {kind: slack, bot_token_env: TEST_SLACK_BOT, "
        f"channel: '#incidents', api_url: '{api.url}', retries: 0}}\n")
    api.down = 1
    assert main(["run", "mem-incident", "--no-input"]) == 1  # notify.yaml: on by default
    assert api.messages == []
    capsys.readouterr()
    assert main(["history", "-o", "json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["runs"][0]["id"]
    assert main(["notify", run_id]) == 3  # something is undelivered
    assert "FAILED  incident -> slack:#incidents: HTTP 503" in capsys.readouterr().out
    assert main(["notify", run_id, "--retry", "-o", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["retried"] == {"delivered": 1, "failed": 0} and shown["undelivered"] == 0
    [alert] = api.messages
    assert alert.text.startswith("INCIDENT ALERT [P2] mem-incident")
