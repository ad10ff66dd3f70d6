"""An in-process backend (`mem`) for testing the engine, gate and journal themselves.

It stands in for no real system: its targets are folders, its probes sleep, echo, fail or
wait for a file, and its one action appends to a file, so tests can count executions and
observe concurrency. Load it with `RUNBOOK_BACKENDS=tests.support.membackend:register`
or `register(registry)`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runner.context import StepContext
from runner.errors import PermanentError, TemporaryError
from runner.registry import Backend, Registry, StepKind, Target


class MemSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str = Field(description="a folder the backend keeps its state in")


class Handle:
    def __init__(self, root: Path, writable: bool, context: StepContext) -> None:
        self.root, self.writable = root, writable
        self.context = context  # what the engine told the connector about the step
        self.timeout = context.timeout
        self.cancelled = threading.Event()
        self.interrupted = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()

    def interrupt(self) -> None:
        self.interrupted.set()

    def log(self, name: str, record: dict[str, Any]) -> None:
        with open(self.root / name, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")


_live = 0
_peak = 0
_lock = threading.Lock()


def reset_peak() -> int:
    global _peak
    with _lock:
        peak, _peak = _peak, 0
    return peak


class MemConnector:
    @contextmanager
    def _open(self, target: Target, writable: bool, ctx: StepContext) -> Iterator[Handle]:
        global _live, _peak
        settings = target.settings
        assert isinstance(settings, MemSettings)
        root = Path(settings.path)
        root.mkdir(parents=True, exist_ok=True)
        with _lock:
            _live += 1
            _peak = max(_peak, _live)
        try:
            yield Handle(root, writable, ctx)
        finally:
            with _lock:
                _live -= 1

    def probe(self, target: Target, ctx: StepContext) -> Any:
        return self._open(target, writable=False, ctx=ctx)

    def identity(self, target: Target, timeout: float) -> dict[str, str]:
        """The folder, and what its `instance` file says (tests swap what a name means)."""
        settings = target.settings
        assert isinstance(settings, MemSettings)
        instance = Path(settings.path) / "instance"
        return {"path": str(Path(settings.path).resolve()),
                "instance": instance.read_text() if instance.exists() else ""}

    def action(self, target: Target, ctx: StepContext) -> Any:
        return self._open(target, writable=True, ctx=ctx)


class Sleep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = 0.0
    value: Any = None
    pad: int = Field(0, description="add this many bytes of padding to the result")


class Fail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temporary: bool = False
    times: int = Field(1_000_000, description="fail this many times, then succeed")
    key: str = "fail"
    delay: float | None = Field(None, description="ask the engine to retry after this long")


class WaitFor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str
    value: Any = None


class Act(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[Any] = Field(default_factory=list)
    wait_for: str | None = None
    undo_on_interrupt: bool = Field(False, description="asked to stop while waiting: undo")


def sleep(h: Handle, p: Sleep) -> dict[str, Any]:
    seen = {"run_id": h.context.run_id, "step": h.context.step, "timeout": h.context.timeout,
            "run_dir": str(h.context.run_dir), "remaining": h.context.remaining()}
    deadline = time.monotonic() + p.seconds
    while time.monotonic() < deadline:
        if h.cancelled.wait(min(0.01, max(0.0, deadline - time.monotonic()))):
            h.log("cancelled.jsonl", {"at": time.time(),
                                      "context_cancelled": h.context.cancelled.is_set()})
            raise TemporaryError("cancelled")
    lines = "".join(f"padding line {i:07d}\n" for i in range(p.pad // 21 + 1))
    padding = {"pad": lines[:p.pad]} if p.pad else {}
    return {"ok": True, "value": p.value, "slept": p.seconds, "timeout": h.timeout,
            "context": seen, **padding}


def fail(h: Handle, p: Fail) -> dict[str, Any]:
    counter = h.root / f"{p.key}.count"
    n = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(n + 1))
    if n < p.times:
        if p.temporary:
            raise TemporaryError(f"failure number {n + 1}", delay=p.delay)
        raise PermanentError(f"failure number {n + 1}")
    return {"ok": True, "attempts": n + 1}


def wait_for(h: Handle, p: WaitFor) -> dict[str, Any]:
    while not (h.root / p.file).exists():
        if h.cancelled.wait(0.05):
            raise TemporaryError("cancelled")
    return {"ok": True, "value": p.value}


def act(h: Handle, p: Act) -> dict[str, Any]:
    if not h.writable:
        raise PermanentError("act needs a writable handle")
    h.log("actions.jsonl", {"items": p.items, "phase": "start"})
    if p.wait_for:
        while not (h.root / p.wait_for).exists():
            if p.undo_on_interrupt and h.interrupted.is_set():
                h.log("actions.jsonl", {"items": p.items, "phase": "undone"})
                return {"done": 0, "undone": True}
            time.sleep(0.05)
    h.log("actions.jsonl", {"items": p.items, "phase": "end"})
    return {"done": len(p.items)}


class Exists(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str


def exists(h: Handle, p: Exists) -> dict[str, Any]:
    return {"ok": (h.root / p.file).exists()}


def register(registry: Registry) -> None:
    registry.add_backend(Backend("mem", MemConnector(), MemSettings, "in-process test backend"))
    registry.add(StepKind("mem.sleep", "mem", sleep, Sleep, False, "sleep, then echo value"))
    registry.add(StepKind("mem.fail", "mem", fail, Fail, False, "fail (temporarily or not)"))
    registry.add(StepKind("mem.exists", "mem", exists, Exists, False,
                          "ok while a file exists in the target folder"))
    registry.add(StepKind("mem.wait_for", "mem", wait_for, WaitFor, False,
                          "wait until a file exists in the target folder", timeout=120))
    registry.add(StepKind("mem.act", "mem", act, Act, True, "record an action",
                          explain=lambda p: f"act on {len(p.items)} item(s)", timeout=120))
