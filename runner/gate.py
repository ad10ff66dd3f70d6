"""The gate: the only way a mutating step runs.

A remedy runs only when the journal holds an approval for exactly the action shown: the
same step kind, target and resolved arguments (its fingerprint). An approval for other
arguments is void. Without a person at a terminal and without `--approve`, nothing is
approved: the run waits for `runbook approve`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import NotApproved
from .inventory import Target
from .journal import Approval, Journal, now
from .registry import Registry


@dataclass(frozen=True)
class Proposal:
    """A remedy resolved against one run's diagnosis, as the approver sees it."""

    run_id: str
    remedy: str
    kind: str
    target: str
    args: dict[str, Any]
    explain: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.kind, self.target, self.args)


def fingerprint(kind: str, target: str, args: dict[str, Any]) -> str:
    canonical = json.dumps({"kind": kind, "target": target, "args": args},
                           sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# Asks a person whether to run the proposal; True approves.
Prompter = Callable[[Proposal], bool]

APPROVED, DECLINED, PENDING = "approved", "declined", "pending"


class Gate:
    def __init__(self, journal: Journal, registry: Registry, *, approver: str,
                 pre_approved: frozenset[str] = frozenset(),
                 prompter: Prompter | None = None, ttl: float | None = None) -> None:
        self.journal, self.registry = journal, registry
        self.approver, self.pre_approved, self.prompter = approver, pre_approved, prompter
        self.ttl = ttl  # seconds an approval stays good; None: until used

    def decide(self, proposal: Proposal) -> str:
        """APPROVED, DECLINED or PENDING, recording any decision made now."""
        recorded = self.journal.approvals(proposal.run_id, proposal.remedy)
        if recorded:
            latest = recorded[-1]
            if latest.fingerprint != proposal.fingerprint:
                self.journal.append(proposal.run_id, "approval.void", {
                    "remedy": proposal.remedy, "by": latest.by,
                    "reason": "the resolved arguments differ from those approved"})
            elif self._expired(latest):
                self.journal.append(proposal.run_id, "approval.expired", {
                    "remedy": proposal.remedy, "by": latest.by, "approved_at": latest.at,
                    "reason": f"approvals are good for {self.ttl:g}s"})
            else:
                return latest.decision
        how = None
        if proposal.remedy in self.pre_approved:
            decision, how = APPROVED, "--approve on the command line"
        elif self.prompter is not None:
            decision = APPROVED if self.prompter(proposal) else DECLINED
            how = "answered at the terminal"
        if how is None:
            return PENDING
        self.record(proposal.run_id, proposal.remedy, proposal.fingerprint, decision,
                    self.approver, how)
        return decision

    def _expired(self, approval: Approval) -> bool:
        if self.ttl is None or approval.decision != APPROVED:
            return False
        from datetime import UTC, datetime

        age = datetime.now(UTC) - datetime.fromisoformat(approval.at)
        return age.total_seconds() > self.ttl

    def record(self, run_id: str, remedy: str, fingerprint_: str, decision: str, by: str,
               how: str) -> Approval:
        return self.journal.record_approval(
            Approval(run_id, remedy, fingerprint_, decision, by, how, now()))

    def execute(self, proposal: Proposal, target: Target, timeout: float,
                on_handle: Callable[[Any], None] = lambda handle: None) -> dict[str, Any]:
        """Run the remedy's action, after checking the journal holds a matching approval."""
        recorded = self.journal.approvals(proposal.run_id, proposal.remedy)
        if not recorded or recorded[-1].decision != APPROVED:
            raise NotApproved(f"remedy {proposal.remedy!r} of run {proposal.run_id} "
                              "has no recorded approval")
        if recorded[-1].fingerprint != proposal.fingerprint:
            raise NotApproved(f"the approval of {proposal.remedy!r} was for other arguments")
        if self._expired(recorded[-1]):
            raise NotApproved(f"the approval of {proposal.remedy!r} has expired")
        kind = self.registry.kind(proposal.kind)
        params = kind.params.model_validate(proposal.args)
        connector = self.registry.backend(kind.target_kind).connector
        with connector.action(target, timeout) as handle:
            on_handle(handle)
            return kind.func(handle, params)
