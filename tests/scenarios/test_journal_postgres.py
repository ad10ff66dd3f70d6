"""The journal on PostgreSQL (the lab's real server, a fresh database per test): the same
runs, claims, one-attempt rule and migrations as on SQLite, and a clear error when the
database is gone."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import psycopg.conninfo
import pytest
from psycopg.conninfo import make_conninfo

from runner.errors import JournalError, JournalUnavailable
from runner.journal import AlreadyAttempted, Journal, new_run_id
from runner.state import RunState
from runner.vocabulary import EventKind, RunStatus
from tests.enginekit import Kit
from tests.lab.faults import LabDatabase


def fresh_database(lab_db: LabDatabase) -> Iterator[str]:
    """A new, empty database on the lab server; its DSN. Dropped afterwards."""
    name = f"journal_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(lab_db.admin, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}".encode())
    try:
        yield make_conninfo(lab_db.admin, dbname=name)
    finally:
        with psycopg.connect(lab_db.admin, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)".encode())


@pytest.fixture
def dsn(lab_db: LabDatabase) -> Iterator[str]:
    yield from fresh_database(lab_db)


RUN = """
steps:
  - {id: a, run: mem.sleep, with: {value: [1, 2]}}
findings:
  - {id: two, when: "steps.a.value | length == 2", say: "two items"}
remedies:
  - {id: fix, run: mem.act, with: {items: "{{ steps.a.value }}"}}
verify:
  - {id: fine, run: mem.sleep}
"""


def shape(state: RunState) -> list[tuple[str, str]]:
    """What a run did, without its ids and times."""
    return [(e.type, str(e.data.get("status", ""))) for e in state.timeline]


def test_a_run_on_postgres_reads_as_on_sqlite(tmp_path: Path, dsn: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    on_sqlite = Kit(tmp_path / "sqlite").run(RUN, approve=frozenset({"fix=mem.act"}))
    monkeypatch.setenv("RUNBOOK_JOURNAL_DSN", dsn)
    kit = Kit(tmp_path / "pg")
    assert kit.journal.kind == "postgresql"
    on_postgres = kit.run(RUN, approve=frozenset({"fix=mem.act"}))
    kit.journal.close()
    assert on_postgres.status == RunStatus.COMPLETED
    assert shape(on_postgres) == shape(on_sqlite)
    # Another process's view (a new connection) folds the same run.
    with Journal(tmp_path / "elsewhere", dsn=dsn) as other:
        assert other.state(on_postgres.run_id).to_json() == on_postgres.to_json()
        assert [r.id for r in other.runs()] == [on_postgres.run_id]


def test_any_replica_has_a_runs_files_and_its_postmortem(tmp_path: Path, dsn: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Evidence and reports are in the journal: a host that never saw the run writes its
    directory byte for byte, and the postmortem it drafts cites the same hashes."""
    from runner import postmortem

    monkeypatch.setenv("RUNBOOK_JOURNAL_DSN", dsn)
    kit = Kit(tmp_path / "replica-a")
    state = kit.run(RUN, approve=frozenset({"fix=mem.act"}))
    kit.journal.close()
    here = kit.journal.run_dir(state.run_id)
    with Journal(tmp_path / "replica-b") as other:
        draft = postmortem.draft(postmortem.load(other, state.run_id))
        there = other.run_dir(state.run_id)
        written = sorted(p.relative_to(here) for p in here.rglob("*") if p.is_file())
        assert sorted(p.relative_to(there) for p in there.rglob("*") if p.is_file()) == written
        for relative in written:
            assert (there / relative).read_bytes() == (here / relative).read_bytes(), relative
    with Journal(tmp_path / "replica-a") as again:
        assert postmortem.draft(postmortem.load(again, state.run_id)) == draft


