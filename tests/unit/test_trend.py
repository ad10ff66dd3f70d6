"""Trend maths for memory samples."""

from __future__ import annotations

import random

import pytest

from diagnostics.trend import MIB, fit, summary

GIB = 1024 * MIB


def line(start: float, per_second: float, seconds: int = 60, every: float = 5.0,
         noise: float = 0.0, seed: int = 7) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(i * every, start + per_second * i * every + rng.uniform(-noise, noise))
            for i in range(int(seconds / every) + 1)]


def test_steady_growth() -> None:
    samples = line(200 * MIB, per_second=MIB)  # +60 MiB a minute
    trend = fit(samples)
    assert trend.slope == pytest.approx(MIB)
    assert trend.growth_per_minute == pytest.approx(60 * MIB)
    assert trend.span_seconds == 60
    result = summary(samples, 1 * GIB)
    assert result["growing"] is True
    assert result["samples"] == 13 and result["window_s"] == 60
    assert (result["first"], result["last"]) == (200 * MIB, 260 * MIB)
    assert (result["min"], result["max"]) == (200 * MIB, 260 * MIB)
    assert result["growth_bytes_per_min"] == pytest.approx(60 * MIB)
    assert result["growth_pct_per_min"] == pytest.approx(30.0)
    assert result["limit"] == GIB and result["used_pct"] == pytest.approx(25.4, abs=0.1)
    # (1024 - 260) MiB left at 1 MiB/s
    assert result["seconds_to_limit"] == pytest.approx(764, abs=0.5)


def test_growth_through_noise() -> None:
    samples = line(300 * MIB, per_second=0.5 * MIB, noise=4 * MIB)
    result = summary(samples, 512 * MIB)
    assert result["growing"] is True
    assert result["growth_bytes_per_min"] == pytest.approx(30 * MIB, rel=0.2)
    assert result["seconds_to_limit"] is not None and 300 < result["seconds_to_limit"] < 500


def test_flat_with_noise_is_not_growing() -> None:
    samples = line(400 * MIB, per_second=0.0, noise=3 * MIB)  # wobbles by ±3 MiB
    result = summary(samples, 512 * MIB)
    assert result["growing"] is False
    assert result["seconds_to_limit"] is None  # no projection from a noise slope
    assert result["min"] < result["max"]


def test_small_growth_relative_to_size_is_noise() -> None:
    # +5 MiB over the window is beyond 1 MiB, but under 2% of 2 GiB: not a leak (yet).
    samples = line(2 * GIB, per_second=5 * MIB / 60)
    assert fit(samples).growth_over_window == pytest.approx(5 * MIB)
    assert summary(samples, 4 * GIB)["growing"] is False
    # The same 5 MiB on a 50 MiB process is 10%: growing.
    assert summary(line(50 * MIB, per_second=5 * MIB / 60), 4 * GIB)["growing"] is True


def test_shrinking() -> None:
    samples = line(500 * MIB, per_second=-MIB)
    trend = fit(samples)
    assert trend.growth_per_minute == pytest.approx(-60 * MIB)
    assert trend.projected_seconds_to(GIB, 440 * MIB) is None
    result = summary(samples, GIB)
    assert result["growing"] is False and result["seconds_to_limit"] is None
    assert result["growth_pct_per_min"] == pytest.approx(-12.0)


def test_projection() -> None:
    trend = fit([(0.0, 100.0), (10.0, 200.0)])  # 10 bytes a second
    assert trend.projected_seconds_to(1000.0, 200.0) == pytest.approx(80.0)
    assert trend.projected_seconds_to(1000.0, 1000.0) == 0.0  # already there
    assert trend.projected_seconds_to(1000.0, 1500.0) == 0.0
    assert trend.projected_seconds_to(None, 200.0) is None  # no limit
    assert trend.projected_seconds_to(0, 200.0) is None


def test_no_limit() -> None:
    result = summary(line(100 * MIB, per_second=MIB), None)
    assert result["growing"] is True
    assert (result["limit"], result["used_pct"], result["seconds_to_limit"]) == (None, None, None)


def test_samples_out_of_order_are_sorted() -> None:
    samples = line(100 * MIB, per_second=MIB)
    assert summary(list(reversed(samples)), GIB) == summary(samples, GIB)


@pytest.mark.parametrize("samples", [[], [(0.0, 5 * MIB)], [(3.0, MIB), (3.0, 9 * MIB)]])
def test_too_few_samples(samples: list[tuple[float, float]]) -> None:
    trend = fit(samples)
    assert trend.slope == 0.0 and trend.growth_per_minute == 0.0
    result = summary(samples, GIB)
    assert result["samples"] == len(samples)
    assert result["growing"] is False and result["seconds_to_limit"] is None
    if not samples:
        assert (result["first"], result["last"], result["min"], result["max"]) == (
            None, None, None, None)
        assert result["growth_pct_per_min"] is None and result["used_pct"] is None


def test_summary_keys() -> None:
    assert set(summary(line(MIB, 0.0), None)) == {
        "samples", "window_s", "first", "last", "min", "max", "growth_bytes_per_min",
        "growth_pct_per_min", "limit", "used_pct", "seconds_to_limit", "growing", "points",
        "unit"}
