"""Reports of a run: plain text for the terminal, Markdown for the run directory and chat,
JSON for machines. All three render the same `RunState`."""

from __future__ import annotations

import json
from typing import Any

from . import timeline
from .charts import charts_of, describe, spark_line
from .durations import format_duration
from .state import AWAITING, RunState
from .vocabulary import EventKind, RemedyStatus, RunStatus, StepStatus, Verdict

_STEP_MARK = {StepStatus.OK: "ok", StepStatus.FAILED: "FAILED", StepStatus.TIMEOUT: "TIMEOUT",
              StepStatus.SKIPPED: "skipped", StepStatus.RUNNING: "running",
              StepStatus.PENDING: "pending"}


def as_json(state: RunState) -> str:
    return json.dumps(state.to_json(), indent=2, default=str)


def _ms(value: float | None) -> str:
    return format_duration(value / 1000) if value is not None else "-"


def _args(args: dict[str, Any], limit: int = 160) -> str:
    text = json.dumps(args, default=str, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _identity(state: RunState, remedy: str, fingerprint: str) -> dict[str, Any]:
    """What the proposal's target resolved to when proposed (shown to the approver)."""
    for event in reversed(state.timeline):
        if event.type == EventKind.REMEDY_PROPOSED and event.data.get("remedy") == remedy \
                and event.data.get("fingerprint") == fingerprint:
            return dict(event.data.get("identity") or {})
    return {}


def _next_steps(state: RunState) -> list[str]:
    lines = []
    waiting = [r for r in state.remedies.values() if r.status == RemedyStatus.PROPOSED]
    if state.status == AWAITING and waiting:
        first = waiting[0]
        lines.append(f"runbook approve {state.run_id} {first.id} --as YOUR_NAME")
        lines.append(f"runbook resume {state.run_id}")
    elif state.status == RunStatus.INTERRUPTED:
        lines.append(f"runbook resume {state.run_id}")
    return lines


def _gap(gap: dict[str, str]) -> str:
    if gap["what"] == "finding":
        return f"finding {gap['id']}: {gap['reason']}"
    return f"{gap['id']} ({gap['kind']} on {gap['target']}): {gap['reason']}"


def _count(gaps: list[dict[str, str]]) -> str:
    """How many of each: "2 steps and 1 finding"."""
    counts = [(sum(g["what"] == what for g in gaps), what) for what in ("step", "finding")]
    return " and ".join(f"{n} {what}{'s' if n > 1 else ''}" for n, what in counts if n)


def _lead(state: RunState) -> list[str]:
    """What was found, or, when nothing was, first what could not be checked: never an
    all-clear that rests on checks that did not run."""
    verdict, gaps = state.verdict(), state.could_not_check()
    out: list[str] = []
    could_not = [f"  {_gap(gap)}" for gap in gaps]
    if verdict == Verdict.INCONCLUSIVE:
        out.append(f"INCONCLUSIVE: nothing found, but {_count(gaps)} could not be checked: "
                   "the problem may be there")
        out += ["COULD NOT CHECK", *could_not]
        return out
    if verdict == Verdict.NOTHING_FOUND:
        return ["FOUND nothing wrong (every check ran)" if state.findings
                else "FOUND nothing: the playbook has no findings to judge"]
    out.append("FOUND")
    for finding in state.fired():
        out.append(f"  [{finding.severity}] {finding.id}: {finding.message}")
        if finding.hint:
            out.append(f"      hint: {finding.hint}")
    if gaps:
        out += ["COULD NOT CHECK (so there may be more than the above)", *could_not]
    return out


def _markdown_lead(state: RunState) -> list[str]:
    verdict, gaps = state.verdict(), state.could_not_check()
    could_not = ["", "## Could not check", ""] + [f"- {_gap(gap)}" for gap in gaps]
    if verdict == Verdict.INCONCLUSIVE:
        return ["", f"**Inconclusive**: nothing found, but {_count(gaps)} could not be "
                "checked: the problem may be there.", *could_not]
    out = ["", "## Findings", ""]
    if verdict == Verdict.NOTHING_FOUND:
        out.append("Nothing wrong found (every check ran)." if state.findings
                   else "No findings evaluated.")
    for finding in state.fired():
        out.append(f"- **{finding.severity} {finding.id}**: {finding.message}")
        if finding.hint:
            out.append(f"  - hint: {finding.hint}")
    if gaps:
        out += ["", "Some checks did not run, so there may be more than the above.", *could_not]
    return out


def text(state: RunState) -> str:
    """For a person at a terminal at 3 a.m.: what was found first, then the detail."""
    out: list[str] = []
    targets = ", ".join(f"{role}={t['name']}" for role, t in state.targets.items())
    out.append(f"{state.playbook} [{state.severity}]  run {state.run_id}  -> {state.status}")
    if targets:
        out.append(f"targets: {targets}")
    out.append("")
    out += _lead(state)
    if state.severity_why:  # after what was found: the rule that made it this severe
        out.append(f"SEVERITY {state.severity}: {state.severity_why}")
    if found := charts_of(state):  # what sampled over time, at a glance
        out += ["", "CHARTS", *[f"  {spark_line(series)}" for series in found]]
    out.append("")
    out.append("STEPS")
    width = max((len(s.id) for s in state.steps.values()), default=4)
    for step in state.steps.values():
        mark = _STEP_MARK.get(step.status, step.status)
        extra = f"  ({step.error})" if step.status == StepStatus.SKIPPED and step.error else ""
        note = step.result.get("note") if isinstance(step.result, dict) else None
        extra += f"  note: {note}" if note else ""
        out.append(f"  {mark:<8} {step.id:<{width}}  {step.kind}  {_ms(step.duration_ms)}{extra}")
    if state.remedies:
        out.append("")
        out.append("REMEDIES")
        idle = [r.id for r in state.remedies.values() if r.status == RemedyStatus.NOT_NEEDED]
        for remedy in state.remedies.values():
            if remedy.status == RemedyStatus.NOT_NEEDED:
                continue
            who = f" (approved by {remedy.approved_by})" if remedy.approved_by else ""
            out.append(f"  {remedy.status:<10} {remedy.id}: {remedy.kind} on {remedy.target}{who}")
            if remedy.explain:
                out.append(f"             {remedy.explain}")
            if remedy.status == RemedyStatus.PROPOSED:
                out.append(f"             args {_args(remedy.args)}")
                if identity := _identity(state, remedy.id, remedy.fingerprint):
                    out.append(f"             acts on {_args(identity)}")
                out.append(f"             fingerprint {remedy.fingerprint}")
            if remedy.result:
                out.append(f"             result {_args(remedy.result)}")
            if remedy.reason:  # a not-needed remedy was left out above
                out.append(f"             {remedy.reason}")
            if remedy.error:
                out.append(f"             error: {remedy.error}")
        if idle:
            out.append(f"  not needed: {', '.join(idle)}")
    if state.verify:
        out.append("")
        out.append("VERIFY")
        for check in state.verify.values():
            detail = f": {check.error}" if check.error else ""
            out.append(f"  {check.status:<8} {check.id} ({check.kind}, {check.checks} checks)"
                       f"{detail}")
    out += ["", "TIMELINE", *timeline.text_lines(timeline.entries(state))]
    if nexts := _next_steps(state):
        out.append("")
        out.append("NEXT")
        out += [f"  {line}" for line in nexts]
    return "\n".join(out) + "\n"


def markdown(state: RunState) -> str:
    out = [f"# {state.playbook}: {state.summary}", ""]
    out.append(f"- **Run** `{state.run_id}`, status **{state.status}**, severity "
               f"**{state.severity}**" + (f": {state.severity_why}" if state.severity_why else ""))
    out.append(f"- **Started** {state.started_at} by {state.requested_by or '?'} "
               f"({state.trigger or '?'})")
    for role, target in state.targets.items():
        out.append(f"- **Target** {role}: `{target['name']}` ({target['kind']})")
    out += _markdown_lead(state)
    if found := charts_of(state):  # the SVGs beside report.md, in evidence/
        out += ["", "## Charts", ""]
        out += [f"![{describe(s)}](evidence/{s.step}.svg)" for s in found]
    out += ["", "## Steps", "", "| step | kind | target | status | time |", "|---|---|---|---|---|"]
    for step in state.steps.values():
        out.append(f"| `{step.id}` | {step.kind} | {step.target} | {step.status} | "
                   f"{_ms(step.duration_ms)} |")
    if state.remedies:
        out += ["", "## Remedies", ""]
        for remedy in state.remedies.values():
            who = f", approved by {remedy.approved_by}" if remedy.approved_by else ""
            out.append(f"- **{remedy.id}** ({remedy.kind} on {remedy.target}): "
                       f"{remedy.status}{who}")
            if remedy.explain:
                out.append(f"  - {remedy.explain}")
            out.append(f"  - args: `{_args(remedy.args, 400)}`")
            if remedy.reason:
                out.append(f"  - {remedy.reason}")
            if remedy.result:
                out.append(f"  - result: `{_args(remedy.result, 400)}`")
            if remedy.error:
                out.append(f"  - error: {remedy.error}")
    if state.verify:
        out += ["", "## Verify", ""]
        for check in state.verify.values():
            out.append(f"- `{check.id}` ({check.kind}): {check.status} after {check.checks} "
                       f"checks{': ' + check.error if check.error else ''}")
    if nexts := _next_steps(state):
        out += ["", "## Next", ""] + [f"    {line}" for line in nexts]
    out += ["", "## Timeline", "", *timeline.markdown_lines(timeline.entries(state))]
    return "\n".join(out) + "\n"
