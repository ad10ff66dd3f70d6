"""The clients' conventions against the lab's real servers: a DSN's own libpq options in
effect beside runbook's read-only guard (the lab PostgreSQL), and the engine of the current
Docker context (the lab's dockerd, reached through a context only)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from diagnostics.docker import _api
from diagnostics.postgres import PostgresConnector, PostgresSettings
from runner.context import StepContext
from runner.errors import TemporaryError
from runner.inventory import Target
from tests.lab.faults import LabDatabase


@pytest.fixture
def shop_schema(lab_db: LabDatabase) -> Iterator[None]:
    """A schema only a search_path finds: `orders` unqualified means shop.orders."""
    with psycopg.connect(lab_db.admin, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS shop; "
                     "CREATE TABLE IF NOT EXISTS shop.orders (id int); "
                     "INSERT INTO shop.orders VALUES (1), (2), (3); "
                     "GRANT USAGE ON SCHEMA shop TO runbook_ro; "
                     "GRANT SELECT ON shop.orders TO runbook_ro")
    try:
        yield
    finally:
        with psycopg.connect(lab_db.admin, autocommit=True) as conn:
            conn.execute("DROP SCHEMA shop CASCADE")


@contextmanager
def _probe(dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("SHOP_DSN", dsn)
    target = Target("shop-db", "postgres", PostgresSettings(dsn_env="SHOP_DSN"))
    with PostgresConnector().probe(target, StepContext.outside_a_run(30)) as session:
        yield session


@pytest.mark.usefixtures("shop_schema")
def test_the_dsn_s_search_path_holds_and_the_probe_stays_read_only(
        lab_db: LabDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    # The DSN asks for a search_path, and for writes: the first holds, the second not.
    asks = "-c search_path=shop,public -c default_transaction_read_only=off"
    dsn = f"{lab_db.ro} options='{asks}' connect_timeout=3"
    with _probe(dsn, monkeypatch) as session:
        [row] = session.query("SELECT count(*) AS n, current_setting('search_path') AS path, "
                              "current_setting('default_transaction_read_only') AS ro "
                              "FROM orders")
        assert row == {"n": 3, "path": "shop,public", "ro": "on"}
        conn = session._conn
        params = conn.info.get_parameters()
        assert params["connect_timeout"] == "3"  # the DSN's, shorter than runbook's 5
        assert params["options"].startswith(asks)
        # Past the SQL guard, the server itself refuses a write: runbook's setting won.
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO orders VALUES (4)")
        conn.rollback()
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)


@pytest.mark.usefixtures("shop_schema")
def test_a_url_dsn_s_options_hold_too(lab_db: LabDatabase,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    parts = psycopg.conninfo.conninfo_to_dict(lab_db.ro)
    url = (f"postgresql://{parts['user']}:{quote(str(parts['password']))}@{parts['host']}:"
           f"{parts['port']}/{parts['dbname']}?options={quote('-c search_path=shop')}")
    with _probe(url, monkeypatch) as session:
        assert session.one("SELECT count(*) AS n FROM orders") == {"n": 3}


def _context(config: Path, name: str, host: str) -> None:
    meta = config / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({
        "Name": name, "Metadata": {},
        "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}}}))


def test_the_current_docker_context_s_engine(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The lab's dockerd answers on /var/run/docker.sock, which is also the default: a
    context with no engine behind it proves a context is followed, and one that reaches
    dockerd under another name (a link) that its endpoint is used."""
    engine_socket = Path("/var/run/docker.sock")
    if not engine_socket.is_socket():
        pytest.fail("LAB MISSING: no dockerd socket at /var/run/docker.sock; run scripts/setup",
                    pytrace=False)
    link = tmp_path / "colima.sock"
    link.symlink_to(engine_socket)
    config = tmp_path / "docker-config"
    _context(config, "colima", f"unix://{link}")
    # (loopback TCP: docker-py leaves a failed unix socket's fd to the garbage collector)
    _context(config, "gone", "tcp://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(config))

    # config.json's current context is followed: the default socket would have answered
    (config / "config.json").write_text(json.dumps({"currentContext": "gone"}))
    with pytest.raises(TemporaryError, match="Docker engine unreachable"):
        _api(None, 10, read_only=True)
    # DOCKER_CONTEXT wins over config.json; the context's endpoint reaches dockerd
    monkeypatch.setenv("DOCKER_CONTEXT", "colima")
    api = _api(None, 10, read_only=True)
    try:
        assert api.version()["ApiVersion"]
    finally:
        api.close()
    # DOCKER_HOST, when set, wins over every context
    monkeypatch.setenv("DOCKER_CONTEXT", "gone")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{engine_socket}")
    api = _api(None, 10, read_only=True)
    try:
        assert api.version()["ApiVersion"]
    finally:
        api.close()
