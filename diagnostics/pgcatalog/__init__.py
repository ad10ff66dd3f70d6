"""The PostgreSQL health catalogue: read-only `postgres.*` checks with thresholds.

Each check runs on the postgres backend's read-only probe handle (so every query passes
its SQL guard), takes warning/critical thresholds as parameters (defaults from
check_postgres where it has them), and returns `ok`, `level` (ok, warning, critical), a
one-line `summary` that says why, and the values it measured. One module per family;
this package registers them through the `runbook.backends` entry point group.
"""

from __future__ import annotations

from typing import Any

from runner.registry import Registry, StepKind

from . import (
    bloat,
    counters,
    prepared,
    replication,
    schema,
    settings,
    sizes,
    vacuum,
    wal,
    wraparound,
)

FAMILIES: tuple[Any, ...] = (wraparound, vacuum, prepared, schema, sizes, counters, settings,
                             replication, wal, bloat)


def register(registry: Registry) -> None:
    for family in FAMILIES:
        for name, func, params, summary, result in family.KINDS:
            registry.add(StepKind(f"postgres.{name}", "postgres", func, params, False,
                                  summary, result))
