"""PostgreSQL: read-only probes and gated backend actions (psycopg 3).

Probes get a `ReadOnlySession`: the session is opened with default_transaction_read_only,
every query runs in a READ ONLY transaction that is rolled back, statement_timeout and
lock_timeout bound it, and the handle binds parameters itself and lets the server run only
text that `postgres_guard` has parsed as one read-only query calling only allowed functions
(pg_terminate_backend does not write, so a read-only transaction alone would allow it).
Actions get an `ActionSession` and run only through the gate. Runbook opens at most
`max_sessions` sessions per database, so it does not make an exhausted pool worse.

Inventory fields: `dsn_env` (or `dsn` without a password, or DATABASE_URL, or libpq's PG*
variables), optional `action_dsn_env` for a role allowed to signal backends.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runner.context import StepContext
from runner.errors import PermanentError, StepError, StepTimeout, TemporaryError
from runner.model import Duration
from runner.redact import SECRETS
from runner.registry import Backend, Registry, StepKind, Target

from .postgres_guard import check_read_only_sql

APPLICATION_NAME = "runbook"
KIND = "postgres"


class PostgresSettings(BaseModel):
    """How to reach a database; secrets only by reference."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dsn_env: str | None = Field(None, description="env var holding the DSN for probes")
    action_dsn_env: str | None = Field(None, description="env var with the DSN for remedies")
    dsn: str | None = Field(None, description="DSN without a password")
    connect_timeout: Duration = 5.0
    statement_timeout: Duration = 10.0
    max_sessions: int = Field(2, ge=1, le=16, description="runbook's sessions at once")

    @field_validator("dsn")
    @classmethod
    def _no_inline_password(cls, value: str | None) -> str | None:
        if value and (re.search(r"://[^/@\s]*:[^@\s]*@", value)
                      or re.search(r"\bpassword\s*=", value, re.IGNORECASE)):
            raise ValueError("the DSN holds a password: put the DSN in an env var and "
                             "name it with dsn_env")
        return value


# The handles


class _Session:
    def __init__(self, conn: Any, target: str) -> None:
        self._conn, self.target = conn, target

    def cancel(self) -> None:
        """Cancel the running query (called from another thread when a step times out)."""
        self._conn.cancel_safe(timeout=2.0)

    def _rows(self, sql: str, params: Any) -> list[dict[str, Any]]:
        with _translated_errors(self.target), self._conn.cursor() as cursor:
            cursor.execute(sql, params)
            if cursor.description is None:
                return []
            names = [c.name for c in cursor.description]
            return [dict(zip(names, map(_jsonable, row), strict=True))
                    for row in cursor.fetchall()]


class ReadOnlySession(_Session):
    """What a probe gets: queries only, each in a READ ONLY transaction rolled back after.

    Parameters are bound on the client, so that the guard checks exactly the text the
    server then executes (sent with no parameters: nothing is substituted after the check).
    """

    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        import psycopg

        with _translated_errors(self.target), psycopg.ClientCursor(self._conn) as binder:
            text = binder.mogrify(sql, params if params is not None else ())
        check_read_only_sql(text)
        try:
            return self._rows(text, None)
        finally:
            self._conn.rollback()

    def one(self, sql: str, params: Any = None) -> dict[str, Any]:
        rows = self.query(sql, params)
        return rows[0] if rows else {}


class ActionSession(_Session):
    """What a remedy gets, only through the gate: statements autocommit."""

    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        return self._rows(sql, params if params is not None else ())


# The connector


