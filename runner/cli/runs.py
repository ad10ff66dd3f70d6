"""The commands over runs and the journal: run, resume, approve, history, report, and
daemon (which starts runs from alerts)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import comms, remote, render, sources
from .exits import EXIT_FINDINGS, EXIT_OK, EXIT_UNDIAGNOSED

if TYPE_CHECKING:
    from ..comms.announce import RunAnnouncer
    from ..engine import Engine, Progress
    from ..gate import Prompter
    from ..journal import Journal
    from ..loader import LoadedPlaybook
    from ..policy import Policy
    from ..registry import Registry
    from ..state import RunState


def cmd_run(args: argparse.Namespace) -> int:
    from .. import lifecycle
    from ..plan import parse_assignments
    from .watching import follow

    registry = sources.registry_of()
    loaded = lifecycle.load_playbook(args.playbook, sources.playbook_dirs(args), registry)
    inventory_paths = sources.inventory_paths_of(args)
    plan = lifecycle.plan_run(loaded, sources.inventory_of(args, registry, inventory_paths),
                              registry, parse_assignments(args.target, "target", bare_ok=True),
                              parse_assignments(args.param, "param"))
    check_approvals(args.approve, loaded)
    policy = sources.policy_of(args, inventory_paths)
    journal = sources.journal()
    announcer = comms.announcer_of(args, journal, inventory_paths)
    engine = engine_for(args, registry, journal, policy, announcer)
    try:
        state = lifecycle.start(
            engine, plan, inventory_paths=inventory_paths, policy=policy, trigger="cli",
            requested_by=sources.who(args),
            on_run_id=lambda run_id: print(f"run {run_id}: {loaded.playbook.name}",
                                           file=sys.stderr))
        state = follow(args, engine, plan, state)  # a long verify window, watched here
    finally:
        comms.close(announcer)  # what the run said is delivered or recorded as failed
    return finish(args, state)


def cmd_resume(args: argparse.Namespace) -> int:
    from .. import lifecycle
    from .watching import follow

    registry = sources.registry_of()
    journal = sources.journal()
    # The inventory the run was planned with, unless told otherwise; whatever resolves
    # differently from what was approved voids the approval at the gate.
    paths = (sources.inventory_paths_of(args) if args.inventory
             else recorded_inventory(journal, args.run_id))
    plan = lifecycle.replan_run(journal, args.run_id, sources.inventory_of(args, registry, paths),
                                registry)
    check_approvals(args.approve, plan.loaded)
    announcer = comms.announcer_of(args, journal, paths)
    engine = engine_for(args, registry, journal, sources.policy_of(args, paths), announcer)
    from .. import shadow

    if shadow.is_shadow(journal.state(args.run_id)):  # still proposes nothing, tells no one
        engine = shadow.engine_for(registry, journal, sources.policy_of(args, paths))
    try:
        state = lifecycle.resume(engine, plan, args.run_id, by=sources.who(args))
        state = follow(args, engine, plan, state)
    finally:
        comms.close(announcer)
    return finish(args, state)


def recorded_inventory(journal: Journal, run_id: str) -> list[Path]:
    from ..lifecycle import recorded_inventory as recorded
    from ..paths import inventory_paths

    paths = recorded(journal, run_id)
    return inventory_paths() if paths is None else paths  # None: journaled before runs said


APPROVE_FORMS = ("--approve REMEDY=KIND (e.g. start-api=service.start, as `runbook plan` "
                 "prints it) or --approve FINGERPRINT (the 64 hex digits `runbook run` prints)")


def check_approvals(approve: list[str], loaded: LoadedPlaybook) -> None:
    """Each --approve names what it approves: a remedy id with its step kind, or a
    fingerprint. A bare id would approve whatever action a playbook of that name holds."""
    import re

    from ..errors import UsageError

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


def engine_for(args: argparse.Namespace, registry: Registry, journal: Journal,
               policy: Policy, announcer: RunAnnouncer | None = None) -> Engine:
    from .. import lifecycle

    interactive = not args.no_input and sys.stdin.isatty() and sys.stderr.isatty()
    progress: Progress | None = (render.progress if args.format == "text"
                                 or sys.stderr.isatty() else None)
    prompter: Prompter | None = render.ask if interactive else None
    if announcer is not None:  # the channel hears of each change, and before a person is asked
        progress, prompter = announcer.wrap(progress, prompter)
    return lifecycle.engine_for(registry, journal, approver=sources.who(args), policy=policy,
                                pre_approved=frozenset(args.approve),
                                prompter=prompter,
                                os_user=sources.os_user(), concurrency=args.concurrency,
                                progress=progress)


def finish(args: argparse.Namespace, state: RunState) -> int:
    render.print_state(args.format, state)
    # Findings win over gaps: 1 says "something is wrong, act"; the report and the JSON's
    # `not_checked` say what did not run besides. 3 only when nothing fired.
    if state.fired():
        return EXIT_FINDINGS
    if state.could_not_check():
        return EXIT_UNDIAGNOSED
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    if getattr(args, "shadow", False):
        from .testing import shadow_history

        return shadow_history(args)
    server = remote.server_of(args)
    if server:
        return _remote_history(args, server)
    rows = sources.journal().runs(limit=args.limit, status=args.status)
    if args.format == "json":
        render.emit({"runs": [
            {"id": row.id, "playbook": row.playbook, "status": row.status,
             "severity": row.severity, "created_at": row.created_at,
             "updated_at": row.updated_at, "targets": row.source.get("targets", {})}
            for row in rows]})
        return EXIT_OK
    if not rows:
        print("no runs yet", file=sys.stderr)
    for row in rows:
        targets = ", ".join(f"{r}={n}" for r, n in row.source.get("targets", {}).items())
        print(f"{row.id}  {row.created_at[:19]}  {row.status:<17} {row.severity}  "
              f"{row.playbook}  {targets}")
    return EXIT_OK


def _remote_history(args: argparse.Namespace, server: str) -> int:
    runs = remote.runs(server, args.limit, args.status)
    if args.format == "json":
        render.emit({"runs": [
            {"id": r["run_id"], "playbook": r["playbook"], "status": r["status"],
             "severity": r["severity"], "created_at": r["started_at"],
             "updated_at": r["finished_at"] or r["started_at"],
             "targets": {role: t["name"] for role, t in r["targets"].items()}} for r in runs]})
        return EXIT_OK
    if not runs:
        print(f"no runs yet on {server}", file=sys.stderr)
    for r in runs:
        targets = ", ".join(f"{role}={t['name']}" for role, t in r["targets"].items())
        print(f"{r['run_id']}  {r['started_at'][:19]}  {r['status']:<17} {r['severity']}  "
              f"{r['playbook']}  {targets}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    server = remote.server_of(args)
    state = (remote.state(server, args.run_id) if server
             else sources.journal().state(args.run_id))
    if args.format == "html":  # the daemon's run page, as a file (no forms)
        from ..runpage import run_page

        print(run_page(state), end="")
        return EXIT_OK
    render.print_state(args.format, state)
    return EXIT_OK


def cmd_approve(args: argparse.Namespace) -> int:
    from ..approval import APPROVED, DECLINED
    from ..lifecycle import decide

    server = remote.server_of(args)
    if server:
        return _remote_approve(args, server)
    journal = sources.journal()
    source = journal.get_run(args.run_id).source
    paths = [Path(p) for p in (source.get("inventory") or {}).get("paths", [])]
    decision = DECLINED if args.decline else APPROVED
    decided = decide(journal, args.run_id, args.remedy, decision=decision,
                     by=sources.who(args), how=sources.how("runbook approve"),
                     policy=sources.policy_of(args, paths), fingerprint=args.fingerprint)
    remedy, standing = decided.remedy, decided.standing
    if args.format == "json":
        waiting = (standing.reason if standing is not None and standing.decision != APPROVED
                   else None)
        render.emit({"run_id": args.run_id, "remedy": remedy.id, "decision": decision,
                     "kind": remedy.kind, "target": remedy.target, "by": sources.who(args),
                     "fingerprint": remedy.fingerprint,
                     "runnable": decision == APPROVED and waiting is None,
                     "waiting_for": waiting, "explain": remedy.explain or None,
                     "next": f"runbook resume {args.run_id}"})
        return EXIT_OK
    print(f"{decision}: {remedy.id} ({remedy.kind} on {remedy.target}) by {sources.who(args)}")
    if standing is not None and standing.decision != APPROVED:
        print(f"  not yet runnable: {standing.reason}")
    if remedy.explain:
        print(f"  {remedy.explain}")
    print(f"next: runbook resume {args.run_id}")
    return EXIT_OK


def _remote_approve(args: argparse.Namespace, server: str) -> int:
    """Through the daemon's one approval path: its policy, four-eyes and TTL apply, and the
    approver is whoever the token belongs to."""
    from ..errors import UsageError

    if args.who:
        raise UsageError("--as does not apply with --server: the daemon knows the approver "
                         f"by the token in {remote.TOKEN_ENV}")
    decided = remote.decide(server, args.run_id, args.remedy, decline=args.decline,
                            fingerprint=args.fingerprint)
    if args.format == "json":
        render.emit(decided)
        return EXIT_OK
    print(f"{decided['decision']}: {decided['remedy']} of run {decided['run_id']} by "
          f"{decided['by']} on {server}")
    print("the daemon resumes the run once what is recorded lets the remedy run")
    return EXIT_OK


def cmd_daemon(args: argparse.Namespace) -> int:
    from ..daemon.server import check, serve

    if args.check:
        return check(args.config)
    return serve(args.config, args.host, args.port)
