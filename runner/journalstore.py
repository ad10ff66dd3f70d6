"""Where the journal's tables live: SQLite under RUNBOOK_HOME (the default, for one host), or
PostgreSQL shared by several daemon replicas (`RUNBOOK_JOURNAL_DSN`, or the daemon config's
`journal: {dsn_env: VAR}`).

Both take the same SQL: runbook writes it in the dialect the two share (`?` parameters,
`INSERT ... ON CONFLICT`, `RETURNING`), and `PostgresStore` turns `?` into psycopg's `%s`.
Schemas are written for SQLite and given PostgreSQL's types here (identity keys, double
precision). Every write transaction is serialized with every other writer, as SQLite's
`BEGIN IMMEDIATE` is: on PostgreSQL by a transaction-level advisory lock, so a journal
read-then-write (claim a run, take a lock, dispatch an alert group) means the same on both.

Schemas are versioned (`migrate`): each part of runbook (the journal, the daemon's inbox ...)
has an ordered list of migrations, and the `schema_migrations` table says which ran.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

DSN_ENV = "RUNBOOK_JOURNAL_DSN"
# pg_advisory_xact_lock key: "runbook" as a number, the same for every replica.
_WRITER_LOCK = int.from_bytes(b"runbook", "big")

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (component, version)
);
"""


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Store(Protocol):
    """A connection to the journal's database, used under the journal's lock."""

    @property
    def kind(self) -> str: ...  # "sqlite" or "postgresql"

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor: ...
    def ddl(self, statement: str) -> None: ...  # one schema statement written for SQLite
    def has_table(self, name: str) -> bool: ...
    # A write transaction, serialized with every other writer unless `serialized` is False
    # (PostgreSQL only: a statement that locks its own rows, FOR UPDATE SKIP LOCKED).
    def begin(self, serialized: bool = True) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    @property
    def in_transaction(self) -> bool: ...
    def close(self) -> None: ...


class SqliteStore:
    kind = "sqlite"

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=busy_timeout)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: each commit is on disk before it returns, so a power loss cannot forget a
        # remedy attempt that was claimed (NORMAL survives a process crash only). Cost:
        # benchmarks/README.md.
        self._db.execute("PRAGMA synchronous=FULL")

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        return self._db.execute(sql, tuple(args))

    def ddl(self, statement: str) -> None:
        self._db.execute(statement)

    def has_table(self, name: str) -> bool:
        return bool(self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                                     "name=?", (name,)).fetchone())

    def begin(self, serialized: bool = True) -> None:
        self._db.execute("BEGIN IMMEDIATE")  # SQLite has one writer at a time regardless

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        self._db.execute("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def close(self) -> None:
        self._db.close()


class PostgresStore:
    kind = "postgresql"

    def __init__(self, dsn: str, busy_timeout: float) -> None:
        from psycopg.conninfo import conninfo_to_dict

        # lock_timeout: a writer waits at most busy_timeout for the others, as on SQLite;
        # after the DSN's own options, which are kept.
        options = " ".join(filter(None, [str(conninfo_to_dict(dsn).get("options") or ""),
                                         f"-c lock_timeout={int(busy_timeout * 1000)}"]))
        self._dsn, self._options = dsn, options
        self._db = self._connect()

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self._dsn, autocommit=True, connect_timeout=10,
                               options=self._options)

    def _live(self) -> Any:
        """The connection; a new one when the old was lost (the server restarted) and no
        transaction was open on it (one that was is failed by the caller, not replayed)."""
        if self._db.closed or self._db.broken:
            self._db = self._connect()
        return self._db

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        return self._live().execute(to_postgres(sql).encode(), tuple(args))  # type: ignore[no-any-return]

    def ddl(self, statement: str) -> None:
        self._live().execute(schema_for_postgres(statement).encode())

    def has_table(self, name: str) -> bool:
        row = self._live().execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        return bool(row and row[0])

    def begin(self, serialized: bool = True) -> None:
        self._live().execute("BEGIN")
        if serialized:
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITER_LOCK,))

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        self._db.execute("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        # A lost connection holds no transaction: the next statement reconnects.
        return self._db.info.transaction_status in {
            TransactionStatus.ACTIVE, TransactionStatus.INTRANS, TransactionStatus.INERROR}

    def close(self) -> None:
        self._db.close()


# Column names PostgreSQL reserves and SQLite does not.
_RESERVED = re.compile(r"\bwindow\b")


def to_postgres(sql: str) -> str:
    """runbook's SQL for psycopg: `?` becomes `%s` (a literal `%` is doubled first)."""
    return _RESERVED.sub('"window"', sql.replace("%", "%%").replace("?", "%s"))


def schema_for_postgres(script: str) -> str:
    """A schema written for SQLite, in PostgreSQL's types."""
    script = re.sub(r"INTEGER PRIMARY KEY AUTOINCREMENT",
                    "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", script)
    script = re.sub(r"\bINTEGER\b", "BIGINT", script)
    script = re.sub(r"\bREAL\b", "DOUBLE PRECISION", script)
    return _RESERVED.sub('"window"', script)


def migrate(store: Store, component: str, migrations: Sequence[str], at: str) -> list[int]:
    """Apply the migrations of `component` not applied yet, in order, each in the write
    transaction that records it; the versions applied now (1-based)."""
    _serialized(store, lambda: store.ddl(MIGRATIONS_TABLE))  # replicas may start at once
    applied = []
    for version, script in enumerate(migrations, start=1):
        if store.execute("SELECT 1 FROM schema_migrations WHERE component=? AND version=?",
                         (component, version)).fetchone():
            continue
        store.begin()
        try:
            if store.execute("SELECT 1 FROM schema_migrations WHERE component=? AND "
                             "version=?", (component, version)).fetchone() is None:
                for statement in _statements(script):
                    store.ddl(statement)
                store.execute("INSERT INTO schema_migrations VALUES (?,?,?)",
                              (component, version, at))
                applied.append(version)
            store.commit()
        except BaseException:
            store.rollback()
            raise
    return applied


def extend(store: Store, script: str) -> None:
    """A schema script (CREATE ... IF NOT EXISTS) run as one serialized write: on
    PostgreSQL two replicas creating the same table at once would otherwise collide."""
    def work() -> None:
        for statement in _statements(script):
            store.ddl(statement)

    _serialized(store, work)


def _serialized(store: Store, work: Callable[[], None]) -> None:
    store.begin()
    try:
        work()
        store.commit()
    except BaseException:
        store.rollback()
        raise


def _statements(script: str) -> list[str]:
    """A schema script's statements (they hold no `;` inside), comments dropped."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def database_unavailable(exc: BaseException) -> bool:
    """A PostgreSQL error that means the database cannot be used now (down, unreachable, a
    writer lock waited past lock_timeout), not a bug in runbook's SQL."""
    if not type(exc).__module__.startswith("psycopg"):
        return False
    from psycopg import errors

    return isinstance(exc, errors.OperationalError | errors.InterfaceError)
