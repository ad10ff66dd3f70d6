"""db-slow-or-blocked-queries against real lock pile-ups and runaway queries."""

from __future__ import annotations

import pytest

from tests.lab.faults import Faults, LabDatabase
from tests.scenarios.conftest import CLI
from tests.scenarios.helpers import activity, alive, findings, remedy, wait_active

pytestmark = pytest.mark.lab

RUN = ("run", "db-slow-or-blocked-queries", "--target", "db=lab-db", "--no-input")


def test_a_lock_pileup_is_traced_to_its_idle_root_blocker_and_cleared(
        cli: CLI, lab: LabDatabase, faults: Faults) -> None:
    blocker, waiters = faults.lock_pileup(waiters=3)
    code, report = cli.json(*RUN)
    assert code == 1
    assert {"lock-pileup", "idle-blocker"} <= findings(report)
    blocked = next(s for s in report["steps"] if s["id"] == "blocked")["result"]
    assert blocked["root_pids"] == [blocker]
    assert sorted(blocked["root_blockers"][0]["waiters"]) == sorted(waiters)
    proposed = remedy(report, "end-idle-blockers")
    assert [b["pid"] for b in proposed["args"]["backends"]] == [blocker]
    # waiting sessions are victims: nothing proposes to cancel them
    assert remedy(report, "cancel-long-queries")["status"] == "not_needed"

    code, report = cli.json("resume", report["run_id"],
                            "--approve", "end-idle-blockers=postgres.terminate_backends",
                            "--no-input")
    assert remedy(report, "end-idle-blockers")["result"]["terminated"] == [blocker]
    assert alive(lab, [blocker]) == set()
    assert all(activity(lab, pid)["wait_event_type"] != "Lock" for pid in waiters)
    assert {v["id"]: v["status"] for v in report["verify"]}["no_lock_waits"] == "passed"


def test_a_runaway_query_is_found_and_cancelled_not_killed(
        cli: CLI, lab: LabDatabase, faults: Faults) -> None:
    pid = faults.long_query(600)
    wait_active(lab, [pid], seconds=1)  # long-running, with long_after=1s
    _code, report = cli.json(*RUN, "--param", "long_after=1s", "--approve",
                            "cancel-long-queries=postgres.cancel_backends")
    assert "long-running-queries" in findings(report)
    done = remedy(report, "cancel-long-queries")
    assert done["result"]["cancelled"] == [pid]
    assert alive(lab, [pid]) == {pid}  # the session survives; its query was cancelled
    assert activity(lab, pid)["state"] != "active"
    assert report["status"] == "completed"


def test_slowest_statements_say_when_pg_stat_statements_is_missing(
        cli: CLI, lab: LabDatabase) -> None:
    import psycopg

    with psycopg.connect(lab.admin, autocommit=True) as conn:
        conn.execute("DROP EXTENSION IF EXISTS pg_stat_statements")
    _, report = cli.json(*RUN)
    slowest = next(s for s in report["steps"] if s["id"] == "slowest")["result"]
    assert slowest["available"] is False
    assert "CREATE EXTENSION pg_stat_statements" in slowest["note"]

    with psycopg.connect(lab.admin, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
        conn.execute("SELECT count(*) FROM pg_class, pg_attribute")
    _, report = cli.json(*RUN)
    slowest = next(s for s in report["steps"] if s["id"] == "slowest")["result"]
    assert slowest["available"] is True
    assert slowest["statements"] and "mean_ms" in slowest["statements"][0]
