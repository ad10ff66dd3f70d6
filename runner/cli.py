"""The `runbook` command line.

Exit codes: 0 nothing found, 1 findings, 2 usage or validation error, 3 the run could not
diagnose (a step failed or timed out and nothing was found), 4 the journal could not be
written (locked by another process, disk full, RUNBOOK_HOME unwritable; resume the run later).
Heavy modules are imported inside the commands so `runbook --help` and `runbook list` start
at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import Engine
    from .inventory import Inventory
    from .journal import Journal
    from .loader import LoadedPlaybook
    from .policy import Policy
    from .registry import Registry
    from .state import Event, RunState

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_UNDIAGNOSED, EXIT_JOURNAL = 0, 1, 2, 3, 4

EPILOG = """\
examples:
  runbook list
  runbook plan db-pool-exhausted --target db=lab-db
  runbook run db-pool-exhausted --target db=lab-db
  runbook run db-pool-exhausted --approve end-idle-transactions=postgres.terminate_backends
  runbook approve RUN_ID end-idle-transactions --as alice && runbook resume RUN_ID

Remedies never run without a recorded approval: at a terminal runbook asks; elsewhere
use --approve REMEDY=KIND (as `runbook plan` prints it) or --approve FINGERPRINT (as
`runbook run` prints it), or `runbook approve` then `runbook resume`.

environment:
  RUNBOOK_HOME        journal and run directories (default ~/.local/state/runbook)
  RUNBOOK_PLAYBOOKS   playbook folders, ':'-separated (default: the shipped ones; never
                      ./playbooks unless named here or with --playbooks)
  RUNBOOK_INVENTORY   inventory files or folders (default ./inventory)
  RUNBOOK_POLICY      approval policy file (default policy.yaml beside the inventory,
                      else ~/.config/runbook/policy.yaml)
  RUNBOOK_JOURNAL_BUSY_TIMEOUT  seconds to wait for another process's journal write (30)
  RUNBOOK_REMEDY_GRACE          seconds to wait for a remedy past its deadline (120)
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runbook", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Run incident playbooks: read-only diagnostics at once, remedies only "
                    "after a recorded approval.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_)

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

    def add_format(p: argparse.ArgumentParser) -> None:
        p.add_argument("--format", choices=["text", "json", "markdown"], default="text")

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

    p = command("list", "List the playbooks.")
    add_sources(p)
    p = command("show", "Show a playbook: steps, findings, remedies (read-only or mutating).")
    p.add_argument("playbook")
    add_sources(p)
    p = command("validate", "Validate playbooks and inventory; every problem as file:line:col.")
    p.add_argument("paths", nargs="*", metavar="PATH", help="playbook files (default: all)")
    add_sources(p)
    p = command("plan", "Show what a run would do with these targets and params; runs nothing.")
    p.add_argument("playbook")
    add_sources(p)
    add_bindings(p)
    p = command("run", "Run a playbook: diagnose, report, propose remedies (run if approved).")
    p.add_argument("playbook")
    add_sources(p)
    add_bindings(p)
    add_approver(p)
    add_format(p)
    add_home(p)
    p = command("history", "List recent runs.")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--status", help="only runs with this status, e.g. awaiting_approval")
    add_home(p)
    p = command("report", "Show a run's report from the journal.")
    p.add_argument("run_id")
    add_format(p)
    add_home(p)
    p = command("approve", "Record an approval (or --decline) of a proposed remedy.")
    p.add_argument("run_id")
    p.add_argument("remedy")
    p.add_argument("--as", dest="who", metavar="NAME", help="who approves (default: OS user)")
    p.add_argument("--decline", action="store_true", help="record a refusal instead")
    p.add_argument("--fingerprint", metavar="SHA256",
                   help="approve only if the proposal is still this one (as the report shows)")
    add_policy(p)
    add_home(p)
    p = command("resume", "Carry on a run: unfinished diagnostics, then approved remedies.")
    p.add_argument("run_id")
    add_sources(p)
    add_approver(p)
    add_format(p)
    add_home(p)
    p = command("daemon", "Run the alert daemon: webhooks in, diagnostics at once, remedies "
                          "after approval.")
    p.add_argument("--config", required=True, type=Path, metavar="FILE",
                   help="daemon configuration (routes, auth, approvers, notifications)")
    p.add_argument("--host", help="listen address (default: the config's)")
    p.add_argument("--port", type=int, help="listen port (default: the config's)")
    p.add_argument("--check", action="store_true",
                   help="validate the config, print its warnings and exit")
    add_home(p)
    command("kinds", "List the installed step kinds and what they need.")
    command("schema", "Print the playbook JSON Schema (for editors).")
    return parser


