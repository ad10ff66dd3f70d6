"""The journal: every run, event and approval, written before and after it happens.

SQLite (WAL) under RUNBOOK_HOME by default. Beside the database each run has a directory
that anyone can read without the tool:

    runs/<run_id>/run.json        the run as `--format json` shows it
    runs/<run_id>/events.jsonl    one JSON object per event, in order
    runs/<run_id>/report.md       the report in Markdown
    runs/<run_id>/evidence/<step>.json   what each step gathered

Everything passes through the redactor before it is written.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import JournalError
from .redact import SECRETS
from .state import INTERRUPTED, RUNNING, Event, RunState

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
"""

# Events after which the run's status column changes.
_STATUS_EVENTS = {"run.started", "run.finished", "run.interrupted", "run.resumed"}


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


class Journal:
    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(home / "journal.sqlite3", check_same_thread=False,
                                   isolation_level=None, timeout=30)
        self._lock = threading.RLock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE), serialized with every other user; a
        transaction opened inside another (same thread) joins it."""
        with self._lock:
            if self._db.in_transaction:
                yield self._db
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    def extend_schema(self, script: str) -> None:
        """Tables of other parts of runbook (the daemon's inbox) in the same database."""
        with self._lock:
            self._db.executescript(script)

    def run_dir(self, run_id: str) -> Path:
        return self.home / "runs" / run_id

    # Runs and events

    def create_run(self, run_id: str, playbook: str, severity: str, source: dict[str, Any]) -> None:
        at = now()
        with self.transaction() as db:
            db.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?)",
                       (run_id, playbook, RUNNING, severity, at, at, this_process(),
                        json.dumps(SECRETS.scrub(source))))
        (self.run_dir(run_id) / "evidence").mkdir(parents=True, exist_ok=True)

    def append(self, run_id: str, type_: str, data: dict[str, Any]) -> Event:
        """Record one event (scrubbed) and return it as stored."""
        data = SECRETS.scrub(data)
        at = now()
        payload = json.dumps(data, default=str)
        with self.transaction() as db:
            cursor = db.execute("INSERT INTO events (run_id, at, type, data) VALUES (?,?,?,?)",
                                (run_id, at, type_, payload))
            if type_ in _STATUS_EVENTS and "status" in data:
                owner = this_process() if data["status"] == RUNNING else None
                db.execute("UPDATE runs SET status=?, updated_at=?, owner=? WHERE id=?",
                           (data["status"], at, owner, run_id))
        event = Event(int(cursor.lastrowid or 0), run_id, at, type_, json.loads(payload))
        with open(self.run_dir(run_id) / "events.jsonl", "a", encoding="utf-8") as out:
            out.write(json.dumps(event.to_json(), default=str) + "\n")
        return event

    def events(self, run_id: str) -> list[Event]:
        with self._lock:
            rows = self._db.execute("SELECT seq, run_id, at, type, data FROM events "
                                    "WHERE run_id=? ORDER BY seq", (run_id,)).fetchall()
        return [Event(seq, rid, at, type_, json.loads(data)) for seq, rid, at, type_, data in rows]

    def state(self, run_id: str) -> RunState:
        self.get_run(run_id)
        return RunState.fold(run_id, self.events(run_id))

    def get_run(self, run_id: str) -> RunRow:
        self.mark_interrupted()
        with self._lock:
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
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [RunRow(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    def mark_interrupted(self) -> list[str]:
        """Runs whose owning process died become `interrupted` (resumable)."""
        with self._lock:
            rows = self._db.execute("SELECT id, owner FROM runs WHERE status=?",
                                    (RUNNING,)).fetchall()
        dead = [run_id for run_id, owner in rows if not owner_alive(owner)]
        for run_id in dead:
            self.append(run_id, "run.interrupted", {
                "status": INTERRUPTED, "reason": "the process running it stopped"})
        return dead

    def claim(self, run_id: str) -> None:
        """Take ownership of a run that is not being driven by a live process."""
        self.mark_interrupted()
        with self.transaction() as db:
            row = db.execute("SELECT status, owner FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                raise JournalError(f"no run {run_id!r} in the journal at {self.home}")
            if row[0] == RUNNING and owner_alive(row[1]):
                raise JournalError(f"run {run_id} is being driven by another process ({row[1]})")
            db.execute("UPDATE runs SET owner=? WHERE id=?", (this_process(), run_id))

    # Approvals

    def record_approval(self, approval: Approval) -> Approval:
        with self.transaction() as db:
            db.execute("INSERT INTO approvals (run_id, remedy, fingerprint, decision, by, how, at)"
                       " VALUES (?,?,?,?,?,?,?)",
                       (approval.run_id, approval.remedy, approval.fingerprint,
                        approval.decision, approval.by, approval.how, approval.at))
        self.append(approval.run_id, "approval", {
            "remedy": approval.remedy, "decision": approval.decision, "by": approval.by,
            "how": approval.how, "fingerprint": approval.fingerprint})
        return approval

    def approvals(self, run_id: str, remedy: str) -> list[Approval]:
        with self._lock:
            rows = self._db.execute("SELECT run_id, remedy, fingerprint, decision, by, how, at "
                                    "FROM approvals WHERE run_id=? AND remedy=? ORDER BY id",
                                    (run_id, remedy)).fetchall()
        return [Approval(*row) for row in rows]

    # Per-target remediation lock (safety model 3)

    def lock_target(self, target: str, run_id: str) -> None:
        with self.transaction() as db:
            row = db.execute("SELECT run_id, owner FROM target_locks WHERE target=?",
                             (target,)).fetchone()
            if row and owner_alive(row[1]) and row[0] != run_id:
                raise JournalError(f"target {target!r} is being remediated by run {row[0]}")
            db.execute("INSERT OR REPLACE INTO target_locks VALUES (?,?,?,?)",
                       (target, run_id, this_process(), now()))

    def unlock_target(self, target: str, run_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM target_locks WHERE target=? AND run_id=?", (target, run_id))

    # The run directory

    def write_file(self, run_id: str, relative: str, content: str | dict[str, Any]) -> Path:
        """Write a run-directory file atomically (scrubbed)."""
        path = self.run_dir(run_id) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, dict):
            text = json.dumps(SECRETS.scrub(content), indent=2, default=str) + "\n"
        else:
            text = SECRETS.scrub(content)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        return path


def new_run_id() -> str:
    """Sortable by time, short enough to type: 20261122-073405-4f2a."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + os.urandom(2).hex()
