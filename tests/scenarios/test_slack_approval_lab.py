"""Approval from Slack and escalation on a lab incident: Debian's Alertmanager posts the
real webhook, the daemon (loopback, uvicorn in a thread) diagnoses db-pool-exhausted against
the lab's PostgreSQL with its pool filled by idle transactions, and its bot posts the
INCIDENT ALERT with the proposal's buttons to Slack's Web API, played by tests/slackapi.py
(which signs its clicks as Slack does). PagerDuty's Events API v2 is tests/pagerduty.py.
Both stand-ins speak the real protocols on loopback; Slack and PagerDuty are unreachable.

Missing binaries or lab are a failure (scripts/setup provides them), never a skip.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.comms.buttons import APPROVE
from tests.daemonkit import RunningDaemon, daemon_in_thread
from tests.lab.alerting import ALERTMANAGER_BIN, alertmanager, require_binary
from tests.lab.faults import Faults, LabDatabase
from tests.pagerduty import ROUTING_KEY, PagerDutyStandIn, pagerduty_stand_in
from tests.scenarios.helpers import alive, wait_idle_in_transaction
from tests.slackapi import TOKEN, SlackApiStandIn, SlackMessage, slack_api_stand_in
from tests.support.polling import wait_for

pytestmark = pytest.mark.lab

INTAKE = "slack-lab-intake-tok-7Qe"
SECRET = "slack-lab-signing-secret-4Hb"
ALICE, BOB, MALLORY = "U0ALICE000", "U0BOB00000", "U0MALLORY0"
REMEDY = "end-idle-transactions"

CONFIG = """
auth: {mode: bearer, token_env: SLACK_LAB_INTAKE}
four_eyes: true
slack_app: {signing_secret_env: SLACK_LAB_SIGNING, bot_token_env: SLACK_LAB_BOT,
            api_url: "API_URL"}
slack_users: {U0ALICE000: alice, U0BOB00000: bob}
escalate_after: {P0: ESCALATE, P1: ESCALATE, P2: ESCALATE}
escalation_check: 0.2s
routes:
  - name: pool
    match: ['alertname="PostgresPoolExhausted"']
    playbook: db-pool-exhausted
    targets: {db: "{{ labels.instance }}"}
    params: {idle_after: 1s}
    escalation:
      - {kind: slack, to: oncall}
      - {kind: pagerduty, routing_key_env: SLACK_LAB_PD_KEY, url: "PD_URL"}
notify:
  - {kind: slack, bot_token_env: SLACK_LAB_BOT, channel: incidents, api_url: "API_URL"}
