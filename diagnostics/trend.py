"""Trend maths for memory samples: is usage growing, how fast, and when does it hit the limit?

Samples are (seconds, bytes) pairs, seconds from any origin (a monotonic clock is fine).
The slope is a least-squares fit, so one spike does not make a leak; "growing" also needs
the fitted growth over the window to exceed noise: more than 1 MiB and more than 2% of the
first value. Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MIB = 1024 * 1024
NOISE_BYTES = 1 * MIB  # growth over the window below this is noise (allocator churn, caches)
NOISE_FRACTION = 0.02  # ... and below 2% of where it started


@dataclass(frozen=True)
class Trend:
    """A straight line through the samples: value ≈ intercept + slope * seconds."""

    slope: float  # bytes per second
    intercept: float
    samples: int
    span_seconds: float  # last sample's time minus the first's

    @property
    def growth_per_minute(self) -> float:
        """Fitted bytes per minute (negative when shrinking)."""
        return self.slope * 60.0

    @property
    def growth_over_window(self) -> float:
        """Fitted growth from the first sample to the last."""
        return self.slope * self.span_seconds

    def projected_seconds_to(self, limit: float | None, now_value: float) -> float | None:
        """Seconds until `now_value` reaches `limit` at this slope; None when there is no
        limit or the value is not growing; 0 when it is already there."""
        if not limit or limit <= 0 or self.slope <= 0:
            return None
        if now_value >= limit:
            return 0.0
        return (limit - now_value) / self.slope


def fit(samples: list[tuple[float, float]]) -> Trend:
    """Least-squares line through (seconds, bytes); flat when under two distinct times."""
    n = len(samples)
    if n == 0:
        return Trend(0.0, 0.0, 0, 0.0)
    times = [t for t, _ in samples]
    values = [v for _, v in samples]
    mean_t, mean_v = sum(times) / n, sum(values) / n
    spread = sum((t - mean_t) ** 2 for t in times)
    if spread == 0:
        return Trend(0.0, mean_v, n, 0.0)
    slope = sum((t - mean_t) * (v - mean_v) for t, v in samples) / spread
    return Trend(slope, mean_v - slope * mean_t, n, max(times) - min(times))


def is_growing(trend: Trend, first_value: float) -> bool:
    """True when the fitted growth over the window is beyond noise (see the module doc)."""
    growth = trend.growth_over_window
    return growth > NOISE_BYTES and growth > NOISE_FRACTION * abs(first_value)


def summary(samples: list[tuple[float, float]], limit: float | None) -> dict[str, Any]:
    """What a memory step reports. `seconds_to_limit` is projected from the last value, and
    only when growing: a noise-level slope would project nonsense like "full in 9 days"."""
    ordered = sorted(samples)
    trend = fit(ordered)
    values = [v for _, v in ordered]
    first = values[0] if values else None
    last = values[-1] if values else None
    growing = first is not None and is_growing(trend, first)
    usable_limit = limit if limit and limit > 0 else None
    return {
        "samples": len(values),
        "window_s": round(trend.span_seconds, 3),
        "first": first,
        "last": last,
        "min": min(values) if values else None,
        "max": max(values) if values else None,
        "growth_bytes_per_min": round(trend.growth_per_minute, 1),
        "growth_pct_per_min": (round(100.0 * trend.growth_per_minute / first, 3)
                               if first else None),
        "limit": usable_limit,
        "used_pct": (round(100.0 * last / usable_limit, 1)
                     if usable_limit and last is not None else None),
        "seconds_to_limit": (_round(trend.projected_seconds_to(usable_limit, last))
                             if growing and last is not None else None),
        "growing": growing,
        # the samples themselves, for the run's chart (runner/charts.py)
        "points": [[round(t, 3), v] for t, v in ordered],
        "unit": "bytes",
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
