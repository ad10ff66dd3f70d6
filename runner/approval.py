"""The one approval path: every way of approving a remedy goes through `record`, and the
gate asks `verdict` whether what is recorded lets the remedy run.

`runbook approve`, `--approve`, the terminal prompt and the daemon's HTTP approvals all
call `record`, so one set of checks applies to each: the run is waiting, the remedy is
proposed, the approval is for the proposal shown (its fingerprint), the approver may
approve this playbook's remedy, and four-eyes means two distinct people. The TTL applies
when the remedy is about to run (`verdict`), with a clock the caller may inject.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import UsageError
from .journal import Approval, Journal, now
from .policy import Policy
from .state import AWAITING, INTERRUPTED, RunState
from .vocabulary import Decision, EventKind, RemedyStatus

APPROVED, DECLINED, PENDING = Decision.APPROVED, Decision.DECLINED, Decision.PENDING

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


_OS_USER = re.compile(r"\(OS user ([^)]+)\)")


def with_os_user(how: str, os_user: str) -> str:
    """`how` an approval was given, with the account it came from (the CLI records both,
    since `--as` is only what the person typed)."""
    return f"{how} (OS user {os_user})"


def os_user_of(approval: Approval) -> str | None:
    found = _OS_USER.search(approval.how)
    return found.group(1) if found else None


class ApprovalRefused(UsageError):
    """The approval was not recorded. `forbidden`: the policy refuses this person (HTTP
    403); otherwise the run or remedy is not in a state to take it (HTTP 409)."""

    def __init__(self, message: str, *, forbidden: bool = False) -> None:
        super().__init__(message)
        self.forbidden = forbidden


def run_policy(journal: Journal, run_id: str, policy: Policy) -> Policy:
    """The strictest of the policy the run started under, every policy an approval path
    has applied to it since, and `policy` (in force now)."""
    recorded = Policy.from_json(journal.get_run(run_id).source.get("policy"))
    for event in journal.events(run_id):
        if event.type == EventKind.APPROVAL_POLICY:
            recorded = recorded.stricter(Policy.from_json(event.data["policy"]))
    return recorded.stricter(policy)


def _adopt(journal: Journal, run_id: str, policy: Policy) -> Policy:
    """Apply `policy` to the run from now on, whichever path approves it next: what the
    daemon refused (four-eyes) stays refused from the command line."""
    before = run_policy(journal, run_id, Policy())
    after = before.stricter(policy)
    if after.rules() != before.rules():
        journal.append(run_id, EventKind.APPROVAL_POLICY, {"policy": policy.to_json()})
    return after


def is_person(requester: str) -> bool:
    """Alert-started runs are requested by `alert:<route>`: no person asked for them."""
    return bool(requester) and not requester.startswith("alert:")


def record(journal: Journal, run_id: str, remedy_id: str, *, decision: str, by: str, how: str,
           policy: Policy, fingerprint: str | None = None, clock: Clock = utc_now,
           live: bool = False) -> Approval:
    """Record one person's decision on a proposed remedy, or raise ApprovalRefused.

    `fingerprint`: the proposal the approver saw (None: the one proposed now). `live`: the
    run's own process asks (a prompt or `--approve`), so the run is running, not waiting.
    """
    if decision not in {APPROVED, DECLINED}:
        raise ValueError(f"decision must be {APPROVED} or {DECLINED}, not {decision!r}")
    state = journal.state(run_id)
    if not live and state.status not in {AWAITING, INTERRUPTED}:
        raise ApprovalRefused(f"run {run_id} is {state.status}: only a run awaiting approval "
                              "(or interrupted) takes one")
    remedy = state.remedies.get(remedy_id)
    if remedy is None or remedy.status != RemedyStatus.PROPOSED:
        waiting = [r.id for r in state.remedies.values() if r.status == RemedyStatus.PROPOSED]
        now_ = f" (it is {remedy.status})" if remedy else ""
        raise ApprovalRefused(f"run {run_id} has no proposed remedy {remedy_id!r}{now_}; "
                              f"waiting: {', '.join(waiting) or 'none'}")
    if fingerprint is not None and fingerprint != remedy.fingerprint:
        raise ApprovalRefused(f"{remedy_id} is proposed now as {remedy.fingerprint[:16]}..., "
                              f"not {fingerprint[:16]}...: look at it again "
                              f"(runbook report {run_id})")
    effective = _adopt(journal, run_id, policy)
    approval = Approval(run_id, remedy_id, remedy.fingerprint, decision, by, how, now())
    if decision == APPROVED:
        _check_person(effective, state, approval, journal, clock)
    return journal.record_approval(approval)


def _check_person(policy: Policy, state: RunState, approval: Approval, journal: Journal,
                  clock: Clock) -> None:
    by, remedy_id = approval.by, approval.remedy
    allowed = policy.allowed(state.playbook, remedy_id)
    if allowed is not None and by not in allowed:
        raise ApprovalRefused(f"{by} may not approve {state.playbook}/{remedy_id} (policy "
                              f"{policy.source or 'of the run'}: {', '.join(allowed) or 'nobody'})",
                              forbidden=True)
    if not policy.four_eyes:
        return
    if by == state.requested_by:
        raise ApprovalRefused(f"four-eyes: {by} requested this run and may not approve it",
                              forbidden=True)
    earlier = _standing(journal.approvals(state.run_id, remedy_id), approval.fingerprint,
                        policy, clock)
    if by in {a.by for a in earlier}:
        raise ApprovalRefused(f"four-eyes: {by} has approved {remedy_id} already; another "
                              "person must approve it too", forbidden=True)
    account = os_user_of(approval)
    if account is not None and account == state.requested_by:
        raise ApprovalRefused(f"four-eyes: OS user {account} requested this run and may not "
                              f"approve it, as {by} or any other name", forbidden=True)
    same = [a.by for a in earlier if account is not None and os_user_of(a) == account]
    if same:  # two names typed from one account are not two people
        raise ApprovalRefused(f"four-eyes: OS user {account} approved {remedy_id} already "
                              f"(as {same[0]}); another person must approve it from their own "
                              "account", forbidden=True)


@dataclass(frozen=True)
class Verdict:
    decision: str  # APPROVED, DECLINED or PENDING
    reason: str = ""  # why not approved (yet)
    by: tuple[str, ...] = ()  # who approved, when approved
    expired: tuple[Approval, ...] = ()  # approvals that would count but are too old


def verdict(journal: Journal, run_id: str, remedy_id: str, fingerprint: str, *,
            requested_by: str, policy: Policy, clock: Clock = utc_now) -> Verdict:
    """Whether the recorded approvals let this exact proposal run now."""
    effective = run_policy(journal, run_id, policy)
    approvals = journal.approvals(run_id, remedy_id)
    mine = [a for a in approvals if a.fingerprint == fingerprint]
    if mine and mine[-1].decision == DECLINED:
        return Verdict(DECLINED, f"declined by {mine[-1].by}")
    standing = _standing(approvals, fingerprint, effective, clock)
    if effective.four_eyes:
        standing = [a for a in standing if a.by != requested_by]
    people = tuple(dict.fromkeys(a.by for a in standing))
    needed = 2 if effective.four_eyes and not is_person(requested_by) else 1
    if len(people) >= needed:
        return Verdict(APPROVED, by=people)
    live = _since_decline(approvals, fingerprint)
    expired = tuple(a for a in live if a.decision == APPROVED and _too_old(a, effective, clock))
    if people:
        return Verdict(PENDING, f"four-eyes: approved by {people[0]} only; a second person "
                                "must approve", expired=expired)
    if expired:
        return Verdict(PENDING, f"approvals are good for {effective.ttl:g}s", expired=expired)
    if any(a.fingerprint != fingerprint for a in approvals):
        return Verdict(PENDING, "approved for another action than the one resolved now")
    return Verdict(PENDING, "no approval recorded")


def _since_decline(approvals: list[Approval], fingerprint: str) -> list[Approval]:
    mine = [a for a in approvals if a.fingerprint == fingerprint]
    last_decline = max((i for i, a in enumerate(mine) if a.decision == DECLINED), default=-1)
    return mine[last_decline + 1:]


def _standing(approvals: list[Approval], fingerprint: str, policy: Policy,
              clock: Clock) -> list[Approval]:
    """Approvals of this fingerprint that still count: after any decline, within the TTL."""
    return [a for a in _since_decline(approvals, fingerprint)
            if a.decision == APPROVED and not _too_old(a, policy, clock)]


def _too_old(approval: Approval, policy: Policy, clock: Clock) -> bool:
    if policy.ttl is None:
        return False
    age = clock() - datetime.fromisoformat(approval.at)
    return age.total_seconds() > policy.ttl
