"""A backend with a bug: its target warnings raise a plain exception, as a third-party
backend's might. Load it with `RUNBOOK_BACKENDS=tests.support.brokenbackend:register`; the
command line must answer exit 5 (internal error), one line, no traceback."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from runner.context import StepContext
from runner.registry import Backend, Registry, StepKind, Target


class BrokenSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    where: str = ""


class BrokenConnector:
    def probe(self, target: Target, ctx: StepContext) -> None:
        raise NotImplementedError

    def action(self, target: Target, ctx: StepContext) -> None:
        raise NotImplementedError

    def warnings(self, target: Target) -> list[str]:
        settings: dict[str, str] = {}
        return [settings["where"]]  # the bug: a KeyError, not a RunbookError


class Nothing(BaseModel):
    model_config = ConfigDict(extra="forbid")


def register(registry: Registry) -> None:
    registry.add_backend(Backend("broken", BrokenConnector(), BrokenSettings, "a buggy backend"))
    registry.add(StepKind("broken.look", "broken", lambda handle, params: {}, Nothing, False,
                          "never runs"))
