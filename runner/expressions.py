"""Sandboxed expressions and templates, in the Jinja2 dialect Ansible users know.

`when:` fields are expressions (`steps.usage.used_pct >= 90`); `say:` and `with:` values are
templates (`{{ steps.usage.used }} of {{ steps.usage.max }}`). A `with:` value that is one
`{{ ... }}` and nothing else keeps its native type, so a list of pids stays a list.
The sandbox refuses Python internals; the environment offers no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Undefined, nodes
from jinja2.exceptions import TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["ExpressionError", "evaluate", "references", "render", "syntax_error"]

_WHOLE = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


class ExpressionError(Exception):
    """An expression failed: syntax, an undefined name, or a sandbox refusal."""


@lru_cache(maxsize=1)
def _env() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters["pct"] = lambda value, digits=0: f"{float(value):.{digits}f}%"
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
        result = _compiled_expression(source)(**context)
        if isinstance(result, Undefined):  # a bare undefined name is returned, not raised
            result._fail_with_undefined_error()
        return result
    except UndefinedError as exc:
        raise ExpressionError(f"{source!r}: {exc.message}") from None
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise ExpressionError(f"{source!r}: {exc}") from None


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render templates inside `value` (strings, lists, dicts), keeping native types."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        whole = _WHOLE.match(value)
        if whole and "}}" not in whole.group("expr"):
            return evaluate(whole.group("expr"), context)
        try:
            return _compiled_template(value).render(**context)
        except UndefinedError as exc:
            raise ExpressionError(f"{value!r}: {exc.message}") from None
        except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise ExpressionError(f"{value!r}: {exc}") from None
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
