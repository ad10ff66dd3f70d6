"""Every sink, journaled: a message is delivered (`notify.sent`, with Slack's `ts` and
channel for a bot) or recorded as failed (`notify.failed`, with the error and the message
itself, scrubbed), never lost silently; `retry_undelivered` sends the failed ones again
(the daemon at start, `runbook notify RUN_ID --retry`, or the run's next message).

With a bot token the first message a sink delivered for a run is the incident's thread:
UPDATE and RESOLVED reply in it (`thread_ts`). A webhook has no threads: separate posts.
Secrets are scrubbed from every message before it leaves; a notification never fails a run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ..journal import Journal
from ..redact import SECRETS
from ..vocabulary import EventKind
from .config import Sink
from .delivery import Delivery, Sleep, deliver
from .slack import slack_blocks

THREADED = frozenset({"update", "resolved"})  # replies, when the sink has threads


def audience_of(kind: str) -> str:
    return "customer" if kind == "customer" else "team"


def thread_of(journal: Journal, run_id: str, sink: str) -> tuple[str, str] | None:
    """(channel, ts) of the first message `sink` delivered for the run unthreaded, if any:
    the incident's thread (the Slack-approval and escalation messages may reply in it)."""
    for event in journal.events(run_id):
        data = event.data
        if (event.type == EventKind.NOTIFY_SENT and data.get("sink") == sink
                and data.get("ts") and not data.get("thread_ts")):
            return str(data.get("slack_channel") or ""), str(data["ts"])
    return None


def runs_with_undelivered(journal: Journal, limit: int = 500) -> list[str]:
    """The most recent runs with a failed notification (the daemon retries them at start)."""
    rows = journal.read("SELECT run_id FROM events WHERE type=? GROUP BY run_id "
                        "ORDER BY MAX(seq) DESC LIMIT ?", (EventKind.NOTIFY_FAILED, limit))
    return [str(row[0]) for row in rows if undelivered(journal, str(row[0]))]


def undelivered(journal: Journal, run_id: str) -> list[Any]:
    """The failed messages no later attempt was made for, oldest first."""
    events = journal.events(run_id)
    retried = {e.data.get("retry_of") for e in events
               if e.type in {EventKind.NOTIFY_SENT, EventKind.NOTIFY_FAILED}}
    return [e for e in events if e.type == EventKind.NOTIFY_FAILED
            and e.data.get("pending") and e.seq not in retried]


class Notifier:
    def __init__(self, sinks: Iterable[Sink], journal: Journal, *,
                 sleep: Sleep = time.sleep) -> None:
        self.sinks, self.journal, self.sleep = list(sinks), journal, sleep

    def send(self, run_id: str, message: dict[str, Any]) -> int:
        """Send to every sink of the message's audience, after what failed earlier for the
        run (in order: an UPDATE never precedes its ALERT on a channel that came back);
        return how many failed (each is journaled on the run)."""
        sinks = [s for s in self.sinks if s.audience == audience_of(str(message.get("kind")))]
        if not sinks:
            return 0
        _, failures = self.retry_undelivered(run_id, sinks)
        for sink in sinks:
            failures += not self._one(run_id, sink, message)
        return failures

    def _one(self, run_id: str, sink: Sink, message: dict[str, Any],
             retry_of: int | None = None) -> bool:
        # Masked before Slack's escaping, which would hide `p<ss` from the mask as `p&lt;ss`;
        # with every run's secrets, as a notification is never read back.
        clean = SECRETS.scrub_output(message)
        thread = (thread_of(self.journal, run_id, sink.label())
                  if sink.bot and message.get("kind") in THREADED else None)
        if sink.kind == "slack":
            mentions = sink.mentions if message.get("kind") == "incident" else []
            payload = slack_blocks(clean, mentions)
        else:
            payload = clean
        delivery = deliver(sink, payload, thread_ts=thread[1] if thread else None,
                           sleep=self.sleep)
        self._record(run_id, sink, clean, delivery, thread, retry_of)
        return delivery.delivered

    def _record(self, run_id: str, sink: Sink, clean: dict[str, Any], delivery: Delivery,
                thread: tuple[str, str] | None, retry_of: int | None) -> None:
        event: dict[str, Any] = {
            "channel": sink.kind, "sink": sink.label(), "message": clean.get("kind"),
            "status": clean.get("status"), "run_status": clean.get("run_status"),
            "attempts": delivery.attempts,
            **({"waited": sum(delivery.waits)} if delivery.waits else {}),
            **({"retry_of": retry_of} if retry_of is not None else {})}
        if delivery.delivered:
            if delivery.ts:
                event.update(ts=delivery.ts, slack_channel=delivery.channel)
            if thread:
                event["thread_ts"] = thread[1]
            self.journal.append(run_id, EventKind.NOTIFY_SENT, event)
        else:
            # Kept for a later retry; the run's JSON is attached again when it is sent.
            pending = {k: v for k, v in clean.items() if k != "run"}
            self.journal.append(run_id, EventKind.NOTIFY_FAILED,
                                {**event, "error": delivery.error, "pending": pending})

    def retry_undelivered(self, run_id: str,
                          sinks: Iterable[Sink] | None = None) -> tuple[int, int]:
        """Send again every message that failed for the run, to the sink it failed on (of
        `sinks`, default all; one no longer configured stays undelivered). Returns
        (delivered, still failing)."""
        sent = failed = 0
        by_label = {sink.label(): sink for sink in (self.sinks if sinks is None else sinks)}
        for event in undelivered(self.journal, run_id):
            sink = by_label.get(str(event.data.get("sink") or event.data.get("channel")))
            if sink is None:
                continue
            message = dict(event.data["pending"])
            if sink.kind == "webhook" and message.get("kind") != "customer":
                message["run"] = self.journal.state(run_id).to_json()
            if self._one(run_id, sink, message, retry_of=event.seq):
                sent += 1
            else:
                failed += 1
        return sent, failed
