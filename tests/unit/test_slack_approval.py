"""Approving from Slack, end to end: a real daemon on loopback, Slack's Web API played by
the stand-in in tests/slackapi.py (which signs its clicks as Slack does), the `mem` backend
counting what the remedy did. The attacker's tests: a forged or stale signature, a replayed
request, a user nobody mapped, a button for another proposal, one person clicking twice
under four-eyes; none of them records anything or runs anything."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from runner.comms.buttons import APPROVE, DECLINE, value
from tests.daemonkit import RunningDaemon, daemon_in_thread, write_world
from tests.slackapi import TOKEN, SlackApiStandIn, SlackMessage, slack_api_stand_in
from tests.support.polling import wait_for

SECRET = "slack-signing-secret-0123456789abcdef"
ALICE, BOB, MALLORY = "U0ALICE000", "U0BOB00000", "U0MALLORY0"

CONFIG = """
auth: {{mode: bearer, token_env: TEST_INTAKE_TOKEN}}
four_eyes: true
slack_app: {{signing_secret_env: TEST_SLACK_SIGNING, bot_token_env: TEST_SLACK_BOT,
             api_url: "SLACK_API_URL"}}
slack_users: {{U0ALICE000: alice, U0BOB00000: bob}}
notify:
  - {{kind: slack, bot_token_env: TEST_SLACK_BOT, channel: incidents, api_url: "SLACK_API_URL",
     retries: 0}}
routes:
  - name: mem
    match: ['alertname="BoxTooHigh"']
    playbook: mem-incident
    targets: {{box: box}}
    params: {{value: "{{{{ labels.level }}}}"}}
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""


def alert(level: int = 5) -> dict[str, Any]:
    return {"version": "4", "status": "firing", "receiver": "runbook", "groupKey": "g",
            "alerts": [{"status": "firing", "labels": {"alertname": "BoxTooHigh",
                                                      "level": str(level)},
                        "annotations": {"summary": "box too high"},
                        "startsAt": "2026-11-22T07:00:00Z"}]}


@dataclass
class World:
    daemon: RunningDaemon
    api: SlackApiStandIn
    root: Path
    config: Path

    @property
    def request_url(self) -> str:
        return self.daemon.url + "/v1/slack/interactions"

    def awaiting_run(self) -> dict[str, Any]:
        self.daemon.post("/v1/alerts/alertmanager", alert())
        [run] = self.daemon.wait_run(
            lambda runs: bool(runs) and runs[0]["status"] == "awaiting_approval")
        return run

    def proposal_message(self, run: dict[str, Any]) -> SlackMessage:
        """The daemon's INCIDENT ALERT in the incident channel (its bot posted it with
        chat.postMessage), with the proposal's buttons."""
        mine = f"runbook:{run['run_id']}:fix"

        def posted() -> SlackMessage | None:
            return next((m for m in self.api.messages if m.channel == "C0INCIDENTS"
                         and any(b.get("block_id") == mine for b in m.blocks)), None)
        message = wait_for(posted, "the INCIDENT ALERT with its buttons")
        assert message is not None
        assert message.text.startswith("INCIDENT ALERT") and message.thread_ts is None
        return message

    def click(self, message: SlackMessage, action: str = APPROVE, user: str = ALICE,
              **override: Any) -> int:
        button = next(e for b in message.blocks if b["type"] == "actions"
                      for e in b["elements"] if e["action_id"] == action)
        names = {ALICE: "alice", BOB: "bob", MALLORY: "mallory"}
        status, _ = self.api.click(self.request_url, SECRET, message, action,
                                   override.pop("value", button["value"]), user_id=user,
                                   user_name=names[user], **override)
        return status

    def settled_again(self, run: dict[str, Any]) -> None:
        """Until the run, resumed after the latest approval, awaits approval again."""
        journal = self.daemon.daemon.journal

        def settled(runs: list[dict[str, Any]]) -> bool:
            events = journal.events(run["run_id"])
            last = max(e.seq for e in events if e.type == "approval")
            return any(e.type == "run.finished" and e.seq > last for e in events) \
                and runs[0]["status"] == "awaiting_approval"
        self.daemon.wait_run(settled)

    def replies(self, message: SlackMessage) -> list[str]:
        """What the app told the person who clicked (response_url, ephemeral)."""
        return [c["body"]["text"] for c in self.api.calls
                if c["method"] == message.ts and c["body"].get("response_type") == "ephemeral"]

    def actions(self) -> list[dict[str, Any]]:
        path = self.root / "box" / "actions.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] \
            if path.exists() else []


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          runbook_home: Path) -> Iterator[World]:
    with slack_api_stand_in() as api:
        for name, val in {"TEST_INTAKE_TOKEN": "intake-tok-123", "TEST_SLACK_SIGNING": SECRET,
                          "TEST_SLACK_BOT": TOKEN}.items():
            monkeypatch.setenv(name, val)
        config = write_world(tmp_path, CONFIG.replace("SLACK_API_URL", api.url))
        with daemon_in_thread(config, runbook_home, "intake-tok-123") as daemon:
            yield World(daemon, api, tmp_path, config)


