"""How catalogue checks grade what they measured: ok, warning or critical.

Every `postgres.*`, `ssh.*`, `docker.*` and `http.*` health check returns a `level` of this
vocabulary, so triage playbooks and reports rank findings the same way whatever the backend.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

Level = Literal["ok", "warning", "critical"]
RANK: dict[str, int] = {"ok": 0, "warning": 1, "critical": 2}


def above(value: float | None, warning: float | None, critical: float | None) -> Level:
    """Higher is worse: at or over `critical` is critical, at or over `warning` a warning."""
    if value is None:
        return "ok"
    if critical is not None and value >= critical:
        return "critical"
    if warning is not None and value >= warning:
        return "warning"
    return "ok"


def below(value: float | None, warning: float | None, critical: float | None) -> Level:
    """Lower is worse: at or under `critical` is critical, at or under `warning` a warning."""
    if value is None:
        return "ok"
    if critical is not None and value <= critical:
        return "critical"
    if warning is not None and value <= warning:
        return "warning"
    return "ok"


def worst(levels: Iterable[str]) -> Level:
    found: Level = "ok"
    for level in levels:
        if RANK[level] > RANK[found]:
            found = level  # type: ignore[assignment]
    return found


def by_level(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Worst first, keeping the given order among equals."""
    return sorted(items, key=lambda item: -RANK[item["level"]])
