"""Shadow mode: a daemon route with `mode: shadow` diagnoses for real and records which
remedies it would have proposed and what they would have touched, without proposing them
for approval and without a word to the incident channel; then how often that matched what
people did.

A shadow run is an ordinary run of the engine (`ShadowEngine`: the same diagnosis,
findings, severity and remedy resolution, the gate's `resolve` included, so the resolved
target identity and arguments are recorded in `remedy_proposed`), except that a proposal
never reaches the gate's decision: it is settled at once as skipped ("shadow: ..."), so
no approval can be recorded for it (`approval.record` takes only a proposed remedy) and
the run completes. Its trigger says `shadow route NAME`; `is_shadow` is how the daemon's
announcer knows to say nothing about it.

Matched: a shadow run's would-be remedies equal the approved remedies of the next later
non-shadow run of the same playbook on the same targets (from a live route or the CLI),
compared as (remedy, kind, target); arguments are not compared, since they name what was
there at that moment (session pids, a pod). Until such a run has settled (no remedy left
awaiting approval) the comparison is pending.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .engine import Engine
from .gate import Gate, Proposal
from .state import COMPLETED, RunState
from .vocabulary import EventKind, RemedyStatus, RunStatus

if TYPE_CHECKING:
    from .journal import Journal
    from .plan import Plan
    from .policy import Policy
    from .registry import Registry

SHADOW_TRIGGER = "shadow route "
SHADOW_REASON = "shadow: would have proposed it; a shadow route proposes nothing for approval"
UNSETTLED = {RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL, RunStatus.INTERRUPTED}


class ShadowEngine(Engine):
    """The engine, with every proposal settled as a would-be remedy instead of asked for."""

    def _run_remedy(self, plan: Plan, state: RunState, proposal: Proposal) -> RunStatus:
        self._emit(state, EventKind.REMEDY_SKIPPED, {
            "remedy": proposal.remedy, "kind": proposal.kind, "target": proposal.target,
            "status": RemedyStatus.SKIPPED, "reason": SHADOW_REASON})
        return COMPLETED


def engine_for(registry: Registry, journal: Journal, policy: Policy) -> ShadowEngine:
    return ShadowEngine(registry, journal, Gate(journal, registry, approver="shadow",
                                                policy=policy))


def trigger(route: str) -> str:
    return f"{SHADOW_TRIGGER}{route}"


def is_shadow(state: RunState) -> bool:
    return state.trigger.startswith(SHADOW_TRIGGER)


def would_propose(state: RunState) -> list[dict[str, Any]]:
    """What a shadow run would have proposed: remedy, kind, target, arguments, identity."""
    found = []
    for event in state.timeline:
        if event.type == EventKind.REMEDY_PROPOSED:
            d = event.data
            found.append({"remedy": d["remedy"], "kind": d["kind"], "target": d["target"],
                          "args": d.get("args") or {}, "identity": d.get("identity") or {}})
    return found


def approved(state: RunState) -> set[tuple[str, str, str]]:
    return {(r.id, r.kind, r.target) for r in state.remedies.values() if r.approved_by}


@dataclass(frozen=True)
class Comparison:
    run_id: str
    route: str
    playbook: str
    targets: dict[str, str]
    at: str
    would: list[dict[str, Any]]
    later: str | None = None  # the run people acted in
    outcome: str = "pending"  # matched | differs | pending
    people: list[tuple[str, str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "route": self.route, "playbook": self.playbook,
                "targets": self.targets, "at": self.at, "would_propose": self.would,
                "compared_with": self.later, "outcome": self.outcome,
                "approved_then": [{"remedy": r, "kind": k, "target": t}
                                  for r, k, t in self.people]}


def comparisons(journal: Journal, limit: int = 1000) -> list[Comparison]:
    """Every shadow run among the last `limit` runs, oldest first, with its outcome."""
    rows = sorted(journal.runs(limit=limit), key=lambda r: (r.created_at, r.id))
    states = [(row, journal.state(row.id)) for row in rows]
    found = []
    for index, (row, state) in enumerate(states):
        if not is_shadow(state):
            continue
        targets = dict(row.source.get("targets") or {})
        would = would_propose(state)
        compared = Comparison(row.id, state.trigger[len(SHADOW_TRIGGER):], row.playbook,
                              targets, row.created_at, would)
        for later_row, later in states[index + 1:]:
            if is_shadow(later) or later_row.playbook != row.playbook or \
                    dict(later_row.source.get("targets") or {}) != targets:
                continue
            if later.status in UNSETTLED and any(
                    r.status == RemedyStatus.PROPOSED for r in later.remedies.values()):
                compared = _with(compared, later_row.id, "pending", [])
                break
            people = sorted(approved(later))
            same = people == sorted((w["remedy"], w["kind"], w["target"]) for w in would)
            compared = _with(compared, later_row.id, "matched" if same else "differs", people)
            break
        found.append(compared)
    return found


def _with(c: Comparison, later: str, outcome: str,
          people: list[tuple[str, str, str]]) -> Comparison:
    return Comparison(c.run_id, c.route, c.playbook, c.targets, c.at, c.would, later, outcome,
                      people)


def per_route(found: Iterable[Comparison]) -> dict[str, dict[str, Any]]:
    """Per route: shadow runs, how many were compared with what people did, how many
    matched, and the ratio (None until one was compared)."""
    routes: dict[str, dict[str, Any]] = {}
    for c in found:
        r = routes.setdefault(c.route, {"runs": 0, "compared": 0, "matched": 0})
        r["runs"] += 1
        r["compared"] += c.outcome != "pending"
        r["matched"] += c.outcome == "matched"
    for r in routes.values():
        r["match_ratio"] = round(r["matched"] / r["compared"], 3) if r["compared"] else None
    return dict(sorted(routes.items()))


class ShadowCollector:
    """Prometheus collector: per route, shadow runs, compared, matched and the match ratio,
    read from the journal when scraped."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        stats = per_route(comparisons(self.journal))
        families = {
            "runs": GaugeMetricFamily("runbook_shadow_runs", "shadow runs, per route",
                                      labels=["route"]),
            "compared": GaugeMetricFamily(
                "runbook_shadow_compared", "shadow runs followed by a settled non-shadow run "
                "of the same playbook on the same targets", labels=["route"]),
            "matched": GaugeMetricFamily(
                "runbook_shadow_matched", "of those, the ones whose would-be remedies equal "
                "the remedies people approved", labels=["route"]),
            "match_ratio": GaugeMetricFamily(
                "runbook_shadow_match_ratio", "matched / compared", labels=["route"]),
        }
        for route, values in stats.items():
            for key, family in families.items():
                if values[key] is not None:
                    family.add_metric([route], float(values[key]))
        yield from families.values()
