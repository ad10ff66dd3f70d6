"""How big things are: databases, and the largest tables and indexes of the current one.

check_postgres has no default size limits (a big database is not a fault by itself): the
thresholds are off unless a playbook sets them, and the results are there to read.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from diagnostics.postgres import ReadOnlySession

from .grading import KindSpec, Size, Thresholds, above, by_level, format_size, verdict, worst


class DatabaseSizeParams(Thresholds):
    size_warning: Size | None = Field(None, description="a database this big is a warning")
    size_critical: Size | None = None


def database_sizes(db: ReadOnlySession, params: DatabaseSizeParams) -> dict[str, Any]:
    rows = db.query("SELECT datname AS database, pg_database_size(oid) AS bytes "
                    "FROM pg_database WHERE datallowconn "
                    "AND has_database_privilege(oid, 'CONNECT') ORDER BY 2 DESC")
    databases = by_level([{**r, "size": format_size(r["bytes"]),
                           "level": above(r["bytes"], params.size_warning,
                                          params.size_critical)} for r in rows])
    level = worst(d["level"] for d in databases)
    total = sum(d["bytes"] for d in databases)
    if level != "ok":
        d = databases[0]
        limit = params.size_critical if d["level"] == "critical" else params.size_warning
        summary = (f"{d['database']} is {d['size']}, over the {d['level']} size of "
                   f"{format_size(limit or 0)}")
    else:
        top = databases[0] if databases else None
        summary = f"{len(databases)} database(s), {format_size(total)} in all" + (
            f"; largest {top['database']} ({top['size']})" if top else "")
    return verdict(level, summary, total_bytes=total, databases=databases)


class RelationSizeParams(Thresholds):
    size_warning: Size | None = Field(None, description="a table (with its indexes and TOAST) "
                                      "this big is a warning")
    size_critical: Size | None = None
    limit: int = Field(10, ge=1, le=100)


_TABLES_SQL = """
SELECT n.nspname || '.' || c.relname AS table, pg_total_relation_size(c.oid) AS bytes,
       pg_table_size(c.oid) AS table_bytes, pg_indexes_size(c.oid) AS index_bytes,
       greatest(c.reltuples, 0)::bigint AS rows
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 2 DESC LIMIT %(limit)s
"""
_INDEXES_SQL = """
SELECT n.nspname || '.' || c.relname AS index, t.relname AS table,
       pg_relation_size(c.oid) AS bytes, coalesce(s.idx_scan, 0) AS scans
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_index i ON i.indexrelid = c.oid JOIN pg_class t ON t.oid = i.indrelid
LEFT JOIN pg_stat_all_indexes s ON s.indexrelid = c.oid
WHERE c.relkind = 'i' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
ORDER BY 3 DESC LIMIT %(limit)s
"""


def largest_relations(db: ReadOnlySession, params: RelationSizeParams) -> dict[str, Any]:
    tables = by_level([{**t, "size": format_size(t["bytes"]),
                        "level": above(t["bytes"], params.size_warning, params.size_critical)}
                       for t in db.query(_TABLES_SQL, {"limit": params.limit})])
    indexes = [{**i, "size": format_size(i["bytes"])}
               for i in db.query(_INDEXES_SQL, {"limit": params.limit})]
    level = worst(t["level"] for t in tables)
    database = db.one("SELECT current_database() AS d")["d"]
    if level != "ok":
        t = tables[0]
        summary = (f"{t['table']} is {t['size']} ({format_size(t['table_bytes'])} data and "
                   f"TOAST, {format_size(t['index_bytes'])} indexes), over the threshold")
    elif tables:
        t = tables[0]
        summary = (f"largest table in {database}: {t['table']}, {t['size']}"
                   + (f"; largest index {indexes[0]['index']}, {indexes[0]['size']}"
                      if indexes else ""))
    else:
        summary = f"no user tables in {database}"
    return verdict(level, summary, database=database, tables=tables, indexes=indexes)


KINDS: list[KindSpec] = [
    ("database_sizes", database_sizes, DatabaseSizeParams,
     "size of every database (thresholds off unless set)",
     {"ok / level / summary": "the largest database, or the one over a threshold",
      "total_bytes": "all databases", "databases": "[{database, bytes, size, level}]"}),
    ("largest_relations", largest_relations, RelationSizeParams,
     "largest tables (data, TOAST, indexes) and indexes of the current database",
     {"ok / level / summary": "the largest table, or the one over a threshold",
      "tables": "[{table, bytes, table_bytes, index_bytes, rows, size, level}]",
      "indexes": "[{index, table, bytes, scans, size}]"}),
]
