"""Reports of a run: plain text for the terminal, Markdown for the run directory and chat,
JSON for machines. All three render the same `RunState`."""

from __future__ import annotations

import json
from typing import Any

from .durations import format_duration
from .state import AWAITING, RunState
from .vocabulary import EventKind, FindingStatus, RemedyStatus, RunStatus, StepStatus

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


def text(state: RunState) -> str:
    """For a person at a terminal at 3 a.m.: what was found first, then the detail."""
    out: list[str] = []
    targets = ", ".join(f"{role}={t['name']}" for role, t in state.targets.items())
    out.append(f"{state.playbook} [{state.severity}]  run {state.run_id}  -> {state.status}")
    if targets:
        out.append(f"targets: {targets}")
    out.append("")
    fired = state.fired()
    unknown = [f for f in state.findings.values() if f.status == FindingStatus.UNKNOWN]
    if fired:
        out.append("FOUND")
        for finding in fired:
            out.append(f"  [{finding.severity}] {finding.id}: {finding.message}")
            if finding.hint:
                out.append(f"      hint: {finding.hint}")
    elif state.findings:
        out.append("FOUND nothing wrong")
    problems = state.not_checked()
    if problems or unknown:
        out.append("COULD NOT CHECK")
        for step in problems:
            out.append(f"  {step.id} ({step.kind} on {step.target}): {step.error}")
        for finding in unknown:
            out.append(f"  finding {finding.id}: {finding.reason}")
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
            if remedy.reason and remedy.status != RemedyStatus.NOT_NEEDED:
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
    if nexts := _next_steps(state):
        out.append("")
        out.append("NEXT")
        out += [f"  {line}" for line in nexts]
    return "\n".join(out) + "\n"


def markdown(state: RunState) -> str:
    out = [f"# {state.playbook}: {state.summary}", ""]
    out.append(f"- **Run** `{state.run_id}`, status **{state.status}**, severity "
               f"**{state.severity}**")
    out.append(f"- **Started** {state.started_at} by {state.requested_by or '?'} "
               f"({state.trigger or '?'})")
    for role, target in state.targets.items():
        out.append(f"- **Target** {role}: `{target['name']}` ({target['kind']})")
    out += ["", "## Findings", ""]
    fired = state.fired()
    if not fired:
        out.append("Nothing wrong found." if state.findings else "No findings evaluated.")
    for finding in fired:
        out.append(f"- **{finding.severity} {finding.id}**: {finding.message}")
        if finding.hint:
            out.append(f"  - hint: {finding.hint}")
    problems = state.not_checked()
    unknown = [f for f in state.findings.values() if f.status == FindingStatus.UNKNOWN]
    if problems or unknown:
        out += ["", "## Could not check", ""]
        out += [f"- `{s.id}` ({s.kind} on {s.target}): {s.error}" for s in problems]
        out += [f"- finding `{f.id}`: {f.reason}" for f in unknown]
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
    out += ["", "## Timeline", ""]
    for event in state.timeline:
        subject = event.data.get("step") or event.data.get("remedy") or event.data.get(
            "finding") or event.data.get("verify") or ""
        status = event.data.get("status") or event.data.get("decision") or ""
        out.append(f"- {event.at} {event.type} {subject} {status}".rstrip())
    return "\n".join(out) + "\n"
