"""One log line per failure class: a flood of alerts that all fail the same way (8,000
alerts naming a missing target) must not write 8,000 tracebacks. The first occurrence of
a class is logged; later ones within `interval` are only counted, and the next line of
that class says how many were left out."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Seen:
    logged_at: float
    quiet: int = 0  # occurrences since the last line


class LogOnce:
    def __init__(self, logger: logging.Logger, interval: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.interval, self.clock = logger, interval, clock
        self._seen: dict[str, _Seen] = {}
        self._lock = threading.Lock()

    def __call__(self, key: str, message: str, *, level: int = logging.WARNING,
                 exc_info: bool = False) -> bool:
        """Log `message` unless its class `key` was logged within the interval; True when
        this call wrote a line."""
        with self._lock:
            at = self.clock()
            seen = self._seen.get(key)
            if seen is not None and at - seen.logged_at < self.interval:
                seen.quiet += 1
                return False
            quiet = seen.quiet if seen else 0
            self._seen[key] = _Seen(at)
        more = f" ({quiet} more like it since the last such line)" if quiet else ""
        self.logger.log(level, "%s%s", one_line(message), more, exc_info=exc_info)
        return True


def one_line(text: str, limit: int = 1000) -> str:
    """Alert data in a log message stays one line (a label with a newline cannot forge
    another log line) and bounded."""
    flat = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return flat if len(flat) <= limit else flat[:limit] + "…"
