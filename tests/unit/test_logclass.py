"""Log error classification with realistic lines: Docker timestamps, tracebacks, access logs."""

from __future__ import annotations

import pytest

from diagnostics.logclass import CLASSES, classify, classify_message, is_error, split_timestamp


def docker(stamp: str, *messages: str) -> list[str]:
    """Lines as `docker logs --timestamps` gives them, a microsecond apart."""
    return [f"2026-11-22T07:53:{stamp}.{i * 1000:09d}Z {m}" for i, m in enumerate(messages, 1)]


@pytest.mark.parametrize(("message", "expected"), [
    # oom
    ("Out of memory: Killed process 4242 (python) total-vm:2097152kB", "oom"),
    ("MemoryError", "oom"),
    ('Exception in thread "main" java.lang.OutOfMemoryError: Java heap space', "oom"),
    ("FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory", "oom"),
    ("container api was OOMKilled", "oom"),
    # db_pool
    ("sqlalchemy.exc.TimeoutError: QueuePool limit of size 5 overflow 10 reached, "
     "connection timed out, timeout 30.00", "db_pool"),
    ("psycopg2.pool.PoolError: connection pool exhausted", "db_pool"),
    ("psycopg_pool.PoolTimeout: couldn't get a connection after 30.00 sec", "db_pool"),
    ("HikariPool-1 - Connection is not available, request timed out after 30000ms.", "db_pool"),
    ("Error: timeout exceeded when trying to connect", "db_pool"),
    # db_connection
    ('FATAL:  sorry, too many clients already', "db_connection"),
    ("FATAL:  remaining connection slots are reserved for non-replication superuser "
     "connections", "db_connection"),
    ('psycopg.OperationalError: connection failed: connection to server at "10.0.0.5", '
     "port 5432 failed: Connection refused", "db_connection"),
    ("Error: connect ECONNREFUSED 10.0.0.5:5432", "db_connection"),
    ("could not connect to server: No such file or directory", "db_connection"),
    ("ERROR orders: database is unavailable, retrying", "db_connection"),
    ("FATAL:  the database system is starting up", "db_connection"),
    # timeout
    ("Error: connect ETIMEDOUT 10.0.0.9:443", "timeout"),
    ("upstream timed out (110: Connection timed out) while reading response header", "timeout"),
    ("rpc error: code = DeadlineExceeded desc = context deadline exceeded", "timeout"),
    ("httpx.ReadTimeout: The read operation timed out", "timeout"),
    # connection_refused
    ("Error: connect ECONNREFUSED 127.0.0.1:8080", "connection_refused"),
    ("2026/11/22 07:53:32 [error] 29#29: *1 connect() failed (111: Connection refused) "
     "while connecting to upstream", "connection_refused"),
    # auth
    ('10.0.0.1 - - [22/Nov/2026:07:53:32 +0000] "GET /api/me HTTP/1.1" 401 12 "-" "curl/8"',
     "auth"),
    ("WARNING jwt expired at 2026-11-22T07:00:00Z", "auth"),
    ('FATAL:  password authentication failed for user "app"', "auth"),
    # rate_limit
    ('INFO:     10.0.0.1:5555 - "GET /api/search HTTP/1.1" 429 Too Many Requests', "rate_limit"),
    # constraint
    ('psycopg.errors.CheckViolation: new row for relation "orders" violates check constraint '
     '"orders_amount_check"', "constraint"),
    ("ERROR: duplicate key value violates unique constraint \"users_email_key\"", "constraint"),
    ("sqlite3.IntegrityError: UNIQUE constraint failed: users.email", "constraint"),
    ("Cannot add or update a child row: a foreign key constraint fails", "constraint"),
    ("ERROR client=acme database constraint: amount must be >= 0 (order 7)", "constraint"),
    # validation
    ("ERROR client=acme validation error: order 12: email is missing", "validation"),
    ("pydantic_core._pydantic_core.ValidationError: 1 validation error for Order", "validation"),
    ('INFO:     10.0.0.1:5555 - "POST /api/orders HTTP/1.1" 422 Unprocessable Entity',
     "validation"),
    # corrupt_state
    ("ERROR client=acme sync state is corrupt: /home/runbook/state/acme.json: Expecting value",
     "corrupt_state"),
    ("WARN checkpoint file /var/lib/sync/cp.json was unreadable, refusing to start",
     "corrupt_state"),
    ("kafka: corrupted cursor for partition 3", "corrupt_state"),
    # http_5xx
    ('INFO:     172.17.0.1:51236 - "GET /api/orders HTTP/1.1" 500 Internal Server Error',
     "http_5xx"),
    ('10.0.0.1 - - [22/Nov/2026:07:53:32 +0000] "POST /api/pay HTTP/1.1" 502 157 "-" "-"',
     "http_5xx"),
    ('10.0.0.1 - - [22/Nov/2026:07:53:32 +0000] "GET /api/x HTTP/2.0" 504 0 "-" "-"', "http_5xx"),
    ('level=info msg="request done" path=/api/x status=503 duration=12ms', "http_5xx"),
    ('{"level": "info", "path": "/api/x", "status": 500}', "http_5xx"),
    # exception
    ("Traceback (most recent call last):", "exception"),
    ("KeyError: 'customer_id'", "exception"),
    ("ERROR:    Exception in ASGI application", "exception"),
    ("panic: runtime error: invalid memory address or nil pointer dereference", "exception"),
    ("TypeError: Cannot read properties of undefined (reading 'id')", "exception"),
    # fatal
    ("2026-11-22 07:53:32,123 CRITICAL worker: giving up", "fatal"),
    ('time="2026-11-22T07:53:32Z" level=fatal msg="cannot start"', "fatal"),
    # error
    ("2026-11-22 07:53:32,123 ERROR sync: batch 42 rejected", "error"),
    ('time="2026-11-22T07:53:32Z" level=error msg="sync failed"', "error"),
    ('{"severity": "ERROR", "message": "sync failed"}', "error"),
])
def test_classes(message: str, expected: str) -> None:
    assert classify_message(message) == expected
    assert is_error(f"2026-11-22T07:53:32.123456789Z {message}")


