"""Running an approved remedy: at most once whoever resumes the run, under its target's
lock, and never abandoned at its deadline. Real `runbook` processes race each other; the
`mem` backend's action counts its executions in a file."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner import report
from runner.journal import Journal, new_run_id, this_process
from runner.state import COMPLETED, FAILED, RunState
from tests.enginekit import Kit
from tests.support.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]

RACE = """
name: race
summary: one approved remedy that counts its executions
targets:
  box: {kind: mem}
steps:
  - {id: a, run: mem.sleep, with: {value: [1]}}
remedies:
  - {id: fix, run: mem.act, with: {items: "{{ steps.a.value }}"}}
"""

# A remedy with its own deadline, far below its kind's (mem.act: 120 s).
SLOW = """
steps:
  - {id: a, run: mem.sleep, with: {value: [1]}}
remedies:
  - id: fix
    run: mem.act
    timeout: 300ms
    with: {items: [1], wait_for: release-act, undo_on_interrupt: %s}
"""


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    return Kit(tmp_path)


class Workers:
    """Warm `runbook` processes (tests.support.cliworker), released together."""

    def __init__(self, count: int, env: dict[str, str]) -> None:
        self.procs = [subprocess.Popen([sys.executable, "-m", "tests.support.cliworker"],
                                       cwd=ROOT, env=env, text=True, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE) for _ in range(count)]
        for proc in self.procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def send(self, proc: subprocess.Popen[str], argv: list[str]) -> None:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(argv) + "\n")
        proc.stdin.flush()

    def answer(self, proc: subprocess.Popen[str]) -> dict[str, Any]:
        assert proc.stdout is not None
        return dict(json.loads(proc.stdout.readline()))

    def one(self, argv: list[str]) -> dict[str, Any]:
        self.send(self.procs[0], argv)
        return self.answer(self.procs[0])

    def all_at_once(self, argv: list[str]) -> list[dict[str, Any]]:
        for proc in self.procs:  # each is blocked reading its next line: this releases them
            self.send(proc, argv)
        return [self.answer(proc) for proc in self.procs]

    def close(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.close()
            proc.wait(timeout=30)
            proc.stdout.close()


@pytest.fixture
def workers(tmp_path: Path, runbook_home: Path) -> Iterator[Workers]:
    box = tmp_path / "box"
    (tmp_path / "pb").mkdir()
    (tmp_path / "pb" / "race.yaml").write_text(RACE)
    (tmp_path / "inv.yaml").write_text(f"targets:\n  box: {{kind: mem, path: {box}}}\n")
    env = {**os.environ, "RUNBOOK_PLAYBOOKS": str(tmp_path / "pb"),
           "RUNBOOK_INVENTORY": str(tmp_path / "inv.yaml"),
           "RUNBOOK_BACKENDS": "tests.support.membackend:register"}
    pool = Workers(4, env)
    try:
        yield pool
    finally:
        pool.close()


def executions(box: Path) -> int:
    log = box / "actions.jsonl"
    return log.read_text().count('"start"') if log.exists() else 0


def test_resumes_released_together_run_an_approved_remedy_exactly_once(
        workers: Workers, tmp_path: Path) -> None:
    box = tmp_path / "box"
    trials = 20
    refused = 0
    for trial in range(trials):
        started = workers.one(["run", "race", "--no-input", "--format", "json"])
        assert started["stdout"].startswith("{"), started  # what the CLI said, if it failed
        run_id = json.loads(started["stdout"])["run_id"]
        approved = workers.one(["approve", run_id, "fix", "--as", "alice"])
        assert approved["code"] == 0, approved["stderr"]
        answers = workers.all_at_once(["resume", run_id, "--no-input", "--format", "json"])
        assert executions(box) == trial + 1, f"trial {trial}: {answers}"
        finished = [json.loads(a["stdout"]) for a in answers if a["code"] == 0]
        assert finished and all(r["remedies"][0]["status"] == "succeeded" for r in finished)
        losers = [a for a in answers if a["code"] != 0]
        assert all("being driven by another process" in a["stderr"] for a in losers), losers
        refused += len(losers)
    # The race was real: resumes did collide on the claim (not one after another).
    assert refused > 0


# A remedy past its deadline


def run_in_thread(kit: Kit, body: str,
                  grace: float = 60.0) -> tuple[threading.Thread, list[RunState]]:
    engine = kit.engine(approve=frozenset({"fix=mem.act"}))
    engine.remedy_grace = grace
    plan = kit.plan(body)
    states: list[RunState] = []
    thread = threading.Thread(target=lambda: states.append(engine.start(
        plan, new_run_id(), trigger="test", requested_by="tester")))
    thread.start()
    return thread, states


def event_data(kit: Kit, type_: str) -> list[dict[str, Any]]:
    return [e.data for run in kit.journal.runs() for e in kit.journal.events(run.id)
            if e.type == type_]


def test_a_remedy_past_its_own_deadline_is_outcome_unknown_and_keeps_its_lock(
        kit: Kit) -> None:
    thread, states = run_in_thread(kit, SLOW % "false")
    # The remedy's own 300 ms deadline, not its kind's 120 s.
    wait_for(lambda: event_data(kit, "remedy.finished"), "the remedy's deadline")
    [finished] = event_data(kit, "remedy.finished")
    assert finished["status"] == "outcome_unknown"
    assert "0.3s" in finished["error"]
    # The action still runs: its target stays locked and the run waits for it.
    [run] = kit.journal.runs()
    assert kit.journal.target_lock("box") == (run.id, this_process())
    assert thread.is_alive()
    wait_for(kit.actions, "the action to start")  # on a busy machine it may start late
    assert [a["phase"] for a in kit.actions()] == ["start"]

    (kit.box / "release-act").touch()
    thread.join(timeout=30)
    assert not thread.is_alive()
    # It waited for the action's end, and the action's thread released the lock.
    assert [a["phase"] for a in kit.actions()] == ["start", "end"]
    assert kit.journal.target_lock("box") is None
    [state] = states
    remedy = state.remedies["fix"]
    assert remedy.status == "outcome_unknown"
    assert remedy.result == {"done": 1}
    assert "ended after its deadline and succeeded" in (remedy.reason or "")
    assert state.status == FAILED
    assert "outcome_unknown" in report.text(state)
    assert json.loads(report.as_json(state))["remedies"][0]["status"] == "outcome_unknown"


def test_a_remedy_asked_to_stop_at_its_deadline_can_undo_its_work(kit: Kit) -> None:
    thread, states = run_in_thread(kit, SLOW % "true")
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert [a["phase"] for a in kit.actions()] == ["start", "undone"]
    [state] = states
    assert state.remedies["fix"].status == "outcome_unknown"
    assert state.remedies["fix"].result == {"done": 0, "undone": True}
    assert kit.journal.target_lock("box") is None


def test_past_the_grace_period_it_says_so_and_the_lock_waits_for_the_action(
        kit: Kit, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="runbook.remedies"):
        thread, states = run_in_thread(kit, SLOW % "false", grace=0.2)
        thread.join(timeout=30)
    assert not thread.is_alive()
    [state] = states
    assert "still running" in (state.remedies["fix"].reason or "")
    assert any("stops waiting" in r.getMessage() for r in caplog.records)
    # Still running in this process: the lock is held until it ends, then released.
    assert kit.journal.target_lock("box") == (state.run_id, this_process())
    (kit.box / "release-act").touch()
    wait_for(lambda: kit.journal.target_lock("box") is None, "the action to end")
    assert [a["phase"] for a in kit.actions()] == ["start", "end"]


def test_a_remedy_whose_outcome_is_unknown_is_never_run_again(kit: Kit) -> None:
    body = SLOW % "true"  # it undoes its work when asked to stop at its deadline
    state = kit.run(body, approve=frozenset({"fix=mem.act"}))
    assert state.remedies["fix"].status == "outcome_unknown"
    resumed = kit.engine(approve=frozenset({"fix=mem.act"})).resume(
        kit.plan(body), state.run_id, by="tester")
    assert resumed.status == FAILED
    assert resumed.remedies["fix"].status == "outcome_unknown"
    assert [a["phase"] for a in kit.actions()].count("start") == 1


def test_a_finished_remedy_releases_its_lock_for_the_next_run(kit: Kit) -> None:
    body = RACE.split("targets:")[1].split("\n", 2)[2]  # steps and remedies
    first = kit.run(body, approve=frozenset({"fix=mem.act"}))
    assert first.status == COMPLETED
    assert kit.journal.target_lock("box") is None
    second = kit.run(body, approve=frozenset({"fix=mem.act"}))
    assert second.status == COMPLETED
    assert second.remedies["fix"].status == "succeeded"
    assert [a["phase"] for a in kit.actions()] == ["start", "end", "start", "end"]


def test_ctrl_c_during_a_remedy_waits_for_it_to_end_and_journals_it(
        tmp_path: Path, runbook_home: Path) -> None:
    box = tmp_path / "box"
    (tmp_path / "pb").mkdir()
    (tmp_path / "pb" / "race.yaml").write_text(RACE.replace(
        '{items: "{{ steps.a.value }}"}', "{items: [1], wait_for: release-act}"))
    (tmp_path / "inv.yaml").write_text(f"targets:\n  box: {{kind: mem, path: {box}}}\n")
    env = {**os.environ, "RUNBOOK_PLAYBOOKS": str(tmp_path / "pb"),
           "RUNBOOK_INVENTORY": str(tmp_path / "inv.yaml"),
           "RUNBOOK_BACKENDS": "tests.support.membackend:register"}
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", "race", "--no-input",
                             "--approve", "fix=mem.act"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    try:
        wait_for(lambda: executions(box) == 1, "the remedy to start")
        proc.send_signal(signal.SIGINT)
        while "waiting for it to end" not in (line := proc.stderr.readline()):
            assert line, "runbook ended without saying it waits for the remedy"
        assert proc.poll() is None  # it said it waits, and the action is still running
        (box / "release-act").touch()
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    lines = (box / "actions.jsonl").read_text().splitlines()
    assert [json.loads(line)["phase"] for line in lines] == ["start", "end"]
    with Journal(runbook_home) as journal:
        [run] = journal.runs()
        state = journal.state(run.id)
        assert journal.target_lock("box") is None
    assert state.remedies["fix"].status == "succeeded"
    assert state.status == FAILED
