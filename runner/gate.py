"""The gate: the only way a mutating step runs.

A remedy runs only when the journal holds an approval for exactly the action shown: the
same step kind, the same resolved identity of its target (the container, workload or
database behind the name, not the name) and the same resolved arguments, an image tag
already pinned to its id (the fingerprint). The gate resolves the identity again right
before the action: if anything differs, the approval is void and the journal says what
changed. Without a person at a terminal and without `--approve`, nothing is approved: the
run waits for `runbook approve`. Who may approve, for how long, and whether it takes two
people is `runner.approval`'s one policy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .approval import (
    APPROVED,
    DECLINED,
    PENDING,
    ApprovalRefused,
    Clock,
    Verdict,
    record,
    utc_now,
    verdict,
    with_os_user,
)
from .context import StepContext
from .errors import NotApproved
from .inventory import Target
from .journal import Approval, Journal, now
from .policy import Policy
from .registry import Registry, StepKind
from .vocabulary import EventKind

__all__ = ["APPROVED", "DECLINED", "PENDING", "Gate", "Proposal", "fingerprint"]


@dataclass(frozen=True)
class Proposal:
    """A remedy resolved against one run's diagnosis, as the approver sees it."""

    run_id: str
    remedy: str
    kind: str
    target: str
    args: dict[str, Any]
    explain: str = ""
    identity: Mapping[str, str] = field(default_factory=dict)  # what `target` resolved to

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.kind, self.target, self.identity, self.args)

    @property
    def approve_spec(self) -> str:
        """How `--approve` names this remedy without its fingerprint: REMEDY=KIND."""
        return f"{self.remedy}={self.kind}"


