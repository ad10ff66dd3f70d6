"""What the server's cumulative counters say: cache hit ratio, checkpoints, deadlocks and
temporary files (pg_stat_database, pg_stat_bgwriter).

Counters run from the last stats reset. With `window: 0` a check reads the totals since
then (and reports when that was); with a window of a few seconds it samples twice and
judges the difference, which is what is happening now.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field

from diagnostics.postgres import ReadOnlySession
from runner.model import Duration

from .grading import KindSpec, Size, Thresholds, above, below, by_level, format_size, verdict, worst

_MAX_WINDOW = 20.0  # a probe step has 30s by default


class Windowed(Thresholds):
    window: Duration = Field(0.0, le=_MAX_WINDOW, description="0: totals since the stats "
                             "reset; else sample twice this far apart and judge the change")


_DATABASE_SQL = """
SELECT datname AS database, blks_hit, blks_read, deadlocks, temp_files, temp_bytes,
       conflicts, xact_commit, xact_rollback, stats_reset::text AS stats_reset
FROM pg_stat_database WHERE datname IS NOT NULL ORDER BY datname
"""
_COUNTERS = ("blks_hit", "blks_read", "deadlocks", "temp_files", "temp_bytes", "conflicts",
             "xact_commit", "xact_rollback")


def sample_databases(db: ReadOnlySession, window: float) -> list[dict[str, Any]]:
    """pg_stat_database per database: totals, or their change over `window` seconds."""
    first = db.query(_DATABASE_SQL)
    if window <= 0:
        return first
    time.sleep(window)
    before = {row["database"]: row for row in first}
    deltas = []
    for row in db.query(_DATABASE_SQL):
        old = before.get(row["database"])
        if old is not None and old["stats_reset"] == row["stats_reset"]:
            deltas.append({**row, **{k: row[k] - old[k] for k in _COUNTERS}})
    return deltas


def _since(params: Windowed, rows: list[dict[str, Any]]) -> str:
    if params.window > 0:
        return f"in the last {params.window:g}s"
    resets = sorted({str(r["stats_reset"]) for r in rows if r["stats_reset"]})
    return f"since the stats reset ({resets[0]})" if resets else "since the server started"


class HitRatioParams(Windowed):
    hit_pct_below_warning: float | None = Field(90.0, ge=0, le=100,
                                                description="hit ratio at or below this (%)")
    hit_pct_below_critical: float | None = Field(80.0, ge=0, le=100)
    min_blocks: int = Field(10_000, ge=0, description="databases with fewer block reads "
                            "and hits are not judged")


def cache_hit_ratio(db: ReadOnlySession, params: HitRatioParams) -> dict[str, Any]:
    rows = sample_databases(db, params.window)
    buffers = db.one("SELECT current_setting('shared_buffers') AS s")["s"]
    databases = []
    for row in rows:
        total = row["blks_hit"] + row["blks_read"]
        ratio = round(100.0 * row["blks_hit"] / total, 2) if total else None
        judged = total >= params.min_blocks
        databases.append({"database": row["database"], "blks_hit": row["blks_hit"],
                          "blks_read": row["blks_read"], "hit_pct": ratio, "judged": judged,
                          "level": below(ratio, params.hit_pct_below_warning,
                                         params.hit_pct_below_critical) if judged else "ok"})
    databases = by_level(sorted(databases, key=lambda d: d["hit_pct"] or 100.0))
    level = worst(d["level"] for d in databases)
    since = _since(params, rows)
    if level != "ok":
        d = databases[0]
        summary = (f"{d['database']}: {d['hit_pct']}% of block reads {since} came from "
                   f"shared_buffers ({d['blks_read']:,} from disk or the OS cache): the "
                   f"working set does not fit in shared_buffers ({buffers}), or large scans "
                   "read through it")
    else:
        judged = [d for d in databases if d["judged"]]
        summary = (f"cache hit ratio fine {since}" + (
            f" (lowest {judged[0]['database']} {judged[0]['hit_pct']}%)" if judged else
            f": no database with {params.min_blocks:,}+ block accesses to judge"))
    return verdict(level, summary, shared_buffers=buffers, databases=databases)


class CheckpointParams(Thresholds):
    requested_pct_warning: float | None = Field(20.0, ge=0, le=100, description="share of "
                                                "checkpoints requested rather than timed (%)")
    requested_pct_critical: float | None = Field(50.0, ge=0, le=100)
    min_checkpoints: int = Field(10, ge=1, description="fewer checkpoints are not judged")


_CHECKPOINT_SQL = """
SELECT checkpoints_timed AS timed, checkpoints_req AS requested,
       checkpoint_write_time AS write_ms, checkpoint_sync_time AS sync_ms,
       buffers_checkpoint, buffers_backend, buffers_backend_fsync, maxwritten_clean,
       stats_reset::text AS stats_reset,
       current_setting('max_wal_size') AS max_wal_size,
       current_setting('checkpoint_timeout') AS checkpoint_timeout
