"""Server settings worth flagging: ones that let an incident happen or make it worse.

Each flag says what the value allows. The probe session sets its own statement_timeout
and lock_timeout, so those are read from the per-role and per-database settings
(pg_db_role_setting) rather than from the session.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from diagnostics.postgres import ReadOnlySession

from .grading import KindSpec, Level, Thresholds, above, by_level, verdict, worst


class SettingsParams(Thresholds):
    max_connections_warning: int | None = Field(500, ge=1, description="more connections "
                                                "than this: each costs memory; use a pooler")
    max_connections_critical: int | None = None
    expected_clients: int | None = Field(None, ge=0, description="the sum of the pools and "
                                         "clients that connect (e.g. replicas x pool size): "
                                         "critical when it exceeds the slots available")
    require_statement_timeout: bool = Field(False, description="warn when no role or "
                                            "database sets statement_timeout")


_SETTINGS_SQL = """
SELECT name, setting, unit, source FROM pg_settings
WHERE name IN ('max_connections', 'superuser_reserved_connections', 'reserved_connections',
               'idle_in_transaction_session_timeout', 'autovacuum', 'track_counts', 'fsync',
               'full_page_writes', 'max_prepared_transactions')
"""
_OVERRIDES_SQL = """
SELECT coalesce(r.rolname, '*') AS role, coalesce(d.datname, '*') AS database, s.setting
FROM pg_db_role_setting st
LEFT JOIN pg_roles r ON r.oid = st.setrole LEFT JOIN pg_database d ON d.oid = st.setdatabase,
unnest(st.setconfig) AS s(setting)
WHERE starts_with(s.setting, 'statement_timeout=')
"""

# setting -> (bad value, level, what it allows)
_MUST_BE_ON = {
    "autovacuum": ("critical", "dead rows are never cleaned up and tables are never frozen "
                               "against wraparound"),
    "track_counts": ("critical", "autovacuum cannot see which tables need it"),
    "fsync": ("critical", "a crash can corrupt the database"),
    "full_page_writes": ("warning", "a crash mid-write can leave torn pages"),
}


def _flag(setting: str, value: str, level: Level, why: str) -> dict[str, Any]:
    return {"setting": setting, "value": value, "level": level, "why": why}


def settings_review(db: ReadOnlySession, params: SettingsParams) -> dict[str, Any]:
    values = {r["name"]: r["setting"] for r in db.query(_SETTINGS_SQL)}
    overrides = db.query(_OVERRIDES_SQL)
    flags: list[dict[str, Any]] = []
    max_connections = int(values["max_connections"])
    slots = (max_connections - int(values["superuser_reserved_connections"])
             - int(values.get("reserved_connections", "0")))
    level = above(max_connections, params.max_connections_warning,
                  params.max_connections_critical)
    if level != "ok":
        flags.append(_flag("max_connections", str(max_connections), level,
                           "each connection is a process with its own memory; hundreds of "
                           "them contend for locks and CPU: put a pooler in front"))
    if params.expected_clients is not None and params.expected_clients > slots:
        flags.append(_flag("max_connections", str(max_connections), "critical",
                           f"{params.expected_clients} clients expected but only {slots} "
                           "slots are open to them: the pools cannot all fill"))
    if values["idle_in_transaction_session_timeout"] == "0":
        flags.append(_flag("idle_in_transaction_session_timeout", "0", "warning",
                           "a session that opens a transaction and goes quiet holds its locks "
                           "and a connection forever"))
    for name, (bad_level, why) in _MUST_BE_ON.items():
        if values.get(name) == "off":
            flags.append(_flag(name, "off", bad_level, why))  # type: ignore[arg-type]
    if params.require_statement_timeout and not overrides:
        flags.append(_flag("statement_timeout", "unset for every role and database",
                           "warning", "a runaway query runs until someone cancels it"))
    flags = by_level(flags)
    level = worst(f["level"] for f in flags)
    summary = (f"{len(flags)} setting(s) worth changing; {flags[0]['setting']} = "
               f"{flags[0]['value']}: {flags[0]['why']}" if flags
               else "no setting flagged")
    return verdict(level, summary, count=len(flags), flags=flags,
                   max_connections=max_connections, available_slots=slots,
                   settings=values, statement_timeout_overrides=overrides)


KINDS: list[KindSpec] = [
    ("settings_review", settings_review, SettingsParams,
     "settings worth flagging: max_connections vs clients, idle_in_transaction_session_timeout "
     "unset, autovacuum/track_counts/fsync/full_page_writes off, statement_timeout",
     {"ok / level / summary": "the worst flag and what the value allows",
      "count": "flags", "flags": "[{setting, value, level, why}]",
      "available_slots": "max_connections minus reserved",
      "statement_timeout_overrides": "[{role, database, setting}] from pg_db_role_setting"}),
]
