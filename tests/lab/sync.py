"""The sync-failure lab: a sync host, its database tables, and an upstream API stand-in.

    tables = prepare_sync_tables(db)                  # sync_runs, synced_orders; granted
    with Upstream() as upstream, sync_host(key, container_dsn(db.app), upstream) as host:
        upstream.rate_limited = True                  # every answer is 429 from now on
        run_sync(host, "acme", "--force")             # (exit code, output), as the runbook user
        upstream.expire_token("globex")               # globex's orders answer 401

The sync host is the `sync-host` lab image: the sshd host plus `sync-engine`
(tests/lab/sync-engine), which writes `/home/runbook/logs/sync-YYYY-MM-DD.log`, keeps a
state file per client and records its runs in `sync_runs` in the lab PostgreSQL, as
journey_app (its DSN is in /etc/sync-engine/env, so that SSH sessions see it too).

`Upstream` is a real HTTP server on a thread, listening on the Docker bridge's gateway
address so that the containers and runbook (on this machine) both reach it: GET /health,
GET /v2/orders?client=&page= with `Authorization: Bearer lab-token-<client>`. What it
answers is switched by attributes: `rate_limited` (429 + Retry-After: 60 everywhere),
`down` (503), `delay` (seconds before each answer: past the engine's REQUEST_TIMEOUT that
is an ETIMEDOUT), and per client `expire_token` (401), `send_invalid` (an order without an
email), `send_negative` (an order whose amount breaks a check constraint).
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg

from tests.lab.faults import LabDatabase
from tests.lab.images import require_image
from tests.lab.sshd import LABEL, USER, ClientKey, SshdHost, docker_exec, remove, wait_for_sshd

LOG_DIR = f"/home/{USER}/logs"
STATE_DIR = f"/home/{USER}/state"
ORDERS_PER_PAGE = 5

# The engine's settings in the lab: quick retries and a short request timeout, the real
# back-off (60 s, so that a re-run right after a failure needs --force).
ENGINE_SETTINGS = {"REQUEST_TIMEOUT": "1", "RETRIES": "2", "RETRY_PAUSE": "0.1",
                   "BACKOFF": "60", "PAGES": "2"}

_TABLES = """
CREATE TABLE IF NOT EXISTS sync_runs (
    id bigserial PRIMARY KEY,
    client text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status text NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    records int NOT NULL DEFAULT 0,
    flags text,
    error text
);
CREATE TABLE IF NOT EXISTS synced_orders (
    client text NOT NULL,
    order_id int NOT NULL,
    email text NOT NULL,
    amount numeric NOT NULL CONSTRAINT synced_orders_amount_check CHECK (amount >= 0),
    synced_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client, order_id)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON sync_runs, synced_orders TO journey_app;
