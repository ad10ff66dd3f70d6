"""Comms from the command line: `runbook run/resume --notify` (or notify.yaml's
`notify: true`) tells the incident channel, and `runbook notify RUN_ID` shows what a run
told whom, retries what failed (--retry), or prints its customer update (--customer)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import render, sources

if TYPE_CHECKING:
    from ..comms.announce import RunAnnouncer
    from ..comms.setup import Comms
    from ..journal import Journal


def comms_of(args: argparse.Namespace, inventory_paths: list[Path]) -> Comms:
    from ..comms.setup import for_cli

    return for_cli(getattr(args, "notify_config", None), inventory_paths)


def announcer_of(args: argparse.Namespace, journal: Journal,
                 inventory_paths: list[Path]) -> RunAnnouncer | None:
    """The run's announcer when it should notify (--notify, or notify.yaml says so and no
    --no-notify), else None."""
    from ..errors import UsageError

    asked = getattr(args, "notify", None)
    if asked is False:
        return None
    comms = comms_of(args, inventory_paths)
    if not (asked or comms.on_by_default):
        return None
    if not comms.parsed.sinks:
        from ..paths import config_dirs

        where = comms.path or ", ".join(str(d / "notify.yaml") for d in config_dirs())
        raise UsageError(f"--notify: no sinks configured (looked in $RUNBOOK_NOTIFY, beside "
                         f"the inventory and {where}); `runbook notify --help` shows the file")
    return comms.announcer(journal)


def close(announcer: RunAnnouncer | None) -> None:
    if announcer is not None:
        announcer.close()


def cmd_notify(args: argparse.Namespace) -> int:
    from ..comms.announce import build
    from ..comms.notifier import Notifier, undelivered
    from ..vocabulary import EventKind
    from .exits import EXIT_OK, EXIT_UNDIAGNOSED

    journal = sources.journal()
    state = journal.state(args.run_id)
    paths = sources.inventory_paths_of(args)
    comms = comms_of(args, paths)
    if args.customer:
        message = build("customer", state, comms.templates, comms.settings)
        if args.format == "json":
            render.emit(message)
        else:
            print(f"{message['title']}\n{message.get('body', '')}")
        return EXIT_OK
    retried: tuple[int, int] | None = None
    if args.retry:
        retried = Notifier(comms.parsed.sinks, journal).retry_undelivered(args.run_id)
    said: list[dict[str, Any]] = [
        {"at": e.at, "seq": e.seq, "sent": e.type == EventKind.NOTIFY_SENT,
         **{k: v for k, v in e.data.items() if k != "pending"}}
        for e in journal.events(args.run_id)
        if e.type in {EventKind.NOTIFY_SENT, EventKind.NOTIFY_FAILED}]
    left = len(undelivered(journal, args.run_id))
    if args.format == "json":
        render.emit({"run_id": args.run_id, "notifications": said, "undelivered": left,
                     **({"retried": {"delivered": retried[0], "failed": retried[1]}}
                        if retried else {})})
    else:
        for item in said:
            how = "sent  " if item["sent"] else "FAILED"
            extra = f" ts {item['ts']}" if item.get("ts") else ""
            extra += f" in thread {item['thread_ts']}" if item.get("thread_ts") else ""
            extra += f": {item['error']}" if item.get("error") else ""
            print(f"{item['at']}  {how}  {item.get('message')} -> {item.get('sink')}{extra}")
        if retried:
            print(f"retried: {retried[0]} delivered, {retried[1]} still failing")
        print(f"{left} undelivered" + ("" if args.retry or not left
                                       else f": `runbook notify {args.run_id} --retry`"),
              file=sys.stderr)
    return EXIT_UNDIAGNOSED if left else EXIT_OK
