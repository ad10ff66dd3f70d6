"""The SQL guard's refusals say exactly what was refused, and a name is in pg_catalog only
when pg_catalog is its whole qualifier: the cases mutation testing found untested
(scripts/mutation diagnostics/postgres_guard.py). The bypass table is test_postgres_guard.py."""

from __future__ import annotations

import pytest

from diagnostics.postgres_guard import check_read_only_sql
from runner.errors import PermanentError

QUERY_NOT = "probe SQL refused: a probe runs a query (SELECT, WITH, SHOW, EXPLAIN), not "


@pytest.mark.parametrize(("sql", "message"), [
    ("INSERT INTO t VALUES (1)", QUERY_NOT + "INSERT"),
    ("CREATE TABLE t (a int)", QUERY_NOT + "CREATE"),
    ("VACUUM", QUERY_NOT + "VACUUM"),
    ("SELECT 1 OPERATOR(public.+) 1", "probe SQL refused: operator public.+ is outside "
                                      "pg_catalog"),
    # pg_catalog must be the whole qualifier, not just its first part
    ("SELECT pg_catalog.evil.now()", "probe SQL refused: function pg_catalog.evil.now is "
                                     "outside pg_catalog"),
    ("SELECT mydb.pg_catalog.now()", "probe SQL refused: function mydb.pg_catalog.now is "
                                     "outside pg_catalog"),
])
def test_a_refusal_names_what_it_refused(sql: str, message: str) -> None:
    with pytest.raises(PermanentError) as refused:
        check_read_only_sql(sql)
    assert str(refused.value) == message


def test_text_that_does_not_parse_is_refused_with_the_parsers_reason() -> None:
    with pytest.raises(PermanentError) as refused:
        check_read_only_sql("SELEC 1")
    assert str(refused.value) == ('probe SQL refused: it does not parse as PostgreSQL '
                                  '(syntax error at or near "SELEC", at index 0)')


@pytest.mark.parametrize("sql", ["SELECT 1 OPERATOR(pg_catalog.+) 1",
                                 "SELECT pg_catalog.now()"])
def test_the_servers_own_qualified_names_pass(sql: str) -> None:
    check_read_only_sql(sql)
