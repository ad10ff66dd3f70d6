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

from .grading import KindSpec, Size, Thresholds, above, by_level, format_size, verdict, worst

_COLUMN_MAX = {"smallint": 2**15 - 1, "integer": 2**31 - 1, "bigint": 2**63 - 1}


class SequenceParams(Thresholds):
    used_pct_warning: float | None = Field(85.0, ge=0, le=100,
                                           description="share of the range used (%)")
    used_pct_critical: float | None = Field(95.0, ge=0, le=100)


_SEQUENCES_SQL = """
SELECT s.schemaname || '.' || s.sequencename AS sequence, s.data_type::text AS data_type,
       s.last_value, s.min_value, s.max_value, s.increment_by, s.cycle,
       has_sequence_privilege(quote_ident(s.schemaname) || '.' || quote_ident(s.sequencename),
                              'SELECT') AS readable,
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
    sequences, unreadable, unused = [], [], []
    for row in db.query(_SEQUENCES_SQL):
        if not row["readable"]:  # pg_sequences hides last_value from a role without SELECT
            unreadable.append(row["sequence"])
            continue
        if row["last_value"] is None:  # never used: nothing consumed yet
            unused.append(row["sequence"])
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
        summary += (f"; {len(unreadable)} sequence(s) NOT CHECKED: the probe role may not "
                    "read them (GRANT SELECT ON ALL SEQUENCES, or pg_read_all_data)")
    return verdict(level, summary, count=len(bad), sequences=sequences,
                   not_read=unreadable, never_used=unused)


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


KINDS: list[KindSpec] = [
    ("sequence_exhaustion", sequence_exhaustion, SequenceParams,
     "sequences near the end of their range, or of the column type they feed",
     {"ok / level / summary": "the most used sequence and how many values are left",
      "count": "over a threshold",
      "sequences": "[{sequence, last_value, limit, used_pct, left, table_name, column_name, "
                   "column_type, level}]",
      "not_read": "sequences the probe role may not read: not checked",
      "never_used": "sequences nothing has taken a value from yet"}),
    ("invalid_indexes", invalid_indexes, IndexParams,
     "INVALID indexes left by a failed CREATE INDEX CONCURRENTLY / REINDEX CONCURRENTLY",
     {"ok / level / summary": "the first invalid index and why it is there",
      "count": "invalid indexes (builds in progress excluded)",
      "indexes": "[{index, table, unique, ready, bytes, level}]",
      "being_built": "indexes invalid only because their build is running"}),
]


class TriggerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(50, ge=1, le=500)


_TRIGGERS_SQL = """
SELECT n.nspname || '.' || c.relname AS table, t.tgname AS trigger, t.tgisinternal AS internal,
       CASE t.tgenabled WHEN 'D' THEN 'disabled' WHEN 'R' THEN 'replica only'
            ELSE 'always' END AS enabled,
       coalesce(k.contype = 'f', false) AS foreign_key,
       coalesce(k.conname, '') AS constraint_name
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_constraint k ON k.oid = t.tgconstraint
WHERE t.tgenabled = 'D' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1, 2 LIMIT %(limit)s
"""


def disabled_triggers(db: ReadOnlySession, params: TriggerParams) -> dict[str, Any]:
    rows = db.query(_TRIGGERS_SQL, {"limit": params.limit})
    # A disabled foreign-key trigger means the constraint is not enforced: data can break.
    triggers = by_level([{**r, "level": "critical" if r["foreign_key"] else "warning"}
                         for r in rows])
    level = worst(t["level"] for t in triggers)
    if triggers:
        t = triggers[0]
        what = (f"foreign key {t['constraint_name']} is not enforced" if t["foreign_key"]
                else f"trigger {t['trigger']} does not fire")
        summary = (f"{len(triggers)} disabled trigger(s); on {t['table']} {what}: "
                   "ALTER TABLE ... DISABLE TRIGGER (a bulk load, a migration) was never undone; "
                   "ENABLE TRIGGER it" + (" and check the rows written meanwhile"
                                          if t["foreign_key"] else ""))
    else:
        summary = "no disabled trigger"
    return verdict(level, summary, count=len(triggers), triggers=triggers)


_NOT_VALID_SQL = """
SELECT n.nspname || '.' || c.relname AS table, k.conname AS constraint_name,
       CASE k.contype WHEN 'f' THEN 'foreign key' WHEN 'c' THEN 'check' ELSE k.contype::text
       END AS type
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT k.convalidated AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1, 2 LIMIT %(limit)s
"""


def unvalidated_constraints(db: ReadOnlySession, params: TriggerParams) -> dict[str, Any]:
    rows = [{**r, "level": "warning"} for r in db.query(_NOT_VALID_SQL,
                                                           {"limit": params.limit})]
    level = worst(r["level"] for r in rows)
    if rows:
        r = rows[0]
        summary = (f"{len(rows)} constraint(s) added NOT VALID and never validated; "
                   f"{r['type']} {r['constraint_name']} on {r['table']}: new rows are checked "
                   "but rows from before were never: ALTER TABLE ... VALIDATE CONSTRAINT")
    else:
        summary = "every constraint is validated"
    return verdict(level, summary, count=len(rows), constraints=rows)


class UnusedIndexParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_size: Size = Field(100 * 1024**2, description="smaller unused indexes are not reported")
    limit: int = Field(20, ge=1, le=200)


_UNUSED_SQL = """
SELECT s.schemaname || '.' || s.indexrelname AS index, s.schemaname || '.' || s.relname AS table,
       pg_relation_size(s.indexrelid) AS bytes, s.idx_scan AS scans,
       d.stats_reset::text AS stats_reset
FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid
LEFT JOIN pg_stat_database d ON d.datname = current_database()
WHERE s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary AND i.indisvalid
  AND pg_relation_size(s.indexrelid) >= %(min_size)s
  AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = s.indexrelid)
ORDER BY 3 DESC LIMIT %(limit)s
"""


def unused_indexes(db: ReadOnlySession, params: UnusedIndexParams) -> dict[str, Any]:
    rows = [{**r, "size": format_size(r["bytes"]), "level": "warning"}
            for r in db.query(_UNUSED_SQL, {"min_size": params.min_size, "limit": params.limit})]
    level = worst(r["level"] for r in rows)
    if rows:
        r = rows[0]
        since = f"since {r['stats_reset']}" if r["stats_reset"] else "since the server started"
        summary = (f"{len(rows)} index(es) of {format_size(params.min_size)}+ never scanned "
                   f"{since}; {r['index']} on {r['table']} ({r['size']}) slows every write "
                   "and is read by no query (check the standbys before dropping it)")
    else:
        summary = f"no unused index of {format_size(params.min_size)} or more"
    return verdict(level, summary, count=len(rows), indexes=rows)


KINDS += [
    ("disabled_triggers", disabled_triggers, TriggerParams,
     "disabled triggers; a disabled foreign-key trigger (constraint not enforced) is critical",
     {"ok / level / summary": "the worst and what it stops enforcing",
      "count": "disabled triggers",
      "triggers": "[{table, trigger, internal, foreign_key, constraint_name, level}]"}),
    ("unvalidated_constraints", unvalidated_constraints, TriggerParams,
     "constraints added NOT VALID and never validated",
     {"ok / level / summary": "the first and what it means", "count": "how many",
      "constraints": "[{table, constraint_name, type, level}]"}),
    ("unused_indexes", unused_indexes, UnusedIndexParams,
     "indexes never scanned since the stats reset (unique, primary and constraint indexes "
     "left out)",
     {"ok / level / summary": "the largest and what it costs", "count": "how many",
      "indexes": "[{index, table, bytes, size, scans, stats_reset, level}]"}),
]
