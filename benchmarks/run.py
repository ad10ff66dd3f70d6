"""Measured figures for benchmarks/README.md. Not tests: the machine is noisy, so each
figure is a ratio or a per-unit cost measured in one run, printed with its method.

    .venv/bin/python -m benchmarks.run [engine] [startup] [diagnostics]

`diagnostics` needs the demo lab (scripts/demo starts it).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")


def engine_overhead(steps: int = 1000) -> None:
    """Per-step cost of the engine itself: 1,000 no-op steps, journal and all."""
    from tests.enginekit import Kit

    with tempfile.TemporaryDirectory() as tmp:
        kit = Kit(Path(tmp))
        body = "steps:\n" + "".join(f"  - {{id: s{i}, run: mem.sleep}}\n" for i in range(steps))
        plan = kit.plan(body)
        for concurrency in (1, 8):
            engine = kit.engine(concurrency=concurrency)
            started = time.perf_counter()
            state = engine.start(plan, f"bench-{concurrency}", trigger="bench", requested_by="b")
            elapsed = time.perf_counter() - started
            assert all(s.status == "ok" for s in state.steps.values())
            print(f"engine: {steps} no-op steps, concurrency {concurrency}: "
                  f"{elapsed * 1000 / steps:.2f} ms/step ({elapsed:.2f} s total, "
                  f"{2 * steps} journal events + {steps} evidence files)")


def _median_runtime(argv: list[str], runs: int) -> float:
    times = []
    env = {**os.environ, "RUNBOOK_HOME": tempfile.mkdtemp()}
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, cwd=ROOT, env=env)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def startup(runs: int = 21) -> None:
    """`runbook list` cold start against `python -c pass`, medians of alternating runs."""
    base = _median_runtime([PY, "-c", "pass"], runs)
    listing = _median_runtime([str(ROOT / ".venv/bin/runbook"), "list"], runs)
    helptext = _median_runtime([str(ROOT / ".venv/bin/runbook"), "--help"], runs)
    eager = _median_runtime([PY, "-c", "import runner.cli, pydantic, jinja2.sandbox, psycopg, "
                             "docker, testcontainers.core.container"], runs)
    print(f"startup: python -c pass {base * 1000:.0f} ms (median of {runs})")
    print(f"startup: runbook list {listing * 1000:.0f} ms = {listing / base:.1f}x python "
          f"(goal <= 8x)")
    print(f"startup: runbook --help {helptext * 1000:.0f} ms = {helptext / base:.1f}x python")
    print(f"startup: importing the clients eagerly would cost {eager * 1000:.0f} ms = "
          f"{eager / base:.1f}x python")


def diagnostics(runs: int = 5) -> None:
    """db-pool-exhausted against the lab: wall time of its diagnosis run concurrently (the
    default) against one step at a time, which is the sum of its probes' times."""
    from tests.lab.faults import Faults, prepare
    from tests.lab.postgres import ensure_demo_postgres

    db = prepare(ensure_demo_postgres(max_connections=25))
    env = {**os.environ, "RUNBOOK_LAB_DSN": db.ro, "RUNBOOK_LAB_OPS_DSN": db.ops,
           "RUNBOOK_HOME": tempfile.mkdtemp()}

    def diagnosis_ms(concurrency: int) -> float:
        out = subprocess.run([str(ROOT / ".venv/bin/runbook"), "run", "db-pool-exhausted",
                              "--target", "db=lab-db", "--no-input", "--format", "json",
                              "--concurrency", str(concurrency)],
                             capture_output=True, text=True, cwd=ROOT, env=env)
        run_id = json.loads(out.stdout)["run_id"]
        events = Path(env["RUNBOOK_HOME"]) / "runs" / run_id / "events.jsonl"
        steps = [json.loads(line) for line in events.read_text().splitlines()
                 if '"step.' in line]
        first, last = (datetime.fromisoformat(steps[i]["at"]) for i in (0, -1))
        return (last - first).total_seconds() * 1000

    with Faults(db) as faults:
        faults.idle_in_transaction(10)
        pairs = [(diagnosis_ms(8), diagnosis_ms(1)) for _ in range(runs)]
    concurrent = statistics.median(p[0] for p in pairs)
    sequential = statistics.median(p[1] for p in pairs)
    print(f"diagnostics: db-pool-exhausted, 5 probes: concurrent {concurrent:.0f} ms, one at a "
          f"time (= sum of probes) {sequential:.0f} ms, ratio {concurrent / sequential:.2f} "
          f"(medians of {runs}; at most 2 sessions per database)")


if __name__ == "__main__":
    chosen = sys.argv[1:] or ["engine", "startup", "diagnostics"]
    for name in chosen:
        {"engine": engine_overhead, "startup": startup, "diagnostics": diagnostics}[name]()
