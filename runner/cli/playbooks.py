"""The commands that read playbooks and run nothing: list, show, validate, plan, kinds,
schema."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import render, sources
from .exits import EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from .. import yamlsource
    from ..catalog import discover

    rows = []
    for name, path in sorted(discover(sources.playbook_dirs(args)).items()):
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
    registry = sources.registry_of()
    book = sources.load_playbook(args, registry).playbook
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
        print(f"  {render.mark(registry.kind(step.run))}  {step.id}: {step.run}{needs}")
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
    from .. import inventory, loader
    from ..catalog import discover
    from ..errors import PlaybookError, Problem
    from ..paths import inventory_paths

    registry = sources.registry_of()
    paths = [Path(p) for p in args.paths] or list(discover(sources.playbook_dirs(args)).values())
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
    print_target_warnings(registry, list(loaded_inventory or []))
    return EXIT_OK


def print_target_warnings(registry: Any, targets: list[Any]) -> None:
    """What a backend finds unsafe in a target's setup (a probe role that may signal other
    sessions, probes without read-only credentials): said, not refused."""
    for target in targets:
        check = getattr(registry.backend(target.kind).connector, "warnings", None)
        for message in check(target) if check else []:
            print(f"WARNING {target.name}: {message}")


def cmd_plan(args: argparse.Namespace) -> int:
    from ..plan import make_plan, parse_assignments

    registry = sources.registry_of()
    loaded = sources.load_playbook(args, registry)
    plan = make_plan(loaded, sources.inventory_of(args, registry), registry,
                     parse_assignments(args.target, "target", bare_ok=True),
                     parse_assignments(args.param, "param"))
    book = plan.playbook
    print(f"plan for {book.name} [{book.severity}]: {book.summary}\n\ntargets")
    for role, target in plan.targets.items():
        print(f"  {role} = {target.name} ({target.kind}) {target.description}")
    print_target_warnings(registry, list(plan.targets.values()))
    if plan.params:
        print("\nparams")
        for name, value in plan.params.items():
            print(f"  {name} = {value!r}")
    print("\nsteps (read-only, concurrent where independent)")
    from ..validate import step_dependencies

    def on(role: str | None, kind: Any) -> str:
        target = plan.target_for(role, kind)
        return target.name if target else f"(no target: optional role {plan.role_for(role, kind)})"

    for step in book.steps:
        kind = registry.kind(step.run)
        deps = step_dependencies(step)
        after = f"  after {', '.join(sorted(deps))}" if deps else ""
        timeout = step.timeout or kind.timeout
        print(f"  {render.mark(kind)}  {step.id}: {kind.name} on {on(step.target, kind)}  "
              f"timeout {timeout:g}s, retries {step.retries}{after}")
        for note in plan_notes(registry, plan, step, kind):
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


def plan_notes(registry: Any, plan: Any, step: Any, kind: Any) -> list[str]:
    """What a backend says about a step before it runs (an Ansible check's tasks that run
    for real); its `with` rendered with what is known now: params and targets."""
    from .. import expressions

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


def cmd_kinds(args: argparse.Namespace) -> int:
    for kind in sources.registry_of():
        mark = render.mark(kind)
        fields = ", ".join(kind.params.model_fields)
        print(f"{mark}  {kind.name}({fields})  [{kind.target_kind}]  {kind.summary}")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    import json

    from ..schema import playbook_schema

    print(json.dumps(playbook_schema(sources.registry_of()), indent=2))
    return EXIT_OK
