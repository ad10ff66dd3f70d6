"""Sandboxed expressions and templates, in the Jinja2 dialect Ansible users know.

`when:` fields are expressions (`steps.usage.used_pct >= 90`); `say:` and `with:` values are
templates (`{{ steps.usage.used }} of {{ steps.usage.max }}`). A `with:` value that is one
`{{ ... }}` and nothing else keeps its native type, so a list of pids stays a list.
The sandbox refuses Python internals; the environment offers no I/O.

Evaluation is bounded, since a playbook may come from someone else: one evaluation may do
at most MAX_WORK units of work (a loop iteration or a call is one; a string or list it
produces costs its length), and no single string or list may exceed MAX_SIZE. Operations
whose result size is known from their arguments (`'a' * 10**9`, `'%999999999d' % 1`,
`x|center(10**9)`, `10**10**10`) are refused before they allocate anything.
"""

from __future__ import annotations

import contextvars
import functools
import math
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Undefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["ExpressionError", "NoneOperand", "StepFields", "StepResults", "evaluate",
           "references", "render", "syntax_error"]

_WHOLE = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


class ExpressionError(Exception):
    """An expression failed: syntax, an undefined name, or a sandbox refusal."""


class NoneOperand(ExpressionError):
    """An operation on none (`none > 5`, `none | length`): none is what a skipped step's
    fields read as, so the engine can judge a condition about a skipped step false."""


def _failure(text: str, exc: Exception) -> ExpressionError:
    on_none = isinstance(exc, TypeError) and "NoneType" in str(exc)
    return (NoneOperand if on_none else ExpressionError)(f"{text!r}: {exc}")


class StepFields(dict[str, Any]):
    """A step's result as expressions see it: a missing field names the step and the field
    ("step usage has no field 'pct'"), not Jinja's "'dict object' has no attribute"."""

    __slots__ = ("_runbook_step",)  # underscored: the sandbox never lets a playbook read it

    def __init__(self, step: str, fields: Mapping[str, Any]) -> None:
        super().__init__(fields)
        self._runbook_step = step

    def _runbook_missing(self, name: str) -> str:
        known = ", ".join(sorted(map(str, self))[:20]) or "none"
        return f"step {self._runbook_step} has no field {name!r} (it has: {known})"


class StepResults(dict[str, Any]):
    """`steps` as expressions see it: a step that did not succeed is absent, and reading it
    says so with its error ("step db did not succeed (connection refused)")."""

    __slots__ = ("_runbook_absent",)

    def __init__(self, results: Mapping[str, Any], absent: Mapping[str, str]) -> None:
        super().__init__(results)
        self._runbook_absent = dict(absent)

    def _runbook_missing(self, name: str) -> str:
        if name in self._runbook_absent:
            return f"step {name} did not succeed ({self._runbook_absent[name]})"
        return f"no result of a step {name!r}"


