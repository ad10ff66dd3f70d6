"""Install what you use: which optional client library each part needs, and the one pip line
that installs it.

`pip install runbook-runner` is the core: the engine, PostgreSQL and HTTP. The other
backends' clients are extras of pyproject.toml, of the same names as here (`[docker]`,
`[kubernetes]`, `[ssh]`, `[ansible]`, `[daemon]`; `[all]` for every one). A connector says
which extras a target needs with an optional `extras(target) -> list[str]`; `plan`, `run`,
`resume` and `approve` refuse a plan whose target needs one that is not installed, and
`validate` warns, each saying the pip line; a client's ImportError at run time says the same
(`client_of`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

DISTRIBUTION = "runbook-runner"  # pyproject.toml's [project] name


@dataclass(frozen=True)
class Extra:
    name: str  # as pyproject.toml's [project.optional-dependencies] names it
    client: str  # what it installs, for a person
    modules: tuple[str, ...]  # the top-level modules it provides

    @property
    def pip(self) -> str:
        return f"pip install '{DISTRIBUTION}[{self.name}]'"


EXTRAS = {extra.name: extra for extra in (
    Extra("docker", "the Docker SDK (docker)", ("docker",)),
    Extra("kubernetes", "the Kubernetes client (kubernetes)", ("kubernetes",)),
    Extra("ssh", "paramiko", ("paramiko",)),
    Extra("ansible", "Ansible (ansible-runner, ansible-core)", ("ansible_runner", "ansible")),
    Extra("daemon", "the daemon's server (starlette, uvicorn, prometheus-client)",
          ("starlette", "uvicorn", "prometheus_client")),
)}


class MissingExtra(UsageError):
    """What `who` needs is not installed: the message ends with the pip line."""

    def __init__(self, extra: Extra, who: str, module: str, target: Any = None) -> None:
        self.extra, self.who, self.module, self.target = extra, who, module, target
        super().__init__(f"{who} {self.need}")

    @property
    def need(self) -> str:
        return (f"needs {self.extra.client}, which is not installed (no module "
                f"{self.module!r}): {self.extra.pip}")


def missing_module(extra: str, modules: Iterable[str] | None = None) -> str | None:
    """The first of the extra's modules (or of `modules`, a part of them) that cannot be
    found; None when all are there. Finds, does not import: cheap, and no side effects."""
    for module in EXTRAS[extra].modules if modules is None else modules:
        if importlib.util.find_spec(module) is None:
            return module
    return None


def require(extra: str, who: str, modules: Iterable[str] | None = None) -> None:
    """MissingExtra unless the extra's modules (or `modules` of them) are installed."""
    module = missing_module(extra, modules)
    if module is not None:
        raise MissingExtra(EXTRAS[extra], who, module)


@contextmanager
def client_of(extra: str, who: str) -> Iterator[None]:
    """An ImportError of one of the extra's modules, inside, becomes MissingExtra."""
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if top not in EXTRAS[extra].modules:
            raise
        raise MissingExtra(EXTRAS[extra], who, top) from None


def needed_by(registry: Any, target: Any) -> list[str]:
    """The extras a target's connector says it needs (none when it does not say)."""
    say = getattr(registry.backend(target.kind).connector, "extras", None)
    return list(say(target)) if callable(say) else []


def missing_for(registry: Any, targets: Iterable[Any]) -> list[MissingExtra]:
    """Each extra the targets need and that is not installed, once, naming the first
    target (in the order given) that needs it."""
    found: dict[str, MissingExtra] = {}
    for target in targets:
        for name in needed_by(registry, target):
            module = missing_module(name)
            if module is not None and name not in found:
                found[name] = MissingExtra(EXTRAS[name], f"target {target.name} ({target.kind})",
                                           module, target)
    return list(found.values())


def require_for(registry: Any, targets: Iterable[Any]) -> None:
    """The first MissingExtra of `missing_for`, raised: a plan that cannot run says so."""
    for missing in missing_for(registry, targets):
        raise missing
