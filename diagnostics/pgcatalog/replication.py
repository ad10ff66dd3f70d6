"""Replication: slots that pin WAL, and how far each standby lags at each stage.

A slot keeps every WAL segment since its restart_lsn until its consumer confirms it: a
consumer that went away (an inactive slot) makes WAL pile up until the disk is full. Lag
per standby is measured at each stage of pg_stat_replication (sent, written, flushed,
replayed), so the summary can say where it builds up: the network, the standby's disk, or
replay.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from diagnostics.postgres import ReadOnlySession
from runner.model import Duration

from .grading import KindSpec, Size, Thresholds, above, by_level, format_size, verdict, worst


class SlotParams(Thresholds):
    retained_warning: Size | None = Field(1024**3, description="WAL a slot keeps (bytes)")
    retained_critical: Size | None = 10 * 1024**3
    inactive_is_warning: bool = Field(True, description="an inactive slot is at least a "
                                      "warning, whatever it retains")


_SLOTS_SQL = """
SELECT slot_name AS slot, slot_type AS type, coalesce(plugin, '') AS plugin,
       coalesce(database, '') AS database, active, active_pid, wal_status,
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                            ELSE pg_current_wal_lsn() END, restart_lsn)::bigint AS retained_bytes,
       safe_wal_size, restart_lsn::text AS restart_lsn
FROM pg_replication_slots ORDER BY 1
"""


def replication_slots(db: ReadOnlySession, params: SlotParams) -> dict[str, Any]:
    slots = []
    for row in db.query(_SLOTS_SQL):
        levels = [above(row["retained_bytes"], params.retained_warning,
                        params.retained_critical)]
        if not row["active"] and params.inactive_is_warning:
            levels.append("warning")
        if row["wal_status"] in ("unreserved", "lost"):
            levels.append("critical")  # past max_wal_size or max_slot_wal_keep_size
        slots.append({**row, "retained": format_size(row["retained_bytes"] or 0),
                      "level": worst(levels)})
    slots = by_level(sorted(slots, key=lambda s: -(s["retained_bytes"] or 0)))
    level = worst(s["level"] for s in slots)
    if level != "ok":
        s = slots[0]
        state = ("inactive: its consumer is not connected" if not s["active"]
                 else f"active (pid {s['active_pid']}) but its consumer falls behind")
        lost = {"lost": "; the WAL it needed is already gone (wal_status lost): its consumer "
                        "must be rebuilt",
                "unreserved": "; it is past max_slot_wal_keep_size and about to lose WAL"
                }.get(s["wal_status"], "")
        summary = (f"replication slot {s['slot']!r} ({s['type']}) is {state}; it retains "
                   f"{s['retained']} of WAL, which cannot be removed while it exists{lost}; "
                   "drop it if its consumer is gone for good")
    else:
        summary = f"{len(slots)} replication slot(s), all active and within the thresholds"
    return verdict(level, summary, count=sum(1 for s in slots if s["level"] != "ok"),
                   slots=slots)


class LagParams(Thresholds):
    lag_bytes_warning: Size | None = Field(16 * 1024**2, description="WAL not yet replayed "
                                           "by a standby (bytes)")
    lag_bytes_critical: Size | None = 1024**3
    replay_lag_warning: Duration | None = Field(60.0, description="replay_lag of a standby")
    replay_lag_critical: Duration | None = 300.0
    expected_standbys: int = Field(0, ge=0, description="fewer connected standbys is "
                                   "critical")


_STANDBYS_SQL = """
SELECT application_name AS standby, client_addr::text AS client, state, sync_state,
       pg_wal_lsn_diff(pg_current_wal_lsn(), sent_lsn)::bigint AS unsent_bytes,
       pg_wal_lsn_diff(sent_lsn, write_lsn)::bigint AS unwritten_bytes,
       pg_wal_lsn_diff(write_lsn, flush_lsn)::bigint AS unflushed_bytes,
       pg_wal_lsn_diff(flush_lsn, replay_lsn)::bigint AS unreplayed_bytes,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS lag_bytes,
       extract(epoch FROM write_lag)::float8 AS write_lag_s,
       extract(epoch FROM flush_lag)::float8 AS flush_lag_s,
       extract(epoch FROM replay_lag)::float8 AS replay_lag_s
FROM pg_stat_replication ORDER BY 1
"""
_STANDBY_SELF_SQL = """
SELECT pg_last_wal_receive_lsn()::text AS received_lsn,
       pg_last_wal_replay_lsn()::text AS replayed_lsn,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint
         AS unreplayed_bytes,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_age_s