def approvals(world: World, run: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a.decision, a.by) for a in world.daemon.daemon.journal.approvals(run["run_id"],
                                                                               "fix")]


def test_two_mapped_people_approve_in_slack_and_the_remedy_runs_once(world: World) -> None:
    run = world.awaiting_run()
    message = world.proposal_message(run)
    [section] = [b["text"]["text"] for b in message.blocks
                 if b["type"] == "section" and "Proposed: fix" in b.get("text", {}).get("text", "")]
    fix = run["remedies"][0]
    assert "mem.act" in section and "box" in section and '"items": [5]' in section
    assert fix["fingerprint"][:16] in section

    assert world.click(message, user=ALICE) == 200
    # four-eyes on an alert's run: alice alone does not run it; the message says who and why
    world.api.wait_for(lambda _: message.updates == 1)
    note = json.dumps(message.blocks)
    assert "Approved by alice" in note and "four-eyes" in note
    assert any(b["type"] == "actions" for b in message.blocks)  # bob can still approve
    assert world.actions() == []

    world.settled_again(run)
    assert world.click(message, user=BOB) == 200
    [run] = world.daemon.wait_run(lambda runs: runs[0]["status"] == "completed")
    assert run["remedies"][0]["status"] == "succeeded"
    assert [a["items"] for a in world.actions()] == [[5], [5]]  # one start, one end
    assert approvals(world, run) == [("approved", "alice"), ("approved", "bob")]
    [how] = {a.how for a in world.daemon.daemon.journal.approvals(run["run_id"], "fix")
             if a.by == "bob"}
    assert how == f"Slack button by {BOB} (bob) in C0INCIDENTS"
    world.api.wait_for(lambda _: message.updates == 2)
    final = json.dumps(message.blocks)
    assert "Approved* by bob" in final and "it runs now" in final
    assert not any(b["type"] == "actions" for b in message.blocks)  # no buttons left
    assert world.api.calls[-1]["authorised"]


def test_one_slack_user_clicking_twice_counts_once(world: World) -> None:
    run = world.awaiting_run()
    message = world.proposal_message(run)
    assert world.click(message, user=ALICE) == 200
    world.settled_again(run)  # alice's approval resumed the run, which waits for bob
    assert world.click(message, user=ALICE) == 200
    wait_for(lambda: world.replies(message), "the second click to be refused")
    [said] = world.replies(message)
    assert "four-eyes" in said and "alice has approved fix already" in said
    assert approvals(world, run) == [("approved", "alice")]
    time_to_resume = world.daemon.daemon.journal.state(run["run_id"])
    assert time_to_resume.remedies["fix"].status == "proposed"
    assert world.actions() == []


def test_a_decline_in_slack_is_recorded_and_nothing_runs(world: World) -> None:
    run = world.awaiting_run()
    message = world.proposal_message(run)
    assert world.click(message, DECLINE, user=BOB) == 200
    world.daemon.wait_run(lambda runs: runs[0]["remedies"][0]["status"] == "declined")
    world.api.wait_for(lambda _: message.updates == 1)
    assert "Declined* by bob" in json.dumps(message.blocks)
    assert approvals(world, run) == [("declined", "bob")]
    assert world.actions() == []


