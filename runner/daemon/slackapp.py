"""Approving from Slack: what the daemon does when Slack says one of the Approve and
Decline buttons under a proposal (`runner/comms/buttons.py`) was pressed
(`POST /v1/slack/interactions`, Slack's `block_actions` payload: a form body whose field
`payload` is JSON), and the few Web API calls the app makes (chat.update, chat.postMessage).

Slack signs every request with the app's signing secret
(https://api.slack.com/authentication/verifying-requests-from-slack):

    X-Slack-Request-Timestamp: <unix seconds>
    X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret, "v0:" + timestamp + ":" + raw body)>

A request is refused unless the signature matches (compared in constant time), its
timestamp is within 5 minutes of the daemon's clock, and the signature was never accepted
before (kept in the journal for those 5 minutes, so a replay is refused across restarts).

A click is a person's decision only when the Slack user is mapped to an approver name
(`slack_users`); it is recorded through the one approval path (`runner.approval.record`,
by way of `Daemon.approve`): the run waits, the remedy is proposed, the button's short
fingerprint is the proposal's now, the policy holds (who may approve, four-eyes; the TTL
at the gate). Then the message is updated (chat.update) with who decided and what follows;
a refusal is told to the person who clicked only (an ephemeral reply on `response_url`).
Attacker's tests: tests/unit/test_slack_approval*.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..approval import APPROVED, DECLINED, verdict
from ..comms.buttons import APPROVE, DECLINE, SHORT, block_id, short
from ..comms.buttons import escape as _escape
from ..errors import JournalError, UsageError
from ..journal import Approval, Journal
from ..redact import SECRETS
from ..vocabulary import EventKind
from .config import DaemonConfig, SlackApp

log = logging.getLogger("runbook.daemon.slack")

MAX_AGE = 300.0  # seconds: Slack's own rule for a request's timestamp

# Daemon.approve: (run, remedy, "approve"|"decline", approver, fingerprint, how) -> recorded
Decide = Callable[[str, str, str, str, str, str], Approval]


class Refused(Exception):
    """Why a request said to come from Slack was refused (said in the 401; no secret)."""


def signature_of(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body,
                      hashlib.sha256)
    return "v0=" + digest.hexdigest()


def check_signature(secret: str, headers: Mapping[str, str], body: bytes,
                    now: float) -> str:
    """The request's signature when Slack made it within the last 5 minutes; raises Refused."""
    stamp = headers.get("x-slack-request-timestamp", "")
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
        raise Refused("X-Slack-Request-Timestamp (unix seconds) is required")
    if abs(now - int(stamp)) > MAX_AGE:
        raise Refused(f"X-Slack-Request-Timestamp is {now - int(stamp):+.0f} s from the "
                      f"daemon's clock: at most {MAX_AGE:.0f} s either way is accepted")
    expected = signature_of(secret, stamp, body)
    if not hmac.compare_digest(headers.get("x-slack-signature", "").encode(),
                               expected.encode()):
        raise Refused("X-Slack-Signature does not match the app's signing secret")
    return expected


SCHEMA = """
CREATE TABLE IF NOT EXISTS slack_signatures (
    signature TEXT PRIMARY KEY, -- a request Slack signed, accepted once: again is a replay
    expires_at REAL NOT NULL    -- unix time after which its timestamp is refused anyway
);
"""


class Replays:
    """Signatures accepted within the last 5 minutes, in the journal's database."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        journal.extend_schema(SCHEMA)

    def first_time(self, signature: str, timestamp: int, now: float) -> bool:
        with self.journal.transaction() as db:
            db.execute("DELETE FROM slack_signatures WHERE expires_at < ?", (now,))
            return bool(db.execute("INSERT INTO slack_signatures VALUES (?,?) "
                                   "ON CONFLICT DO NOTHING",
                                   (signature, timestamp + MAX_AGE)).rowcount)


@dataclass(frozen=True)
class Click:
    """One press of a runbook button, as Slack's block_actions payload tells it."""

    user_id: str
    user_name: str
    decision: str  # "approve" or "decline", as Daemon.approve takes it
    run_id: str
    remedy: str
    fingerprint: str  # the short one the button carries
    channel: str
    message_ts: str
    message: dict[str, Any]  # the message as Slack showed it (text, blocks)
    response_url: str


