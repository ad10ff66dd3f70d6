"""Comms from a CLI run of a lab incident: db-pool-exhausted against the lab's real
PostgreSQL, its pool filled by idle transactions, tells the incident channel through
notify.yaml's sinks: a Slack bot (tests/slackapi.py, a stand-in speaking Slack's Web API on
loopback) gets the INCIDENT ALERT and, after the approval and resume, UPDATE and RESOLVED
as replies in its thread; an incoming webhook (tests/slackhook.py) the same as separate
posts."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.faults import Faults, LabDatabase
from tests.scenarios.conftest import CLI
from tests.scenarios.helpers import alive, wait_idle_in_transaction
from tests.slackapi import TOKEN, SlackApiStandIn, SlackMessage, slack_api_stand_in
from tests.slackhook import SlackStandIn, slack_stand_in

pytestmark = pytest.mark.lab

RUN = ("run", "db-pool-exhausted", "--target", "db=lab-db", "--param", "idle_after=1s",
       "--no-input", "--notify")


@pytest.fixture
def channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[
        tuple[SlackApiStandIn, SlackStandIn]]:
    with slack_api_stand_in() as api, slack_stand_in() as hook:
        monkeypatch.setenv("LAB_SLACK_BOT", TOKEN)
        monkeypatch.setenv("LAB_SLACK_HOOK", hook.url)
        notify = tmp_path / "notify.yaml"
        notify.write_text(textwrap.dedent(f"""\
            responding: "on-call: platform (runbook)"
            sinks:
              - {{kind: slack, bot_token_env: LAB_SLACK_BOT, channel: "#incidents",
                  api_url: "{api.url}"}}
              - {{kind: slack, url_env: LAB_SLACK_HOOK}}
            """))
        monkeypatch.setenv("RUNBOOK_NOTIFY", str(notify))
        yield api, hook


def fields(message: SlackMessage) -> dict[str, str]:
    return {f["text"].partition("\n")[0].strip("*"): f["text"].partition("\n")[2]
            for block in message.blocks for f in block.get("fields", [])}


def test_a_lab_incident_run_from_the_cli_is_told_in_one_thread(
        cli: CLI, lab: LabDatabase, faults: Faults,
        channel: tuple[SlackApiStandIn, SlackStandIn]) -> None:
    api, hook = channel
    pids = faults.idle_in_transaction(20)
    wait_idle_in_transaction(faults.db, pids, seconds=1)
    code, report = cli.json(*RUN)
    assert code == 1 and report["status"] == "awaiting_approval"
    [alert] = api.messages
    assert alert.text.startswith("INCIDENT ALERT [P") and "db-pool-exhausted" in alert.text
    shown = fields(alert)
    assert "lab-db" in shown["Service"] and shown["Status"] == "Identified"
    assert shown["Responding"] == "on-call: platform (runbook)"
    assert "idle" in shown["Symptoms"] or "connections" in shown["Symptoms"]
    assert "end-idle-transactions" in json.dumps(alert.blocks)  # what waits for approval

    run_id = report["run_id"]
    assert cli("approve", run_id, "end-idle-transactions", "--as", "alice")[0] == 0
    code, report = cli.json("resume", run_id, "--no-input", "--notify")
    assert report["status"] == "completed" and alive(lab, pids) == set()
    replies = api.thread(alert.ts)
    assert [m.text.split()[0] for m in replies] == ["UPDATE", "RESOLVED"]
    assert fields(replies[0])["Status"] == "Monitoring"
    done = fields(replies[1])
    assert done["Status"] == "Resolved" and done["Resolution"] == "end-idle-transactions (alice)"
    assert done["Root cause"].startswith("as found: ")
    assert len(api.top_level()) == 1
    assert [m["text"].split()[0] for m in hook.got] == ["INCIDENT", "UPDATE", "RESOLVED"]
    assert hook.refused == [] and api.controls == [] and hook.controls == []
