"""Looking at the lab database from the outside, as the admin."""

from __future__ import annotations

from typing import Any

import psycopg

from tests.lab.faults import LabDatabase


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


def findings(report: dict[str, Any]) -> set[str]:
    return {f["id"] for f in report["findings"] if f["status"] == "fired"}


def remedy(report: dict[str, Any], remedy_id: str) -> dict[str, Any]:
    return next(r for r in report["remedies"] if r["id"] == remedy_id)
