"""A local stand-in for PagerDuty's Events API v2, on loopback, speaking its real protocol.

PagerDuty is unreachable from here, so escalation tests send their events to this instead.
It takes what https://events.pagerduty.com/v2/enqueue takes (PagerDuty's developer docs,
"Send an Alert Event" and "Events API v2 Overview") and answers as PagerDuty does:

    POST /v2/enqueue  a JSON event
        -> 202 {"status": "success", "message": "Event processed", "dedup_key": KEY}
           (KEY is the event's, or a new one for a trigger without it)
        -> 400 {"status": "invalid event", "message": "Event object is invalid",
                "errors": [...]}  when the body is not JSON, `routing_key` is not 32
           characters, `event_action` is not trigger/acknowledge/resolve, `dedup_key` is over
           255 characters or missing from an acknowledge/resolve, or a trigger's
           `payload.summary` (1..1024 characters), `payload.source` or `payload.severity`
           (critical, error, warning, info) is missing or wrong.

`status` forces an answer (429 or 500: PagerDuty busy or broken). Accepted events are in
`events`, refused ones with their errors in `refused`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support.loopback import QuietHandler, serving

ROUTING_KEY = "R0UT1NGKEY0STANDIN0000000000000A"  # 32 characters, as PagerDuty's are
SEVERITIES = {"critical", "error", "warning", "info"}


def problems(event: Any) -> list[str]:
    """What PagerDuty would say is wrong with `event` (nothing: it is accepted)."""
    if not isinstance(event, dict):
        return ["Event object is not a JSON object"]
    found = []
    if not isinstance(event.get("routing_key"), str) or len(event["routing_key"]) != 32:
        found.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in {"trigger", "acknowledge", "resolve"}:
        found.append("'event_action' is invalid (must be trigger, acknowledge or resolve)")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        found.append("'dedup_key' must be a string of at most 255 characters")
    if action in {"acknowledge", "resolve"} and not dedup:
        found.append("'dedup_key' is required for acknowledge and resolve")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return [*found, "'payload' is missing or not an object"]
        summary = payload.get("summary")
        if not isinstance(summary, str) or not 1 <= len(summary) <= 1024:
            found.append("'payload.summary' is missing or longer than 1024 characters")
        if not isinstance(payload.get("source"), str) or not payload["source"]:
            found.append("'payload.source' is missing")
        if payload.get("severity") not in SEVERITIES:
            found.append("'payload.severity' must be one of critical, error, warning, info")
    return found


@dataclass
class PagerDutyStandIn:
    status: int = 202  # forced answer when not 202
    events: list[dict[str, Any]] = field(default_factory=list)
    refused: list[list[str]] = field(default_factory=list)
    url: str = ""  # the enqueue URL

    def wait_for(self, check: Callable[[list[dict[str, Any]]], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not check(self.events):
            assert time.monotonic() < deadline, f"the PagerDuty stand-in got only {self.events}"
            time.sleep(0.05)

    def answer(self, path: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        if path != "/v2/enqueue":
            return 404, {"status": "not found", "message": f"no {path}"}
        if self.status != 202:
            return self.status, {"status": "throttled" if self.status == 429 else "error",
                                 "message": "forced by the test"}
        try:
            event = json.loads(raw)
        except ValueError:
            event = None
        wrong = problems(event)
        if wrong:
            self.refused.append(wrong)
            return 400, {"status": "invalid event", "message": "Event object is invalid",
                         "errors": wrong}
        assert isinstance(event, dict)
        event.setdefault("dedup_key", uuid.uuid4().hex)
        self.events.append(event)
        return 202, {"status": "success", "message": "Event processed",
                     "dedup_key": event["dedup_key"]}


@contextmanager
def pagerduty_stand_in() -> Iterator[PagerDutyStandIn]:
    pd = PagerDutyStandIn()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            status, answer = pd.answer(self.path, raw)
            self.answer(status, json.dumps(answer).encode(), "application/json")

    with serving(Handler) as base:
        pd.url = f"{base}/v2/enqueue"
        yield pd
