"""How the command line shows things: a step kind's mark, a run's report, live progress,
and the approval prompt at a terminal."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ..vocabulary import APPROVAL_NOTES, EventKind

if TYPE_CHECKING:
    from ..state import Event, RunState


def mark(kind: Any) -> str:
    """How a step kind is shown: read-only, or read-only on its author's word."""
    if kind.mutating:
        return "MUTATING "
    return "read-only (marked by the playbook's author)" if kind.read_only_by_author \
        else "read-only"


def emit(document: Any) -> None:
    """`--format json`: one JSON document on stdout (its shape is documented in the README)."""
    import json

    print(json.dumps(document, indent=2, default=str))


def print_state(fmt: str, state: RunState) -> None:
    from .. import report

    if fmt == "json":
        print(report.as_json(state))
    elif fmt == "markdown":
        print(report.markdown(state), end="")
    else:
        print(report.text(state), end="")


def progress(event: Event) -> None:
    data = event.data
    if event.type == EventKind.STEP_STARTED:
        attempt = f" (attempt {data['attempt']})" if data.get("attempt", 1) > 1 else ""
        print(f"  ...     {data['step']}  {data['kind']} on {data['target']}{attempt}",
              file=sys.stderr)
    elif event.type == EventKind.STEP_FINISHED:
        from ..durations import format_duration

        took = data.get("duration_ms")
        took_text = format_duration(took / 1000) if took is not None else ""
        error = f"  {data['error']}" if data.get("error") else ""
        print(f"  {data['status']:<7} {data['step']}  {took_text}{error}", file=sys.stderr)
    elif event.type == EventKind.REMEDY_STARTED:
        print(f"  ...     remedy {data['remedy']}", file=sys.stderr)
    elif event.type == EventKind.REMEDY_FINISHED:
        print(f"  {data['status']:<7} remedy {data['remedy']}", file=sys.stderr)
    elif event.type == EventKind.VERIFY_STARTED:
        print(f"  ...     verify {data['verify']}", file=sys.stderr)
    elif event.type in APPROVAL_NOTES:
        print(f"  {event.type.split('.')[1]:<7} approval of {data['remedy']}: {data['reason']}",
              file=sys.stderr)


def ask(proposal: Any) -> bool:
    import json

    print(f"\nremedy {proposal.remedy}: {proposal.kind} on {proposal.target}", file=sys.stderr)
    if proposal.explain:
        print(f"  {proposal.explain}", file=sys.stderr)
    for key, value in proposal.args.items():
        print(f"  {key}: {json.dumps(value, default=str)}", file=sys.stderr)
    for key, value in proposal.identity.items():  # what the target's name resolves to now
        print(f"  acts on {key}: {value}", file=sys.stderr)
    print(f"  fingerprint {proposal.fingerprint}", file=sys.stderr)
    print("Run it? [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    return answer in {"y", "yes"}
