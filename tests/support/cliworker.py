"""A warm `runbook` process that runs one command line per line of stdin.

Tests that race several real processes start a few of these once (imports take most of a
process's start-up) and release them together by writing a line to each: every line is a
JSON list of arguments for `runner.cli.main`, and the answer is one JSON line with the exit
code, stdout and stderr. `python -m tests.support.cliworker`; it says `ready` first.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys


def main() -> None:
    from runner.cli import main as runbook

    out = sys.stdout
    print("ready", file=out, flush=True)
    for line in sys.stdin:
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = runbook(json.loads(line))
            except SystemExit as exc:  # argparse
                code = exc.code if isinstance(exc.code, int) else 2
        print(json.dumps({"code": code, "stdout": stdout.getvalue(),
                          "stderr": stderr.getvalue()}), file=out, flush=True)


if __name__ == "__main__":
    main()
