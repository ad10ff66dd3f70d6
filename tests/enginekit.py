"""Build an engine in-process around the `mem` test backend."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import inventory, loader
from runner.engine import Engine
from runner.gate import Gate, Prompter
from runner.journal import Journal, new_run_id
from runner.plan import Plan, make_plan
from runner.registry import Registry
from runner.state import RunState
from tests.support import membackend


def mem_registry() -> Registry:
    registry = Registry()
    membackend.register(registry)
    return registry


@dataclass
class Kit:
    root: Path
    registry: Registry = field(default_factory=mem_registry)

    def __post_init__(self) -> None:
        self.box = self.root / "box"
        self.box.mkdir(parents=True, exist_ok=True)
        inv = self.root / "inventory.yaml"
        inv.write_text(f"targets:\n  box:\n    kind: mem\n    path: {self.box}\n")
        self.inventory = inventory.load([inv], self.registry)
        self.journal = Journal(self.root / "home")

    def plan(self, body: str, params: dict[str, Any] | None = None,
             optional_role: tuple[str, str] | None = None) -> Plan:
        roles = "  box: {kind: mem}\n"
        if optional_role:
            roles += f"  {optional_role[0]}: {{kind: {optional_role[1]}, optional: true}}\n"
        text = "name: pb\nsummary: test\ntargets:\n" + roles + textwrap.dedent(body)
        loaded = loader.parse(text, "pb.yaml", self.registry)
        return make_plan(loaded, self.inventory, self.registry, {}, params or {})

    def engine(self, *, approve: frozenset[str] = frozenset(), prompter: Prompter | None = None,
               concurrency: int = 8, inline_watch: float = 60.0) -> Engine:
        gate = Gate(self.journal, self.registry, approver="tester", pre_approved=approve,
                    prompter=prompter)
        return Engine(self.registry, self.journal, gate, concurrency=concurrency,
                      inline_watch=inline_watch)

    def run(self, body: str, **options: Any) -> RunState:
        plan = self.plan(body, options.pop("params", None))
        return self.engine(**options).start(plan, new_run_id(), trigger="test",
                                            requested_by="tester")

    def actions(self) -> list[dict[str, Any]]:
        import json

        log = self.box / "actions.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
