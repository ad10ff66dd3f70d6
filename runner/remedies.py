"""Running one approved remedy: at most once, under its target's lock, never abandoned.

Before the action starts, one journal transaction checks this process still drives the
run, takes the target's lock, inserts the remedy's one attempt (a second finds it and does
not run) and journals `remedy.started`. The lock is released by the action's own thread
when the action really ends, not when runbook stops waiting for it.

An action past its deadline is `outcome_unknown`: it is asked to stop where it safely can
(its handle's `interrupt()`: a Docker rollback puts the old container back), and the
process waits for it to end, up to a grace period. If it is still running after that,
runbook says so loudly and stops waiting; the target stays locked until the action ends,
or, if the process exits first, until a later run finds the process gone. A Ctrl-C while
an action runs does the same: the action is asked to stop, its end is waited for and
journaled, and only then does the run stop (a second Ctrl-C leaves it running).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .calls import Call, describe_error
from .context import StepContext
from .errors import JournalUnavailable
from .gate import Gate, Proposal
from .inventory import Target
from .journal import AlreadyAttempted, Journal, TargetBusy
from .state import AWAITING, COMPLETED, FAILED, Event
from .vocabulary import EventKind, RemedyStatus, RunStatus

log = logging.getLogger("runbook.remedies")

GRACE_ENV = "RUNBOOK_REMEDY_GRACE"
DEFAULT_GRACE = 120.0  # seconds past its deadline that the process waits for an action

Emit = Callable[[EventKind, Mapping[str, Any]], Event]


def default_grace() -> float:
    return float(os.environ.get(GRACE_ENV) or DEFAULT_GRACE)


@dataclass
class RemedyRunner:
    journal: Journal
    gate: Gate
    emit: Emit  # journal an event and fold it into the run's state
    apply: Callable[[Event], None]  # fold in an event the journal wrote itself
    grace: float

    def run(self, proposal: Proposal, target: Target, ctx: StepContext) -> RunStatus:
        """Run an approved remedy; COMPLETED, FAILED, or AWAITING (its target is busy)."""
        run_id, remedy = proposal.run_id, proposal.remedy
        try:
            started = self.journal.start_remedy(run_id, remedy, proposal.fingerprint,
                                                target.name)
        except TargetBusy as exc:  # another run is changing this target right now
            self.emit(EventKind.REMEDY_SKIPPED, {"remedy": remedy, "status": RemedyStatus.PROPOSED,
                                                 "reason": f"{exc}; resume this run later"})
            return AWAITING
        except AlreadyAttempted as exc:
            self.emit(EventKind.REMEDY_INTERRUPTED, {
                "remedy": remedy,
                "reason": f"{exc}: its outcome is unknown, so it is not run again"})
            return FAILED
        self.apply(started)

        def work(on_handle: Callable[[Any], None]) -> dict[str, Any]:
            try:
                return self.gate.execute(proposal, target, ctx, on_handle)
            finally:
                self._release(target.name, run_id)  # the lock lives as long as the action

        timeout = ctx.timeout
        call = Call(work, timeout, name=f"remedy-{remedy}", cancelled=ctx.cancelled)
        try:
            ended = call.finished.wait(max(0.0, call.deadline - time.monotonic()))
        except KeyboardInterrupt:
            log.warning("remedy %s is running: asked it to stop, waiting for it to end before "
                        "stopping (Ctrl-C again leaves it running)", remedy)
            call.interrupt()
            call.finished.wait()
            self._finished(proposal, target, call)
            raise
        if ended:
            return self._finished(proposal, target, call)
        self._past_deadline(proposal, target, timeout, call)
        return FAILED

    def _past_deadline(self, proposal: Proposal, target: Target, timeout: float,
                       call: Call) -> None:
        """Outcome unknown: ask the action to stop, wait for its end (up to the grace
        period) and journal what became of it."""
        remedy = proposal.remedy
        call.interrupt()
        try:
            self.emit(EventKind.REMEDY_FINISHED, {
                "remedy": remedy, "status": RemedyStatus.OUTCOME_UNKNOWN,
                "duration_ms": call.elapsed_ms,
                "error": f"no answer within {timeout:g}s: asked it to stop where it safely "
                         f"can; its outcome is unknown, and {target.name} stays locked until "
                         "it ends"})
        except JournalUnavailable:
            call.finished.wait(self.grace)  # journal or not, never leave in the middle of it
            raise
        if call.finished.wait(self.grace):
            late = {"remedy": remedy, "duration_ms": call.elapsed_ms}
            if call.error is None:
                late["result"] = call.result
            else:
                late["error"] = describe_error(call.error)
            self.emit(EventKind.REMEDY_ENDED_LATE, late)
            return
        message = (f"remedy {remedy} of run {proposal.run_id} is still running "
                   f"{self.grace:g}s past its {timeout:g}s deadline; runbook stops waiting for "
                   f"it. If this process exits, {target.name} stays locked until a later run "
                   "finds this process gone")
        log.warning("%s", message)
        self.emit(EventKind.REMEDY_STILL_RUNNING, {"remedy": remedy, "reason": message})

    def _finished(self, proposal: Proposal, target: Target, call: Call) -> RunStatus:
        base = {"remedy": proposal.remedy, "duration_ms": call.elapsed_ms}
        if call.error is not None:
            self.emit(EventKind.REMEDY_FINISHED, {**base, "status": RemedyStatus.FAILED,
                                                  "error": describe_error(call.error)})
            return FAILED
        self.emit(EventKind.REMEDY_FINISHED, {**base, "status": RemedyStatus.SUCCEEDED,
                                              "result": call.result})
        self.journal.write_file(proposal.run_id, f"evidence/remedy-{proposal.remedy}.json", {
            "remedy": proposal.remedy, "kind": proposal.kind, "target": target.name,
            "args": proposal.args, "result": call.result})
        return COMPLETED

    def _release(self, target: str, run_id: str) -> None:
        try:
            self.journal.unlock_target(target, run_id)
        except JournalUnavailable as exc:  # the lock stays; broken once this process is gone
            log.error("could not release the lock on %s for run %s: %s", target, run_id, exc)
