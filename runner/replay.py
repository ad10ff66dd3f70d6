"""Replay: a playbook (the recorded one or an edited one) judged against a recorded run's
step results, with no live system touched.

Replay drives the engine itself (`runner.engine.Engine`: the same `when`, skip, findings,
severity and remedy-resolution code a live run uses) on a throwaway journal, with three
things swapped so that nothing can reach a system, by construction:

- a registry whose step kinds keep their names, parameter models and `explain`, but whose
  functions and pins raise, and whose every backend's connector raises on `probe`,
  `action` and `identity` (`replay_registry`): no handle of any kind exists in a replay;
- an engine whose steps are answered from the recording (`_ReplayEngine._launch/_settle`)
  and whose remedies stop at their proposal (`_run_remedy` never reaches the gate's
  decision, let alone `Gate.execute`);
- a gate whose `resolve` gives the identity and pinned arguments the run recorded.

A step the playbook runs that the recording lacks (added, or defined differently) is "not
recorded": it fails as such, and what reads it is unknown. Verify checks are judged on
their recorded results (`engine.check_holds`). The JSON is deterministic: no times, no
durations, no run ids of the throwaway journal, keys sorted.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from . import expressions
from .calls import Call
from .engine import Engine, _context, check_holds
from .errors import NotApproved, UsageError
from .gate import Gate, Proposal
from .inventory import Target
from .journal import Journal
from .loader import LoadedPlaybook, parse
from .model import Playbook, coerce_param
from .plan import Plan
from .recording import Recording
from .registry import Backend, Registry, StepKind
from .state import AWAITING, RunState
from .vocabulary import EventKind, RemedyStatus, RunStatus, StepStatus

NOT_RECORDED = "not recorded"


class _NoLiveSystem:
    """The only connector a replay has: every way to reach a system raises."""

    def probe(self, target: Any, ctx: Any) -> Any:
        raise NotApproved("replay reaches no live system: it answers steps from the recording")

    def action(self, target: Any, ctx: Any) -> Any:
        raise NotApproved("replay never runs a remedy")

    def identity(self, target: Any, timeout: Any) -> Any:
        raise NotApproved("replay takes identities from the recording")


def _never(handle: Any, params: Any) -> dict[str, Any]:
    raise NotApproved("replay never calls a step kind's function")


def replay_registry(real: Registry) -> Registry:
    """The real registry's kinds (names, parameter models, explain) with nothing behind."""
    registry = Registry()
    for target_kind in sorted({kind.target_kind for kind in real}):
        if real.has_backend(target_kind):
            backend = real.backend(target_kind)
            registry.add_backend(Backend(target_kind, _NoLiveSystem(), backend.settings,
                                         backend.summary))
    for kind in real:
        registry.add(dataclasses.replace(kind, func=_never, pin=None))
    return registry


class _NoSettings(BaseModel):
    """A replayed target's settings: replay never reads the inventory."""


class _ReplayGate(Gate):
    def __init__(self, journal: Journal, registry: Registry, recording: Recording,
                 pinned_kinds: frozenset[str]) -> None:
        super().__init__(journal, registry, approver="replay")
        self.recording, self.pinned_kinds = recording, pinned_kinds

    def resolve(self, kind: StepKind, target: Target, params: Any,
                ctx: Any) -> tuple[Any, dict[str, str]]:
        """What the run resolved: the target's recorded identity, and for a kind that pins
        mutable references (an image tag), the arguments as they were pinned then."""
        shown = self.recording.remedies.get(str(getattr(ctx, "step", "")))  # ctx: the remedy's
        if kind.name in self.pinned_kinds and shown is not None and shown.proposed \
                and (shown.kind, shown.target) == (kind.name, target.name):
            params = kind.params.model_validate(shown.args)
        return params, dict(self.recording.identities.get(target.name, {}))

    def decide(self, proposal: Proposal) -> str:  # never asked: replay stops at proposals
        raise NotApproved("replay decides nothing")


