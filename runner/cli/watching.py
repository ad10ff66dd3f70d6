"""`runbook watch` and `runbook verify`: the watch window from the command line.

A verify window longer than the engine holds inline leaves the run MONITORING in the
journal. `run`, `resume` and `verify` then watch it in the foreground (unless --no-watch);
Ctrl-C stops watching, not the watch: the daemon's watcher or `runbook watch RUN_ID` carries
on from the journal.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import comms, runs, sources

if TYPE_CHECKING:
    from ..engine import Engine
    from ..plan import Plan
    from ..state import RunState


def cmd_watch(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..vocabulary import RunStatus

    journal = sources.journal()
    state = journal.state(args.run_id)
    if state.status != RunStatus.MONITORING:
        raise UsageError(f"run {args.run_id} is {state.status}, not monitoring; after a fix "
                         f"made by hand, `runbook verify {args.run_id}` checks it")
    return _with_engine(args, lambda engine, plan: follow(args, engine, plan, state))


def cmd_verify(args: argparse.Namespace) -> int:
    from .. import lifecycle

    return _with_engine(args, lambda engine, plan: follow(
        args, engine, plan, lifecycle.verify(engine, plan, args.run_id, by=sources.who(args))))


def follow(args: argparse.Namespace, engine: Engine, plan: Plan, state: RunState) -> RunState:
    """Watch a MONITORING run here until its window ends, unless --no-watch."""
    from .. import lifecycle
    from ..vocabulary import RunStatus

    if state.status != RunStatus.MONITORING or state.watch is None:
        return state
    watch, run_id = state.watch, state.run_id
    if getattr(args, "no_watch", False):
        print(f"run {run_id}: monitoring until {watch['until']}; `runbook watch {run_id}` "
              "watches it (the daemon's watcher does too)", file=sys.stderr)
        return state
    print(f"run {run_id}: monitoring {', '.join(watch['checks'])} until {watch['until']}, "
          f"every {watch['interval']:g}s (Ctrl-C stops watching here; `runbook watch "
          f"{run_id}` carries on)", file=sys.stderr)
    try:
        return lifecycle.watch(engine, plan, run_id)
    except KeyboardInterrupt:
        print(f"\nrun {run_id}: still monitoring; `runbook watch {run_id}` carries on",
              file=sys.stderr)
        return engine.journal.state(run_id)


def _with_engine(args: argparse.Namespace, act: Callable[[Engine, Plan], RunState]) -> int:
    """The run's plan (its recorded inventory unless --inventory) and an engine, as
    `resume` builds them; then `act`, and the run's report."""
    from .. import lifecycle

    registry = sources.registry_of()
    journal = sources.journal()
    paths = (sources.inventory_paths_of(args) if args.inventory
             else runs.recorded_inventory(journal, args.run_id))
    plan = lifecycle.replan_run(journal, args.run_id, sources.inventory_of(args, registry, paths),
                                registry)
    announcer = comms.announcer_of(args, journal, paths)
    engine = runs.engine_for(args, registry, journal, sources.policy_of(args, paths), announcer)
    try:
        state = act(engine, plan)
    finally:
        comms.close(announcer)
    return runs.finish(args, state)
