"""Replay of real lab runs: db-pool-exhausted runs against the lab's PostgreSQL with its pool
filled by idle transactions; replaying the run (from its id and from its directory), with
nothing live touched, reproduces its findings and remedies exactly; an edited threshold
changes the outcome as expected; a fixture recorded from the run passes `runbook test`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.lab.faults import Faults, LabDatabase
from tests.scenarios.conftest import CLI
from tests.scenarios.helpers import alive, wait_idle_in_transaction

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
RUN = ("run", "db-pool-exhausted", "--target", "db=lab-db", "--param", "idle_after=1s",
       "--no-input")


def exhaust(faults: Faults) -> list[int]:
    pids = faults.idle_in_transaction(20)  # 20 of the 22 slots non-superusers may use
    wait_idle_in_transaction(faults.db, pids, seconds=1)
    return pids


def test_replay_of_a_lab_run_reproduces_it_exactly_and_touches_nothing(
        cli: CLI, lab: LabDatabase, faults: Faults, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    pids = exhaust(faults)
    code, report = cli.json(*RUN)
    assert code == 1 and report["status"] == "awaiting_approval"
    run_id = report["run_id"]
    # A replay needs nothing live: point the inventory's DSN at nothing
    monkeypatch.setenv("RUNBOOK_LAB_DSN", "postgresql://nobody@127.0.0.1:1/none")

    code, replayed = cli.json("replay", run_id)
    assert code == 0 and replayed["diff"] == []
    fired = {f["id"]: (f["severity"], f["message"]) for f in report["findings"]
             if f["status"] == "fired"}
    assert {"pool-saturated", "idle-transactions-hold-connections"} <= set(fired)
    assert {f["id"]: (f["severity"], f["message"]) for f in replayed["findings"]
            if f["status"] == "fired"} == fired
    proposed = {r["id"]: (r["kind"], r["target"], r["args"], r["fingerprint"])
                for r in report["remedies"] if r["status"] == "proposed"}
    assert "end-idle-transactions" in proposed
    assert {r["id"]: (r["kind"], r["target"], r["args"], r["fingerprint"])
            for r in replayed["remedies"] if r["status"] == "proposed"} == proposed
    assert replayed["severity"] == report["severity"]

    run_dir = Path(os.environ["RUNBOOK_HOME"]) / "runs" / run_id
    code, text = cli("replay", str(run_dir), "--format", "json")
    assert code == 0 and json.loads(text) == replayed

    # An edited playbook: idle transactions count as a leak from 50 sessions, not 1
    edited = tmp_path / "db-pool-exhausted.yaml"
    original = (ROOT / "playbooks" / "db-pool-exhausted.yaml").read_text()
    assert original.count("when: steps.idle_tx.count > 0") == 2  # the finding and the remedy
    edited.write_text(original.replace("when: steps.idle_tx.count > 0",
                                       "when: steps.idle_tx.count > 50"))
    code, changed = cli.json("replay", run_id, "--playbook", str(edited))
    assert code == 1
    assert [c.get("finding") or c.get("remedy") for c in changed["diff"]] == [
        "idle-transactions-hold-connections", "end-idle-transactions"]
    # ... and a threshold given as a param: saturation above 100 % never holds
    code, changed = cli.json("replay", run_id, "--param", "saturated_pct=101")
    assert code == 1
    assert [c.get("finding") for c in changed["diff"]] == ["pool-saturated"]

    fixture = tmp_path / "fixtures" / "pool.yaml"
    code, out = cli("record", run_id, "--to", str(fixture))
    assert code == 0, out
    code, out = cli("test", str(fixture))
    assert code == 0 and out.splitlines()[-1] == "1 passed, 0 failed"
    assert alive(lab, pids) == set(pids)  # proposed, replayed, recorded: nothing ended
