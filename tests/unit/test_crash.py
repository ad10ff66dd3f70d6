"""A run killed mid-way (kill -9) is marked interrupted, resumes, and never repeats a
mutating step by itself. Real `runbook` processes, really killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runner.journal import Journal
from tests.support.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]

PLAYBOOK = """
name: crashy
summary: waits on files so a test can kill it at a chosen moment
targets:
  box: {kind: mem}
steps:
  - {id: gate_file, run: mem.wait_for, with: {file: release-step, value: [1, 2]}}
remedies:
  - {id: fix, run: mem.act, with: {items: "{{ steps.gate_file.value }}", wait_for: release-act}}
"""


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    box = tmp_path / "box"
    box.mkdir()
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "crashy.yaml").write_text(PLAYBOOK)
    (tmp_path / "inventory.yaml").write_text(f"targets:\n  box: {{kind: mem, path: {box}}}\n")
    monkeypatch.setenv("RUNBOOK_PLAYBOOKS", str(tmp_path / "playbooks"))
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(tmp_path / "inventory.yaml"))
    monkeypatch.setenv("RUNBOOK_BACKENDS", "tests.support.membackend:register")
    return box


def runbook(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=os.environ.copy())


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                            env=os.environ.copy())


def only_run(home: Path) -> str:
    with Journal(home) as journal:
        [row] = journal.runs()
    return row.id


def event_types(home: Path, run_id: str) -> list[str]:
    with Journal(home) as journal:
        return [e.type for e in journal.events(run_id)]


def started(home: Path) -> bool:
    if not (home / "journal.sqlite3").exists():
        return False
    with Journal(home) as journal:
        return any("step.started" in event_types(home, r.id) for r in journal.runs())


def test_killed_during_diagnosis_it_shows_interrupted_and_resumes(
        world: Path, runbook_home: Path) -> None:
    proc = start("run", "crashy", "--no-input")
    wait_for(lambda: started(runbook_home), "the step to start")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_id = only_run(runbook_home)
    history = runbook("history")
    assert f"{run_id}" in history.stdout and "interrupted" in history.stdout

    (world / "release-step").touch()
    resumed = runbook("resume", run_id, "--no-input", "--format", "json")
    report = json.loads(resumed.stdout)
    assert report["status"] == "awaiting_approval"
    assert report["steps"][0]["status"] == "ok"
    assert report["remedies"][0]["status"] == "proposed"


def test_killed_during_a_remedy_it_is_never_run_again_by_itself(
        world: Path, runbook_home: Path) -> None:
    (world / "release-step").touch()
    proc = start("run", "crashy", "--approve", "fix=mem.act", "--as", "alice", "--no-input")
    actions = world / "actions.jsonl"
    wait_for(actions.exists, "the remedy to start")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_id = only_run(runbook_home)

    (world / "release-act").touch()
    resumed = runbook("resume", run_id, "--no-input", "--format", "json")
    report = json.loads(resumed.stdout)
    assert report["remedies"][0]["status"] == "interrupted"
    assert "not run again" in report["remedies"][0]["reason"]
    assert report["status"] == "failed"
    assert actions.read_text().count('"start"') == 1  # exactly the one killed attempt
    assert "remedy.interrupted" in event_types(runbook_home, run_id)