def _version() -> str:
    from . import __version__

    return f"runbook {__version__}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .redact import scrub_stdio

    scrub_stdio()  # everything printed from here on, a traceback too, has its secrets masked
    if getattr(args, "home", None):
        os.environ["RUNBOOK_HOME"] = args.home
    from .errors import JournalError, JournalUnavailable, PlaybookError, RunbookError, UsageError

    try:
        return int(globals()[f"cmd_{args.command}"](args))
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


# Sources


def _playbook_dirs(args: argparse.Namespace) -> list[Path]:
    from .paths import playbook_dirs

    return [Path(p) for p in args.playbooks] if args.playbooks else playbook_dirs()


def _registry() -> Registry:
    from .registry import default_registry

    return default_registry()


def _inventory_paths(args: argparse.Namespace) -> list[Path]:
    from .paths import inventory_paths

    return [Path(p) for p in args.inventory] if args.inventory else inventory_paths()


def _inventory(args: argparse.Namespace, registry: Registry,
               paths: list[Path] | None = None) -> Inventory:
    from . import inventory

    return inventory.load(paths if paths is not None else _inventory_paths(args), registry)


def _policy(args: argparse.Namespace, inventory_paths: list[Path]) -> Policy:
    from .policy import load

    return load(getattr(args, "policy", None), inventory_paths)


def _load(args: argparse.Namespace, registry: Registry) -> LoadedPlaybook:
    from . import loader
    from .catalog import resolve

    return loader.load(resolve(args.playbook, _playbook_dirs(args)), registry)


def _journal() -> Journal:
    from .journal import Journal
    from .paths import home

    return Journal(home())


def _who(args: argparse.Namespace) -> str:
    return str(args.who or _os_user())


def _os_user() -> str:
    import getpass

    return getpass.getuser()


def _how(what: str) -> str:
    """How an approval was given, with the OS user beside the name given by --as."""
    from .approval import with_os_user

    return with_os_user(what, _os_user())


# Commands


