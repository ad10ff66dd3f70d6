"""The daemon's watcher: it looks at MONITORING runs when their next look is due.

A verify window longer than the engine holds inline leaves its run MONITORING in the
journal; no worker holds it. This thread finds those runs in the journal (so a restarted
daemon picks them up where they were), runs each one's watched checks once per interval
(`Engine.watch`), and says what came of it: an UPDATE while it holds, RESOLVED at the
window's end, and on a relapse an UPDATE and a new run of the same playbook in the same
alert group, so the incident reopens instead of an unrelated run starting later.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from ..vocabulary import EventKind, RunStatus
from . import notify

if TYPE_CHECKING:
    from ..journal import Journal
    from ..registry import Registry
    from ..state import RunState
    from .announce import Announcer
    from .config import DaemonConfig
    from .inbox import Inbox
    from .logonce import LogOnce

log = logging.getLogger("runbook.daemon")
IDLE = 0.5  # seconds between scans of the journal for runs under watch


class Watcher:
    def __init__(self, config: DaemonConfig, journal: Journal, registry: Registry,
                 inbox: Inbox, announcer: Announcer, log_once: LogOnce,
                 stopping: threading.Event, new_work: threading.Event) -> None:
        self.config, self.journal, self.registry = config, journal, registry
        self.inbox, self.announcer, self.log_once = inbox, announcer, log_once
        self.stopping, self.new_work = stopping, new_work
        self._due: dict[str, float] = {}  # run -> monotonic time of its next look

    def thread(self) -> threading.Thread:
        return threading.Thread(target=self.loop, name="watcher", daemon=True)

    def loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.look_once()
            except Exception as exc:  # keep watching the others; the journal keeps the runs
                self.log_once(f"watch:{type(exc).__name__}", f"watch failed: {exc}",
                              level=logging.ERROR, exc_info=True)
            self.stopping.wait(IDLE)

    def look_once(self) -> int:
        """Look at every run under watch whose look is due; how many were looked at."""
        looked = 0
        for row in self.journal.runs(limit=500, status=RunStatus.MONITORING):
            if self._due.get(row.id, 0.0) > time.monotonic():
                continue
            looked += 1
            state = self._look(row.id)
            if state.status == RunStatus.MONITORING:
                from ..lifecycle import next_look

                self._due[row.id] = time.monotonic() + next_look(state)
                continue
            self._due.pop(row.id, None)
            self.announcer.send(row.id, notify.update(state, self.inbox.alerts_of(row.id),
                                                      self.config.public_url))
            if any(e.type == EventKind.WATCH_RELAPSED for e in state.timeline[-3:]):
                reopened = self.inbox.reopen(row.id)
                log.warning("run %s relapsed during its watch; the incident reopens%s", row.id,
                            " as a new run of its alert group" if reopened else "")
                self.new_work.set()
            else:
                self.announcer.resolved(row.id)
        return looked

    def _look(self, run_id: str) -> RunState:
        from .. import inventory, lifecycle
        from ..redact import SECRETS

        with SECRETS.scope():
            engine = lifecycle.engine_for(self.registry, self.journal, approver="daemon",
                                          policy=self.config.policy())
            plan = lifecycle.replan_run(
                self.journal, run_id,
                inventory.load(self.config.inventory_paths(), self.registry), self.registry)
            return engine.watch(plan, run_id)
