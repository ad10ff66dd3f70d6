"""Find playbooks, parse them and validate them before anything runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from . import yamlsource
from .errors import PlaybookError, Problem
from .model import Playbook
from .registry import Registry


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
    try:
        book = Playbook.model_validate(doc.data)
    except ValidationError as exc:
        raise PlaybookError([_located(doc, e) for e in exc.errors()]) from None
    problems = _check_name(book, doc)
    from .validate import check

    problems += check(book, doc, registry)
    if problems:
        raise PlaybookError(problems)
    return LoadedPlaybook(book, file, text)


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


def _located(doc: yamlsource.Document, error: object) -> Problem:
    err = dict(error)  # type: ignore[call-overload]
    loc = tuple(err["loc"])
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
