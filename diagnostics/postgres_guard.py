"""The SQL a PostgreSQL probe may run, decided on PostgreSQL's own parse tree.

`check_read_only_sql(text)` refuses anything but one SELECT (plain, WITH of SELECTs, VALUES,
TABLE), SHOW, or EXPLAIN of such a query, whose every node is of a kind known to read only
and whose every function call is on an allow-list of functions that change nothing. It is
given the exact text the server will execute (the probe handle binds parameters on the
client first), and parses it with pglast, which is PostgreSQL's own parser: quoting,
comments, dollar quoting and unicode escapes are read as the server reads them, so a name
cannot hide in a literal or a comment, nor a call behind quotes (`"pg_terminate_backend"`).

An allow-list, not a deny-list: a function nobody listed is refused, so a new server
version's new state-changing function is refused too. What the text does not show is out
of reach here: a view or a user-defined cast, operator or function that calls something
else runs with the probe role's rights, which is why that role should be unable to signal
other sessions (pg_monitor without pg_signal_backend; `runbook plan` warns otherwise).

The session this text runs on must have `standard_conforming_strings=on` (the probe
handle sets it): with it off, `'a\\''` ends one character earlier for the server than for
the parser.
"""

from __future__ import annotations

from typing import Any

from runner.errors import PermanentError

# Functions a probe may call: read-only, no side effect beyond the query itself. Names are
# as the parser yields them (unquoted names folded to lower case); a name may be qualified
# with pg_catalog and nothing else.
ALLOWED_FUNCTIONS = frozenset({
    # aggregates and window functions
    "count", "sum", "avg", "min", "max", "array_agg", "string_agg", "bool_and", "bool_or",
    "every", "json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg",
    "percentile_cont", "percentile_disc", "mode", "stddev", "variance",
    "row_number", "rank", "dense_rank", "lag", "lead", "first_value", "last_value",
    # numbers, strings, arrays, JSON
    "abs", "ceil", "ceiling", "floor", "round", "trunc", "greatest", "least", "mod",
    "length", "char_length", "octet_length", "lower", "upper", "left", "right", "substr",
    "substring", "position", "strpos", "replace", "split_part", "btrim", "ltrim", "rtrim",
    "trim", "concat", "concat_ws", "starts_with", "regexp_replace", "regexp_match",
    "regexp_matches", "md5", "to_char", "to_number", "to_timestamp", "to_date",
    "cardinality", "array_length", "array_to_string", "array_position", "unnest",
    "generate_series", "to_json", "to_jsonb", "json_build_object", "jsonb_build_object",
    "json_build_array", "jsonb_build_array", "row_to_json", "jsonb_pretty", "format_type",
    "quote_ident", "quote_literal",
    # time
    "now", "clock_timestamp", "statement_timestamp", "transaction_timestamp", "age",
    "date_trunc", "date_part", "extract", "make_interval", "timezone", "pg_sleep",
    # the server's state, read
    "version", "current_setting", "current_database", "current_schema", "current_catalog",
    "current_user", "current_role", "session_user", "user", "pg_backend_pid",
    "pg_blocking_pids", "pg_is_in_recovery", "pg_postmaster_start_time",
    "pg_last_xact_replay_timestamp", "pg_last_wal_receive_lsn", "pg_last_wal_replay_lsn",
    "pg_current_wal_lsn", "pg_wal_lsn_diff", "pg_database_size", "pg_relation_size",
    "pg_total_relation_size", "pg_table_size", "pg_indexes_size", "pg_size_pretty",
    "pg_get_userbyid", "pg_has_role", "has_database_privilege", "has_table_privilege",
    "mxid_age", "pg_size_bytes", "has_sequence_privilege",  # read-only, for pgcatalog
    "pg_ls_waldir", "pg_ls_archive_statusdir",  # list files (pg_monitor); write nothing
})

