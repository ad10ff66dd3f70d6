"""The incident commands: `runbook note` (a person's note on a run), `runbook timeline`
(what happened when, alerts to notes) and `runbook postmortem` (the review draft, every
sentence citing its evidence)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from . import render, sources
from .exits import EXIT_OK

NOTE_LIMIT = 4000  # characters: a note is a line in a timeline, not a document


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser],
                add_home: Callable[[argparse.ArgumentParser], None]) -> None:
    """The three commands' arguments (called by `parsing.build_parser`)."""
    p = command("note", "Add a person's note to a run's timeline (and its post-incident draft).")
    p.add_argument("run_id")
    p.add_argument("text")
    p.add_argument("--as", dest="who", metavar="NAME", help="who notes it (default: OS user)")
    p.add_argument("-o", "--format", choices=["text", "json"], default="text")
    add_home(p)
    p = command("timeline", "Show an incident's timeline: alerts, steps, findings, severity, "
                            "approvals, remedies, verify, notifications and notes.")
    p.add_argument("run_id")
    p.add_argument("--all", action="store_true", dest="verbose",
                   help="also the events that only announce a start, and clear findings")
    p.add_argument("-o", "--format", choices=["text", "json"], default="text")
    add_home(p)
    p = command("postmortem", "Write the post-incident review draft from the journal; every "
                              "sentence cites its evidence file and SHA-256.")
    p.add_argument("run_id")
    p.add_argument("-o", "--format", choices=["markdown", "json"], default="markdown")
    add_home(p)


def cmd_note(args: argparse.Namespace) -> int:
    from ..approval import with_os_user
    from ..errors import UsageError
    from ..vocabulary import EventKind

    text = " ".join(args.text.split())
    if not text:
        raise UsageError("a note needs some text")
    if len(text) > NOTE_LIMIT:
        raise UsageError(f"a note is at most {NOTE_LIMIT} characters ({len(text)} given)")
    journal = sources.journal()
    journal.get_run(args.run_id)  # an unknown run is a usage error
    by = sources.who(args)
    event = journal.append(args.run_id, EventKind.NOTE, {
        "by": by, "how": with_os_user("runbook note", sources.os_user()), "text": text})
    if args.format == "json":
        render.emit({"run_id": args.run_id, "seq": event.seq, "at": event.at, "by": by,
                     "how": event.data["how"], "text": event.data["text"]})
        return EXIT_OK
    print(f"noted on {args.run_id} at {event.at} by {by}")
    return EXIT_OK


def cmd_timeline(args: argparse.Namespace) -> int:
    from .. import postmortem, timeline

    incident = postmortem.load(sources.journal(), args.run_id)
    merged = timeline.merge(*(
        timeline.entries(state, incident.alerts if index == 0 else (), verbose=args.verbose)
        for index, state in enumerate(incident.runs)))
    if args.format == "json":
        render.emit({"runs": [s.run_id for s in incident.runs], "group": incident.group,
                     "timeline": [entry.to_json() for entry in merged]})
        return EXIT_OK
    runs = ", ".join(s.run_id for s in incident.runs)
    print(f"timeline of {runs}" + (f" (alert group {incident.group})" if incident.group else ""))
    print("\n".join(timeline.text_lines(merged)))
    return EXIT_OK


def cmd_postmortem(args: argparse.Namespace) -> int:
    from .. import postmortem

    journal = sources.journal()
    document = postmortem.draft(postmortem.load(journal, args.run_id))
    if args.format == "json":
        render.emit(document)
        return EXIT_OK
    print(postmortem.render_markdown(document), end="")
    return EXIT_OK
