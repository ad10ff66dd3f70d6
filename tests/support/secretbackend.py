"""A test backend (`vault`) that resolves a secret the way a real one resolves a DSN's
password, registers it, and then echoes it back in everything a backend can return: a
probe's result, a probe's error, an action's result. Tests check that the secret reaches
none of the places runbook writes or prints. Its `vault.restart` remedy records itself in
the target folder, so a test can see that it ran; `restart_kind(name)` is the same remedy
under another name (`service.restart`, in a registry without the service backend).

Load it with `RUNBOOK_BACKENDS=tests.support.secretbackend:register` or `register(registry)`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runner.context import StepContext
from runner.errors import PermanentError
from runner.redact import SECRETS
from runner.registry import Backend, Registry, StepKind, Target


class VaultSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str = Field(description="a folder the backend keeps its state in")
    password_env: str = Field(description="env var holding the password")


class Handle:
    def __init__(self, root: Path, password: str) -> None:
        self.root, self.password = root, password


class VaultConnector:
    @contextmanager
    def _open(self, target: Target) -> Iterator[Handle]:
        settings = target.settings
        assert isinstance(settings, VaultSettings)
        password = os.environ.get(settings.password_env, "")
        SECRETS.register(password)  # as diagnostics.postgres does with a DSN's password
        root = Path(settings.path)
        root.mkdir(parents=True, exist_ok=True)
        yield Handle(root, password)

    def probe(self, target: Target, ctx: StepContext) -> Any:
        return self._open(target)

    def action(self, target: Target, ctx: StepContext) -> Any:
        return self._open(target)


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Items(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[Any] = Field(default_factory=list)


class Echo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    say: str = ""


def echo(h: Handle, p: Echo) -> dict[str, Any]:
    """What a careless server hands back: the password in log lines, nested data, keys."""
    return {"ok": True, "said": p.say,
            "log": f"FATAL: login {h.password} refused for user app",
            "lines": [f"retrying with {h.password}", {"detail": f"({h.password})"}],
            h.password: "as a key"}


def fail(h: Handle, p: NoParams) -> dict[str, Any]:
    raise PermanentError(f"server said: wrong password {h.password}")


def restart(h: Handle, p: Items) -> dict[str, Any]:
    with open(h.root / "restarts.jsonl", "a", encoding="utf-8") as out:
        out.write(json.dumps({"items": p.items}) + "\n")
    return {"restarted": len(p.items), "said": f"restarted with {h.password}"}


def register(registry: Registry) -> None:
    registry.add_backend(Backend("vault", VaultConnector(), VaultSettings, "test: echoes secrets"))
    registry.add(StepKind("vault.echo", "vault", echo, Echo, False, "echo the password"))
    registry.add(StepKind("vault.fail", "vault", fail, NoParams, False, "fail, with it"))
    registry.add(restart_kind("vault.restart"))


def restart_kind(name: str) -> StepKind:
    return StepKind(name, "vault", restart, Items, True, "record a restart",
                    explain=lambda p: f"restart {len(p.items)} item(s)")
