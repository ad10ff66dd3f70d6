"""Transaction ID and multixact wraparound: how old each database's frozen horizon is.

PostgreSQL stops accepting writes about 2^31 (2.1 billion) transactions or multixacts past
a database's oldest unfrozen one, so the age of datfrozenxid / datminmxid must stay far
below that. Defaults follow check_postgres's txn_wraparound (1.3 and 1.4 billion). When
the age is high the cause is usually something holding the xmin horizon back (a
long-open transaction, an orphaned prepared transaction, a replication slot), so that
vacuum cannot freeze: the summary names the oldest such holder.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from diagnostics.postgres import ReadOnlySession

from .grading import KindSpec, Thresholds, above, by_level, verdict, worst

WRAP_LIMIT = 2**31  # where the server stops: age is measured against this


class WraparoundParams(Thresholds):
    age_warning: int | None = Field(1_300_000_000, ge=0, le=WRAP_LIMIT,
                                    description="age at which a database is a warning")
    age_critical: int | None = Field(1_400_000_000, ge=0, le=WRAP_LIMIT,
                                     description="age at which a database is critical")


_DATABASES_SQL = """
SELECT datname AS database, {age}({column}) AS age,
       current_setting('{setting}')::bigint AS freeze_max_age
FROM pg_database WHERE datallowconn ORDER BY 2 DESC
"""

# What keeps vacuum from freezing: the oldest xmin each holder pins.
_HOLDERS_SQL = """
SELECT * FROM (
  SELECT 'session pid ' || pid AS holder, age(backend_xmin) AS xmin_age,
         coalesce(datname, '') AS database, left(coalesce(query, ''), 120) AS detail
  FROM pg_stat_activity WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid()
  UNION ALL
  SELECT 'prepared transaction ' || quote_literal(gid), age(transaction), database,
         'prepared at ' || prepared::text
  FROM pg_prepared_xacts
  UNION ALL
  SELECT 'replication slot ' || quote_literal(slot_name), greatest(age(xmin), age(catalog_xmin)),
         coalesce(database, ''), CASE WHEN active THEN 'active' ELSE 'inactive' END
  FROM pg_replication_slots WHERE xmin IS NOT NULL OR catalog_xmin IS NOT NULL
) holders ORDER BY xmin_age DESC LIMIT 3
"""


def _wraparound(db: ReadOnlySession, params: WraparoundParams, *, what: str, age: str,
                column: str, setting: str) -> dict[str, Any]:
    rows = db.query(_DATABASES_SQL.format(age=age, column=column, setting=setting))
    databases = by_level([
        {**row, "level": above(row["age"], params.age_warning, params.age_critical),
         "pct_to_wraparound": round(100.0 * row["age"] / WRAP_LIMIT, 2),
         "pct_of_freeze_max_age": round(100.0 * row["age"] / row["freeze_max_age"], 1)}
        for row in rows])
    level = worst(d["level"] for d in databases)
    oldest = max(databases, key=lambda d: d["age"], default=None)
    holders = db.query(_HOLDERS_SQL) if level != "ok" else []
    if oldest is None:
        summary = "no database accepts connections: nothing to measure"
    elif level == "ok":
        summary = (f"oldest {what} age {oldest['age']:,} in {oldest['database']} "
                   f"({oldest['pct_to_wraparound']}% of the way to wraparound)")
    else:
        held = (f"; the horizon is held back by {holders[0]['holder']} "
                f"({holders[0]['xmin_age']:,} old)" if holders
                else "; nothing holds the horizon now: run VACUUM (FREEZE) on its oldest tables")
        summary = (f"{oldest['database']}: {what} age {oldest['age']:,} is "
                   f"{oldest['pct_to_wraparound']}% of the way to wraparound, where writes stop "
                   f"(autovacuum should have frozen it past {oldest['freeze_max_age']:,}){held}")
    return verdict(level, summary, max_age=oldest["age"] if oldest else 0,
                   databases=databases, horizon_holders=holders,
                   thresholds={"warning": params.age_warning, "critical": params.age_critical})


def txid_wraparound(db: ReadOnlySession, params: WraparoundParams) -> dict[str, Any]:
    return _wraparound(db, params, what="transaction ID", age="age", column="datfrozenxid",
                       setting="autovacuum_freeze_max_age")


def multixact_wraparound(db: ReadOnlySession, params: WraparoundParams) -> dict[str, Any]:
    return _wraparound(db, params, what="multixact", age="mxid_age", column="datminmxid",
                       setting="autovacuum_multixact_freeze_max_age")


RESULT = {"ok / level / summary": "worst database's level and why",
          "max_age": "the oldest age in the cluster",
          "databases": "[{database, age, pct_to_wraparound, pct_of_freeze_max_age, level}]",
          "horizon_holders": "when not ok: the 3 oldest xmin holders (sessions, prepared "
                             "transactions, slots)"}
KINDS: list[KindSpec] = [
    ("txid_wraparound", txid_wraparound, WraparoundParams,
     "transaction ID age of each database against wraparound (datfrozenxid)", RESULT),
    ("multixact_wraparound", multixact_wraparound, WraparoundParams,
     "multixact ID age of each database against wraparound (datminmxid)", RESULT),
]
