"""The one way tests wait: poll for a positive signal, with a deadline that only bounds a
failure (a passing test returns as soon as the signal shows, however slow the machine)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T], what: str | Callable[[], str], timeout: float = 60,
             every: float = 0.05, retry_on: tuple[type[BaseException], ...] = ()) -> T:
    """Call `check` until it returns something truthy, and return that.

    An exception of a `retry_on` type counts as "not yet" (a resource that does not exist
    yet). After `timeout` seconds, TimeoutError naming `what` (a callable is asked then,
    to say what it saw) and the last value or exception."""
    deadline = time.monotonic() + timeout
    while True:
        last: object
        try:
            value = check()
        except retry_on as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() > deadline:
            said = what if isinstance(what, str) else what()
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {said} "
                               f"(last: {last!r})")
        time.sleep(every)
