"""libpq as the user wrote it: runbook's `options` and `connect_timeout` are merged with the
DSN's (else PGOPTIONS, PGCONNECT_TIMEOUT), not put in their place. (Against the lab's
PostgreSQL, search_path from the DSN in effect and the read-only guard holding:
tests/scenarios/test_client_conventions_lab.py.)"""

from __future__ import annotations

import pytest

from diagnostics.postgres import merged_with_dsn

OURS = "-c statement_timeout=5000 -c default_transaction_read_only=on"


@pytest.fixture(autouse=True)
def no_libpq_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGOPTIONS", raising=False)
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)


@pytest.mark.parametrize("dsn", [
    "host=db dbname=shop options='-c search_path=shop,public'",
    "postgresql://ro@db/shop?options=-c%20search_path%3Dshop%2Cpublic",
])
def test_the_dsn_s_options_come_first_and_ours_after(dsn: str) -> None:
    merged = merged_with_dsn(dsn, OURS, 5)
    # the server applies them in order: where both set a parameter, ours wins
    assert merged["options"] == f"-c search_path=shop,public {OURS}"


def test_pgoptions_when_the_dsn_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGOPTIONS", "-c search_path=audit")
    assert merged_with_dsn("host=db", OURS, 5)["options"] == f"-c search_path=audit {OURS}"
    # the DSN's own, as libpq reads them, win over the environment's
    assert merged_with_dsn("host=db options='-c work_mem=8MB'", OURS, 5)["options"] \
        == f"-c work_mem=8MB {OURS}"


def test_no_options_of_the_user_leaves_ours() -> None:
    assert merged_with_dsn("host=db", OURS, 5) == {"options": OURS, "connect_timeout": 5}


@pytest.mark.parametrize(("dsn", "env", "expected"), [
    ("host=db connect_timeout=2", None, 2),     # the user's is shorter: kept
    ("host=db connect_timeout=30", None, 5),    # runbook's bound holds
    ("host=db connect_timeout=0", None, 5),     # libpq's 0 is "for ever": ours
    ("host=db", "3", 3),                        # PGCONNECT_TIMEOUT, as libpq reads it
    ("host=db connect_timeout=4", "1", 4),      # the DSN's before the environment's
    ("host=db connect_timeout=soon", None, 5),  # not a number: ours (libpq says why)
])
def test_the_shorter_connect_timeout(monkeypatch: pytest.MonkeyPatch, dsn: str,
                                     env: str | None, expected: int) -> None:
    if env is not None:
        monkeypatch.setenv("PGCONNECT_TIMEOUT", env)
    assert merged_with_dsn(dsn, OURS, 5)["connect_timeout"] == expected
