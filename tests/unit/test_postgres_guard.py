"""The probe SQL guard, lab-free: what an attacker would write to get a signal, a lock, a
write or dynamic SQL past it, and the shipped probes' own queries, which must pass.

The same corpus runs from a real probe session in tests/scenarios/test_postgres_safety.py.
"""

from __future__ import annotations

import pytest

from diagnostics.postgres_guard import ALLOWED_FUNCTIONS, check_read_only_sql
from runner.errors import PermanentError

# Each of these must be refused. Most call pg_terminate_backend, the function that killed
# real sessions from a probe: hidden by quoting, comments, literals, escapes or case.
BYPASSES = [
    # the reported ones
    "SELECT '--', pg_terminate_backend(pid) FROM pg_stat_activity",
    'SELECT "pg_terminate_backend"(pid) FROM pg_stat_activity',
    'SELECT pg_catalog . "pg_terminate_backend" (pid) FROM pg_stat_activity',
    # quoting and qualification
    'SELECT "pg_catalog"."pg_terminate_backend"(1)',
    "SELECT pg_catalog.pg_terminate_backend(1)",
    "SELECT public.pg_terminate_backend(1)",
    'SELECT U&"\\0070g_terminate_backend"(1)',
    'SELECT U&"!0070g_terminate_backend" UESCAPE \'!\' (1)',
    # comments in every position
    "SELECT /* x */ pg_terminate_backend(1)",
    "SELECT pg_terminate_backend/* x */(1)",
    "SELECT pg_terminate_backend -- x\n(1)",
    "/* SELECT 1 */ SELECT pg_terminate_backend(1)",
    "-- SELECT 1\nSELECT pg_terminate_backend(1)",
    "SELECT 1 /* nested /* */ , pg_terminate_backend(1) */ , pg_terminate_backend(2)",
    "SELECT 1 -- ; \n; SELECT pg_terminate_backend(1)",
    # literals that hold ; and -- and quotes
    "SELECT ';' AS a, pg_terminate_backend(1)",
    "SELECT '/*', pg_terminate_backend(1), '*/'",
    "SELECT 'it''s', pg_terminate_backend(1)",
    "SELECT E'\\'', pg_terminate_backend(1)",
    "SELECT $$ -- $$, pg_terminate_backend(1)",
    "SELECT $q$ ' $q$, pg_terminate_backend(1)",
    # case
    "select PG_CANCEL_BACKEND (1)",
    "SeLeCt Pg_TeRmInAtE_bAcKeNd(1)",
    # where the call sits
    "SELECT * FROM pg_terminate_backend(1)",
    "SELECT * FROM ROWS FROM (pg_terminate_backend(1)) AS t",
    "SELECT * FROM pg_stat_activity a, LATERAL pg_terminate_backend(a.pid) AS t",
    "SELECT 1 FROM pg_stat_activity a JOIN LATERAL (SELECT pg_cancel_backend(a.pid)) s ON true",
    "SELECT 1 WHERE pg_terminate_backend(1)",
    "SELECT 1 ORDER BY pg_terminate_backend(1)",
    "SELECT (SELECT pg_terminate_backend(1))",
    "SELECT 1 WHERE EXISTS (SELECT pg_terminate_backend(pid) FROM pg_stat_activity)",
    "WITH x AS (SELECT pg_terminate_backend(1)) SELECT * FROM x",
    "SELECT count(*) FILTER (WHERE pg_terminate_backend(1)) FROM pg_stat_activity",
    "SELECT CASE WHEN true THEN pg_terminate_backend(1) END",
    "VALUES (pg_terminate_backend(1))",
    "SELECT 1 UNION SELECT pg_cancel_backend(1)::int",
    # more than one statement
    "SELECT 1; SELECT pg_terminate_backend(1)",
    "SELECT 1; UPDATE accounts SET balance = 0",
    # writes, locks, DDL, session state
    "UPDATE accounts SET balance = 0",
    "DELETE FROM accounts",
    "INSERT INTO accounts DEFAULT VALUES",
    "WITH x AS (UPDATE accounts SET balance = 0 RETURNING id) SELECT * FROM x",
    "WITH x AS (DELETE FROM accounts RETURNING id) SELECT 1",
    "SELECT * INTO stolen FROM accounts",
    "SELECT * FROM accounts FOR UPDATE",
    "SELECT * FROM accounts FOR SHARE SKIP LOCKED",
    "EXPLAIN ANALYZE DELETE FROM accounts",
    "EXPLAIN (ANALYZE) UPDATE accounts SET balance = 0",
    "EXPLAIN ANALYZE SELECT pg_terminate_backend(1)",
    "SET default_transaction_read_only = off",
    "RESET ALL",
    "LOCK TABLE accounts",
    "COPY (SELECT 1) TO PROGRAM 'touch /tmp/x'",
    "DO $$ BEGIN PERFORM pg_terminate_backend(1); END $$",
    "CALL some_procedure()",
    "NOTIFY channel",
    "PREPARE p AS SELECT 1",
    "TRUNCATE accounts",
    "CREATE TABLE t (a int)",
    "VACUUM accounts",
    "SELECT 1 OPERATOR(public.+) 1",
    # dynamic SQL and other doors
    "SELECT query_to_xml('DELETE FROM accounts RETURNING 1', true, true, '')",
    "SELECT query_to_xml_and_xmlschema('SELECT pg_terminate_backend(1)', true, true, '')",
    "SELECT table_to_xml('accounts', true, true, '')",
    "SELECT cursor_to_xml('c', 1, true, true, '')",
    "SELECT * FROM dblink('dbname=x', 'DELETE FROM accounts') AS t(a int)",
    "SELECT dblink_exec('DELETE FROM accounts')",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT * FROM accounts TABLESAMPLE SYSTEM (10)",
    "",
    "garbage (",
]

