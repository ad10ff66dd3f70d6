"""When a run says something, and what: INCIDENT ALERT once its diagnosis is done (if it
found something or could not check something), then on each change of its status an UPDATE
(RESOLVED when it is over), each with the customer update beside it.

`RunAnnouncer` watches a run through the engine's progress events and looks at the run at
checkpoints: before a remedy starts or a person is asked, when verify starts, and when the
run stops. What was already said is read from the journal, so a resume in another process
carries on where the last one stopped, and undelivered messages of the run are retried first.
Messages leave from one background thread, in order, so a slow channel never delays a fix;
`close()` waits for them.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..expressions import ExpressionError
from ..journal import Journal
from ..state import Event, RunState
from ..vocabulary import EventKind, RunStatus
from .config import Settings
from .facts import Status, customer_facts, notable, run_facts, status_of
from .notifier import Notifier
from .templates import Template, shipped

# Events at which the run's status may have changed and the diagnosis is over.
CHECKPOINTS = frozenset({EventKind.REMEDY_STARTED, EventKind.VERIFY_STARTED,
                         EventKind.RUN_FINISHED, EventKind.RUN_INTERRUPTED})
TEAM = ("incident", "update", "resolved")


def build(kind: str, state: RunState, templates: Mapping[str, Template], settings: Settings,
          *, alert: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One message from its template; a team template that fails on this run's facts falls
    back to the shipped one, and the message says so."""
    facts = (customer_facts(state, settings) if kind == "customer"
             else run_facts(state, settings, alert=alert))
    try:
        message = templates[kind].render(facts)
    except ExpressionError as exc:
        message = shipped()[kind].render(facts)
        message["notes"] = [*message.get("notes", []), f"the team's {kind} template failed "
                            f"({exc}); the shipped one was used"]
    message["status"] = facts["status"]  # what was said, for the next change
    if kind != "customer":
        message["run_status"], message["run_id"] = str(state.status), state.run_id
        if alert and alert.get("links"):
            message["links"] = list(alert["links"])
        message["run"] = state.to_json()
    return message


@dataclass
class _Said:
    incident: bool = False
    resolved: bool = False
    key: tuple[str, str] | None = None  # (status, run status) last said
    status: str | None = None  # the status the customer was last told


def key_of(status: str, run_status: str) -> tuple[str, str]:
    """What a change must change to be said: the seeds' status, or the run failing or
    being interrupted (a remedy starting after its approval is no news)."""
    return status, run_status if run_status in {RunStatus.FAILED, RunStatus.INTERRUPTED} else ""


def said_of(journal: Journal, run_id: str) -> _Said:
    said = _Said()
    for event in journal.events(run_id):
        data = event.data
        if event.type not in {EventKind.NOTIFY_SENT, EventKind.NOTIFY_FAILED}:
            continue
        if data.get("message") == "customer":
            said.status = data.get("status")
        elif data.get("message") in TEAM:
            said.incident = True
            said.resolved = said.resolved or data.get("message") == "resolved"
            said.key = key_of(str(data.get("status")), str(data.get("run_status")))
    return said


class RunAnnouncer:
    def __init__(self, notifier: Notifier, templates: Mapping[str, Template],
                 settings: Settings, *, always: bool = False) -> None:
        self.notifier, self.templates, self.settings = notifier, templates, settings
        self.journal = notifier.journal
        self.always = always  # say even a run that found nothing
        self._said: dict[str, _Said] = {}
        self._outbox: queue.Queue[tuple[str, dict[str, Any]] | Callable[[], object] | None] = (
            queue.Queue())
        self._sender: threading.Thread | None = None
        self.run_id: str | None = None

    # Hooks for the engine and the gate

    def progress(self, event: Event) -> None:
        self.run_id = event.run_id
        if event.type in CHECKPOINTS:
            self.checkpoint(event.run_id)

    def wrap(self, progress: Callable[[Event], None] | None,
             prompter: Callable[[Any], bool] | None) -> tuple[
                 Callable[[Event], None], Callable[[Any], bool] | None]:
        """The engine's progress and the gate's prompter, with this announcer listening: it
        looks at the run at each checkpoint, and before a person is asked to approve."""
        def progress_too(event: Event) -> None:
            if progress is not None:
                progress(event)
            self.progress(event)

        def ask_after_telling(proposal: Any) -> bool:
            self.checkpoint(proposal.run_id)
            assert prompter is not None
            return prompter(proposal)

        return progress_too, (ask_after_telling if prompter is not None else None)

    # What to say

    def checkpoint(self, run_id: str) -> None:
        if run_id not in self._said:  # what failed before goes first, with the next message
            self._said[run_id] = said_of(self.journal, run_id)
        for message in self.due(self.journal.state(run_id)):
            self._queue((run_id, message))

    def due(self, state: RunState) -> list[dict[str, Any]]:
        """The messages this state calls for, given what was said; marks them said."""
        said = self._said.setdefault(state.run_id, _Said())
        status = status_of(state)
        key = key_of(str(status), str(state.status))
        kinds: list[str] = []
        if not said.incident:
            if notable(state) or self.always:
                kinds.append("incident")
        elif key != said.key and not said.resolved:
            kinds.append("resolved" if status == Status.RESOLVED else "update")
        if kinds and said.status != str(status):
            kinds.append("customer")
        if not kinds:
            return []
        said.incident = True
        said.resolved = said.resolved or "resolved" in kinds
        said.key, said.status = key, (str(status) if "customer" in kinds else said.status)
        return [build(kind, state, self.templates, self.settings) for kind in kinds]

    # Sending, in order, off the run's thread

    def _queue(self, item: tuple[str, dict[str, Any]] | Callable[[], object]) -> None:
        if self._sender is None:
            self._sender = threading.Thread(target=self._send_all, name="notify", daemon=True)
            self._sender.start()
        self._outbox.put(item)

    def _send_all(self) -> None:
        while (item := self._outbox.get()) is not None:
            try:
                if callable(item):
                    item()
                else:
                    self.notifier.send(*item)
            except Exception as exc:  # never fails the run; a failed send is journaled
                print(f"runbook: notification: {exc}", file=sys.stderr)

    def close(self) -> None:
        """Wait until every queued message was delivered or recorded as failed."""
        if self._sender is not None:
            self._outbox.put(None)
            self._sender.join()
            self._sender = None
