"""The engine: diagnose concurrently, conclude, remedy through the gate, verify.

Every state change is a journal event, appended before the thing happens and after it
ends; the run's state is the fold of those events (`runner.state`), which is also how a
run is resumed. Read-only steps run on worker threads, at most `concurrency` at once, each
with a deadline (`runner.calls`). Mutating steps run only through `Gate.execute`, at most
once each, under their target's lock (`runner.remedies`).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from . import expressions, severity
from .calls import Call, describe_error
from .context import StepContext
from .errors import JournalUnavailable, NotApproved, StepError, StepTimeout
from .gate import APPROVED, DECLINED, Gate, Proposal
from .inventory import Target
from .journal import Journal
from .model import Step
from .options import refuse_templated_options
from .plan import Plan
from .redact import SECRETS
from .registry import Registry, StepKind
from .remedies import RemedyRunner, default_grace
from .state import AWAITING, COMPLETED, FAILED, RUNNING, Event, RunState, StepState
from .validate import step_dependencies
from .vocabulary import (
    REMEDY_BROKEN,
    REMEDY_SETTLED,
    STEP_DONE,
    STEP_NOT_CHECKED,
    EventKind,
    FindingStatus,
    RemedyStatus,
    RunStatus,
    StepStatus,
    VerifyStatus,
)

DONE = STEP_DONE
SETTLED_REMEDY = REMEDY_SETTLED
# A remedy that ended so: the run fails and the remedy is never run again by itself.
BROKEN_REMEDY = REMEDY_BROKEN
Progress = Callable[[Event], None]
MAX_RETRY_DELAY = 60.0  # a backend's own retry delay, capped: a run does not stall on it


@dataclass
class _Attempt:
    """One try of one read-only step."""

    step: Step
    kind: StepKind
    target: Target
    params: Any
    timeout: float
    number: int = 1
    delay: float | None = None  # before this try: what the last one's error asked for
    call: Call | None = None


class Engine:
    def __init__(self, registry: Registry, journal: Journal, gate: Gate, *,
                 concurrency: int = 8, progress: Progress | None = None,
                 remedy_grace: float | None = None, inline_watch: float = 60.0) -> None:
        self.registry, self.journal, self.gate = registry, journal, gate
        # A verify window up to this long is held in the run; a longer one is watched by
        # schedule (`watch`), so that nothing holds a worker for fifteen minutes.
        self.inline_watch = inline_watch
        self.concurrency = max(1, concurrency)
        self.progress = progress
        # How long past a remedy's deadline the run waits for the action to end.
        self.remedy_grace = default_grace() if remedy_grace is None else remedy_grace

    # Entry points

    def start(self, plan: Plan, run_id: str, *, trigger: str, requested_by: str) -> RunState:
        book = plan.playbook
        self.journal.create_run(run_id, book.name, book.severity, {
            "playbook_path": plan.loaded.path, "playbook_text": plan.loaded.text,
            "targets": plan.bindings(), "params": plan.params, **plan.provenance})
        state = RunState(run_id)
        self._emit(state, EventKind.RUN_STARTED, {
            "status": RUNNING, "playbook": book.name, "summary": book.summary,
            "severity": book.severity, "trigger": trigger, "requested_by": requested_by,
            "targets": {r: {"name": t.name, "kind": t.kind} for r, t in plan.targets.items()},
            "params": plan.params})
        return self._drive(plan, state)

    def resume(self, plan: Plan, run_id: str, *, by: str) -> RunState:
        """Carry on a run: finish diagnosis, then the remedies not yet settled."""
        resumed = self.journal.claim(run_id, by)  # refused while a live process drives it
        state = self.journal.state(run_id)
        if self.progress is not None:
            self.progress(resumed)
        return self._drive(plan, state)

    def _drive(self, plan: Plan, state: RunState) -> RunState:
        # The secrets this run resolves mask this run's data only (not other runs').
        with SECRETS.scope():
            return self._drive_in_scope(plan, state)

    def _drive_in_scope(self, plan: Plan, state: RunState) -> RunState:
        try:
            self._diagnose(plan, state)
            if not any(e.type == EventKind.FINDING for e in state.timeline):
                self._conclude(plan, state)
            outcome = self._remedy(plan, state)
            if outcome != FAILED and self._verify_due(state):
                verified = self._verify(plan, state)
                # A remedy still awaiting approval keeps the run open, whatever verify says.
                outcome = AWAITING if outcome == AWAITING else verified
            elif outcome == COMPLETED and state.watch is not None:
                outcome = RunStatus.MONITORING  # resumed while its watch goes on
        except JournalUnavailable as exc:  # nothing more can be journaled: stop here
            raise JournalUnavailable(f"{exc}; run {state.run_id} stopped where the journal "
                                     f"shows it: `runbook resume {state.run_id}` once it is "
                                     "writable") from None
        except BaseException as exc:  # Ctrl-C included: say why and leave it resumable
            self._emit(state, EventKind.RUN_FINISHED, {"status": FAILED,
                                                       "error": describe_error(exc)})
            self._write_outputs(state)
            raise
        self._emit(state, EventKind.RUN_FINISHED, {"status": outcome})
        self._write_outputs(state)
        return state

    # Diagnosis

    def _prepare_backends(self, plan: Plan) -> None:
        for kind in {target.kind for target in plan.targets.values()}:
            prepare = getattr(self.registry.backend(kind).connector, "prepare", None)
            if callable(prepare):
                prepare()

    def _diagnose(self, plan: Plan, state: RunState) -> None:
        self._prepare_backends(plan)
        todo = {s.id: s for s in plan.playbook.steps
                if s.id not in state.steps or state.steps[s.id].status not in DONE}
        deps = {s.id: step_dependencies(s) for s in plan.playbook.steps}
        finished: queue.Queue[_Attempt] = queue.Queue()
        running: list[_Attempt] = []
        delayed: list[tuple[float, _Attempt]] = []  # retries waiting out their back-off

        def busy(step_id: str) -> bool:
            return (step_id in todo or any(a.step.id == step_id for a in running)
                    or any(a.step.id == step_id for _, a in delayed))

        while todo or running or delayed:
            for ready_at, attempt in sorted(delayed, key=lambda d: d[0]):
                if ready_at <= time.monotonic() and len(running) < self.concurrency:
                    delayed.remove((ready_at, attempt))
                    running.append(self._launch(state, attempt, finished))
            for step_id in list(todo):
                if len(running) >= self.concurrency:
                    break
                if not any(busy(d) for d in deps[step_id]):
                    ready = self._prepare(plan, state, todo.pop(step_id), deps[step_id])
                    if ready is not None:
                        running.append(self._launch(state, ready, finished))
            if not running and not delayed:
                continue  # everything left was skipped or became ready
            wake = min([a.call.deadline for a in running if a.call] + [t for t, _ in delayed])
            try:
                done = [finished.get(timeout=max(0.0, wake - time.monotonic()))]
            except queue.Empty:
                done = []
            for attempt in running:
                call = attempt.call
                if call and attempt not in done and call.deadline <= time.monotonic():
                    call.expire()
                    done.append(attempt)
            for attempt in done:
                if attempt in running:
                    running.remove(attempt)
                    retry = self._settle(state, attempt)
                    if retry is not None:
                        wait = (_backoff(retry.number) if retry.delay is None
                                else min(retry.delay, MAX_RETRY_DELAY))
                        delayed.append((time.monotonic() + wait, retry))

    def _prepare(self, plan: Plan, state: RunState, step: Step, deps: set[str]) -> _Attempt | None:
        kind = self.registry.kind(step.run)
        target = plan.target_for(step.target, kind)
        base = {"step": step.id, "kind": kind.name, "target": target.name if target else "-"}
        failed = sorted(d for d in deps if state.steps[d].status not in
                        {StepStatus.OK, StepStatus.SKIPPED})
        # A skipped step's fields read as none in `when`; what `needs` it or takes arguments
        # from it is skipped too.
        inputs = set(step.needs) | {name for space, name in
                                    expressions.template_references(step.with_)
                                    if space == "steps"}
        skipped = sorted(d for d in deps & inputs if state.steps[d].status == StepStatus.SKIPPED)
        context = _context(plan, state)
        try:
            reason = None
            if target is None:
                reason = f"no target for the optional role {plan.role_for(step.target, kind)}"
            elif failed:
                reason = f"needs {', '.join(failed)}, which did not succeed"
            elif skipped:
                reason = f"needs {', '.join(skipped)}, which was skipped"
            elif step.when and not expressions.evaluate(step.when, context):
                reason = f"condition is false: {step.when}"
            if reason:
                # `blocked_by`: it could have found something, had what it needs succeeded.
                self._emit(state, EventKind.STEP_FINISHED, {
                    **base, "status": StepStatus.SKIPPED, "error": reason,
                    **({"blocked_by": failed} if failed and target is not None else {})})
                return None
            rendered = expressions.render(step.with_, context)
            refuse_templated_options(step.with_, rendered, allowed=step.allow_options)
            params = kind.params.model_validate(rendered)
        except (expressions.ExpressionError, ValidationError) as exc:
            self._emit(state, EventKind.STEP_FINISHED, {**base, "status": StepStatus.FAILED,
                                                        "error": f"cannot run: {_short(exc)}"})
            return None
        assert target is not None
        return _Attempt(step, kind, target, params, step.timeout or kind.timeout)

    def _launch(self, state: RunState, attempt: _Attempt,
                finished: queue.Queue[_Attempt]) -> _Attempt:
        kind, target, params = attempt.kind, attempt.target, attempt.params
        self._emit(state, EventKind.STEP_STARTED, {"step": attempt.step.id, "kind": kind.name,
                                           "target": target.name, "attempt": attempt.number})
        ctx = self._step_context(state, attempt.step.id, attempt.timeout)
        attempt.call = Call(lambda on_handle: self._probe(kind, target, params, on_handle, ctx),
                            attempt.timeout, on_done=lambda _: finished.put(attempt),
                            name=f"step-{attempt.step.id}", cancelled=ctx.cancelled)
        return attempt

    def _step_context(self, state: RunState, step: str, timeout: float) -> StepContext:
        return StepContext.start(run_id=state.run_id, step=step, timeout=timeout,
                                 run_dir=self.journal.run_dir(state.run_id),
                                 home=self.journal.home)

    def _probe(self, kind: StepKind, target: Target, params: Any,
               on_handle: Callable[[Any], None], ctx: StepContext) -> dict[str, Any]:
        """The only way a step or check reaches a backend: through a read-only handle."""
        if kind.mutating:  # validation forbids this; refuse it here regardless
            raise NotApproved(f"{kind.name} is mutating: it runs only as an approved remedy")
        with self.registry.backend(kind.target_kind).connector.probe(target, ctx) as h:
            on_handle(h)
            return kind.func(h, params)

    def _settle(self, state: RunState, attempt: _Attempt) -> _Attempt | None:
        """Journal an attempt's outcome; return the next attempt when it should retry."""
        assert attempt.call is not None
        call, step = attempt.call, attempt.step
        base = {"step": step.id, "kind": attempt.kind.name, "target": attempt.target.name,
                "duration_ms": call.elapsed_ms, "attempts": attempt.number}
        outcome = call.outcome
        if outcome.error is None:
            self._emit(state, EventKind.STEP_FINISHED, {**base, "status": StepStatus.OK,
                                                        "result": outcome.result})
            self.journal.write_file(state.run_id, f"evidence/{step.id}.json", {
                **base, "result": outcome.result})
            return None
        if outcome.temporary and attempt.number <= step.retries:
            self._emit(state, EventKind.STEP_RETRY, {**base,
                                                     "error": describe_error(outcome.error)})
            return _Attempt(step, attempt.kind, attempt.target, attempt.params,
                            attempt.timeout, attempt.number + 1, delay=outcome.retry_delay)
        status = StepStatus.TIMEOUT if isinstance(outcome.error, StepTimeout) else StepStatus.FAILED
        self._emit(state, EventKind.STEP_FINISHED, {**base, "status": status,
                                                    "error": describe_error(outcome.error)})
        return None

    def _conclude(self, plan: Plan, state: RunState) -> None:
        context = _context(plan, state)
        for finding in plan.playbook.findings:
            base = {"finding": finding.id, "hint": finding.hint,
                    "severity": finding.severity or plan.playbook.severity}
            needed = {name for space, name in expressions.references(finding.when, template=False)
                      if space == "steps"}
            missing = sorted(n for n in needed if n not in context["steps"])
            if missing:
                self._emit(state, EventKind.FINDING, {
                    **base, "status": FindingStatus.UNKNOWN,
                    "reason": "; ".join(_did_not_succeed(state, n) for n in missing)})
                continue
            try:
                fired = bool(expressions.evaluate(finding.when, context))
                message = str(expressions.render(finding.say, context)) if fired else None
            except expressions.ExpressionError as exc:
                # A skipped step had nothing to check: a condition on its none is false.
                skipped = sorted(n for n in needed if isinstance(context["steps"].get(n), NotRun)
                                 and not state.steps[n].blocked_by)
                if isinstance(exc, expressions.NoneOperand) and skipped:
                    self._emit(state, EventKind.FINDING, {
                        **base, "status": FindingStatus.CLEAR,
                        "reason": f"reads {', '.join(skipped)}, which was skipped: false"})
                    continue
                self._emit(state, EventKind.FINDING, {**base, "status": FindingStatus.UNKNOWN,
                                              "reason": f"could not evaluate: {exc}"})
                continue
            status = FindingStatus.FIRED if fired else FindingStatus.CLEAR
            self._emit(state, EventKind.FINDING, {**base, "status": status,
                                          "message": message})
        self._emit(state, EventKind.SEVERITY, severity.assess(plan, state, _context(plan, state)))

    # Remedies

    def _proposal(self, plan: Plan, state: RunState, index: int) -> Proposal:
        """Resolve a remedy against the journaled diagnosis (raises when it cannot)."""
        remedy = plan.playbook.remedies[index]
        kind = self.registry.kind(remedy.run)
        target = plan.target_for(remedy.target, kind)
        assert target is not None
        rendered = expressions.render(remedy.with_, _context(plan, state))
        refuse_templated_options(remedy.with_, rendered, allowed=remedy.allow_options)
        shown = state.remedies.get(remedy.id)
        if shown is not None and all(shown.args.get(k) == v for k, v in rendered.items()):
            # Resumed: keep what was pinned when it was proposed (an image tag's id then),
            # never what a mutable name means now.
            rendered = {**shown.args, **rendered}
        params = kind.params.model_validate(rendered)
        params, identity = self.gate.resolve(kind, target, params, self._step_context(
            state, remedy.id, min(kind.timeout, 30.0)))
        explain = kind.explain(params) if kind.explain else ""
        return Proposal(state.run_id, remedy.id, kind.name, target.name,
                        params.model_dump(mode="json"), explain, identity)

    def _remedy(self, plan: Plan, state: RunState) -> RunStatus:
        """Propose every applicable remedy, then run them in order through the gate."""
        context = _context(plan, state)
        for index, remedy in enumerate(plan.playbook.remedies):
            if remedy.id in state.remedies:
                continue  # proposed or settled before a resume
            kind = self.registry.kind(remedy.run)
            bound = plan.target_for(remedy.target, kind)
            base = {"remedy": remedy.id, "kind": remedy.run, "target": bound.name if bound else "-"}
            if bound is None:
                self._emit(state, EventKind.REMEDY_SKIPPED, {
                    **base, "status": RemedyStatus.NOT_NEEDED,
                    "reason": "no target for the optional "
                    f"role {plan.role_for(remedy.target, kind)}"})
                continue
            try:
                if remedy.when and not expressions.evaluate(remedy.when, context):
                    self._emit(state, EventKind.REMEDY_SKIPPED, {
                        **base, "status": RemedyStatus.NOT_NEEDED,
                        "reason": f"condition is false: {remedy.when}"})
                    continue
                proposal = self._proposal(plan, state, index)
            except (expressions.ExpressionError, ValidationError, StepError) as exc:
                self._emit(state, EventKind.REMEDY_SKIPPED, {
                    **base, "status": RemedyStatus.SKIPPED,
                    "reason": f"cannot be resolved: {_short(exc)}"})
                continue
            self._emit(state, EventKind.REMEDY_PROPOSED, {
                **base, "target": proposal.target, "args": proposal.args,
                "explain": proposal.explain, "identity": dict(proposal.identity),
                "fingerprint": proposal.fingerprint})
        for index, remedy in enumerate(plan.playbook.remedies):
            current = state.remedies.get(remedy.id)
            if current is None or current.status in SETTLED_REMEDY:
                continue
            # The process died mid-action: never re-run it.
            if current.status == RemedyStatus.RUNNING:
                self._emit(state, EventKind.REMEDY_INTERRUPTED, {
                    "remedy": remedy.id, "reason": "interrupted while it ran; its outcome is "
                    "unknown, so it is not run again: run the playbook again to re-diagnose"})
            if state.remedies[remedy.id].status in BROKEN_REMEDY:
                return FAILED
            outcome = self._run_remedy(plan, state, self._proposal(plan, state, index))
            if outcome != COMPLETED:
                return outcome
        return COMPLETED

    def _run_remedy(self, plan: Plan, state: RunState, proposal: Proposal) -> RunStatus:
        shown = state.remedies[proposal.remedy]
        if shown.fingerprint != proposal.fingerprint:
            # It resolves differently now (another container behind the name, another
            # inventory): what was shown, and any approval of it, no longer applies.
            self._emit(state, EventKind.REMEDY_PROPOSED, {
                "remedy": proposal.remedy, "kind": proposal.kind, "target": proposal.target,
                "args": proposal.args, "explain": proposal.explain,
                "identity": dict(proposal.identity), "fingerprint": proposal.fingerprint,
                "reason": "proposed again, approval void: "
                          + self.gate.void_reason(proposal, shown.fingerprint)})
        decision = self.gate.decide(proposal)
        self._catch_up(state)  # the gate journals approvals itself
        if decision == DECLINED:
            self._emit(state, EventKind.REMEDY_SKIPPED, {"remedy": proposal.remedy,
                                                         "status": RemedyStatus.DECLINED,
                                                         "reason": "declined at the gate"})
            return COMPLETED
        if decision != APPROVED:
            return AWAITING
        kind = self.registry.kind(proposal.kind)
        spec = next(r for r in plan.playbook.remedies if r.id == proposal.remedy)
        timeout = spec.timeout or kind.timeout
        target = next(t for t in plan.targets.values() if t.name == proposal.target)
        runner = RemedyRunner(self.journal, self.gate, lambda type_, data: self._emit(
            state, type_, data), lambda event: self._apply(state, event), self.remedy_grace)
        return runner.run(proposal, target, self._step_context(state, proposal.remedy, timeout))

    # Verification

    def _verify_due(self, state: RunState) -> bool:
        """Verify after a remedy succeeded since the last verification (if any)."""
        last_remedy = max((e.seq for e in state.timeline if e.type == EventKind.REMEDY_FINISHED
                           and e.data["status"] == RemedyStatus.SUCCEEDED), default=0)
        last_verify = max((e.seq for e in state.timeline if e.type == EventKind.VERIFY_FINISHED),
                          default=0)
        return last_remedy > last_verify

    def _verify(self, plan: Plan, state: RunState) -> RunStatus:
        """Each check must come true within its settling time, then hold for its window:
        here, when the window is short; by schedule (MONITORING, `watch`) when it is long."""
        outcome = COMPLETED
        watched: dict[str, float] = {}  # check -> its window
        intervals = []
        for index, check in enumerate(plan.playbook.verify):
            kind = self.registry.kind(check.run)
            target = plan.target_for(check.target, kind)
            base = {"verify": plan.playbook.verify_id(index), "kind": kind.name,
                    "target": target.name if target else "-"}
            if target is None:
                self._emit(state, EventKind.VERIFY_FINISHED, {
                    **base, "status": VerifyStatus.SKIPPED, "error":
                           f"no target for the optional role {plan.role_for(check.target, kind)}"})
                continue
            self._emit(state, EventKind.VERIFY_STARTED, base)
            window = plan.window(check.for_)
            scheduled = window > self.inline_watch
            hold = 0.0 if scheduled else window
            checks, held_since = 0, None
            settle_end = time.monotonic() + check.within
            while True:
                checks += 1
                result, error = self._check(plan, state, check, base["verify"], kind, target)
                now = time.monotonic()
                if error is None:
                    held_since = held_since or now
                    if now - held_since >= hold:
                        break
                elif held_since is not None or now + check.interval > settle_end:
                    break  # it stopped holding, or it never came true in time
                time.sleep(check.interval)
            if scheduled and not error:
                watched[base["verify"]] = window
                intervals.append(check.interval)
                continue  # settled; it is judged when its watch ends
            status = VerifyStatus.FAILED if error else VerifyStatus.PASSED
            self._emit(state, EventKind.VERIFY_FINISHED, {**base, "status": status,
                                                  "checks": checks, "result": result,
                                                  "error": error})
            if error:
                outcome = FAILED
        if not watched:
            return outcome
        until = datetime.now(UTC) + timedelta(seconds=max(watched.values()))
        self._emit(state, EventKind.WATCH_STARTED, {
            "checks": sorted(watched), "until": until.isoformat(timespec="seconds"),
            "interval": min(intervals), "for": max(watched.values())})
        return RunStatus.MONITORING if outcome == COMPLETED else outcome

    def verify(self, plan: Plan, run_id: str, *, by: str) -> RunState:
        """Verify a run now, after a fix made by hand: its playbook's checks settle, then
        hold for their windows (watched by schedule when long), as after a remedy."""
        resumed = self.journal.claim(run_id, by)
        state = self.journal.state(run_id)
        if self.progress is not None:
            self.progress(resumed)
        with SECRETS.scope():
            outcome = self._verify(plan, state)
            self._emit(state, EventKind.RUN_FINISHED, {"status": outcome})
            self._write_outputs(state)
        return state

    def watch(self, plan: Plan, run_id: str) -> RunState:
        """One look at a run under watch: every watched check once. One that fails is a
        relapse (the run fails and says so: the incident reopens); when all hold at the
        window's end the run is resolved. Between looks nothing holds the run."""
        state = self.journal.state(run_id)
        watch = state.watch
        if state.status != RunStatus.MONITORING or watch is None:
            return state
        with SECRETS.scope():
            ids = [plan.playbook.verify_id(i) for i in range(len(plan.playbook.verify))]
            results = []
            for check_id in watch["checks"]:
                check = plan.playbook.verify[ids.index(check_id)]
                kind = self.registry.kind(check.run)
                target = plan.target_for(check.target, kind)
                assert target is not None  # it was bound when the watch started
                base = {"verify": check_id, "kind": kind.name, "target": target.name}
                result, error = self._check(plan, state, check, check_id, kind, target)
                if error is not None:
                    why = f"relapsed during its watch: {error}"
                    self._emit(state, EventKind.VERIFY_FINISHED, {
                        **base, "status": VerifyStatus.FAILED, "result": result, "error": why})
                    self._emit(state, EventKind.WATCH_RELAPSED, {"verify": check_id,
                                                                 "error": error})
                    self._emit(state, EventKind.RUN_FINISHED, {"status": FAILED,
                                                               "error": f"{check_id} {why}"})
                    self._write_outputs(state)
                    return state
                results.append((base, result))
            if datetime.now(UTC) < datetime.fromisoformat(watch["until"]):
                return state
            for base, result in results:
                self._emit(state, EventKind.VERIFY_FINISHED, {
                    **base, "status": VerifyStatus.PASSED, "result": result, "error": None,
                    "checks": 1, "held_for": watch["for"]})
            self._emit(state, EventKind.RUN_FINISHED, {"status": COMPLETED})
            self._write_outputs(state)
        return state

    def _check(self, plan: Plan, state: RunState, check: Any, check_id: str, kind: StepKind,
               target: Target) -> tuple[dict[str, Any] | None, str | None]:
        """One verify check: (result, None) when it holds, else (result, why not)."""
        context = _context(plan, state)
        try:
            rendered = expressions.render(check.with_, context)
            refuse_templated_options(check.with_, rendered, allowed=check.allow_options)
            params = kind.params.model_validate(rendered)
            # The check's own timeout reaches the backend.
            ctx = self._step_context(state, check_id, check.timeout or kind.timeout)
            result, failure = Call(lambda on_handle: self._probe(kind, target, params, on_handle,
                                                                 ctx), ctx.timeout,
                                   cancelled=ctx.cancelled).wait()
            if failure is not None:
                return None, describe_error(failure)
            assert result is not None
            holds = check_holds(check.expect, context, result)
        except (expressions.ExpressionError, ValidationError) as exc:
            return None, _short(exc)
        return result, None if holds else f"expected {check.expect or 'ok'}, but it was not so"

    # Events and outputs

    def _emit(self, state: RunState, type_: EventKind, data: Mapping[str, Any]) -> Event:
        event = self.journal.append(state.run_id, type_, dict(data))
        self._apply(state, event)
        return event

    def _apply(self, state: RunState, event: Event) -> None:
        state.apply(event)
        if self.progress is not None:
            self.progress(event)

    def _catch_up(self, state: RunState) -> None:
        """Fold in events others appended to this run (the gate's approvals)."""
        last = state.timeline[-1].seq if state.timeline else 0
        for event in self.journal.events(state.run_id):
            if event.seq > last:
                self._apply(state, event)

    def _write_outputs(self, state: RunState) -> None:
        from .charts import files
        from .report import markdown

        self.journal.write_file(state.run_id, "run.json", state.to_json())
        for relative, svg in files(state).items():  # evidence/<step>.svg, before report.md
            self.journal.write_file(state.run_id, relative, svg)
        self.journal.write_file(state.run_id, "report.md", markdown(state))


