"""Sync jobs: when did each client last sync successfully? (`postgres.last_sync`)

A read-only kind on PostgreSQL targets: it runs on the postgres backend's read-only session
(`diagnostics.postgres.ReadOnlySession`), so this module adds a step kind and no backend.
There is deliberately no generic "run this SQL" probe; this one query reads a sync job's
run table, which must have these columns:

    client text, status text ('success' marks a successful run), finished_at timestamptz

(the sync-engine's `sync_runs` table has them). Times come back as ISO 8601 in UTC
(`2026-11-22T07:50:02.311000+00:00`), the form `diagnostics.logclass` gives log times, so a
playbook can compare the two.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from runner.model import Duration
from runner.registry import Registry, StepKind

# A table, optionally schema-qualified; quoted into the SQL, so no quote may appear in it.
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$",
                                  max_length=127)]


class Session(Protocol):
    """What this probe needs of the postgres backend's read-only session."""

    def query(self, sql: str, params: Any = None) -> list[dict[str, Any]]: ...


class LastSyncParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    table: Identifier = Field("sync_runs", description="the sync job's run table")
    client: str | None = Field(None, max_length=200, description="one client; else all")
    stale_after: Duration = Field(3600.0, gt=0, description="a last success older is stale")


def _utc(column: str) -> str:
    return (f"to_char({column} AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')")


_LAST_SYNC = """
SELECT client,
       {last_success} AS last_success,
       round(extract(epoch FROM now() - max(finished_at) FILTER (WHERE status = 'success'))
             ::numeric, 1) AS age_s,
       {last_failure} AS last_failure,
       (array_agg(status ORDER BY finished_at DESC NULLS FIRST))[1] AS last_status,
       count(*) AS runs
FROM {table} {where}
GROUP BY client ORDER BY client
"""


def quote_table(table: str) -> str:
    return ".".join(f'"{part}"' for part in table.split("."))


def last_sync(db: Session, params: LastSyncParams) -> dict[str, Any]:
    sql = _LAST_SYNC.format(
        last_success=_utc("max(finished_at) FILTER (WHERE status = 'success')"),
        last_failure=_utc("max(finished_at) FILTER (WHERE status <> 'success')"),
        table=quote_table(params.table),
        where="WHERE client = %s" if params.client is not None else "")
    rows = db.query(sql, (params.client,) if params.client is not None else None)
    clients = [{**row, "age_s": float(row["age_s"]) if row["age_s"] is not None else None,
                "stale": row["age_s"] is None or float(row["age_s"]) > params.stale_after,
                "failing": row["last_status"] == "failed"}
               for row in rows]
    stale = [c for c in clients if c["stale"]]
    # The stalest: never synced first, then the oldest last success.
    stale.sort(key=lambda c: (c["age_s"] is not None, -(c["age_s"] or 0)))
    result: dict[str, Any] = {
        "table": params.table, "stale_after_s": params.stale_after, "clients": clients,
        "count": len(clients), "stale_clients": [c["client"] for c in stale],
        "failing_clients": [c["client"] for c in clients if c["failing"]],
        "stalest": stale[0]["client"] if stale else None}
    if params.client is not None:
        found = clients[0] if clients else None
        result.update({
            "client": params.client, "found": found is not None,
            "last_success": found["last_success"] if found else None,
            "age_s": found["age_s"] if found else None,
            "stale": found["stale"] if found else True,
            "last_failure": found["last_failure"] if found else None,
            "last_status": found["last_status"] if found else None,
            "failing": found["failing"] if found else False,
            "runs": found["runs"] if found else 0})
    return result


def register(registry: Registry) -> None:
    # The postgres backend (diagnostics.postgres) serves the target and opens the session.
    registry.add(StepKind(
        "postgres.last_sync", "postgres", last_sync, LastSyncParams, False,
        "a sync job's last successful run per client, from its run table",
        {"clients": "[{client, last_success, age_s, stale, last_failure, last_status, "
                    "failing, runs}]",
         "stale_clients / failing_clients": "client names", "stalest": "never or longest ago",
         "last_success / age_s / stale / last_status / failing": "with `client`: that "
         "client's (last_success: ISO UTC, none when it never succeeded)"}))
