"""Autovacuum keeping up: dead tuples, when tables were last vacuumed and analyzed, and
autovacuum workers that run for hours.

A table whose dead tuples pass autovacuum's own trigger (threshold + scale factor x live
rows) and stay there is not being vacuumed in time: autovacuum is off for it, its workers
are all busy elsewhere, or vacuum runs but cannot remove the dead rows because an old
snapshot still sees them. The summary says which. Age defaults follow check_postgres's
last_vacuum (1 and 2 days).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from diagnostics.postgres import ReadOnlySession
from runner.model import Duration

from .grading import KindSpec, Thresholds, above, by_level, verdict, worst


class AutovacuumParams(Thresholds):
    dead_pct_warning: float | None = Field(20.0, ge=0, le=100,
                                           description="dead share of a table's rows (%)")
    dead_pct_critical: float | None = Field(50.0, ge=0, le=100)
    min_dead_tuples: int = Field(1000, ge=0, description="tables with fewer are not judged")
    vacuum_age_warning: Duration | None = Field(86400.0, description="time since the last "
                                                "(auto)vacuum of a table over its trigger")
    vacuum_age_critical: Duration | None = 172800.0
    limit: int = Field(20, ge=1, le=200)


_TABLES_SQL = """
SELECT s.schemaname || '.' || s.relname AS table, s.n_live_tup AS live, s.n_dead_tup AS dead,
       round(100.0 * s.n_dead_tup / greatest(s.n_live_tup + s.n_dead_tup, 1), 1) AS dead_pct,
       s.n_mod_since_analyze AS modified_since_analyze,
       round(extract(epoch FROM now() - greatest(s.last_autovacuum, s.last_vacuum))::numeric)
         AS vacuum_age_s,
       round(extract(epoch FROM now() - greatest(s.last_autoanalyze, s.last_analyze))::numeric)
         AS analyze_age_s,
       s.autovacuum_count, s.autoanalyze_count,
       coalesce('autovacuum_enabled=false' = ANY(c.reloptions), false) AS autovacuum_disabled,
       current_setting('autovacuum_vacuum_threshold')::bigint
         + current_setting('autovacuum_vacuum_scale_factor')::float8 * greatest(c.reltuples, 0)
         AS autovacuum_trigger
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.n_dead_tup >= %(min_dead)s
ORDER BY s.n_dead_tup DESC LIMIT %(limit)s
"""

_OLDEST_SNAPSHOT_SQL = """
SELECT pid, age(backend_xmin) AS xmin_age,
       round(extract(epoch FROM now() - xact_start)::numeric) AS xact_age_s, state
FROM pg_stat_activity WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid()
ORDER BY age(backend_xmin) DESC LIMIT 1
"""


def _why(table: dict[str, Any], autovacuum_on: bool, snapshot: dict[str, Any]) -> str:
    if not autovacuum_on:
        return "autovacuum is off for the whole server"
    if table["autovacuum_disabled"]:
        return "autovacuum is disabled on this table (autovacuum_enabled=false)"
    if table["dead"] < table["autovacuum_trigger"]:
        return "still under autovacuum's trigger for its size"
    if table["vacuum_age_s"] is not None and snapshot and table["vacuum_age_s"] < (
            snapshot["xact_age_s"] or 0):
        return (f"vacuumed {table['vacuum_age_s']:.0f}s ago but the dead rows stay: "
                f"session pid {snapshot['pid']} ({snapshot['state']}) holds a snapshot "
                f"open for {snapshot['xact_age_s']:.0f}s")
    if table["vacuum_age_s"] is None:
        return "over autovacuum's trigger and never vacuumed: workers may all be busy"
    return (f"over autovacuum's trigger, last vacuumed {table['vacuum_age_s']:.0f}s ago: "
            "workers may all be busy (autovacuum_max_workers) or throttled")


def autovacuum_lag(db: ReadOnlySession, params: AutovacuumParams) -> dict[str, Any]:
    autovacuum_on = db.one("SELECT current_setting('autovacuum') = 'on' AS on")["on"]
    rows = db.query(_TABLES_SQL, {"min_dead": params.min_dead_tuples, "limit": params.limit})
    snapshot = db.one(_OLDEST_SNAPSHOT_SQL)
    tables = []
    for row in rows:
        over_trigger = row["dead"] >= row["autovacuum_trigger"]
        age = row["vacuum_age_s"]
        stale = above(float("inf") if age is None else age,
                      params.vacuum_age_warning, params.vacuum_age_critical)
        level = worst([above(row["dead_pct"], params.dead_pct_warning, params.dead_pct_critical),
                       stale if over_trigger else "ok"])
        tables.append({**row, "autovacuum_trigger": round(row["autovacuum_trigger"]),
                       "over_trigger": over_trigger, "level": level,
                       "why": _why(row, autovacuum_on, snapshot) if level != "ok" else ""})
    tables = by_level(tables)
    level = worst(t["level"] for t in tables)
    bad = [t for t in tables if t["level"] != "ok"]
    if bad:
        first = bad[0]
        summary = (f"{len(bad)} table(s) where vacuum is not keeping up; {first['table']}: "
                   f"{first['dead']:,} dead rows ({first['dead_pct']}%): {first['why']}")
    else:
        summary = (f"autovacuum keeps up: no table with {params.min_dead_tuples:,}+ dead rows "
                   "over the thresholds" + ("" if autovacuum_on else
                                            " (but autovacuum is off for the server)"))
    return verdict(level, summary, count=len(bad), autovacuum=autovacuum_on,
                   tables=tables, oldest_snapshot=snapshot or None)


class WorkerParams(Thresholds):
    runtime_warning: Duration | None = Field(3600.0, description="an autovacuum worker "
                                             "running this long is a warning")
    runtime_critical: Duration | None = 6 * 3600.0


_WORKERS_SQL = """
SELECT a.pid, a.datname AS database, left(a.query, 200) AS query,
       round(extract(epoch FROM now() - a.xact_start)::numeric, 1) AS runtime_s,
       a.wait_event_type, a.wait_event, p.phase,
       p.heap_blks_total, p.heap_blks_scanned, p.index_vacuum_count,
       a.query LIKE '%%(to prevent wraparound)%%' AS for_wraparound
