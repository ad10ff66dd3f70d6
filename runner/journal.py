"""The journal: every run, event and approval, written before and after it happens.

SQLite (WAL) under RUNBOOK_HOME by default. Beside the database each run has a directory
that anyone can read without the tool:

    runs/<run_id>/run.json        the run as `--format json` shows it
    runs/<run_id>/events.jsonl    one JSON object per event, in order
    runs/<run_id>/report.md       the report in Markdown
    runs/<run_id>/evidence/<step>.json   what each step gathered

Everything passes through the redactor before it is written. The journal is private to
its user (directories 0700, files 0600, whatever the umask). A journal that cannot be
written (locked by another process past the busy timeout, a full disk, an unwritable
RUNBOOK_HOME) raises `JournalUnavailable` and leaves nothing half-written: a transaction
and its lines in events.jsonl land together or not at all, and run-directory files are
replaced atomically.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import JournalError, JournalUnavailable
from .journalstore import (
    DSN_ENV,
    PostgresStore,
    SqliteStore,
    Store,
    database_unavailable,
    extend,
    migrate,
)
from .redact import SECRETS
from .state import INTERRUPTED, RUNNING, Event, RunState
from .vocabulary import RUN_STATUS_EVENTS, EventKind

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    playbook TEXT NOT NULL,
    status TEXT NOT NULL,
    severity TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    owner TEXT,              -- host:pid:start of the process driving it, while running
    source TEXT NOT NULL     -- JSON: playbook text and path, bindings, params
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    at TEXT NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_run ON events(run_id, seq);
CREATE TABLE IF NOT EXISTS approvals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    remedy TEXT NOT NULL,
    fingerprint TEXT NOT NULL,  -- of the resolved action: kind, target, arguments
    decision TEXT NOT NULL,     -- approved | declined
    by TEXT NOT NULL,
    how TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS target_locks (
    target TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    at TEXT NOT NULL
);
-- At most one execution of a remedy, ever: the row is inserted in the transaction that
-- takes the target lock and journals remedy.started, before the action begins.
CREATE TABLE IF NOT EXISTS remedy_attempts (
    run_id TEXT NOT NULL REFERENCES runs(id),
    remedy TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    target TEXT NOT NULL,
    owner TEXT NOT NULL,
    at TEXT NOT NULL,
    UNIQUE (run_id, remedy)
);
"""

# A process that heartbeats (a daemon replica) says here when it was last alive: on
# another host, where its pid means nothing, its runs, work and locks are taken over once
# this is older than LEASE seconds. One that never heartbeat (a CLI) counts as alive there.
_OWNERS = """
CREATE TABLE IF NOT EXISTS owners (
    owner TEXT PRIMARY KEY,
    seen_at REAL NOT NULL       -- unix time of its last heartbeat
);
"""
LEASE = 30.0

# On PostgreSQL every run-directory file (evidence, reports) is in the journal too, so that
# any replica sharing it can serve a run (`export` writes the directory from here).
_RUN_FILES = """
CREATE TABLE IF NOT EXISTS run_files (
    run_id TEXT NOT NULL REFERENCES runs(id),
    path TEXT NOT NULL,         -- relative to the run's directory
    content TEXT NOT NULL,      -- as written there (scrubbed)
    PRIMARY KEY (run_id, path)
);
"""

# Events after which the run's status column changes.
_STATUS_EVENTS = RUN_STATUS_EVENTS
# Event fields the run's state is folded from (ids, names, fingerprints, resolved action):
# stored as they are, never masked, so a weak password cannot rewrite them. Free text
# (results, errors, messages, reasons) is scrubbed.
STRUCTURAL_FIELDS = frozenset({
    "status", "step", "kind", "target", "targets", "attempt", "attempts", "duration_ms",
    "remedy", "finding", "verify", "severity", "fingerprint", "args", "identity", "decision",
    "by", "how", "playbook", "trigger", "requested_by", "channel", "checks", "ttl",
    "four_eyes", "approvers", "level"})