# Every function that changes state must be refused however it is named.
STATE_CHANGING = [
    "pg_terminate_backend(1)", "pg_cancel_backend(1)", "pg_signal_backend(1, 15)",
    "pg_advisory_lock(1)", "pg_advisory_xact_lock(1)", "pg_advisory_lock_shared(1)",
    "pg_try_advisory_lock(1)", "pg_try_advisory_xact_lock_shared(1)",
    "pg_advisory_unlock_all()", "set_config('work_mem', '1GB', false)", "nextval('s')",
    "setval('s', 1)", "txid_current()", "pg_current_xact_id()", "pg_reload_conf()",
    "pg_rotate_logfile()", "lo_import('/etc/passwd')", "lo_unlink(1)", "lo_create(0)",
    "dblink_connect('x')", "query_to_xml('x', true, true, '')", "pg_read_file('x')",
    "pg_read_binary_file('x')", "pg_ls_dir('.')", "pg_switch_wal()",
    "pg_create_physical_replication_slot('s')", "pg_create_logical_replication_slot('s', 'p')",
    "pg_create_restore_point('x')", "pg_drop_replication_slot('s')", "pg_stat_reset()",
    "pg_stat_reset_shared('bgwriter')", "pg_stat_reset_single_table_counters(1)",
    "pg_log_backend_memory_contexts(1)", "pg_promote()", "pg_notify('c', 'x')",
    "pg_file_write('x', 'y', false)", "pg_backup_start('x')", "pg_import_system_collations(1)",
]


@pytest.mark.parametrize("sql", BYPASSES)
def test_the_guard_refuses(sql: str) -> None:
    with pytest.raises(PermanentError, match="probe SQL refused"):
        check_read_only_sql(sql)


@pytest.mark.parametrize("call", STATE_CHANGING)
@pytest.mark.parametrize("form", ["SELECT {}", 'SELECT "pg_catalog".{}', "SELECT 1, {} AS x"])
def test_every_state_changing_function_is_refused(call: str, form: str) -> None:
    name = call.split("(")[0]
    with pytest.raises(PermanentError, match=rf"{name}\(\) is not on the probe allow-list"):
        check_read_only_sql(form.format(call))