FROM pg_stat_activity a LEFT JOIN pg_stat_progress_vacuum p ON p.pid = a.pid
WHERE a.backend_type = 'autovacuum worker' ORDER BY a.xact_start
"""


def autovacuum_workers(db: ReadOnlySession, params: WorkerParams) -> dict[str, Any]:
    limits = db.one("SELECT current_setting('autovacuum_max_workers')::int AS max_workers, "
                    "current_setting('autovacuum_vacuum_cost_limit')::int AS cost_limit, "
                    "current_setting('autovacuum_vacuum_cost_delay') AS cost_delay")
    workers = by_level([
        {**w, "level": above(w["runtime_s"], params.runtime_warning, params.runtime_critical)}
        for w in db.query(_WORKERS_SQL, {})])
    level = worst(w["level"] for w in workers)
    slow = [w for w in workers if w["level"] != "ok"]
    if slow:
        w = slow[0]
        cause = ("a wraparound vacuum, which cannot be skipped" if w["for_wraparound"]
                 else f"phase {w['phase'] or 'unknown'}, "
                      f"{w['heap_blks_scanned'] or 0:,} of {w['heap_blks_total'] or 0:,} blocks "
                      f"scanned; waits on {w['wait_event'] or 'nothing'} (cost delay "
                      f"{limits['cost_delay']}, limit {limits['cost_limit']} throttle it)")
        summary = (f"{len(slow)} autovacuum worker(s) running long; pid {w['pid']} "
                   f"for {w['runtime_s']:.0f}s on {w['query'].removeprefix('autovacuum: ')}: "
                   f"{cause}")
    else:
        summary = f"{len(workers)} of {limits['max_workers']} autovacuum workers busy, none long"
    return verdict(level, summary, count=len(slow), busy=len(workers),
                   max_workers=limits["max_workers"],
                   all_busy=len(workers) >= limits["max_workers"], workers=workers)


KINDS: list[KindSpec] = [
    ("autovacuum_lag", autovacuum_lag, AutovacuumParams,
     "tables where autovacuum is not keeping up: dead rows, last vacuum/analyze age, and why",
     {"ok / level / summary": "worst table and why (disabled, held snapshot, busy workers)",
      "count": "tables over a threshold", "autovacuum": "the server's autovacuum setting",
      "tables": "[{table, live, dead, dead_pct, vacuum_age_s, analyze_age_s, "
                "autovacuum_trigger, over_trigger, autovacuum_disabled, level, why}]",
      "oldest_snapshot": "the session with the oldest xmin, if any"}),
    ("autovacuum_workers", autovacuum_workers, WorkerParams,
     "autovacuum workers running for a long time, with their phase and progress",
     {"ok / level / summary": "the longest worker and what it is doing",
      "count": "workers over a threshold", "busy": "workers running",
      "all_busy": "every worker slot taken", "workers": "[{pid, query, runtime_s, phase, ...}]"}),
]
