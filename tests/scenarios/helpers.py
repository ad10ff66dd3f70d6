"""Looking at the lab database from the outside, as the admin."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.lab.faults import LabDatabase
from tests.support.polling import wait_for

# The shipped playbooks watch a fix for 15 minutes; a test watches for seconds.
SHORT_WATCH = ("--param", "watch_for=3s")


def alive(db: LabDatabase, pids: list[int]) -> set[int]:
    with psycopg.connect(db.admin, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)",
                            (pids,)).fetchall()
    return {row[0] for row in rows}


def activity(db: LabDatabase, pid: int) -> dict[str, Any] | None:
    with psycopg.connect(db.admin, autocommit=True) as conn:
        cur = conn.execute("SELECT state, wait_event_type, query FROM pg_stat_activity "
                           "WHERE pid = %s", (pid,))
        row = cur.fetchone()
    return dict(zip(["state", "wait_event_type", "query"], row, strict=True)) if row else None


def idle_in_transaction_of(db: LabDatabase, user: str, at_least: int) -> list[int]:
    """The pids of `user`'s sessions idle inside a transaction, if there are `at_least`."""
    with psycopg.connect(db.admin, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE usename = %s "
                            "AND state = 'idle in transaction'", (user,)).fetchall()
    return [row[0] for row in rows] if len(rows) >= at_least else []


def wait_idle_in_transaction(db: LabDatabase, pids: list[int], seconds: float) -> None:
    """Until PostgreSQL itself reports every one of `pids` idle inside a transaction for at
    least `seconds` (what an `older_than`/`idle_after` check reads), by its own clock."""
    _wait_state(db, pids, "idle in transaction", "state_change", seconds)


def wait_active(db: LabDatabase, pids: list[int], seconds: float) -> None:
    """Until PostgreSQL reports each of `pids` running its query for at least `seconds`."""
    _wait_state(db, pids, "active", "query_start", seconds)


def _wait_state(db: LabDatabase, pids: list[int], state: str, since: str,
                seconds: float) -> None:
    assert since in {"state_change", "query_start"}
    with psycopg.connect(db.admin, autocommit=True) as conn:
        wait_for(lambda: conn.execute(
            f"SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s) AND state = %s "
            f"AND now() - {since} >= make_interval(secs => %s)",
            (pids, state, seconds)).fetchone() == (len(pids),),
            f"{len(pids)} session(s) {state} for {seconds:g} s", every=0.1)


def findings(report: dict[str, Any]) -> set[str]:
    return {f["id"] for f in report["findings"] if f["status"] == "fired"}


def remedy(report: dict[str, Any], remedy_id: str) -> dict[str, Any]:
    return next(r for r in report["remedies"] if r["id"] == remedy_id)
