"""The PostgreSQL catalogue's arithmetic and thresholds, and its SQL against the guard."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from diagnostics.pgcatalog import FAMILIES, bloat, grading, schema
from diagnostics.pgcatalog.counters import CheckpointParams, HitRatioParams, Windowed
from diagnostics.pgcatalog.prepared import PreparedParams
from diagnostics.pgcatalog.vacuum import AutovacuumParams
from diagnostics.pgcatalog.wraparound import WraparoundParams
from diagnostics.postgres_guard import check_read_only_sql
from runner.registry import Registry


def test_above_and_below_grade_at_the_threshold() -> None:
    assert [grading.above(v, 10, 20) for v in (9.9, 10, 19, 20, None)] == [
        "ok", "warning", "warning", "critical", "ok"]
    assert [grading.below(v, 90, 80) for v in (95, 90, 85, 80, None)] == [
        "ok", "warning", "warning", "critical", "ok"]
    assert grading.above(10**12, None, None) == "ok"  # thresholds off


def test_worst_and_ranking() -> None:
    assert grading.worst([]) == "ok"
    assert grading.worst(["ok", "critical", "warning"]) == "critical"
    items = [{"n": 1, "level": "warning"}, {"n": 2, "level": "ok"},
             {"n": 3, "level": "critical"}, {"n": 4, "level": "warning"}]
    assert [i["n"] for i in grading.by_level(items)] == [3, 1, 4, 2]


@pytest.mark.parametrize(("text", "size"), [
    (123, 123), ("64MB", 64 * 1024**2), ("1.5 GB", int(1.5 * 1024**3)), ("512kB", 512 * 1024),
    ("1GiB", 1024**3), ("10", 10)])
def test_sizes_parse_as_postgresql_counts(text: object, size: int) -> None:
    assert grading.parse_size(text) == size


@pytest.mark.parametrize("bad", ["lots", "1 XB", "-5MB", True, -1])
def test_bad_sizes_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="bad size"):
        grading.parse_size(bad)


def test_a_critical_threshold_milder_than_the_warning_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"age_critical .* at least age_warning"):
        WraparoundParams(age_warning=2000, age_critical=1000)
    with pytest.raises(ValidationError, match="at most hit_pct_below_warning"):
        HitRatioParams(hit_pct_below_warning=80, hit_pct_below_critical=90)
    WraparoundParams(age_warning=None, age_critical=5)  # one side off is fine


def test_defaults_are_check_postgres_s() -> None:
    wrap = WraparoundParams()
    assert (wrap.age_warning, wrap.age_critical) == (1_300_000_000, 1_400_000_000)
    seq = schema.SequenceParams()
    assert (seq.used_pct_warning, seq.used_pct_critical) == (85, 95)
    prepared = PreparedParams()
    assert (prepared.age_warning, prepared.age_critical) == (1, 30)
    waste = bloat.BloatParams()
    assert (waste.wasted_warning, waste.wasted_critical) == (1024**3, 5 * 1024**3)
    vacuum = AutovacuumParams()
    assert (vacuum.vacuum_age_warning, vacuum.vacuum_age_critical) == (86400, 172800)
    assert AutovacuumParams(vacuum_age_warning="12h").vacuum_age_warning == 43200


def test_a_sampling_window_is_bounded_by_the_step_time() -> None:
    assert Windowed(window="5s").window == 5
    with pytest.raises(ValidationError):
        Windowed(window="1m")


def test_checkpoint_shares_are_percentages() -> None:
    with pytest.raises(ValidationError):
        CheckpointParams(requested_pct_warning=120)


def _seq(last: int, low: int, high: int, step: int, column: str | None) -> dict[str, object]:
    return {"last_value": last, "min_value": low, "max_value": high, "increment_by": step,
            "column_type": column}


def test_sequence_usage_counts_the_way_the_sequence_goes() -> None:
    assert schema.sequence_usage(_seq(90, 1, 100, 1, None)) == (100, 89.9)
    # descending from -1 towards -100
    assert schema.sequence_usage(_seq(-50, -100, -1, -1, None)) == (-100, 49.49)


def test_a_bigint_sequence_is_capped_by_the_integer_column_it_feeds() -> None:
    limit, used = schema.sequence_usage(_seq(2**31 - 101, 1, 2**63 - 1, 1, "integer"))
    assert limit == 2**31 - 1 and used > 99.99
    limit, _ = schema.sequence_usage(_seq(-5, -(2**63), -1, -1, "smallint"))
    assert limit == -(2**15)
    assert schema.sequence_usage(_seq(10, 1, 2**63 - 1, 1, "bigint"))[0] == 2**63 - 1


def test_expected_pages_pack_rows_as_postgresql_does() -> None:
    # 24 header + 104 data (100 aligned to 8) + 4 line pointer = 132 bytes; 8168 per page
    assert bloat.expected_pages(1000, 100, 8192, 100) == 17
    assert bloat.expected_pages(1000, 100, 8192, 50) == 33
    assert bloat.expected_pages(0, 100, 8192, 100) == 0


def test_fillfactor_from_reloptions() -> None:
    assert bloat._fillfactor(None) == 100
    assert bloat._fillfactor(["autovacuum_enabled=false", "fillfactor=70"]) == 70


def _as_executed(sql: str) -> str:
    """What the probe handle would send: placeholders bound, %% unescaped."""
    text = re.sub(r"%\(\w+\)s", "1", sql).replace("%%", "%")
    if "{age}" not in text:
        return text
    return text.format(age="mxid_age", column="datminmxid",
                       setting="autovacuum_multixact_freeze_max_age")


def test_every_catalogue_query_passes_the_read_only_guard() -> None:
    queries = [(family.__name__, name, value) for family in FAMILIES
               for name, value in vars(family).items()
               if name.endswith("_SQL") and isinstance(value, str)]
    assert len(queries) >= 15
    for _module, _name, sql in queries:
        check_read_only_sql(_as_executed(sql))


def test_the_catalogue_registers_read_only_postgres_kinds() -> None:
    registry = Registry()
    from diagnostics.pgcatalog import register

    register(registry)
    kinds = list(registry)
    assert len(kinds) == 24
    assert all(k.name.startswith("postgres.") and k.target_kind == "postgres"
               and not k.mutating and k.result for k in kinds)
