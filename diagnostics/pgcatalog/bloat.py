"""Estimated table bloat: pages a table occupies beyond what its live rows need.

An estimate, as check_postgres's bloat is: the rows' width comes from pg_stats (so it needs
ANALYZE, and the probe role must be able to read the table's statistics), the tuple header
and alignment are PostgreSQL's. A table without complete statistics is listed as not
estimated rather than guessed. Defaults follow check_postgres (1 GB and 5 GB wasted).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from diagnostics.postgres import ReadOnlySession

from .grading import KindSpec, Size, Thresholds, above, by_level, format_size, verdict, worst

_TUPLE_HEADER = 24  # 23 bytes of header plus the null bitmap, MAXALIGNed (8)
_ITEM_POINTER = 4
_PAGE_HEADER = 24


class BloatParams(Thresholds):
    wasted_warning: Size | None = Field(1024**3, description="wasted bytes in one table")
    wasted_critical: Size | None = 5 * 1024**3
    min_pages: int = Field(10, ge=1, description="smaller tables are not judged")
    limit: int = Field(20, ge=1, le=200)


_TABLES_SQL = """
SELECT n.nspname || '.' || c.relname AS table, c.relpages AS pages,
       greatest(c.reltuples, 0)::bigint AS rows, c.reloptions AS options,
       current_setting('block_size')::int AS block_size, s.width, coalesce(s.columns, 0) AS stats,
       (SELECT count(*) FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN (SELECT schemaname, tablename, sum((1 - null_frac) * avg_width) AS width,
                  count(*) AS columns
           FROM pg_stats WHERE NOT inherited GROUP BY schemaname, tablename) s
  ON s.schemaname = n.nspname AND s.tablename = c.relname
WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND c.relpages >= %(min_pages)s
ORDER BY c.relpages DESC LIMIT %(limit)s
"""


def _fillfactor(options: list[str] | None) -> int:
    for option in options or []:
        name, _, value = option.partition("=")
        if name == "fillfactor" and value.isdigit():
            return int(value)
    return 100


def expected_pages(rows: int, width: float, block_size: int, fillfactor: int) -> int:
    """Pages the live rows would fill, packed as PostgreSQL packs them."""
    tuple_bytes = _TUPLE_HEADER + 8 * math.ceil(width / 8) + _ITEM_POINTER
    usable = (block_size - _PAGE_HEADER) * fillfactor / 100
    return math.ceil(rows * tuple_bytes / usable)


def table_bloat(db: ReadOnlySession, params: BloatParams) -> dict[str, Any]:
    rows = db.query(_TABLES_SQL, {"min_pages": params.min_pages, "limit": params.limit})
    tables, unestimated = [], []
    for row in rows:
        if row["width"] is None or row["stats"] < row["columns"]:
            unestimated.append(row["table"])
            continue
        expected = expected_pages(row["rows"], row["width"], row["block_size"],
                                  _fillfactor(row["options"]))
        wasted_pages = max(row["pages"] - expected, 0)
        wasted = wasted_pages * row["block_size"]
        tables.append({"table": row["table"], "pages": row["pages"], "rows": row["rows"],
                       "expected_pages": expected, "wasted_bytes": wasted,
                       "bloat_pct": round(100.0 * wasted_pages / row["pages"], 1),
                       "level": above(wasted, params.wasted_warning, params.wasted_critical)})
    tables = by_level(sorted(tables, key=lambda t: -t["wasted_bytes"]))
    level = worst(t["level"] for t in tables)
    bad = [t for t in tables if t["level"] != "ok"]
    if bad:
        t = bad[0]
        summary = (f"{len(bad)} bloated table(s); {t['table']} wastes about "
                   f"{format_size(t['wasted_bytes'])} ({t['bloat_pct']}% of its "
                   f"{t['pages']:,} pages hold no live rows): rows were deleted or updated in "
                   "bulk and plain VACUUM keeps the space; VACUUM FULL or pg_repack return it")
    else:
        worst_table = tables[0] if tables else None
        summary = ("no table wastes more than the thresholds" + (
            f" (most: {worst_table['table']}, about {format_size(worst_table['wasted_bytes'])})"
            if worst_table else ""))
    if unestimated:
        summary += (f"; {len(unestimated)} table(s) not estimated: no statistics readable "
                    "(ANALYZE them, or give the probe role pg_read_all_data)")
    return verdict(level, summary, count=len(bad), tables=tables,
                   not_estimated=unestimated)


KINDS: list[KindSpec] = [
    ("table_bloat", table_bloat, BloatParams,
     "estimated wasted space per table from pg_stats (needs ANALYZE)",
     {"ok / level / summary": "the most bloated table and why",
      "count": "tables over a threshold",
      "tables": "[{table, pages, rows, expected_pages, wasted_bytes, bloat_pct, level}]",
      "not_estimated": "tables without readable statistics"}),
]