FROM pg_stat_bgwriter
"""


def checkpoints(db: ReadOnlySession, params: CheckpointParams) -> dict[str, Any]:
    row = db.one(_CHECKPOINT_SQL)
    total = row["timed"] + row["requested"]
    requested_pct = round(100.0 * row["requested"] / total, 1) if total else 0.0
    mean_s = round((row["write_ms"] + row["sync_ms"]) / 1000.0 / total, 2) if total else 0.0
    judged = total >= params.min_checkpoints
    level = (above(requested_pct, params.requested_pct_warning, params.requested_pct_critical)
             if judged else "ok")
    since = f"since {row['stats_reset']}"
    if level != "ok":
        summary = (f"{row['requested']} of {total} checkpoints ({requested_pct}%) {since} were "
                   f"requested, not timed: WAL fills max_wal_size ({row['max_wal_size']}) "
                   f"before checkpoint_timeout ({row['checkpoint_timeout']}) ends, or someone "
                   "runs CHECKPOINT; each forced checkpoint brings a burst of writes and "
                   "full-page images: raise max_wal_size")
    elif not judged:
        summary = (f"{total} checkpoint(s) {since}: fewer than {params.min_checkpoints}, "
                   "too few to judge")
    else:
        summary = f"{requested_pct}% of {total} checkpoints requested {since}; mean {mean_s}s"
    return verdict(level, summary, **{k: v for k, v in row.items()}, total=total,
                   requested_pct=requested_pct, mean_duration_s=mean_s)


class DeadlockParams(Windowed):
    deadlocks_warning: int | None = Field(1, ge=0, description="deadlocks in a database")
    deadlocks_critical: int | None = Field(10, ge=0)


def deadlocks(db: ReadOnlySession, params: DeadlockParams) -> dict[str, Any]:
    rows = sample_databases(db, params.window)
    databases = by_level(sorted(
        [{"database": r["database"], "deadlocks": r["deadlocks"],
          "level": above(r["deadlocks"], params.deadlocks_warning, params.deadlocks_critical)}
         for r in rows], key=lambda d: -d["deadlocks"]))
    level = worst(d["level"] for d in databases)
    since = _since(params, rows)
    total = sum(d["deadlocks"] for d in databases)
    if level != "ok":
        d = databases[0]
        summary = (f"{d['database']}: {d['deadlocks']} deadlock(s) {since}: transactions "
                   "lock the same rows or tables in opposite orders and the server aborts "
                   "one of each pair; the server log names both statements")
    else:
        summary = f"{total} deadlock(s) {since}, under the thresholds"
    return verdict(level, summary, total=total, databases=databases)


class TempFileParams(Windowed):
    temp_bytes_warning: Size | None = Field(1024**3, description="bytes written to "
                                            "temporary files in a database")
    temp_bytes_critical: Size | None = 10 * 1024**3


def temp_files(db: ReadOnlySession, params: TempFileParams) -> dict[str, Any]:
    rows = sample_databases(db, params.window)
    work_mem = db.one("SELECT current_setting('work_mem') AS w")["w"]
    databases = by_level(sorted(
        [{"database": r["database"], "temp_files": r["temp_files"],
          "temp_bytes": r["temp_bytes"],
          "level": above(r["temp_bytes"], params.temp_bytes_warning,
                         params.temp_bytes_critical)}
         for r in rows], key=lambda d: -d["temp_bytes"]))
    level = worst(d["level"] for d in databases)
    since = _since(params, rows)
    if level != "ok":
        d = databases[0]
        summary = (f"{d['database']}: {d['temp_files']:,} temporary file(s), "
                   f"{format_size(d['temp_bytes'])} {since}: sorts and hashes spill to disk "
                   f"because they outgrow work_mem ({work_mem}); find them with "
                   "log_temp_files or pg_stat_statements' temp_blks_written")
    else:
        summary = (f"{format_size(sum(d['temp_bytes'] for d in databases))} written to "
                   f"temporary files {since}, under the thresholds")
    return verdict(level, summary, work_mem=work_mem, databases=databases)


class RollbackParams(Windowed):
    rollback_pct_warning: float | None = Field(10.0, ge=0, le=100, description="share of "
                                               "transactions rolled back (%)")
    rollback_pct_critical: float | None = Field(30.0, ge=0, le=100)
    min_transactions: int = Field(1000, ge=0, description="databases with fewer "
                                  "transactions are not judged")


def rollback_ratio(db: ReadOnlySession, params: RollbackParams) -> dict[str, Any]:
    rows = sample_databases(db, params.window)
    databases = []
    for row in rows:
        total = row["xact_commit"] + row["xact_rollback"]
        pct = round(100.0 * row["xact_rollback"] / total, 1) if total else 0.0
        judged = total >= params.min_transactions
        databases.append({"database": row["database"], "commits": row["xact_commit"],
                          "rollbacks": row["xact_rollback"], "rollback_pct": pct,
                          "judged": judged,
                          "level": above(pct, params.rollback_pct_warning,
                                         params.rollback_pct_critical) if judged else "ok"})
    databases = by_level(sorted(databases, key=lambda d: -d["rollback_pct"]))
    level = worst(d["level"] for d in databases)
    since = _since(params, rows)
    if level != "ok":
        d = databases[0]
        summary = (f"{d['database']}: {d['rollback_pct']}% of transactions rolled back "
                   f"{since} ({d['rollbacks']:,} of {d['commits'] + d['rollbacks']:,}): "
                   "errors abort them (constraint violations, serialization failures, "
                   "timeouts) or the application rolls back by design; the server log's "
                   "ERROR lines say which")
    else:
        summary = f"rollback share under the thresholds {since}"
    return verdict(level, summary, databases=databases)


KINDS: list[KindSpec] = [
    ("rollback_ratio", rollback_ratio, RollbackParams,
     "share of transactions rolled back per database (check_postgres commitratio)",
     {"ok / level / summary": "the worst database and the usual causes",
      "databases": "[{database, commits, rollbacks, rollback_pct, judged, level}]"}),
    ("cache_hit_ratio", cache_hit_ratio, HitRatioParams,
     "share of block reads served from shared_buffers, per database",
     {"ok / level / summary": "the lowest ratio and what it means",
      "shared_buffers": "the setting",
      "databases": "[{database, blks_hit, blks_read, hit_pct, judged, level}]"}),
    ("checkpoints", checkpoints, CheckpointParams,
     "checkpoints requested vs timed (pg_stat_bgwriter) and their mean duration",
     {"ok / level / summary": "the requested share and its cause",
      "timed / requested / total": "checkpoint counts since stats_reset",
      "requested_pct": "percent requested", "mean_duration_s": "write + sync per checkpoint",
      "max_wal_size / checkpoint_timeout": "the settings"}),
    ("deadlocks", deadlocks, DeadlockParams,
     "deadlocks per database (pg_stat_database), over a window or since the stats reset",
     {"ok / level / summary": "the database with most and why it happens",
      "total": "all databases", "databases": "[{database, deadlocks, level}]"}),
    ("temp_files", temp_files, TempFileParams,
     "temporary files written per database (sorts and hashes over work_mem)",
     {"ok / level / summary": "the database with most and why", "work_mem": "the setting",
      "databases": "[{database, temp_files, temp_bytes, level}]"}),
]