class PostgresConnector:
    def __init__(self) -> None:
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    def _slot(self, target: Target, settings: PostgresSettings) -> threading.BoundedSemaphore:
        with self._lock:
            return self._slots.setdefault(target.name,
                                          threading.BoundedSemaphore(settings.max_sessions))

    def _server_full(self, target: Target) -> None:
        """The server refused a session for want of slots: from now on use one at a time."""
        with self._lock:
            self._slots[target.name] = threading.BoundedSemaphore(1)

    @contextmanager
    def _session(self, target: Target, timeout: float, *, action: bool) -> Iterator[Any]:
        import psycopg

        settings = target.settings
        assert isinstance(settings, PostgresSettings)
        slot = self._slot(target, settings)
        if not slot.acquire(timeout=timeout):
            raise TemporaryError(f"all {settings.max_sessions} runbook sessions to "
                                 f"{target.name} stayed busy for {timeout:g}s")
        try:
            statement_ms = int(min(settings.statement_timeout, timeout) * 1000)
            options = f"-c statement_timeout={statement_ms} -c lock_timeout={statement_ms}"
            if not action:
                # The guard parses strings as the server does only with standard strings.
                options += (" -c default_transaction_read_only=on"
                            " -c standard_conforming_strings=on")
            conninfo = _conninfo(target, settings, action=action)
            with _translated_errors(target.name, on_full=lambda: self._server_full(target)):
                conn = psycopg.connect(
                    conninfo, application_name=APPLICATION_NAME, autocommit=action,
                    **merged_with_dsn(conninfo, options,
                                      max(1, int(min(settings.connect_timeout, timeout)))))
            try:
                if action:
                    yield ActionSession(conn, target.name)
                else:
                    conn.read_only = True
                    yield ReadOnlySession(conn, target.name)
            finally:
                conn.close()
        finally:
            slot.release()

    def prepare(self) -> None:
        import psycopg  # noqa: F401 - imported once, before any step's clock starts

    def probe(self, target: Target, ctx: StepContext) -> Any:
        return self._session(target, ctx.timeout, action=False)

    def action(self, target: Target, ctx: StepContext) -> Any:
        return self._session(target, ctx.timeout, action=True)

    def identity(self, target: Target, timeout: float) -> dict[str, str]:
        """host:port/dbname and the cluster's system identifier: an approval binds to the
        database, so another server behind the same DSN variable voids it."""
        import psycopg

        with self._session(target, timeout, action=False) as session:
            info = session._conn.info
            where = f"{info.host}:{info.port}/{info.dbname}"
            try:
                [row] = session._rows("SELECT system_identifier::text AS id "
                                      "FROM pg_control_system()", None)
                system = str(row["id"])
            except PermanentError:  # pg_control_system() needs pg_monitor (or superuser)
                session._conn.rollback()
                system = "unreadable (the probe role lacks pg_monitor)"
        identity = {"database": where, "system_identifier": system}
        settings = target.settings
        assert isinstance(settings, PostgresSettings)
        if settings.action_dsn_env:  # remedies connect there: say where, never with what
            parts = psycopg.conninfo.conninfo_to_dict(_conninfo(target, settings, action=True))
            identity["action_database"] = (f"{parts.get('host', '')}:{parts.get('port', '')}"
                                           f"/{parts.get('dbname', '')}")
        return identity

    def warnings(self, target: Target, timeout: float = 5.0) -> list[str]:
        """What `plan` and `validate` say about the probe role: one that may signal other
        sessions (a superuser, a member of pg_signal_backend) leaves the SQL guard as the
        only thing between a probe and a killed session. Nothing when the DSN is not set."""
        settings = target.settings
        assert isinstance(settings, PostgresSettings)
        try:
            _conninfo(target, settings, action=False)
        except PermanentError:
            return []  # nothing to connect to here; a run says so itself
        try:
            with self._session(target, timeout, action=False) as db:
                role = db.one(_SIGNAL_RIGHTS_SQL)
        except StepError as exc:
            return [f"could not check whether the probe role may signal sessions: {exc}"]
        if not (role["superuser"] or role["can_signal"]):
            return []
        why = "is a superuser" if role["superuser"] else "is a member of pg_signal_backend"
        return [f"the probe role {role['name']} {why}: it could terminate other sessions. "
                "Give dsn_env a role in pg_monitor without pg_signal_backend, and signalling "
                "to action_dsn_env."]


_SIGNAL_RIGHTS_SQL = """
SELECT current_user AS name, r.rolsuper AS superuser,
       pg_has_role(current_user, 'pg_signal_backend', 'MEMBER') AS can_signal
FROM pg_roles r WHERE r.rolname = current_user
"""


