"""One run lifecycle for every caller: load -> plan -> start (through the gate) -> resume ->
approve. `runbook run/resume/approve` and the daemon's workers and approvals are shells over
these functions, so a run starts, resumes and takes an approval the same way from either.

What differs between callers is given, never decided here: who approves and how (a terminal
prompt and `--approve`, or nobody until an HTTP approval), the policy in force, and what to
do with a new run's id before it starts (print it; link it to its alerts).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .approval import APPROVED, Verdict, record, verdict
from .catalog import resolve
from .engine import Engine, Progress
from .errors import JournalError, UsageError
from .gate import Gate, Prompter
from .inventory import Inventory
from .journal import Approval, Journal, new_run_id
from .loader import LoadedPlaybook, load
from .plan import Plan, make_plan, provenance, replan
from .policy import Policy
from .registry import Registry
from .severity import ROUTE_KEY
from .state import RemedyState, RunState
from .vocabulary import RunStatus

WATCH_INLINE_ENV = "RUNBOOK_WATCH_INLINE"


def load_playbook(name_or_path: str, playbook_dirs: Iterable[Path],
                  registry: Registry) -> LoadedPlaybook:
    """A playbook by catalogue name or path, parsed and validated."""
    return load(resolve(name_or_path, playbook_dirs), registry)


def plan_run(loaded: LoadedPlaybook, inventory: Inventory, registry: Registry,
             targets: Mapping[str, str], params: Mapping[str, Any]) -> Plan:
    """Bind the playbook to targets and parameter values; nothing runs."""
    return make_plan(loaded, inventory, registry, targets, params)


def engine_for(registry: Registry, journal: Journal, *, approver: str, policy: Policy,
               pre_approved: frozenset[str] = frozenset(), prompter: Prompter | None = None,
               os_user: str | None = None, concurrency: int = 8,
               progress: Progress | None = None) -> Engine:
    """The engine and its gate: every remedy of every run passes this one gate."""
    gate = Gate(journal, registry, approver=approver, pre_approved=pre_approved,
                prompter=prompter, policy=policy, os_user=os_user)
    return Engine(registry, journal, gate, concurrency=concurrency, progress=progress,
                  inline_watch=inline_watch())


def inline_watch() -> float:
    """RUNBOOK_WATCH_INLINE: the longest verify window a run holds inline (default 60 s);
    a longer one is watched by schedule."""
    from .durations import parse_duration

    return parse_duration(os.environ.get(WATCH_INLINE_ENV) or 60.0)


def start(engine: Engine, plan: Plan, *, inventory_paths: Iterable[Path], policy: Policy,
          trigger: str, requested_by: str,
          on_run_id: Callable[[str], None] | None = None,
          route_severity: Mapping[str, str] | None = None) -> RunState:
    """Start a new run of `plan` and drive it as far as it goes. It records where its
    inventory came from and the policy it started under; `on_run_id` hears the new run's id
    before anything of it runs. `route_severity` (`severity.route_floor`): the severity a
    daemon route raises the run's to, if it finds anything."""
    recorded = provenance(list(inventory_paths), plan, policy.to_json())
    if route_severity:
        recorded = {**recorded, ROUTE_KEY: dict(route_severity)}
    plan = replace(plan, provenance=recorded)
    run_id = new_run_id()
    if on_run_id is not None:
        on_run_id(run_id)
    return engine.start(plan, run_id, trigger=trigger, requested_by=requested_by)


def exists(journal: Journal, run_id: str) -> bool:
    try:
        journal.get_run(run_id)
    except JournalError:
        return False
    return True


def recorded_inventory(journal: Journal, run_id: str) -> list[Path] | None:
    """The inventory paths the run was planned with; None for a run journaled before runs
    recorded them. Raises if one of them no longer exists."""
    recorded = (journal.get_run(run_id).source.get("inventory") or {}).get("paths")
    if recorded is None:
        return None
    missing = [p for p in recorded if not Path(p).exists()]
    if missing:
        raise UsageError(f"the run was planned with inventory {', '.join(recorded)}; "
                         f"{', '.join(missing)} no longer exists: pass --inventory")
    return [Path(p) for p in recorded]


def replan_run(journal: Journal, run_id: str, inventory: Inventory,
               registry: Registry) -> Plan:
    """The plan of a journaled run: the playbook text it started with, not today's file,
    bound through `inventory` (whatever resolves differently from what was approved voids
    the approval at the gate). It keeps the severity a route raised the run to, for a
    diagnosis concluded on resume."""
    source = journal.get_run(run_id).source
    plan = replan(source, inventory, registry)
    floor = source.get(ROUTE_KEY)
    return replace(plan, provenance={ROUTE_KEY: floor}) if floor else plan


def resume(engine: Engine, plan: Plan, run_id: str, *, by: str) -> RunState:
    """Carry on a journaled run (refused while a live process drives it)."""
    return engine.resume(plan, run_id, by=by)


def verify(engine: Engine, plan: Plan, run_id: str, *, by: str) -> RunState:
    """`runbook verify RUN_ID`: a person fixed it; the playbook's verify checks say whether
    it holds (and, for a long window, the run goes on MONITORING)."""
    return engine.verify(plan, run_id, by=by)


def next_look(state: RunState, now: datetime | None = None) -> float:
    """Seconds until a MONITORING run's next look: its interval, or less at the window's end."""
    assert state.watch is not None
    left = (datetime.fromisoformat(state.watch["until"]) - (now or datetime.now(UTC)))
    return max(0.0, min(float(state.watch["interval"]), left.total_seconds()))


def watch(engine: Engine, plan: Plan, run_id: str, *,
          sleep: Callable[[float], None] = time.sleep) -> RunState:
    """Watch a MONITORING run from this process until its window ends or it relapses.
    Stopping here (Ctrl-C) loses nothing: the run stays MONITORING in the journal, and the
    daemon's watcher or `runbook watch RUN_ID` carries on."""
    state = engine.journal.state(run_id)
    while state.status == RunStatus.MONITORING and state.watch is not None:
        sleep(next_look(state))
        state = engine.watch(plan, run_id)
    return state


@dataclass(frozen=True)
class Decided:
    """A recorded decision, the remedy it is about, and (for an approval) whether what is
    recorded now lets the remedy run."""

    approval: Approval
    remedy: RemedyState
    standing: Verdict | None


def decide(journal: Journal, run_id: str, remedy_id: str, *, decision: str, by: str,
           how: str, policy: Policy, fingerprint: str | None = None) -> Decided:
    """Record a person's decision on a proposed remedy through the one approval path
    (`runner.approval.record`: run status, proposal, fingerprint, policy, four-eyes), or
    raise ApprovalRefused. The run's resume is the caller's next step."""
    approval = record(journal, run_id, remedy_id, decision=decision, by=by, how=how,
                      policy=policy, fingerprint=fingerprint)
    state = journal.state(run_id)
    remedy = state.remedies[remedy_id]
    standing = None
    if decision == APPROVED:
        standing = verdict(journal, run_id, remedy_id, remedy.fingerprint,
                           requested_by=state.requested_by, policy=policy)
    return Decided(approval, remedy, standing)
