"""One message to one sink over HTTP, retried with back-off: a webhook (Slack's incoming
webhook or a generic one: a JSON POST, any 2xx is delivered) or Slack's Web API with a bot
token (`chat.postMessage`, JSON, `Authorization: Bearer`; Slack answers HTTP 200 with
`{"ok": false, "error": ...}` for a refusal, so `ok` decides).

A 429 is waited out for as long as its `Retry-After` asks (never less than the back-off);
one that asks for longer than the sink's `max_retry_after` ends the attempt, recorded, for a
later retry. A refusal no retry can change (4xx, `invalid_auth`, `channel_not_found`,
`invalid_blocks`) is not retried. `sleep` is injectable: tests measure the waits, not the
wall clock.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..redact import SECRETS
from .config import Sink

Sleep = Callable[[float], None]
# Slack's answers a retry cannot change.
PERMANENT = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked",
                       "channel_not_found", "not_in_channel", "is_archived", "invalid_blocks",
                       "no_text", "msg_too_long", "missing_scope", "cannot_reply_to_message",
                       "invalid_arguments", "message_not_found"})


@dataclass
class Delivery:
    error: str | None = "not sent"  # None: delivered
    ts: str | None = None  # Slack's id of the posted message (Web API)
    channel: str | None = None  # the channel's id, as Slack answered
    attempts: int = 0
    waits: list[float] = field(default_factory=list)  # each pause before a retry, seconds

    @property
    def delivered(self) -> bool:
        return self.error is None


@dataclass
class _Answer:
    status: int
    body: bytes
    retry_after: float | None = None
    error: str | None = None  # the connection's, when there was no answer


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> _Answer:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        # the URL comes from the config, http(s) only by validation
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return _Answer(answer.status, answer.read())
    except urllib.error.HTTPError as exc:
        return _Answer(exc.code, exc.read(), _seconds(exc.headers.get("Retry-After")))
    except (urllib.error.URLError, OSError) as exc:
        return _Answer(0, b"", error=str(getattr(exc, "reason", exc)))


def _seconds(header: str | None) -> float | None:
    try:
        return max(float(str(header)), 0.0) if header is not None else None
    except ValueError:
        return None


def backoff(attempt: int) -> float:
    return float(min(0.5 * 2 ** (attempt - 1), 8.0))


def _judge(sink: Sink, answer: _Answer, delivery: Delivery) -> bool:
    """Fill `delivery` from one answer; True when another attempt may help."""
    if answer.error is not None:
        delivery.error = answer.error
        return True
    if sink.bot:
        try:
            reply = json.loads(answer.body or b"{}")
        except ValueError:
            reply = {}
        if 200 <= answer.status < 300 and reply.get("ok") is True:
            delivery.error, delivery.ts = None, str(reply.get("ts") or "") or None
            delivery.channel = reply.get("channel")
            return False
        word = reply.get("error") if isinstance(reply, dict) else None
        delivery.error = f"HTTP {answer.status}" + (f" {word}" if word else "")
        if word in PERMANENT:
            return False
    elif 200 <= answer.status < 300:
        delivery.error = None
        return False
    else:
        delivery.error = f"HTTP {answer.status}"
    # the request itself is wrong: retrying cannot help
    return not (400 <= answer.status < 500 and answer.status != 429)


def deliver(sink: Sink, payload: dict[str, Any], *, thread_ts: str | None = None,
            sleep: Sleep = time.sleep) -> Delivery:
    """Post `payload` (Block Kit for Slack, the message itself for a webhook), retrying;
    the error in the result is scrubbed of secrets."""
    delivery = Delivery()
    try:
        if sink.bot:
            token = sink.token()
            SECRETS.register(token)
            url = sink.api_url.rstrip("/") + "/chat.postMessage"
            payload = {"channel": sink.channel, **payload,
                       **({"thread_ts": thread_ts} if thread_ts else {})}
            headers = {"Content-Type": "application/json; charset=utf-8",
                       "Authorization": f"Bearer {token}"}
        else:
            url = sink.resolved_url()
            SECRETS.register(url if sink.url_env else None)
            headers = {"Content-Type": "application/json"}
    except Exception as exc:  # a missing URL or token is a failed notification
        delivery.error = str(exc)
        return delivery
    body = json.dumps(payload, default=str).encode()
    wait = 0.0
    for attempt in range(sink.retries + 1):
        if attempt:
            delivery.waits.append(wait)
            sleep(wait)
        delivery.attempts += 1
        answer = _post(url, body, headers, sink.timeout)
        if not _judge(sink, answer, delivery):
            break
        wait = max(backoff(attempt + 1), answer.retry_after or 0.0)
        if answer.status == 429 and (answer.retry_after or 0) > sink.max_retry_after:
            delivery.error = (f"{delivery.error}: Retry-After {answer.retry_after:g}s is "
                              f"longer than {sink.max_retry_after:g}s; retried later")
            break
    delivery.error = None if delivery.error is None else str(SECRETS.scrub_output(
        delivery.error))
    return delivery
