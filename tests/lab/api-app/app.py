"""journey-api: the lab's demo API service, so that service incidents happen for real.

Python 3 standard library plus psycopg 3.1 (Debian's python3-psycopg), one file, PID 1 of
its container (tests/lab/api.py starts it). Configured by the environment: PORT (8080),
DATABASE_URL, APP_VERSION, APP_FLAVOR (good | bad), POOL_SIZE (5), POOL_TIMEOUT (2 s).

    GET  /health                  200 without touching the database
    GET  /api/accounts            queries on table accounts, through a pool of
    GET  /api/accounts/<id>       POOL_SIZE connections: 503 when no connection frees
    GET  /api/balance-report      up within POOL_TIMEOUT or the database refuses
    GET  /api/version
    GET  /admin/fault             the fault switches
    POST /admin/fault             {"crash": true} | {"leak_mb_per_s": N} | {"slow_ms": N}
                                  | {"fail_endpoint": PATH} | {"hold_connections": true}
                                  | {"reset": true}

APP_FLAVOR=bad is a broken release: /health answers, the account endpoints fail (500).
Logs go to stdout, one line each: `<ISO-8601 UTC> <LEVEL> <message>`; requests at INFO
(an access log), causes of failures at ERROR with a short traceback where one was raised.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from queue import Empty, LifoQueue
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

PORT = int(os.environ.get("PORT", "8080"))
DATABASE_URL = os.environ.get("DATABASE_URL", "")
VERSION = os.environ.get("APP_VERSION", "0.0.0")
FLAVOR = os.environ.get("APP_FLAVOR", "good")
POOL_SIZE = int(os.environ.get("POOL_SIZE", "5"))
POOL_TIMEOUT = float(os.environ.get("POOL_TIMEOUT", "2"))

Row = dict[str, Any]
Json = dict[str, Any]
_log_lock = threading.Lock()


def log(level: str, message: str, exc: BaseException | None = None) -> None:
    now = datetime.now(UTC)
    text = f"{now:%Y-%m-%dT%H:%M:%S}.{now.microsecond // 1000:03d}Z {level} {message}\n"
    if exc is not None:
        # The innermost frames, as a service's error log shows them.
        text += "".join(traceback.format_exception(exc, limit=-3))
    with _log_lock:  # lines from concurrent requests never interleave
        sys.stdout.write(text)
        sys.stdout.flush()


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


class Unavailable(Exception):
    """The database cannot serve the request now: answered 503."""


class BadRequest(Exception):
    """Answered 400."""


class Slot:
    """One place in the pool; its connection is opened on first use and after a break."""

    conn: psycopg.Connection[Row] | None = None

    def open(self) -> psycopg.Connection[Row]:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = None
            try:
                self.conn = psycopg.connect(
                    DATABASE_URL, autocommit=True, connect_timeout=5,
                    application_name="journey-api", row_factory=dict_row,
                )
            except psycopg.OperationalError as e:
                raise Unavailable(f"database unavailable: {one_line(e)}") from e
        return self.conn


class Pool:
    """A fixed number of slots; a request waits at most POOL_TIMEOUT for a free one."""

    def __init__(self, size: int, timeout: float) -> None:
        self.size, self.timeout = size, timeout
        self._free: LifoQueue[Slot] = LifoQueue()
        for _ in range(size):
            self._free.put(Slot())

    @contextmanager
    def slot(self, timeout: float | None = None) -> Iterator[Slot]:
        try:
            slot = self._free.get(timeout=self.timeout if timeout is None else timeout)
        except Empty:
            raise Unavailable(
                f"pool exhausted: timed out after {self.timeout:.1f}s waiting for a "
                f"connection (pool size {self.size})"
            ) from None
        try:
            yield slot
        finally:
            self._free.put(slot)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        with self.slot() as slot:
            if FAULTS.slow_ms:  # slow work holds its pool connection, as it would for real
                slot.open()
                time.sleep(FAULTS.slow_ms / 1000)
            try:
                return slot.open().execute(sql, params).fetchall()
            except psycopg.OperationalError as e:
                if slot.conn is None or not slot.conn.broken:
                    raise Unavailable(f"database unavailable: {one_line(e)}") from e
                # The server ended this session (a restart, pg_terminate_backend): one retry.
                log("WARN", f"database connection lost, reconnecting: {one_line(e)}")
            try:
                return slot.open().execute(sql, params).fetchall()
            except psycopg.OperationalError as e:
                raise Unavailable(f"database unavailable: {one_line(e)}") from e


POOL = Pool(POOL_SIZE, POOL_TIMEOUT)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def memory_limit_mb() -> float | None:
    for path in ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"):
        try:
            with open(path) as f:
                value = f.read().strip()
        except OSError:
            continue
        # cgroup v1 says "no limit" with a huge number, v2 with "max".
        return int(value) / 2**20 if value.isdigit() and int(value) < 2**50 else None
    return None


class Faults:
    """The switches of /admin/fault, and the threads that carry out leak and hold."""

    def __init__(self) -> None:
        self.slow_ms = 0
        self.fail_endpoint: str | None = None
        self.leak_mb_per_s = 0.0
        self.hold_connections = False
        self._leaked: list[bytes] = []
        self._leak_stop = threading.Event()
        self._hold_stop = threading.Event()

    def state(self) -> Json:
        return {"slow_ms": self.slow_ms, "fail_endpoint": self.fail_endpoint,
                "leak_mb_per_s": self.leak_mb_per_s, "hold_connections": self.hold_connections,
                "leaked_mb": round(sum(map(len, self._leaked)) / 2**20, 1)}

    def switch(self, body: Json) -> Json:
        unknown = set(body) - {"crash", "reset", "slow_ms", "fail_endpoint", "leak_mb_per_s",
                               "hold_connections"}
        if unknown:
            raise BadRequest(f"unknown switches: {', '.join(sorted(unknown))}")
        if body.get("reset"):
            self.slow_ms, self.fail_endpoint = 0, None
            self._stop_leak()
            self._stop_hold()
            self._leaked.clear()
            log("INFO", "faults reset")
        if "slow_ms" in body:
            self.slow_ms = int(body["slow_ms"])
        if "fail_endpoint" in body:
            self.fail_endpoint = body["fail_endpoint"] or None
        if "leak_mb_per_s" in body:
            self._stop_leak()
            if float(body["leak_mb_per_s"]) > 0:
                self._start_leak(float(body["leak_mb_per_s"]))
        if "hold_connections" in body:
            self._stop_hold()
            if body["hold_connections"]:
                self._start_hold()
        if body.get("crash"):
            log("FATAL", "crash switched on: exiting with code 3")
            # After the answer has gone out, so that the caller sees it was accepted.
            threading.Timer(0.2, os._exit, (3,)).start()
        if set(body) - {"reset", "crash"}:
            log("WARN", f"faults switched: {json.dumps(self.state())}")
        return {**self.state(), "crash": bool(body.get("crash"))}

    def _start_leak(self, mb_per_s: float) -> None:
        self.leak_mb_per_s, stop = mb_per_s, threading.Event()
        self._leak_stop = stop
        chunk = int(mb_per_s * 2**20 / 10)

        def leak() -> None:
            limit = memory_limit_mb()
            ticks = 0
            while not stop.wait(0.1):
                # Multiplying writes every byte: RSS grows, not only the address space.
                self._leaked.append(b"x" * chunk)
                ticks += 1
                if ticks % 10 == 0:
                    of = f" of {limit:.0f} MB limit ({rss_mb() / limit:.0%})" if limit else ""
                    log("WARN", f"memory usage growing: rss {rss_mb():.0f} MB{of}")

        threading.Thread(target=leak, name="leak", daemon=True).start()

    def _stop_leak(self) -> None:
        self._leak_stop.set()
        self.leak_mb_per_s = 0.0

    def _start_hold(self) -> None:
        """Like request handlers stuck inside open transactions (waiting on something else):
        each holds a pool connection idle in transaction until switched off, or until the
        database ends its session (then the handler fails and its slot is free again)."""
        self.hold_connections, stop = True, threading.Event()
        self._hold_stop = stop

        def hold() -> None:
            while not stop.is_set():
                try:
                    with POOL.slot(timeout=0.5) as slot:
                        conn = slot.open()
                        conn.execute("BEGIN")
                        conn.execute("SELECT balance FROM accounts WHERE id = 1")
                        # Readable means the server spoke: a terminated session's FATAL.
                        while not stop.is_set():
                            if select.select([conn.fileno()], [], [], 0.5)[0]:
                                break
                        conn.execute("ROLLBACK")
                        return
                except Unavailable as e:
                    if not str(e).startswith("pool exhausted"):
                        log("ERROR", str(e))
                        return
                    # No free slot yet: requests still hold them.
                except psycopg.Error as e:
                    log("ERROR", f"transaction aborted: {one_line(e)}")
                    return

        for i in range(POOL.size):
            threading.Thread(target=hold, name=f"hold-{i}", daemon=True).start()

    def _stop_hold(self) -> None:
        self._hold_stop.set()
        self.hold_connections = False


FAULTS = Faults()


def account_json(row: Row) -> Json:
    if FLAVOR == "bad":
        # The bug of release "bad": written against a migration (balance -> balance_cents)
        # that never ran.
        return {"id": row["id"], "balance": row["balance_cents"] / 100}
    return {"id": row["id"], "balance": row["balance"]}


def route(method: str, path: str, body: Json | None) -> tuple[int, Json]:
    if method == "GET" and path == "/health":
        return 200, {"status": "ok", "version": VERSION}
    if method == "GET" and path == "/api/version":
        return 200, {"version": VERSION, "flavor": FLAVOR}
    if path == "/admin/fault":
        if method == "POST":
            return 200, FAULTS.switch(body or {})
        return 200, FAULTS.state()
    account = re.fullmatch(r"/api/accounts/([^/]+)", path)
    if method != "GET" or not (path in ("/api/accounts", "/api/balance-report") or account):
        return 404, {"error": "not found"}

    if FAULTS.fail_endpoint and FAULTS.fail_endpoint in (path, "/api/accounts/<id>"
                                                         if account else path):
        raise RuntimeError(f"injected failure in {path} (fault fail_endpoint)")
    if path == "/api/accounts":
        rows = POOL.query("SELECT id, balance FROM accounts ORDER BY id LIMIT 100")
        return 200, {"accounts": [account_json(r) for r in rows]}
    if account:
        if not account[1].isdigit():
            raise BadRequest("account id must be a number")
        rows = POOL.query("SELECT id, balance FROM accounts WHERE id = %s", (int(account[1]),))
        return (200, account_json(rows[0])) if rows else (404, {"error": "no such account"})
    [report] = POOL.query(
        "SELECT count(*) AS accounts, coalesce(sum(balance), 0) AS total, "
        "min(balance) AS min, max(balance) AS max FROM accounts"
    )
    return 200, report


class Handler(BaseHTTPRequestHandler):
    server_version = f"journey-api/{VERSION}"

    def do_GET(self) -> None:
        self.handle_request("GET")

    def do_POST(self) -> None:
        self.handle_request("POST")

    def handle_request(self, method: str) -> None:
        started = time.monotonic()
        path = self.path.split("?", 1)[0]
        try:
            status, answer = route(method, path, self.json_body())
        except BadRequest as e:
            status, answer = 400, {"error": str(e)}
        except Unavailable as e:
            log("ERROR", str(e))
            status, answer = 503, {"error": str(e)}
        except Exception as e:
            log("ERROR", f"{method} {path} failed: {type(e).__name__}: {e}", e)
            status, answer = 500, {"error": "internal server error"}
        data = json.dumps(answer).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client went away; the access line below still records the request
        log("INFO", f"{method} {path} {status} {(time.monotonic() - started) * 1000:.0f}ms")

    def json_body(self) -> Json | None:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return None
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError as e:
            raise BadRequest(f"invalid JSON: {e}") from None
        if not isinstance(body, dict):
            raise BadRequest("expected a JSON object")
        return body

    def log_message(self, format: str, *args: Any) -> None:
        pass  # handle_request writes the access log


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops connections under a burst of probes


def describe_database() -> str:
    """The DSN without its password, for the start-up line."""
    try:
        p = conninfo_to_dict(DATABASE_URL)
    except psycopg.ProgrammingError:
        return "an unparseable DATABASE_URL"
    return f"postgresql://{p.get('user', '')}@{p.get('host', '')}:{p.get('port', 5432)}" \
           f"/{p.get('dbname', '')}"


def main() -> None:
    server = Server(("", PORT), Handler)

    def stop(signum: int, frame: object) -> None:
        log("INFO", f"{signal.Signals(signum).name} received: shutting down")
        # shutdown() waits for serve_forever(), which runs in this (the main) thread.
        threading.Thread(target=server.shutdown).start()

    # PID 1 gets no default signal handlers: without these, `docker stop` waits 10 s.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log("INFO", f"journey-api {VERSION} ({FLAVOR}) listening on :{PORT}; database "
                f"{describe_database()}, pool size {POOL_SIZE}, pool timeout {POOL_TIMEOUT}s")
    server.serve_forever()
    log("INFO", "stopped")


if __name__ == "__main__":
    main()
