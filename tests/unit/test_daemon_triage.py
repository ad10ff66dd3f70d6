"""The fallback route: an alert no route takes runs the triage playbook of the inventory
target it names; it can name no other target, start no remedy, and a triage playbook with
remedies stops the daemon from starting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.daemon.config import load
from runner.daemon.preflight import problems
from tests.daemonkit import RunningDaemon, daemon_in_thread, write_world
from tests.enginekit import mem_registry

TRIAGE = """
name: mem-triage
summary: look at a box, change nothing
targets:
  box: {kind: mem}
steps:
  - {id: look, run: mem.sleep, with: {value: 1}}
findings:
  - {id: seen, when: steps.look.value == 1, say: the box answered}
"""

CONFIG = """
auth: {{mode: bearer, token_env: TRIAGE_TOKEN}}
routes:
  - name: only-this
    match: ['alertname="Routed"']
    playbook: mem-incident
    targets: {{box: box}}
triage:
  target_labels: [service, instance]
  playbooks: {{mem: mem-triage}}
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           runbook_home: Path) -> Iterator[RunningDaemon]:
    monkeypatch.setenv("TRIAGE_TOKEN", "triage-tok")
    config = write_world(tmp_path, CONFIG)
    (tmp_path / "playbooks" / "mem-triage.yaml").write_text(TRIAGE)
    with daemon_in_thread(config, runbook_home, "triage-tok") as running:
        yield running


def test_an_alert_no_route_takes_triages_the_target_it_names(daemon: RunningDaemon) -> None:
    assert daemon.post("/v1/alerts", {"labels": {"alertname": "DiskOdd", "instance": "box"}}
                       ).status_code == 202
    [run] = daemon.wait_run(lambda runs: len(runs) == 1 and runs[0]["status"] != "running")
    assert run["playbook"] == "mem-triage" and run["targets"]["box"]["name"] == "box"
    assert run["status"] == "completed" and run["remedies"] == []


def test_an_alert_naming_no_inventory_target_stays_unrouted(daemon: RunningDaemon) -> None:
    for labels in ({"alertname": "X", "instance": "elsewhere"}, {"alertname": "X"},
                   {"alertname": "X", "instance": "{{ 7 * 7 }}"}):
        assert daemon.post("/v1/alerts", {"labels": labels}).status_code == 202
    daemon.daemon.dispatch_once()
    outcomes = daemon.daemon.journal.read("SELECT outcome FROM alerts")
    assert [o for (o,) in outcomes] == ["unrouted"] * 3
    assert daemon.get("/v1/runs").json()["runs"] == []


def test_a_triage_playbook_with_remedies_is_refused_before_the_daemon_starts(
        tmp_path: Path) -> None:
    config = write_world(tmp_path, CONFIG.replace("mem: mem-triage", "mem: mem-incident"))
    found, _ = problems(config, load(config), mem_registry())
    assert any("has remedies" in p.message and p.line > 1 for p in found), found