"""  # playbooks and inventory: the shipped ones (conftest points RUNBOOK_* at them)


@pytest.fixture
def peers(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SlackApiStandIn, PagerDutyStandIn]]:
    require_binary(ALERTMANAGER_BIN, "prometheus-alertmanager")
    with slack_api_stand_in() as api, pagerduty_stand_in() as pd:
        for name, value in {"SLACK_LAB_INTAKE": INTAKE, "SLACK_LAB_SIGNING": SECRET,
                            "SLACK_LAB_BOT": TOKEN, "SLACK_LAB_PD_KEY": ROUTING_KEY}.items():
            monkeypatch.setenv(name, value)
        yield api, pd


def config(tmp_path: Path, api: SlackApiStandIn, pd: PagerDutyStandIn, escalate: str) -> Path:
    path = tmp_path / "daemon.yaml"
    path.write_text(CONFIG.replace("API_URL", api.url).replace("PD_URL", pd.url)
                    .replace("ESCALATE", escalate))
    return path


def incident(daemon: RunningDaemon, api: SlackApiStandIn, lab: LabDatabase, faults: Faults,
             am: Any) -> tuple[dict[str, Any], list[int], SlackMessage]:
    """The pool filled, Alertmanager firing, the run waiting: its INCIDENT ALERT."""
    pids = faults.idle_in_transaction(20)
    wait_idle_in_transaction(lab, pids, seconds=1)
    am.fire({"alertname": "PostgresPoolExhausted", "instance": "lab-db"},
            {"summary": "journey-api: too many connections"})
    [run] = daemon.wait_run(lambda runs: bool(runs) and runs[0]["status"] ==
                            "awaiting_approval", timeout=60)
    buttons = f"runbook:{run['run_id']}:{REMEDY}"

    def posted() -> SlackMessage | None:
        return next((m for m in api.messages if any(b.get("block_id") == buttons
                                                    for b in m.blocks)), None)
    alert = wait_for(posted, "the INCIDENT ALERT with its buttons", timeout=30)
    assert alert is not None
    return run, pids, alert


def click(api: SlackApiStandIn, daemon: RunningDaemon, message: SlackMessage, user: str,
          **override: Any) -> int:
    button = next(e for b in message.blocks if b["type"] == "actions"
                  for e in b["elements"] if e["action_id"] == APPROVE)
    status, _ = api.click(daemon.url + "/v1/slack/interactions", override.pop("secret", SECRET),
                          message, APPROVE, button["value"], user_id=user, **override)
    return status


def ephemeral(api: SlackApiStandIn, message: SlackMessage) -> list[str]:
    return [c["body"]["text"] for c in api.calls
            if c["method"] == message.ts and c["body"].get("response_type") == "ephemeral"]


def test_two_people_approve_a_lab_fix_from_slack_and_impostors_do_not(
        lab: LabDatabase, faults: Faults, tmp_path: Path, runbook_home: Path,
        peers: tuple[SlackApiStandIn, PagerDutyStandIn]) -> None:
    from runner.registry import default_registry

    api, pd = peers
    with daemon_in_thread(config(tmp_path, api, pd, "1h"), runbook_home, INTAKE,
                          registry=default_registry()) as daemon, \
            alertmanager(tmp_path, daemon_url=daemon.url, token=INTAKE) as am:
        run, pids, alert = incident(daemon, api, lab, faults, am)
        assert alert.text.startswith("INCIDENT ALERT") and alert.channel == "C0INCIDENTS"
        proposal = json.dumps(alert.blocks)
        assert "postgres.terminate_backends" in proposal and "lab-db" in proposal
        [remedy] = [r for r in run["remedies"] if r["id"] == REMEDY]
        assert remedy["fingerprint"][:16] in proposal

        # forged, stale, unmapped: refused, nothing recorded, nothing ends
        assert click(api, daemon, alert, ALICE, secret="a-guessed-secret") == 401
        assert click(api, daemon, alert, ALICE, timestamp=int(time.time()) - 301) == 401
        assert click(api, daemon, alert, MALLORY) == 200
        wait_for(lambda: ephemeral(api, alert), "mallory to be told")
        assert "not an approver" in ephemeral(api, alert)[0]
        journal = daemon.daemon.journal
        assert journal.approvals(run["run_id"], REMEDY) == []
        assert alive(lab, pids) == set(pids)

        # four-eyes: alice alone does not run it; bob's approval does
        assert click(api, daemon, alert, ALICE, user_name="alice") == 200
        api.wait_for(lambda _: alert.updates == 1)
        assert "four-eyes" in json.dumps(alert.blocks)
        wait_for(lambda: any(e.type == "run.finished" and e.seq > max(
            a.seq for a in journal.events(run["run_id"]) if a.type == "approval")
            for e in journal.events(run["run_id"])), "the resume after alice", timeout=60)
        assert alive(lab, pids) == set(pids)
        assert click(api, daemon, alert, BOB, user_name="bob") == 200
        [done] = daemon.wait_run(lambda runs: runs[0]["status"] not in
                                 {"awaiting_approval", "running"}, timeout=60)
        assert done["status"] == "completed", done
        assert alive(lab, pids) == set()
        assert [(a.by, a.decision) for a in journal.approvals(run["run_id"], REMEDY)] == [
            ("alice", "approved"), ("bob", "approved")]
        api.wait_for(lambda _: alert.updates == 2)
        assert "Approved* by bob" in json.dumps(alert.blocks)
        assert pd.events == []  # approved within its deadline: nobody paged


def test_an_unapproved_lab_proposal_escalates_to_oncall_and_pagerduty(
        lab: LabDatabase, faults: Faults, tmp_path: Path, runbook_home: Path,
        peers: tuple[SlackApiStandIn, PagerDutyStandIn]) -> None:
    from runner.registry import default_registry

    api, pd = peers
    with daemon_in_thread(config(tmp_path, api, pd, "1s"), runbook_home, INTAKE,
                          registry=default_registry()) as daemon, \
            alertmanager(tmp_path, daemon_url=daemon.url, token=INTAKE) as am:
        run, pids, alert = incident(daemon, api, lab, faults, am)
        pd.wait_for(lambda events: len(events) == 1, timeout=30)
        [page] = pd.events
        assert page["event_action"] == "trigger" and page["routing_key"] == ROUTING_KEY
        assert page["payload"]["source"] == "lab-db"
        assert REMEDY in page["payload"]["summary"]
        [oncall] = [m for m in api.messages if m.channel == "C0ONCALL00"]
        assert oncall.text.startswith("ESCALATION [")
        assert any(b["type"] == "actions" for b in oncall.blocks)  # approvable from there

        def steps() -> list[dict[str, Any]]:
            return [e.data for e in daemon.daemon.journal.events(run["run_id"])
                    if e.type == "escalation"]
        wait_for(lambda: len(steps()) == 2, "both levels journaled")
        assert [(s["level"], s["target"]["kind"], s["delivered"]) for s in steps()] == [
            (1, "slack", True), (2, "pagerduty", True)]
        assert alert.updates == 0  # nobody decided
        assert daemon.daemon.escalator.tick(time.time() + 3600) == []  # never twice
        assert alive(lab, pids) == set(pids)  # escalation changes nothing in the lab