class NotRun(dict[str, Any]):
    """A skipped step's result in expressions: every field reads as none, so conditions
    about it are false; a failed step is absent instead, so conditions on it are unknown."""

    def __missing__(self, key: str) -> None:
        return None


def check_holds(expect: str | None, context: Mapping[str, Any], result: Mapping[str, Any]) -> bool:
    """Whether a verify check's result meets its `expect` (else the result's `ok`); replay
    judges recorded verify results with it too."""
    if expect:
        return bool(expressions.evaluate(expect, {**context, "result": result}))
    return result.get("ok", True) is not False


def _context(plan: Plan, state: RunState) -> dict[str, Any]:
    """What expressions see now. `findings` (id: fired) fills in once the diagnosis is
    concluded; a finding that could not be evaluated is absent, so that a remedy's
    condition on it cannot be resolved and the remedy is not proposed."""
    concluded = {f.id: f.status == FindingStatus.FIRED for f in state.findings.values()
                 if f.status != FindingStatus.UNKNOWN}
    return {**plan.context(_results(state)), "findings": concluded}


def _results(state: RunState) -> dict[str, Any]:
    """Each step's result as expressions read it; one that did not succeed is absent, and
    reading it says which step and why (`expressions.StepResults`)."""
    results: dict[str, Any] = {}
    for step in state.steps.values():
        if step.status == StepStatus.OK:
            results[step.id] = expressions.StepFields(step.id, step.result) \
                if isinstance(step.result, dict) else step.result
        elif step.status == StepStatus.SKIPPED:
            results[step.id] = NotRun()
    return expressions.StepResults(results, {s.id: _why_not(s) for s in state.steps.values()
                                             if s.status in STEP_NOT_CHECKED})


def _did_not_succeed(state: RunState, step_id: str) -> str:
    step = state.steps.get(step_id)
    return f"step {step_id} did not succeed ({_why_not(step)})" if step \
        else f"step {step_id} did not run"


def _why_not(step: StepState) -> str:
    return step.error or str(step.status)


def _backoff(attempt_number: int) -> float:
    return float(min(0.5 * 2 ** (attempt_number - 2), 5.0))  # 0.5s, 1s, 2s ...


def _short(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return describe_error(exc)