def test_no_state_changing_function_is_on_the_allow_list() -> None:
    assert not {c.split("(")[0] for c in STATE_CHANGING} & ALLOWED_FUNCTIONS


def test_the_message_names_what_was_refused() -> None:
    with pytest.raises(PermanentError, match="DELETE writes"):
        check_read_only_sql("EXPLAIN ANALYZE DELETE FROM accounts")
    with pytest.raises(PermanentError, match="FOR UPDATE/SHARE locks rows"):
        check_read_only_sql("SELECT 1 FROM accounts FOR UPDATE")
    with pytest.raises(PermanentError, match="SELECT INTO creates a table"):
        check_read_only_sql("SELECT 1 INTO t")
    with pytest.raises(PermanentError, match=r"a query \(SELECT, WITH, SHOW, EXPLAIN\), not "
                                             "DELETE"):
        check_read_only_sql("DELETE FROM accounts")
    with pytest.raises(PermanentError, match="one statement, not 2"):
        check_read_only_sql("SELECT 1; SELECT 2")
    with pytest.raises(PermanentError, match=r"function public\.now is outside pg_catalog"):
        check_read_only_sql("SELECT public.now()")


# Reads that must pass: the shapes the shipped probes use (parameters bound as literals,
# as the probe handle binds them before checking), and reads that only look suspicious.
READS = [
    "SELECT current_setting('server_version') AS server_version, version() AS version, "
    "pg_is_in_recovery() AS in_recovery, current_database() AS database",
    "SELECT coalesce(state, 'unknown') AS state, coalesce(nullif(application_name, ''), "
    "'(none)') AS application, coalesce(client_addr::text, 'local') AS client "
    "FROM pg_stat_activity WHERE backend_type = 'client backend'",
    "SELECT a.pid, round(extract(epoch FROM now() - a.xact_start)::numeric, 1) AS age, "
    "left(a.query, 300) AS query FROM pg_stat_activity a WHERE a.state IN ('idle', 'active') "
    "AND a.pid <> pg_backend_pid() AND a.wait_event_type IS DISTINCT FROM 'Lock' "
    "AND now() - a.state_change >= make_interval(secs => 60.0) ORDER BY a.state_change "
    "LIMIT 50",
    "SELECT a.pid, pg_blocking_pids(a.pid) AS blocked_by FROM pg_stat_activity a "
    "WHERE cardinality(pg_blocking_pids(a.pid)) > 0 AND a.pid = ANY('{1,2}'::int4[])",
    "SELECT client, to_char(max(finished_at) FILTER (WHERE status = 'success') AT TIME ZONE "
    "'UTC', 'YYYY-MM-DD') AS s, (array_agg(status ORDER BY finished_at DESC NULLS FIRST))[1] "
    "AS last_status, count(*) AS runs FROM \"public\".\"sync_runs\" WHERE client = 'c' "
    "GROUP BY client ORDER BY client",
    "SELECT 'pg_terminate_backend(1); DELETE FROM accounts' AS harmless_text",
    "SELECT 1 -- pg_terminate_backend(1)",
    "SELECT $$ pg_terminate_backend(1) $$",
    "WITH recent AS (SELECT * FROM pg_stat_activity) SELECT count(*) FROM recent",
    "SHOW default_transaction_read_only",
    "EXPLAIN SELECT * FROM pg_stat_activity",
    "EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM pg_class",
    "SELECT pg_sleep(0.1), current_user, CURRENT_TIMESTAMP",
    "VALUES (1), (2)",
    "TABLE pg_stat_activity",
    "SELECT pg_catalog.now()",
    "SELECT 1;;",
    "SELECT 'pg_terminate_backend'::regproc",  # naming a function is not calling it
    # One string with standard_conforming_strings=on (the probe session forces it); with it
    # off, the server would end the string at \' and call the function.
    "SELECT 'a\\'', pg_terminate_backend(1) --'",
]


@pytest.mark.parametrize("sql", READS)
def test_the_guard_lets_reads_through(sql: str) -> None:
    check_read_only_sql(sql)
