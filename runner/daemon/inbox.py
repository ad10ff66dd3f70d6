"""The daemon's persistent inbox and work queue, in the journal's database.

An alert is written here before the intake answers 202, so an accepted alert is never
lost. The dispatcher then routes each stored alert exactly once (in order), groups it with
the alerts of the same group key into one run, and queues that run; workers claim queued
work; nothing is dropped when every worker is busy, the queue just grows. After a crash,
undispatched alerts are dispatched and claimed work goes back to the queue.

Signed requests leave their signature here too, in the same transaction as their alerts,
so a replayed request is refused even after a restart, and a request that failed to store
can be retried.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..journal import Journal, now, this_process
from ..state import AWAITING, RUNNING
from ..vocabulary import AlertOutcome, WorkKind, WorkStatus
from .alerts import Alert
from .config import DaemonConfig, Route
from .routing import TargetRefused, bindings, group_key, route_for

# The SQL below spells the values of AlertOutcome, WorkKind and WorkStatus (runner.vocabulary)
# in its text; a test pins both to the same strings.
SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    alert TEXT NOT NULL,        -- the Alert as JSON
    outcome TEXT,               -- NULL until dispatched: started, joined, resolved,
                                -- unrouted, refused (a target outside the route's rule)
    route TEXT,
    group_key TEXT,
    work_id INTEGER
);
CREATE INDEX IF NOT EXISTS alerts_pending ON alerts(outcome, id);
CREATE TABLE IF NOT EXISTS work (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,         -- run (start a playbook) or resume (after an approval)
    route TEXT NOT NULL,
    group_key TEXT NOT NULL,
    playbook TEXT NOT NULL,
    targets TEXT NOT NULL,
    params TEXT NOT NULL,
    run_id TEXT,
    status TEXT NOT NULL,       -- queued, running, done, failed
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS work_queue ON work(status, id);
CREATE TABLE IF NOT EXISTS alert_groups (
    group_key TEXT PRIMARY KEY,
    work_id INTEGER NOT NULL,
    opened_at REAL NOT NULL,    -- unix time the group's run was queued
    window REAL NOT NULL,       -- alerts within it join that run
    resolved INTEGER NOT NULL DEFAULT 0,      -- every alert of the run has resolved
    resolved_said INTEGER NOT NULL DEFAULT 0  -- and RESOLVED went out (once)
);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS intake_signatures (
    signature TEXT PRIMARY KEY, -- an accepted request's HMAC: the same again is a replay
    expires_at REAL NOT NULL    -- unix time after which its timestamp is refused anyway
);
CREATE INDEX IF NOT EXISTS intake_signatures_expiry ON intake_signatures(expires_at);
"""


@dataclass(frozen=True)
class Signed:
    """A signed request's signature and until when its timestamp is valid."""

    signature: str
    expires_at: float


@dataclass(frozen=True)
class Work:
    id: int
    kind: WorkKind
    route: str
    group_key: str
    playbook: str
    targets: dict[str, str]
    params: dict[str, Any]
    run_id: str | None


@dataclass(frozen=True)
class Dispatched:
    """What the dispatcher did with one alert, for metrics and notifications."""

    alert: Alert
    outcome: AlertOutcome
    run_id: str | None = None
    closes: bool = False  # the last firing alert of its run resolved
    reason: str = ""  # why unrouted or refused
    reason_class: str = ""  # one log line per class, not per alert