def _conninfo(target: Target, settings: PostgresSettings, *, action: bool) -> str:
    env_var = (settings.action_dsn_env if action and settings.action_dsn_env
               else settings.dsn_env)
    if env_var:
        value = os.environ.get(env_var)
        if not value:
            raise PermanentError(f"{env_var} is not set: it holds the DSN of {target.name}")
    elif settings.dsn:
        value = settings.dsn
    else:
        value = os.environ.get("DATABASE_URL", "")  # else libpq's PG* variables apply
    from psycopg.conninfo import conninfo_to_dict

    try:
        SECRETS.register(str(conninfo_to_dict(value).get("password") or ""))
    except Exception as exc:
        raise PermanentError(f"the DSN of {target.name} does not parse: "
                             f"{SECRETS.scrub(str(exc))}") from None
    SECRETS.register(os.environ.get("PGPASSWORD"))
    return value


def merged_with_dsn(conninfo: str, options: str, connect_timeout: int) -> dict[str, Any]:
    """libpq's `options` and `connect_timeout` for a session: runbook's merged with the
    user's (the DSN's, else PGOPTIONS and PGCONNECT_TIMEOUT, as libpq reads them), not in
    their place. The user's options first and runbook's after: a DSN's `-c search_path=...`
    holds, and where both set a parameter runbook's read-only and timeout settings win (the
    server applies the options in order). The shorter connect timeout (0: libpq's "wait
    for ever", so runbook's)."""
    from psycopg.conninfo import conninfo_to_dict

    given = conninfo_to_dict(conninfo)
    theirs = str(given.get("options") or os.environ.get("PGOPTIONS") or "").strip()
    try:
        their_timeout = int(str(given.get("connect_timeout")
                                or os.environ.get("PGCONNECT_TIMEOUT") or 0))
    except ValueError:
        their_timeout = 0  # libpq itself refuses it, with its own message
    return {"options": f"{theirs} {options}".strip(),
            "connect_timeout": min(their_timeout, connect_timeout) if their_timeout > 0
            else connect_timeout}


# What the server says when no connection slot is left (sqlstate 53300; at connect time
# libpq reports only the message).
_SERVER_FULL = re.compile(r"too many clients|remaining connection slots are reserved")


