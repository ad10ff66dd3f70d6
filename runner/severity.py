"""Severity from impact: what a run's diagnosis says about how bad the incident is.

A playbook's `severity:` is a label (P0..P3, SEV1..SEV4) or a matrix of ordered rules over
the diagnosis (`steps`, `params`, `targets`, and `findings['id']`, true when that finding
fired); once the findings are concluded, the first rule that holds sets the run's severity
and its `why`. Without a matrix, or when no rule holds, the most severe finding that fired
sets it. A run in which no finding fired has no incident severity: NONE. The daemon's route
may raise the severity (its `severity:`), never lower it, and never make an incident of a
run that found nothing.

The result is one `severity` journal event (`EventKind.SEVERITY`), so the report, the
notifications and `runbook history` all say the same, with the rule that set it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import expressions
from .state import RunState
from .vocabulary import Verdict

if TYPE_CHECKING:
    from .plan import Plan

NONE = "none"  # no finding fired: no incident severity
# Where a run's journaled source says which route started it and at what severity.
ROUTE_KEY = "route_severity"


def rank(level: str) -> int:
    """0 for P0 (the worst) ... ; anything else (NONE, an old label) ranks below P4."""
    if len(level) == 2 and level[0] == "P" and level[1].isdigit():
        return int(level[1])
    return 99


def route_floor(route: str, level: str | None) -> dict[str, str] | None:
    """What a run started by `route` records so that its severity is at least `level`."""
    return {"route": route, "level": level} if level else None


def assess(plan: Plan, state: RunState, context: Mapping[str, Any]) -> dict[str, Any]:
    """The `severity` event's data for a run whose findings are concluded.

    `context` is what the findings were judged with (with `findings` filled in). A rule
    that cannot be judged (it reads a step that failed, a finding that is unknown) is
    passed over and listed under `unjudged`, so a reader sees that a worse level may hold.
    """
    book = plan.playbook
    fired = state.fired()
    if not fired:
        gaps = len(state.could_not_check())
        why = ("no finding fired: no incident" if state.verdict() == Verdict.NOTHING_FOUND
               else f"no finding fired, but {gaps} check(s) could not run: no incident "
               "severity until they can")
        return {"level": NONE, "why": why, "source": "none"}
    data: dict[str, Any] = {}
    unjudged: list[dict[str, Any]] = []
    for number, rule in enumerate(book.severity_rules, start=1):
        try:
            holds = bool(expressions.evaluate(rule.when, context))
        except expressions.ExpressionError as exc:
            unjudged.append({"rule": number, "level": rule.level, "reason": str(exc)[:500]})
            continue
        if holds:
            data = {"level": rule.level, "source": "rule", "rule": number, "when": rule.when,
                    "why": rule.why or f"rule {number} holds: {rule.when}"}
            break
    if not data:
        worst = fired[0]  # most severe first
        lead = "no severity rule holds; " if book.severity_rules else ""
        data = {"level": worst.severity, "source": "findings",
                "why": f"{lead}the most severe finding that fired, {worst.id}, is "
                       f"{worst.severity}"}
    if unjudged:
        data["unjudged"] = unjudged
    floor = plan.provenance.get(ROUTE_KEY)
    if isinstance(floor, Mapping) and rank(str(floor.get("level"))) < rank(data["level"]):
        computed = {"level": data["level"], "why": data["why"]}
        data = {**data, "level": floor["level"], "source": "route", "computed": computed,
                "why": f"raised to {floor['level']} by route {floor.get('route', '?')} "
                       f"(the diagnosis said {computed['level']}: {computed['why']})"}
    return data


def describe(state: RunState) -> str:
    """`P1: key endpoints failing` or `none: no finding fired: no incident`."""
    return f"{state.severity}: {state.severity_why}" if state.severity_why else state.severity
