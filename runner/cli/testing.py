"""Testing playbooks without a live system: `runbook replay`, `runbook record` and
`runbook test` (with `--coverage`). Nothing here opens a connection: replay answers every
step from a recording (`runner.replay`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import sources
from .exits import EXIT_FINDINGS, EXIT_OK

DEFAULT_FIXTURES = ("tests/fixtures", "playbooks/fixtures")


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser],
                add_home: Callable[[argparse.ArgumentParser], None]) -> None:
    p = command("replay", "Judge a playbook (the recorded one, or --playbook) against a "
                          "recorded run's step results; touches no live system. Exit 0 when "
                          "its findings and remedies are the run's, 1 when they differ.")
    p.add_argument("run", metavar="RUN_ID|RUN_DIR")
    p.add_argument("--playbook", type=Path, metavar="PATH",
                   help="an edited playbook to judge instead of the recorded one")
    p.add_argument("--param", "-p", metavar="NAME=VALUE", action="append", default=[],
                   help="override a recorded parameter (repeatable)")
    p.add_argument("-o", "--format", choices=["text", "json"], default="text")
    add_home(p)
    p = command("record", "Write a fixture from a recorded run: its step results (secrets "
                          "masked, bulky evidence trimmed) and what followed from them.")
    p.add_argument("run", metavar="RUN_ID|RUN_DIR")
    p.add_argument("--to", type=Path, required=True, metavar="FILE",
                   help="the fixture to write, e.g. tests/fixtures/NAME.yaml")
    add_home(p)
    p = command("test", "Run playbook fixtures (replays, no infrastructure); "
                        "prints `N passed, N failed`.")
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                   help=f"fixture files or folders (default: {', '.join(DEFAULT_FIXTURES)})")
    p.add_argument("--coverage", action="store_true",
                   help="per playbook: findings fired, remedies proposed, `when` branches "
                        "taken, verify checks exercised, and what no fixture reaches")
    p.add_argument("--fail-under", type=float, metavar="PCT",
                   help="with --coverage: fail when finding or remedy coverage is below PCT")
    p.add_argument("--playbooks", metavar="DIR", action="append", type=Path,
                   help="with --coverage: count every playbook in DIR, those no fixture "
                        "names too (repeatable)")
    p.add_argument("-o", "--format", choices=["text", "json"], default="text")


def cmd_replay(args: argparse.Namespace) -> int:
    from ..loader import load
    from ..paths import home
    from ..plan import parse_assignments
    from ..recording import load as load_recording
    from ..replay import replay, to_json

    registry = sources.registry_of()
    recording = load_recording(args.run, home())
    loaded = load(args.playbook, registry) if args.playbook else None
    document = replay(recording, registry, loaded, parse_assignments(args.param, "param"))
    print(to_json(document) if args.format == "json" else replay_text(document), end="")
    return EXIT_FINDINGS if document["diff"] else EXIT_OK


def cmd_record(args: argparse.Namespace) -> int:
    from ..paths import home
    from ..record import write_fixture
    from ..recording import load as load_recording

    recording = load_recording(args.run, home())
    notes = write_fixture(recording, sources.registry_of(), args.to)
    for note in notes:
        print(f"runbook: {note}", file=sys.stderr)
    print(f"wrote {args.to}: run {recording.run_id}; check it with `runbook test {args.to}`")
    return EXIT_OK


def cmd_test(args: argparse.Namespace) -> int:
    from ..fixtures import run_all

    paths = args.paths or [Path(p) for p in DEFAULT_FIXTURES if Path(p).is_dir()]
    registry = sources.registry_of()
    outcomes = list(run_all(paths, registry))
    passed = sum(o.passed for o in outcomes)
    failed = len(outcomes) - passed
    report = None
    if args.coverage:
        from ..catalog import discover
        from ..fixture_coverage import measure
        from ..loader import load

        catalogue = [load(path, registry) for path in
                     discover(args.playbooks or []).values()]
        report = measure(outcomes, registry, catalogue)
    if args.format == "json":
        print(json.dumps({"passed": passed, "failed": failed,
                          "failures": {o.case.id: o.failures for o in outcomes if o.failures},
                          **({"coverage": report.to_json()} if report else {})},
                         indent=2, sort_keys=True))
    else:
        for outcome in outcomes:
            if outcome.failures:
                print(f"FAILED {outcome.case.id}")
                for failure in outcome.failures:
                    print(f"    {failure}")
        if report is not None:
            print(report.text(), end="")
        print(f"{passed} passed, {failed} failed")
    below = report is not None and args.fail_under is not None and \
        min(report.finding_pct, report.remedy_pct) < args.fail_under
    if below and args.format == "text":
        print(f"coverage below {args.fail_under:g} %", file=sys.stderr)
    return 1 if failed or below or not outcomes else EXIT_OK


def replay_text(document: dict[str, Any]) -> str:
    """The replay for a person: steps not recorded, findings, remedies, verify, the diff."""
    lines = [f"replay of run {document['run_id']}: {document['playbook']} "
             f"({document['playbook_path']}), severity {document['severity'] or '-'}, "
             f"{document['verdict'].replace('_', ' ')}"]
    missing = [s["id"] for s in document["steps"] if s["status"] == "not recorded"]
    if missing:
        lines.append(f"not recorded (never run by replay): {', '.join(missing)}")
    lines.append("findings:")
    for f in document["findings"]:
        said = f["message"] or f["reason"] or ""
        lines.append(f"  {f['status']:<8} {f['severity']:<3} {f['id']}" + (f": {said}" if said
                                                                          else ""))
    if document["remedies"]:
        lines.append("remedies:")
    for r in document["remedies"]:
        if r["status"] == "proposed":
            lines.append(f"  proposed   {r['id']}: {r['kind']} on {r['target']} "
                         f"{json.dumps(r['args'], sort_keys=True)}")
        else:
            lines.append(f"  {r['status'].replace('_', ' '):<10} {r['id']}: {r['reason']}")
    if document["verify"]:
        lines.append("verify (on recorded results):")
    for v in document["verify"]:
        lines.append(f"  {v['status']:<12} {v['id']}" + (f": {v['error']}" if v["error"] else ""))
    if document["diff"]:
        lines.append("differs from the recorded run:")
        for change in document["diff"]:
            what = f"finding {change['finding']}" if "finding" in change \
                else f"remedy {change['remedy']}"
            lines.append(f"  {what}: {_brief(change['recorded'])} -> {_brief(change['replayed'])}")
    else:
        lines.append("same findings and remedies as the recorded run")
    return "\n".join(lines) + "\n"


def _brief(view: dict[str, Any] | None) -> str:
    if view is None:
        return "(absent)"
    if "proposed" in view:
        return (f"proposed {json.dumps(view.get('args'), sort_keys=True)}" if view["proposed"]
                else "not proposed")
    return f"{view['status']} {view.get('severity') or ''}".strip()


def shadow_history(args: argparse.Namespace) -> int:
    """`runbook history --shadow`: each shadow run's would-be remedies and how they compare
    with what people approved in the next run of the same playbook on the same targets."""
    from .. import shadow

    found = shadow.comparisons(sources.journal(), limit=max(args.limit, 1000))
    routes = shadow.per_route(found)
    shown = found[-args.limit:]
    if args.format == "json":
        print(json.dumps({"routes": routes, "runs": [c.to_json() for c in shown]},
                         indent=2, sort_keys=True))
        return EXIT_OK
    if not found:
        print("no shadow runs yet", file=sys.stderr)
    for route, stats in routes.items():
        ratio = "-" if stats["match_ratio"] is None else f"{stats['match_ratio']:.0%}"
        print(f"route {route}: {stats['runs']} shadow run(s), {stats['compared']} compared, "
              f"{stats['matched']} matched ({ratio})")
    for c in shown:
        would = ", ".join(f"{w['remedy']} ({w['kind']} on {w['target']})" for w in c.would)
        later = f" vs {c.later}" if c.later else ""
        print(f"{c.run_id}  {c.at[:19]}  {c.route}  {c.playbook}  would propose: "
              f"{would or 'nothing'}  -> {c.outcome}{later}")
    return EXIT_OK