@contextmanager
def _translated_errors(target: str, on_full: Any = None) -> Iterator[None]:
    """psycopg errors as runbook's temporary/permanent kinds, with secrets masked."""
    import psycopg
    from psycopg import errors

    try:
        yield
    except errors.QueryCanceled as exc:
        raise StepTimeout(f"{target}: query cancelled ({_first_line(exc)})") from None
    except (errors.InvalidAuthorizationSpecification, errors.InvalidPassword) as exc:
        raise PermanentError(f"{target}: {_first_line(exc)}") from None
    except psycopg.OperationalError as exc:
        if _SERVER_FULL.search(str(exc)):
            if on_full is not None:
                on_full()
            raise TemporaryError(f"{target}: no free connection slot: the server is full "
                                 f"({_first_line(exc).split('FATAL:')[-1].strip()})") from None
        raise TemporaryError(f"{target}: {_first_line(exc)}") from None
    except psycopg.Error as exc:
        raise PermanentError(f"{target}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return str(SECRETS.scrub(lines[0] if lines else type(exc).__name__))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, IPv4Address | IPv6Address):
        return str(value)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


# Probes


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Threshold(BaseModel):
    model_config = ConfigDict(extra="forbid")
    older_than: Duration = 60.0
    limit: int = Field(50, ge=1, le=1000)


class LongQueries(Threshold):
    include_lock_waits: bool = Field(False, description="count sessions waiting on a lock "
                                     "(victims of a blocker, not culprits)")


class TopN(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(10, ge=1, le=100)


_SESSION_COLUMNS = """
    a.pid, a.backend_start, a.usename AS user, a.application_name AS application,
    a.client_addr::text AS client, a.state, a.wait_event_type, a.wait_event,
    round(extract(epoch FROM now() - a.xact_start)::numeric, 1) AS xact_age_s,
    round(extract(epoch FROM now() - a.query_start)::numeric, 1) AS query_age_s,
    round(extract(epoch FROM now() - a.state_change)::numeric, 1) AS state_age_s,
    left(a.query, 300) AS query"""


def _identities(sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """pid + backend_start: what actions re-check so they never hit a recycled pid."""
    return [{"pid": s["pid"], "backend_start": s["backend_start"]} for s in sessions]


def ping(db: ReadOnlySession, params: NoParams) -> dict[str, Any]:
    started = time.perf_counter()
    row = db.one("SELECT current_setting('server_version') AS server_version, version() AS "
                 "version, pg_is_in_recovery() AS in_recovery, current_database() AS database")
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2), **row}


def connection_usage(db: ReadOnlySession, params: TopN) -> dict[str, Any]:
    limits = db.one(
        "SELECT current_setting('max_connections')::int AS max_connections, "
        "current_setting('superuser_reserved_connections')::int AS superuser_reserved, "
        "coalesce(current_setting('reserved_connections', true), '0')::int AS reserved")
    sessions = db.query(
        "SELECT coalesce(state, 'unknown') AS state, usename AS user, "
        "coalesce(nullif(application_name, ''), '(none)') AS application, "
        "coalesce(client_addr::text, 'local') AS client "
        "FROM pg_stat_activity WHERE backend_type = 'client backend'")
    available = (limits["max_connections"] - limits["superuser_reserved"] - limits["reserved"])
    ours = sum(1 for s in sessions if s["application"] == APPLICATION_NAME)
    # runbook's own sessions come and go with its probes: count only the others
    sessions = [s for s in sessions if s["application"] != APPLICATION_NAME]
    used = len(sessions)
    return {
        "used": used,
        "max": available,
        "max_connections": limits["max_connections"],
        "reserved": limits["superuser_reserved"] + limits["reserved"],
        "free": max(available - used, 0),
        "used_pct": round(100.0 * used / available, 1) if available > 0 else 100.0,
        "by_state": _count(sessions, "state"),
        "by_application": _top(sessions, "application", params.limit),
        "by_user": _top(sessions, "user", params.limit),
        "by_client": _top(sessions, "client", params.limit),
        "runbook_sessions": ours,
    }


def _count(rows: list[dict[str, Any]], key: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row[key])] = counts.get(str(row[key]), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _top(rows: list[dict[str, Any]], key: str, limit: int) -> list[dict[str, Any]]:
    return [{"name": k, "count": v} for k, v in list(_count(rows, key).items())[:limit]]


def idle_in_transaction(db: ReadOnlySession, params: Threshold) -> dict[str, Any]:
    sessions = db.query(
        f"SELECT {_SESSION_COLUMNS} FROM pg_stat_activity a "
        "WHERE a.state IN ('idle in transaction', 'idle in transaction (aborted)') "
        "AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid() "
        "AND now() - a.state_change >= make_interval(secs => %s) "
        "ORDER BY a.state_change LIMIT %s", (params.older_than, params.limit))
    return {"count": len(sessions), "older_than_s": params.older_than,
            "oldest_s": max((s["state_age_s"] for s in sessions), default=0),
            "by_application": _top(sessions, "application", 5),
            "by_user": _top(sessions, "user", 5),
            "pids": [s["pid"] for s in sessions], "backends": _identities(sessions),
            "sessions": sessions}


def long_running_queries(db: ReadOnlySession, params: LongQueries) -> dict[str, Any]:
    lock_waits = ("" if params.include_lock_waits
                  else "AND a.wait_event_type IS DISTINCT FROM 'Lock' ")
    queries = db.query(
        f"SELECT {_SESSION_COLUMNS} FROM pg_stat_activity a "
        "WHERE a.state = 'active' AND a.backend_type = 'client backend' "
        f"AND a.pid <> pg_backend_pid() {lock_waits}"
        "AND now() - a.query_start >= make_interval(secs => %s) "
        "ORDER BY a.query_start LIMIT %s", (params.older_than, params.limit))
    return {"count": len(queries), "older_than_s": params.older_than,
            "longest_s": max((q["query_age_s"] for q in queries), default=0),
            "pids": [q["pid"] for q in queries], "backends": _identities(queries),
            "queries": queries}


def blocking_locks(db: ReadOnlySession, params: TopN) -> dict[str, Any]:
    waiting = db.query(
        f"SELECT {_SESSION_COLUMNS}, pg_blocking_pids(a.pid) AS blocked_by "
        "FROM pg_stat_activity a WHERE cardinality(pg_blocking_pids(a.pid)) > 0 "
        "ORDER BY a.query_start")
    not_granted = db.one("SELECT count(*) AS n FROM pg_locks WHERE NOT granted")["n"]
    blocked = {w["pid"] for w in waiting}
    blocker_pids = sorted({pid for w in waiting for pid in w["blocked_by"]})
    blockers = db.query(f"SELECT {_SESSION_COLUMNS} FROM pg_stat_activity a "
                        "WHERE a.pid = ANY(%s)", (blocker_pids,)) if blocker_pids else []
    waiters_of: dict[int, set[int]] = {pid: set() for pid in blocker_pids}
    for w in waiting:
        for pid in w["blocked_by"]:
            waiters_of[pid].add(w["pid"])

    def all_waiters(pid: int, seen: set[int]) -> set[int]:
        for waiter in waiters_of.get(pid, set()) - seen:
            seen.add(waiter)
            all_waiters(waiter, seen)
        return seen

    roots = [{**b, "waiters": sorted(all_waiters(b["pid"], set()))}
             for b in blockers if b["pid"] not in blocked]
    roots.sort(key=lambda r: -len(r["waiters"]))
    roots = roots[: params.limit]
    idle = [r for r in roots if str(r["state"]).startswith("idle in transaction")]
    active = [r for r in roots if r["state"] == "active"]
    return {"waiting": len(waiting), "locks_not_granted": not_granted,
            "root_blockers": roots, "root_pids": [r["pid"] for r in roots],
            "backends": _identities(roots),
            # Idle blockers do nothing but hold locks: ending them only rolls back their work.
            "idle_root_backends": _identities(idle), "active_root_backends": _identities(active),
            "blocked_sessions": waiting[: params.limit]}


def slowest_statements(db: ReadOnlySession, params: TopN) -> dict[str, Any]:
    present = db.one("SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'")
    if not present:
        database = db.one("SELECT current_database() AS d")["d"]
        return {"available": False, "statements": [],
                "note": f"pg_stat_statements is not installed in database {database} "
                          "(CREATE EXTENSION pg_stat_statements; it also needs "
                          "shared_preload_libraries)"}
    try:
        rows = db.query(
            "SELECT queryid::text AS queryid, calls, round(mean_exec_time::numeric, 2) AS mean_ms,"
            " round(total_exec_time::numeric, 2) AS total_ms, rows, left(query, 300) AS query "
            "FROM pg_stat_statements ORDER BY mean_exec_time DESC LIMIT %s", (params.limit,))
    except PermanentError as exc:  # e.g. installed but not in shared_preload_libraries
        return {"available": False, "statements": [], "note": str(exc)}
    return {"available": True, "version": present["extversion"], "statements": rows}


# Actions


class BackendRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    pid: int
    backend_start: str


class SignalParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backends: list[BackendRef] = Field(description="pid + backend_start from a probe")
    max: int = Field(10, ge=1, le=500, description="never signal more than this many")


# One statement re-checks the session and signals it, so a pid that was reused, or that
# belongs to a superuser, a replication role, a background worker or runbook, is left alone.
_SIGNAL_SQL = """
SELECT a.pid, {call} AS done
FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid
WHERE a.pid = %(pid)s AND a.backend_start = %(start)s::timestamptz
  AND a.backend_type = 'client backend' AND NOT r.rolsuper AND NOT r.rolreplication
  AND a.pid <> pg_backend_pid() AND a.application_name IS DISTINCT FROM 'runbook'
"""
_WHY_NOT_SQL = """
SELECT a.backend_start = %(start)s::timestamptz AS same, a.backend_type, r.rolsuper,
       r.rolreplication, a.pid = pg_backend_pid() OR a.application_name = 'runbook' AS ours
FROM pg_stat_activity a LEFT JOIN pg_roles r ON r.oid = a.usesysid WHERE a.pid = %(pid)s
"""


def _signal(db: ActionSession, params: SignalParams, call: str) -> dict[str, Any]:
    done: list[int] = []
    skipped: list[dict[str, Any]] = []
    for ref in params.backends:
        if len(done) >= params.max:
            skipped.append({"pid": ref.pid, "reason": f"over the max of {params.max}"})
            continue
        args = {"pid": ref.pid, "start": ref.backend_start}
        rows = db.query(_SIGNAL_SQL.format(call=call), args)
        if rows and rows[0]["done"]:
            done.append(ref.pid)
        else:
            skipped.append({"pid": ref.pid, "reason": _why_not(db, args)})
    return {"signalled": done, "count": len(done), "skipped": skipped,
            "requested": len(params.backends), "max": params.max}


def _why_not(db: ActionSession, args: dict[str, Any]) -> str:
    rows = db.query(_WHY_NOT_SQL, args)
    if not rows:
        return "gone: the session had already ended"
    row = rows[0]
    if not row["same"]:
        return "pid now belongs to another session (backend_start differs)"
    if row["backend_type"] != "client backend":
        return f"not a client backend ({row['backend_type']})"
    if row["rolsuper"]:
        return "superuser session: never touched"
    if row["rolreplication"]:
        return "replication role: never touched"
    if row["ours"]:
        return "runbook's own session"
    return "the server refused to signal it"


def terminate_backends(db: ActionSession, params: SignalParams) -> dict[str, Any]:
    # With a timeout (PostgreSQL 14+), it returns once the session has really gone.
    result = _signal(db, params, "pg_terminate_backend(a.pid, 5000)")
    return {**result, "terminated": result["signalled"]}


def cancel_backends(db: ActionSession, params: SignalParams) -> dict[str, Any]:
    result = _signal(db, params, "pg_cancel_backend(a.pid)")
    return {**result, "cancelled": result["signalled"]}


def _explain(verb: str) -> Any:
    def explain(params: SignalParams) -> str:
        n = min(len(params.backends), params.max)
        pids = ", ".join(str(b.pid) for b in params.backends[: params.max][:12])
        more = "…" if n > 12 else ""
        return (f"{verb} {n} backend(s) (max {params.max}): pids {pids}{more}; each re-checked "
                "first, never superuser, replication, background or runbook sessions")
    return explain


def register(registry: Registry) -> None:
    registry.add_backend(Backend(KIND, PostgresConnector(), PostgresSettings,
                                 "PostgreSQL over libpq (psycopg 3)"))

    def probe(name: str, func: Any, params: type[BaseModel], summary: str,
              result: dict[str, str]) -> None:
        registry.add(StepKind(f"postgres.{name}", KIND, func, params, False, summary, result))

    probe("ping", ping, NoParams, "connect and measure latency; server version",
          {"ok": "true when the server answered", "latency_ms": "query round trip",
           "server_version": "e.g. 15.8", "in_recovery": "true on a standby"})
    probe("connection_usage", connection_usage, TopN,
          "client connections in use against max_connections minus reserved slots",
          {"used": "client backends, runbook's own excluded",
           "max": "slots for non-superusers", "used_pct": "percent",
           "free": "slots left", "by_state": "state -> count",
           "by_application / by_user / by_client": "top N as [{name, count}]"})
    probe("idle_in_transaction", idle_in_transaction, Threshold,
          "sessions idle inside an open transaction longer than older_than",
          {"count": "how many", "oldest_s": "longest idle", "pids": "their pids",
           "by_application / by_user": "top 5 as [{name, count}]",
           "backends": "[{pid, backend_start}] for remedies", "sessions": "details"})
    probe("long_running_queries", long_running_queries, LongQueries,
          "queries active longer than older_than",
          {"count": "how many", "longest_s": "oldest query age", "pids": "their pids",
           "backends": "[{pid, backend_start}] for remedies", "queries": "details"})
    probe("blocking_locks", blocking_locks, TopN,
          "sessions waiting on locks, and the root blockers holding them up",
          {"waiting": "sessions blocked", "locks_not_granted": "pg_locks rows waiting",
           "root_blockers": "blockers not themselves blocked, with all their waiters",
           "backends": "root blockers as [{pid, backend_start}]",
           "idle_root_backends / active_root_backends": "root blockers by state"})
    probe("slowest_statements", slowest_statements, TopN,
          "slowest statements by mean time from pg_stat_statements, when installed",
          {"available": "false when the extension is missing", "statements": "top N",
           "note": "why not, when not available"})
    for name, func, verb in (("terminate_backends", terminate_backends, "terminate"),
                             ("cancel_backends", cancel_backends, "cancel the query of")):
        registry.add(StepKind(
            f"postgres.{name}", KIND, func, SignalParams, True,
            f"{verb} the given sessions (pid + backend_start), at most max",
            {"signalled": "pids signalled", "skipped": "[{pid, reason}] left alone"},
            timeout=30.0, explain=_explain(verb)))
