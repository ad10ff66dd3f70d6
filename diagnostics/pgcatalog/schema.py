"""Schema objects that break writes or waste them: sequences near their end, invalid indexes.

A sequence's real limit is the lesser of its MAXVALUE and the column it feeds (a bigint
sequence behind an integer id fails at 2^31 - 1); once reached, every INSERT fails.
Defaults follow check_postgres's sequence (85% and 95% used). An INVALID index is what a
failed CREATE INDEX CONCURRENTLY or REINDEX CONCURRENTLY leaves: it is updated on every
write and never used by a query.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from diagnostics.postgres import ReadOnlySession

from .grading import Thresholds, above, by_level, verdict, worst

_COLUMN_MAX = {"smallint": 2**15 - 1, "integer": 2**31 - 1, "bigint": 2**63 - 1}


class SequenceParams(Thresholds):
    used_pct_warning: float | None = Field(85.0, ge=0, le=100,
                                           description="share of the range used (%)")
    used_pct_critical: float | None = Field(95.0, ge=0, le=100)


_SEQUENCES_SQL = """
SELECT s.schemaname || '.' || s.sequencename AS sequence, s.data_type::text AS data_type,
       s.last_value, s.min_value, s.max_value, s.increment_by, s.cycle,
       owner.table_name, owner.column_name, owner.column_type
FROM pg_sequences s
LEFT JOIN (SELECT d.objid, a.attrelid::regclass::text AS table_name, a.attname AS column_name,
                  format_type(a.atttypid, NULL) AS column_type
           FROM pg_depend d
           JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
           WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
             AND d.deptype IN ('a', 'i')) owner
  ON owner.objid = (quote_ident(s.schemaname) || '.' || quote_ident(s.sequencename))::regclass
ORDER BY 1
"""


def sequence_usage(row: dict[str, Any]) -> tuple[int, float]:
    """(the effective limit, percent of the range used) in the direction it counts."""
    column_max = _COLUMN_MAX.get(row["column_type"] or "")
    last = row["last_value"]
    if row["increment_by"] > 0:
        start, limit = row["min_value"], row["max_value"]
        if column_max is not None:
            limit = min(limit, column_max)
    else:
        start, limit = row["max_value"], row["min_value"]
        if column_max is not None:
            limit = max(limit, -column_max - 1)
    return limit, round(100.0 * abs(last - start) / max(abs(limit - start), 1), 2)


def sequence_exhaustion(db: ReadOnlySession, params: SequenceParams) -> dict[str, Any]:
    sequences, unreadable = [], []
    for row in db.query(_SEQUENCES_SQL):
        if row["last_value"] is None:  # never used, or the probe role may not read it
            unreadable.append(row["sequence"])
            continue
        limit, used = sequence_usage(row)
        level = "ok" if row["cycle"] else above(used, params.used_pct_warning,
                                                params.used_pct_critical)
        sequences.append({**row, "limit": limit, "used_pct": used, "level": level,
                          "left": abs(limit - row["last_value"]) // abs(row["increment_by"])})
    sequences = by_level(sorted(sequences, key=lambda s: -s["used_pct"]))
    level = worst(s["level"] for s in sequences)
    bad = [s for s in sequences if s["level"] != "ok"]
    if bad:
        s = bad[0]
        capped = (f", capped by {s['table_name']}.{s['column_name']} ({s['column_type']})"
                  if s["column_type"] and _COLUMN_MAX.get(s["column_type"], 2**63) < s[
                      "max_value"] else "")
        summary = (f"{len(bad)} sequence(s) near exhaustion; {s['sequence']} is "
                   f"{s['used_pct']}% used: {s['last_value']:,} of {s['limit']:,}{capped}, "
                   f"{s['left']:,} values left before every INSERT that uses it fails")
    else:
        top = sequences[0] if sequences else None
        summary = "no sequence near its limit" + (
            f" (most used: {top['sequence']} at {top['used_pct']}%)" if top else "")
    if unreadable:
        summary += (f"; {len(unreadable)} sequence(s) not read: never used or no SELECT "
                    "privilege for the probe role")
    return verdict(level, summary, count=len(bad), sequences=sequences,
                   not_read=unreadable)


class IndexParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(50, ge=1, le=500)


_INVALID_SQL = """
SELECT n.nspname || '.' || ic.relname AS index, n.nspname || '.' || tc.relname AS table,
       i.indisunique AS unique, i.indisready AS ready, pg_relation_size(ic.oid) AS bytes,
       EXISTS (SELECT FROM pg_stat_progress_create_index p WHERE p.index_relid = ic.oid)
         AS being_built
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class tc ON tc.oid = i.indrelid
JOIN pg_namespace n ON n.oid = ic.relnamespace
WHERE NOT i.indisvalid ORDER BY 1 LIMIT %(limit)s
"""


def invalid_indexes(db: ReadOnlySession, params: IndexParams) -> dict[str, Any]:
    rows = db.query(_INVALID_SQL, {"limit": params.limit})
    # An index under CREATE INDEX CONCURRENTLY is invalid until the build ends: not a fault.
    invalid = [{**r, "level": "warning"} for r in rows if not r["being_built"]]
    building = [r["index"] for r in rows if r["being_built"]]
    level = worst(r["level"] for r in invalid)
    if invalid:
        i = invalid[0]
        summary = (f"{len(invalid)} invalid index(es); {i['index']} on {i['table']}: a "
                   "CREATE INDEX CONCURRENTLY or REINDEX CONCURRENTLY failed (a duplicate, a "
                   "deadlock, a cancel) and left it: "
                   + ("every write still maintains it but no query uses it" if i["ready"]
                      else "no query uses it")
                   + "; DROP INDEX CONCURRENTLY and build it again")
    else:
        summary = "no invalid index" + (f" ({len(building)} being built now)" if building else "")
    return verdict(level, summary, count=len(invalid), indexes=invalid, being_built=building)


KINDS = [
    ("sequence_exhaustion", sequence_exhaustion, SequenceParams,
     "sequences near the end of their range, or of the column type they feed",
     {"ok / level / summary": "the most used sequence and how many values are left",
      "count": "over a threshold",
      "sequences": "[{sequence, last_value, limit, used_pct, left, table_name, column_name, "
                   "column_type, level}]",
      "not_read": "sequences never used or not readable by the probe role"}),
    ("invalid_indexes", invalid_indexes, IndexParams,
     "INVALID indexes left by a failed CREATE INDEX CONCURRENTLY / REINDEX CONCURRENTLY",
     {"ok / level / summary": "the first invalid index and why it is there",
      "count": "invalid indexes (builds in progress excluded)",
      "indexes": "[{index, table, unique, ready, bytes, level}]",
      "being_built": "indexes invalid only because their build is running"}),
]
