"""Fault injectors: induce real incidents in the lab's PostgreSQL.

`prepare()` creates the roles a real deployment would have (an application role, a
read-only monitoring role for runbook's probes, an operations role allowed to signal
backends) and a small table. `Faults` opens real sessions that exhaust the pool, hold row
locks with waiters queued behind them, or run a long query, and ends them all on close.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from tests.support.polling import wait_for

PASSWORDS = {"journey_app": "app-secret-6Yq", "runbook_ro": "ro-secret-4Kd",
             "runbook_ops": "ops-secret-9Zt"}

_SETUP = """
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'journey_app') THEN
    CREATE ROLE journey_app LOGIN PASSWORD '{journey_app}';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'runbook_ro') THEN
    CREATE ROLE runbook_ro LOGIN PASSWORD '{runbook_ro}' IN ROLE pg_monitor;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'runbook_ops') THEN
    CREATE ROLE runbook_ops LOGIN PASSWORD '{runbook_ops}' IN ROLE pg_monitor, pg_signal_backend;
  END IF;
END $$;
CREATE TABLE IF NOT EXISTS accounts (id int PRIMARY KEY, balance int NOT NULL);
INSERT INTO accounts SELECT i, 100 FROM generate_series(1, 10) i ON CONFLICT DO NOTHING;
GRANT SELECT, UPDATE ON accounts TO journey_app;
GRANT SELECT ON accounts TO runbook_ro;
"""


@dataclass(frozen=True)
class LabDatabase:
    admin: str  # superuser DSN (the container's POSTGRES_USER)
    app: str
    ro: str
    ops: str


def prepare(admin_dsn: str) -> LabDatabase:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(_SETUP.format(**PASSWORDS).encode())

    def as_role(role: str) -> str:
        return make_conninfo(admin_dsn, user=role, password=PASSWORDS[role])

    return LabDatabase(admin_dsn, as_role("journey_app"), as_role("runbook_ro"),
                       as_role("runbook_ops"))


class Faults:
    """Real sessions that misbehave; `close()` ends every one of them."""

    def __init__(self, db: LabDatabase) -> None:
        self.db = db
        self._conns: list[psycopg.Connection[Any]] = []
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Faults:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self, dsn: str, application: str) -> psycopg.Connection[Any]:
        conn = psycopg.connect(dsn, application_name=application)
        self._conns.append(conn)
        return conn

    def idle_in_transaction(self, count: int, application: str = "journey-api",
                            dsn: str | None = None) -> list[int]:
        """Sessions that began a transaction, read something, and went quiet."""
        pids = []
        for _ in range(count):
            conn = self._connect(dsn or self.db.app, application)
            conn.execute("SELECT balance FROM accounts WHERE id = 1")
            pids.append(conn.info.backend_pid)
        return pids

    def lock_pileup(self, waiters: int = 2, row: int = 1) -> tuple[int, list[int]]:
        """One session holds a row lock and idles; `waiters` sessions queue behind it."""
        blocker = self._connect(self.db.app, "journey-batch")
        blocker.execute("UPDATE accounts SET balance = balance + 1 WHERE id = %s", (row,))
        pids = [self._start_blocked(
            "UPDATE accounts SET balance = balance - 1 WHERE id = %s", (row,), "journey-api")
            for _ in range(waiters)]
        self._wait_until(lambda c: c.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND pid = ANY(%s)", (pids,)).fetchone()[0] == waiters)
        return blocker.info.backend_pid, pids

    def long_query(self, seconds: int = 600, application: str = "journey-report") -> int:
        """A query that runs for `seconds` (pg_sleep), as a runaway report would."""
        pid = self._start_blocked("SELECT pg_sleep(%s)", (seconds,), application)
        self._wait_until(lambda c: c.execute(
            "SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            == ("active",))
        return pid

    def _start_blocked(self, sql: str, params: tuple[Any, ...], application: str) -> int:
        conn = self._connect(self.db.app, application)
        conn.autocommit = True  # once unblocked, it finishes and lets go of its locks
        pid = conn.info.backend_pid

        def run() -> None:
            with contextlib.suppress(psycopg.Error):  # cancelled or terminated: a remedy worked
                conn.execute(sql, params)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._threads.append(thread)
        return pid

    def _wait_until(self, check: Any, timeout: float = 10.0) -> None:
        with psycopg.connect(self.db.admin, autocommit=True) as conn:
            wait_for(lambda: check(conn), "the fault to take hold", timeout)

    def pids(self) -> list[int]:
        return [c.info.backend_pid for c in self._conns]

    def close(self) -> None:
        pids = self.pids()
        if pids:
            with psycopg.connect(self.db.admin, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE pid = ANY(%s)", (pids,))
        for conn in self._conns:
            with contextlib.suppress(psycopg.Error):
                conn.close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._conns.clear()
        self._threads.clear()
