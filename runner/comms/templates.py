"""The messages' templates: the shipped ones (templates/*.yaml), each replaced by a file of
the same name in a team's folder. Every value is rendered by runbook's sandboxed, bounded
Jinja (runner.expressions); a team's file is checked when it is loaded (YAML, its keys, each
template's syntax, and a trial render, so an unknown name is a file:line:col error then,
not a lost message at 3 a.m.).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import PlaybookError, Problem

SHIPPED = Path(__file__).resolve().parent / "templates"
FILES = {"incident": "alert.yaml", "update": "update.yaml", "resolved": "resolved.yaml",
         "customer": "customer.yaml"}
LISTS = ("found", "not_checked", "done", "waiting", "notes")
KEYS = frozenset({"title", "fields", "next", "body", *LISTS})


@dataclass(frozen=True)
class Template:
    kind: str
    source: str  # the file it came from
    values: dict[str, Any] = field(default_factory=dict)

    def render(self, facts: Mapping[str, Any]) -> dict[str, Any]:
        """The message: title, fields, lists, next, body. Raises ExpressionError."""
        from ..expressions import render

        message: dict[str, Any] = {"kind": self.kind}
        for key, value in self.values.items():
            if key == "fields":
                message["fields"] = {str(label): _text(render(text, facts))
                                     for label, text in value.items()}
            elif key in LISTS:
                shown = render(value, facts)
                items = shown if isinstance(shown, list) else [shown] if shown else []
                message[key] = [_text(item) for item in items]
            else:
                message[key] = _text(render(value, facts))
        message.setdefault("fields", {})
        message.setdefault("title", self.kind.upper())
        return message


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _sample_facts(kind: str) -> dict[str, Any]:
    """Facts of a made-up run, for the trial render of a team's template."""
    from ..state import RunState
    from .config import Settings
    from .facts import customer_facts, run_facts

    state = RunState("sample", playbook="sample", summary="sample", severity="P2",
                     started_at="2026-01-01T00:00:00+00:00")
    now = datetime(2026, 1, 1, 1, tzinfo=UTC)
    if kind == "customer":
        return customer_facts(state, Settings(), now=now)
    return run_facts(state, Settings(), now=now)


def _check(path: Path, kind: str) -> Template:
    return _checked(str(path), kind, path.stat().st_mtime_ns)


@lru_cache(maxsize=64)
def _checked(name: str, kind: str, mtime_ns: int) -> Template:
    """A file checked once per version of it."""
    path = Path(name)
    from .. import yamlsource
    from ..expressions import ExpressionError, syntax_error

    doc, problems = yamlsource.read(path)
    data = doc.data
    if not problems and not isinstance(data, dict):
        problems = [doc.problem((), "a template file is a mapping: title, fields, ...")]
    if problems:
        raise PlaybookError(problems)
    found: list[Problem] = []
    for key in data:
        if key not in KEYS:
            found.append(doc.problem((key,), f"unknown key {key!r}; expected one of "
                                              f"{', '.join(sorted(KEYS))}"))
    fields = data.get("fields", {})
    if not isinstance(fields, dict):
        found.append(doc.problem(("fields",), "fields: a mapping of label: template"))
        fields = {}
    texts: list[tuple[tuple[str, ...], Any]] = [
        ((key,), value) for key, value in data.items() if key in KEYS - {"fields"}]
    texts += [(("fields", label), value) for label, value in fields.items()]
    for where, value in texts:
        if not isinstance(value, str):
            found.append(doc.problem(where, f"{'.'.join(map(str, where))}: a template "
                                            "(a string)"))
        elif error := syntax_error(value, template=True):
            found.append(doc.problem(where, f"{'.'.join(map(str, where))}: {error}"))
    if found:
        raise PlaybookError(found)
    template = Template(kind, str(path), dict(data))
    sample = _sample_facts(kind)
    for where, value in texts:
        try:
            Template(kind, str(path), {"title": value}).render(sample)
        except ExpressionError as exc:
            found.append(doc.problem(where, f"{'.'.join(map(str, where))}: {exc}; names: "
                                            f"{', '.join(sorted(sample))}"))
    if found:
        raise PlaybookError(found)
    return template


def load(team_dir: Path | None = None) -> dict[str, Template]:
    """The four templates: a team's file where it has one, else the shipped one."""
    chosen: dict[str, Template] = {}
    for kind, name in FILES.items():
        team = team_dir / name if team_dir is not None else None
        chosen[kind] = _check(team if team is not None and team.is_file() else SHIPPED / name,
                              kind)
    return chosen


def shipped() -> dict[str, Template]:
    return load(None)
