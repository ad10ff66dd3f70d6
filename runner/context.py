"""What a backend is told about the step it serves: `StepContext`.

The engine builds one per step attempt, verify check and remedy, and hands it to the
connector that opens the step's handle (`Connector.probe(target, ctx)`,
`Connector.action(target, ctx)`). It replaces what backends used to guess or read from
globals: the step's own `timeout:` (not its kind's default), the deadline it must answer
by, where the run keeps its files and where runbook keeps its state, a logger that names
the run and step, and a cancellation signal the engine sets when it gives up on the call
(a probe past its deadline) or asks an action to stop.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("runbook.step")


@dataclass(frozen=True)
class StepContext:
    run_id: str
    step: str  # the step, verify check or remedy id
    timeout: float  # seconds: the step's own `timeout:`, else its kind's default
    deadline: float  # time.monotonic() by which the step must answer
    run_dir: Path  # the run's directory (evidence, reports)
    home: Path  # runbook's home (RUNBOOK_HOME): state a backend keeps across runs
    cancelled: threading.Event = field(default_factory=threading.Event, compare=False)

    @classmethod
    def start(cls, *, run_id: str, step: str, timeout: float, run_dir: Path, home: Path,
              cancelled: threading.Event | None = None) -> StepContext:
        """A context whose deadline is `timeout` seconds from now."""
        return cls(run_id, step, timeout, time.monotonic() + timeout, run_dir, home,
                   cancelled or threading.Event())

    @classmethod
    def outside_a_run(cls, timeout: float, *, step: str = "-",
                      home: Path | None = None) -> StepContext:
        """For a handle opened by a tool or a test rather than a run."""
        from .paths import home as default_home

        base = home or default_home()
        return cls.start(run_id="-", step=step, timeout=timeout, run_dir=base / "runs" / "-",
                         home=base)

    def remaining(self) -> float:
        """Seconds left before the deadline (0 when past it)."""
        return max(0.0, self.deadline - time.monotonic())

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry `run_id` and `step`."""
        return logging.LoggerAdapter(log, {"run_id": self.run_id, "step": self.step})
