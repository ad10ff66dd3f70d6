"""Sandboxed expressions and templates, and durations (redaction: test_redact.py)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.durations import format_duration, parse_duration
from runner.expressions import (
    ExpressionError,
    StepFields,
    StepResults,
    evaluate,
    references,
    render,
    syntax_error,
)

ROOT = Path(__file__).resolve().parents[2]

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
    with pytest.raises(ExpressionError, match=r"undefined|no field 'gone' \(it has: idle\)"):
        evaluate(source, CONTEXT)


def test_a_missing_field_or_a_failed_step_is_named_in_the_playbook_s_words() -> None:
    steps = StepResults({"usage": StepFields("usage", {"pct": 91, "mount": "/"})},
                        {"db": "connection refused"})
    context = {"steps": steps}
    with pytest.raises(ExpressionError) as missing:
        evaluate("steps.usage.inodes > 90", context)
    assert "step usage has no field 'inodes' (it has: mount, pct)" in str(missing.value)
    with pytest.raises(ExpressionError) as failed:
        render("{{ steps['db'].lag }}", context)
    assert "step db did not succeed (connection refused)" in str(failed.value)
    assert "dict object" not in str(missing.value) + str(failed.value)
    with pytest.raises(ExpressionError, match="no result of a step 'later'"):
        evaluate("steps.later.x", context)
    # The marker is the class's, never a field the data could supply or a playbook read.
    assert evaluate("steps.usage.pct", context) == 91
    with pytest.raises(ExpressionError):
        evaluate("steps.usage._runbook_step", context)


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


# Bounds: a playbook's templates cannot allocate or compute without limit

ATTACKS = [
    ("'a' * 10**9", "repeating would make 1000000000"),
    ("[1] * 10**9", "repeating would make 1000000000"),
    ("10**9 * 'a'", "repeating would make 1000000000"),
    ("range(10**9)|list", "Range too big"),
    ("'%0999999999d' % 1", "a % format width"),
    ("'%*d' % (10**9, 1)", "'*' width"),
    ("'%(x)999999999s' % {'x': 1}", "a % format width"),
    ("'%999999999s'|format(1)", "a % format width"),
    ("'{:>999999999}'.format(1)", "a format width"),
    ("'{0:{1}}'.format(1, 999999999)", "nested field"),
    ("'{x:>999999999}'.format_map({'x': 1})", "a format width"),
    ("lipsum(10**6)", "'lipsum' is undefined"),
    ("2 ** (10 ** 9)", "a power beyond 4096 bits"),
    ("'x'.center(10**9)", "padding"),
    ("'x'.ljust(10**9)", "padding"),
    ("'x'.zfill(10**9)", "padding"),
    ("'\t'.expandtabs(10**9)", "expandtabs"),
    ("'x'|center(10**9)", "padding"),
    ("'x'|indent(10**9)", "indent"),
    ("('x' * 10)|wordwrap(1, wrapstring='y' * 100000)", "wordwrap"),
    ("range(10)|batch(10**9, 'x')|list", "batch"),
    ("range(10)|slice(10**9, 'x')|list", "slice"),
    ("{'a': 1}|tojson(indent=10**8)", "tojson indent"),
    ("range(100000)|join('y' * 100000)", "join would make"),
    ("('y' * 1000).join(range(10000)|map('string'))", "join would make"),
    ("('ab' * 100000)|replace('', 'yyyy')", "replace would make"),
    ("('ab' * 100000).replace('a', 'yyyy')", "replace would make"),
    ("('x' * 200000) + ('x' * 200000)", "adding would make"),
    ("(range(1000)|map('string')|list)|sum(start=[])", "sum() starts from a number"),
    ("range(100000)|map('center', 100000)|list", "padding would make"),  # the 11th
    # a list of a thousand references to one big list is small; its text is not
    ("([range(100000)|list] * 1000)|string", "printing a value of more than"),
    ("([range(100000)|list] * 1000)|upper", "printing a value of more than"),
    ("([range(100000)|list] * 1000)|tojson", "printing a value of more than"),
    ("'%s' % ([range(100000)|list] * 1000,)", "printing a value of more than"),
    ("'{}'.format([range(100000)|list] * 1000)", "printing a value of more than"),
    ("'x' ~ ([range(100000)|list] * 1000)", "printing a value of more than"),
    ("[range(100000)|list] * 1000", "printing a value of more than"),  # as a `with:` value
]


TEMPLATE_ATTACKS = [
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "too much work"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
     "too much work"),
    ("{% set s = 'x' * 1000 %}{% for c in s %}{% for d in s %}{% for e in s %}"
     "{% endfor %}{% endfor %}{% endfor %}", "too much work"),
    ("{% set s = 'x' * 300000 %}{% set t = s ~ s %}{{ t }}", "too much work"),
    ("{% set s = 'x' * 300000 %}{{ s }}{{ s }}", "too much work"),
    ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
     "{{ f(40) }}", "too much work"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursion too deep"),
    ("{{ 'a' * 10**9 }}", "repeating would make"),
    ("{{ [range(100000)|list] * 1000 }}", "printing a value of more than"),
]


def test_the_work_budget_is_shared_by_the_templates_of_one_value() -> None:
    loop = "{% for i in range(100000) %}{% endfor %}"
    assert render([loop] * 3, {}) == [""] * 3  # 3 x 100000 within the budget
    with pytest.raises(ExpressionError, match="too much work"):
        render({f"k{i}": loop for i in range(20)}, {})
    assert render(loop, {}) == ""  # the next evaluation has a budget of its own


@pytest.mark.parametrize(("source", "expected"), [
    ("'%s-%05d' % ('a', 7)", "a-00007"),
    ("'{:>6}'.format('ab')", "    ab"),
    ("'-' * 3", "---"),
    ("[0] * 3 + [1]", [0, 0, 0, 1]),
    ("range(3)|join(', ')", "0, 1, 2"),
    ("', '.join(['a', 'b'])", "a, b"),
    ("'%.1f'|format(2.25)", "2.2"),
    ("[1, 2, 3]|sum", 6),
    ("2 ** 10", 1024),
    ("'a\tb'.expandtabs(4)", "a   b"),
    ("'x'|center(5)", "  x  "),
    ("3|pct(10**9)", "3.00000000000000000000%"),
])
def test_ordinary_expressions_are_within_the_bounds(source: str, expected: Any) -> None:
    assert evaluate(source, {}) == expected


def test_an_ordinary_template_with_loops_and_joins_renders() -> None:
    text = ("{% for s in steps.idle.pids %}{{ s }}{{ ',' if not loop.last }}{% endfor %}; "
            "{{ steps.idle.pids|map('string')|join('/') }} ~ {{ 'x' ~ params.limit }}")
    assert render(text, CONTEXT) == "11,12,13; 11/12/13 ~ x5"


def _limit_memory() -> None:
    # Should a bound ever break, fail with MemoryError instead of eating the machine.
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_every_attack_is_refused_for_its_reason_in_bounded_memory() -> None:
    """In a fresh process, so that its peak RSS after trying them all is theirs: each is
    refused, for the reason expected, and the peak stays under 200 MB."""
    program = ("import json, resource, sys\n"
               "from runner.expressions import ExpressionError, evaluate, render\n"
               "said = []\n"
               "for how, source in json.loads(sys.argv[1]):\n"
               "    try:\n"
               "        (evaluate if how == 'expression' else render)(source, {})\n"
               "        said.append('NOT REFUSED')\n"
               "    except ExpressionError as exc:\n"
               "        said.append(str(exc))\n"
               "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
               "print(json.dumps({'said': said, 'peak_kib': peak}))\n")
    attacks = ([("expression", s, why) for s, why in ATTACKS]
               + [("template", s, why) for s, why in TEMPLATE_ATTACKS])
    run = subprocess.run([sys.executable, "-c", program,
                          json.dumps([(how, source) for how, source, _ in attacks])],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         preexec_fn=_limit_memory, check=False)
    assert run.returncode == 0, run.stderr
    outcome = json.loads(run.stdout)
    wrong = [(source, said) for (_, source, why), said in zip(attacks, outcome["said"],
                                                               strict=True) if why not in said]
    assert wrong == []
    assert outcome["peak_kib"] < 200 * 1024
