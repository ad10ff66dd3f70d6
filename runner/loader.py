"""Find playbooks, parse them and validate them before anything runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import yamlsource
from .errors import PlaybookError, Problem
from .model import Finding, Playbook, Remedy, Step, Verify
from .registry import Registry

_SECTIONS: dict[str, Any] = {"steps": Step, "findings": Finding, "remedies": Remedy,
                             "verify": Verify}


@dataclass(frozen=True)
class LoadedPlaybook:
    playbook: Playbook
    path: str
    text: str  # the source as loaded, kept with each run so resume uses the same playbook


def parse(text: str, file: str, registry: Registry) -> LoadedPlaybook:
    """Validate a playbook's text completely; raise PlaybookError listing every problem."""
    doc, problems = yamlsource.parse(text, file)
    if problems:
        raise PlaybookError(problems)
    if not isinstance(doc.data, dict):
        raise PlaybookError([doc.problem((), "a playbook is a mapping with name, summary, steps")])
    shape = _shape(doc)
    problems = shape.problems
    if shape.book is not None:
        from .validate import check

        problems += _check_name(shape.book, doc)
        problems += check(shape.book, doc, registry, shape.positions, shape.broken_ids)
    if problems:
        raise PlaybookError(problems)
    assert shape.book is not None
    return LoadedPlaybook(shape.book, file, text)


@dataclass
class _Shape:
    book: Playbook | None
    positions: dict[str, list[int]]  # section -> original index of each item kept
    broken_ids: set[str]  # ids of steps dropped for shape errors (no "unknown step" for them)
    problems: list[Problem]


def _shape(doc: yamlsource.Document) -> _Shape:
    """Type-check each step, finding, remedy and verify on its own, so that one malformed
    item does not hide the meaning problems of the others."""
    data = dict(doc.data)
    shape = _Shape(None, {}, set(), [])
    for section, model in _SECTIONS.items():
        items = data.get(section)
        if not isinstance(items, list):
            continue  # the whole-playbook validation below reports it
        kept: list[Any] = []
        shape.positions[section] = []
        for index, item in enumerate(items):
            try:
                kept.append(model.model_validate(item))
                shape.positions[section].append(index)
            except ValidationError as exc:
                shape.problems += [problem(doc, e, (section, index)) for e in exc.errors()]
                if section == "steps" and isinstance(item, dict) and "id" in item:
                    shape.broken_ids.add(str(item["id"]))
        data[section] = kept
    try:
        shape.book = Playbook.model_validate(data)
    except ValidationError as exc:
        shape.problems += [problem(doc, e) for e in exc.errors()]
    return shape


def load(path: Path, registry: Registry) -> LoadedPlaybook:
    doc_text = _read(path)
    return parse(doc_text, str(path), registry)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlaybookError([Problem(str(path), 1, 1, exc.strerror or str(exc))]) from None


def _check_name(book: Playbook, doc: yamlsource.Document) -> list[Problem]:
    stem = Path(doc.file).stem
    if Path(doc.file).suffix in {".yaml", ".yml"} and stem != book.name:
        return [doc.problem(("name",), f"name {book.name!r} differs from the file name "
                                       f"{stem!r}; `runbook run` finds playbooks by file name")]
    return []


def problem(doc: yamlsource.Document, error: Any, prefix: tuple[str | int, ...] = ()) -> Problem:
    """A pydantic error as a located Problem, in words a playbook author reads."""
    err = dict(error)
    loc = (*prefix, *err["loc"])
    where = ".".join(str(part) for part in loc)
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = f"unknown field {loc[-1]!r}"
    elif err["type"] == "missing":
        message = f"missing field {loc[-1]!r}"
    elif err["type"] == "value_error":
        message = message.removeprefix("Value error, ")
    elif err["type"] == "literal_error" or err["type"] == "string_pattern_mismatch":
        message = f"{message}, got {err.get('input')!r}"
    return doc.problem(loc, f"{where}: {message}" if where else message)
