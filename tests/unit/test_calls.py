"""runner.calls: a backend call on a worker thread, its deadline, cancel and interrupt.
Real threads; the handle is the small object a backend reports (`cancel`, `interrupt`).
Every wait is on an event the call sets, never on the clock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from runner.calls import Call, describe_error
from runner.errors import NotApproved, PermanentError, StepTimeout, TemporaryError
from runner.redact import MASK, SECRETS

OnHandle = Callable[[Any], None]


class Handle:
    """What a backend reports: cancel() for a probe, interrupt() for an action."""

    def __init__(self, fails: bool = False) -> None:
        self.cancelled = threading.Event()
        self.interrupted = threading.Event()
        self.fails = fails

    def cancel(self) -> None:
        self.cancelled.set()
        if self.fails:
            raise RuntimeError("the connection is gone already")

    def interrupt(self) -> None:
        self.interrupted.set()
        if self.fails:
            raise RuntimeError("the connection is gone already")


def wait_done(call: Call) -> None:
    assert call.finished.wait(30), "the call's thread did not end"


@pytest.mark.parametrize(("error", "line"), [
    (TemporaryError("connection refused"), "connection refused"),
    (PermanentError("no such table"), "no such table"),
    (NotApproved("no approval"), "no approval"),
    (StepTimeout("no answer within 1s"), "no answer within 1s"),
    (ValueError("bad value"), "ValueError: bad value"),
    (ValueError("  padded  "), "ValueError: padded"),
    (KeyError(), "KeyError: KeyError"),
    (PermanentError(""), "PermanentError"),
])
def test_describe_error_prefixes_only_foreign_errors(error: BaseException, line: str) -> None:
    assert describe_error(error) == line


def test_describe_error_masks_a_registered_secret() -> None:
    with SECRETS.scope():
        SECRETS.register("hunter2-secret")
        assert describe_error(ValueError("login hunter2-secret failed")) == (
            f"ValueError: login {MASK} failed")


def test_the_answer_and_on_done_come_from_the_worker_thread() -> None:
    seen: dict[str, Any] = {}
    done = threading.Event()

    def work(on_handle: OnHandle) -> dict[str, Any]:
        seen["thread"] = threading.current_thread().name
        return {"rows": 3}

    def on_done(call: Call) -> None:
        seen["done"] = call
        done.set()

    call = Call(work, 30, on_done=on_done, name="probe-usage")
    assert call.wait() == ({"rows": 3}, None)
    assert done.wait(30) and seen["done"] is call
    assert seen["thread"] == "probe-usage"


def test_an_error_is_the_calls_outcome() -> None:
    def work(on_handle: OnHandle) -> dict[str, Any]:
        raise PermanentError("no such table")

    result, error = Call(work, 30).wait()
    assert result is None
    assert isinstance(error, PermanentError) and str(error) == "no such table"


def test_past_its_deadline_a_call_is_cancelled_and_a_late_answer_ignored() -> None:
    handle = Handle()
    release = threading.Event()

    def work(on_handle: OnHandle) -> dict[str, Any]:
        on_handle(handle)
        release.wait(30)
        return {"late": True}

    call = Call(work, 0.05)
    result, error = call.wait()
    assert result is None
    assert isinstance(error, StepTimeout)
    assert str(error) == "no answer within 0.05s (cancelled)"
    assert handle.cancelled.is_set()
    release.set()
    wait_done(call)
    assert (call.result, call.error) == (None, error)  # the late answer did not win


def test_a_deadline_already_past_expires_at_once_and_a_failing_cancel_is_ignored() -> None:
    handle = Handle(fails=True)
    reported = threading.Event()
    release = threading.Event()

    def work(on_handle: OnHandle) -> dict[str, Any]:
        on_handle(handle)
        reported.set()
        release.wait(30)
        return {}

    call = Call(work, 0)
    assert reported.wait(30)
    result, error = call.wait()
    release.set()
    assert result is None and isinstance(error, StepTimeout)
    assert handle.cancelled.is_set()


def test_expire_after_the_answer_changes_nothing() -> None:
    call = Call(lambda on_handle: {"ok": True}, 30)
    wait_done(call)
    call.expire()
    assert (call.result, call.error) == ({"ok": True}, None)


def test_interrupt_asks_the_handle_and_the_outcome_stays_the_actions_own() -> None:
    handle = Handle()
    reported = threading.Event()

    def work(on_handle: OnHandle) -> dict[str, Any]:
        on_handle(handle)
        reported.set()
        assert handle.interrupted.wait(30)
        return {"stopped": "between two items"}

    call = Call(work, 30)
    assert reported.wait(30)
    call.interrupt()
    assert call.wait() == ({"stopped": "between two items"}, None)


def test_an_interrupt_before_the_handle_exists_reaches_it_when_reported() -> None:
    handle = Handle()
    go = threading.Event()

    def work(on_handle: OnHandle) -> dict[str, Any]:
        go.wait(30)
        on_handle(handle)  # the interrupt asked for before this moment is passed on now
        return {"interrupted": handle.interrupted.is_set()}

    call = Call(work, 30)
    call.interrupt()
    go.set()
    assert call.wait() == ({"interrupted": True}, None)


def test_a_failing_interrupt_is_ignored_and_a_finished_call_is_not_interrupted() -> None:
    handle = Handle(fails=True)
    reported = threading.Event()
    release = threading.Event()

    def work(on_handle: OnHandle) -> dict[str, Any]:
        on_handle(handle)
        reported.set()
        release.wait(30)
        return {"done": True}

    call = Call(work, 30)
    assert reported.wait(30)
    call.interrupt()  # raises inside: a request only
    assert handle.interrupted.is_set()
    release.set()
    assert call.wait() == ({"done": True}, None)

    after = Handle()
    finished = Call(lambda on_handle: on_handle(after) or {}, 30)
    wait_done(finished)
    finished.interrupt()
    assert not after.interrupted.is_set()


def test_a_handle_without_cancel_or_interrupt_is_left_alone() -> None:
    release = threading.Event()

    def work(on_handle: OnHandle) -> dict[str, Any]:
        on_handle(object())
        release.wait(30)
        return {}

    call = Call(work, 30)
    call.interrupt()
    call.expire()
    release.set()
    wait_done(call)
    assert isinstance(call.error, StepTimeout)


def test_the_run_scope_of_secrets_reaches_the_worker_thread() -> None:
    def work(on_handle: OnHandle) -> dict[str, Any]:
        return {"said": SECRETS.scrub("token s3cr3t-value here")}

    with SECRETS.scope():
        SECRETS.register("s3cr3t-value")
        result, _ = Call(work, 30).wait()
    assert result == {"said": f"token {MASK} here"}


def test_elapsed_is_in_milliseconds_to_a_tenth() -> None:
    call = Call(lambda on_handle: {}, 30)
    wait_done(call)
    elapsed = call.elapsed_ms
    assert elapsed >= 0 and round(elapsed, 1) == elapsed
    assert call.deadline == call.started + 30
