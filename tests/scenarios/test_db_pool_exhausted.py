"""db-pool-exhausted against a real PostgreSQL whose pool is filled by idle transactions."""

from __future__ import annotations

import pytest

from tests.lab.faults import Faults, LabDatabase
from tests.scenarios.conftest import CLI
from tests.scenarios.helpers import alive, findings, remedy, wait_idle_in_transaction

pytestmark = pytest.mark.lab

RUN = ("run", "db-pool-exhausted", "--target", "db=lab-db", "--param", "idle_after=1s",
       "--no-input")


def exhaust(faults: Faults) -> list[int]:
    pids = faults.idle_in_transaction(20)  # 20 of the 22 slots non-superusers may use
    wait_idle_in_transaction(faults.db, pids, seconds=1)  # as long as idle_after
    return pids


def test_diagnoses_the_pool_and_proposes_without_touching_anything(
        cli: CLI, lab: LabDatabase, faults: Faults) -> None:
    pids = exhaust(faults)
    code, report = cli.json(*RUN)
    assert code == 1
    assert report["status"] == "awaiting_approval"
    assert {"pool-saturated", "idle-transactions-hold-connections",
            "one-client-dominates"} <= findings(report)
    usage = next(s for s in report["steps"] if s["id"] == "usage")["result"]
    assert usage["used"] >= 20 and usage["max"] == 22
    proposed = remedy(report, "end-idle-transactions")
    assert proposed["status"] == "proposed"
    assert {b["pid"] for b in proposed["args"]["backends"]} == set(pids)
    assert alive(lab, pids) == set(pids)  # proposed only: nothing was terminated


def test_approve_and_resume_ends_the_leak_and_verify_passes(
        cli: CLI, lab: LabDatabase, faults: Faults) -> None:
    pids = exhaust(faults)
    _, report = cli.json(*RUN)
    run_id = report["run_id"]
    code, out = cli("approve", run_id, "end-idle-transactions", "--as", "alice")
    assert code == 0 and "approved" in out
    assert alive(lab, pids) == set(pids)  # approval alone runs nothing

    code, report = cli.json("resume", run_id, "--no-input")
    done = remedy(report, "end-idle-transactions")
    assert done["status"] == "succeeded"
    assert done["approved_by"] == "alice"
    assert sorted(done["result"]["terminated"]) == sorted(pids)
    assert alive(lab, pids) == set()
    assert {v["id"]: v["status"] for v in report["verify"]} == {
        "idle_cleared": "passed", "pool_has_room": "passed"}
    assert report["status"] == "completed"


def test_approve_on_the_command_line_runs_in_one_go(
        cli: CLI, lab: LabDatabase, faults: Faults) -> None:
    pids = exhaust(faults)
    _code, report = cli.json(*RUN,
                             "--approve", "end-idle-transactions=postgres.terminate_backends",
                             "--as", "bob")
    assert remedy(report, "end-idle-transactions")["approved_by"] == "bob"
    assert alive(lab, pids) == set()
    assert report["status"] == "completed"


def test_blast_radius_superusers_are_never_touched_and_max_holds(
        cli: CLI, lab: LabDatabase, faults: Faults) -> None:
    # The superuser's session goes idle first, so it heads the list the remedy gets.
    [admin] = faults.idle_in_transaction(1, dsn=lab.admin, application="psql")
    app = faults.idle_in_transaction(6)
    wait_idle_in_transaction(lab, [admin, *app], seconds=1)
    _, report = cli.json(*RUN, "--param", "max_terminate=4", "--approve",
                         "end-idle-transactions=postgres.terminate_backends")
    result = remedy(report, "end-idle-transactions")["result"]
    assert len(result["terminated"]) == 4
    assert admin in alive(lab, [admin])
    reasons = {s["pid"]: s["reason"] for s in result["skipped"]}
    assert "superuser" in reasons[admin]
    assert sum("over the max" in r for r in reasons.values()) == 2
    assert len(alive(lab, app)) == 2
    assert report["status"] == "failed"  # verify: idle transactions remain, and it says so
