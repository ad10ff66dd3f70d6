"""The commands that read playbooks and run nothing: list, show, validate, plan, kinds,
schema."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import render, sources
from .exits import EXIT_OK, EXIT_USAGE


def cmd_list(args: argparse.Namespace) -> int:
    from .. import yamlsource
    from ..catalog import discover

    rows = []
    for name, path in sorted(discover(sources.playbook_dirs(args)).items()):
        doc, problems = yamlsource.read(path)  # bounded: an alias bomb is refused there
        data = doc.data if isinstance(doc.data, dict) else {}
        if problems:
            data = {"summary": "(does not parse: runbook validate)"}
        label = data.get("severity", "")
        label = label.get("default", "P3") if isinstance(label, dict) else label  # a matrix
        rows.append((name, str(label), str(data.get("summary", "")),
                     str(path), not problems))
    if args.format == "json":
        render.emit({"playbooks": [
            {"name": name, "severity": severity, "summary": summary, "path": path,
             "parses": parses} for name, severity, summary, path, parses in rows]})
        return EXIT_OK
    if not rows:
        print("no playbooks found (set RUNBOOK_PLAYBOOKS or --playbooks)", file=sys.stderr)
        return EXIT_OK
    width = max(len(r[0]) for r in rows)
    for name, severity, summary, _path, _parses in rows:
        print(f"{name:<{width}}  {severity:<2}  {summary}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    registry = sources.registry_of()
    loaded = sources.load_playbook(args, registry)
    book = loaded.playbook
    if args.format == "json":
        render.emit(playbook_document(registry, loaded))
        return EXIT_OK
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
            window = (f" for {check.for_:g}s" if isinstance(check.for_, float)
                      else f" for {check.for_}" if check.for_ else "")
            print(f"  read-only  {book.verify_id(i)}: {check.run}{window}")
    return EXIT_OK


def playbook_document(registry: Any, loaded: Any) -> dict[str, Any]:
    """`show -o json`: the playbook as its file says it (keys as written: `with`, `for`),
    each step, remedy and verify check with its kind's `mutating` and
    `read_only_by_author`, and each verify check's id."""
    book = loaded.playbook
    document: dict[str, Any] = {"path": str(loaded.path),
                                **book.model_dump(mode="json", by_alias=True)}
    for section in ("steps", "remedies", "verify"):
        for entry in document[section]:
            kind = registry.kind(entry["run"])
            entry.update(mutating=kind.mutating, read_only_by_author=kind.read_only_by_author)
    for i, check in enumerate(document["verify"]):
        check["id"] = book.verify_id(i)
    return document


def cmd_validate(args: argparse.Namespace) -> int:
    from .. import inventory, loader
    from ..catalog import discover
    from ..errors import PlaybookError, Problem
    from ..paths import inventory_paths

    registry = sources.registry_of()
    named = [Path(p) for p in args.paths]
    paths = playbook_files(named) if named \
        else list(discover(sources.playbook_dirs(args)).values())
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
    try:  # notify.yaml and a team's message templates, beside the inventory
        from ..comms.setup import for_cli

        for_cli(None, inv_paths)
    except PlaybookError as exc:
        problems += exc.problems
    found = target_warnings(registry, list(loaded_inventory or []))
    if args.format == "json":
        render.emit({"ok": not problems, "playbooks": [str(p) for p in paths],
                     "inventory": [str(p) for p in inv_paths],
                     "problems": [p._asdict() for p in sorted(problems)],
                     "warnings": found})
        return EXIT_USAGE if problems else EXIT_OK
    if problems:
        raise PlaybookError(problems)
    print(f"ok: {len(paths)} playbook(s), inventory {', '.join(map(str, inv_paths)) or 'none'}")
    print_warnings(found)
    return EXIT_OK


def playbook_files(named: list[Path]) -> list[Path]:
    """The files named, and the playbooks in the folders named (as `list` finds them)."""
    from ..catalog import discover

    files: list[Path] = []
    for path in named:
        files += discover([path]).values() if path.is_dir() else [path]
    return files


def target_warnings(registry: Any, targets: list[Any]) -> list[dict[str, str]]:
    """What a backend finds unsafe in a target's setup (a probe role that may signal other
    sessions, probes without read-only credentials), and the variables its settings name
    that are not set (each once): said, not refused."""
    from ..envcheck import missing_variables
    from ..extras import missing_for

    found: list[dict[str, str]] = []
    for target in targets:
        check = getattr(registry.backend(target.kind).connector, "warnings", None)
        found += [{"target": target.name, "source": target.source, "message": message}
                  for message in (check(target) if check else [])]
    found += [{"target": m.target, "source": m.source, "message": str(m), "variable": m.variable}
              for m in missing_variables(targets)]
    found += [{"target": m.target.name, "source": m.target.source,  # each extra once
               "message": f"target {m.target.name}: {m.need}"}
              for m in missing_for(registry, targets)]
    return found


def print_warnings(found: list[dict[str, str]]) -> None:
    for warning in found:
        text = warning["message"].removeprefix(f"target {warning['target']}: ")
        where = f" ({warning['source']})" if "variable" in warning and warning["source"] else ""
        print(f"WARNING {warning['target']}: {text}{where}")


