"""Step kinds and the backends that carry them out, looked up by name.

A backend (`diagnostics.postgres`, ...) registers itself through the `runbook.backends`
entry point group: a `register(registry)` function adds one `Backend` (how to reach a kind
of target) and its `StepKind`s. A registry is an instance: tests and embedders build their
own; `default_registry()` is the one built from installed entry points.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from pydantic import BaseModel

from .context import StepContext
from .errors import RunbookError

ENTRY_POINT_GROUP = "runbook.backends"


class Target(Protocol):
    """What a connector needs of an inventory target (see `runner.inventory.Target`)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def settings(self) -> BaseModel: ...


class Connector(Protocol):
    """Opens handles to a backend's targets.

    `probe` must return a handle that cannot change anything (the safety model's first rule:
    enforced by the backend, not promised by the step). `action` returns a handle that may.
    A probe handle may offer `cancel()`, which the engine calls from another thread on
    timeout. An action handle is never cancelled: past the remedy's deadline the engine calls
    its `interrupt()`, if it offers one, and waits for the action to end; an action that
    sees it stops at the next point where it can finish or undo its half-done work.
    Both receive the step's `StepContext` (`runner.context`): its own timeout and deadline,
    the run's directory and runbook's home, a logger and a cancellation signal.
    A connector may offer `prepare()`, called once before a run's steps start: the place to
    import its client library, so that no step's time includes it; and `extras(target)`,
    the package extras a target needs (`runner.extras` says which `pip install` adds them).
    A connector should offer `identity(target, timeout) -> dict[str, str]`: the non-secret
    resolved identity of what the target's name points at now (a container id, a workload
    uid, a database's system identifier, a host key). An approval binds to it, and the gate
    resolves it again right before the action: a name that now points elsewhere voids it.
    """

    def probe(self, target: Target, ctx: StepContext) -> AbstractContextManager[Any]: ...
    def action(self, target: Target, ctx: StepContext) -> AbstractContextManager[Any]: ...


@dataclass(frozen=True)
class Backend:
    """How to reach one kind of target."""

    kind: str
    connector: Connector
    settings: type[BaseModel]  # validates the inventory entry's fields
    summary: str = ""


@dataclass(frozen=True)
class StepKind:
    """A named step: a function of (handle, params) returning a JSON-able dict."""

    name: str
    target_kind: str
    func: Callable[[Any, Any], dict[str, Any]]
    params: type[BaseModel]
    mutating: bool
    summary: str
    result: Mapping[str, str] = field(default_factory=dict)  # field -> meaning, for docs
    timeout: float = 30.0
    # For remedies: one line saying what the resolved arguments will do, shown at the gate.
    explain: Callable[[Any], str] | None = None
    # Read-only only because the playbook's author says so (a free-form command marked
    # read-only): `show` and `plan` display that mark.
    read_only_by_author: bool = False
    # For remedies: (read-only handle, params) -> params with mutable references (an image
    # tag) resolved to immutable ones (its id), when proposed: the approver sees, and the
    # action uses, exactly what the name meant then. Params already pinned (a resumed run's
    # journaled proposal) must come back unchanged.
    pin: Callable[[Any, Any], Any] | None = None


class UnknownKind(RunbookError):
    def __init__(self, name: str, suggestions: list[str]) -> None:
        self.name, self.suggestions = name, suggestions
        hint = f" (did you mean {' or '.join(suggestions)}?)" if suggestions else ""
        super().__init__(f"unknown step kind {name!r}{hint}")


class Registry:
    def __init__(self) -> None:
        self._kinds: dict[str, StepKind] = {}
        self._backends: dict[str, Backend] = {}

    def add_backend(self, backend: Backend) -> None:
        if backend.kind in self._backends:
            raise RunbookError(f"backend for {backend.kind!r} registered twice")
        self._backends[backend.kind] = backend

    def add(self, kind: StepKind) -> None:
        if kind.name in self._kinds:
            raise RunbookError(f"step kind {kind.name!r} registered twice")
        self._kinds[kind.name] = kind

    def kind(self, name: str) -> StepKind:
        try:
            return self._kinds[name]
        except KeyError:
            raise UnknownKind(name, self.suggest(name)) from None

    def suggest(self, name: str) -> list[str]:
        return difflib.get_close_matches(name, self._kinds, n=2, cutoff=0.6)

    def backend(self, target_kind: str) -> Backend:
        try:
            return self._backends[target_kind]
        except KeyError:
            known = ", ".join(sorted(self._backends)) or "none"
            raise RunbookError(f"no backend serves targets of kind {target_kind!r} "
                               f"(known: {known})") from None

    def has_backend(self, target_kind: str) -> bool:
        return target_kind in self._backends

    def __iter__(self) -> Iterator[StepKind]:
        return iter(sorted(self._kinds.values(), key=lambda k: k.name))

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    @classmethod
    def from_entry_points(cls, group: str = ENTRY_POINT_GROUP) -> Registry:
        """Every installed backend, plus those named in RUNBOOK_BACKENDS.

        RUNBOOK_BACKENDS lists `module:function` register functions (comma-separated), for
        backends under development that are not packaged yet.
        """
        import os
        from importlib import import_module
        from importlib.metadata import entry_points

        registry = cls()
        for entry in sorted(entry_points(group=group), key=lambda e: e.name):
            try:
                register: Callable[[Registry], None] = entry.load()
            except ImportError as exc:
                raise RunbookError(f"backend {entry.name} ({entry.value}) cannot be loaded: "
                                   f"{exc}; reinstall runbook-runner") from None
            register(registry)
        for spec in filter(None, os.environ.get("RUNBOOK_BACKENDS", "").split(",")):
            module, _, function = spec.strip().partition(":")
            try:
                register = getattr(import_module(module), function or "register")
            except (ImportError, AttributeError) as exc:
                raise RunbookError(f"RUNBOOK_BACKENDS: cannot load {spec!r}: {exc}") from None
            register(registry)
        return registry


def default_registry() -> Registry:
    """The registry of every installed backend (built once per RUNBOOK_BACKENDS value)."""
    import os

    return _registry_for(os.environ.get("RUNBOOK_BACKENDS", ""))


@lru_cache(maxsize=4)
def _registry_for(extra_backends: str) -> Registry:
    return Registry.from_entry_points()
