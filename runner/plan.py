"""Bind a validated playbook to real targets and parameter values; nothing runs here."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .extras import require_for
from .inventory import Inventory, Target
from .loader import LoadedPlaybook
from .model import Playbook, coerce_param, param_ref
from .registry import Registry, StepKind


@dataclass(frozen=True)
class Plan:
    loaded: LoadedPlaybook
    targets: dict[str, Target]  # role -> inventory target
    params: dict[str, Any]
    # Journaled with the run: the inventory it was planned with and the approval policy
    # it started under (see `provenance`).
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @property
    def playbook(self) -> Playbook:
        return self.loaded.playbook

    def role_for(self, role: str | None, kind: StepKind) -> str:
        """The role a step acts on: its own, or the only role of the kind it needs."""
        if role is not None:
            return role
        return next(r for r, spec in self.playbook.targets.items() if spec.kind == kind.target_kind)

    def target_for(self, role: str | None, kind: StepKind) -> Target | None:
        """The bound target, or None for an optional role left unbound."""
        return self.targets.get(self.role_for(role, kind))

    def window(self, value: float | str | None) -> float:
        """A verify check's `for:` in seconds: a duration, or the duration param it names."""
        name = param_ref(value)
        return float(self.params[name] if name else value or 0.0)

    def context(self, results: Mapping[str, Any]) -> dict[str, Any]:
        """What expressions see: step results, params, and the bound targets."""
        return {
            "steps": results,
            "params": self.params,
            "targets": {role: {"name": t.name, "kind": t.kind} for role, t in self.targets.items()},
        }

    def bindings(self) -> dict[str, str]:
        return {role: target.name for role, target in self.targets.items()}


BARE = ""  # the key under which parse_assignments keeps a bare `--target NAME`


def parse_assignments(items: list[str], what: str, *, bare_ok: bool = False) -> dict[str, str]:
    """`["a=b", "c=d"]` from repeated --target / --param options."""
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep and bare_ok and BARE not in result:
            result[BARE] = key.strip()
            continue
        if not sep or not key.strip():
            raise UsageError(f"--{what} wants NAME=VALUE, got {item!r}")
        result[key.strip()] = value.strip()
    return result


def _roles_for_bare_names(book: Playbook, inventory: Inventory,
                          targets: Mapping[str, str]) -> dict[str, str]:
    """`--target journey-db` binds the one role whose kind matches journey-db's kind."""
    bound = dict(targets)
    if BARE not in bound:
        return bound
    target = inventory.get(bound.pop(BARE))
    roles = [r for r, spec in book.targets.items() if spec.kind == target.kind and r not in bound]
    if len(roles) != 1:
        raise UsageError(f"--target {target.name}: {len(roles)} roles of {book.name} take a "
                         f"{target.kind!r} target; say which with --target ROLE={target.name}")
    bound[roles[0]] = target.name
    return bound


def provenance(inventory_paths: Iterable[Path], plan: Plan,
               policy: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a run records about its sources, no secrets: the inventory's files (absolute
    paths and a hash of their content), the settings of the targets it bound, and the
    approval policy in force (`runbook resume` re-reads the same inventory paths)."""
    files: list[Path] = []
    for path in inventory_paths:
        files += (sorted(p for p in path.iterdir() if p.suffix in {".yaml", ".yml"})
                  if path.is_dir() else [path])
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.resolve()).encode() + b"\0" + file.read_bytes() + b"\0")
    record: dict[str, Any] = {"inventory": {
        "paths": [str(Path(p).resolve()) for p in inventory_paths],
        "sha256": digest.hexdigest(),
        "targets": {t.name: {"kind": t.kind, "source": t.source,
                             "settings": t.settings.model_dump(mode="json")}
                    for t in plan.targets.values()}}}
    if policy is not None:
        record["policy"] = dict(policy)
    return record


def make_plan(loaded: LoadedPlaybook, inventory: Inventory, registry: Registry,
              targets: Mapping[str, str], params: Mapping[str, Any]) -> Plan:
    book = loaded.playbook
    targets = _roles_for_bare_names(book, inventory, targets)
    for role in targets:
        if role not in book.targets:
            raise UsageError(f"{book.name} has no target role {role!r}; "
                             f"roles: {', '.join(book.targets) or 'none'}")
    bound: dict[str, Target] = {}
    for role, spec in book.targets.items():
        if role in targets:
            target = inventory.get(targets[role])
            if target.kind != spec.kind:
                raise UsageError(f"role {role!r} needs a {spec.kind!r} target; "
                                 f"{target.name!r} is {target.kind!r}")
        else:
            candidates = inventory.of_kind(spec.kind)
            if not candidates and spec.optional:
                continue  # its steps are skipped, and the report says why
            if len(candidates) != 1:
                names = ", ".join(t.name for t in candidates) or "none in the inventory"
                raise UsageError(f"say which target plays {role!r}: --target {role}=NAME "
                                 f"({spec.kind} targets: {names})")
            target = candidates[0]
        registry.backend(target.kind)  # fails early if no backend serves it
        bound[role] = target
    require_for(registry, bound.values())  # a client library not installed: the pip line
    for name in params:
        if name not in book.params:
            raise UsageError(f"{book.name} has no param {name!r}; "
                             f"params: {', '.join(book.params) or 'none'}")
    values: dict[str, Any] = {}
    for name, param in book.params.items():
        try:
            values[name] = coerce_param(param, params.get(name, param.default))
        except ValueError as exc:
            raise UsageError(f"--param {name}: {exc}") from None
        if values[name] is None:
            raise UsageError(f"{book.name} needs --param {name}=VALUE ({param.description})")
    return Plan(loaded, bound, values)


def replan(source: Mapping[str, Any], inventory: Inventory, registry: Registry) -> Plan:
    """The plan of a journaled run: the playbook text it started with, not today's file."""
    from .loader import parse

    loaded = parse(source["playbook_text"], source["playbook_path"], registry)
    return make_plan(loaded, inventory, registry, source["targets"], source["params"])
