"""A local stand-in for a Slack incoming webhook, on loopback, that checks what Slack checks.

It speaks the webhook protocol (a JSON POST; `200 ok`, or `400` with Slack's error word) and
refuses, as Slack does, a message that breaks Block Kit's limits:

    no `text` and no `blocks`                   -> 400 no_text
    more than 50 blocks                         -> 400 invalid_blocks
    a header's plain_text over 150 characters   -> 400 invalid_blocks
    a section's text over 3000 characters       -> 400 invalid_blocks
    a section with more than 10 fields, or a
      field's text over 2000 characters         -> 400 invalid_blocks
    a context with more than 10 elements, or an
      element's text over 3000 characters       -> 400 invalid_blocks
    actions with more than 25 elements, or a
      button over its limits (text 75, value
      2000, action_id 255, confirm's texts)     -> 400 invalid_blocks

It also reads every mrkdwn text as Slack would render it and records each `<...>` control
sequence it finds (`<!channel>`, `<@U123>`, `<http://x|label>`) in `controls`: a test of
escaping asserts there are none it did not mean. `status` forces an answer (a channel that
fails).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support.loopback import QuietHandler, serving

_CONTROL = re.compile(r"<[^<>]*>")


@dataclass
class SlackStandIn:
    status: int = 200  # forced answer when not 200
    got: list[dict[str, Any]] = field(default_factory=list)  # every message, accepted or not
    refused: list[str] = field(default_factory=list)  # why a message was refused
    controls: list[str] = field(default_factory=list)  # <...> sequences Slack would act on
    url: str = ""

    def wait_for(self, check: Callable[[list[dict[str, Any]]], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not check(self.got):
            assert time.monotonic() < deadline, f"the Slack stand-in got only {self.got}"
            time.sleep(0.05)

    def judge(self, message: Any) -> str | None:
        """Slack's error word for `message`, or None when Slack would post it."""
        if not isinstance(message, dict) or not (message.get("text") or message.get("blocks")):
            return "no_text"
        if message.get("text"):
            self._read_mrkdwn(str(message["text"]))
        blocks = message.get("blocks") or []
        if len(blocks) > 50:
            return "invalid_blocks"
        return next((problem for block in blocks if (problem := self._block(block))), None)

    def _block(self, block: dict[str, Any]) -> str | None:
        kind = block.get("type")
        if kind == "header":
            text = block["text"]
            return None if text["type"] == "plain_text" and len(text["text"]) <= 150 \
                else "invalid_blocks"
        if kind == "section":
            fields = block.get("fields", [])
            if len(fields) > 10 or any(len(f["text"]) > 2000 for f in fields):
                return "invalid_blocks"
            if "text" in block and len(block["text"]["text"]) > 3000:
                return "invalid_blocks"
            for text in [*fields, *([block["text"]] if "text" in block else [])]:
                self._text(text)
            return None if fields or "text" in block else "invalid_blocks"
        if kind == "actions":  # buttons: at most 25, each within Slack's field limits
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= 25 or len(block.get("block_id", "")) > 255:
                return "invalid_blocks"
            return next(("invalid_blocks" for e in elements if not _button_ok(e)), None)
        if kind == "context":
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= 10 or any(len(e["text"]) > 3000 for e in elements):
                return "invalid_blocks"
            for element in elements:
                self._text(element)
            return None
        return "invalid_blocks"

    def _text(self, text: dict[str, Any]) -> None:
        if text.get("type") == "mrkdwn":
            self._read_mrkdwn(text["text"])

    def _read_mrkdwn(self, text: str) -> None:
        self.controls += _CONTROL.findall(text)


def _button_ok(button: dict[str, Any]) -> bool:
    confirm = button.get("confirm") or {}
    limits = {"title": 100, "text": 300, "confirm": 30, "deny": 30}
    return (button.get("type") == "button" and 0 < len(button["text"]["text"]) <= 75
            and button["text"]["type"] == "plain_text"
            and len(button.get("value", "")) <= 2000 and 0 < len(button["action_id"]) <= 255
            and button.get("style", "primary") in {"primary", "danger"}
            and all(len(confirm[k]["text"]) <= n for k, n in limits.items() if k in confirm))


@contextmanager
def slack_stand_in() -> Iterator[SlackStandIn]:
    hook = SlackStandIn()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            try:
                message = json.loads(body)
            except ValueError:
                message = None
            hook.got.append(message)
            problem = hook.judge(message) if hook.status == 200 else "forced"
            if problem:
                hook.refused.append(problem)
            status = hook.status if hook.status != 200 else (400 if problem else 200)
            self.answer(status, (problem or "ok").encode(), "text/plain")

    with serving(Handler) as base:
        hook.url = f"{base}/services/T0/B0/x"
        yield hook