def test_a_forged_signature_is_refused_and_nothing_is_recorded(world: World) -> None:
    run = world.awaiting_run()
    message = world.proposal_message(run)
    assert world.click(message, signature="v0=" + "0" * 64) == 401
    status, said = world.api.click(world.request_url, "not-the-signing-secret", message,
                                   APPROVE, value(run["run_id"], "fix",
                                                  run["remedies"][0]["fingerprint"]))
    assert status == 401 and "signing secret" in said
    body = click_body(run, message, ALICE)
    unsigned = {k: v for k, v in signed(body, int(time.time())).items()
                if k != "X-Slack-Signature"}
    assert httpx.post(world.request_url, content=body, headers=unsigned,
                      timeout=10).status_code == 401
    assert approvals(world, run) == [] and world.replies(message) == []
    assert message.updates == 0
    metrics = world.daemon.get("/metrics").text
    assert 'runbook_alerts_refused_total{reason="slack_signature"} 3.0' in metrics


def test_a_stale_timestamp_is_refused(world: World) -> None:
    run = world.awaiting_run()
    message = world.proposal_message(run)
    status, body = world.api.click(world.request_url, SECRET, message, APPROVE,
                                   value(run["run_id"], "fix",
                                         run["remedies"][0]["fingerprint"]),
                                   timestamp=int(time.time()) - 301)
    assert status == 401 and "X-Slack-Request-Timestamp" in body
    assert approvals(world, run) == []


def test_the_daemons_clock_judges_the_timestamp(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runbook_home: Path) -> None:
    """An honest click now, read by a daemon whose clock is 301 s ahead: too old."""
    with slack_api_stand_in() as api:
        for name, val in {"TEST_INTAKE_TOKEN": "intake-tok-123", "TEST_SLACK_SIGNING": SECRET,
                          "TEST_SLACK_BOT": TOKEN}.items():
            monkeypatch.setenv(name, val)
        config = write_world(tmp_path, CONFIG.replace("SLACK_API_URL", api.url))
        with daemon_in_thread(config, runbook_home, "intake-tok-123",
                              clock=lambda: time.time() + 301) as daemon:
            world = World(daemon, api, tmp_path, config)
            run = world.awaiting_run()
            message = world.proposal_message(run)
            assert world.click(message) == 401
            assert approvals(world, run) == []


def signed(body: bytes, stamp: int, secret: str = SECRET) -> dict[str, str]:
    import hashlib
    import hmac

    digest = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
    return {"Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(stamp),
            "X-Slack-Signature": "v0=" + digest.hexdigest()}


def click_body(run: dict[str, Any], message: SlackMessage, user: str) -> bytes:
    """Slack's block_actions form body for a press of Approve (what the stand-in sends)."""
    import urllib.parse

    payload = {"type": "block_actions", "user": {"id": user, "username": "x"},
               "container": {"type": "message", "message_ts": message.ts,
                             "channel_id": message.channel},
               "message": message.api(), "response_url": "",
               "actions": [{"type": "button", "action_id": APPROVE,
                            "value": value(run["run_id"], "fix",
                                           run["remedies"][0]["fingerprint"])}]}
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def test_a_replayed_request_is_refused_even_after_a_restart(
        world: World, runbook_home: Path) -> None:
    run = world.awaiting_run()
    message = world.proposal_message(run)
    body = click_body(run, message, ALICE)
    headers = signed(body, int(time.time()))
    first = httpx.post(world.request_url, content=body, headers=headers, timeout=10)
    assert first.status_code == 200
    again = httpx.post(world.request_url, content=body, headers=headers, timeout=10)
    assert again.status_code == 401 and "replay" in again.json()["error"]
    assert approvals(world, run) == [("approved", "alice")]


def test_replays_are_remembered_in_the_journal(world: World, runbook_home: Path) -> None:
    """The signature is kept where a restarted daemon finds it."""
    from runner.daemon.slackapp import Replays
    from runner.journal import Journal

    now = time.time()
    replays = Replays(Journal(runbook_home))
    assert replays.first_time("v0=abc", int(now), now)
    assert not Replays(Journal(runbook_home)).first_time("v0=abc", int(now), now)
    # past its 5 minutes it is forgotten, and refused anyway by its timestamp
    assert replays.first_time("v0=abc", int(now), now + 301)


