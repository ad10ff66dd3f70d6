"""kill -9 the daemon: no accepted alert is lost, interrupted runs carry on, and a remedy
that was running is never run again by itself. Real processes, really killed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.journal import Journal
from tests.daemonkit import DaemonProcess, write_world
from tests.support.polling import wait_for

Daemon = DaemonProcess
TOKEN = "crash-intake-token"

SLOW_PLAYBOOK = """
name: slow-incident
summary: diagnosis waits for a file, so a test can kill the daemon mid-run
targets:
  box: {kind: mem}
steps:
  - {id: wait, run: mem.wait_for, with: {file: release-step, value: 1}}
findings:
  - {id: seen, when: steps.wait.ok, say: seen}
remedies:
  - {id: fix, run: mem.act, with: {items: [1], wait_for: release-act}}
"""

CONFIG = """
auth: {{mode: bearer, token_env: CRASH_TOKEN}}
max_concurrent_runs: 1
approvers:
  carol: {{token_env: CRASH_CAROL}}
routes:
  - name: slow
    match: ['alertname="Slow"']
    playbook: slow-incident
    targets: {{box: box}}
    group_by: [group]
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""


@pytest.fixture
def daemon(tmp_path: Path, runbook_home: Path) -> Iterator[Daemon]:
    config = write_world(tmp_path, CONFIG)
    (tmp_path / "playbooks" / "slow-incident.yaml").write_text(SLOW_PLAYBOOK)
    running = Daemon(config, runbook_home, TOKEN, {"CRASH_TOKEN": TOKEN,
                                                   "CRASH_CAROL": "carol-token"})
    running.start()
    try:
        yield running
    finally:
        running.stop()


def alert(group: str) -> dict[str, object]:
    return {"labels": {"alertname": "Slow", "group": group}}


def test_after_kill_9_every_accepted_alert_is_processed(daemon: Daemon, tmp_path: Path) -> None:
    accepted = [daemon.post("/v1/alerts", alert(f"g{i % 3}")) for i in range(12)]
    assert all(a.status_code == 202 for a in accepted)
    wait_for(lambda: any(r["steps"] for r in daemon.runs()), "the first run's step")
    daemon.kill9()  # one run mid-diagnosis, two queued behind it

    daemon.start()
    (tmp_path / "box" / "release-step").touch()
    wait_for(lambda: len(daemon.runs()) == 3 and all(
        r["status"] == "awaiting_approval" for r in daemon.runs()), "three runs")
    with Journal(daemon.home) as journal:
        outcomes = journal.read("SELECT outcome, count(*) FROM alerts GROUP BY outcome")
        assert dict(outcomes) == {"started": 3, "joined": 9}
        first = min(daemon.runs(), key=lambda r: str(r["started_at"]))
        types = [e.type for e in journal.events(str(first["run_id"]))]
    assert "run.interrupted" in types and "run.resumed" in types


def test_a_remedy_killed_mid_way_is_never_run_again(daemon: Daemon, tmp_path: Path) -> None:
    (tmp_path / "box" / "release-step").touch()
    daemon.post("/v1/alerts", alert("only"))
    wait_for(lambda: bool(daemon.runs()) and daemon.runs()[0]["status"] == "awaiting_approval",
               "the proposal")
    run_id = daemon.runs()[0]["run_id"]
    assert daemon.post(f"/v1/runs/{run_id}/approvals", {"remedy": "fix"},
                       token="carol-token").status_code == 202
    actions = tmp_path / "box" / "actions.jsonl"
    wait_for(actions.exists, "the remedy to start")
    daemon.kill9()

    daemon.start()
    (tmp_path / "box" / "release-act").touch()
    wait_for(lambda: daemon.runs()[0]["status"] == "failed", "the run to settle")
    remedies = daemon.runs()[0]["remedies"]
    assert isinstance(remedies, list) and remedies[0]["status"] == "interrupted"
    # nothing else picks it up later either: every work item has ended, none is left waiting
    wait_for(lambda: open_work(daemon) == 0, "the work queue to drain")
    assert [json.loads(line)["phase"] for line in actions.read_text().splitlines()] == ["start"]


def open_work(daemon: Daemon) -> int:
    """Work items queued or running: 0 means the daemon has nothing left to do."""
    with Journal(daemon.home) as journal:
        return int(journal.read("SELECT count(*) FROM work WHERE status IN "
                                "('queued', 'running')")[0][0])
