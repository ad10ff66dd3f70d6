"""`runbook run --notify`: a playbook run by name from the CLI tells the incident channel,
over real HTTP on loopback to stand-ins that speak Slack's protocols (tests/slackapi.py for
the Web API with a bot token, tests/slackhook.py for an incoming webhook)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from tests.daemonkit import write_world
from tests.slackapi import TOKEN, SlackApiStandIn, SlackMessage, slack_api_stand_in
from tests.slackhook import SlackStandIn, slack_stand_in

APPROVE = "fix=mem.act"


def fields(message: SlackMessage | dict[str, Any]) -> dict[str, str]:
    """The message's fields as Slack shows them: {label: value}."""
    blocks = message.blocks if isinstance(message, SlackMessage) else message["blocks"]
    shown: dict[str, str] = {}
    for block in blocks:
        for item in block.get("fields", []):
            label, _, value = item["text"].partition("\n")
            shown[label.strip("*")] = value
    return shown


@pytest.fixture
def api() -> Iterator[SlackApiStandIn]:
    with slack_api_stand_in() as stand_in:
        yield stand_in


@pytest.fixture
def hook() -> Iterator[SlackStandIn]:
    with slack_stand_in() as stand_in:
        yield stand_in


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: SlackApiStandIn,
          hook: SlackStandIn) -> Path:
    """The mem-incident playbook, its inventory, and a notify.yaml beside the inventory
    naming both stand-ins; secrets in env vars only."""
    write_world(tmp_path, "")
    monkeypatch.setenv("RUNBOOK_PLAYBOOKS", str(tmp_path / "playbooks"))
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(tmp_path / "inventory.yaml"))
    monkeypatch.setenv("RUNBOOK_BACKENDS", "tests.support.membackend:register")
    monkeypatch.setenv("TEST_SLACK_BOT", TOKEN)
    monkeypatch.setenv("TEST_SLACK_HOOK", hook.url)
    (tmp_path / "notify.yaml").write_text(textwrap.dedent(f"""
        responding: "on-call: db team"
        sinks:
          - {{kind: slack, bot_token_env: TEST_SLACK_BOT, channel: "#incidents",
              api_url: "{api.url}", retries: 1}}
          - {{kind: slack, url_env: TEST_SLACK_HOOK, retries: 1}}
        """))
    return tmp_path


def test_a_cli_run_with_notify_sends_alert_then_resolved_in_one_thread(
        world: Path, api: SlackApiStandIn, hook: SlackStandIn, runbook_home: Path) -> None:
    assert main(["run", "mem-incident", "--notify", "--approve", APPROVE, "--no-input",
                 "-p", "value=4", "--as", "alice"]) == 1  # it found something (and fixed it)
    [alert] = api.top_level()
    assert alert.text.startswith("INCIDENT ALERT [P2] mem-incident")
    shown = fields(alert)
    assert {"Severity", "Service", "Started", "Impact", "Symptoms", "Responding",
            "Status"} <= set(shown)
    assert shown["Status"] == "Identified" and shown["Service"] == "box"
    assert shown["Responding"] == "on-call: db team" and shown["Symptoms"] == "value is 4"
    replies = api.thread(alert.ts)
    assert [r.text.split()[0] for r in replies] == ["UPDATE", "RESOLVED"]
    assert all(r.body["thread_ts"] == alert.ts for r in replies)
    update, resolved = replies
    assert fields(update)["Status"] == "Monitoring"
    assert {"Time", "Status", "Next step", "ETA"} <= set(fields(update))
    done = fields(resolved)
    assert {"Duration", "Summary", "Root cause", "Resolution", "Review by"} <= set(done)
    assert done["Root cause"] == "as found: value is 4" and done["Resolution"] == "fix (alice)"
    assert done["Status"] == "Resolved"
    # The incoming webhook has no threads: the same three, as separate posts.
    assert [m["text"].split()[0] for m in hook.got] == ["INCIDENT", "UPDATE", "RESOLVED"]
    assert all("thread_ts" not in m for m in hook.got)
    assert hook.refused == [] and hook.controls == [] and api.controls == []
    # Every call carried the bot token; none of it reached the journal.
    assert all(call["authorised"] for call in api.calls)
    journal = (runbook_home / "journal.sqlite3").read_bytes()
    assert TOKEN.encode() not in journal and hook.url.encode() not in journal


def test_the_thread_is_remembered_on_the_run_and_a_resume_replies_in_it(
        world: Path, api: SlackApiStandIn, runbook_home: Path) -> None:
    from runner.comms.notifier import thread_of
    from runner.journal import Journal

    assert main(["run", "mem-incident", "--notify", "--no-input"]) == 1  # waits for approval
    [alert] = api.messages
    assert fields(alert)["Status"] == "Identified"
    run_id = json.loads(main_json(["history"]))["runs"][0]["id"]
    journal = Journal(runbook_home)
    assert thread_of(journal, run_id, "slack:#incidents") == ("C0INCIDENTS", alert.ts)
    assert main(["approve", run_id, "fix", "--as", "bob"]) == 0
    assert main(["resume", run_id, "--notify", "--no-input"]) == 1
    assert [m.text.split()[0] for m in api.thread(alert.ts)] == ["UPDATE", "RESOLVED"]
    assert len(api.top_level()) == 1  # one incident, one thread


def test_without_notify_a_cli_run_tells_nobody(world: Path, api: SlackApiStandIn,
                                               hook: SlackStandIn) -> None:
    assert main(["run", "mem-incident", "--no-input"]) == 1
    assert api.calls == [] and hook.got == []


def test_a_run_that_found_nothing_says_nothing(world: Path, api: SlackApiStandIn) -> None:
    assert main(["run", "mem-incident", "--notify", "--no-input", "-p", "value=0"]) == 0
    assert api.calls == []


def main_json(argv: list[str]) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*argv, "-o", "json"]) == 0
    return out.getvalue()


def test_a_run_that_could_not_check_is_still_investigating(
        world: Path, api: SlackApiStandIn) -> None:
    (world / "playbooks" / "mem-broken.yaml").write_text(textwrap.dedent("""\
        name: mem-broken
        summary: a probe that fails
        severity: P3
        targets:
          box: {kind: mem}
        steps:
          - {id: broken, run: mem.fail}
        findings:
          - {id: lagging, when: steps.broken.lag > 10, say: lag}
        """))
    assert main(["run", "mem-broken", "--notify", "--no-input"]) == 3
    [alert] = api.messages
    assert fields(alert)["Status"] == "Investigating"
    assert "INCONCLUSIVE: nothing found, but some checks could not run" in json.dumps(
        alert.blocks)
