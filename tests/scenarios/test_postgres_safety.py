"""The PostgreSQL backend's safety properties, proven against the real server."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from diagnostics.postgres import (
    BackendRef,
    PostgresConnector,
    PostgresSettings,
    SignalParams,
    terminate_backends,
)
from runner.errors import PermanentError
from runner.inventory import Target
from tests.lab.faults import Faults, LabDatabase
from tests.scenarios.conftest import CLI
from tests.scenarios.helpers import alive

pytestmark = pytest.mark.lab


def target(monkeypatch: pytest.MonkeyPatch, dsn: str, **settings: object) -> Target:
    monkeypatch.setenv("TEST_DSN", dsn)
    return Target("t", "postgres", PostgresSettings(dsn_env="TEST_DSN", **settings))


def test_a_probe_session_cannot_write_the_server_refuses(
        lab: LabDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    # Even as the superuser: read-only is the session's setting, not the role's.
    with PostgresConnector().probe(target(monkeypatch, lab.admin), 5) as db:
        with pytest.raises(PermanentError, match="read-only transaction"):
            db.query("WITH x AS (UPDATE accounts SET balance = 0 RETURNING id) SELECT * FROM x")
        # Past the handle's own guard, on the raw session: still refused by the server.
        raw = db._conn
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            raw.execute("UPDATE accounts SET balance = 0")
        raw.rollback()
        assert raw.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
    with psycopg.connect(lab.admin) as conn:
        assert conn.execute("SELECT count(*) FROM accounts WHERE balance = 0").fetchone() == (0,)


@pytest.mark.parametrize("sql", [
    "SELECT pg_terminate_backend(1)",
    "select PG_CANCEL_BACKEND (1)",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SET default_transaction_read_only = off",
    "SELECT 1; UPDATE accounts SET balance = 0",
    "UPDATE accounts SET balance = 0",
])
def test_the_probe_handle_refuses_statements_that_could_change_anything(
        lab: LabDatabase, monkeypatch: pytest.MonkeyPatch, sql: str) -> None:
    with (PostgresConnector().probe(target(monkeypatch, lab.admin), 5) as db,
          pytest.raises(PermanentError, match="probe SQL")):
        db.query(sql)


def test_a_terminate_never_hits_a_recycled_pid(
        lab: LabDatabase, faults: Faults, monkeypatch: pytest.MonkeyPatch) -> None:
    [pid] = faults.idle_in_transaction(1)
    stale = SignalParams(backends=[BackendRef(pid=pid, backend_start="2001-01-01T00:00:00Z")])
    with PostgresConnector().action(target(monkeypatch, lab.ops), 5) as db:
        result = terminate_backends(db, stale)
    assert result["terminated"] == []
    assert "another session" in result["skipped"][0]["reason"]
    assert alive(lab, [pid]) == {pid}


def test_a_probe_past_its_deadline_is_cancelled_on_the_server(
        lab: LabDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.calls import Call

    connector = PostgresConnector()
    tgt = target(monkeypatch, lab.ro)

    def slow(on_handle):  # type: ignore[no-untyped-def]
        with connector.probe(tgt, 30) as db:
            on_handle(db)
            return {"rows": db.query("SELECT pg_sleep(30), 'runbook-slow-probe'")}

    started = time.monotonic()
    result, error = Call(slow, 0.5).wait()
    assert result is None and "no answer within 0.5s" in str(error)
    with psycopg.connect(lab.admin, autocommit=True) as conn:
        for _ in range(50):
            running = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                                   " AND query LIKE '%runbook-slow-probe%' AND pid <> "
                                   "pg_backend_pid()").fetchone()[0]
            if running == 0:
                break
            time.sleep(0.1)
    assert running == 0, "the server still runs the abandoned query"
    assert time.monotonic() - started < 25  # cancelled, not left to finish its 30 s


def test_statement_timeout_bounds_every_probe_query(
        lab: LabDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.errors import StepTimeout

    tgt = target(monkeypatch, lab.ro, statement_timeout=0.3)
    with PostgresConnector().probe(tgt, 30) as db, pytest.raises(StepTimeout):
        db.query("SELECT pg_sleep(5)")


def test_passwords_never_reach_output_journal_or_run_directory(
        cli: CLI, lab: LabDatabase, faults: Faults, runbook_home: Path) -> None:
    faults.idle_in_transaction(2)
    time.sleep(1.1)
    code, out = cli("run", "db-pool-exhausted", "--target", "db=lab-db", "--param",
                    "idle_after=1s", "--no-input", "--format", "markdown")
    assert code == 1
    from tests.lab.faults import PASSWORDS

    files = [p for p in runbook_home.rglob("*") if p.is_file()]
    assert any(p.name == "events.jsonl" for p in files)
    for secret in PASSWORDS.values():
        assert secret not in out
        for path in files:
            assert secret.encode() not in path.read_bytes(), f"{secret} leaked into {path}"


def test_a_wrong_password_fails_the_steps_without_showing_it(
        cli: CLI, lab: LabDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    from psycopg.conninfo import make_conninfo

    monkeypatch.setenv("RUNBOOK_LAB_DSN", make_conninfo(lab.ro, password="wrong-Pa55word"))
    code, out = cli("run", "db-pool-exhausted", "--target", "db=lab-db", "--no-input")
    assert code == 3  # could not diagnose
    assert "password authentication failed" in out
    assert "wrong-Pa55word" not in out
