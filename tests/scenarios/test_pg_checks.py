"""The PostgreSQL catalogue against real servers: each check finds its fault, induced for real.

Two containers of the lab image of their own, so that nothing here disturbs the shared lab
database: `sick` is where faults are induced (it allows prepared transactions, runs
autovacuum every second, checkpoints after 32MB of WAL and archives WAL with a command that
always fails), `healthy` is configured as a
careful operator would and is left alone. Every check runs through the registry and the
backend's read-only probe handle, as the role runbook_ro (pg_monitor), as in production.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from diagnostics.postgres import PostgresConnector, PostgresSettings
from runner.context import StepContext
from runner.inventory import Target
from runner.registry import Registry
from tests.lab.faults import LabDatabase, prepare
from tests.lab.postgres import postgres_container
from tests.lab.standby import standby_of
from tests.scenarios.conftest import CLI
from tests.support.polling import wait_for

pytestmark = pytest.mark.lab

_SICK = ["-c", "max_connections=30", "-c", "max_prepared_transactions=4",
         "-c", "autovacuum_naptime=1", "-c", "max_wal_size=32MB", "-c", "min_wal_size=32MB",
         "-c", "shared_buffers=128kB", "-c", "archive_mode=on", "-c", "archive_command=false"]
_HEALTHY = ["-c", "max_connections=30", "-c", "idle_in_transaction_session_timeout=10min"]
REGISTRY = Registry.from_entry_points()
CATALOGUE = ["txid_wraparound", "multixact_wraparound", "autovacuum_lag", "autovacuum_workers",
             "prepared_transactions", "sequence_exhaustion", "invalid_indexes",
             "database_sizes", "largest_relations", "cache_hit_ratio", "checkpoints",
             "deadlocks", "temp_files", "settings_review", "replication_slots",
             "replication_lag", "recovery_conflicts", "table_bloat", "disabled_triggers",
             "unvalidated_constraints", "unused_indexes", "rollback_ratio", "wal_archiving",
             "wal_size"]


def _server(command: list[str]) -> Iterator[tuple[Any, LabDatabase]]:
    container = postgres_container().with_command(command)
    container.start()
    try:
        yield container, prepare(container.get_connection_url(driver=None))
    finally:
        container.stop()


@pytest.fixture(scope="module")
def sick_server() -> Iterator[tuple[Any, LabDatabase]]:
    yield from _server(_SICK)


@pytest.fixture(scope="module")
def sick(sick_server: tuple[Any, LabDatabase]) -> LabDatabase:
    return sick_server[1]


@pytest.fixture(scope="module")
def standby(sick_server: tuple[Any, LabDatabase]) -> Iterator[LabDatabase]:
    """A hot standby of `sick` that cancels conflicting queries at once, as a standby
    without hot_standby_feedback and with max_standby_streaming_delay = 0 does."""
    with standby_of(*sick_server, settings=("max_prepared_transactions=4",  # as the primary
                                            "max_standby_streaming_delay=0",
                                            "hot_standby_feedback=off")) as db:
        yield db


@pytest.fixture(scope="module")
def healthy() -> Iterator[LabDatabase]:
    for _container, db in _server(_HEALTHY):
        yield db


def check(db: LabDatabase, name: str, **params: Any) -> dict[str, Any]:
    """Run postgres.<name> as the read-only role, through the registry and probe handle."""
    kind = REGISTRY.kind(f"postgres.{name}")
    target = Target("t", "postgres", PostgresSettings(dsn_env="PG_CHECKS_DSN"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PG_CHECKS_DSN", db.ro)
        with PostgresConnector().probe(target, StepContext.outside_a_run(30)) as handle:
            result: dict[str, Any] = kind.func(handle, kind.params(**params))
    return result


def admin(db: LabDatabase, *statements: str) -> None:
    with psycopg.connect(db.admin, autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql.encode())


def row_of(result: dict[str, Any], field: str, key: str, value: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = [r for r in result[field] if r[key] == value]
    assert len(rows) == 1, f"{key}={value} in {result[field]}"
    return rows[0]


# Each check finds its fault


def test_txid_wraparound_names_the_session_holding_the_horizon(sick: LabDatabase) -> None:
    with psycopg.connect(sick.admin) as holder:
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM accounts")  # a snapshot, held open
        with psycopg.connect(sick.admin, autocommit=True) as burner:
            for _ in range(1500):  # each one consumes a transaction ID
                burner.execute("SELECT txid_current()")
        result = check(sick, "txid_wraparound", age_warning=1000, age_critical=10**9)
        pid = holder.info.backend_pid
    assert result["level"] == "warning" and not result["ok"]
    assert row_of(result, "databases", "database", "runbook")["age"] >= 1500
    assert f"session pid {pid}" in [h["holder"] for h in result["horizon_holders"]]
    assert "of the way to wraparound" in result["summary"]


def test_multixact_wraparound_counts_real_multixacts(sick: LabDatabase) -> None:
    admin(sick, "CREATE TABLE mx (id int PRIMARY KEY)", "INSERT INTO mx VALUES (1)")
    try:
        with psycopg.connect(sick.admin) as one, psycopg.connect(sick.admin) as two:
            for _ in range(30):  # two sharers of one row lock make a multixact
                one.execute("SELECT * FROM mx FOR SHARE")
                two.execute("SELECT * FROM mx FOR SHARE")
                one.commit()
                two.commit()
        result = check(sick, "multixact_wraparound", age_warning=20, age_critical=10**9)
    finally:
        admin(sick, "DROP TABLE mx")
    assert row_of(result, "databases", "database", "runbook")["age"] >= 30
    assert result["level"] == "warning"
    assert "multixact age" in result["summary"]


def test_autovacuum_lag_finds_dead_rows_and_says_autovacuum_is_off_there(
        sick: LabDatabase) -> None:
    admin(sick, "CREATE TABLE av_dead (id int, pad text) WITH (autovacuum_enabled = false)",
          "INSERT INTO av_dead SELECT g, 'x' FROM generate_series(1, 20000) g",
          "DELETE FROM av_dead WHERE id > 5000")
    try:
        result = wait_for(lambda: (r := check(sick, "autovacuum_lag"))["count"] and r,
                          "the dead rows to show in pg_stat_user_tables")
    finally:
        admin(sick, "DROP TABLE av_dead")
    table = row_of(result, "tables", "table", "public.av_dead")
    assert table["dead"] == 15000 and table["dead_pct"] == 75.0
    assert result["level"] == "critical"
    assert "autovacuum is disabled on this table" in result["summary"]


def test_autovacuum_lag_names_the_snapshot_that_keeps_dead_rows(sick: LabDatabase) -> None:
    admin(sick, "CREATE TABLE av_held (id int, pad text) WITH (autovacuum_vacuum_threshold = 0,"
                " autovacuum_vacuum_scale_factor = 0)",
          "INSERT INTO av_held SELECT g, 'x' FROM generate_series(1, 4000) g")
    try:
        with psycopg.connect(sick.admin) as holder:
            holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            holder.execute("SELECT count(*) FROM av_held")  # sees every row: vacuum must keep them
            admin(sick, "DELETE FROM av_held")

            def held() -> dict[str, Any]:
                found = check(sick, "autovacuum_lag")
                return found if "holds a snapshot" in found["summary"] else {}

            result = wait_for(held, "autovacuum to run on av_held and leave its dead rows",
                              timeout=90)
            pid = holder.info.backend_pid
    finally:
        admin(sick, "DROP TABLE av_held")
    table = row_of(result, "tables", "table", "public.av_held")
    assert table["dead"] == 4000 and table["vacuum_age_s"] is not None
    assert f"session pid {pid}" in table["why"]
    assert result["oldest_snapshot"]["pid"] == pid


def test_prepared_transaction_left_behind_is_found_with_its_locks(sick: LabDatabase) -> None:
    with psycopg.connect(sick.admin, autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute("UPDATE accounts SET balance = balance WHERE id = 3")
        conn.execute("PREPARE TRANSACTION 'rb-orphan-1'")
    try:
        result = wait_for(lambda: (r := check(sick, "prepared_transactions"))["count"] and r,
                          "the prepared transaction to be a second old")
    finally:
        admin(sick, "ROLLBACK PREPARED 'rb-orphan-1'")
    [orphan] = result["transactions"]
    assert orphan["gid"] == "rb-orphan-1" and orphan["locks"] >= 1
    assert result["level"] in ("warning", "critical")
    assert "'rb-orphan-1'" in result["summary"] and "ROLLBACK PREPARED" in result["summary"]
    assert check(sick, "prepared_transactions")["ok"]  # rolled back: nothing left


def test_sequences_near_their_end_and_one_capped_by_its_integer_column(
        sick: LabDatabase) -> None:
    admin(sick, "CREATE SEQUENCE small_seq MAXVALUE 100",
          "SELECT setval('small_seq', 90)",
          "CREATE SEQUENCE big_seq AS bigint",
          "CREATE TABLE capped (id integer DEFAULT nextval('big_seq'))",
          "ALTER SEQUENCE big_seq OWNED BY capped.id",
          "SELECT setval('big_seq', 2147483000)",
          "GRANT SELECT ON small_seq, big_seq TO runbook_ro",
          "CREATE SEQUENCE hidden_seq", "SELECT nextval('hidden_seq')")  # not granted
    try:
        result = check(sick, "sequence_exhaustion")
    finally:
        admin(sick, "DROP TABLE capped", "DROP SEQUENCE small_seq, hidden_seq")
    assert result["not_read"] == ["public.hidden_seq"]  # said, never taken as healthy
    assert "1 sequence(s) NOT CHECKED" in result["summary"]
    small = row_of(result, "sequences", "sequence", "public.small_seq")
    big = row_of(result, "sequences", "sequence", "public.big_seq")
    assert (small["used_pct"], small["level"]) == (89.9, "warning")  # 89 of 99 steps
    assert big["limit"] == 2**31 - 1 and big["level"] == "critical"
    assert result["level"] == "critical"
    assert "capped by capped.id (integer), 647 values left" in result["summary"]


def test_failed_create_index_concurrently_leaves_an_invalid_index(sick: LabDatabase) -> None:
    admin(sick, "CREATE TABLE dupes (v int)", "INSERT INTO dupes VALUES (1), (1)")
    with pytest.raises(psycopg.errors.UniqueViolation):
        admin(sick, "CREATE UNIQUE INDEX CONCURRENTLY dupes_v ON dupes (v)")
    try:
        result = check(sick, "invalid_indexes")
    finally:
        admin(sick, "DROP TABLE dupes")
    assert [i["index"] for i in result["indexes"]] == ["public.dupes_v"]
    assert result["level"] == "warning"
    assert "CREATE INDEX CONCURRENTLY" in result["summary"]
    assert check(sick, "invalid_indexes")["ok"]


def test_sizes_over_thresholds(sick: LabDatabase) -> None:
    admin(sick, "CREATE TABLE big (id int, pad text)",
          "INSERT INTO big SELECT g, repeat('y', 200) FROM generate_series(1, 5000) g")
    try:
        databases = check(sick, "database_sizes", size_warning="1MB", size_critical="10GB")
        relations = check(sick, "largest_relations", size_warning="512kB")
    finally:
        admin(sick, "DROP TABLE big")
    assert row_of(databases, "databases", "database", "runbook")["level"] == "warning"
    assert databases["level"] == "warning" and "over the warning size" in databases["summary"]
    assert relations["tables"][0]["table"] == "public.big"
    assert relations["level"] == "warning" and relations["tables"][0]["bytes"] > 512 * 1024


def test_database_growth_over_a_window(sick: LabDatabase) -> None:
    admin(sick, "CREATE TABLE growing (id int, pad text)")
    stop = threading.Event()

    def write() -> None:
        with psycopg.connect(sick.admin, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO growing SELECT g, repeat('g', 200) "
                             "FROM generate_series(1, 2000) g")

    writer = threading.Thread(target=write)
    writer.start()
    try:
        result = check(sick, "database_sizes", window=2, growth_per_hour_warning="1MB")
    finally:
        stop.set()
        writer.join(timeout=30)
        admin(sick, "DROP TABLE growing")
    grown = row_of(result, "databases", "database", "runbook")
    assert grown["growth_bytes"] > 0 and grown["level"] == "warning"
    assert "grows" in result["summary"] and "an hour" in result["summary"]


def test_cache_hit_ratio_of_a_database_that_reads_from_disk(sick: LabDatabase) -> None:
    admin(sick, "CREATE DATABASE cold")
    cold = sick.admin.rsplit("/", 1)[0] + "/cold"
    try:
        admin(LabDatabase(cold, cold, cold, cold),
              "CREATE TABLE t AS SELECT g, repeat('z', 100) AS pad "
              "FROM generate_series(1, 60000) g",
              "SELECT count(*) FROM t", "SELECT count(*) FROM t", "SELECT count(*) FROM t")
        result = wait_for(
            lambda: (r := check(sick, "cache_hit_ratio", min_blocks=1000))["level"] != "ok"
            and r, "the cold database's block reads to show in pg_stat_database")
    finally:
        admin(sick, "DROP DATABASE cold")
    cold_row = row_of(result, "databases", "database", "cold")
    assert cold_row["hit_pct"] <= 90 and cold_row["blks_read"] > 1000
    assert "shared_buffers (128kB)" in result["summary"]


def test_checkpoints_forced_by_wal_volume(sick: LabDatabase) -> None:
    admin(sick, "CREATE TABLE walgen AS SELECT g, repeat('w', 300) AS pad "
                "FROM generate_series(1, 250000) g")
    try:
        result = wait_for(lambda: (r := check(sick, "checkpoints", min_checkpoints=2))[
            "level"] != "ok" and r, "WAL volume to force checkpoints")
    finally:
        admin(sick, "DROP TABLE walgen")
    assert result["requested"] >= 2 and result["requested_pct"] >= 50
    assert result["level"] == "critical"
    assert "max_wal_size (32MB)" in result["summary"]


def test_a_real_deadlock_between_two_sessions(sick: LabDatabase) -> None:
    errors: list[BaseException] = []
    with psycopg.connect(sick.admin) as one, psycopg.connect(sick.admin) as two:
        one.execute("UPDATE accounts SET balance = balance WHERE id = 5")
        two.execute("UPDATE accounts SET balance = balance WHERE id = 6")

        def cross() -> None:
            try:
                one.execute("UPDATE accounts SET balance = balance WHERE id = 6")
            except psycopg.errors.DeadlockDetected as exc:
                errors.append(exc)

        waiter = threading.Thread(target=cross)
        waiter.start()
        wait_for(lambda: _waiting_on_lock(sick, one.info.backend_pid), "session one to wait")
        try:
            two.execute("UPDATE accounts SET balance = balance WHERE id = 5")
        except psycopg.errors.DeadlockDetected as exc:
            errors.append(exc)
        waiter.join(timeout=30)
        one.rollback()
        two.rollback()
    assert len(errors) == 1  # the server broke the cycle by aborting one of the two
    result = wait_for(lambda: (r := check(sick, "deadlocks"))["total"] and r,
                      "the deadlock to show in pg_stat_database")
    assert row_of(result, "databases", "database", "runbook")["deadlocks"] >= 1
    assert result["level"] == "warning" and "opposite orders" in result["summary"]


def _waiting_on_lock(db: LabDatabase, pid: int) -> bool:
    with psycopg.connect(db.admin) as conn:
        row = conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                           (pid,)).fetchone()
    return row is not None and row[0] == "Lock"


def test_temp_files_from_a_sort_over_work_mem(sick: LabDatabase) -> None:
    with psycopg.connect(sick.admin, autocommit=True) as conn:
        conn.execute("SET work_mem = '64kB'")
        conn.execute("SELECT g FROM generate_series(1, 200000) g ORDER BY g DESC LIMIT 1 OFFSET 5")
    result = wait_for(lambda: (r := check(sick, "temp_files", temp_bytes_warning="1MB"))[
        "level"] != "ok" and r, "the temporary file to show in pg_stat_database")
    runbook = row_of(result, "databases", "database", "runbook")
    assert runbook["temp_files"] >= 1 and runbook["temp_bytes"] >= 1024**2
    assert "work_mem" in result["summary"]


def test_temp_files_over_a_window_count_only_what_spills_now(sick: LabDatabase) -> None:
    before = check(sick, "temp_files", window=1, temp_bytes_warning="1MB")
    stop = threading.Event()

    def spill() -> None:
        with psycopg.connect(sick.admin, autocommit=True) as conn:
            conn.execute("SET work_mem = '64kB'")
            while not stop.is_set():
                conn.execute("SELECT g FROM generate_series(1, 200000) g ORDER BY g DESC "
                             "LIMIT 1 OFFSET 5")

    spiller = threading.Thread(target=spill)
    spiller.start()
    try:
        during = check(sick, "temp_files", window=3, temp_bytes_warning="1MB")
    finally:
        stop.set()
        spiller.join(timeout=30)
    assert before["ok"]  # the totals of earlier tests are not counted in a window
    runbook = row_of(during, "databases", "database", "runbook")
    assert runbook["temp_files"] >= 1 and runbook["level"] == "warning"
    assert "in the last 3s" in during["summary"]


def test_settings_flag_no_idle_timeout_and_too_few_slots_for_the_pools(
        sick: LabDatabase) -> None:
    result = check(sick, "settings_review", expected_clients=100)
    flagged = {(f["setting"], f["level"]) for f in result["flags"]}
    assert flagged == {("idle_in_transaction_session_timeout", "warning"),
                       ("max_connections", "critical")}
    assert result["level"] == "critical"
    assert "100 clients expected but only 27 slots" in result["summary"]
    unbounded = check(sick, "settings_review", require_statement_timeout=True)
    assert "statement_timeout" in {f["setting"] for f in unbounded["flags"]}
    admin(sick, "ALTER ROLE journey_app SET statement_timeout = '30s'")
    try:
        bounded = check(sick, "settings_review", require_statement_timeout=True)
    finally:
        admin(sick, "ALTER ROLE journey_app RESET statement_timeout")
    assert "statement_timeout" not in {f["setting"] for f in bounded["flags"]}
    assert bounded["statement_timeout_overrides"] == [
        {"role": "journey_app", "database": "*", "setting": "statement_timeout=30s"}]


def test_an_inactive_slot_retaining_wal(sick: LabDatabase) -> None:
    admin(sick, "SELECT pg_create_physical_replication_slot('rb_gone', true)",
          "CREATE TABLE churn AS SELECT g, repeat('c', 200) AS pad "
          "FROM generate_series(1, 20000) g")
    try:
        result = check(sick, "replication_slots", retained_warning="1MB")
    finally:
        admin(sick, "SELECT pg_drop_replication_slot('rb_gone')", "DROP TABLE churn")
    slot = row_of(result, "slots", "slot", "rb_gone")
    assert not slot["active"] and slot["retained_bytes"] >= 1024**2
    assert result["level"] == "warning"
    assert "inactive: its consumer is not connected" in result["summary"]


def test_a_missing_standby_is_critical(sick: LabDatabase) -> None:
    result = check(sick, "replication_lag", expected_standbys=1)
    assert result["role"] == "primary" and result["standbys"] == []
    assert result["level"] == "critical" and "1 expected" in result["summary"]


def test_bloat_after_a_bulk_delete(sick: LabDatabase) -> None:
    admin(sick, "CREATE TABLE bloated (id int, pad text)",
          "INSERT INTO bloated SELECT g, repeat('b', 100) FROM generate_series(1, 30000) g",
          "DELETE FROM bloated WHERE id % 10 <> 0", "VACUUM ANALYZE bloated",
          "GRANT SELECT ON bloated TO runbook_ro")
    try:
        result = check(sick, "table_bloat", wasted_warning="1MB")
    finally:
        admin(sick, "DROP TABLE bloated")
    table = row_of(result, "tables", "table", "public.bloated")
    assert table["bloat_pct"] >= 70 and table["level"] == "warning"
    assert result["summary"].startswith("1 bloated table(s); public.bloated")


def test_a_long_running_autovacuum_worker(sick: LabDatabase) -> None:
    # Throttled to a crawl, as a cost limit set far too low does in production.
    admin(sick, "CREATE TABLE av_slow (id int, pad text) WITH (autovacuum_vacuum_cost_delay = "
                "100, autovacuum_vacuum_cost_limit = 1, autovacuum_vacuum_threshold = 0, "
                "autovacuum_vacuum_scale_factor = 0)",
          "INSERT INTO av_slow SELECT g, repeat('s', 100) FROM generate_series(1, 20000) g",
          "DELETE FROM av_slow")
    try:
        result = wait_for(lambda: (r := check(sick, "autovacuum_workers", runtime_warning=1))[
            "count"] and r, "autovacuum to work on av_slow for a second", timeout=90)
    finally:
        admin(sick, "DROP TABLE av_slow")  # cancels the worker (it yields to the lock)
    assert result["level"] == "warning"
    assert "av_slow" in result["summary"] and "autovacuum worker" in result["summary"]


def test_disabled_triggers_and_the_foreign_key_they_stop_enforcing(sick: LabDatabase) -> None:
    admin(sick, "CREATE TABLE parent (id int PRIMARY KEY)",
          "CREATE TABLE child (pid int REFERENCES parent)",
          "CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$",
          "CREATE TRIGGER audit BEFORE INSERT ON child FOR EACH ROW EXECUTE FUNCTION noop()",
          "ALTER TABLE child DISABLE TRIGGER ALL",
          "INSERT INTO child VALUES (42)")  # no parent 42: nothing checks it now
    try:
        result = check(sick, "disabled_triggers")
    finally:
        admin(sick, "DROP TABLE child", "DROP TABLE parent", "DROP FUNCTION noop()")
    levels = {(t["trigger"] if not t["foreign_key"] else "fk", t["level"])
              for t in result["triggers"]}
    assert levels == {("audit", "warning"), ("fk", "critical")}
    assert result["level"] == "critical"
    assert "foreign key child_pid_fkey is not enforced" in result["summary"]


def test_a_constraint_added_not_valid(sick: LabDatabase) -> None:
    admin(sick, "CREATE TABLE loose (v int)", "INSERT INTO loose VALUES (-1)",
          "ALTER TABLE loose ADD CONSTRAINT positive CHECK (v > 0) NOT VALID")
    try:
        result = check(sick, "unvalidated_constraints")
    finally:
        admin(sick, "DROP TABLE loose")
    assert [(c["constraint_name"], c["type"]) for c in result["constraints"]] == [
        ("positive", "check")]
    assert result["level"] == "warning" and "VALIDATE CONSTRAINT" in result["summary"]


def test_an_index_no_query_uses(sick: LabDatabase) -> None:
    admin(sick, "CREATE TABLE idle_idx (id int, v int)",
          "INSERT INTO idle_idx SELECT g, g FROM generate_series(1, 5000) g",
          "CREATE INDEX unused_v ON idle_idx (v)")
    try:
        result = check(sick, "unused_indexes", min_size="8kB")
    finally:
        admin(sick, "DROP TABLE idle_idx")
    names = [i["index"] for i in result["indexes"]]
    assert "public.unused_v" in names and "public.accounts_pkey" not in names
    assert result["level"] == "warning" and "read by no query" in result["summary"]


def test_a_database_that_mostly_rolls_back(sick: LabDatabase) -> None:
    admin(sick, "CREATE DATABASE rollbacks")
    dsn = sick.admin.rsplit("/", 1)[0] + "/rollbacks"
    try:
        with psycopg.connect(dsn) as conn:
            for _ in range(1200):
                conn.execute("SELECT 1")
                conn.rollback()
        result = wait_for(lambda: (r := check(sick, "rollback_ratio"))["level"] != "ok" and r,
                          "the rollbacks to show in pg_stat_database")
    finally:
        admin(sick, "DROP DATABASE rollbacks")
    rolled = row_of(result, "databases", "database", "rollbacks")
    assert rolled["rollbacks"] >= 1200 and rolled["level"] == "critical"
    assert "rolled back" in result["summary"]


def test_a_failing_archive_command_and_the_wal_it_keeps(sick: LabDatabase) -> None:
    admin(sick, "CREATE TABLE walfill AS SELECT g, repeat('f', 300) AS pad "
                "FROM generate_series(1, 150000) g", "SELECT pg_switch_wal()")
    try:
        archiving = wait_for(lambda: (r := check(sick, "wal_archiving"))["failing"] and r,
                             "archive_command to fail")
        size = check(sick, "wal_size")
    finally:
        admin(sick, "DROP TABLE walfill")
    assert archiving["level"] == "critical" and archiving["failed_count"] >= 1
    assert "archive_command fails" in archiving["summary"]
    assert size["level"] != "ok" and size["pct_of_max"] >= 150
    assert "archive_command is failing" in size["summary"]


# A healthy server raises nothing


def test_a_healthy_server_raises_nothing(healthy: LabDatabase) -> None:
    results = {name: check(healthy, name) for name in CATALOGUE}
    assert {name: r["summary"] for name, r in results.items() if not r["ok"]} == {}
    assert all(r["level"] == "ok" for r in results.values())


def test_every_catalogue_check_is_registered_read_only() -> None:
    kinds = {k.name: k for k in REGISTRY if k.name.removeprefix("postgres.") in CATALOGUE}
    assert len(kinds) == len(CATALOGUE)
    assert not any(k.mutating for k in kinds.values())


# The triage playbook


def test_postgres_health_finds_three_faults_ranked_by_severity(
        sick: LabDatabase, cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOOK_LAB_DSN", sick.ro)
    admin(sick, "CREATE TABLE dupes2 (v int)", "INSERT INTO dupes2 VALUES (1), (1)",
          "SELECT pg_create_physical_replication_slot('rb_gone2', true)",
          "CREATE SEQUENCE nearly MAXVALUE 100", "SELECT setval('nearly', 99)",
          "GRANT SELECT ON nearly TO runbook_ro")
    with contextlib.suppress(psycopg.errors.UniqueViolation):
        admin(sick, "CREATE UNIQUE INDEX CONCURRENTLY dupes2_v ON dupes2 (v)")
    try:
        code, run = cli.json("run", "postgres-health", "--target", "db=lab-db")
    finally:
        admin(sick, "DROP TABLE dupes2", "SELECT pg_drop_replication_slot('rb_gone2')",
              "DROP SEQUENCE nearly")
    fired = [f for f in run["findings"] if f["status"] == "fired"]
    ids = [f["id"] for f in fired]
    assert code == 1
    assert {"sequence-exhaustion", "invalid-indexes", "replication-slots"} <= {
        i.removesuffix("-warning") for i in ids}
    ranks = [f["severity"] for f in fired]
    assert ranks == sorted(ranks)  # the most severe first
    assert "nearly" in " ".join(f["message"] for f in fired)


def test_postgres_health_on_a_healthy_server_finds_nothing(
        healthy: LabDatabase, cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOOK_LAB_DSN", healthy.ro)
    code, run = cli.json("run", "postgres-health", "--target", "db=lab-db")
    assert [s["id"] for s in run["steps"] if s["status"] != "ok"] == []
    assert run["findings"] == []  # every check ran, and none fired
    assert code == 0


# Against a real standby (module-scoped: it is created here, after the tests above)


def test_replication_lag_builds_up_at_replay_when_the_standby_pauses_replay(
        sick: LabDatabase, standby: LabDatabase) -> None:
    assert check(sick, "replication_lag", expected_standbys=1)["ok"]
    admin(standby, "SELECT pg_wal_replay_pause()")
    try:
        admin(sick, "CREATE TABLE lagged AS SELECT g, repeat('l', 200) AS pad "
                    "FROM generate_series(1, 20000) g")
        primary_view = wait_for(
            lambda: (r := check(sick, "replication_lag", lag_bytes_warning="1MB"))["level"]
            != "ok" and r, "the primary to see the standby's replay lag")
        standby_view = check(standby, "replication_lag", lag_bytes_warning="1MB")
    finally:
        admin(standby, "SELECT pg_wal_replay_resume()")
        admin(sick, "DROP TABLE lagged")
    [lagging] = primary_view["standbys"]
    assert lagging["unreplayed_bytes"] >= 1024**2 and lagging["state"] == "streaming"
    assert "flushed but not replayed" in primary_view["summary"]
    assert standby_view["role"] == "standby"
    assert standby_view["standby"]["unreplayed_bytes"] >= 1024**2
    assert standby_view["level"] == "warning"
    wait_for(lambda: check(sick, "replication_lag", lag_bytes_warning="1MB")["ok"],
             "the standby to catch up once replay resumes")


def test_a_recovery_conflict_cancels_a_standby_query(
        sick: LabDatabase, standby: LabDatabase) -> None:
    admin(sick, "CREATE TABLE conflicted AS SELECT g FROM generate_series(1, 1000) g")
    try:
        with contextlib.suppress(psycopg.OperationalError), \
                psycopg.connect(standby.admin) as reader:
            wait_for(lambda: reader.execute("SELECT count(*) FROM conflicted").fetchone(),
                     "the table to reach the standby", retry_on=(psycopg.errors.UndefinedTable,),
                     timeout=30)
            reader.rollback()
            reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            reader.execute("SELECT count(*) FROM conflicted")  # a snapshot that sees the rows
            # No truncation: its ACCESS EXCLUSIVE lock would be a lock conflict instead.
            admin(sick, "DELETE FROM conflicted", "VACUUM (TRUNCATE false) conflicted")
            result = wait_for(lambda: (r := check(standby, "recovery_conflicts"))["total"] and r,
                              "the standby to cancel the reader")
    finally:
        admin(sick, "DROP TABLE conflicted")
    runbook = row_of(result, "databases", "database", "runbook")
    assert runbook["snapshot"] >= 1 and result["in_recovery"]
    assert result["level"] == "warning"
    assert "mostly snapshot" in result["summary"] and "hot_standby_feedback" in result["summary"]
