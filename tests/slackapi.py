"""A local stand-in for Slack's Web API, on loopback, speaking the real protocol.

Slack is unreachable from here, so tests talk to this instead. It answers the methods
runbook uses the way Slack documents them (https://api.slack.com/methods):

    POST {url}chat.postMessage   JSON or form body; `Authorization: Bearer xoxb-...`
        -> 200 {"ok": true, "channel": "C...", "ts": "1764670000.000100", "message": {...}}
    POST {url}chat.update        channel + ts of a message it posted
        -> 200 {"ok": true, "channel": "C...", "ts": "...", "text": "...", "message": {...}}

and, as Slack does, answers a refused call with HTTP 200 and `{"ok": false, "error": WORD}`:

    no Authorization (nor `token` in a form body)   not_authed
    a token other than `token`                       invalid_auth
    a channel it does not know (id, name or #name)   channel_not_found
    no `text` and no `blocks`                        no_text
    blocks that break Block Kit's limits             invalid_blocks  (tests/slackhook.py judges)
    chat.update of a ts it never posted              message_not_found
    a reply (`thread_ts`) to a ts it never posted    cannot_reply_to_message (stricter than
                                                     Slack, which may post it unthreaded)

Rate limiting is Slack's too: while `ratelimit` > 0 each call is answered `429` with a
`Retry-After: {retry_after}` header and `{"ok": false, "error": "ratelimited"}` (and
`ratelimit` counts down). `down` > 0 answers `503` that many times (a sink that is down).

Every call is kept in `calls` (method, body, whether it was authorised); every message Slack
would show is in `messages` (in posting order, current text after chat.update), and every
mrkdwn `<...>` control sequence Slack would act on (`<!channel>`, `<@U1>`) in `controls`.

`click()` plays a person pressing a button in a message: it POSTs Slack's signed
`block_actions` interaction payload (form field `payload`, `X-Slack-Signature` v0 HMAC-SHA256
over `v0:{timestamp}:{body}`, `X-Slack-Request-Timestamp`) to the app's request URL.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.slackhook import SlackStandIn
from tests.support.loopback import QuietHandler, serving

TOKEN = "xoxb-0000000000-stand-in-token"


@dataclass
class SlackMessage:
    channel: str  # the channel's id, as Slack answers it
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    updates: int = 0  # how many times chat.update changed it
    body: dict[str, Any] = field(default_factory=dict)  # the last call's body, as sent

    def api(self) -> dict[str, Any]:
        """The message as Slack returns it in `message`."""
        shown: dict[str, Any] = {"type": "message", "user": "U0RUNBOOKBOT", "bot_id": "B0RUNBOOK",
                                 "text": self.text, "ts": self.ts, "blocks": self.blocks}
        if self.thread_ts:
            shown["thread_ts"] = self.thread_ts
        return shown


@dataclass
class SlackApiStandIn:
    token: str = TOKEN
    channels: dict[str, str] = field(default_factory=lambda: {
        "incidents": "C0INCIDENTS", "oncall": "C0ONCALL00", "status": "C0STATUS00"})
    ratelimit: int = 0  # the next N calls are answered 429
    retry_after: int = 1  # seconds, in the Retry-After header
    down: int = 0  # the next N calls are answered 503
    calls: list[dict[str, Any]] = field(default_factory=list)
    messages: list[SlackMessage] = field(default_factory=list)
    controls: list[str] = field(default_factory=list)
    url: str = ""  # ends in /api/: a method's URL is url + method
    _clock: Iterator[int] = field(default_factory=lambda: itertools.count(100))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def channel_id(self, name: str) -> str | None:
        name = name.lstrip("#")
        return name if name in self.channels.values() else self.channels.get(name)

    def thread(self, ts: str) -> list[SlackMessage]:
        """The replies to `ts`, in order."""
        return [m for m in self.messages if m.thread_ts == ts]

    def top_level(self) -> list[SlackMessage]:
        return [m for m in self.messages if m.thread_ts is None]

    def wait_for(self, check: Callable[[list[SlackMessage]], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not check(self.messages):
            assert time.monotonic() < deadline, f"the Slack stand-in has only {self.messages}"
            time.sleep(0.05)

    def answer(self, method: str, auth: str | None, body: dict[str, Any]) -> tuple[int, dict[
            str, Any], dict[str, str]]:
        """(HTTP status, JSON body, extra headers) for one call."""
        with self._lock:
            self.calls.append({"method": method, "body": body,
                               "authorised": auth == f"Bearer {self.token}"})
            if self.ratelimit > 0:
                self.ratelimit -= 1
                return 429, {"ok": False, "error": "ratelimited"}, {
                    "Retry-After": str(self.retry_after)}
            if self.down > 0:
                self.down -= 1
                return 503, {"ok": False, "error": "service_unavailable"}, {}
            token = auth.removeprefix("Bearer ") if auth and auth.startswith("Bearer ") \
                else body.get("token")
            if not token:
                return 200, {"ok": False, "error": "not_authed"}, {}
            if token != self.token:
                return 200, {"ok": False, "error": "invalid_auth"}, {}
            if method == "chat.postMessage":
                return 200, self._post(body), {}
            if method == "chat.update":
                return 200, self._update(body), {}
            return 404, {"ok": False, "error": "unknown_method"}, {}

    def _judge(self, body: dict[str, Any]) -> str | None:
        judge = SlackStandIn()
        problem = judge.judge({"text": body.get("text"), "blocks": body.get("blocks")})
        self.controls += judge.controls
        return problem

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self.channel_id(str(body.get("channel", "")))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        problem = self._judge(body)
        if problem:
            return {"ok": False, "error": problem}
        thread_ts = body.get("thread_ts") or None
        if thread_ts is not None and not any(
                m.ts == thread_ts and m.channel == channel and m.thread_ts is None
                for m in self.messages):
            return {"ok": False, "error": "cannot_reply_to_message"}
        ts = f"1764670000.{next(self._clock):06d}"
        message = SlackMessage(channel, ts, str(body.get("text") or ""),
                               list(body.get("blocks") or []), thread_ts, body=body)
        self.messages.append(message)
        return {"ok": True, "channel": channel, "ts": ts, "message": message.api()}

    def _update(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self.channel_id(str(body.get("channel", "")))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        found = next((m for m in self.messages
                      if m.channel == channel and m.ts == body.get("ts")), None)
        if found is None:
            return {"ok": False, "error": "message_not_found"}
        problem = self._judge(body)
        if problem:
            return {"ok": False, "error": problem}
        found.text = str(body.get("text") or "")
        found.blocks = list(body.get("blocks") or [])
        found.updates += 1
        found.body = body
        return {"ok": True, "channel": channel, "ts": found.ts, "text": found.text,
                "message": found.api()}

    def click(self, request_url: str, signing_secret: str, message: SlackMessage,
              action_id: str, value: str, *, user_id: str = "U0ALICE000",
              user_name: str = "alice", timestamp: int | None = None,
              signature: str | None = None) -> tuple[int, str]:
        """A person presses the button `action_id` in `message`: Slack's signed
        block_actions POST to the app. Returns (HTTP status, body) of the app's answer.
        `timestamp`/`signature` override the honest ones (a stale or forged request)."""
        block_id = next((b.get("block_id", "") for b in message.blocks
                         if any(e.get("action_id") == action_id
                                for e in b.get("elements", []))), "")
        payload = {
            "type": "block_actions", "api_app_id": "A0RUNBOOK0", "token": "deprecated",
            "trigger_id": f"1.{next(self._clock)}.abcdef",
            "team": {"id": "T0LAB00000", "domain": "lab"},
            "user": {"id": user_id, "username": user_name, "name": user_name,
                     "team_id": "T0LAB00000"},
            "container": {"type": "message", "message_ts": message.ts,
                          "channel_id": message.channel, "is_ephemeral": False},
            "channel": {"id": message.channel, "name": next(
                (n for n, i in self.channels.items() if i == message.channel), "")},
            "message": message.api(),
            "response_url": f"{self.url}response/{message.ts}",
            "actions": [{"type": "button", "action_id": action_id, "block_id": block_id,
                         "value": value, "action_ts": f"{time.time():.6f}"}],
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        honest = "v0=" + hmac.new(signing_secret.encode(), b"v0:" + stamp.encode() + b":" + body,
                                  hashlib.sha256).hexdigest()
        request = urllib.request.Request(request_url, data=body, method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": signature or honest})
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:  # loopback only
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


@contextmanager
def slack_api_stand_in(**settings: Any) -> Iterator[SlackApiStandIn]:
    api = SlackApiStandIn(**settings)

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            kind = self.headers.get("content-type", "").split(";")[0].strip()
            body: dict[str, Any] = {}
            try:
                if kind == "application/json":
                    body = json.loads(raw)
                else:  # Slack takes form bodies too; blocks then arrive as a JSON string
                    body = dict(urllib.parse.parse_qsl(raw.decode()))
                    if isinstance(body.get("blocks"), str):
                        body["blocks"] = json.loads(body["blocks"])
            except ValueError:
                body = {}
            method = self.path.rsplit("/", 1)[-1]
            status, answer, headers = api.answer(
                method, self.headers.get("Authorization"), body if isinstance(body, dict) else {})
            self.answer(status, json.dumps(answer).encode(), "application/json; charset=utf-8",
                        headers)

    with serving(Handler) as base:
        api.url = f"{base}/api/"
        yield api