@pytest.mark.parametrize("message", [
    'INFO:     172.17.0.1:51234 - "GET /health HTTP/1.1" 200 OK',
    '10.0.0.1 - - [22/Nov/2026:07:53:32 +0000] "GET /api/errors HTTP/1.1" 200 512 "-" "-"',
    "2026-11-22 07:53:32,123 INFO pool: 4 of 20 connections in use, timeout=30s",
    "INFO no error in the last batch; 0 errors, 0 warnings",
    "INFO batch 42: no validation errors, 0 validation failures; state saved",
    "Started server process [1]",
    "",
])
def test_ordinary_lines_are_not_errors(message: str) -> None:
    assert classify_message(message) is None
    assert classify([message])["error_lines"] == 0


def test_docker_timestamps_and_first_last_seen() -> None:
    access = 'INFO:     172.17.0.1:5 - "GET /api/{} HTTP/1.1" {}'
    lines = (docker("30", "INFO:     Started server process [1]")
             + docker("31", access.format("a", "500 Internal Server Error"))
             + docker("45", "2026-11-22 07:53:45,001 ERROR sync: batch rejected")
             + docker("59", access.format("b", "503 Service Unavailable")))
    result = classify(lines)
    assert (result["lines"], result["error_lines"]) == (4, 3)
    assert result["top_class"] == "http_5xx"
    five = result["classes"]["http_5xx"]
    assert five["count"] == 2
    assert five["first_seen"] == "2026-11-22T07:53:31.000001+00:00"
    assert five["last_seen"] == "2026-11-22T07:53:59.000001+00:00"
    assert five["sample"].endswith("500 Internal Server Error")
    assert result["classes"]["error"]["first_seen"] == "2026-11-22T07:53:45.000001+00:00"
    assert result["first_error_at"] == "2026-11-22T07:53:31.000001+00:00"
    assert result["last_error_at"] == "2026-11-22T07:53:59.000001+00:00"
    assert list(result["classes"]) == ["http_5xx", "error"]  # by count


def test_python_traceback_counts_once_and_its_exception_line_decides() -> None:
    lines = docker(
        "32",
        "ERROR:    Exception in ASGI application",
        "Traceback (most recent call last):",
        '  File "/app/app.py", line 88, in orders',
        "    with pool.connection() as conn:",
        '  File "/venv/lib/python3.11/site-packages/psycopg_pool/pool.py", line 170, in getconn',
        "    raise PoolTimeout(",
        "psycopg_pool.PoolTimeout: couldn't get a connection after 5.00 sec",
        'INFO:     172.17.0.1:51236 - "GET /api/orders HTTP/1.1" 500 Internal Server Error',
    )
    result = classify(lines)
    assert result["error_lines"] == 2
    assert {name: c["count"] for name, c in result["classes"].items()} == {
        "db_pool": 1, "http_5xx": 1}
    sample = result["classes"]["db_pool"]["sample"]
    assert sample.startswith("ERROR:    Exception in ASGI application")
    assert sample.endswith("couldn't get a connection after 5.00 sec")


