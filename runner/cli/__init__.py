"""The `runbook` command line: `main` parses (parsing.py), dispatches through COMMANDS to
a command (playbooks.py, runs.py) and turns errors into exit codes.

Exit codes: 0 nothing found and every check ran, 1 findings (even when other checks did not
run: the report says which), 2 usage or validation error, 3 inconclusive: nothing was found
but a step failed, timed out or never ended, or a finding could not be judged, 4 the journal
could not be written (locked by another process, disk full, RUNBOOK_HOME unwritable; resume
the run later), 5 an unexpected error (one line on stderr; the traceback with --debug).
Heavy modules are imported inside the commands, never at a module's top in this package,
so `runbook --help` and `runbook list` start at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from . import (
    comms,
    completion,
    incident,
    parsing,
    playbooks,
    runs,
    scaffold,
    testing,
    watching,
)
from .exits import EXIT_INTERNAL, EXIT_JOURNAL, EXIT_OK, EXIT_UNDIAGNOSED, EXIT_USAGE

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "list": playbooks.cmd_list,
    "show": playbooks.cmd_show,
    "validate": playbooks.cmd_validate,
    "plan": playbooks.cmd_plan,
    "run": runs.cmd_run,
    "history": runs.cmd_history,
    "report": runs.cmd_report,
    "approve": runs.cmd_approve,
    "resume": runs.cmd_resume,
    "watch": watching.cmd_watch,
    "verify": watching.cmd_verify,
    "note": incident.cmd_note,
    "timeline": incident.cmd_timeline,
    "postmortem": incident.cmd_postmortem,
    "notify": comms.cmd_notify,
    "daemon": runs.cmd_daemon,
    "kinds": playbooks.cmd_kinds,
    "schema": playbooks.cmd_schema,
    "init": scaffold.cmd_init,
    "completion": completion.cmd_completion,
    "replay": testing.cmd_replay,
    "record": testing.cmd_record,
    "test": testing.cmd_test,
}


def main(argv: list[str] | None = None) -> int:
    args = parsing.build_parser().parse_args(argv)
    from ..redact import scrub_stdio

    scrub_stdio()  # everything printed from here on, a traceback too, has its secrets masked
    if getattr(args, "home", None):
        os.environ["RUNBOOK_HOME"] = args.home
    from ..errors import JournalError, JournalUnavailable, PlaybookError, RunbookError, UsageError

    try:
        return COMMANDS[args.command](args)
    except PlaybookError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s); nothing ran", file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, JournalError) as exc:
        print(f"runbook: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except JournalUnavailable as exc:  # locked, full or unwritable: nothing half-written
        print(f"runbook: journal unavailable: {exc}", file=sys.stderr)
        return EXIT_JOURNAL
    except RunbookError as exc:
        print(f"runbook: {exc}", file=sys.stderr)
        return EXIT_UNDIAGNOSED
    except KeyboardInterrupt:
        print("runbook: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `runbook show x | head`
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:  # a bug, or a failure nothing foresaw: not "findings" (1)
        if args.debug:
            import traceback

            traceback.print_exc()
        first_line = (str(exc).strip().splitlines() or [""])[0]
        print(f"runbook: internal error: {type(exc).__name__}: {first_line} "
              "(--debug shows the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
