"""A backend call on a worker thread, with a deadline and cancellation through its handle.

Python cannot kill a thread, so a read-only call that misses its deadline is cancelled
through the handle the backend opened (PostgreSQL cancels the query, for example) and then
abandoned; every backend also sets protocol-level timeouts, so an abandoned call ends on
its own. An action (a remedy) is never cut off that way: past its deadline it is only asked
to stop (`interrupt()`, when its handle offers it) at a point where it can finish or undo
its own half-done work, and the caller waits for it to end (`runner.remedies`).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import NotApproved, PermanentError, StepTimeout, TemporaryError
from .redact import SECRETS

# A call receives `on_handle`, to report the handle it opened so it can be cancelled.
Work = Callable[[Callable[[Any], None]], dict[str, Any]]


@dataclass(frozen=True)
class Outcome:
    """What one call came to, as a value (kopf's `Outcome` is the model): its result, or
    its error and whether that error may pass, and after how long to try again."""

    result: dict[str, Any] | None
    error: BaseException | None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def temporary(self) -> bool:
        return isinstance(self.error, TemporaryError)

    @property
    def retry_delay(self) -> float | None:
        """The delay the backend asked for (`TemporaryError(delay=...)`), if any."""
        return self.error.delay if isinstance(self.error, TemporaryError) else None


def describe_error(exc: BaseException) -> str:
    """One line for the report: runbook's own errors speak for themselves."""
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, TemporaryError | PermanentError | NotApproved):
        text = f"{type(exc).__name__}: {text}"
    return str(SECRETS.scrub(text))


class Call:
    def __init__(self, work: Work, timeout: float, *,
                 on_done: Callable[[Call], None] | None = None, name: str = "call",
                 cancelled: threading.Event | None = None) -> None:
        self.timeout = timeout
        # Set when the call is given up on or asked to stop: the step context's signal.
        self.cancelled = cancelled or threading.Event()
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.handle: Any = None
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.finished = threading.Event()
        self._on_done = on_done
        self._work = work
        self._lock = threading.Lock()
        self._expired = False
        self._interrupted = False
        # In a copy of the caller's context: the run's secret scope reaches the backend.
        threading.Thread(target=contextvars.copy_context().run, args=(self._run,),
                         name=name, daemon=True).start()

    def _run(self) -> None:
        result: dict[str, Any] | None = None
        error: BaseException | None = None
        try:
            result = self._work(self._set_handle)
        except BaseException as exc:
            error = exc
        with self._lock:
            if not self._expired:  # a late answer does not overwrite the timeout
                self.result, self.error = result, error
            self.finished.set()
        if self._on_done is not None:
            self._on_done(self)

    def _set_handle(self, handle: Any) -> None:
        with self._lock:
            self.handle = handle
            interrupted = self._interrupted
        if interrupted:  # asked to stop before its handle existed
            _ask_to_stop(handle)

    @property
    def elapsed_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 1)

    def expire(self) -> None:
        """Give up on the call: cancel it through its handle and record a timeout."""
        with self._lock:
            if self.finished.is_set():
                return
            self._expired = True
            self.result, self.error = None, StepTimeout(
                f"no answer within {self.timeout:g}s (cancelled)")
        self.cancelled.set()
        cancel = getattr(self.handle, "cancel", None)
        if callable(cancel):
            with contextlib.suppress(Exception):  # best effort: the call is abandoned anyway
                cancel()

    def interrupt(self) -> None:
        """Ask an action past its deadline to stop where it safely can (its handle's
        `interrupt()`); unlike `expire`, its outcome is still the action's own."""
        with self._lock:
            if self.finished.is_set():
                return
            self._interrupted = True
            handle = self.handle
        self.cancelled.set()
        if handle is not None:
            _ask_to_stop(handle)

    @property
    def outcome(self) -> Outcome:
        return Outcome(self.result, self.error)

    def wait(self) -> tuple[dict[str, Any] | None, BaseException | None]:
        """Block until done or expired; (result, error)."""
        if not self.finished.wait(max(0.0, self.deadline - time.monotonic())):
            self.expire()
        return self.result, self.error


def _ask_to_stop(handle: Any) -> None:
    interrupt = getattr(handle, "interrupt", None)
    if callable(interrupt):
        with contextlib.suppress(Exception):  # a request only: the action decides
            interrupt()
