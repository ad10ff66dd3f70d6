"""Severity from impact: a playbook's matrix of ordered rules, first match wins, SEV aliases,
a route that raises (never lowers), no findings -> none, the why shown everywhere."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from runner import lifecycle, report
from runner.errors import PlaybookError
from runner.journal import new_run_id
from runner.policy import Policy
from runner.severity import route_floor
from runner.state import RunState
from runner.vocabulary import EventKind
from tests.enginekit import Kit
from tests.support.incidentkit import IncidentKit

MATRIX = """\
severity:
  default: P2
  rules:
    - {level: P0, when: "findings['big'] and steps.look.value > 5", why: everything is down}
    - {level: SEV2, when: "findings['big']", why: key endpoints failing}
    - {level: P2, when: "true", why: "one client, intermittent"}
steps:
  - {id: look, run: mem.sleep, with: {value: "{{ params.value }}"}}
params:
  value: {type: int, default: 0}
findings:
  - {id: big, when: steps.look.value > 2, say: "value {{ steps.look.value }}"}
  - {id: small, when: steps.look.value == 1, say: small, severity: P3}
"""


@pytest.fixture
def kit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> IncidentKit:
    return IncidentKit(tmp_path, monkeypatch, capsys)


def severity_events(kit: IncidentKit, run_id: str) -> list[dict[str, Any]]:
    from runner.journal import Journal

    return [e.data for e in Journal(kit.home).events(run_id) if e.type == EventKind.SEVERITY]


def test_the_first_rule_that_holds_sets_the_severity_with_its_why(kit: IncidentKit) -> None:
    book = kit.playbook(MATRIX)
    both = kit.run(book, "-p", "value=9")  # rule 1 (P0) and rule 2 (P1) hold: the first wins
    assert (both["severity"], both["severity_why"]) == ("P0", "everything is down")
    one = kit.run(book, "-p", "value=3")  # only rule 2: its SEV2 is P1
    assert (one["severity"], one["severity_why"]) == ("P1", "key endpoints failing")
    [event] = severity_events(kit, one["run_id"])
    assert event["rule"] == 2 and event["source"] == "rule"
    assert event["when"] == "findings['big']"
    low = kit.run(book, "-p", "value=1")  # only the catch-all
    assert (low["severity"], low["severity_why"]) == ("P2", "one client, intermittent")


def test_order_decides_not_the_worst_level(kit: IncidentKit) -> None:
    book = kit.playbook(MATRIX.replace(
        "  rules:\n", "  rules:\n    - {level: P3, when: \"findings['big']\", why: first}\n"))
    assert kit.run(book, "-p", "value=9")["severity"] == "P3"


def test_the_why_is_shown_in_text_and_markdown_and_history(kit: IncidentKit) -> None:
    run = kit.run(kit.playbook(MATRIX), "-p", "value=9")
    text = kit.cli("report", run["run_id"])
    assert text.splitlines()[0].startswith("pb [P0]")
    assert "SEVERITY P0: everything is down" in text
    markdown = kit.cli("report", run["run_id"], "--format", "markdown")
    assert "severity **P0**: everything is down" in markdown
    [row] = kit.json("history")["runs"]
    assert row["severity"] == "P0"


def test_sev_aliases_in_labels_rules_and_findings(kit: IncidentKit) -> None:
    book = kit.playbook("""\
        severity: SEV2
        steps:
          - {id: look, run: mem.sleep, with: {value: 3}}
        findings:
          - {id: worst, when: steps.look.value == 3, say: three, severity: SEV1}
        """)
    shown = kit.json("show", str(book))
    assert shown["severity"] == "P1"  # the label, as SEV2 means
    run = kit.run(book)
    assert run["findings"][0]["severity"] == "P0"
    assert run["severity"] == "P0"  # no matrix: the most severe finding that fired
    assert "worst" in run["severity_why"] and "P0" in run["severity_why"]


def test_no_finding_fired_means_no_incident_severity(kit: IncidentKit) -> None:
    from runner.daemon import notify

    book = kit.playbook(MATRIX.replace("default: P2", "default: P1"))
    run = kit.run(book, "-p", "value=0")
    assert run["verdict"] == "nothing_found"
    assert run["severity"] == "none" and "no finding fired" in run["severity_why"]
    text = kit.cli("report", run["run_id"])
    assert "[P1]" not in text and text.startswith("pb [none]")
    from runner.journal import Journal

    state = Journal(kit.home).state(run["run_id"])
    message = notify.incident(state, [])
    assert "P1" not in str(message), message


def test_a_rule_that_cannot_be_judged_is_passed_over_and_said(kit: IncidentKit) -> None:
    book = kit.playbook("""\
        severity:
          rules:
            - {level: P0, when: "steps.broken.ok", why: never judged}
            - {level: P1, when: "findings['seen']", why: seen}
        steps:
          - {id: look, run: mem.sleep, with: {value: 3}}
          - {id: broken, run: mem.fail, with: {key: b, times: 5}}
        findings:
          - {id: seen, when: steps.look.value == 3, say: seen}
        """)
    run = kit.run(book)
    assert (run["severity"], run["severity_why"]) == ("P1", "seen")
    [event] = severity_events(kit, run["run_id"])
    unjudged: dict[str, Any]
    [unjudged] = event["unjudged"]
    assert unjudged["rule"] == 1 and unjudged["level"] == "P0"
    assert "broken" in unjudged["reason"]


def test_a_bad_rule_is_a_located_validation_error() -> None:
    from runner.loader import parse
    from tests.enginekit import mem_registry

    head = "name: pb\nsummary: s\ntargets:\n  box: {kind: mem}\nseverity:\n  rules:\n"
    tail = "steps:\n  - {id: look, run: mem.sleep}\n"
    for rule, line, said in (("{level: P9, when: 'true'}", 7, "got 'P9'"),
                             ("{level: P1, when: \"findings['nope']\"}", 7,
                              "unknown finding findings['nope']"),
                             ("{level: P1, when: '((('}", 7, "expression '((('")):
        with pytest.raises(PlaybookError) as caught:
            parse(f"{head}    - {rule}\n{tail}", "pb.yaml", mem_registry())
        problems = [str(p) for p in caught.value.problems]
        assert any(f"pb.yaml:{line}:" in p and said in p for p in problems), problems


def start_with_route(kit: Kit, body: str, level: str | None) -> RunState:
    plan = kit.plan(body)
    engine = kit.engine()
    return lifecycle.start(engine, replace(plan), inventory_paths=[], policy=Policy(),
                           trigger="alert route r", requested_by="alert:r",
                           route_severity=route_floor("r", level))


ROUTED = """\
severity: P2
steps:
  - {id: look, run: mem.sleep, with: {value: 3}}
