"""`runbook approve/history/report --server URL`: the command line through a daemon's API,
against a real daemon on loopback. The daemon's one approval path decides (four-eyes, the
approver named by the token); the report reads as it does on the daemon's host."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from tests.daemonkit import RunningDaemon, daemon_in_thread, write_world

CONFIG = """
auth: {{mode: bearer, token_env: REMOTE_INTAKE}}
approvers:
  alice: {{token_env: REMOTE_ALICE}}
  bob: {{token_env: REMOTE_BOB}}
four_eyes: true
routes:
  - name: mem
    match: ['alertname="BoxTooHigh"']
    playbook: mem-incident
    targets: {{box: box}}
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           runbook_home: Path) -> Iterator[RunningDaemon]:
    for name, value in {"REMOTE_INTAKE": "intake-tok", "REMOTE_ALICE": "alice-tok",
                        "REMOTE_BOB": "bob-tok"}.items():
        monkeypatch.setenv(name, value)
    with daemon_in_thread(write_world(tmp_path, CONFIG), runbook_home, "intake-tok") as d:
        yield d


@pytest.fixture
def cli(daemon: RunningDaemon, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> Any:
    """`runbook ...` against the daemon, from a machine with an empty journal of its own."""
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "laptop"))
    monkeypatch.setenv("RUNBOOK_SERVER", daemon.url)

    def run(*argv: str, token: str = "alice-tok") -> tuple[int, str, str]:
        monkeypatch.setenv("RUNBOOK_TOKEN", token)
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


def awaiting(daemon: RunningDaemon) -> str:
    assert daemon.post("/v1/alerts", {"labels": {"alertname": "BoxTooHigh"}}).status_code == 202
    [run] = daemon.wait_run(lambda runs: len(runs) == 1
                            and runs[0]["status"] == "awaiting_approval")
    return str(run["run_id"])


def test_two_approvers_approve_from_their_laptops_and_the_daemon_runs_it(
        daemon: RunningDaemon, cli: Any) -> None:
    run_id = awaiting(daemon)
    code, out, _ = cli("approve", run_id, "fix")
    assert code == 0 and "approved: fix" in out and "by alice" in out
    settled(daemon)  # the resume her approval queued found four-eyes unmet
    code, _, err = cli("approve", run_id, "fix")  # the same person twice is one person
    assert code == 2 and "four-eyes" in err, err
    assert daemon.get(f"/v1/runs/{run_id}").json()["status"] == "awaiting_approval"
    assert cli("approve", run_id, "fix", token="bob-tok")[0] == 0
    [run] = daemon.wait_run(lambda runs: runs[0]["status"] == "completed")
    assert run["remedies"][0]["status"] == "succeeded"


def settled(daemon: RunningDaemon) -> None:
    """The daemon has no work queued or running."""
    from tests.support.polling import wait_for

    wait_for(lambda: daemon.daemon.journal.read(
        "SELECT count(*) FROM work WHERE status IN ('queued', 'running')")[0][0] == 0,
             "the daemon's work to settle")


def test_history_and_report_read_the_daemons_journal(daemon: RunningDaemon, cli: Any) -> None:
    run_id = awaiting(daemon)
    code, out, _ = cli("history", "-o", "json")
    [row] = json.loads(out)["runs"]
    assert code == 0 and row["id"] == run_id and row["status"] == "awaiting_approval"
    assert row["targets"] == {"box": "box"}
    code, remote_report, _ = cli("report", run_id, "-o", "json")
    assert code == 0
    assert json.loads(remote_report) == daemon.daemon.journal.state(run_id).to_json()
    code, text, _ = cli("report", run_id)
    assert code == 0 and run_id in text and "fix" in text


def test_refusals_say_why(daemon: RunningDaemon, cli: Any) -> None:
    run_id = awaiting(daemon)
    code, _, err = cli("approve", run_id, "fix", token="not-a-token")
    assert code == 2 and "401" in err
    code, _, err = cli("approve", run_id, "fix", "--as", "mallory")
    assert code == 2 and "--as does not apply" in err
    code, _, err = cli("report", "no-such-run")
    assert code != 0 and "no-such-run" in err
    code, _, err = cli("history", "--server", "ftp://x")
    assert code == 2 and "http://" in err
    # The events a remote report folds are a reader's: nobody else gets them.
    assert daemon.get(f"/v1/runs/{run_id}/events", token="").status_code == 401
    assert daemon.get(f"/v1/runs/{run_id}/events", token="not-a-token").status_code == 401
