"""Notifications to the incident channel: a Slack incoming webhook (Block Kit) and a
generic JSON webhook, in the seed runbooks' three shapes: INCIDENT ALERT, UPDATE, RESOLVED.

Sending retries with back-off; a notification that still fails is recorded on the run and
never fails it. Secrets are scrubbed from every message; the Slack URL itself is one.

Slack reads `<...>` in mrkdwn as mentions and links (`<!channel>`, `<http://x|click>`), so
everything that came from an alert or a system (annotations, labels, findings, errors, log
lines) is escaped (`&`, `<`, `>`) before runbook adds its own markup. Messages are cut to
Slack's limits (3000 characters a section, 2000 a field, 50 blocks) with a marker, since
Slack refuses the whole message otherwise.

Links the sender gave (the alert's group and a silence in Alertmanager or Grafana, each
alert's `generatorURL`) are the only links runbook makes: http(s) only (checked at intake),
built here as `<url|label>` with the URL and label escaped, so no alert text becomes markup.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

from ..journal import Journal
from ..redact import SECRETS
from ..state import RunState
from ..vocabulary import EventKind, RemedyStatus, Verdict
from .alerts import Alert
from .config import Notify


def _since(start: str | None) -> str:
    if not start:
        return "?"
    seconds = (datetime.now(UTC) - datetime.fromisoformat(start)).total_seconds()
    from ..durations import format_duration

    return format_duration(max(seconds, 0))


def _service(state: RunState) -> str:
    return ", ".join(f"{t['name']}" for t in state.targets.values()) or "?"


MAX_LINKS = 20  # a group of hundreds of alerts must not bury the message in links


def links(alerts: list[Alert]) -> list[dict[str, str]]:
    """Where to look: the group in its sender's UI, a silence, each alert's source; once
    each, in the alerts' order."""
    found: list[dict[str, str]] = []
    seen: set[str] = set()
    for alert in alerts:
        sender = "Grafana" if alert.source == "grafana" else "Alertmanager"
        for text, url in ((f"Open in {sender}", alert.group_url),
                          (f"Silence {alert.name}", alert.silence_url),
                          (f"Source of {alert.name}", alert.generator_url)):
            if url and url not in seen and len(found) < MAX_LINKS:
                seen.add(url)
                found.append({"text": text, "url": url})
    return found


def notes(alerts: list[Alert]) -> list[str]:
    """What the sender left out: `truncatedAlerts` of the request the alerts came in."""
    truncated = max((a.truncated_alerts for a in alerts), default=0)
    if not truncated:
        return []
    sender = "Grafana" if any(a.source == "grafana" for a in alerts) else "Alertmanager"
    return [f"{truncated} more alert(s) were truncated by {sender} (its max_alerts): this run "
            "saw only the alerts it was sent; the sender's UI lists them all"]


def incident(state: RunState, alerts: list[Alert]) -> dict[str, Any]:
    """INCIDENT ALERT: severity, service, started, impact, symptoms, and what waits."""
    fired = state.fired()
    first = alerts[0] if alerts else None
    started = first.starts_at.isoformat() if first and first.starts_at else state.started_at
    symptoms = "; ".join(sorted({a.annotations.get("summary") or a.name for a in alerts}))
    return {
        "kind": "incident",
        "title": f"INCIDENT ALERT [{state.severity}] {state.playbook}",
        "fields": {
            "Severity": state.severity,
            "Service": _service(state),
            "Started": started,
            "Impact": state.summary,
            "Symptoms": symptoms or "(no alert annotations)",
        },
        # "Nothing wrong" only when every check ran; else the gaps below say what did not.
        "found": [f"[{f.severity}] {f.message}" for f in fired] or (
            ["nothing wrong found"] if state.verdict() == Verdict.NOTHING_FOUND
            else ["INCONCLUSIVE: nothing found, but some checks could not run"]),
        "not_checked": [f"{gap['id']}: {gap['reason']}" for gap in state.could_not_check()],
        "waiting": [f"{r.id}: {r.explain or r.kind}" for r in state.remedies.values()
                    if r.status == RemedyStatus.PROPOSED],
        "next": (f"approve: POST /v1/runs/{state.run_id}/approvals or "
                 f"`runbook approve {state.run_id} REMEDY`"),
        "notes": notes(alerts),
        "links": links(alerts),
        "run": state.to_json(),
    }


def update(state: RunState) -> dict[str, Any]:
    """UPDATE: status, what was found or done, next step."""
    done = [f"{r.id}: {r.status}" + (f" (approved by {r.approved_by})" if r.approved_by else "")
            for r in state.remedies.values() if r.status not in {RemedyStatus.NOT_NEEDED,
                                                                RemedyStatus.PROPOSED}]
    checks = [f"{v.id}: {v.status}" for v in state.verify.values()]
    waiting = [r.id for r in state.remedies.values() if r.status == RemedyStatus.PROPOSED]
    return {
        "kind": "update",
        "title": f"UPDATE [{state.severity}] {state.playbook}: {state.status}",
        "fields": {"Status": state.status, "Service": _service(state)},
        "found": [f"[{f.severity}] {f.message}" for f in state.fired()],
        "done": done + checks,
        "next": f"waiting for approval of {', '.join(waiting)}" if waiting else "nothing waits",
        "run": state.to_json(),
    }


