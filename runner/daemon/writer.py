"""Group commit for the intake: accepted alerts are stored by one thread, many requests to
a transaction, and each request is answered once its alerts are committed."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Any

from .alerts import Alert
from .inbox import Inbox, Signed

log = logging.getLogger("runbook.daemon")


class IntakeWriter:
    """Group commit: requests hand over their alerts; one thread stores everything waiting
    in a single transaction, then answers each request. Each 202 still follows its commit;
    the commit is shared, which is what makes intake fast under load."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.waiting: queue.Queue[tuple[list[Alert], Signed | None, Any, Any] | None] = (
            queue.Queue())
        self.thread = threading.Thread(target=self._run, name="intake-writer", daemon=True)

    async def store(self, alerts: list[Alert], signed: Signed | None = None) -> list[int] | None:
        """The alerts' ids once committed; None when `signed` was seen before (a replay)."""
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        self.waiting.put((alerts, signed, loop, answer))
        ids = await answer
        return None if ids is None else list(ids)

    def _run(self) -> None:
        while (first := self.waiting.get()) is not None:
            batch = [first]
            while len(batch) < 500:
                try:
                    more = self.waiting.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.waiting.put(None)  # stop after this batch
                    break
                batch.append(more)
            try:
                stored: list[Any] = self.inbox.store_batches(
                    [alerts for alerts, _, _, _ in batch], [signed for _, signed, _, _ in batch])
            except Exception as exc:
                log.exception("storing alerts failed")
                stored = [exc] * len(batch)
            for (_, _, loop, answer), ids in zip(batch, stored, strict=True):
                loop.call_soon_threadsafe(_settle, answer, ids)

    def stop(self) -> None:
        self.waiting.put(None)


def _settle(answer: Any, ids: Any) -> None:
    if answer.done():  # the request went away meanwhile
        return
    if isinstance(ids, Exception):
        answer.set_exception(ids)
    else:
        answer.set_result(ids)
