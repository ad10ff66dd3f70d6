"""The daemon's watch window: a run under watch holds no worker, survives kill -9 of the
daemon (the watch lives in the journal), resolves at the window's end, and a relapse
inside the window reopens the incident as a new run of the same alert group."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.journal import Journal
from tests.daemonkit import DaemonProcess, write_world
from tests.support.polling import wait_for

TOKEN = "watch-intake-token"

WATCHED = """
name: watched-incident
summary: fixed by a remedy, then watched
targets:
  box: {kind: mem}
params:
  watch_for: {type: duration, default: 15m}
steps:
  - {id: look, run: mem.sleep, with: {value: 1}}
findings:
  - {id: seen, when: steps.look.ok, say: seen}
remedies:
  - {id: fix, run: mem.act, with: {items: [1]}}
verify:
  - {id: up, run: mem.exists, with: {file: up}, for: "{{ params.watch_for }}", interval: 200ms}
"""

CONFIG = """
auth: {{mode: bearer, token_env: WATCH_TOKEN}}
max_concurrent_runs: 1
approvers:
  carol: {{token_env: WATCH_CAROL}}
routes:
  - name: watched
    match: ['alertname="Watched"']
    playbook: watched-incident
    targets: {{box: box}}
    params: {{watch_for: WINDOW}}
    group_by: [group]
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""


def daemon_with(tmp_path: Path, home: Path, window: str) -> DaemonProcess:
    config = write_world(tmp_path, CONFIG.replace("WINDOW", window))
    (tmp_path / "playbooks" / "watched-incident.yaml").write_text(WATCHED)
    (tmp_path / "box" / "up").write_text("")
    process = DaemonProcess(config, home, TOKEN, {
        "WATCH_TOKEN": TOKEN, "WATCH_CAROL": "carol-token",
        "RUNBOOK_WATCH_INLINE": "0"})  # every window is watched by schedule
    process.start()
    return process


@pytest.fixture
def stop() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for process in started:
        process.stop()


def fixed_and_monitoring(daemon: DaemonProcess) -> str:
    """An alert, its run, the remedy approved: the run ends up under watch."""
    assert daemon.post("/v1/alerts", {"labels": {"alertname": "Watched", "group": "g"}}
                       ).status_code == 202
    wait_for(lambda: [r["status"] for r in daemon.runs()] == ["awaiting_approval"],
             "the proposal")
    run_id = str(daemon.runs()[0]["run_id"])
    assert daemon.post(f"/v1/runs/{run_id}/approvals", {"remedy": "fix"},
                       token="carol-token").status_code == 202
    wait_for(lambda: daemon.runs()[0]["status"] == "monitoring", "the watch to start")
    return run_id


def test_a_watch_survives_kill_9_and_resolves_the_run_at_its_end(
        tmp_path: Path, runbook_home: Path, stop: list[DaemonProcess]) -> None:
    daemon = daemon_with(tmp_path, runbook_home, "5s")
    stop.append(daemon)
    run_id = fixed_and_monitoring(daemon)
    daemon.kill9()  # mid-window
    with Journal(runbook_home) as journal:
        assert journal.get_run(run_id).status == "monitoring"  # nothing was holding it
    daemon.start()
    wait_for(lambda: daemon.runs()[0]["status"] == "completed", "the watch to end", timeout=60)
    [run] = daemon.runs()
    assert run["verify"] == [run["verify"][0]] and run["verify"][0]["status"] == "passed"
    with Journal(runbook_home) as journal:
        types = [e.type for e in journal.events(run_id)]
    assert types.index("watch.started") < types.index("verify.finished")
    assert types.count("remedy.started") == 1  # the watch never re-ran the remedy


def test_a_relapse_inside_the_window_reopens_the_incident(
        tmp_path: Path, runbook_home: Path, stop: list[DaemonProcess]) -> None:
    daemon = daemon_with(tmp_path, runbook_home, "10m")
    stop.append(daemon)
    run_id = fixed_and_monitoring(daemon)
    (tmp_path / "box" / "up").unlink()  # the fix did not hold
    wait_for(lambda: any(r["run_id"] == run_id and r["status"] == "failed"
                         for r in daemon.runs()), "the relapse")
    wait_for(lambda: len(daemon.runs()) == 2, "the incident to reopen as a new run")
    with Journal(runbook_home) as journal:
        types = [e.type for e in journal.events(run_id)]
        groups = journal.read("SELECT DISTINCT group_key FROM work WHERE kind='run'")
    assert "watch.relapsed" in types
    assert len(groups) == 1  # one alert group: one incident, not an unrelated run
