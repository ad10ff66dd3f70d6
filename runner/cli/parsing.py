"""The command line's grammar: every command, its arguments and its help."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import incident

EPILOG = """\
examples:
  runbook list
  runbook plan db-pool-exhausted --target db=lab-db
  runbook run db-pool-exhausted --target db=lab-db
  runbook run db-pool-exhausted --approve end-idle-transactions=postgres.terminate_backends
  runbook approve RUN_ID end-idle-transactions --as alice && runbook resume RUN_ID

Exit codes: 0 nothing found, 1 findings, 2 usage or validation error, 3 could not
diagnose, 4 journal unavailable, 5 unexpected error (--debug for the traceback).

Remedies never run without a recorded approval: at a terminal runbook asks; elsewhere
use --approve REMEDY=KIND (as `runbook plan` prints it) or --approve FINGERPRINT (as
`runbook run` prints it), or `runbook approve` then `runbook resume`.

environment:
  RUNBOOK_HOME        journal and run directories (default ~/.local/state/runbook)
  RUNBOOK_PLAYBOOKS   playbook folders, ':'-separated (default: the shipped ones; never
                      ./playbooks unless named here or with --playbooks)
  RUNBOOK_INVENTORY   inventory files or folders (default: the first of ./inventory,
                      $XDG_CONFIG_HOME/runbook/inventory, /etc/runbook/inventory; each a
                      folder or an inventory.yaml)
  RUNBOOK_POLICY      approval policy file (default policy.yaml beside the inventory,
                      else in $XDG_CONFIG_HOME/runbook, else in /etc/runbook)
  RUNBOOK_JOURNAL_BUSY_TIMEOUT  seconds to wait for another process's journal write (30)
  RUNBOOK_REMEDY_GRACE          seconds to wait for a remedy past its deadline (120)
  RUNBOOK_SERVER / RUNBOOK_TOKEN  a daemon's URL for approve, history and report, and
                                the token (an approver's, to approve) they send
  RUNBOOK_WATCH_INLINE          longest verify window held in the run (60s); a longer
                                one leaves the run MONITORING, watched by schedule
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runbook", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Run incident playbooks: read-only diagnostics at once, remedies only "
                    "after a recorded approval.")
    parser.add_argument("--version", action="version", version=version())
    parser.add_argument("--debug", action="store_true", default=False,
                        help="print the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        # accepted after the command too; SUPPRESS keeps the top level's value otherwise
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="print the traceback of an unexpected error")
        return p

    def add_sources(p: argparse.ArgumentParser) -> None:
        p.add_argument("--playbooks", metavar="DIR", action="append",
                       help="folder of playbooks (repeatable; default $RUNBOOK_PLAYBOOKS)")
        p.add_argument("--inventory", metavar="PATH", action="append",
                       help="inventory file or folder (repeatable; default $RUNBOOK_INVENTORY)")

    def add_policy(p: argparse.ArgumentParser) -> None:
        p.add_argument("--policy", metavar="FILE", type=Path,
                       help="approval policy (default $RUNBOOK_POLICY, else policy.yaml beside "
                            "the inventory or in ~/.config/runbook)")

    def add_home(p: argparse.ArgumentParser) -> None:
        p.add_argument("--home", metavar="DIR", help="journal location (default $RUNBOOK_HOME)")

    def add_format(p: argparse.ArgumentParser, *, markdown: bool = False,
                   html: bool = False) -> None:
        p.add_argument("-o", "--format", choices=["text", "json", *(["markdown"] if markdown
                                                                    else []),
                                                  *(["html"] if html else [])],
                       default="text", help="output format (json: one document on stdout, "
                                            "its shape in the README)")

    def add_bindings(p: argparse.ArgumentParser) -> None:
        p.add_argument("--target", "-t", metavar="ROLE=NAME", action="append", default=[],
                       help="bind a playbook role to an inventory target (repeatable); a bare "
                            "NAME binds the one role of its kind")
        p.add_argument("--param", "-p", metavar="NAME=VALUE", action="append", default=[],
                       help="set a playbook parameter (repeatable)")

    def add_approver(p: argparse.ArgumentParser) -> None:
        p.add_argument("--approve", metavar="REMEDY=KIND|FINGERPRINT", action="append",
                       default=[],
                       help="pre-approve the remedy with this id and step kind (as `plan` "
                            "prints it), or the proposal with this fingerprint (as `run` "
                            "prints it); repeatable; recorded with --as and the OS user")
        p.add_argument("--as", dest="who", metavar="NAME", help="who approves (default: OS user)")
        add_policy(p)
        p.add_argument("--no-input", action="store_true",
                       help="never ask at the terminal; unapproved remedies wait")
        p.add_argument("--concurrency", type=int, default=8, metavar="N",
                       help="read-only steps run at once (default 8)")
        p.add_argument("--no-watch", action="store_true",
                       help="leave a long verify window to the daemon or `runbook watch`")
        add_notify(p)
        p.add_argument("--notify", action=argparse.BooleanOptionalAction, default=None,
                       help="tell the incident channel: ALERT, an UPDATE on each status "
                            "change, RESOLVED (default: notify.yaml's `notify:`)")

    def add_server(p: argparse.ArgumentParser) -> None:
        p.add_argument("--server", metavar="URL",
                       help="a daemon's URL: work through its API, not the local journal "
                            "(default $RUNBOOK_SERVER; token in $RUNBOOK_TOKEN)")

    def add_notify(p: argparse.ArgumentParser) -> None:
        p.add_argument("--notify-config", metavar="FILE", type=Path,
                       help="notify.yaml: sinks and wording (default $RUNBOOK_NOTIFY, else "
                            "notify.yaml beside the inventory or in ~/.config/runbook)")

    p = command("list", "List the playbooks.")
    add_sources(p)
    add_format(p)
    p = command("show", "Show a playbook: steps, findings, remedies (read-only or mutating).")
    p.add_argument("playbook")
    add_sources(p)
    add_format(p)
    p = command("validate", "Validate playbooks and inventory; every problem as file:line:col.")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="playbook files or folders of them (default: all)")
    add_sources(p)
    add_format(p)
    p = command("plan", "Show what a run would do with these targets and params; runs nothing.")
    p.add_argument("playbook")
    add_sources(p)
    add_bindings(p)
    add_format(p)
    p = command("run", "Run a playbook: diagnose, report, propose remedies (run if approved).")
    p.add_argument("playbook")
    add_sources(p)
    add_bindings(p)
    add_approver(p)
    add_format(p, markdown=True)
    add_home(p)
    p = command("history", "List recent runs.")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--status", help="only runs with this status, e.g. awaiting_approval")
    p.add_argument("--shadow", action="store_true",
                   help="shadow routes' runs: what they would have proposed, and per route "
                        "how often that matched what people then approved")
    add_format(p)
    add_home(p)
    add_server(p)
    p = command("report", "Show a run's report from the journal.")
    p.add_argument("run_id")
    add_format(p, markdown=True, html=True)
    add_home(p)
    add_server(p)
    p = command("approve", "Record an approval (or --decline) of a proposed remedy.")
    p.add_argument("run_id")
    p.add_argument("remedy")
    p.add_argument("--as", dest="who", metavar="NAME", help="who approves (default: OS user)")
    p.add_argument("--decline", action="store_true", help="record a refusal instead")
    p.add_argument("--fingerprint", metavar="SHA256",
                   help="approve only if the proposal is still this one (as the report shows)")
    add_policy(p)
    add_format(p)
    add_home(p)
    add_server(p)
    # The commands that carry a recorded run on, each replanned from what it recorded.
    for name, help_ in (
            ("resume", "Carry on a run: unfinished diagnostics, then approved remedies."),
            ("watch", "Watch a MONITORING run here until its verify window ends or it "
                      "relapses (Ctrl-C stops watching here, not the watch)."),
            ("verify", "After a fix made by hand: run the playbook's verify checks now, "
                       "and watch them for their windows.")):
        p = command(name, help_)
        p.add_argument("run_id")
        add_sources(p)
        add_approver(p)
        add_format(p, markdown=True)
        add_home(p)
    p = command("notify", "Show what a run told the incident channel; --retry what failed, "
                          "--customer its customer-facing update.")
    p.add_argument("run_id")
    p.add_argument("--retry", action="store_true", help="send the undelivered messages again")
    p.add_argument("--customer", action="store_true",
                   help="print the customer update (status page, support) for the run now")
    p.add_argument("--inventory", metavar="PATH", action="append",
                   help="where notify.yaml is looked for beside (default $RUNBOOK_INVENTORY)")
    add_notify(p)
    add_format(p)
    add_home(p)
    incident.add_parsers(command, add_home)  # note, timeline, postmortem
    p = command("daemon", "Run the alert daemon: webhooks in, diagnostics at once, remedies "
                          "after approval.")
    p.add_argument("--config", required=True, type=Path, metavar="FILE",
                   help="daemon configuration (routes, auth, approvers, notifications)")
    p.add_argument("--host", help="listen address (default: the config's)")
    p.add_argument("--port", type=int, help="listen port (default: the config's)")
    p.add_argument("--check", action="store_true",
                   help="validate the config, print its warnings and exit")
    add_home(p)
    p = command("kinds", "List the installed step kinds, or show one in full: what it reads, "
                         "its parameters, its result fields.")
    p.add_argument("kind", nargs="?", metavar="KIND", help="show this kind in full")
    add_format(p, markdown=True)
    command("schema", "Print the playbook JSON Schema (for editors).")
    p = command("init", "Create an inventory and a playbooks folder with commented examples.")
    p.add_argument("dir", nargs="?", default=".", type=Path, metavar="DIR",
                   help="where (default: the working directory); nothing is overwritten")
    p = command("completion", "Print a shell completion script: "
                              "eval \"$(runbook completion bash)\".")
    p.add_argument("shell", choices=["bash", "zsh", "fish"])
    from .testing import add_parsers as add_testing_parsers  # replay, record, test

    add_testing_parsers(command, add_home)
    return parser


def version() -> str:
    from .. import __version__

    return f"runbook {__version__}"