def parse_click(body: bytes) -> Click:
    """Raises ValueError on anything but a press of one of runbook's buttons."""
    form = urllib.parse.parse_qs(body.decode("utf-8"), max_num_fields=10)
    payload = json.loads(form["payload"][0])
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        raise ValueError("not a block_actions interaction")
    action = (payload.get("actions") or [{}])[0]
    decision = {APPROVE: "approve", DECLINE: "decline"}.get(action.get("action_id"))
    if decision is None:
        raise ValueError(f"not a runbook button: {str(action.get('action_id'))[:60]!r}")
    value = json.loads(action["value"])
    user, container = payload["user"], payload.get("container") or {}
    message = payload.get("message") or {}
    return Click(str(user["id"]), str(user.get("username") or user.get("name") or ""),
                 decision, str(value["run"]), str(value["remedy"]), str(value["fp"]),
                 str(container.get("channel_id") or (payload.get("channel") or {}).get("id")),
                 str(container.get("message_ts") or message.get("ts") or ""),
                 message if isinstance(message, dict) else {},
                 str(payload.get("response_url") or ""))


class SlackError(Exception):
    """A Web API call that failed after its retries (Slack's error word, or the HTTP one)."""


class SlackApi:
    """The few Web API methods runbook calls with the bot token: JSON POSTs, `Retry-After`
    respected on a 429, `{"ok": false}` raised."""

    def __init__(self, app: SlackApp, token: str, retries: int = 2) -> None:
        self.app, self.token, self.retries = app, token, retries

    def call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.app.api_url.rstrip("/") + "/" + method
        answer = self._post(url, body, {"Authorization": f"Bearer {self.token}"})
        if not answer.get("ok"):
            raise SlackError(f"{method}: {answer.get('error', 'not ok')}")
        return answer

    def respond(self, response_url: str, text: str) -> None:
        """An ephemeral reply to the person who clicked (the URL is the credential)."""
        self._post(response_url, {"response_type": "ephemeral", "replace_original": False,
                                  "text": text}, {})

    def trusted(self, response_url: str) -> bool:
        """Slack's own hooks host, or the Web API's (a stand-in's): nowhere else."""
        host = urllib.parse.urlsplit(response_url).netloc
        return response_url.startswith(("https://", "http://")) and host in {
            "hooks.slack.com", urllib.parse.urlsplit(self.app.api_url).netloc}

    def _post(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        data = json.dumps(body, default=str).encode()
        error = "not sent"
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(url, data=data, method="POST", headers={
                "Content-Type": "application/json; charset=utf-8", **headers})
            try:
                # the URL is the configured api_url or Slack's trusted response_url
                with urllib.request.urlopen(request, timeout=self.app.timeout) as reply:
                    text = reply.read().decode("utf-8", "replace")
                    try:
                        answer = json.loads(text)
                    except ValueError:
                        answer = {"ok": text.strip() == "ok", "error": text[:200]}
                    return answer if isinstance(answer, dict) else {"ok": False}
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code}"
                if exc.code == 429 and attempt < self.retries:
                    wait = exc.headers.get("Retry-After", "1")
                    time.sleep(min(float(wait) if wait.isdigit() else 1.0, 30.0))
                    continue
                if 400 <= exc.code < 500:
                    break
            except (urllib.error.URLError, OSError) as exc:
                error = str(getattr(exc, "reason", exc))
            if attempt < self.retries:
                time.sleep(0.5 * 2 ** attempt)
        raise SlackError(str(SECRETS.scrub_output(error)))


def slack_api(config: DaemonConfig) -> SlackApi | None:
    """The Web API client of the configured Slack app, with its bot token from the env."""
    if config.slack_app is None:
        return None
    return SlackApi(config.slack_app, _secret(config.slack_app.bot_token_env))