GRANT USAGE ON SEQUENCE sync_runs_id_seq TO journey_app;
GRANT SELECT ON sync_runs TO runbook_ro;
"""


# The database side


def prepare_sync_tables(db: LabDatabase) -> None:
    """The sync's tables, empty, with the lab roles' grants."""
    with psycopg.connect(db.admin, autocommit=True) as conn:
        conn.execute(_TABLES.encode())
        conn.execute("TRUNCATE sync_runs, synced_orders RESTART IDENTITY")


def record_run(db: LabDatabase, client: str, status: str, finished_ago: timedelta) -> None:
    """A run from before the incident (e.g. yesterday's success), as the admin."""
    finished = datetime.now(UTC) - finished_ago
    with psycopg.connect(db.admin, autocommit=True) as conn:
        conn.execute("INSERT INTO sync_runs (client, started_at, finished_at, status, records) "
                     "VALUES (%s, %s, %s, %s, 10)",
                     (client, finished - timedelta(seconds=20), finished, status))


def sync_runs(db: LabDatabase, client: str) -> list[dict[str, Any]]:
    """The client's runs, oldest first."""
    with psycopg.connect(db.admin, autocommit=True) as conn:
        cursor = conn.execute("SELECT id, status, finished_at, records, flags, error "
                              "FROM sync_runs WHERE client = %s ORDER BY id", (client,))
        names = [c.name for c in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


# The upstream API


class Upstream:
    """The upstream API stand-in: a real HTTP server on a thread (see the module doc)."""

    def __init__(self, host: str | None = None) -> None:
        self.rate_limited = False
        self.down = False
        self.delay = 0.0
        self.expired: set[str] = set()
        self.invalid: set[str] = set()
        self.negative: set[str] = set()
        self.answered: Counter[tuple[str, int]] = Counter()  # (path, status) -> count
        self._server = ThreadingHTTPServer((host or bridge_gateway(), 0), _handler(self))
        self._server.daemon_threads = True  # a delayed answer never holds up the shutdown
        self._thread = threading.Thread(target=self._server.serve_forever,
                                         name="upstream-api", daemon=True)

    @property
    def url(self) -> str:
        address, port = self._server.server_address[:2]
        return f"http://{address!s}:{port}"

    def expire_token(self, client: str) -> None:
        self.expired.add(client)

    def refresh_token(self, client: str) -> None:
        self.expired.discard(client)

    def send_invalid(self, client: str, on: bool = True) -> None:
        (self.invalid.add if on else self.invalid.discard)(client)

    def send_negative(self, client: str, on: bool = True) -> None:
        (self.negative.add if on else self.negative.discard)(client)

    def recover(self) -> None:
        """Healthy again: no throttling, no outage, no delay (expired tokens stay so)."""
        self.rate_limited, self.down, self.delay = False, False, 0.0

    def start(self) -> Upstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, path: str, query: dict[str, str], token: str) -> tuple[int, dict[str, Any]]:
        if self.down:
            return 503, {"error": "maintenance"}
        if self.rate_limited:
            return 429, {"error": "too many requests"}
        if path == "/health":
            return 200, {"status": "ok"}
        if path != "/v2/orders":
            return 404, {"error": "not found"}
        client = query.get("client", "")
        if token != f"Bearer lab-token-{client}" or client in self.expired:
            return 401, {"error": "token expired"}
        page = int(query.get("page", "1"))
        orders: list[dict[str, Any]] = [
            {"id": 1000 + page * 100 + i, "email": f"buyer{i}@{client}.example",
             "amount": 10.0 + i} for i in range(ORDERS_PER_PAGE)]
        if client in self.invalid:
            del orders[1]["email"]
        if client in self.negative:
            orders[2]["amount"] = -5.0
        return 200, {"orders": orders, "page": page}


def _handler(upstream: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if upstream.delay:
                time.sleep(upstream.delay)
            parsed = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(parsed.query))
            status, body = upstream.answer(parsed.path, query,
                                           self.headers.get("Authorization", ""))
            upstream.answered[(parsed.path, status)] += 1
            data = json.dumps(body).encode()
            with suppress(OSError):  # the client may have given up (a timeout)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "60")
                self.end_headers()
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the counters say what was answered

    return Handler


def bridge_gateway() -> str:
    """This machine's address on Docker's default bridge: containers reach it, and so do we."""
    import docker

    network = docker.from_env().networks.get("bridge")
    config = network.attrs["IPAM"]["Config"][0]
    # A dockerd that created docker0 itself reports only the subnet; the gateway is then
    # the subnet's first address (what `ip addr show docker0` says).
    return str(config.get("Gateway") or next(ipaddress.ip_network(config["Subnet"]).hosts()))


# The sync host


@dataclass(frozen=True)
class SyncHost:
    ssh: SshdHost  # reach it over SSH as USER with the test's key
    upstream_url: str

    @property
    def name(self) -> str:
        return self.ssh.name

    @property
    def ip(self) -> str:
        return self.ssh.ip


def start_sync_host(key: ClientKey, db_dsn: str, upstream: Upstream,
                    settings: dict[str, str] | None = None) -> SyncHost:
    """Start a sync host whose engine reaches `db_dsn` (a DSN that works from inside a
    container: see tests.lab.api.container_dsn) and the upstream stand-in."""
    import docker

    image = require_image("sync-host")
    client = docker.from_env()
    name = f"rb-test-sync-{uuid.uuid4().hex[:6]}"
    try:
        client.containers.run(image, name=name, detach=True, labels={LABEL: "sync-host"},
                              environment={"AUTHORIZED_KEYS": key.public_line})
        host = wait_for_sshd(client, name)
        lines = {"DATABASE_URL": db_dsn, "UPSTREAM_URL": upstream.url,
                 **ENGINE_SETTINGS, **(settings or {})}
        text = "".join(f"{k}={v}\n" for k, v in lines.items())
        code, out = docker_exec(host, "sh", "-c", 'umask 027 && printf %s "$1" > '
                                "/etc/sync-engine/env && chgrp runbook /etc/sync-engine/env",
                                "sh", text)
        if code:
            raise RuntimeError(f"{name}: cannot write /etc/sync-engine/env: {out}")
    except BaseException:
        remove([name])
        raise
    return SyncHost(host, upstream.url)


@contextmanager
def sync_host(key: ClientKey, db_dsn: str, upstream: Upstream,
              settings: dict[str, str] | None = None) -> Iterator[SyncHost]:
    """`start_sync_host()`, removed afterwards whatever happens."""
    host = start_sync_host(key, db_dsn, upstream, settings)
    try:
        yield host
    finally:
        remove([host.name])


def run_sync(host: SyncHost, client: str, *flags: str) -> tuple[int, str]:
    """Run the sync engine on the host as the runbook user: (exit code, its log lines)."""
    return docker_exec(host.ssh, "sync-engine", "run", "--client", client, *flags, user=USER)


def reset_host(host: SyncHost) -> None:
    """No logs and no state: a host that never synced."""
    code, out = docker_exec(host.ssh, "sh", "-c", f"rm -rf {LOG_DIR}/* {STATE_DIR}/*",
                            user=USER)
    if code:
        raise RuntimeError(f"{host.name}: cannot clear the logs and state: {out}")


def corrupt_state(host: SyncHost, client: str) -> None:
    """A state file the engine cannot read (half-written JSON)."""
    docker_exec(host.ssh, "sh", "-c", f"printf '{{\"cursor\": 1, \"backoff' > "
                f"{STATE_DIR}/{client}.json", user=USER)


def old_log(host: SyncHost, days_ago: int = 1) -> str:
    """An older day's log file with a stale date and mtime: the newest file is what counts."""
    day = datetime.now(UTC) - timedelta(days=days_ago)
    path = f"{LOG_DIR}/sync-{day:%Y-%m-%d}.log"
    line = f"{day:%Y-%m-%dT%H:%M:%S}.000Z ERROR client=acme status=401 Unauthorized (old)\n"
    docker_exec(host.ssh, "sh", "-c", f"printf '%s' \"$1\" > {path} && touch -d "
                f"'{day:%Y-%m-%d %H:%M:%S}Z' {path}", "sh", line, user=USER)
    return path