def test_bare_and_chained_tracebacks() -> None:
    lines = [
        "Traceback (most recent call last):",
        '  File "/app/jobs.py", line 12, in run',
        "    row = rows[key]",
        "KeyError: 'customer_id'",
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        "Traceback (most recent call last):",
        '  File "/app/jobs.py", line 14, in run',
        "    raise ValueError(key)",
        "ValueError: customer_id",
        "Traceback (most recent call last):",  # a new one, not chained
        '  File "/app/jobs.py", line 30, in load',
        "MemoryError",
        "INFO job finished",
    ]
    result = classify(lines)
    assert result["lines"] == 15 and result["error_lines"] == 2
    assert result["classes"]["exception"]["count"] == 1
    assert result["classes"]["exception"]["sample"] == (
        "KeyError: 'customer_id' … ValueError: customer_id")
    assert result["classes"]["oom"] == {"count": 1, "first_seen": None, "last_seen": None,
                                        "sample": "MemoryError"}
    assert result["first_error_at"] is None and result["last_error_at"] is None


def test_a_traceback_under_an_access_line_is_its_own_error() -> None:
    lines = docker("33",
                   'INFO:     172.17.0.1:5 - "GET /api/x HTTP/1.1" 500 Internal Server Error',
                   "Traceback (most recent call last):",
                   '  File "/app/app.py", line 3, in x',
                   "ZeroDivisionError: division by zero")
    counts = {n: c["count"] for n, c in classify(lines)["classes"].items()}
    assert counts == {"http_5xx": 1, "exception": 1}


def test_node_stack_is_one_error() -> None:
    lines = docker(
        "34",
        "Error: connect ECONNREFUSED 10.0.0.7:6380",
        "    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16) {",
        "  errno: -111,",
        "  code: 'ECONNREFUSED',",
        "}",
        "Error: connect ECONNREFUSED 10.0.0.5:5432",
        "    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16)",
    )
    result = classify(lines)
    assert {n: c["count"] for n, c in result["classes"].items()} == {
        "connection_refused": 1, "db_connection": 1}
    # "}" is unindented: it ends the first error; it is not an error of its own
    assert result["error_lines"] == 2


def test_java_frames_and_caused_by_belong_to_the_exception_above() -> None:
    lines = [
        "2026-11-22 07:53:35.120 ERROR 1 --- [nio-8080-exec-1] o.a.c.c.C.[.[.[/].[dispatcher"
        "Servlet] : Servlet.service() threw exception",
        "java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available, "
        "request timed out after 30000ms.",
        "\tat com.zaxxer.hikari.pool.HikariPool.createTimeoutException(HikariPool.java:696)",
        "Caused by: org.postgresql.util.PSQLException: Connection refused",
        "\t... 12 more",
    ]
    result = classify(lines)
    assert result["error_lines"] == 2  # the logged line, and the exception with its stack
    assert {n: c["count"] for n, c in result["classes"].items()} == {"db_pool": 1, "error": 1}
    assert result["first_error_at"] == "2026-11-22T07:53:35.120000"  # naive: no zone given


def test_application_timestamp_after_docker_prefix() -> None:
    line = ("2026-11-22T07:53:32.123456789Z [2026-11-22 07:53:32 +0000] [7] [CRITICAL] "
            "WORKER TIMEOUT (pid:8)")
    at, message = split_timestamp(line)
    assert at is not None and at.isoformat() == "2026-11-22T07:53:32.123456+00:00"
    assert message.startswith("[2026-11-22 07:53:32 +0000]")
    assert classify([line])["top_class"] == "fatal"


@pytest.mark.parametrize(("line", "iso"), [
    ("2026-11-22T07:53:32.123456789Z x", "2026-11-22T07:53:32.123456+00:00"),
    ("2026-11-22T09:53:32+02:00 x", "2026-11-22T07:53:32+00:00"),  # normalised to UTC
    ("2026-11-22 07:53:32,123 x", "2026-11-22T07:53:32.123000"),
    ("[2026-11-22 07:53:32 +0000] x", "2026-11-22T07:53:32+00:00"),
    ("no timestamp here", None),
    ("2026-13-45T99:99:99Z x", None),
])
def test_timestamps(line: str, iso: str | None) -> None:
    at, _ = split_timestamp(line)
    assert (at.isoformat() if at else None) == iso


def test_empty_input() -> None:
    assert classify([]) == {"lines": 0, "error_lines": 0, "classes": {}, "first_error_at": None,
                            "last_error_at": None, "top_class": None}


def test_every_class_is_documented() -> None:
    assert [c.name for c in CLASSES] == [
        "oom", "db_pool", "db_connection", "constraint", "timeout", "connection_refused", "auth",
        "rate_limit", "validation", "corrupt_state", "http_5xx", "exception", "fatal", "error"]
    assert all(c.summary for c in CLASSES)
