"""Durations as people write them in playbooks: 500ms, 30s, 5m, 1h30m, or plain seconds."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def parse_duration(value: object) -> float:
    """Return seconds; raise ValueError with a hint for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}: use 30s, 5m, 1h or a number of seconds")
    if isinstance(value, int | float):
        if not 0 <= value < float("inf"):  # also refuses NaN
            raise ValueError(f"bad duration {value!r}: must be a finite, positive number")
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if _NUMBER.fullmatch(text):
            return float(text)
        pos, total = 0, 0.0
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if text and pos == len(text):
            return total
    raise ValueError(f"bad duration {value!r}: use 30s, 5m, 1h or a number of seconds")


def format_duration(seconds: float) -> str:
    """Short human form: 450ms, 12s, 4m05s, 2h03m."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