def test_of_replicas_claiming_one_run_at_once_exactly_one_wins(tmp_path: Path,
                                                               dsn: str) -> None:
    with Journal(tmp_path / "a", dsn=dsn) as journal:
        run_id = new_run_id()
        journal.create_run(run_id, "pb", "P3", {})
        journal.append(run_id, EventKind.RUN_FINISHED, {"status": RunStatus.INTERRUPTED})
    journals = [Journal(tmp_path / f"r{i}", dsn=dsn) for i in range(6)]
    barrier, won, lost = threading.Barrier(len(journals)), [], []

    def claim(journal: Journal) -> None:
        barrier.wait()
        try:
            won.append(journal.claim(run_id, "replica"))
        except JournalError:
            lost.append(journal)

    threads = [threading.Thread(target=claim, args=(j,)) for j in journals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for journal in journals:
        journal.close()
    assert len(won) == 1 and len(lost) == len(journals) - 1


def test_a_remedy_is_attempted_once_whichever_connection_asks(tmp_path: Path,
                                                              dsn: str) -> None:
    with Journal(tmp_path / "a", dsn=dsn) as a, Journal(tmp_path / "b", dsn=dsn) as b:
        run_id = new_run_id()
        a.create_run(run_id, "pb", "P3", {})
        a.start_remedy(run_id, "fix", "f" * 64, "box")
        with pytest.raises(AlreadyAttempted):
            b.start_remedy(run_id, "fix", "f" * 64, "box")
        assert a.target_lock("box") == b.target_lock("box")


def test_migrations_are_versioned_and_each_runs_once(tmp_path: Path, dsn: str) -> None:
    with Journal(tmp_path / "a", dsn=dsn) as journal:
        assert journal.migrate("journal", ["SELECT 1"] * 3) == []  # v1 to v3 done
        assert journal.migrate("extra", ["CREATE TABLE extra (id INTEGER PRIMARY KEY "
                                         "AUTOINCREMENT, at REAL)"]) == [1]
        assert journal.migrate("extra", ["CREATE TABLE extra (id INTEGER)"]) == []
        rows = journal.read("SELECT component, version FROM schema_migrations "
                            "ORDER BY component, version")
    assert [tuple(r) for r in rows] == [("extra", 1), ("journal", 1), ("journal", 2),
                                        ("journal", 3)]


def test_replicas_starting_at_once_on_an_empty_database_all_start(tmp_path: Path,
                                                                  dsn: str) -> None:
    barrier, journals, failed = threading.Barrier(4), [], []

    def start(index: int) -> None:
        barrier.wait()
        try:
            journal = Journal(tmp_path / f"r{index}", dsn=dsn)
            journal.migrate("inbox", ["CREATE TABLE IF NOT EXISTS work (id INTEGER)"])
            journals.append(journal)
        except Exception as exc:
            failed.append(exc)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for journal in journals:
        journal.close()
    assert failed == [] and len(journals) == 4


def test_a_lost_connection_is_made_again(tmp_path: Path, dsn: str,
                                         lab_db: LabDatabase) -> None:
    """The server ended the journal's session (a restart, a failover): the write in flight
    fails as unavailable, and the next one reconnects; nothing half-written."""
    with Journal(tmp_path / "a", dsn=dsn) as journal:
        run_id = new_run_id()
        journal.create_run(run_id, "pb", "P3", {})
        dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
        with psycopg.connect(lab_db.admin, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))
        with pytest.raises(JournalUnavailable):
            journal.append(run_id, EventKind.NOTE, {"text": "lost"})
        journal.append(run_id, EventKind.NOTE, {"text": "after"})
        assert [e.data.get("text") for e in journal.events(run_id)][-1] == "after"
        assert "lost" not in [e.data.get("text") for e in journal.events(run_id)]


def test_a_journal_database_that_is_gone_is_journal_unavailable(tmp_path: Path,
                                                                lab_db: LabDatabase) -> None:
    closed = make_conninfo(lab_db.admin, port=1, connect_timeout=2)
    with pytest.raises(JournalUnavailable, match="journal database"):
        Journal(tmp_path / "a", dsn=closed)
