"""YAML documents that remember where each value came from, for file:line:col errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Problem

Path_ = tuple[str | int, ...]

try:  # the C loader is several times faster; fall back where libyaml is missing
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader


@dataclass
class Document:
    """A parsed YAML document: plain Python data plus the position of every value."""

    file: str
    data: Any
    text: str
    positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: Path_) -> tuple[int, int]:
        """Line and column (1-based) of `path`, or of its nearest located parent."""
        while path not in self.positions and path:
            path = path[:-1]
        return self.positions.get(path, (1, 1))

    def problem(self, path: Path_, message: str) -> Problem:
        line, col = self.where(path)
        return Problem(self.file, line, col, message)


def parse(text: str, file: str) -> tuple[Document, list[Problem]]:
    """Parse one YAML document; syntax errors and duplicate keys come back as problems."""
    doc = Document(file=file, data=None, text=text)
    problems: list[Problem] = []
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            doc.data = _build(loader, node, (), doc, problems)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problems.append(Problem(file, line, col, f"YAML syntax: {exc.problem or exc}"))
    except yaml.YAMLError as exc:
        problems.append(Problem(file, 1, 1, f"YAML: {exc}"))
    finally:
        loader.dispose()
    return doc, problems


def read(path: Path) -> tuple[Document, list[Problem]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return Document(str(path), None, ""), [Problem(str(path), 1, 1, exc.strerror or str(exc))]
    return parse(text, str(path))


def _build(
    loader: yaml.SafeLoader, node: yaml.Node, path: Path_, doc: Document, problems: list[Problem]
) -> Any:
    doc.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool):
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                problems.append(Problem(doc.file, line, col, "mapping keys must be scalars"))
                continue
            if key in result:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                problems.append(Problem(doc.file, line, col, f"duplicate key {key!r}"))
            result[key] = _build(loader, value_node, (*path, str(key)), doc, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*path, i), doc, problems)
                for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
