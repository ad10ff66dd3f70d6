"""The Approve and Decline buttons under a proposed remedy in Slack (Block Kit `actions`).

Each proposal shows exactly what would run (the action, its target and its resolved
arguments) with the short fingerprint; both buttons carry the run, the remedy and that short
fingerprint, so a click decides only the proposal it was shown. The daemon's Slack app
(`runner/daemon/slackapp.py`) reads the click back with the same names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

APPROVE, DECLINE = "runbook_approve", "runbook_decline"  # the buttons' action_id
SHORT = 16  # hex digits of a fingerprint shown and carried by a button
SECTION_TEXT = 3000  # Block Kit: a section's text
MAX_PROPOSALS = 10  # two blocks each, well within a message's 50
CUT = " … (cut: the run has it all)"


def short(fingerprint: str) -> str:
    return fingerprint[:SHORT]


def escape(text: object) -> str:
    """mrkdwn's three control characters, so nothing from a run becomes a mention or link."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def block_id(run_id: str, remedy_id: str) -> str:
    return f"runbook:{run_id}:{remedy_id}"[:255]


def value(run_id: str, remedy_id: str, fingerprint: str) -> str:
    return json.dumps({"run": run_id, "remedy": remedy_id, "fp": short(fingerprint)},
                      separators=(",", ":"))


def _fit(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit - len(CUT)]
    entity = cut.rfind("&")
    if entity >= 0 and ";" not in cut[entity:]:
        cut = cut[:entity]  # never half an `&amp;`
    return cut + CUT


def proposal_blocks(run_id: str, proposals: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """For each proposed remedy (id, kind, target, args, fingerprint, explain): what would
    run, and its buttons."""
    blocks: list[dict[str, Any]] = []
    for proposal in proposals[:MAX_PROPOSALS]:
        remedy, fingerprint = str(proposal["id"]), str(proposal["fingerprint"])
        args = json.dumps(proposal.get("args") or {}, sort_keys=True, default=str)
        explain = f"\n{escape(proposal['explain'])}" if proposal.get("explain") else ""
        tail = f"\nfingerprint `{short(fingerprint)}`"
        text = _fit(f"*Proposed: {escape(remedy)}*{explain}\naction `{escape(proposal['kind'])}`"
                    f" on `{escape(proposal['target'])}`\nwith `{escape(args)}`",
                    SECTION_TEXT - len(tail))
        carried = value(run_id, remedy, fingerprint)
        blocks += [
            {"type": "section", "text": {"type": "mrkdwn", "text": text + tail}},
            {"type": "actions", "block_id": block_id(run_id, remedy), "elements": [
                {"type": "button", "action_id": APPROVE, "style": "primary", "value": carried,
                 "text": {"type": "plain_text", "text": "Approve"},
                 "confirm": {"title": {"type": "plain_text", "text": "Run this remedy?"},
                             "text": {"type": "plain_text", "text": (
                                 f"{remedy}: {proposal['kind']} on {proposal['target']} "
                                 f"({short(fingerprint)})")[:300]},
                             "confirm": {"type": "plain_text", "text": "Approve"},
                             "deny": {"type": "plain_text", "text": "Cancel"}}},
                {"type": "button", "action_id": DECLINE, "style": "danger", "value": carried,
                 "text": {"type": "plain_text", "text": "Decline"}}]},
        ]
    return blocks


def approval_blocks(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The buttons of every remedy a run (as `RunState.to_json()` shows it) has proposed."""
    return proposal_blocks(str(run.get("run_id", "")),
                           [r for r in run.get("remedies") or [] if r.get("status") == "proposed"
                            and r.get("fingerprint")])