class _ReplayEngine(Engine):
    def __init__(self, registry: Registry, journal: Journal, gate: Gate, recording: Recording,
                 recorded_book: Playbook | None) -> None:
        super().__init__(registry, journal, gate, concurrency=1)
        self.recording, self.recorded_book = recording, recorded_book
        self.not_recorded: dict[str, str] = {}

    def _unrecorded(self, step: Any) -> str | None:
        """Why the recording holds no result for `step`, or None when it does."""
        recorded = self.recording.steps.get(step.id)
        if recorded is None or recorded.status not in {StepStatus.OK, StepStatus.FAILED,
                                                       StepStatus.TIMEOUT}:
            return "the recorded run has no result for it"
        if self.recorded_book is not None:
            before = next((s for s in self.recorded_book.steps if s.id == step.id), None)
            if before is None or (before.run, before.target, before.with_) != \
                    (step.run, step.target, step.with_):
                return "defined differently from the recorded step"
        return None

    def _launch(self, state: RunState, attempt: Any, finished: queue.Queue[Any]) -> Any:
        attempt.call = Call(lambda on_handle: {}, attempt.timeout,
                            on_done=lambda _: finished.put(attempt),
                            name=f"replay-{attempt.step.id}")
        return attempt

    def _settle(self, state: RunState, attempt: Any) -> None:
        step = attempt.step
        base = {"step": step.id, "kind": attempt.kind.name, "target": attempt.target.name}
        why = self._unrecorded(step)
        if why is not None:
            self.not_recorded[step.id] = why
            self._emit(state, EventKind.STEP_FINISHED, {
                **base, "status": StepStatus.FAILED, "error": f"{NOT_RECORDED}: {why}"})
            return
        recorded = self.recording.steps[step.id]
        self._emit(state, EventKind.STEP_FINISHED, {
            **base, "status": recorded.status, "result": recorded.result,
            "error": recorded.error})

    def _run_remedy(self, plan: Plan, state: RunState, proposal: Proposal) -> RunStatus:
        return AWAITING  # a replay stops at what it would propose

    def _write_outputs(self, state: RunState) -> None:
        return None  # the throwaway journal's run directory is never read


def playbook_of(recording: Recording, registry: Registry) -> LoadedPlaybook:
    if recording.playbook_text is None:
        raise UsageError(f"run {recording.run_id}: its playbook is not recorded beside it "
                         "(a copied run directory): name one with --playbook")
    return parse(recording.playbook_text, recording.playbook_path or "recorded", registry)