class _Undefined(StrictUndefined):
    """StrictUndefined whose message names what is missing in a playbook's words."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        obj, name = self._undefined_obj, self._undefined_name
        say = getattr(type(obj), "_runbook_missing", None)  # the class's: never the data's
        if self._undefined_hint is None and say is not None and isinstance(name, str):
            return str(say(obj, name))
        if self._undefined_hint is None and isinstance(obj, dict) and isinstance(name, str):
            return f"no field {name!r} (it has: {', '.join(sorted(map(str, obj))[:20]) or 'none'})"
        return str(super()._undefined_message)


MAX_SIZE = 1_000_000  # characters of one string, items of one list
MAX_WORK = 500_000  # per evaluation: iterations and calls, plus what they produce
CALL_COST = 25  # a call (a macro's above all) costs the time of many loop iterations
MAX_POWER_BITS = 4096  # an integer power's result

# What is left of the current evaluation's work budget (a one-item list, spent in place).
_budget: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "expression-budget", default=None)


@contextmanager
def _metered() -> Iterator[None]:
    """One budget for an evaluation; evaluations nested in it (a dict of templates) share it."""
    if _budget.get() is not None:
        yield
        return
    token = _budget.set([MAX_WORK])
    try:
        yield
    finally:
        _budget.reset(token)


def _room() -> int:
    budget = _budget.get()
    return min(MAX_SIZE, budget[0]) if budget is not None else MAX_SIZE


def _spend(units: int) -> None:
    budget = _budget.get()
    if budget is None:
        return
    budget[0] -= max(1, units)
    if budget[0] < 0:
        raise SecurityError(f"too much work: more than {MAX_WORK} steps (loops, calls, "
                            "characters produced)")


def _refuse_size(size: int, what: str) -> None:
    """Refuse, before it is made, a result of `size` characters or items."""
    if size > _room():
        raise SecurityError(f"{what} would make {size} items, more than {_room()} allowed")


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple | dict | set) else 1


def _produced(value: Any) -> Any:
    size = _size(value)
    if size > MAX_SIZE:
        raise SecurityError(f"a result of {size} items, more than {MAX_SIZE} allowed")
    _spend(size)
    return value


def _check_deep(value: Any) -> None:
    """Printing a container prints all it holds, aliases included: `[big] * 1000` is small,
    its text is not. Refuse, before it is made, text past what is left."""
    if isinstance(value, str | int | float | bool | None):
        return
    units, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            units += len(item)
        elif isinstance(item, dict):
            units += len(item)
            if units <= _room():
                stack += [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple | set | frozenset):
            units += len(item)  # each item one unit; only what holds more is walked
            if units <= _room():
                stack += [x for x in item if not isinstance(x, int | float | bool | None)]
        else:
            units += 1
        if units > _room():
            raise SecurityError(f"printing a value of more than {_room()} items")
    _spend(units)


def _printable(value: Any) -> Any:
    """What `{{ ... }}` prints, checked before it becomes text."""
    _check_deep(value)
    return value


_PRINTF_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_WIDTH = re.compile(r"\d+")


def _check_printf(fmt: str) -> None:
    """`'%999999999d' % 1` allocates a GB: refuse widths beyond what is allowed."""
    for width, precision in _PRINTF_FIELD.findall(fmt):
        for number in (width, precision):
            if number == "*":
                raise SecurityError("a '*' width in a % format is not allowed")
            if number:
                _refuse_size(int(number), "a % format width")


def _check_format(fmt: str) -> None:
    """The same for str.format: `'{:>999999999}'.format(1)`, and no nested fields."""
    for _, _, spec, _ in string.Formatter().parse(fmt):
        if spec and "{" in spec:
            raise SecurityError("a nested field in a format spec is not allowed")
        for number in _WIDTH.findall(spec or ""):
            _refuse_size(int(number), "a format width")


def _check_power(base: Any, exponent: Any) -> None:
    """`10**10**10` would compute for hours: refuse integer powers past MAX_POWER_BITS."""
    base, exponent = _int_arg(base), _int_arg(exponent)
    if abs(base) > 1 and exponent * math.log2(abs(base)) > MAX_POWER_BITS:
        raise SecurityError(f"a power beyond {MAX_POWER_BITS} bits")


def _int_arg(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _check_replace(text: Any, old: Any, new: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        times = len(text) + 1 if old == "" else text.count(old)
        _refuse_size(len(text) + times * max(0, len(new) - len(old)), "replace")


def _check_join(items: list[Any], separator: Any) -> None:
    _refuse_size(len(str(separator)) * max(0, len(items) - 1) + len(items), "join")


def _check_padding(text: Any, width: Any) -> None:
    _refuse_size(_int_arg(width), "padding")


def _check_expandtabs(text: Any, size: Any = 8) -> None:
    if isinstance(text, str):
        _refuse_size(len(text) + text.count("\t") * _int_arg(size), "expandtabs")


# str methods a template can call whose result size follows from their arguments
_STR_METHODS: dict[str, Callable[..., None]] = {
    "center": _check_padding, "ljust": _check_padding, "rjust": _check_padding,
    "zfill": _check_padding, "expandtabs": _check_expandtabs, "replace": _check_replace,
}


def _check_indent(text: Any, width: Any = 4, *args: Any, **kwargs: Any) -> None:
    if isinstance(text, str):
        pad = len(width) if isinstance(width, str) else _int_arg(width)
        _refuse_size(len(text) + (text.count("\n") + 1) * pad, "indent")


def _check_wordwrap(text: Any, width: Any = 79, breaks: Any = True,
                    wrapstring: Any = None, *args: Any) -> None:
    if isinstance(text, str) and isinstance(wrapstring, str):
        _refuse_size(len(text) * (1 + len(wrapstring)), "wordwrap")


def _check_sum(value: Any, attribute: Any = None, start: Any = 0) -> None:
    if not isinstance(start, int | float):  # sum(start=[]) concatenates quadratically
        raise SecurityError("sum() starts from a number only")


def _check_tojson(value: Any, indent: Any = None) -> None:
    if _int_arg(indent) > 16:
        raise SecurityError("tojson indent is at most 16")


# Filters whose result size follows from their arguments: checked before they run.
_FILTER_CHECKS: dict[str, Callable[..., None]] = {
    "center": _check_padding, "indent": _check_indent, "replace": _check_replace,
    "format": lambda fmt, *args, **kwargs: _check_printf(str(fmt)),
    "batch": lambda value, count, *args: _refuse_size(_int_arg(count), "batch"),
    "slice": lambda value, count, *args: _refuse_size(_int_arg(count), "slice"),
    "wordwrap": _check_wordwrap, "sum": _check_sum, "tojson": _check_tojson,
}


# Filters that never make text of their arguments (the others may: `x|string`, `x|upper`).
_STRUCTURAL_FILTERS = frozenset({
    "abs", "attr", "batch", "bool", "count", "d", "default", "dictsort", "first", "float",
    "groupby", "int", "items", "last", "length", "list", "map", "max", "min", "random",
    "reject", "rejectattr", "reverse", "round", "select", "selectattr", "slice", "sort",
    "sum", "unique"})


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    check = _FILTER_CHECKS.get(name)
    passes = getattr(func, "jinja_pass_arg", None) is not None  # context/env comes first
    makes_text = name not in _STRUCTURAL_FILTERS

    @functools.wraps(func)  # keeps jinja_pass_arg
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _spend(1)
        own = args[1:] if passes else args
        if name == "join" and own:  # materialize the items to size the result first
            items = list(own[0])
            _spend(len(items))
            separator = own[1] if len(own) > 1 else kwargs.get("d", "")
            _check_join(items, separator)
            args = (*args[:len(args) - len(own)], items, *own[1:])
        elif check is not None:
            check(*own, **kwargs)
        if makes_text:
            for value in (*own, *kwargs.values()):
                _check_deep(value)
        return _produced(func(*args, **kwargs))

    return bounded


class _BoundedCodeGenerator(CodeGenerator):
    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        """A loop iterates `environment.metered(iterable)`: each item costs a unit."""
        if not _is_metered(node.iter):
            node.iter = nodes.Call(nodes.EnvironmentAttribute("metered"), [node.iter], [],
                                   None, None, lineno=node.iter.lineno)
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        """`a ~ b`, through the environment's bounded concat."""
        self.write("environment.concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def _is_metered(node: nodes.Node) -> bool:
    return (isinstance(node, nodes.Call) and isinstance(node.node, nodes.EnvironmentAttribute)
            and node.node.name == "metered")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with every way to make something big or slow metered."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals.pop("lipsum", None)  # lipsum(10**6): text for its own sake
        self.filters = {name: _bounded_filter(name, func) for name, func in self.filters.items()}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple):
                    _refuse_size(len(seq) * _int_arg(times), "repeating")
        elif operator == "+" and isinstance(left, str | list | tuple) \
                and isinstance(right, str | list | tuple):
            _refuse_size(len(left) + len(right), "adding")
        elif operator == "%" and isinstance(left, str):
            _check_printf(left)
            _check_deep(right)
        elif operator == "**":
            _check_power(left, right)
        return _produced(super().call_binop(context, operator, left, right))

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _spend(CALL_COST)
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            name = getattr(__obj, "__name__", "")
            if name == "join" and args:
                items = list(args[0])
                _spend(len(items))
                _check_join(items, owner)
                args = (items, *args[1:])
            elif name in _STR_METHODS:
                _STR_METHODS[name](owner, *args, **kwargs)
        return _produced(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """str.format and format_map, which the sandbox wraps: widths checked first."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def bounded(*args: Any, **kwargs: Any) -> str:
            _check_format(fmt)
            for arg in (*args, *kwargs.values()):
                _check_deep(arg)
            return wrapped(*args, **kwargs)

        return bounded

    def metered(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            _spend(1)
            yield item

    def concat(self, parts: Iterable[Any]) -> str:
        """Template output and `~`: stops as soon as it grows past what is allowed."""
        pieces, size = [], 0
        for part in parts:
            _check_deep(part)
            text = str(part)
            size += len(text)
            if size > MAX_SIZE:
                raise SecurityError(f"output longer than {MAX_SIZE} characters")
            _spend(len(text))
            pieces.append(text)
        return "".join(pieces)


def _pct(value: Any, digits: int = 0) -> str:
    return f"{float(value):.{min(max(int(digits), 0), 20)}f}%"


@lru_cache(maxsize=1)
def _env() -> ImmutableSandboxedEnvironment:
    env = BoundedSandbox(undefined=_Undefined, autoescape=False, finalize=_printable)
    env.filters["pct"] = _bounded_filter("pct", _pct)
    return env


@lru_cache(maxsize=4096)
def _compiled_expression(source: str) -> Any:
    return _env().compile_expression(source, undefined_to_none=False)


@lru_cache(maxsize=4096)
def _compiled_template(source: str) -> Any:
    return _env().from_string(source)


def evaluate(source: str, context: Mapping[str, Any]) -> Any:
    """Evaluate one expression against `context`."""
    try:
        with _metered():
            result = _compiled_expression(source)(**context)
            _check_deep(result)  # the engine validates and journals what it gets
        if isinstance(result, Undefined):  # a bare undefined name is returned, not raised
            result._fail_with_undefined_error()
        return result
    except UndefinedError as exc:
        raise ExpressionError(f"{source!r}: {exc.message}") from None
    except RecursionError:
        raise ExpressionError(f"{source!r}: recursion too deep") from None
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise _failure(source, exc) from None


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render templates inside `value` (strings, lists, dicts), keeping native types."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        whole = _WHOLE.match(value)
        if whole and "}}" not in whole.group("expr"):
            return evaluate(whole.group("expr"), context)
        try:
            with _metered():
                return _compiled_template(value).render(**context)
        except UndefinedError as exc:
            raise ExpressionError(f"{value!r}: {exc.message}") from None
        except RecursionError:
            raise ExpressionError(f"{value!r}: recursion too deep") from None
        except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise _failure(value, exc) from None
    with _metered():  # one budget for all the templates inside `value`
        if isinstance(value, list):
            return [render(item, context) for item in value]
        if isinstance(value, dict):
            return {key: render(item, context) for key, item in value.items()}
    return value


def is_template(value: Any) -> bool:
    """True when `value` holds a template anywhere inside."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, list):
        return any(is_template(item) for item in value)
    if isinstance(value, dict):
        return any(is_template(item) for item in value.values())
    return False


def syntax_error(source: str, *, template: bool) -> str | None:
    """The syntax error in `source`, or None when it parses."""
    try:
        _env().parse(source if template else "{{ " + source + " }}")
    except TemplateSyntaxError as exc:
        return exc.message or str(exc)
    return None


def references(source: str, *, template: bool) -> Iterator[tuple[str, str]]:
    """(namespace, name) pairs such as ("steps", "usage") that `source` reads.

    Only attribute and constant-subscript access on a bare name count, which is how
    playbooks refer to step results, params and targets.
    """
    try:
        tree = _env().parse(source if template else "{{ " + source + " }}")
    except TemplateSyntaxError:
        return
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name):
            yield node.node.name, node.attr
    for item in tree.find_all(nodes.Getitem):
        if (isinstance(item.node, nodes.Name) and isinstance(item.arg, nodes.Const)
                and isinstance(item.arg.value, str)):
            yield item.node.name, item.arg.value


def template_references(value: Any) -> Iterator[tuple[str, str]]:
    """references() over every template string inside `value`."""
    if isinstance(value, str):
        if "{{" in value or "{%" in value:
            yield from references(value, template=True)
    elif isinstance(value, list):
        for item in value:
            yield from template_references(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from template_references(item)
