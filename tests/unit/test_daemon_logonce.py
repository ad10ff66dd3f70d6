"""One log line per failure class, on a clock the test moves; alert data stays on one line."""

from __future__ import annotations

import logging

import pytest

from runner.daemon.logonce import LogOnce, one_line


def test_a_class_is_logged_once_per_interval_then_says_how_many_were_left_out(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log_once = LogOnce(logging.getLogger("test.logonce"), interval=300, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="test.logonce")
    assert log_once("a", "target missing")
    assert not log_once("a", "target missing")
    assert log_once("b", "another class")  # classes are independent
    now[0] = 299.5
    assert not log_once("a", "target missing")
    now[0] = 300.0
    assert log_once("a", "target missing")
    assert [r.getMessage() for r in caplog.records] == [
        "target missing", "another class",
        "target missing (2 more like it since the last such line)"]


@pytest.mark.parametrize("text, expected", [
    ("plain", "plain"),
    ("a\nb", "a\\nb"),
    ("a\r\nINFO forged", "a\\r\\nINFO forged"),
    ("\x1b[2Jx", "\\x1b[2Jx"),
    ("ünïcode ok", "ünïcode ok"),
])
def test_one_line(text: str, expected: str) -> None:
    assert one_line(text) == expected


def test_one_line_is_bounded() -> None:
    assert one_line("x" * 5000, limit=100) == "x" * 100 + "…"
