"""Sandboxed expressions and templates, and durations (redaction: test_redact.py)."""

from __future__ import annotations

from typing import Any

import pytest

from runner.durations import format_duration, parse_duration
from runner.expressions import ExpressionError, evaluate, references, render, syntax_error

CONTEXT: dict[str, Any] = {
    "steps": {"idle": {"count": 3, "pids": [11, 12, 13]}},
    "params": {"limit": 5},
}


# Expressions and templates


@pytest.mark.parametrize(("source", "expected"), [
    ("steps.idle.count > 2", True),
    ("steps['idle'].pids[1] + params.limit", 17),
    ("steps.idle.pids | length", 3),
])
def test_evaluate(source: str, expected: Any) -> None:
    assert evaluate(source, CONTEXT) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("{{ steps.idle.pids }}", [11, 12, 13]),  # one {{ }} keeps its native type
    (" {{ steps.idle.count }} ", 3),
    ("{{ steps.idle.count }} sessions", "3 sessions"),  # mixed text is a string
    ("{{ steps.idle.count }}/{{ params.limit }}", "3/5"),
    ("pids {{ steps.idle.pids }}", "pids [11, 12, 13]"),
    ("no template", "no template"),
    ({"pids": "{{ steps.idle.pids }}", "max": ["{{ params.limit }}", "n={{ params.limit }}", 7]},
     {"pids": [11, 12, 13], "max": [5, "n=5", 7]}),
])
def test_render_keeps_native_types(value: Any, expected: Any) -> None:
    assert render(value, CONTEXT) == expected


@pytest.mark.parametrize("source", ["nope + 1", "steps.idle.count + steps.gone.count"])
def test_undefined_names_raise(source: str) -> None:
    with pytest.raises(ExpressionError, match=r"undefined|no attribute"):
        evaluate(source, CONTEXT)


@pytest.mark.parametrize("source", [
    "nope", "steps.idle.typo", "steps.gone",
    "steps.idle.__class__",  # the sandbox hides internals as undefined: must raise too
])
def test_an_expression_that_is_only_an_undefined_name_raises(source: str) -> None:
    """A bare undefined name raises; it is not returned as an Undefined object."""
    with pytest.raises(ExpressionError):
        evaluate(source, CONTEXT)


@pytest.mark.parametrize("value", ["{{ steps.idle.typo }}", "{{ nope }}"])
def test_rendering_an_undefined_whole_template_raises(value: str) -> None:
    """A whole-template undefined raises ExpressionError, which the engine handles."""
    with pytest.raises(ExpressionError):
        render(value, CONTEXT)


def test_undefined_in_mixed_text_raises() -> None:
    with pytest.raises(ExpressionError, match="typo"):
        render("{{ steps.idle.typo }} sessions", CONTEXT)


def test_is_defined_tests_do_not_raise() -> None:
    assert evaluate("steps.gone is not defined", CONTEXT) is True


@pytest.mark.parametrize("source", [
    "steps.__class__.__mro__",
    "().__class__.__bases__[0].__subclasses__()",
    "cycler.__init__.__globals__",
    "'{0.__class__}'.format(steps)",
    "steps.idle.pids.__class__.mro()",
])
def test_the_sandbox_refuses_python_internals(source: str) -> None:
    with pytest.raises(ExpressionError):
        evaluate(source, CONTEXT)


@pytest.mark.parametrize("source", [
    "steps.idle.pids.append(1)",
    "steps.idle.pids.pop()",
    "steps.idle.update(count=0)",
    "steps.idle.pop('count')",
])
def test_the_sandbox_refuses_mutating_methods(source: str) -> None:
    context = {"steps": {"idle": {"count": 3, "pids": [11, 12, 13]}}}
    with pytest.raises(ExpressionError, match="unsafe"):
        evaluate(source, context)
    assert context == {"steps": {"idle": {"count": 3, "pids": [11, 12, 13]}}}


def test_the_sandbox_holds_in_templates_too() -> None:
    with pytest.raises(ExpressionError, match="unsafe"):
        render("pids: {{ steps.idle.pids.append(1) }}", CONTEXT)


@pytest.mark.parametrize(("source", "template", "expected"), [
    ("steps.usage.used > params.max", False, {("steps", "usage"), ("params", "max")}),
    ("steps['idle'].count > 0 and targets.db.name", False, {("steps", "idle"), ("targets", "db")}),
    ("{{ steps.a.x }} of {{ steps[\"b\"].y | length }}", True, {("steps", "a"), ("steps", "b")}),
    ("{% for p in steps.c.pids %}{{ p }}{% endfor %}", True, {("steps", "c")}),
    ("x + 1", False, set()),
])
def test_references(source: str, template: bool, expected: set[tuple[str, str]]) -> None:
    assert set(references(source, template=template)) == expected


@pytest.mark.parametrize(("source", "template"), [
    ("steps.a.x >", False), ("(1 + 2", False), ("{{ steps.a", True), ("{% if x %}", True),
])
def test_syntax_error_reports_bad_syntax(source: str, template: bool) -> None:
    assert syntax_error(source, template=template)


@pytest.mark.parametrize(("source", "template"), [
    ("steps.a.x > 1 and not steps.b", False), ("{{ a }} and {% if b %}c{% endif %}", True),
])
def test_syntax_error_is_none_for_good_syntax(source: str, template: bool) -> None:
    assert syntax_error(source, template=template) is None


# Durations


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h30m", 5400), ("2d", 172800),
    ("1.5h", 5400), (" 1m 30s ", 90), (45, 45), (2.5, 2.5), (0, 0),
])
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "seconds"), [("30", 30), ("2.5", 2.5)])
def test_parse_duration_takes_a_number_given_as_text(text: str, seconds: float) -> None:
    """A number given as text is seconds, as the hint says."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("value", ["5x", -1, "-1", True, "", "m", "5 parsecs", None, [5]])
def test_parse_duration_refuses(value: object) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(value)


@pytest.mark.parametrize(("seconds", "text"), [
    (0.45, "450ms"), (5.5, "5.5s"), (12, "12s"), (245, "4m05s"), (7380, "2h03m"),
])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
