"""WAL on disk: whether archiving keeps up, and how much pg_wal holds and why.

pg_wal normally stays under max_wal_size; it grows past it only when something keeps old
segments: a failing archive_command (every segment waits for it), a replication slot
whose consumer is behind or gone, or wal_keep_size. When pg_wal's disk fills, the server
stops. check_postgres's archive_ready and wal_files are the models here.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from diagnostics.postgres import ReadOnlySession

from .grading import KindSpec, Thresholds, above, format_size, verdict, worst


class ArchivingParams(Thresholds):
    ready_warning: int | None = Field(10, ge=0, description="segments waiting for "
                                      "archive_command")
    ready_critical: int | None = Field(100, ge=0)


_ARCHIVER_SQL = """
SELECT current_setting('archive_mode') AS archive_mode,
       current_setting('archive_command') <> '' AS has_command,
       a.archived_count, a.last_archived_wal, a.last_archived_time::text AS last_archived_time,
       a.failed_count, a.last_failed_wal, a.last_failed_time::text AS last_failed_time,
       coalesce(a.last_failed_time > a.last_archived_time
                OR (a.last_archived_time IS NULL AND a.failed_count > 0), false) AS failing,
       (SELECT count(*) FROM pg_ls_archive_statusdir() f
        WHERE right(f.name, 6) = '.ready') AS ready
FROM pg_stat_archiver a
"""


def wal_archiving(db: ReadOnlySession, params: ArchivingParams) -> dict[str, Any]:
    row = db.one(_ARCHIVER_SQL)
    if row["archive_mode"] == "off":
        return verdict("ok", "WAL archiving is off (archive_mode = off)", **row)
    level = worst([above(row["ready"], params.ready_warning, params.ready_critical),
                   "critical" if row["failing"] else "ok"])
    if row["failing"]:
        summary = (f"archive_command fails: last failure {row['last_failed_time']} on "
                   f"{row['last_failed_wal']}, last success "
                   f"{row['last_archived_time'] or 'never'}; {row['ready']} segment(s) wait "
                   "and stay in pg_wal until it works, and point-in-time recovery stops at "
                   "the last archived one: the server log has the command's error")
    elif level != "ok":
        summary = (f"{row['ready']} WAL segment(s) wait for archive_command: it runs but "
                   "slower than WAL is written")
    else:
        summary = (f"archiving keeps up: {row['archived_count']} archived, last "
                   f"{row['last_archived_time'] or 'never'}, {row['ready']} waiting")
    return verdict(level, summary, **row)


class WalSizeParams(Thresholds):
    pct_of_max_warning: float | None = Field(150.0, ge=0, description="pg_wal's size as a "
                                             "percent of max_wal_size + wal_keep_size")
    pct_of_max_critical: float | None = Field(300.0, ge=0)


_WAL_SQL = """
SELECT count(*) AS files, coalesce(sum(size), 0)::bigint AS bytes,
       pg_size_bytes(current_setting('max_wal_size'))
         + pg_size_bytes(current_setting('wal_keep_size')) AS budget_bytes,
       current_setting('max_wal_size') AS max_wal_size,
       current_setting('wal_keep_size') AS wal_keep_size
FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'
"""
_SLOT_SQL = """
SELECT slot_name AS slot, active,
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                            ELSE pg_current_wal_lsn() END, restart_lsn)::bigint AS retained_bytes
FROM pg_replication_slots WHERE restart_lsn IS NOT NULL ORDER BY 3 DESC LIMIT 1
"""


def wal_size(db: ReadOnlySession, params: WalSizeParams) -> dict[str, Any]:
    row = db.one(_WAL_SQL)
    pct = round(100.0 * row["bytes"] / max(row["budget_bytes"], 1), 1)
    level = above(pct, params.pct_of_max_warning, params.pct_of_max_critical)
    slot = db.one(_SLOT_SQL)
    archiver = db.one("SELECT coalesce(last_failed_time > last_archived_time OR "
                      "(last_archived_time IS NULL AND failed_count > 0), false) AS failing "
                      "FROM pg_stat_archiver")
    causes = []
    if archiver["failing"]:
        causes.append("archive_command is failing, so no segment can be removed")
    if slot and slot["retained_bytes"] and slot["retained_bytes"] > row["budget_bytes"] / 2:
        causes.append(f"replication slot {slot['slot']!r} "
                      f"({'active' if slot['active'] else 'inactive'}) retains "
                      f"{format_size(slot['retained_bytes'])}")
    held = "; ".join(causes) or "wal_keep_size or a burst of writes faster than checkpoints"
    size = format_size(row["bytes"])
    if level != "ok":
        summary = (f"pg_wal holds {size} in {row['files']} segments, {pct}% of max_wal_size "
                   f"({row['max_wal_size']}) + wal_keep_size ({row['wal_keep_size']}): "
                   f"{held}; when its disk fills the server stops")
    else:
        summary = f"pg_wal holds {size} ({pct}% of max_wal_size + wal_keep_size)"
    return verdict(level, summary, **row, pct_of_max=pct, causes=causes,
                   largest_slot=slot or None)


KINDS: list[KindSpec] = [
    ("wal_archiving", wal_archiving, ArchivingParams,
     "WAL archiving failing or falling behind (pg_stat_archiver, segments .ready)",
     {"ok / level / summary": "whether archive_command fails, since when, what waits",
      "failing": "the last attempt failed", "ready": "segments waiting",
      "archived_count / failed_count / last_*": "pg_stat_archiver"}),
    ("wal_size", wal_size, WalSizeParams,
     "pg_wal's size against max_wal_size + wal_keep_size, and what keeps it from shrinking",
     {"ok / level / summary": "the size and its cause (archiver, slot)",
      "files / bytes": "WAL segments in pg_wal", "pct_of_max": "percent of the budget",
      "causes": "what holds the segments", "largest_slot": "the slot retaining most"}),
]
