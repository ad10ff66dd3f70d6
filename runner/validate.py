"""Meaning checks on a parsed playbook: every problem, each with its file:line:col.

Shape and types are pydantic's job (`runner.model`); here: step kinds exist and suit their
section, targets and parameters exist, expressions parse and refer only to steps, params
and targets that exist, ids are unique and `needs` has no cycle.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from . import expressions
from .errors import Problem
from .model import Playbook, coerce_param, param_ref
from .registry import Registry, StepKind, UnknownKind
from .yamlsource import Document

Loc = tuple[str | int, ...]


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


class _Checker:
    def __init__(self, book: Playbook, doc: Document, registry: Registry,
                 positions: dict[str, list[int]], broken_ids: set[str]) -> None:
        self.book, self.doc, self.registry = book, doc, registry
        self.positions = positions
        self.problems: list[Problem] = []
        # Steps dropped for shape errors still count as defined: no "unknown step" noise.
        self.step_ids = {step.id for step in book.steps} | broken_ids

    def at(self, section: str, index: int) -> Loc:
        """Where the section's index-th kept item was in the file."""
        kept = self.positions.get(section)
        return (section, kept[index] if kept else index)

    def add(self, loc: Loc, message: str) -> None:
        self.problems.append(self.doc.problem(loc, message))

    def run(self) -> list[Problem]:
        for name, spec in self.book.params.items():
            try:
                coerce_param(spec, spec.default)
            except ValueError as exc:
                self.add(("params", name, "default"), f"param {name!r}: {exc}")
        self._unique("steps", [s.id for s in self.book.steps])
        self._unique("findings", [f.id for f in self.book.findings])
        self._unique("remedies", [r.id for r in self.book.remedies])
        self._unique("verify", [self.book.verify_id(i) for i in range(len(self.book.verify))])
        for i, step in enumerate(self.book.steps):
            loc: Loc = self.at("steps", i)
            kind = self._kind(loc, step.run, section="steps")
            self._target(loc, step.target, kind)
            self._params(loc, step.with_, kind)
            self._expression(loc + ("when",), step.when)
            self._templates(loc + ("with",), step.with_)
            for j, need in enumerate(step.needs):
                if need not in self.step_ids:
                    self.add(loc + ("needs", j), f"needs unknown step {need!r}"
                             + _did_you_mean(need, self.step_ids))
        self._cycles()
        for i, finding in enumerate(self.book.findings):
            self._expression(self.at("findings", i) + ("when",), finding.when)
            self._template(self.at("findings", i) + ("say",), finding.say)
        for i, remedy in enumerate(self.book.remedies):
            loc = self.at("remedies", i)
            kind = self._kind(loc, remedy.run, section="remedies")
            self._target(loc, remedy.target, kind)
            self._params(loc, remedy.with_, kind)
            self._expression(loc + ("when",), remedy.when)
            self._templates(loc + ("with",), remedy.with_)
        for i, check in enumerate(self.book.verify):
            loc = self.at("verify", i)
            kind = self._kind(loc, check.run, section="verify")
            self._target(loc, check.target, kind)
            self._params(loc, check.with_, kind)
            self._templates(loc + ("with",), check.with_)
            self._expression(loc + ("expect",), check.expect)
            ref = param_ref(check.for_)
            if ref and getattr(self.book.params.get(ref), "type", None) != "duration":
                self.add(loc + ("for",), f"'for' names params.{ref}, which is not a duration "
                                         "param of this playbook")
        for i, rule in enumerate(self.book.severity_rules):
            self._expression(("severity", "rules", i, "when"), rule.when)
        return self.problems

    def _unique(self, section: str, ids: list[str]) -> None:
        seen: set[str] = set()
        for i, id_ in enumerate(ids):
            if id_ in seen:
                self.add(self.at(section, i) + ("id",), f"duplicate id {id_!r} in {section}")
            seen.add(id_)

    def _kind(self, loc: Loc, name: str, section: str) -> StepKind | None:
        try:
            kind = self.registry.kind(name)
        except UnknownKind as exc:
            self.add(loc + ("run",), str(exc))
            return None
        if kind.mutating and section != "remedies":
            self.add(loc + ("run",), f"{name} changes things: it can only be a remedy "
                                     f"(under 'remedies:'), never under '{section}:'")
        if not kind.mutating and section == "remedies":
            self.add(loc + ("run",), f"{name} is read-only: put it under 'steps:' or 'verify:'")
        return kind

    def _target(self, loc: Loc, role: str | None, kind: StepKind | None) -> None:
        roles = self.book.targets
        if role is None:
            if kind is None:
                return
            matching = [r for r, spec in roles.items() if spec.kind == kind.target_kind]
            if not matching:
                self.add(loc, f"{kind.name} needs a {kind.target_kind!r} target: add a role "
                              f"of that kind under 'targets:'")
            elif len(matching) > 1:
                self.add(loc, f"say which 'target:': roles {', '.join(matching)} are all "
                              f"{kind.target_kind!r}")
            return
        if role not in roles:
            self.add(loc + ("target",), f"unknown target role {role!r}"
                     + _did_you_mean(role, roles) + f"; roles: {', '.join(roles) or 'none'}")
        elif kind is not None and roles[role].kind != kind.target_kind:
            self.add(loc + ("target",), f"{kind.name} needs a {kind.target_kind!r} target, "
                                        f"but role {role!r} is {roles[role].kind!r}")

    def _params(self, loc: Loc, given: dict[str, Any], kind: StepKind | None) -> None:
        if kind is None:
            return
        fields = kind.params.model_fields
        names = {f.alias or n for n, f in fields.items()}
        for key in given:
            if key not in names:
                self.add(loc + ("with", key), f"{kind.name} has no parameter {key!r}"
                         + _did_you_mean(key, names)
                         + f"; parameters: {', '.join(sorted(names)) or 'none'}")
        templated = {k for k, v in given.items() if expressions.is_template(v)}
        literal = {k: v for k, v in given.items() if k in names and k not in templated}
        try:
            kind.params.model_validate(literal)
        except ValidationError as exc:
            for error in exc.errors():
                field = str(error["loc"][0]) if error["loc"] else ""
                if field in templated:
                    continue  # resolved at run time, checked then
                if error["type"] == "missing":
                    self.add(loc + ("with",), f"{kind.name} needs parameter {field!r}")
                else:
                    where = ".".join(map(str, error["loc"]))
                    self.add(loc + ("with", *error["loc"]), f"{where}: {error['msg']}")

    def _refs(self, loc: Loc, refs: Iterable[tuple[str, str]]) -> None:
        known = {"steps": self.step_ids, "params": set(self.book.params),
                 "targets": set(self.book.targets),
                 "findings": {f.id for f in self.book.findings}}
        for space, name in refs:
            if space == "findings" and loc[0] not in ("remedies", "verify", "severity"):
                self.add(loc, f"findings[{name!r}]: findings are concluded after the steps, "
                              "so only remedies and verify can use them")
            elif space in known and name not in known[space]:
                what = {"steps": "step", "params": "param", "targets": "target role",
                        "findings": "finding"}[space]
                said = f"findings[{name!r}]" if space == "findings" else f"{space}.{name}"
                self.add(loc, f"refers to unknown {what} {said}"
                         + _did_you_mean(name, known[space]))

    def _expression(self, loc: Loc, source: str | None) -> None:
        if source is None:
            return
        if error := expressions.syntax_error(source, template=False):
            self.add(loc, f"expression {source!r}: {error}")
            return
        self._refs(loc, expressions.references(source, template=False))

    def _template(self, loc: Loc, source: str) -> None:
        if error := expressions.syntax_error(source, template=True):
            self.add(loc, f"template {source!r}: {error}")
            return
        self._refs(loc, expressions.references(source, template=True))

    def _templates(self, loc: Loc, value: Any) -> None:
        if isinstance(value, str):
            if expressions.is_template(value):
                self._template(loc, value)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self._templates(loc + (i,), item)
        elif isinstance(value, dict):
            for key, item in value.items():
                self._templates(loc + (key,), item)

    def _cycles(self) -> None:
        graph = {step.id: step_dependencies(step) & self.step_ids for step in self.book.steps}
        state: dict[str, int] = {}  # 1 visiting, 2 done

        def visit(node: str, trail: list[str]) -> None:
            state[node] = 1
            for dep in sorted(graph.get(node, ())):
                if state.get(dep) == 1:
                    index = next(i for i, s in enumerate(self.book.steps) if s.id == node)
                    if dep == node:
                        self.add(self.at("steps", index), f"step {node!r} depends on itself")
                        continue
                    cycle = trail[trail.index(dep):] + [dep] if dep in trail else [node, dep]
                    self.add(self.at("steps", index) + ("needs",), "steps depend on each other "
                             f"in a cycle: {' -> '.join(cycle)}")
                elif dep not in state:
                    visit(dep, trail + [dep])
            state[node] = 2

        for node in graph:
            if node not in state:
                visit(node, [node])


def step_dependencies(step: Any) -> set[str]:
    """Steps that `step` must wait for: its `needs` and the steps its templates read."""
    deps = set(step.needs)
    deps |= {name for space, name in expressions.template_references(step.with_)
             if space == "steps"}
    if step.when:
        deps |= {name for space, name in expressions.references(step.when, template=False)
                 if space == "steps"}
    return deps  # includes step.id itself when it refers to itself: validation refuses that


def check(book: Playbook, doc: Document, registry: Registry,
          positions: dict[str, list[int]] | None = None,
          broken_ids: set[str] | None = None) -> list[Problem]:
    """Every meaning problem of `book`; `positions` maps kept items to their file index."""
    return _Checker(book, doc, registry, positions or {}, broken_ids or set()).run()