def test_an_unmapped_slack_user_is_refused_and_told(world: World) -> None:
    run = world.awaiting_run()
    message = world.proposal_message(run)
    assert world.click(message, user=MALLORY) == 200  # Slack's request was genuine
    wait_for(lambda: world.replies(message), "the app to answer mallory")
    [said] = world.replies(message)
    assert MALLORY in said and "not an approver" in said
    assert approvals(world, run) == [] and message.updates == 0
    [refused] = [e.data for e in world.daemon.daemon.journal.events(run["run_id"])
                 if e.type == "approval.refused"]  # who tried is on the run's record
    assert refused["by"] == f"slack:{MALLORY}" and refused["remedy"] == "fix"


def test_a_button_for_another_proposal_is_refused(world: World) -> None:
    run = world.awaiting_run()
    message = world.proposal_message(run)
    stale = value(run["run_id"], "fix", "0123456789abcdef" + "0" * 48)
    assert world.click(message, user=ALICE, value=stale) == 200
    wait_for(lambda: world.replies(message), "the app to refuse the old button")
    [said] = world.replies(message)
    assert "0123456789abcdef" in said and run["remedies"][0]["fingerprint"][:16] in said
    assert approvals(world, run) == []


def test_signature_checks_follow_slacks_rule() -> None:
    """v0=HMAC-SHA256 over v0:timestamp:body; 300 s either way of the daemon's clock."""
    from runner.daemon.slackapp import Refused, check_signature

    body = b"payload=%7B%7D"
    headers = {k.lower(): v for k, v in signed(body, 1_000_000).items()}
    assert check_signature(SECRET, headers, body, 1_000_300) == headers["x-slack-signature"]
    assert check_signature(SECRET, headers, body, 999_700)
    for now in (1_000_301, 999_699):
        with pytest.raises(Refused, match="Timestamp"):
            check_signature(SECRET, headers, body, now)
    with pytest.raises(Refused, match="signing secret"):
        check_signature(SECRET, headers, body + b"x", 1_000_000)
    with pytest.raises(Refused, match="Timestamp"):
        check_signature(SECRET, {**headers, "x-slack-request-timestamp": "12a"}, body, 0)


def test_only_runbooks_buttons_are_taken() -> None:
    from runner.daemon.slackapp import parse_click

    def body(payload: dict[str, Any]) -> bytes:
        import urllib.parse

        return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()

    with pytest.raises(ValueError, match="block_actions"):
        parse_click(body({"type": "view_submission"}))
    with pytest.raises(ValueError, match="not a runbook button"):
        parse_click(body({"type": "block_actions", "actions": [{"action_id": "other"}]}))
    click = parse_click(body({
        "type": "block_actions", "user": {"id": BOB, "username": "bob"},
        "container": {"channel_id": "C1", "message_ts": "1.2"}, "response_url": "u",
        "actions": [{"action_id": DECLINE, "value": value("r1", "fix", "ab" * 32)}]}))
    assert (click.decision, click.run_id, click.remedy, click.fingerprint) == (
        "decline", "r1", "fix", "ab" * 8)


def test_the_config_refuses_what_cannot_work_and_warns_of_what_refuses_everyone() -> None:
    from pydantic import ValidationError

    from runner.daemon.config import DaemonConfig, warnings

    app = {"signing_secret_env": "X_SIGNING", "bot_token_env": "X_BOT"}
    with pytest.raises(ValidationError, match="not a Slack user id"):
        DaemonConfig.model_validate({"auth": {"mode": "none"}, "slack_app": app,
                                     "slack_users": {"alice": "alice"}})
    with pytest.raises(ValidationError, match="a slack escalation needs slack_app"):
        DaemonConfig.model_validate({"auth": {"mode": "none"}, "routes": [{
            "name": "r", "playbook": "p", "escalation": [{"kind": "slack", "to": "C1"}]}]})
    with pytest.raises(ValidationError, match="routing_key_env"):
        DaemonConfig.model_validate({"auth": {"mode": "none"}, "routes": [{
            "name": "r", "playbook": "p", "escalation": [{"kind": "pagerduty"}]}]})
    lonely = DaemonConfig.model_validate({"auth": {"mode": "none"}, "slack_app": app})
    said = warnings(lonely)
    assert any("every click in Slack is refused" in w for w in said)
    assert "X_SIGNING is not set in this environment" in said