class Inbox:
    def __init__(self, journal: Journal, config: DaemonConfig,
                 clock: Callable[[], float] = time.time,
                 fallback: Callable[[Alert], Route | None] | None = None) -> None:
        self.journal, self.config = journal, config
        self.fallback = fallback  # the route of an alert no route takes (triage), if any
        self.clock = clock  # unix time; dedup windows and signature expiry read it
        journal.migrate("inbox", [SCHEMA, "ALTER TABLE work ADD COLUMN owner TEXT"])

    # Intake

    def store(self, alerts: list[Alert]) -> list[int]:
        """Persist alerts (one transaction); the caller answers 202 only after this."""
        ids = self.store_batches([alerts])[0]
        assert ids is not None  # unsigned: never a replay
        return ids

    def store_batches(self, batches: list[list[Alert]],
                      signed: list[Signed | None] | None = None) -> list[list[int] | None]:
        """Several requests' alerts in one transaction (group commit); their ids, per request,
        or None for a signed request whose signature was seen before (a replay: nothing of
        it is stored)."""
        at = now()
        ids: list[list[int] | None] = []
        with self.journal.transaction() as db:
            if signed and any(signed):
                db.execute("DELETE FROM intake_signatures WHERE expires_at < ?",
                           (self.clock(),))
            for alerts, signature in zip(batches, signed or [None] * len(batches), strict=True):
                if signature is not None and not db.execute(
                        "INSERT INTO intake_signatures VALUES (?,?) ON CONFLICT DO NOTHING",
                        (signature.signature, signature.expires_at)).rowcount:
                    ids.append(None)
                    continue
                ids.append([int(db.execute(
                    "INSERT INTO alerts (received_at, source, status, fingerprint, alert) "
                    "VALUES (?,?,?,?,?) RETURNING id", (at, a.source, a.status, a.fingerprint,
                                                        a.model_dump_json())).fetchone()[0])
                    for a in alerts])
        return ids

    # Dispatch

    def dispatch(self, limit: int = 500) -> list[Dispatched]:
        """Route stored alerts, oldest first, in one transaction: every alert's outcome
        commits together with its effect (a queued run, a joined group)."""
        query = "SELECT id, alert FROM alerts WHERE outcome IS NULL ORDER BY id LIMIT ?"
        if not self.journal.read(query, (limit,)):
            return []  # nothing new: no write transaction on every wake-up
        with self.journal.transaction() as db:
            # Read again inside: another replica may have dispatched them meanwhile.
            return [self._dispatch_one(db, alert_id, Alert.model_validate_json(body))
                    for alert_id, body in db.execute(query, (limit,)).fetchall()]

    def _dispatch_one(self, db: Any, alert_id: int, alert: Alert) -> Dispatched:
        route = route_for(alert, self.config.routes)
        if route is None and self.fallback is not None:
            route = self.fallback(alert)
        if route is None:
            db.execute("UPDATE alerts SET outcome='unrouted' WHERE id=?", (alert_id,))
            return Dispatched(alert, AlertOutcome.UNROUTED)
        key = group_key(alert, route)
        group = db.execute("SELECT work_id, opened_at, window, resolved FROM alert_groups "
                           "WHERE group_key=?", (key,)).fetchone()
        open_work = (group[0] if group and not group[3] and self.clock() - group[1] < group[2]
                     else None)
        run_id = self._run_id(db, open_work) if open_work else None
        if alert.status == "resolved":  # never starts a run; it may close the group's run
            return self._resolve(db, alert_id, alert, route.name, key,
                                 group[0] if group and not group[3] else None)
        if open_work is not None:
            db.execute("UPDATE alerts SET outcome='joined', route=?, group_key=?, work_id=? "
                       "WHERE id=?", (route.name, key, open_work, alert_id))
            return Dispatched(alert, AlertOutcome.JOINED, run_id)
        try:
            targets, params = bindings(alert, route)
        except TargetRefused as exc:
            db.execute("UPDATE alerts SET outcome='refused', route=? WHERE id=?",
                       (route.name, alert_id))
            return Dispatched(alert, AlertOutcome.REFUSED, reason=str(exc),
                              reason_class=f"refused:{exc.route}:{exc.role}")
        except Exception as exc:  # a bad template must not stop the inbox
            db.execute("UPDATE alerts SET outcome='unrouted', route=? WHERE id=?",
                       (route.name, alert_id))
            return Dispatched(alert, AlertOutcome.UNROUTED,
                              reason=f"route {route.name}: {exc}",
                              reason_class=f"unrouted:{route.name}:{type(exc).__name__}")
        at = now()
        work_id = db.execute(
            "INSERT INTO work (kind, route, group_key, playbook, targets, params, status, "
            "created_at, updated_at) VALUES ('run',?,?,?,?,?,'queued',?,?) RETURNING id",
            (route.name, key, route.playbook, json.dumps(targets), json.dumps(params, default=str),
             at, at)).fetchone()[0]
        window = route.once_within or self.config.dedup_window
        db.execute("INSERT INTO alert_groups (group_key, work_id, opened_at, window) "
                   "VALUES (?,?,?,?) ON CONFLICT (group_key) DO UPDATE SET "
                   "work_id=excluded.work_id, opened_at=excluded.opened_at, "
                   "window=excluded.window, resolved=0, resolved_said=0",
                   (key, work_id, self.clock(), window))
        db.execute("UPDATE alerts SET outcome='started', route=?, group_key=?, work_id=? "
                   "WHERE id=?", (route.name, key, work_id, alert_id))
        return Dispatched(alert, AlertOutcome.STARTED)

    def _resolve(self, db: Any, alert_id: int, alert: Alert, route: str, key: str,
                 work_id: int | None) -> Dispatched:
        db.execute("UPDATE alerts SET outcome='resolved', route=?, group_key=?, work_id=? "
                   "WHERE id=?", (route, key, work_id, alert_id))
        # Alertmanager says `resolved` for the whole group only when all of it has resolved.
        if work_id is None or alert.group_status == "firing":
            return Dispatched(alert, AlertOutcome.RESOLVED)
        # The run is over only when the latest word of every alert in it is `resolved`.
        firing = db.execute(
            "SELECT count(*) FROM alerts a WHERE a.work_id = ? AND a.status = 'firing' "
            "AND a.id = (SELECT max(b.id) FROM alerts b WHERE b.work_id = a.work_id "
            "AND b.fingerprint = a.fingerprint)", (work_id,)).fetchone()[0]
        if firing:
            return Dispatched(alert, AlertOutcome.RESOLVED)
        db.execute("UPDATE alert_groups SET resolved=1 WHERE group_key=?", (key,))
        # A run still waiting for a worker is no longer needed: nobody will hear of it.
        db.execute("UPDATE work SET status='done', error='its alerts resolved before it "
                   "started', updated_at=? WHERE id=? AND status='queued'", (now(), work_id))
        return Dispatched(alert, AlertOutcome.RESOLVED, self._run_id(db, work_id), closes=True)

    def claim_resolved_notice(self, run_id: str) -> bool:
        """True once per run: when all its alerts resolved and its work is finished, so the
        RESOLVED message always follows the INCIDENT ALERT and goes out once."""
        with self.journal.transaction() as db:
            return bool(db.execute(
                "UPDATE alert_groups SET resolved_said=1 WHERE resolved=1 AND resolved_said=0 "
                "AND work_id IN (SELECT id FROM work WHERE run_id=? AND kind='run') "
                "AND NOT EXISTS (SELECT 1 FROM work WHERE run_id=? "
                "AND status IN ('queued','running'))", (run_id, run_id)).rowcount)

    @staticmethod
    def _run_id(db: Any, work_id: int) -> str | None:
        row = db.execute("SELECT run_id FROM work WHERE id=?", (work_id,)).fetchone()
        return row[0] if row else None

    def queue_approved_resumes(self) -> list[str]:
        """Runs awaiting approval that got one (over HTTP or `runbook approve`): queue their
        resume. A cursor over the approvals table makes each approval count once. An
        approval of a run that something drives right now (a resume for an earlier approval)
        holds the cursor: that resume may have read the gate before it, so it is looked at
        again once the run stops, and a second approver's decision is never lost."""
        newest = self.journal.read("SELECT coalesce(max(id), 0) FROM approvals")[0][0]
        seen = self.journal.read("SELECT position FROM cursors WHERE name='approvals'")
        if seen and seen[0][0] >= newest:
            return []  # nothing new: no write transaction on every wake-up
        with self.journal.transaction() as db:
            row = db.execute("SELECT position FROM cursors WHERE name='approvals'").fetchone()
            position = row[0] if row else 0
            rows = db.execute("SELECT a.id, a.run_id, r.status FROM approvals a JOIN runs r "
                              "ON r.id = a.run_id WHERE a.id > ? ORDER BY a.id",
                              (position,)).fetchall()
            held = [a_id for a_id, _, status in rows if status == RUNNING]
            last = min(held) - 1 if held else max((r[0] for r in rows), default=position)
            db.execute("INSERT INTO cursors VALUES ('approvals', ?) ON CONFLICT (name) DO UPDATE "
                       "SET position=excluded.position", (last,))
            queued = []
            for _, run_id in [(a, r) for a, r, status in rows if status == AWAITING]:
                waiting = db.execute("SELECT 1 FROM work WHERE run_id=? AND kind='resume' AND "
                                     "status='queued'", (run_id,)).fetchone()
                source = db.execute("SELECT route, group_key, playbook FROM work "
                                    "WHERE run_id=? ORDER BY id LIMIT 1", (run_id,)).fetchone()
                if waiting or run_id in queued:
                    continue
                route, key, playbook = source or ("cli", "", "")
                at = now()
                db.execute("INSERT INTO work (kind, route, group_key, playbook, targets, params,"
                           " run_id, status, created_at, updated_at) VALUES "
                           "('resume',?,?,?,'{}','{}',?,'queued',?,?)",
                           (route, key, playbook, run_id, at, at))
                queued.append(run_id)
        return queued

    # Work

    def claim(self) -> Work | None:
        """The oldest queued work, now running and owned by this process (atomically: one
        claimer wins). On PostgreSQL replicas claim at once, each skipping rows another is
        claiming (FOR UPDATE SKIP LOCKED), outside the journal's one-writer lock."""
        shared = self.journal.kind == "postgresql"
        with self.journal.transaction(serialized=not shared) as db:
            row = db.execute(
                "UPDATE work SET status='running', owner=?, updated_at=? WHERE id = (SELECT id "
                "FROM work WHERE status='queued' ORDER BY id LIMIT 1"
                f"{' FOR UPDATE SKIP LOCKED' if shared else ''}) RETURNING id, kind, route, "
                "group_key, playbook, targets, params, run_id",
                (this_process(), now())).fetchone()
        if row is None:
            return None
        return Work(row[0], WorkKind(row[1]), row[2], row[3], row[4], json.loads(row[5]),
                    json.loads(row[6]), row[7])

    def set_run(self, work_id: int, run_id: str) -> None:
        with self.journal.transaction() as db:
            db.execute("UPDATE work SET run_id=?, updated_at=? WHERE id=?",
                       (run_id, now(), work_id))

    def finish(self, work_id: int, error: str | None = None) -> None:
        with self.journal.transaction() as db:
            db.execute("UPDATE work SET status=?, error=?, updated_at=? WHERE id=?",
                       (WorkStatus.FAILED if error else WorkStatus.DONE, error, now(), work_id))

    def requeue_running(self) -> int:
        """Work a dead process had claimed goes back to the queue (this replica's own after
        a restart; another replica's once its heartbeat is older than the lease)."""
        running = self.journal.read("SELECT id, owner FROM work WHERE status='running'")
        dead = [work_id for work_id, owner in running if not self.journal.alive(owner)]
        if not dead:
            return 0
        with self.journal.transaction() as db:
            return sum(int(db.execute("UPDATE work SET status='queued', owner=NULL, "
                                      "updated_at=? WHERE id=? AND status='running'",
                                      (now(), work_id)).rowcount) for work_id in dead)

    def queue_depth(self) -> int:
        return int(self.journal.read("SELECT count(*) FROM work WHERE status='queued'")[0][0])

    def undispatched(self) -> int:
        return int(self.journal.read("SELECT count(*) FROM alerts WHERE outcome IS NULL")[0][0])

    def alerts_of(self, run_id: str) -> list[Alert]:
        rows = self.journal.read("SELECT a.alert FROM alerts a JOIN work w ON w.id = a.work_id "
                                 "WHERE w.run_id = ? ORDER BY a.id", (run_id,))
        return [Alert.model_validate_json(r[0]) for r in rows]

    def reopen(self, run_id: str) -> bool:
        """A run relapsed during its watch: queue a new run of its playbook in the same alert
        group (the group points at it, open again), so the incident goes on as one. False
        when the run was not started by an alert (from the command line)."""
        with self.journal.transaction() as db:
            row = db.execute("SELECT route, group_key, playbook, targets, params FROM work "
                             "WHERE run_id=? AND kind='run' ORDER BY id LIMIT 1",
                             (run_id,)).fetchone()
            if row is None:
                return False
            at = now()
            work_id = db.execute(
                "INSERT INTO work (kind, route, group_key, playbook, targets, params, status, "
                "created_at, updated_at) VALUES ('run',?,?,?,?,?,'queued',?,?) RETURNING id",
                (*row, at, at)).fetchone()[0]
            db.execute("UPDATE alert_groups SET work_id=?, opened_at=?, resolved=0 "
                       "WHERE group_key=?", (work_id, self.clock(), row[1]))
        return True
