"""How big things are: databases, and the largest tables and indexes of the current one.

check_postgres has no default size limits (a big database is not a fault by itself): the
thresholds are off unless a playbook sets them, and the results are there to read.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field

from diagnostics.postgres import ReadOnlySession
from runner.model import Duration

from .grading import KindSpec, Size, Thresholds, above, by_level, format_size, verdict, worst


class DatabaseSizeParams(Thresholds):
    size_warning: Size | None = Field(None, description="a database this big is a warning")
    size_critical: Size | None = None
    window: Duration = Field(0.0, le=20.0, description="measure twice this far apart to "
                             "see growth (0: sizes only)")
    growth_per_hour_warning: Size | None = Field(None, description="growth rate (bytes an "
                                                 "hour, from the window) that is a warning")
    growth_per_hour_critical: Size | None = None


_DATABASES_SQL = """
SELECT datname AS database, pg_database_size(oid) AS bytes
FROM pg_database WHERE datallowconn AND has_database_privilege(oid, 'CONNECT')
ORDER BY 2 DESC
"""


def database_sizes(db: ReadOnlySession, params: DatabaseSizeParams) -> dict[str, Any]:
    rows = db.query(_DATABASES_SQL)
    if params.window > 0:
        time.sleep(params.window)
        before = {r["database"]: r["bytes"] for r in rows}
        rows = [{**r, "growth_bytes": r["bytes"] - before[r["database"]],
                 "growth_per_hour": round((r["bytes"] - before[r["database"]])
                                          * 3600 / params.window)}
                for r in db.query(_DATABASES_SQL) if r["database"] in before]
    databases = by_level([{**r, "size": format_size(r["bytes"]), "level": worst([
        above(r["bytes"], params.size_warning, params.size_critical),
        above(r.get("growth_per_hour"), params.growth_per_hour_warning,
              params.growth_per_hour_critical)])} for r in rows])
    level = worst(d["level"] for d in databases)
    total = sum(d["bytes"] for d in databases)
    growing = sorted((d for d in databases if d.get("growth_bytes", 0) > 0),
                     key=lambda d: -d["growth_bytes"])
    growth = (f"; {growing[0]['database']} grew {format_size(growing[0]['growth_bytes'])} in "
              f"{params.window:g}s ({format_size(growing[0]['growth_per_hour'])} an hour at "
              "that rate)" if growing else
              (f"; none grew in {params.window:g}s" if params.window > 0 else ""))
    if level != "ok":
        d = databases[0]
        if above(d["bytes"], params.size_warning, params.size_critical) == d["level"]:
            limit = params.size_critical if d["level"] == "critical" else params.size_warning
            summary = (f"{d['database']} is {d['size']}, over the {d['level']} size of "
                       f"{format_size(limit or 0)}{growth}")
        else:
            summary = (f"{d['database']} ({d['size']}) grows "
                       f"{format_size(d['growth_per_hour'])} an hour, over the {d['level']} "
                       "growth rate: at that pace its disk fills sooner than planned")
    else:
        top = databases[0] if databases else None
        summary = f"{len(databases)} database(s), {format_size(total)} in all" + (
            f"; largest {top['database']} ({top['size']})" if top else "") + growth
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
     "size of every database and, over a window, its growth (thresholds off unless set)",
     {"ok / level / summary": "the largest database, or the one over a threshold",
      "total_bytes": "all databases",
      "databases": "[{database, bytes, size, growth_bytes, growth_per_hour, level}]"}),
    ("largest_relations", largest_relations, RelationSizeParams,
     "largest tables (data, TOAST, indexes) and indexes of the current database",
     {"ok / level / summary": "the largest table, or the one over a threshold",
      "tables": "[{table, bytes, table_bytes, index_bytes, rows, size, level}]",
      "indexes": "[{index, table, bytes, scans, size}]"}),
]