def _secret(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise UsageError(f"{name} is not set: the daemon needs it (slack_app)")
    SECRETS.register(value)
    return value


class SlackApprovals:
    """Slack's interaction endpoint behind the HTTP route: authenticate, then decide."""

    def __init__(self, config: DaemonConfig, journal: Journal, decide: Decide) -> None:
        assert config.slack_app is not None
        self.config, self.journal, self.decide = config, journal, decide
        self.secret = _secret(config.slack_app.signing_secret_env)
        self.api = SlackApi(config.slack_app, _secret(config.slack_app.bot_token_env))
        self.replays = Replays(journal)

    def authenticate(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Raises Refused unless Slack signed this request within 5 minutes, once."""
        signature = check_signature(self.secret, headers, body, now)
        stamp = int(headers["x-slack-request-timestamp"])
        if not self.replays.first_time(signature, stamp, now):
            raise Refused("this request was accepted before: a replay")

    def handle(self, body: bytes) -> Callable[[], None]:
        """Record the click's decision (or refuse it); returns what to tell Slack, to be
        done after the 200 (Slack wants its answer within 3 seconds). ValueError: not a
        press of a runbook button."""
        click = parse_click(body)
        name = self.config.slack_users.get(click.user_id)
        if name is None:
            return self._refuse(click, f"slack:{click.user_id}", f"You (Slack user "
                                f"{click.user_id}) are not an approver in runbook's config "
                                "(slack_users): nothing was recorded.")
        try:
            state = self.journal.state(click.run_id)
        except JournalError:
            return self._tell(click, f"runbook has no run {click.run_id}: nothing recorded.")
        remedy = state.remedies.get(click.remedy)
        if remedy is None or not remedy.fingerprint.startswith(click.fingerprint) \
                or len(click.fingerprint) < SHORT:
            now_ = f" it is proposed now as `{short(remedy.fingerprint)}`" if remedy else ""
            return self._refuse(click, name, f"This button was for {click.remedy} "
                                f"`{click.fingerprint[:SHORT]}`; the proposal is not that one "
                                f"any more:{now_ or ' nothing of that name'}. Nothing was "
                                "recorded: look at the run again.")
        how = f"Slack button by {click.user_id} ({click.user_name}) in {click.channel}"
        try:
            approval = self.decide(click.run_id, click.remedy, click.decision, name,
                                   remedy.fingerprint, how)
        except (UsageError, PermissionError, JournalError) as exc:
            return self._refuse(click, name, f"Not recorded: {exc}")
        return lambda: self._update(click, approval)

    def _refuse(self, click: Click, by: str, text: str) -> Callable[[], None]:
        """A refused click is journaled on its run (who tried, why not), then told to the
        person who clicked."""
        try:
            self.journal.get_run(click.run_id)
        except JournalError:
            return self._tell(click, text)
        self.journal.append(click.run_id, EventKind.APPROVAL_REFUSED, {
            "remedy": click.remedy, "by": by, "how": "Slack button", "reason": text})
        return self._tell(click, text)

    def _tell(self, click: Click, text: str) -> Callable[[], None]:
        def tell() -> None:
            if not self.api.trusted(click.response_url):
                log.warning("not answering a Slack click on %r: not Slack's host",
                            click.response_url[:80])
                return
            try:
                self.api.respond(click.response_url, _escape(SECRETS.scrub_output(text)))
            except SlackError as exc:
                log.warning("could not answer a Slack click: %s", exc)
        return tell

    def outcome(self, approval: Approval) -> tuple[str, bool]:
        """What the message says now, and whether the buttons stay (another person must
        still approve)."""
        at = datetime.fromisoformat(approval.at).astimezone(UTC).strftime("%H:%M:%S UTC")
        who = f"{_escape(approval.by)} at {at}"
        if approval.decision == DECLINED:
            return f":x: *Declined* by {who}: it will not run.", False
        state = self.journal.state(approval.run_id)
        standing = verdict(self.journal, approval.run_id, approval.remedy, approval.fingerprint,
                           requested_by=state.requested_by, policy=self.config.policy())
        if standing.decision == APPROVED:
            return (f":white_check_mark: *Approved* by {who} "
                    f"({_escape(', '.join(standing.by))}): it runs now "
                    f"(`{short(approval.fingerprint)}`).", False)
        return (f":ballot_box_with_check: Approved by {who}; still waiting: "
                f"{_escape(standing.reason)}.", True)

    def _update(self, click: Click, approval: Approval) -> None:
        """chat.update of the clicked message: the note of who decided beside (or instead
        of) the buttons; journaled either way."""
        note, keep = self.outcome(approval)
        blocks = updated_blocks(list(click.message.get("blocks") or []),
                                block_id(click.run_id, click.remedy), note, keep)
        event = {"channel": "slack", "message": "approval"}
        try:
            self.api.call("chat.update", {"channel": click.channel, "ts": click.message_ts,
                                          "text": click.message.get("text") or note,
                                          "blocks": blocks})
        except SlackError as exc:
            log.warning("chat.update after a Slack approval failed: %s", exc)
            self.journal.append(click.run_id, EventKind.NOTIFY_FAILED,
                                {**event, "error": str(exc)})
            return
        self.journal.append(click.run_id, EventKind.NOTIFY_SENT, event)


def updated_blocks(blocks: list[dict[str, Any]], buttons: str, note: str,
                   keep_buttons: bool) -> list[dict[str, Any]]:
    """The message's blocks with `note` after the remedy's buttons (its earlier note
    replaced), or instead of them; at the end when the buttons are not there."""
    note_block = {"type": "context", "block_id": f"{buttons}:note"[:255],
                  "elements": [{"type": "mrkdwn", "text": note[:3000]}]}
    out: list[dict[str, Any]] = []
    placed = False
    for block in blocks:
        if block.get("block_id") == note_block["block_id"]:
            continue
        if block.get("block_id") == buttons:
            out += ([block] if keep_buttons else []) + [note_block]
            placed = True
            continue
        out.append(block)
    return out if placed else (out + [note_block])[-50:]
