"""The inventory: named targets with a kind and how to reach them.

    targets:
      journey-db:
        kind: postgres
        dsn_env: JOURNEY_DATABASE_URL   # secrets are referenced, never inlined

Each target's fields are validated by the backend that serves its kind.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from . import yamlsource
from .errors import PlaybookError, Problem, UsageError
from .registry import Registry

# Keys that hold a secret when given a value inline; `<key>_env` / `<key>_file` are fine.
_SECRET_KEY = re.compile(r"(^|_)(password|passwd|token|secret|api_key|private_key)$")


@dataclass(frozen=True)
class Target:
    name: str
    kind: str
    settings: BaseModel
    description: str = ""
    source: str = ""  # file:line, for messages


class Inventory:
    def __init__(self, targets: dict[str, Target]) -> None:
        self._targets = targets

    def __iter__(self) -> Iterator[Target]:
        return iter(self._targets.values())

    def __len__(self) -> int:
        return len(self._targets)

    def get(self, name: str) -> Target:
        try:
            return self._targets[name]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(name, self._targets, n=2)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            known = ", ".join(sorted(self._targets)) or "none"
            raise UsageError(f"no target {name!r} in the inventory{hint}; known: {known}") from None

    def of_kind(self, kind: str) -> list[Target]:
        return [t for t in self._targets.values() if t.kind == kind]


def _files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in {".yaml", ".yml"})
        else:
            files.append(path)
    return files


def load(paths: Iterable[Path], registry: Registry) -> Inventory:
    """Load and validate inventory files (or folders of them); raise PlaybookError."""
    problems: list[Problem] = []
    targets: dict[str, Target] = {}
    for file in _files(paths):
        doc, found = yamlsource.read(file)
        problems += found
        if found:
            continue
        data = doc.data if isinstance(doc.data, dict) else {}
        entries = data.get("targets")
        if not isinstance(entries, dict):
            problems.append(doc.problem((), "an inventory needs a 'targets:' mapping"))
            continue
        for name, entry in entries.items():
            path: tuple[str | int, ...] = ("targets", name)
            if name in targets:
                problems.append(doc.problem(path, f"target {name!r} defined twice "
                                                  f"(also at {targets[name].source})"))
                continue
            target = _target(doc, path, str(name), entry, registry, problems)
            if target:
                targets[target.name] = target
    if problems:
        raise PlaybookError(problems)
    return Inventory(targets)


def _target(doc: yamlsource.Document, path: tuple[str | int, ...], name: str, entry: Any,
            registry: Registry, problems: list[Problem]) -> Target | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
        problems.append(doc.problem(path, f"target {name!r} needs a 'kind:'"))
        return None
    fields = {k: v for k, v in entry.items() if k not in {"kind", "description"}}
    for key, value in fields.items():
        if _SECRET_KEY.search(str(key)) and value:
            problems.append(doc.problem((*path, key), f"{key!r} is a secret: reference it "
                                        f"with '{key}_env: VAR' instead of writing it here"))
            return None
    kind = entry["kind"]
    if not registry.has_backend(kind):
        problems.append(doc.problem((*path, "kind"), f"no installed backend serves kind {kind!r}"))
        return None
    try:
        settings = registry.backend(kind).settings.model_validate(fields)
    except ValidationError as exc:
        from .loader import problem

        problems += [problem(doc, error, path) for error in exc.errors()]
        return None
    line, _ = doc.where(path)
    return Target(name, kind, settings, str(entry.get("description", "")), f"{doc.file}:{line}")