# Parse-tree nodes a read-only query is made of. Anything else (INSERT, UPDATE, DELETE,
# MERGE inside a CTE or EXPLAIN, SELECT INTO, FOR UPDATE, COPY, SET, DO, CALL...) is refused.
_READ_NODES = frozenset({
    "RawStmt", "SelectStmt", "VariableShowStmt", "ExplainStmt", "DefElem", "ResTarget",
    "ColumnRef", "A_Const", "A_Star", "A_Expr", "A_Indirection", "A_Indices", "A_ArrayExpr",
    "FuncCall", "NamedArgExpr", "TypeCast", "TypeName", "BoolExpr", "NullTest", "BooleanTest",
    "SubLink", "RangeVar", "RangeSubselect", "RangeFunction", "JoinExpr", "Alias", "SortBy",
    "WithClause", "CommonTableExpr", "CaseExpr", "CaseWhen", "CoalesceExpr", "MinMaxExpr",
    "SQLValueFunction", "RowExpr", "String", "Integer", "Float", "Boolean", "BitString",
    "WindowDef", "GroupingSet", "CollateClause",
})
_WHY_NOT = {
    "IntoClause": "SELECT INTO creates a table",
    "LockingClause": "FOR UPDATE/SHARE locks rows",
    "InsertStmt": "INSERT writes", "UpdateStmt": "UPDATE writes", "DeleteStmt": "DELETE writes",
    "MergeStmt": "MERGE writes",
}


def refuse(why: str) -> PermanentError:
    return PermanentError(f"probe SQL refused: {why}")


def check_read_only_sql(text: str) -> None:
    """Raise PermanentError unless `text` is one query that reads and calls nothing that
    changes state. `text` must be exactly what the server will execute."""
    from pglast import parse_sql
    from pglast.parser import ParseError

    try:
        statements = parse_sql(text)
    except ParseError as exc:
        raise refuse(f"it does not parse as PostgreSQL ({exc})") from None
    if len(statements) != 1:
        raise refuse(f"a probe runs one statement, not {len(statements)}")
    statement = statements[0].stmt
    if type(statement).__name__ not in {"SelectStmt", "VariableShowStmt", "ExplainStmt"}:
        raise refuse(f"a probe runs a query (SELECT, WITH, SHOW, EXPLAIN), not "
                     f"{_statement_name(statement)}")
    _check_tree(statements[0])


def _statement_name(node: Any) -> str:
    """InsertStmt -> INSERT, VariableSetStmt -> VARIABLESET: enough to say what it was."""
    return type(node).__name__.removesuffix("Stmt").upper()


def _check_tree(root: Any) -> None:
    """Every node a known read-only kind, every call an allowed function, every operator
    the server's own (walked without recursion: depth is the text's to choose)."""
    from pglast import ast

    pending: list[Any] = [root]
    while pending:
        item = pending.pop()
        if isinstance(item, tuple | list):
            pending.extend(item)
            continue
        if not isinstance(item, ast.Node):
            continue  # a scalar field: a name, a number, a flag
        node: Any = item
        kind = type(node).__name__
        if kind not in _READ_NODES:
            raise refuse(_WHY_NOT.get(kind) or f"{kind} is not part of a read-only query")
        if kind == "FuncCall":
            _check_function(node)
        elif kind == "A_Expr" and node.name:
            _check_qualified("operator", node.name)
        pending.extend(getattr(node, slot) for slot in type(node).__slots__)


def _names(parts: Any) -> list[str]:
    return [str(getattr(part, "sval", part)) for part in parts]


def _check_qualified(what: str, parts: Any) -> list[str]:
    names = _names(parts)
    if len(names) > 1 and names[:-1] != ["pg_catalog"]:
        raise refuse(f"{what} {'.'.join(names)} is outside pg_catalog")
    return names


def _check_function(call: Any) -> None:
    name = _check_qualified("function", call.funcname)[-1]
    if name not in ALLOWED_FUNCTIONS:
        raise refuse(f"{name}() is not on the probe allow-list of read-only functions")