def cmd_plan(args: argparse.Namespace) -> int:
    from ..plan import make_plan, parse_assignments

    registry = sources.registry_of()
    loaded = sources.load_playbook(args, registry)
    plan = make_plan(loaded, sources.inventory_of(args, registry), registry,
                     parse_assignments(args.target, "target", bare_ok=True),
                     parse_assignments(args.param, "param"))
    document = plan_document(registry, plan)
    if args.format == "json":
        render.emit(document)
    else:
        print_plan(registry, document)
    return EXIT_OK


def plan_document(registry: Any, plan: Any) -> dict[str, Any]:
    """What a run would do, as `plan -o json` prints it: each step, remedy and verify check
    with its kind, role and bound target (null: an optional role left unbound)."""
    from ..validate import step_dependencies

    book = plan.playbook

    def on(role: str | None, kind: Any) -> dict[str, Any]:
        target = plan.target_for(role, kind)
        return {"kind": kind.name, "role": plan.role_for(role, kind),
                "target": target.name if target else None}

    steps = []
    for step in book.steps:
        kind = registry.kind(step.run)
        steps.append({"id": step.id, **on(step.target, kind), "mutating": kind.mutating,
                      "read_only_by_author": kind.read_only_by_author,
                      "timeout": step.timeout or kind.timeout, "retries": step.retries,
                      "after": sorted(step_dependencies(step)),
                      "notes": plan_notes(registry, plan, step, kind)})
    remedies = []
    for remedy in book.remedies:
        kind = registry.kind(remedy.run)
        remedies.append({"id": remedy.id, **on(remedy.target, kind), "mutating": kind.mutating,
                         "when": remedy.when, "approve": f"{remedy.id}={kind.name}"})
    verify = [{"id": book.verify_id(i), **on(check.target, registry.kind(check.run))}
              for i, check in enumerate(book.verify)]
    return {
        "playbook": book.name, "path": str(plan.loaded.path), "severity": book.severity,
        "summary": book.summary,
        "targets": {role: {"name": t.name, "kind": t.kind, "description": t.description,
                           "source": t.source} for role, t in plan.targets.items()},
        "params": plan.params, "steps": steps, "remedies": remedies, "verify": verify,
        "warnings": target_warnings(registry, list(plan.targets.values())),
    }


def print_plan(registry: Any, plan: dict[str, Any]) -> None:
    def on(entry: dict[str, Any]) -> str:
        return entry["target"] or f"(no target: optional role {entry['role']})"

    print(f"plan for {plan['playbook']} [{plan['severity']}]: {plan['summary']}\n\ntargets")
    for role, target in plan["targets"].items():
        print(f"  {role} = {target['name']} ({target['kind']}) {target['description']}")
    print_warnings(plan["warnings"])
    if plan["params"]:
        print("\nparams")
        for name, value in plan["params"].items():
            print(f"  {name} = {value!r}")
    print("\nsteps (read-only, concurrent where independent)")
    for step in plan["steps"]:
        after = f"  after {', '.join(step['after'])}" if step["after"] else ""
        print(f"  {render.mark(registry.kind(step['kind']))}  {step['id']}: {step['kind']} on "
              f"{on(step)}  timeout {step['timeout']:g}s, retries {step['retries']}{after}")
        for note in step["notes"]:
            print(f"             {note}")
    print("\nremedies (MUTATING: each needs a recorded approval, run in this order; "
          "pre-approve one with --approve REMEDY=KIND)")
    for remedy in plan["remedies"]:
        print(f"  MUTATING   {remedy['approve']} on {on(remedy)}"
              f"{'  when ' + remedy['when'] if remedy['when'] else ''}")
    for i, check in enumerate(plan["verify"]):
        print(f"{'' if i else chr(10) + 'verify (after remedies)' + chr(10)}"
              f"  read-only  {check['id']}: {check['kind']} on {on(check)}")


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
    from .. import catalogue_doc

    registry = sources.registry_of()
    if args.kind:  # one kind in full
        from ..errors import UsageError
        from ..registry import UnknownKind

        try:
            kind = registry.kind(args.kind)
        except UnknownKind as exc:  # a typo on the command line: exit 2, with a suggestion
            raise UsageError(str(exc)) from None
        if args.format == "json":
            render.emit(catalogue_doc.describe(kind))
        else:
            print(catalogue_doc.markdown_section(kind) if args.format == "markdown"
                  else catalogue_doc.text(kind), end="")
        return EXIT_OK
    if args.format == "markdown":  # the catalogue page (docs/catalogue.md)
        print(catalogue_doc.markdown(registry), end="")
        return EXIT_OK
    if args.format == "json":
        render.emit({"kinds": [
            {"name": kind.name, "target_kind": kind.target_kind, "mutating": kind.mutating,
             "read_only_by_author": kind.read_only_by_author, "summary": kind.summary,
             "timeout": kind.timeout, "params": kind.params.model_json_schema()}
            for kind in registry]})
        return EXIT_OK
    for kind in registry:
        mark = render.mark(kind)
        fields = ", ".join(kind.params.model_fields)
        print(f"{mark}  {kind.name}({fields})  [{kind.target_kind}]  {kind.summary}")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    import json

    from ..schema import playbook_schema

    print(json.dumps(playbook_schema(sources.registry_of()), indent=2))
    return EXIT_OK