def cmd_list(args: argparse.Namespace) -> int:
    from . import yamlsource
    from .catalog import discover

    rows = []
    for name, path in sorted(discover(_playbook_dirs(args)).items()):
        doc, problems = yamlsource.read(path)  # bounded: an alias bomb is refused there
        data = doc.data if isinstance(doc.data, dict) else {}
        if problems:
            data = {"summary": "(does not parse: runbook validate)"}
        rows.append((name, str(data.get("severity", "")), str(data.get("summary", ""))))
    if not rows:
        print("no playbooks found (set RUNBOOK_PLAYBOOKS or --playbooks)", file=sys.stderr)
        return EXIT_OK
    width = max(len(r[0]) for r in rows)
    for name, severity, summary in rows:
        print(f"{name:<{width}}  {severity:<2}  {summary}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    registry = _registry()
    book = _load(args, registry).playbook
    print(f"{book.name} [{book.severity}]: {book.summary}")
    if book.description:
        print(f"\n{book.description.strip()}")
    if book.params:
        print("\nparams")
        for name, param in book.params.items():
            print(f"  {name} ({param.type}, default {param.default!r}) {param.description}")
    print("\ntargets")
    for role, spec in book.targets.items():
        print(f"  {role}: {spec.kind} {spec.description}")
    print("\nsteps (read-only)")
    for step in book.steps:
        needs = f"  needs {', '.join(step.needs)}" if step.needs else ""
        print(f"  {_mark(registry.kind(step.run))}  {step.id}: {step.run}{needs}")
    print("\nfindings")
    for finding in book.findings:
        print(f"  {finding.id}: when {finding.when}")
    print("\nremedies (mutating: run only with a recorded approval)")
    for remedy in book.remedies:
        kind = registry.kind(remedy.run)
        print(f"  {'MUTATING' if kind.mutating else 'read-only'}   {remedy.id}: {remedy.run}"
              f"{'  when ' + remedy.when if remedy.when else ''}")
    if book.verify:
        print("\nverify")
        for i, check in enumerate(book.verify):
            window = f" for {check.for_:g}s" if check.for_ else ""
            print(f"  read-only  {book.verify_id(i)}: {check.run}{window}")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from . import inventory, loader
    from .catalog import discover
    from .errors import PlaybookError, Problem
    from .paths import inventory_paths

    registry = _registry()
    paths = [Path(p) for p in args.paths] or list(discover(_playbook_dirs(args)).values())
    problems: list[Problem] = []
    for path in paths:
        try:
            loader.load(path, registry)
        except PlaybookError as exc:
            problems += exc.problems
    inv_paths = [Path(p) for p in args.inventory] if args.inventory else inventory_paths()
    loaded_inventory = None
    try:
        loaded_inventory = inventory.load(inv_paths, registry)
    except PlaybookError as exc:
        problems += exc.problems
    if problems:
        raise PlaybookError(problems)
    print(f"ok: {len(paths)} playbook(s), inventory {', '.join(map(str, inv_paths)) or 'none'}")
    _print_target_warnings(registry, list(loaded_inventory or []))
    return EXIT_OK


def _print_target_warnings(registry: Any, targets: list[Any]) -> None:
    """What a backend finds unsafe in a target's setup (a probe role that may signal other
    sessions, probes without read-only credentials): said, not refused."""
    for target in targets:
        check = getattr(registry.backend(target.kind).connector, "warnings", None)
        for message in check(target) if check else []:
            print(f"WARNING {target.name}: {message}")


def cmd_plan(args: argparse.Namespace) -> int:
    from .plan import make_plan, parse_assignments

    registry = _registry()
    loaded = _load(args, registry)
    plan = make_plan(loaded, _inventory(args, registry), registry,
                     parse_assignments(args.target, "target", bare_ok=True),
                     parse_assignments(args.param, "param"))
    book = plan.playbook
    print(f"plan for {book.name} [{book.severity}]: {book.summary}\n\ntargets")
    for role, target in plan.targets.items():
        print(f"  {role} = {target.name} ({target.kind}) {target.description}")
    _print_target_warnings(registry, list(plan.targets.values()))
    if plan.params:
        print("\nparams")
        for name, value in plan.params.items():
            print(f"  {name} = {value!r}")
    print("\nsteps (read-only, concurrent where independent)")
    from .validate import step_dependencies

    def on(role: str | None, kind: Any) -> str:
        target = plan.target_for(role, kind)
        return target.name if target else f"(no target: optional role {plan.role_for(role, kind)})"

    for step in book.steps:
        kind = registry.kind(step.run)
        deps = step_dependencies(step)
        after = f"  after {', '.join(sorted(deps))}" if deps else ""
        timeout = step.timeout or kind.timeout
        print(f"  {_mark(kind)}  {step.id}: {kind.name} on {on(step.target, kind)}  "
              f"timeout {timeout:g}s, retries {step.retries}{after}")
        for note in _plan_notes(registry, plan, step, kind):
            print(f"             {note}")
    print("\nremedies (MUTATING: each needs a recorded approval, run in this order; "
          "pre-approve one with --approve REMEDY=KIND)")
    for remedy in book.remedies:
        kind = registry.kind(remedy.run)
        print(f"  MUTATING   {remedy.id}={kind.name} on {on(remedy.target, kind)}"
              f"{'  when ' + remedy.when if remedy.when else ''}")
    for i, check in enumerate(book.verify):
        kind = registry.kind(check.run)
        print(f"{'' if i else chr(10) + 'verify (after remedies)' + chr(10)}"
              f"  read-only  {book.verify_id(i)}: {kind.name} on {on(check.target, kind)}")
    return EXIT_OK


def _plan_notes(registry: Any, plan: Any, step: Any, kind: Any) -> list[str]:
    """What a backend says about a step before it runs (an Ansible check's tasks that run
    for real); its `with` rendered with what is known now: params and targets."""
    from . import expressions

    target = plan.target_for(step.target, kind)
    notes = getattr(registry.backend(kind.target_kind).connector, "plan_notes", None)
    if target is None or notes is None:
        return []
    given: dict[str, Any] = {}
    for key, value in step.with_.items():
        try:
            given[key] = expressions.render(value, plan.context({}))
        except expressions.ExpressionError:
            continue  # it depends on other steps' results: not known before the run
    return list(notes(target, kind.name, given))


def _mark(kind: Any) -> str:
    """How a step kind is shown: read-only, or read-only on its author's word."""
    if kind.mutating:
        return "MUTATING "
    return "read-only (marked by the playbook's author)" if kind.read_only_by_author \
        else "read-only"


def cmd_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .journal import new_run_id
    from .plan import make_plan, parse_assignments, provenance

    registry = _registry()
    loaded = _load(args, registry)
    inventory_paths = _inventory_paths(args)
    plan = make_plan(loaded, _inventory(args, registry, inventory_paths), registry,
                     parse_assignments(args.target, "target", bare_ok=True),
                     parse_assignments(args.param, "param"))
    _check_approvals(args.approve, loaded)
    policy = _policy(args, inventory_paths)
    plan = replace(plan, provenance=provenance(inventory_paths, plan, policy.to_json()))
    journal = _journal()
    run_id = new_run_id()
    engine = _engine(args, registry, journal, policy)
    print(f"run {run_id}: {loaded.playbook.name}", file=sys.stderr)
    state = engine.start(plan, run_id, trigger="cli", requested_by=_who(args))
    return _finish(args, state)


def cmd_resume(args: argparse.Namespace) -> int:
    from .plan import replan

    registry = _registry()
    journal = _journal()
    source = journal.get_run(args.run_id).source
    # The inventory the run was planned with, unless told otherwise; whatever resolves
    # differently from what was approved voids the approval at the gate.
    paths = _inventory_paths(args) if args.inventory else _recorded_inventory(source)
    plan = replan(source, _inventory(args, registry, paths), registry)
    _check_approvals(args.approve, plan.loaded)
    engine = _engine(args, registry, journal, _policy(args, paths))
    state = engine.resume(plan, args.run_id, by=_who(args))
    return _finish(args, state)


def _recorded_inventory(source: dict[str, Any]) -> list[Path]:
    from .errors import UsageError
    from .paths import inventory_paths

    recorded = (source.get("inventory") or {}).get("paths")
    if recorded is None:  # a run journaled before runs recorded their inventory
        return inventory_paths()
    missing = [p for p in recorded if not Path(p).exists()]
    if missing:
        raise UsageError(f"the run was planned with inventory {', '.join(recorded)}; "
                         f"{', '.join(missing)} no longer exists: pass --inventory")
    return [Path(p) for p in recorded]


APPROVE_FORMS = ("--approve REMEDY=KIND (e.g. start-api=service.start, as `runbook plan` "
                 "prints it) or --approve FINGERPRINT (the 64 hex digits `runbook run` prints)")


def _check_approvals(approve: list[str], loaded: LoadedPlaybook) -> None:
    """Each --approve names what it approves: a remedy id with its step kind, or a
    fingerprint. A bare id would approve whatever action a playbook of that name holds."""
    import re

    from .errors import UsageError

    forms = {f"{r.id}={r.run}" for r in loaded.playbook.remedies}
    for spec in approve:
        if re.fullmatch(r"[0-9a-f]{64}", spec) or spec in forms:
            continue
        remedy_id, sep, _kind = spec.partition("=")
        shown = ", ".join(sorted(forms)) or "none"
        if not sep:
            raise UsageError(f"--approve {spec}: say what you approve, as {APPROVE_FORMS}; "
                             f"{loaded.playbook.name} ({loaded.path}) has: {shown}")
        raise UsageError(f"--approve {spec}: {loaded.playbook.name} ({loaded.path}) has no "
                         f"remedy {remedy_id!r} running that kind; it has: {shown}")


def _engine(args: argparse.Namespace, registry: Registry, journal: Journal,
            policy: Policy) -> Engine:
    from .engine import Engine
    from .gate import Gate

    interactive = not args.no_input and sys.stdin.isatty() and sys.stderr.isatty()
    gate = Gate(journal, registry, approver=_who(args), pre_approved=frozenset(args.approve),
                prompter=_ask if interactive else None, policy=policy, os_user=_os_user())
    progress = _progress if args.format == "text" or sys.stderr.isatty() else None
    return Engine(registry, journal, gate, concurrency=args.concurrency, progress=progress)


def _ask(proposal: Any) -> bool:
    import json

    print(f"\nremedy {proposal.remedy}: {proposal.kind} on {proposal.target}", file=sys.stderr)
    if proposal.explain:
        print(f"  {proposal.explain}", file=sys.stderr)
    for key, value in proposal.args.items():
        print(f"  {key}: {json.dumps(value, default=str)}", file=sys.stderr)
    for key, value in proposal.identity.items():  # what the target's name resolves to now
        print(f"  acts on {key}: {value}", file=sys.stderr)
    print(f"  fingerprint {proposal.fingerprint}", file=sys.stderr)
    print("Run it? [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    return answer in {"y", "yes"}


def _progress(event: Event) -> None:
    data = event.data
    if event.type == "step.started":
        attempt = f" (attempt {data['attempt']})" if data.get("attempt", 1) > 1 else ""
        print(f"  ...     {data['step']}  {data['kind']} on {data['target']}{attempt}",
              file=sys.stderr)
    elif event.type == "step.finished":
        from .durations import format_duration

        took = data.get("duration_ms")
        took_text = format_duration(took / 1000) if took is not None else ""
        error = f"  {data['error']}" if data.get("error") else ""
        print(f"  {data['status']:<7} {data['step']}  {took_text}{error}", file=sys.stderr)
    elif event.type == "remedy.started":
        print(f"  ...     remedy {data['remedy']}", file=sys.stderr)
    elif event.type == "remedy.finished":
        print(f"  {data['status']:<7} remedy {data['remedy']}", file=sys.stderr)
    elif event.type == "verify.started":
        print(f"  ...     verify {data['verify']}", file=sys.stderr)
    elif event.type in {"approval.refused", "approval.void", "approval.expired"}:
        print(f"  {event.type.split('.')[1]:<7} approval of {data['remedy']}: {data['reason']}",
              file=sys.stderr)


def _finish(args: argparse.Namespace, state: RunState) -> int:
    _print(args.format, state)
    if state.fired():
        return EXIT_FINDINGS
    if state.not_checked():
        return EXIT_UNDIAGNOSED
    return EXIT_OK


def _print(fmt: str, state: RunState) -> None:
    from . import report

    if fmt == "json":
        print(report.as_json(state))
    elif fmt == "markdown":
        print(report.markdown(state), end="")
    else:
        print(report.text(state), end="")


def cmd_history(args: argparse.Namespace) -> int:
    rows = _journal().runs(limit=args.limit, status=args.status)
    if not rows:
        print("no runs yet", file=sys.stderr)
    for row in rows:
        targets = ", ".join(f"{r}={n}" for r, n in row.source.get("targets", {}).items())
        print(f"{row.id}  {row.created_at[:19]}  {row.status:<17} {row.severity}  "
              f"{row.playbook}  {targets}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    state = _journal().state(args.run_id)
    _print(args.format, state)
    return EXIT_OK


def cmd_approve(args: argparse.Namespace) -> int:
    from .approval import APPROVED, DECLINED, record, verdict

    journal = _journal()
    source = journal.get_run(args.run_id).source
    paths = [Path(p) for p in (source.get("inventory") or {}).get("paths", [])]
    decision = DECLINED if args.decline else APPROVED
    policy = _policy(args, paths)
    record(journal, args.run_id, args.remedy, decision=decision, by=_who(args),
           how=_how("runbook approve"), policy=policy, fingerprint=args.fingerprint)
    state = journal.state(args.run_id)
    remedy = state.remedies[args.remedy]
    print(f"{decision}: {remedy.id} ({remedy.kind} on {remedy.target}) by {_who(args)}")
    if decision == APPROVED:
        standing = verdict(journal, args.run_id, remedy.id, remedy.fingerprint,
                           requested_by=state.requested_by, policy=policy)
        if standing.decision != APPROVED:
            print(f"  not yet runnable: {standing.reason}")
    if remedy.explain:
        print(f"  {remedy.explain}")
    print(f"next: runbook resume {args.run_id}")
    return EXIT_OK


def cmd_daemon(args: argparse.Namespace) -> int:
    from .daemon.server import check, serve

    if args.check:
        return check(args.config)
    return serve(args.config, args.host, args.port)


def cmd_kinds(args: argparse.Namespace) -> int:
    for kind in _registry():
        mark = _mark(kind)
        fields = ", ".join(kind.params.model_fields)
        print(f"{mark}  {kind.name}({fields})  [{kind.target_kind}]  {kind.summary}")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    import json

    from .schema import playbook_schema

    print(json.dumps(playbook_schema(_registry()), indent=2))
    return EXIT_OK
