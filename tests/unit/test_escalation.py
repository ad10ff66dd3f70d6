"""Escalation of a remedy nobody approved, end to end: a real daemon on loopback whose clock
the test moves, Slack's Web API played by tests/slackapi.py, PagerDuty's Events API v2 by
tests/pagerduty.py, the incident channel's webhook by tests/slackhook.py. Each level is
taken once, journaled, and carried on by a restarted daemon."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.daemonkit import Receiver, RunningDaemon, daemon_in_thread, receiver, write_world
from tests.pagerduty import ROUTING_KEY, PagerDutyStandIn, pagerduty_stand_in
from tests.slackapi import TOKEN, SlackApiStandIn, slack_api_stand_in
from tests.slackhook import SlackStandIn, slack_stand_in

HOUR = 3600.0

CONFIG = """
auth: {{mode: bearer, token_env: TEST_INTAKE_TOKEN}}
approvers:
  alice: {{token_env: TEST_ALICE_TOKEN}}
slack_app: {{signing_secret_env: TEST_SLACK_SIGNING, bot_token_env: TEST_SLACK_BOT,
             api_url: "SLACK_API_URL"}}
escalate_after: {{P2: 1h}}
escalation_check: CHECK
routes:
  - name: mem
    match: ['alertname="BoxTooHigh"']
    playbook: mem-incident
    targets: {{box: box}}
    params: {{value: "{{{{ labels.level }}}}"}}
    escalation:
      - {{kind: slack, to: oncall}}
      - {{kind: pagerduty, routing_key_env: TEST_PD_KEY, url: "PD_URL"}}
      - {{kind: webhook, url: "HOOK_URL"}}
notify:
  - {{kind: slack, url_env: TEST_SLACK_URL, retries: 0}}
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""

ALERT = {"version": "4", "status": "firing", "receiver": "runbook", "groupKey": "g",
         "alerts": [{"status": "firing", "labels": {"alertname": "BoxTooHigh", "level": "4"},
                     "annotations": {"summary": "box too high"},
                     "startsAt": "2026-11-22T07:00:00Z"}]}


@dataclass
class Clock:
    """Unix time, as far ahead of the real one as the test has moved it."""

    ahead: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead


@dataclass
class World:
    api: SlackApiStandIn
    pd: PagerDutyStandIn
    channel: SlackStandIn
    hook: Receiver
    config: Path
    home: Path
    clock: Clock = field(default_factory=Clock)

    def daemon(self) -> Any:
        return daemon_in_thread(self.config, self.home, "intake-tok-123", clock=self.clock)

    def oncall(self) -> list[Any]:
        return [m for m in self.api.messages if m.channel == "C0ONCALL00"]

    def reminders(self) -> list[dict[str, Any]]:
        return [m for m in self.channel.got if str(m.get("text", "")).startswith("ESCALATION")]


def escalations(daemon: RunningDaemon, run_id: str) -> list[dict[str, Any]]:
    return [e.data for e in daemon.daemon.journal.events(run_id) if e.type == "escalation"]


def awaiting(daemon: RunningDaemon) -> dict[str, Any]:
    daemon.post("/v1/alerts/alertmanager", ALERT)
    [run] = daemon.wait_run(lambda runs: bool(runs) and runs[0]["status"] == "awaiting_approval")
    return run


@contextmanager
def world_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runbook_home: Path,
             check: str) -> Iterator[World]:
    """The stand-ins and a daemon config whose loop looks every `check`."""
    with slack_api_stand_in() as api, pagerduty_stand_in() as pd, slack_stand_in() as hook, \
            receiver() as generic:
        for name, val in {"TEST_INTAKE_TOKEN": "intake-tok-123",
                          "TEST_ALICE_TOKEN": "alice-tok-1",
                          "TEST_SLACK_SIGNING": "signing-secret-abcdef0123",
                          "TEST_SLACK_BOT": TOKEN, "TEST_PD_KEY": ROUTING_KEY,
                          "TEST_SLACK_URL": hook.url}.items():
            monkeypatch.setenv(name, val)
        text = (CONFIG.replace("SLACK_API_URL", api.url).replace("PD_URL", pd.url)
                .replace("HOOK_URL", generic.url).replace("CHECK", check))
        yield World(api, pd, hook, generic, write_world(tmp_path, text), runbook_home)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          runbook_home: Path) -> Iterator[World]:
    """The daemon's loop looks every 0.1 s; its clock is the test's."""
    with world_of(tmp_path, monkeypatch, runbook_home, "0.1s") as made:
        yield made


