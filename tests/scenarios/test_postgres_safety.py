"""The PostgreSQL backend's safety properties, proven against the real server."""

from __future__ import annotations

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
from runner.context import StepContext
from runner.errors import PermanentError
from runner.inventory import Target
from tests.lab.faults import Faults, LabDatabase
from tests.scenarios.conftest import CLI
from tests.scenarios.helpers import alive, wait_idle_in_transaction
from tests.support.polling import wait_for
from tests.unit.test_postgres_guard import BYPASSES, STATE_CHANGING

pytestmark = pytest.mark.lab


def target(monkeypatch: pytest.MonkeyPatch, dsn: str, **settings: object) -> Target:
    monkeypatch.setenv("TEST_DSN", dsn)
    return Target("t", "postgres", PostgresSettings(dsn_env="TEST_DSN", **settings))


def test_a_probe_session_cannot_write_the_server_refuses(
        lab: LabDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    # Even as the superuser: read-only is the session's setting, not the role's.
    with PostgresConnector().probe(target(monkeypatch, lab.admin),
            StepContext.outside_a_run(5)) as db:
        write = "WITH x AS (UPDATE accounts SET balance = 0 RETURNING id) SELECT * FROM x"
        with pytest.raises(PermanentError, match="UPDATE writes"):
            db.query(write)
        # Past the handle's own guard, on the raw session: still refused by the server.
        raw = db._conn
        for sql in (write, "UPDATE accounts SET balance = 0"):
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                raw.execute(sql)
            raw.rollback()
        assert raw.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
    with psycopg.connect(lab.admin) as conn:
        assert conn.execute("SELECT count(*) FROM accounts WHERE balance = 0").fetchone() == (0,)


def test_the_bypass_corpus_from_a_superuser_probe_session_kills_no_session(
        lab: LabDatabase, faults: Faults, monkeypatch: pytest.MonkeyPatch) -> None:
    # As the superuser, who may signal anyone: only the handle's guard stands in the way.
    victims = faults.idle_in_transaction(2)
    aimed = [sql.replace("backend(1", f"backend({victims[0]}")
             for sql in BYPASSES + [form.format(call) for call in STATE_CHANGING
                                    for form in ('SELECT {}', 'SELECT "pg_catalog".{}')]]
    got_through = []
    with PostgresConnector().probe(target(monkeypatch, lab.admin),
            StepContext.outside_a_run(10)) as db:
        for sql in aimed:
            try:
                db.query(sql)
                got_through.append(sql)
            except PermanentError as exc:
                if "probe SQL refused" not in str(exc):
                    got_through.append(f"{sql} -> {exc}")  # refused by the server, not us
        # What only looks like a call: one string to the server, as to the guard, since the
        # session forces standard_conforming_strings (with it off, \' would end the string).
        assert db.query(f"SELECT 'a\\'', pg_terminate_backend({victims[0]}) --' AS s") == [
            {"s": f"a\\', pg_terminate_backend({victims[0]}) --"}]
        # A parameter is bound as a literal before the check, never as SQL.
        injected = f"x'); SELECT pg_terminate_backend({victims[1]}); --"
        assert db.query("SELECT %s AS s", (injected,)) == [{"s": injected}]
        assert db.one("SHOW standard_conforming_strings") == {"standard_conforming_strings": "on"}
        locks = db.one("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory'")
    assert got_through == []
    assert locks == {"n": 0}
    assert alive(lab, victims) == set(victims)


def test_the_shipped_probes_pass_the_guard_against_the_real_server(
        lab: LabDatabase, faults: Faults, monkeypatch: pytest.MonkeyPatch) -> None:
    from diagnostics import postgres

    blocker, _ = faults.lock_pileup(waiters=1)
    faults.idle_in_transaction(1)
    with PostgresConnector().probe(target(monkeypatch, lab.ro),
            StepContext.outside_a_run(10)) as db:
        assert postgres.ping(db, postgres.NoParams())["ok"]
        assert postgres.connection_usage(db, postgres.TopN())["used"] >= 3
        assert postgres.idle_in_transaction(db, postgres.Threshold(older_than=0))["count"] >= 1
        assert postgres.long_running_queries(db, postgres.LongQueries(
            older_than=0, include_lock_waits=True))["count"] >= 1
        assert postgres.blocking_locks(db, postgres.TopN())["root_pids"] == [blocker]
        assert "available" in postgres.slowest_statements(db, postgres.TopN())


@pytest.mark.parametrize(("dsn", "warning"), [
    ("ro", None),
    ("ops", "runbook_ops is a member of pg_signal_backend"),
    ("admin", "is a superuser"),
])
def test_plan_and_validate_warn_when_the_probe_role_may_signal_sessions(
        cli: CLI, lab: LabDatabase, monkeypatch: pytest.MonkeyPatch, dsn: str,
        warning: str | None) -> None:
    monkeypatch.setenv("RUNBOOK_LAB_DSN", getattr(lab, dsn))
    for argv in (("plan", "db-pool-exhausted", "--target", "db=lab-db"), ("validate",)):
        code, out = cli(*argv)
        assert code == 0, out
        if warning is None:
            assert "WARNING lab-db" not in out
        else:
            assert "WARNING lab-db: the probe role" in out and warning in out, out


def test_a_terminate_never_hits_a_recycled_pid(
        lab: LabDatabase, faults: Faults, monkeypatch: pytest.MonkeyPatch) -> None:
    [pid] = faults.idle_in_transaction(1)
    stale = SignalParams(backends=[BackendRef(pid=pid, backend_start="2001-01-01T00:00:00Z")])
    with PostgresConnector().action(target(monkeypatch, lab.ops),
            StepContext.outside_a_run(5)) as db:
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
        with connector.probe(tgt, StepContext.outside_a_run(30)) as db:
            on_handle(db)
            return {"rows": db.query("SELECT pg_sleep(30), 'runbook-slow-probe'")}

    result, error = Call(slow, 0.5).wait()
    assert result is None and "no answer within 0.5s" in str(error)
    with psycopg.connect(lab.admin, autocommit=True) as conn:
        # Well before its own 30 s: the server dropped it because it was cancelled.
        wait_for(lambda: conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE "
            "'%runbook-slow-probe%' AND pid <> pg_backend_pid()").fetchone() == (0,),
            "the server to drop the abandoned query", timeout=20)


def test_statement_timeout_bounds_every_probe_query(
        lab: LabDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.errors import StepTimeout

    tgt = target(monkeypatch, lab.ro, statement_timeout=0.3)
    with PostgresConnector().probe(tgt,
            StepContext.outside_a_run(30)) as db, pytest.raises(StepTimeout):
        db.query("SELECT pg_sleep(5)")


def test_passwords_never_reach_output_journal_or_run_directory(
        cli: CLI, lab: LabDatabase, faults: Faults, runbook_home: Path) -> None:
    wait_idle_in_transaction(lab, faults.idle_in_transaction(2), seconds=1)
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
