"""Orphaned prepared transactions: PREPARE TRANSACTION with no COMMIT PREPARED after it.

A prepared transaction outlives its session: it keeps its locks and holds back the xmin
horizon (vacuum, wraparound) until someone commits or rolls it back by its gid, usually
because the transaction manager that prepared it crashed or forgot it. Defaults follow
check_postgres's prepared_txns (1 and 30 seconds old).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from diagnostics.postgres import ReadOnlySession
from runner.model import Duration

from .grading import KindSpec, Thresholds, above, by_level, verdict, worst


class PreparedParams(Thresholds):
    age_warning: Duration | None = Field(1.0, description="a prepared transaction this old "
                                         "is a warning")
    age_critical: Duration | None = 30.0


_PREPARED_SQL = """
SELECT p.gid, p.database, p.owner, p.prepared,
       round(extract(epoch FROM now() - p.prepared)::numeric, 1) AS age_s,
       age(p.transaction) AS xid_age,
       coalesce(held.locks, 0) AS locks, coalesce(held.relations, '{}') AS locked_relations
FROM pg_prepared_xacts p
LEFT JOIN (
  -- A prepared transaction's locks keep its virtual transaction ID, with no pid.
  SELECT x.transactionid::text AS xid, count(*) AS locks,
         array_agg(DISTINCT l.relation::regclass::text)
           FILTER (WHERE l.relation IS NOT NULL) AS relations
  FROM pg_locks x JOIN pg_locks l
    ON l.virtualtransaction = x.virtualtransaction AND l.pid IS NULL
  WHERE x.locktype = 'transactionid' AND x.pid IS NULL
  GROUP BY x.transactionid::text  -- xid has no ordering: group on its text
) held ON held.xid = p.transaction::text
ORDER BY p.prepared
"""


def _on(relations: list[str]) -> str:
    return f" on {', '.join(relations)}" if relations else ""


def prepared_transactions(db: ReadOnlySession, params: PreparedParams) -> dict[str, Any]:
    limit = db.one("SELECT current_setting('max_prepared_transactions')::int AS n")["n"]
    rows = by_level([{**row, "level": above(row["age_s"], params.age_warning,
                                            params.age_critical)}
                     for row in db.query(_PREPARED_SQL)])
    level = worst(r["level"] for r in rows)
    old = [r for r in rows if r["level"] != "ok"]
    if old:
        first = old[0]
        summary = (f"{len(old)} prepared transaction(s) left uncommitted; gid "
                   f"{first['gid']!r} in {first['database']} by {first['owner']}, prepared "
                   f"{first['age_s']:.0f}s ago, holds {first['locks']} lock(s)"
                   f"{_on(first['locked_relations'])}"
                   " and keeps "
                   f"vacuum from removing rows newer than it (xid age {first['xid_age']:,}): "
                   "its transaction manager never finished it; COMMIT PREPARED or "
                   "ROLLBACK PREPARED it by gid")
    elif limit == 0:
        summary = "prepared transactions are disabled (max_prepared_transactions = 0)"
    else:
        summary = f"{len(rows)} prepared transaction(s), none older than the thresholds"
    return verdict(level, summary, count=len(old), total=len(rows),
                   max_prepared_transactions=limit, transactions=rows)


KINDS: list[KindSpec] = [
    ("prepared_transactions", prepared_transactions, PreparedParams,
     "prepared transactions (two-phase commit) left uncommitted, with their locks and age",
     {"ok / level / summary": "the oldest and what it holds",
      "count": "over a threshold", "total": "all prepared transactions",
      "transactions": "[{gid, database, owner, prepared, age_s, xid_age, locks, level}]"}),
]