BUSY_TIMEOUT_ENV = "RUNBOOK_JOURNAL_BUSY_TIMEOUT"
DEFAULT_BUSY_TIMEOUT = 30.0  # seconds a write waits for another process's transaction

# SQLite primary result codes that mean "cannot write here now", not a bug in runbook.
_SQLITE_UNAVAILABLE = {5: "busy", 6: "locked", 8: "readonly", 10: "ioerr", 13: "full",
                       14: "cantopen"}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _process_start(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def this_process() -> str:
    """An owner token that a recycled pid cannot impersonate."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start(pid)}"


def owner_alive(owner: str | None) -> bool:
    if not owner:
        return False
    host, pid, start = owner.rsplit(":", 2)
    if host != socket.gethostname():
        return True  # another machine's process: assume alive, it will mark itself
    return _process_start(int(pid)) == start


def _private_dir(path: Path) -> None:
    """A directory only its user can enter (mkdir's mode is cut by the umask: chmod)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _private_file(path: Path) -> Path:
    """The SQLite database file, 0600 (SQLite gives -wal and -shm its mode). Never opens and
    closes an existing one: closing any descriptor of it drops the POSIX locks this
    process's other connections hold on it."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", 0o600)
    return path


def _open_private(path: Path, flags: int) -> int:
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)  # the umask may have cut it, or the file predates this rule
    return fd


@dataclass(frozen=True)
class Approval:
    run_id: str
    remedy: str
    fingerprint: str
    decision: str
    by: str
    how: str
    at: str


@dataclass(frozen=True)
class RunRow:
    id: str
    playbook: str
    status: str
    severity: str
    created_at: str
    updated_at: str
    source: dict[str, Any]


@dataclass(frozen=True)
class RemedyAttempt:
    """The one execution a remedy may have: who started it, when, on what."""

    run_id: str
    remedy: str
    fingerprint: str
    target: str
    owner: str
    at: str


class TargetBusy(JournalError):
    """Another live run holds the target's remediation lock."""


class AlreadyAttempted(JournalError):
    """The remedy was started once already: it never runs twice."""

    def __init__(self, attempt: RemedyAttempt) -> None:
        self.attempt = attempt
        super().__init__(f"remedy {attempt.remedy!r} of run {attempt.run_id} was already "
                         f"started at {attempt.at} by {attempt.owner}; it never runs twice")


class Journal:
    """The journal of runs under `home` (their directories live there either way); its
    tables in SQLite there, or in the PostgreSQL database of `dsn` (default:
    RUNBOOK_JOURNAL_DSN), which several daemon replicas share."""

    def __init__(self, home: Path, *, busy_timeout: float | None = None,
                 dsn: str | None = None) -> None:
        self.home = home
        if busy_timeout is None:
            busy_timeout = float(os.environ.get(BUSY_TIMEOUT_ENV) or DEFAULT_BUSY_TIMEOUT)
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._mirror: list[Event] = []  # events of the open transaction, for events.jsonl
        dsn = dsn if dsn is not None else os.environ.get(DSN_ENV)
        with self._storage():
            _private_dir(home)
            self._db: Store = (PostgresStore(dsn, busy_timeout) if dsn
                               else SqliteStore(_private_file(home / "journal.sqlite3"),
                                                busy_timeout))
            with self._lock:
                migrate(self._db, "journal", [_SCHEMA, _OWNERS, _RUN_FILES], now())

    @property
    def kind(self) -> str:
        """Where the tables are: "sqlite" or "postgresql"."""
        return self._db.kind

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _storage(self) -> Iterator[None]:
        """Storage failures (locked, full, unwritable) as one clear JournalUnavailable."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if code not in _SQLITE_UNAVAILABLE:
                raise
            if code in {5, 6}:
                raise JournalUnavailable(
                    f"the journal {self.home / 'journal.sqlite3'} is locked by another process "
                    f"(waited {self.busy_timeout:g}s; {BUSY_TIMEOUT_ENV} sets how long)"
                ) from None
            raise JournalUnavailable(f"cannot write the journal in {self.home}: {exc}") from None
        except Exception as exc:
            if database_unavailable(exc):
                raise JournalUnavailable(f"cannot use the journal database: "
                                         f"{str(exc).strip().splitlines()[0]}") from None
            if not isinstance(exc, OSError):
                raise
            reason = {errno.ENOSPC: "no space left on the device",
                      errno.EFBIG: "file size limit reached",
                      errno.EDQUOT: "disk quota exceeded"}.get(exc.errno or 0, exc.strerror)
            where = exc.filename or self.home
            raise JournalUnavailable(f"cannot write {where}: {reason}") from None

    @contextmanager
    def transaction(self, *, serialized: bool = True) -> Iterator[Store]:
        """One write transaction, serialized with every other writer (unless `serialized`
        is False: a PostgreSQL statement that locks only its own rows); a
        transaction opened inside another (same thread) joins it. The events it appends
        reach events.jsonl before COMMIT and are taken back if it does not commit."""
        with self._lock:
            if self._db.in_transaction:
                yield self._db
                return
            written: list[tuple[Path, int]] = []
            with self._storage():
                self._db.begin(serialized)
            try:
                with self._storage():
                    yield self._db
                    self._mirror_events(written)
                    self._db.commit()
            except BaseException:
                self._mirror.clear()
                for path, size in written:  # take back the lines of what did not commit
                    with contextlib.suppress(OSError):
                        os.truncate(path, size)
                if self._db.in_transaction:
                    with contextlib.suppress(Exception):
                        self._db.rollback()
                raise

    def _mirror_events(self, written: list[tuple[Path, int]]) -> None:
        """Append the transaction's events to their runs' events.jsonl, one whole line each
        (a short write is truncated away by the caller)."""
        events, self._mirror = self._mirror, []
        for event in events:
            path = self.run_dir(event.run_id) / "events.jsonl"
            if not path.parent.is_dir():
                continue  # a run created before its directory (recovered below on read)
            line = (json.dumps(event.to_json(), default=str) + "\n").encode()
            fd = _open_private(path, os.O_WRONLY | os.O_APPEND)
            try:
                written.append((path, os.fstat(fd).st_size))
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)

    def read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock, self._storage():
            return list(self._db.execute(sql, args).fetchall())

    def extend_schema(self, script: str) -> None:
        """Tables of other parts of runbook (the daemon's inbox) in the same database."""
        with self._lock, self._storage():
            extend(self._db, script)

    def has_table(self, name: str) -> bool:
        """Whether another part of runbook (the daemon's inbox) made this table here."""
        with self._lock, self._storage():
            return self._db.has_table(name)

    def migrate(self, component: str, migrations: list[str]) -> list[int]:
        """Apply `component`'s schema migrations not applied yet (see `journalstore`)."""
        with self._lock, self._storage():
            return migrate(self._db, component, migrations, now())

    def run_dir(self, run_id: str) -> Path:
        return self.home / "runs" / run_id

    # Runs and events

    def create_run(self, run_id: str, playbook: str, severity: str, source: dict[str, Any]) -> None:
        at = now()
        directory = self.run_dir(run_id)
        with self._storage():
            _private_dir(directory / "evidence")
            for made in (self.home / "runs", directory, directory / "evidence"):
                os.chmod(made, 0o700)
        try:
            with self.transaction() as db:
                db.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?)",
                           (run_id, playbook, RUNNING, severity, at, at, this_process(),
                            json.dumps(source)))  # as is: resume re-reads the playbook
        except BaseException:  # no directory for a run the journal does not hold
            with contextlib.suppress(OSError):
                (directory / "evidence").rmdir()
                directory.rmdir()
            raise

    def _insert_event(self, db: Store, run_id: str, type_: str,
                      data: dict[str, Any], owner: str | None = None) -> Event:
        """One event inside the caller's transaction; `owner` for a status event that
        makes the run running (default: this process)."""
        data = SECRETS.scrub(data, keep=STRUCTURAL_FIELDS)
        at = now()
        payload = json.dumps(data, default=str)
        seq = db.execute("INSERT INTO events (run_id, at, type, data) VALUES (?,?,?,?) "
                         "RETURNING seq", (run_id, at, type_, payload)).fetchone()[0]
        if type_ in _STATUS_EVENTS and "status" in data:
            running = data["status"] == RUNNING
            db.execute("UPDATE runs SET status=?, updated_at=?, owner=? WHERE id=?",
                       (data["status"], at, (owner or this_process()) if running else None,
                        run_id))
        if type_ == EventKind.SEVERITY and "level" in data:  # `runbook history` shows it
            db.execute("UPDATE runs SET severity=? WHERE id=?", (data["level"], run_id))
        event = Event(int(seq), run_id, at, type_, json.loads(payload))
        self._mirror.append(event)
        return event

    def append(self, run_id: str, type_: str, data: dict[str, Any]) -> Event:
        """Record one event (scrubbed) and return it as stored."""
        with self.transaction() as db:
            return self._insert_event(db, run_id, type_, data)

    def events(self, run_id: str) -> list[Event]:
        with self._lock, self._storage():
            rows = self._db.execute("SELECT seq, run_id, at, type, data FROM events "
                                    "WHERE run_id=? ORDER BY seq", (run_id,)).fetchall()
        return [Event(seq, rid, at, type_, json.loads(data)) for seq, rid, at, type_, data in rows]

    def state(self, run_id: str) -> RunState:
        self.get_run(run_id)
        return RunState.fold(run_id, self.events(run_id))

    def get_run(self, run_id: str) -> RunRow:
        self.mark_interrupted()
        with self._lock, self._storage():
            row = self._db.execute("SELECT id, playbook, status, severity, created_at, "
                                   "updated_at, source FROM runs WHERE id=?",
                                   (run_id,)).fetchone()
        if row is None:
            raise JournalError(f"no run {run_id!r} in the journal at {self.home}")
        return RunRow(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]))

    def runs(self, limit: int = 20, status: str | None = None) -> list[RunRow]:
        self.mark_interrupted()
        query = ("SELECT id, playbook, status, severity, created_at, updated_at, source "
                 "FROM runs {} ORDER BY created_at DESC, id DESC LIMIT ?")
        args: tuple[Any, ...] = (limit,)
        if status:
            query, args = query.format("WHERE status=?"), (status, limit)
        else:
            query = query.format("")
        with self._lock, self._storage():
            rows = self._db.execute(query, args).fetchall()
        return [RunRow(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    def mark_interrupted(self) -> list[str]:
        """Runs whose owning process died become `interrupted` (resumable)."""
        candidates = [run_id for run_id, owner in self.read(
            "SELECT id, owner FROM runs WHERE status=?", (RUNNING,))
            if not self.alive(owner)]
        dead = []
        for run_id in candidates:
            with self.transaction() as db:
                if self._interrupt_if_dead(db, run_id):
                    dead.append(run_id)
        return dead

    def _interrupt_if_dead(self, db: Store, run_id: str) -> bool:
        """Inside a transaction: re-read the run, so a claim that won meanwhile stands."""
        row = db.execute("SELECT status, owner FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None or row[0] != RUNNING or self.alive(row[1], db):
            return False
        self._insert_event(db, run_id, EventKind.RUN_INTERRUPTED, {
            "status": INTERRUPTED, "reason": "the process running it stopped"})
        return True

    def claim(self, run_id: str, by: str = "") -> Event:
        """Take a run that no live process drives, atomically: status and owner change in
        the transaction that checked them, so of two claimers exactly one wins. Returns the
        `run.resumed` event it journaled."""
        with self.transaction() as db:
            row = db.execute("SELECT status, owner FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                raise JournalError(f"no run {run_id!r} in the journal at {self.home}")
            if row[0] == RUNNING and self.alive(row[1], db):
                raise JournalError(f"run {run_id} is being driven by another process ({row[1]})")
            self._interrupt_if_dead(db, run_id)
            return self._insert_event(db, run_id, EventKind.RUN_RESUMED,
                                      {"status": RUNNING, "by": by})

    def alive(self, owner: str | None, db: Store | None = None) -> bool:
        """Whether the process `owner` names still lives: on this host by its pid and start
        time; on another by its heartbeat (`heartbeat`), if it ever sent one."""
        if not owner:
            return False
        if owner.rsplit(":", 2)[0] == socket.gethostname():
            return owner_alive(owner)
        query = "SELECT seen_at FROM owners WHERE owner=?"
        row = (db.execute(query, (owner,)).fetchone() if db is not None
               else next(iter(self.read(query, (owner,))), None))
        return row is None or time.time() - float(row[0]) < LEASE

    def heartbeat(self) -> None:
        """Say this process is alive (a daemon replica, every few seconds): past LEASE
        without one, replicas on other hosts take over its runs, work and target locks."""
        with self.transaction() as db:
            db.execute("INSERT INTO owners VALUES (?,?) ON CONFLICT (owner) DO UPDATE SET "
                       "seen_at=excluded.seen_at", (this_process(), time.time()))

    def owner(self, run_id: str) -> str | None:
        rows = self.read("SELECT owner FROM runs WHERE id=?", (run_id,))
        return rows[0][0] if rows else None

    # Approvals

    def record_approval(self, approval: Approval) -> Approval:
        with self.transaction() as db:
            db.execute("INSERT INTO approvals (run_id, remedy, fingerprint, decision, by, how, at)"
                       " VALUES (?,?,?,?,?,?,?)",
                       (approval.run_id, approval.remedy, approval.fingerprint,
                        approval.decision, approval.by, approval.how, approval.at))
            self._insert_event(db, approval.run_id, "approval", {
                "remedy": approval.remedy, "decision": approval.decision, "by": approval.by,
                "how": approval.how, "fingerprint": approval.fingerprint})
        return approval

    def approvals(self, run_id: str, remedy: str) -> list[Approval]:
        rows = self.read("SELECT run_id, remedy, fingerprint, decision, by, how, at "
                         "FROM approvals WHERE run_id=? AND remedy=? ORDER BY id",
                         (run_id, remedy))
        return [Approval(*row) for row in rows]

    # Per-target remediation lock (safety model 3) and the one attempt of each remedy

    def _take_target(self, db: Store, target: str, run_id: str) -> None:
        """Inside a transaction: the lock is held by one (run, process); a dead process's
        lock is broken (journaled on the run that held it), a live one's is refused."""
        me = this_process()
        row = db.execute("SELECT run_id, owner FROM target_locks WHERE target=?",
                         (target,)).fetchone()
        if row and (row[0], row[1]) != (run_id, me):
            if self.alive(row[1], db):
                raise TargetBusy(f"target {target!r} is being remediated by run {row[0]}")
            if db.execute("SELECT 1 FROM runs WHERE id=?", (row[0],)).fetchone():
                self._insert_event(db, row[0], EventKind.LOCK_BROKEN, {
                    "target": target, "owner": row[1],
                    "reason": f"its process is gone; run {run_id} took the lock"})
        db.execute("INSERT INTO target_locks VALUES (?,?,?,?) ON CONFLICT (target) DO UPDATE "
                   "SET run_id=excluded.run_id, owner=excluded.owner, at=excluded.at",
                   (target, run_id, me, now()))

    def lock_target(self, target: str, run_id: str) -> None:
        with self.transaction() as db:
            self._take_target(db, target, run_id)

    def unlock_target(self, target: str, run_id: str) -> None:
        """Release the lock this process holds for this run (never another's)."""
        with self.transaction() as db:
            db.execute("DELETE FROM target_locks WHERE target=? AND run_id=? AND owner=?",
                       (target, run_id, this_process()))

    def target_lock(self, target: str) -> tuple[str, str] | None:
        """(run_id, owner) holding the target's lock, if any."""
        rows = self.read("SELECT run_id, owner FROM target_locks WHERE target=?", (target,))
        return (rows[0][0], rows[0][1]) if rows else None

    def start_remedy(self, run_id: str, remedy: str, fingerprint: str, target: str) -> Event:
        """Everything before an action starts, in one transaction: this process still owns
        the run, the target's lock, the remedy's one attempt (refused if it exists) and the
        `remedy.started` event. Returns that event."""
        me = this_process()
        with self.transaction() as db:
            row = db.execute("SELECT status, owner FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None or row[0] != RUNNING or row[1] != me:
                raise JournalError(f"run {run_id} is not driven by this process "
                                   f"({row[1] if row else 'no such run'})")
            self._take_target(db, target, run_id)
            # UNIQUE (run_id, remedy): it ran, or runs, once. DO NOTHING rather than an
            # error, which would abort a PostgreSQL transaction before the earlier is read.
            if not db.execute("INSERT INTO remedy_attempts VALUES (?,?,?,?,?,?) "
                              "ON CONFLICT DO NOTHING",
                              (run_id, remedy, fingerprint, target, me, now())).rowcount:
                earlier = self.attempt(run_id, remedy)
                assert earlier is not None
                raise AlreadyAttempted(earlier)
            return self._insert_event(db, run_id, EventKind.REMEDY_STARTED, {
                "remedy": remedy, "fingerprint": fingerprint, "target": target})

    def attempt(self, run_id: str, remedy: str) -> RemedyAttempt | None:
        rows = self.read("SELECT run_id, remedy, fingerprint, target, owner, at "
                         "FROM remedy_attempts WHERE run_id=? AND remedy=?", (run_id, remedy))
        return RemedyAttempt(*rows[0]) if rows else None

    # The run directory

    def write_file(self, run_id: str, relative: str, content: str | dict[str, Any]) -> Path:
        """Write a run-directory file atomically (scrubbed, 0600): the old file or the new
        one, never half of one. On PostgreSQL the same text goes into `run_files` for the
        other replicas; on SQLite (one host) the directory is where it is kept."""
        if isinstance(content, dict):
            text = json.dumps(SECRETS.scrub(content), indent=2, default=str) + "\n"
        else:
            text = SECRETS.scrub(content)
        if self.kind == "postgresql":
            with self.transaction() as db:
                db.execute("INSERT INTO run_files VALUES (?,?,?) ON CONFLICT (run_id, path) "
                           "DO UPDATE SET content=excluded.content", (run_id, relative, text))
        return self._write_private(self.run_dir(run_id) / relative, text)

    def export(self, run_id: str) -> Path:
        """The run's directory as its process wrote it, written here from the journal
        where it is missing or behind (a run another replica drove; not one this process
        drives now): its files and events.jsonl, byte for byte. Returns the directory."""
        directory = self.run_dir(run_id)
        for relative, text in self.read("SELECT path, content FROM run_files WHERE run_id=?",
                                        (run_id,)):
            path = directory / relative
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                self._write_private(path, text)
        lines = "".join(json.dumps(e.to_json(), default=str) + "\n"
                        for e in self.events(run_id))
        events = directory / "events.jsonl"
        if not events.is_file() or events.read_text(encoding="utf-8") != lines:
            self._write_private(events, lines)
        return directory

    def _write_private(self, path: Path, text: str) -> Path:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with self._storage():
            for parent in reversed(path.relative_to(self.home).parents):
                if parent != Path("."):
                    _private_dir(self.home / parent)
            try:
                fd = _open_private(tmp, os.O_WRONLY | os.O_TRUNC)
                with os.fdopen(fd, "wb") as out:
                    out.write(text.encode("utf-8"))
                    out.flush()
                    os.fsync(out.fileno())
                tmp.replace(path)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
        return path


def new_run_id() -> str:
    """Sortable by time, short enough to type: 20261122-073405-4f2a."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + os.urandom(2).hex()