def test_an_unapproved_proposal_escalates_level_by_level_once_each(world: World) -> None:
    with world.daemon() as daemon:
        run = awaiting(daemon)
        fix = run["remedies"][0]
        world.clock.ahead = HOUR + 1  # one deadline: the first target, the channel reminded
        world.api.wait_for(lambda _: len(world.oncall()) == 1)
        [page] = world.oncall()
        assert page.text.startswith("ESCALATION [P2] mem-incident: fix waits for approval")
        buttons = [b for b in page.blocks if b["type"] == "actions"]
        assert buttons and fix["fingerprint"][:16] in buttons[0]["elements"][0]["value"]
        world.channel.wait_for(lambda _: len(world.reminders()) == 1)
        assert world.pd.events == []  # PagerDuty is the second level: not yet

        world.clock.ahead = 2 * HOUR + 1  # two deadlines: PagerDuty
        world.pd.wait_for(lambda events: len(events) == 1)
        [event] = world.pd.events
        assert event["routing_key"] == ROUTING_KEY and event["event_action"] == "trigger"
        assert event["dedup_key"] == f"runbook/{run['run_id']}/fix/{fix['fingerprint'][:16]}"
        assert event["payload"]["severity"] == "warning"  # P2
        assert event["payload"]["source"] == "box"
        assert event["payload"]["summary"].startswith("ESCALATION [P2] mem-incident")

        world.clock.ahead = 3 * HOUR + 1  # three: the generic webhook, the message as JSON
        world.hook.wait_for(lambda got: len(got) == 1)
        [sent] = world.hook.got
        assert sent["kind"] == "escalation" and sent["fields"]["Escalation"] == "level 3 of 3"
        assert sent["fields"]["Run"] == run["run_id"]

        world.clock.ahead = 10 * HOUR  # past every level: nothing more, however often it looks
        for _ in range(3):
            assert daemon.daemon.escalator.tick() == []
        steps = escalations(daemon, run["run_id"])
        assert [(s["level"], s["target"]["kind"], s["delivered"]) for s in steps] == [
            (1, "slack", True), (2, "pagerduty", True), (3, "webhook", True)]
        assert {s["remedy"] for s in steps} == {"fix"}
        assert len(world.oncall()) == 1 and len(world.pd.events) == 1
        assert len(world.hook.got) == 1
        assert len(world.reminders()) == 3  # the channel heard at each level
        assert world.pd.refused == []


def test_an_approved_proposal_does_not_escalate(world: World) -> None:
    with world.daemon() as daemon:
        run = awaiting(daemon)
        answer = daemon.post(f"/v1/runs/{run['run_id']}/approvals", {"remedy": "fix"},
                             token="alice-tok-1")
        assert answer.status_code == 202
        daemon.wait_run(lambda runs: runs[0]["status"] == "completed")
        assert daemon.daemon.escalator.tick(time.time() + 10 * HOUR) == []
        assert escalations(daemon, run["run_id"]) == []
        assert world.oncall() == [] and world.pd.events == []


def test_a_refused_page_is_journaled_with_why_and_not_sent_again(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PD_KEY", "too-short")  # PagerDuty refuses it: 400
    with world.daemon() as daemon:
        run = awaiting(daemon)
        steps = daemon.daemon.escalator.tick(time.time() + 2 * HOUR + 1)
        assert [(s["level"], s["delivered"]) for s in steps] == [(1, True), (2, False)]
        assert "invalid event" in steps[1]["error"] and "routing_key" in steps[1]["error"]
        assert "too-short" not in str(steps)  # a secret stays out of the journal
        assert len(world.pd.refused) == 1
        assert daemon.daemon.escalator.tick(time.time() + 2 * HOUR + 60) == []
        assert len(escalations(daemon, run["run_id"])) == 2 and len(world.pd.refused) == 1


def test_escalation_survives_a_daemon_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              runbook_home: Path) -> None:
    """The schedule is the journal: a daemon started after the deadline escalates at once,
    and one started later still takes the next level, never one already taken."""
    with world_of(tmp_path, monkeypatch, runbook_home, "1h") as world:
        with world.daemon() as daemon:
            run = awaiting(daemon)  # proposed; the daemon stops before any deadline
        assert world.oncall() == [] and world.pd.events == []

        world.clock.ahead = HOUR + 1
        with world.daemon() as daemon:  # its first look, at start, finds level 1 owed
            world.api.wait_for(lambda _: len(world.oncall()) == 1)
            assert world.pd.events == []

        world.clock.ahead = 2 * HOUR + 1
        with world.daemon() as daemon:
            world.pd.wait_for(lambda events: len(events) == 1)
            assert daemon.daemon.escalator.tick() == []
            steps = escalations(daemon, run["run_id"])
        assert [s["level"] for s in steps] == [1, 2]
        assert len(world.oncall()) == 1  # level 1 was not taken again


def test_deadlines_per_severity_default_and_aliases(tmp_path: Path) -> None:
    """P0 after 5 minutes and P1 after 30 by default; SEV1-4 are P0-P3."""
    import threading

    from runner.daemon.config import DaemonConfig
    from runner.daemon.escalation import Escalator, severity_of
    from runner.journal import Journal
    from runner.state import RunState

    assert DaemonConfig.model_validate({"auth": {"mode": "none"}}).escalate_after == {
        "P0": 300.0, "P1": 1800.0}
    config = DaemonConfig.model_validate({"auth": {"mode": "none"},
                                          "escalate_after": {"SEV2": "10m"}})
    escalator = Escalator(config, Journal(tmp_path), lambda *_: None, None, time.time,
                          threading.Event())
    assert escalator.deadlines == {"P1": 600.0}
    assert severity_of(RunState("r", severity="SEV1")) == "P0"
    assert severity_of(RunState("r", severity="p2")) == "P2"
