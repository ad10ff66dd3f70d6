"""Levels from thresholds, as check_postgres grades them: ok, warning, critical.

Every catalogue check returns `ok`, `level`, a one-line `summary` that says why, and the
values it measured; these helpers keep the grading the same everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ..grading import Level, above, below, by_level, worst

__all__ = ["Level", "above", "below", "by_level", "worst"]

# What a family module lists in KINDS: (name, function, params model, summary, result docs).
KindSpec = tuple[str, Callable[..., dict[str, Any]], type[BaseModel], str, dict[str, str]]

_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2,
               "g": 1024**3, "gb": 1024**3, "t": 1024**4, "tb": 1024**4}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")


def parse_size(value: object) -> int:
    """Bytes from 123, "64MB", "1.5 GB" (powers of 1024, as PostgreSQL counts)."""
    if isinstance(value, bool):
        raise ValueError(f"bad size {value!r}: use 64MB, 1GB or a number of bytes")
    if isinstance(value, int | float) and value >= 0:
        return int(value)
    if isinstance(value, str):
        text = value.strip().lower()
        match = _SIZE.fullmatch(text[:-2] if text.endswith("ib") else text)
        if match and match.group(2) in _SIZE_UNITS:
            return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    raise ValueError(f"bad size {value!r}: use 64MB, 1GB or a number of bytes")


# Bytes; accepts "64MB", "1GB", or a number.
Size = Annotated[int, BeforeValidator(parse_size, json_schema_input_type=int | str),
                 Field(json_schema_extra={"examples": ["64MB", "1GB"]})]


def format_size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def verdict(level: Level, summary: str, **measured: Any) -> dict[str, Any]:
    return {"ok": level == "ok", "level": level, "summary": summary, **measured}


class Thresholds(BaseModel):
    """warning/critical where higher is worse; either may be null to switch it off."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        for name in type(self).model_fields:
            if name.endswith("_warning"):
                stem = name.removesuffix("_warning")
                warn, crit = getattr(self, name), getattr(self, f"{stem}_critical", None)
                low = stem.endswith("_below")
                if warn is not None and crit is not None and (crit > warn if low
                                                              else crit < warn):
                    raise ValueError(f"{stem}_critical ({crit}) must be "
                                     f"{'at most' if low else 'at least'} "
                                     f"{stem}_warning ({warn})")
        return self
