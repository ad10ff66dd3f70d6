"""Secrets inside the data a real PostgreSQL hands back: pg_stat_activity.query text holding
a role's password, a bearer token, an API key. The probes return that text; none of it
reaches the report, stdout, the journal's database or any file of the run directory."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.lab.faults import PASSWORDS, LabDatabase
from tests.scenarios.conftest import CLI
from tests.support.polling import wait_for

pytestmark = pytest.mark.lab

SQL_PASSWORD = "Sql-Pw-77x"
TOKEN = "tok-4c8e1f0b9a77d2"
API_KEY = "key-5b1d9e3a"
SECRETS = (SQL_PASSWORD, TOKEN, API_KEY, *PASSWORDS.values())

PLAYBOOK = """\
name: leaky-queries
summary: query texts that hold secrets
severity: P3
targets:
  db: {kind: postgres}
steps:
  - {id: idle, run: postgres.idle_in_transaction, target: db, with: {older_than: 0s}}
  - {id: long, run: postgres.long_running_queries, target: db, with: {older_than: 0s}}
findings:
  - id: idle-sessions
    when: steps.idle.count > 0
    say: "idle: {{ steps.idle.sessions | map(attribute='query') | join(' | ') }}"
"""


@pytest.fixture
def leaky_sessions(lab: LabDatabase) -> Iterator[None]:
    """A superuser creating a role with a password, left idle inside its transaction (never
    committed); an application transaction idle after a query with a token and a key in a
    comment; and an active query with the same in its text."""
    comment = f"/* Authorization: Bearer {TOKEN} api_key={API_KEY} */"
    admin = psycopg.connect(lab.admin, application_name="leaky-admin")
    idle = psycopg.connect(lab.app, application_name="leaky-idle")
    active = psycopg.connect(lab.app, application_name="leaky-active", autocommit=True)
    try:
        admin.execute(f"CREATE ROLE leak_probe LOGIN PASSWORD '{SQL_PASSWORD}'".encode())
        idle.execute(f"SELECT balance FROM accounts WHERE id = 1 {comment}".encode())
        pid = active.info.backend_pid

        def sleep() -> None:
            with contextlib.suppress(psycopg.Error):  # terminated below
                active.execute(f"SELECT pg_sleep(600) {comment}".encode())

        threading.Thread(target=sleep, daemon=True).start()
        with psycopg.connect(lab.admin, autocommit=True) as watcher:
            wait_for(lambda: watcher.execute(
                "SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
                == ("active",), "the leaky query to run")
        yield
    finally:
        with psycopg.connect(lab.admin, autocommit=True) as watcher:
            watcher.execute("SELECT pg_terminate_backend(%s)", (active.info.backend_pid,))
        for conn in (active, idle, admin):  # admin's rollback drops the role it created
            conn.close()


def test_secrets_in_query_texts_are_masked_everywhere(
        cli: CLI, leaky_sessions: None, tmp_path: Path, runbook_home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "leaky-queries.yaml").write_text(PLAYBOOK)
    monkeypatch.setenv("RUNBOOK_PLAYBOOKS", str(books))
    code, out = cli("run", "leaky-queries", "--target", "db=lab-db", "--no-input",
                    "--format", "json")
    assert code in {0, 1}, out
    # the probes did see the sessions (so the secrets were in what they returned) ...
    assert "CREATE ROLE leak_probe" in out and "Bearer ***" in out and "api_key=***" in out
    # ... and no byte of the output or of the state runbook keeps holds any secret
    leaked = [s for s in SECRETS if s in out]
    for path in runbook_home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            leaked += [f"{s} in {path}" for s in SECRETS if s.encode() in data]
    assert leaked == []