"""
_STAGES = (("unsent_bytes", "not yet sent: the primary's WAL sender or the network"),
           ("unwritten_bytes", "sent but not written: the network or the standby's receiver"),
           ("unflushed_bytes", "written but not flushed: the standby's disk"),
           ("unreplayed_bytes", "flushed but not replayed: replay is slow or paused, or a "
                                "query on the standby conflicts with it"))


def replication_lag(db: ReadOnlySession, params: LagParams) -> dict[str, Any]:
    if db.one("SELECT pg_is_in_recovery() AS r")["r"]:
        me = db.one(_STANDBY_SELF_SQL)
        level = above(me["unreplayed_bytes"], params.lag_bytes_warning,
                      params.lag_bytes_critical)
        summary = (f"this server is a standby: {format_size(me['unreplayed_bytes'] or 0)} "
                   f"received and not yet replayed; last replayed transaction "
                   f"{me['replay_age_s'] or 0:.0f}s ago")
        return verdict(level, summary, role="standby", standby=me, standbys=[])
    standbys = []
    for row in db.query(_STANDBYS_SQL):
        level = worst([above(row["lag_bytes"], params.lag_bytes_warning,
                             params.lag_bytes_critical),
                       above(row["replay_lag_s"], params.replay_lag_warning,
                             params.replay_lag_critical)])
        stage = max(_STAGES, key=lambda s: row[s[0]] or 0)
        standbys.append({**row, "level": level,
                         "stage": stage[1] if (row[stage[0]] or 0) > 0 else "none"})
    standbys = by_level(standbys)
    level = worst(s["level"] for s in standbys)
    missing = params.expected_standbys - len(standbys)
    if missing > 0:
        level = "critical"
    if standbys and standbys[0]["level"] != "ok":
        s = standbys[0]
        summary = (f"standby {s['standby']!r} lags {format_size(s['lag_bytes'] or 0)} "
                   f"(replay_lag {s['replay_lag_s'] or 0:.1f}s); most of it is "
                   f"{s['stage']}")
    elif missing > 0:
        summary = (f"{len(standbys)} standby(s) connected, {params.expected_standbys} "
                   "expected: a standby is down or cannot reach the primary")
    else:
        summary = f"{len(standbys)} standby(s) connected, within the lag thresholds"
    return verdict(level, summary, role="primary", standbys=standbys)


class ConflictParams(Thresholds):
    window: Duration = Field(0.0, le=20.0, description="0: totals since the stats reset; "
                             "else sample twice this far apart and judge the change")
    conflicts_warning: int | None = Field(1, ge=0, description="queries cancelled on a "
                                          "standby by replay, per database")
    conflicts_critical: int | None = Field(100, ge=0)


_CONFLICTS_SQL = """
SELECT c.datname AS database, c.confl_snapshot AS snapshot, c.confl_lock AS lock,
       c.confl_bufferpin AS bufferpin, c.confl_deadlock AS deadlock,
       c.confl_tablespace AS tablespace, d.stats_reset::text AS stats_reset
FROM pg_stat_database_conflicts c JOIN pg_stat_database d ON d.datid = c.datid
ORDER BY 1
"""
_CONFLICT_KINDS = ("snapshot", "lock", "bufferpin", "deadlock", "tablespace")
_CONFLICT_CAUSES = {
    "snapshot": "vacuum on the primary removed rows a standby query could still see "
                "(hot_standby_feedback off, or max_standby_streaming_delay too short)",
    "lock": "the primary took an ACCESS EXCLUSIVE lock (DDL, TRUNCATE, a vacuum truncating "
            "a table) that a standby query stood in the way of",
    "bufferpin": "replay needed a page a standby query held pinned",
    "deadlock": "a standby query deadlocked with replay",
    "tablespace": "a tablespace a standby query used was dropped",
}


def recovery_conflicts(db: ReadOnlySession, params: ConflictParams) -> dict[str, Any]:
    import time

    in_recovery = db.one("SELECT pg_is_in_recovery() AS r")["r"]
    rows = db.query(_CONFLICTS_SQL)
    if params.window > 0:
        time.sleep(params.window)
        before = {r["database"]: r for r in rows}
        rows = [{**r, **{k: r[k] - before[r["database"]][k] for k in _CONFLICT_KINDS}}
                for r in db.query(_CONFLICTS_SQL) if r["database"] in before]
    databases = []
    for row in rows:
        total = sum(row[k] for k in _CONFLICT_KINDS)
        databases.append({**row, "total": total,
                          "level": above(total, params.conflicts_warning,
                                         params.conflicts_critical)})
    databases = by_level(sorted(databases, key=lambda d: -d["total"]))
    level = worst(d["level"] for d in databases)
    since = (f"in the last {params.window:g}s" if params.window > 0
             else "since the stats reset")
    if level != "ok":
        d = databases[0]
        kind = max(_CONFLICT_KINDS, key=lambda k: d[k])
        summary = (f"{d['database']}: {d['total']} standby quer(ies) cancelled by recovery "
                   f"conflicts {since}, mostly {kind} ({d[kind]}): {_CONFLICT_CAUSES[kind]}")
    elif not in_recovery:
        summary = "this server is a primary: recovery conflicts happen on standbys"
    else:
        summary = f"no query cancelled by recovery conflicts {since}"
    return verdict(level, summary, in_recovery=in_recovery,
                   total=sum(d["total"] for d in databases), databases=databases)


KINDS: list[KindSpec] = [
    ("replication_slots", replication_slots, SlotParams,
     "replication slots that are inactive or retain too much WAL",
     {"ok / level / summary": "the worst slot and what it costs",
      "count": "slots over a threshold or inactive",
      "slots": "[{slot, type, active, wal_status, retained_bytes, safe_wal_size, level}]"}),
    ("replication_lag", replication_lag, LagParams,
     "lag per standby and per stage (sent, write, flush, replay); a standby's own view",
     {"ok / level / summary": "the worst standby and the stage where lag builds up",
      "role": "primary or standby",
      "standbys": "[{standby, state, unsent/unwritten/unflushed/unreplayed_bytes, lag_bytes, "
                  "write/flush/replay_lag_s, stage, level}]",
      "standby": "on a standby: received/replayed LSN and replay age"}),
    ("recovery_conflicts", recovery_conflicts, ConflictParams,
     "standby queries cancelled by replay, per database and kind (pg_stat_database_conflicts)",
     {"ok / level / summary": "the database with most and the cause of its main kind",
      "in_recovery": "true on a standby", "total": "all databases",
      "databases": "[{database, snapshot, lock, bufferpin, deadlock, tablespace, total, "
                   "level}]"}),
]
