"""Block Kit for Slack, within its limits and with everything from outside escaped.

Slack reads `<...>` in mrkdwn as mentions and links (`<!channel>`, `<http://x|click>`), so
everything that came from an alert or a system (annotations, labels, findings, errors, log
lines) and every rendered template is escaped (`&`, `<`, `>`) before runbook adds its own
markup. Messages are cut to Slack's limits (3000 characters a section, 2000 a field, 50
blocks) with a marker, since Slack refuses the whole message otherwise. The only mentions are
the ones a sink's config names (`mentions:`), on an INCIDENT ALERT.

Links the sender gave (the alert's group and a silence in Alertmanager or Grafana, each
alert's `generatorURL`) are the only links runbook makes: http(s) only (checked at intake),
built here as `<url|label>` with the URL and label escaped, so no alert text becomes markup.
"""

from __future__ import annotations

from typing import Any

from .buttons import approval_blocks

SLACK_SECTION_TEXT = 3000  # Block Kit: a section's text
SLACK_FIELD_TEXT = 2000  # a section field's text
SLACK_FIELDS = 10  # fields in one section
SLACK_HEADER_TEXT = 150  # a header's plain_text
SLACK_BLOCKS = 50  # blocks in one message
TRUNCATED = " … (cut: the run has it all)"


def mrkdwn_escape(text: object) -> str:
    """Text from outside runbook, shown as text: Slack's three control characters."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with a marker, never inside an `&amp;` entity."""
    if len(text) <= limit:
        return text
    cut = text[:limit - len(TRUNCATED)]
    entity = cut.rfind("&")
    if entity >= 0 and ";" not in cut[entity:]:
        cut = cut[:entity]
    return cut + TRUNCATED


def _link(link: dict[str, str]) -> str:
    """`<url|label>`: Slack's link, its three control characters escaped in both parts and
    `|` (which would end the URL) percent-encoded."""
    url = mrkdwn_escape(link["url"]).replace("|", "%7C")
    return f"<{url}|{mrkdwn_escape(link['text']).replace('|', '/')}>"


def _link_section(links: list[dict[str, str]]) -> dict[str, Any]:
    """The links as one section; one that would not fit is left out whole (a cut link is
    broken markup)."""
    text, left_out = "*Links*", 0
    for link in links:
        line = f"\n• {_link(link)}"
        if len(text) + len(line) > SLACK_SECTION_TEXT - 40:
            left_out += 1
            continue
        text += line
    if left_out:
        text += f"\n… {left_out} more link(s) in the run"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _sections(label: str, lines: list[Any]) -> list[dict[str, Any]]:
    """A list as one or more sections, each within Slack's section limit."""
    sections: list[dict[str, Any]] = []
    text, continued = f"*{label}*", f"*{label}* (continued)"
    for line in lines:
        item = fit(f"• {mrkdwn_escape(line)}", SLACK_SECTION_TEXT - len(continued) - 1)
        if len(text) + 1 + len(item) > SLACK_SECTION_TEXT:
            sections.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
            text = continued
        text += "\n" + item
    sections.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    return sections


def slack_blocks(message: dict[str, Any], mentions: list[str] | None = None) -> dict[str, Any]:
    """Block Kit: a header, the fields, then what was found / done / waits; everything from
    outside escaped, everything within Slack's limits. `mentions` (from the sink's config,
    checked there) lead the text."""
    fields = [{"type": "mrkdwn",
               "text": fit(f"*{mrkdwn_escape(k)}*\n{mrkdwn_escape(v)}", SLACK_FIELD_TEXT)}
              for k, v in message["fields"].items()]
    title = str(message["title"])
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text",  # plain: Slack parses no markup
                                    "text": fit(title, SLACK_HEADER_TEXT)}},
    ]
    if mentions:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": " ".join(mentions)}})
    if message.get("body"):
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": fit(
            mrkdwn_escape(message["body"]), SLACK_SECTION_TEXT)}})
    if fields:
        blocks.append({"type": "section", "fields": fields[:SLACK_FIELDS]})
    for key, label in (("found", "Found"), ("not_checked", "Could not check"),
                       ("done", "Done"), ("waiting", "Waiting for approval"), ("notes", "Note")):
        if message.get(key):
            blocks += _sections(label, list(message[key]))
    if message.get("links"):
        blocks.append(_link_section(list(message["links"])))
    run = message.get("run") or {}  # a proposal waiting: its Approve/Decline buttons
    buttons = approval_blocks(run) if message.get("kind") in {"incident", "update"} and \
        run.get("status") == "awaiting_approval" else []
    closing = buttons + ([{"type": "context", "elements": [{"type": "mrkdwn", "text": fit(
        mrkdwn_escape(message["next"]), SLACK_SECTION_TEXT)}]}] if message.get("next") else [])
    room = SLACK_BLOCKS - len(closing)
    if len(blocks) > room:
        left_out = len(blocks) - (room - 1)
        blocks = blocks[:room - 1] + [{"type": "section", "text": {
            "type": "mrkdwn", "text": f"… {left_out} more section(s) cut: the run has it all"}}]
    # the top-level text is mrkdwn too (notifications show it)
    text = fit(mrkdwn_escape(title), SLACK_SECTION_TEXT - 200)
    return {"text": " ".join([*(mentions or []), text]), "blocks": blocks + closing}