def replay(recording: Recording, registry: Registry, loaded: LoadedPlaybook | None = None,
           params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Replay `loaded` (default: the recorded playbook) against `recording`; `params`
    override the recorded ones. Returns the deterministic replay document."""
    recorded_book = playbook_of(recording, registry).playbook \
        if recording.playbook_text is not None else None
    loaded = loaded or playbook_of(recording, registry)
    book = loaded.playbook
    plan = Plan(loaded, _targets(book, recording), _params(book, recording, params or {}))
    fake = replay_registry(registry)
    pinned = frozenset(k.name for k in registry if k.pin is not None)
    with tempfile.TemporaryDirectory(prefix="runbook-replay-") as scratch, \
            Journal(Path(scratch), dsn="") as journal:  # SQLite, whatever the env says
        journal.read("PRAGMA synchronous=OFF")  # a throwaway journal: no fsync per event
        gate = _ReplayGate(journal, fake, recording, pinned)
        engine = _ReplayEngine(fake, journal, gate, recording, recorded_book)
        state = engine.start(plan, "replay", trigger="replay", requested_by="replay")
        verify = _verify(plan, state, recording, recorded_book)
        document = _document(recording, loaded, state, engine.not_recorded, verify)
    return document


def _targets(book: Playbook, recording: Recording) -> dict[str, Target]:
    bound: dict[str, Target] = {}
    for role, spec in book.targets.items():
        recorded = recording.targets.get(role)
        if recorded is None and spec.optional:
            continue  # unbound, as in a run without it: its steps are skipped
        name = recorded["name"] if recorded else f"({NOT_RECORDED})"
        bound[role] = Target(name, recorded["kind"] if recorded else spec.kind, _NoSettings())
    return bound


def _params(book: Playbook, recording: Recording, override: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in override:
        if name not in book.params:
            raise UsageError(f"{book.name} has no param {name!r}")
    for name, spec in book.params.items():
        raw = override.get(name, recording.params.get(name, spec.default))
        try:
            values[name] = coerce_param(spec, raw)
        except ValueError as exc:
            raise UsageError(f"param {name}: {exc}") from None
        if values[name] is None:
            raise UsageError(f"{book.name} needs param {name}, which the run did not record")
    return values


def _verify(plan: Plan, state: RunState, recording: Recording,
            recorded_book: Playbook | None) -> list[dict[str, Any]]:
    """Each verify check judged on its recorded result, where one was recorded."""
    book, judged = plan.playbook, []
    context = _context(plan, state)
    for index, check in enumerate(book.verify):
        check_id = book.verify_id(index)
        recorded = recording.verify.get(check_id)
        before = None
        if recorded_book is not None:
            before = next((c for i, c in enumerate(recorded_book.verify)
                           if recorded_book.verify_id(i) == check_id), None)
        entry: dict[str, Any] = {"id": check_id, "recorded": recorded.status if recorded else None}
        if recorded is None or not isinstance(recorded.result, dict) or (
                recorded_book is not None and (before is None or (before.run, before.target,
                                                                  before.with_) !=
                                               (check.run, check.target, check.with_))):
            entry.update(status=NOT_RECORDED, error=recorded.error if recorded else None)
        else:
            try:
                holds = check_holds(check.expect, context, recorded.result)
                entry.update(status="passed" if holds else "failed",
                             error=None if holds else f"expected {check.expect or 'ok'}")
            except expressions.ExpressionError as exc:
                entry.update(status="failed", error=str(exc))
        judged.append(entry)
    return judged


def _document(recording: Recording, loaded: LoadedPlaybook, state: RunState,
              not_recorded: dict[str, str], verify: list[dict[str, Any]]) -> dict[str, Any]:
    book = loaded.playbook
    steps: list[dict[str, Any]] = []
    for step in book.steps:
        got = state.steps.get(step.id)
        if step.id in not_recorded:
            steps.append({"id": step.id, "status": NOT_RECORDED, "reason": not_recorded[step.id]})
        elif got is not None:
            steps.append({"id": step.id, "status": str(got.status), "reason": got.error})
    findings = []
    for finding in book.findings:
        got_f = state.findings.get(finding.id)
        if got_f is not None:
            findings.append({"id": finding.id, "status": str(got_f.status),
                             "severity": got_f.severity, "message": got_f.message,
                             "reason": got_f.reason})
    remedies = []
    for remedy in book.remedies:
        got_r = state.remedies.get(remedy.id)
        if got_r is not None:
            proposed = got_r.status == RemedyStatus.PROPOSED
            remedies.append({"id": remedy.id, "status": str(got_r.status), "kind": got_r.kind,
                             "target": got_r.target, "args": got_r.args if proposed else None,
                             "explain": got_r.explain if proposed else None,
                             "fingerprint": got_r.fingerprint if proposed else None,
                             "reason": got_r.reason})
    return {
        "run_id": recording.run_id,
        "playbook": book.name,
        "playbook_path": loaded.path,
        "severity": state.severity,
        "verdict": str(state.verdict()),
        "steps": steps,
        "findings": findings,
        "remedies": remedies,
        "verify": verify,
        "diff": diff(recording, findings, remedies),
    }


def diff(recording: Recording, findings: list[dict[str, Any]],
         remedies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What replay concluded differently from the recorded run: findings (status,
    severity, message) and remedies (proposed or not, kind, target, arguments)."""
    changes: list[dict[str, Any]] = []
    replayed_f = {f["id"]: {k: f[k] for k in ("status", "severity", "message")}
                  for f in findings}
    for fid in [*replayed_f, *(i for i in recording.findings if i not in replayed_f)]:
        before, after = recording.findings.get(fid), replayed_f.get(fid)
        if before != after:
            changes.append({"finding": fid, "recorded": before, "replayed": after})
    replayed_r = {r["id"]: _remedy_view(r["status"] == RemedyStatus.PROPOSED, r["kind"],
                                        r["target"], r["args"]) for r in remedies}
    recorded_r = {rid: _remedy_view(r.proposed, r.kind, r.target, r.args)
                  for rid, r in recording.remedies.items()}
    for rid in [*replayed_r, *(i for i in recorded_r if i not in replayed_r)]:
        before_r, after_r = recorded_r.get(rid), replayed_r.get(rid)
        if before_r != after_r:
            changes.append({"remedy": rid, "recorded": before_r, "replayed": after_r})
    return changes


def _remedy_view(proposed: bool, kind: str, target: str,
                 args: dict[str, Any] | None) -> dict[str, Any]:
    if not proposed:
        return {"proposed": False}
    return {"proposed": True, "kind": kind, "target": target, "args": args or {}}


def to_json(document: dict[str, Any]) -> str:
    """Byte-identical for the same recording and playbook."""
    return json.dumps(document, sort_keys=True, indent=2, default=str) + "\n"
