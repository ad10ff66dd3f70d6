"""YAML documents that remember where each value came from, for file:line:col errors.

Playbooks, inventories, policies and daemon configs are all read here, and all are bounded:
a document may hold at most MAX_NODES values once its aliases are expanded (a 500-byte
"billion laughs" alias bomb would otherwise expand to gigabytes), nest at most MAX_DEPTH
deep, and have no alias inside itself. The expansion is measured on the composed node
graph, where an alias is one shared node, before anything is built from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Problem

Path_ = tuple[str | int, ...]

MAX_NODES = 100_000  # values in a document, aliases expanded: far beyond any real playbook
MAX_DEPTH = 100  # nesting
MAX_CHARS = 4_000_000  # a document's text

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
    if len(text) > MAX_CHARS:
        return doc, [Problem(file, 1, 1, f"larger than {MAX_CHARS} characters: refused")]
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        refused = None if node is None else _too_big(node, file)
        if refused is not None:
            problems.append(refused)
        elif node is not None:
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


def _too_big(root: yaml.Node, file: str) -> Problem | None:
    """Why the document would expand too far once built, or None. Each node's expanded
    size is counted once (memoized by identity), so the count itself stays linear in the
    text even for an alias bomb."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(child)] for child in _children(node))
            if size[key] > MAX_NODES:
                return _problem(file, node, f"expands to more than {MAX_NODES} values "
                                "(aliases repeating aliases, an alias bomb?): refused")
            continue
        if key in size:
            continue  # an alias of a node already counted
        if key in on_path:
            return _problem(file, node, "an alias refers to a node that contains it: refused")
        if depth > MAX_DEPTH:
            return _problem(file, node, f"nested more than {MAX_DEPTH} deep: refused")
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in _children(node)
                     if id(child) not in size)
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _problem(file: str, node: yaml.Node, message: str) -> Problem:
    return Problem(file, node.start_mark.line + 1, node.start_mark.column + 1, f"YAML: {message}")


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