def resolved(state: RunState, alerts: list[Alert]) -> dict[str, Any]:
    """RESOLVED: duration (from the first alert), summary, resolution."""
    starts = [a.starts_at for a in alerts if a.starts_at]
    remedies = [f"{r.id} ({r.approved_by})" for r in state.remedies.values()
                if r.status == RemedyStatus.SUCCEEDED]
    return {
        "kind": "resolved",
        "title": f"RESOLVED [{state.severity}] {state.playbook}",
        "fields": {
            "Duration": _since(min(starts).isoformat() if starts else state.started_at),
            "Summary": state.summary,
            "Resolution": ", ".join(remedies) or "resolved without a remedy from runbook",
        },
        "found": [f"[{f.severity}] {f.message}" for f in state.fired()],
        "links": links(alerts),
        "run": state.to_json(),
    }


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


def slack_blocks(message: dict[str, Any]) -> dict[str, Any]:
    """Block Kit: a header, the fields, then what was found / done / waits; everything from
    outside escaped, everything within Slack's limits."""
    fields = [{"type": "mrkdwn",
               "text": fit(f"*{mrkdwn_escape(k)}*\n{mrkdwn_escape(v)}", SLACK_FIELD_TEXT)}
              for k, v in message["fields"].items()]
    title = str(message["title"])
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text",  # plain: Slack parses no markup
                                    "text": fit(title, SLACK_HEADER_TEXT)}},
        {"type": "section", "fields": fields[:SLACK_FIELDS]},
    ]
    for key, label in (("found", "Found"), ("not_checked", "Could not check"),
                       ("done", "Done"), ("waiting", "Waiting for approval"), ("notes", "Note")):
        if message.get(key):
            blocks += _sections(label, list(message[key]))
    if message.get("links"):
        blocks.append(_link_section(list(message["links"])))
    closing = ([{"type": "context", "elements": [{"type": "mrkdwn", "text": fit(
        mrkdwn_escape(message["next"]), SLACK_SECTION_TEXT)}]}] if message.get("next") else [])
    room = SLACK_BLOCKS - len(closing)
    if len(blocks) > room:
        left_out = len(blocks) - (room - 1)
        blocks = blocks[:room - 1] + [{"type": "section", "text": {
            "type": "mrkdwn", "text": f"… {left_out} more section(s) cut: the run has it all"}}]
    # the top-level text is mrkdwn too (notifications show it)
    return {"text": fit(mrkdwn_escape(title), SLACK_SECTION_TEXT), "blocks": blocks + closing}


class Notifier:
    def __init__(self, channels: list[Notify], journal: Journal) -> None:
        self.channels, self.journal = channels, journal

    def send(self, run_id: str, message: dict[str, Any]) -> int:
        """Send to every channel; return how many failed (each is journaled on the run)."""
        failures = 0
        for channel in self.channels:
            # Masked before Slack's escaping, which would hide `p<ss` from the mask as `p&lt;ss`;
            # with every run's secrets, as a notification is never read back.
            clean = SECRETS.scrub_output(message)
            payload = slack_blocks(clean) if channel.kind == "slack" else clean
            error = self._post(channel, payload)
            event = {"channel": channel.kind, "message": message["kind"]}
            if error:
                failures += 1
                self.journal.append(run_id, EventKind.NOTIFY_FAILED, {**event, "error": error})
            else:
                self.journal.append(run_id, EventKind.NOTIFY_SENT, event)
        return failures

    @staticmethod
    def _post(channel: Notify, payload: dict[str, Any]) -> str | None:
        """None when delivered; else the last error, after the retries."""
        try:
            url = channel.resolved_url()
        except Exception as exc:  # a missing URL is a failed notification
            return str(exc)
        SECRETS.register(url if channel.url_env else None)
        body = json.dumps(payload, default=str).encode()
        error = "not sent"
        for attempt in range(channel.retries + 1):
            if attempt:
                time.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
            request = urllib.request.Request(url, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                # the URL comes from the daemon config: http(s) only by construction
                with urllib.request.urlopen(request, timeout=channel.timeout) as answer:
                    if 200 <= answer.status < 300:
                        return None
                    error = f"HTTP {answer.status}"
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code}"
                if 400 <= exc.code < 500 and exc.code != 429:
                    break  # the request itself is wrong: retrying cannot help
            except (urllib.error.URLError, OSError) as exc:
                error = str(getattr(exc, "reason", exc))
        return str(SECRETS.scrub_output(error))