def fingerprint(kind: str, target: str, identity: Mapping[str, str],
                args: Mapping[str, Any]) -> str:
    canonical = json.dumps({"kind": kind, "target": target, "identity": dict(identity),
                            "args": dict(args)},
                           sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """What differs between two proposals (as journaled: kind, target, identity, args)."""
    found = []
    for part in ("kind", "target"):
        if before.get(part) != after.get(part):
            found.append(f"{part} {before.get(part)!r} -> {after.get(part)!r}")
    for part in ("identity", "args"):
        old, new = before.get(part) or {}, after.get(part) or {}
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                found.append(f"{'target ' if part == 'identity' else ''}{key} "
                             f"{_short(old.get(key))} -> {_short(new.get(key))}")
    return found


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if value is not None else "(none)"
    return text if len(text) <= 80 else text[:77] + "..."


# Asks a person whether to run the proposal; True approves.
Prompter = Callable[[Proposal], bool]


class Gate:
    def __init__(self, journal: Journal, registry: Registry, *, approver: str,
                 pre_approved: frozenset[str] = frozenset(),
                 prompter: Prompter | None = None, ttl: float | None = None,
                 policy: Policy | None = None, clock: Clock = utc_now,
                 os_user: str | None = None) -> None:
        self.journal, self.registry = journal, registry
        # pre_approved holds REMEDY=KIND specs and fingerprints, never a bare remedy id
        self.approver, self.pre_approved, self.prompter = approver, pre_approved, prompter
        self.policy = (policy or Policy()).stricter(Policy(ttl=ttl))
        self.clock = clock
        self.os_user = os_user  # the account the CLI runs as, recorded beside `approver`

    # Resolving what a proposal acts on

    def resolve(self, kind: StepKind, target: Target, params: Any,
                ctx: StepContext) -> tuple[Any, dict[str, str]]:
        """Params with mutable references pinned, and the target's identity, as of now."""
        connector = self.registry.backend(kind.target_kind).connector
        if kind.pin is not None:
            with connector.probe(target, ctx) as handle:
                params = kind.pin(handle, params)
        return params, self.identity(kind, target, ctx.timeout)

    def identity(self, kind: StepKind, target: Target, timeout: float) -> dict[str, str]:
        connector = self.registry.backend(kind.target_kind).connector
        resolve = getattr(connector, "identity", None)
        if not callable(resolve):
            return {}
        return {str(k): str(v) for k, v in dict(resolve(target, timeout)).items()}

    # Deciding

    def decide(self, proposal: Proposal) -> str:
        """APPROVED, DECLINED or PENDING, recording any decision made now."""
        found = self._verdict(proposal)
        if found.decision != PENDING:
            return found.decision
        self._journal_void(proposal, found)
        how = None
        if self.pre_approved & {proposal.approve_spec, proposal.fingerprint}:
            decision, how = APPROVED, "--approve on the command line"
        elif self.prompter is not None:
            decision = APPROVED if self.prompter(proposal) else DECLINED
            how = "answered at the terminal"
        if how is None:
            return PENDING
        if self.os_user is not None:
            how = with_os_user(how, self.os_user)
        try:
            record(self.journal, proposal.run_id, proposal.remedy, decision=decision,
                   by=self.approver, how=how, policy=self.policy,
                   fingerprint=proposal.fingerprint, clock=self.clock, live=True)
        except ApprovalRefused as exc:
            self.journal.append(proposal.run_id, EventKind.APPROVAL_REFUSED, {
                "remedy": proposal.remedy, "by": self.approver, "reason": str(exc)})
            return PENDING
        return self._verdict(proposal).decision

    def _verdict(self, proposal: Proposal) -> Verdict:
        requested_by = self.journal.state(proposal.run_id).requested_by
        return verdict(self.journal, proposal.run_id, proposal.remedy, proposal.fingerprint,
                       requested_by=requested_by, policy=self.policy, clock=self.clock)

    def _journal_void(self, proposal: Proposal, found: Verdict) -> None:
        recorded = self.journal.approvals(proposal.run_id, proposal.remedy)
        if not recorded or recorded[-1].decision != APPROVED:
            return
        latest = recorded[-1]
        if latest.fingerprint != proposal.fingerprint:
            self.journal.append(proposal.run_id, EventKind.APPROVAL_VOID, {
                "remedy": proposal.remedy, "by": latest.by,
                "reason": self.void_reason(proposal, latest.fingerprint)})
        elif found.expired:
            self.journal.append(proposal.run_id, EventKind.APPROVAL_EXPIRED, {
                "remedy": proposal.remedy, "by": latest.by, "approved_at": latest.at,
                "reason": found.reason})

    def void_reason(self, proposal: Proposal, approved: str) -> str:
        """Why an approval of fingerprint `approved` does not cover `proposal`."""
        shown = self._proposed(proposal.run_id, proposal.remedy, approved)
        now_ = {"kind": proposal.kind, "target": proposal.target,
                "identity": dict(proposal.identity), "args": proposal.args}
        what = changes(shown, now_) if shown is not None else []
        return ("the action resolves differently from the one approved: " + "; ".join(what)
                if what else "the approval was for another action than the one resolved now")

    def _proposed(self, run_id: str, remedy: str, fingerprint_: str) -> dict[str, Any] | None:
        for event in reversed(self.journal.events(run_id)):
            if (event.type == EventKind.REMEDY_PROPOSED and event.data.get("remedy") == remedy
                    and event.data.get("fingerprint") == fingerprint_):
                return event.data
        return None

    def record(self, run_id: str, remedy: str, fingerprint_: str, decision: str, by: str,
               how: str) -> Approval:
        """Journal a decision as given (tests and tools; people go through approval.record)."""
        return self.journal.record_approval(
            Approval(run_id, remedy, fingerprint_, decision, by, how, now()))

    # Executing

    def execute(self, proposal: Proposal, target: Target, ctx: StepContext,
                on_handle: Callable[[Any], None] = lambda handle: None) -> dict[str, Any]:
        """Run the remedy's action, after checking the journal holds a matching, current
        approval and that the target still resolves to what was approved."""
        recorded = self.journal.approvals(proposal.run_id, proposal.remedy)
        if not recorded or not any(a.decision == APPROVED for a in recorded):
            raise NotApproved(f"remedy {proposal.remedy!r} of run {proposal.run_id} "
                              "has no recorded approval")
        found = self._verdict(proposal)
        if found.decision != APPROVED:
            if all(a.fingerprint != proposal.fingerprint for a in recorded):
                why = self.void_reason(proposal, recorded[-1].fingerprint)
                raise NotApproved(f"the approval of {proposal.remedy!r} was for other "
                                  f"arguments: {why}")
            expired = " (expired)" if found.expired else ""
            raise NotApproved(f"the approval of {proposal.remedy!r} does not hold{expired}: "
                              f"{found.reason}")
        kind = self.registry.kind(proposal.kind)
        now_identity = self.identity(kind, target, ctx.timeout)
        if now_identity != dict(proposal.identity) or target.name != proposal.target:
            moved = changes({"target": proposal.target, "identity": dict(proposal.identity)},
                            {"target": target.name, "identity": now_identity})
            reason = "the target resolves differently from the one approved: " + "; ".join(moved)
            self.journal.append(proposal.run_id, EventKind.APPROVAL_VOID, {
                "remedy": proposal.remedy, "by": ", ".join(found.by), "reason": reason})
            raise NotApproved(f"approval of {proposal.remedy!r} void: {reason}")
        params = kind.params.model_validate(proposal.args)
        connector = self.registry.backend(kind.target_kind).connector
        with connector.action(target, ctx) as handle:
            on_handle(handle)
            return kind.func(handle, params)