findings:
  - {id: seen, when: steps.look.value == 3, say: seen}
"""


def test_a_route_raises_the_severity(tmp_path: Path) -> None:
    state = start_with_route(Kit(tmp_path), ROUTED, "P0")
    assert state.severity == "P0"
    assert "raised to P0 by route r" in state.severity_why
    assert "the diagnosis said P2" in state.severity_why
    event = next(e for e in state.timeline if e.type == EventKind.SEVERITY)
    assert event.data["source"] == "route" and event.data["computed"]["level"] == "P2"


def test_a_route_never_lowers_it(tmp_path: Path) -> None:
    state = start_with_route(Kit(tmp_path), ROUTED.replace("severity: P2", "severity: P1"), "P3")
    assert state.severity == "P1" and "route" not in state.severity_why


def test_a_route_makes_no_incident_of_a_run_that_found_nothing(tmp_path: Path) -> None:
    state = start_with_route(Kit(tmp_path), ROUTED.replace("== 3", "== 4"), "P0")
    assert state.severity == "none"


def test_an_old_journal_without_a_severity_event_still_reads(tmp_path: Path) -> None:
    kit = Kit(tmp_path)
    state = kit.run(ROUTED)
    old = [e for e in kit.journal.events(state.run_id) if e.type != EventKind.SEVERITY]
    folded = RunState.fold(state.run_id, old)
    assert (folded.severity, folded.severity_why) == ("P2", "")  # the playbook's label
    assert report.text(folded).startswith("pb [P2]")
    assert "SEVERITY" not in report.text(folded)
    assert folded.to_json()["severity_why"] == ""
    assert new_run_id() != state.run_id


def test_a_resumed_run_keeps_the_route_s_severity(tmp_path: Path) -> None:
    kit = Kit(tmp_path)
    plan = kit.plan(ROUTED)
    engine = kit.engine()
    state = lifecycle.start(engine, plan, inventory_paths=[], policy=Policy(),
                            trigger="alert route r", requested_by="alert:r",
                            route_severity=route_floor("r", "P0"))
    replanned = lifecycle.replan_run(kit.journal, state.run_id, kit.inventory, kit.registry)
    assert replanned.provenance == {"route_severity": {"route": "r", "level": "P0"}}
    without = lifecycle.start(engine, plan, inventory_paths=[], policy=Policy(),
                              trigger="cli", requested_by="me")
    again = lifecycle.replan_run(kit.journal, without.run_id, kit.inventory, kit.registry)
    assert "route_severity" not in again.provenance
