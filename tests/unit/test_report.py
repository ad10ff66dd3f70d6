"""Reports never give a false all-clear: the verdict, what could not be checked and why,
findings by severity, and the exit code that says which."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from runner import report
from runner.cli.exits import EXIT_FINDINGS, EXIT_OK, EXIT_UNDIAGNOSED
from runner.cli.runs import finish
from runner.state import RunState
from tests.enginekit import Kit


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    return Kit(tmp_path)


def exit_code(state: RunState, capsys: Any) -> tuple[int, dict[str, Any]]:
    """What `runbook run -o json` exits with and prints for this run."""
    code = finish(argparse.Namespace(format="json"), state)
    return code, json.loads(capsys.readouterr().out)


def test_a_finding_on_a_failed_step_is_unknown_and_names_the_step_and_its_error(
        kit: Kit, capsys: Any) -> None:
    state = kit.run("""
        steps:
          - {id: ok, run: mem.sleep, with: {value: 1}}
          - {id: broken, run: mem.fail}
        findings:
          - {id: lagging, when: "steps.broken.lag > 10 and steps.ok.value", say: lag}
        """)
    reason = state.findings["lagging"].reason or ""
    assert state.findings["lagging"].status == "unknown"
    assert reason == "step broken did not succeed (failure number 1)"
    code, document = exit_code(state, capsys)
    assert code == EXIT_UNDIAGNOSED
    assert document["verdict"] == "inconclusive"
    assert {(gap["what"], gap["id"]) for gap in document["not_checked"]} == {
        ("step", "broken"), ("finding", "lagging")}
    lead = report.text(state).split("\n")[3]
    assert lead == ("INCONCLUSIVE: nothing found, but 1 step and 1 finding could not be "
                    "checked: the problem may be there")
    assert "nothing wrong" not in report.text(state).lower()
    assert "**Inconclusive**" in report.markdown(state)


def test_a_finding_reading_a_field_its_step_lacks_names_the_step_and_the_field(
        kit: Kit, capsys: Any) -> None:
    """No step failed, yet the finding could not be judged: that is no all-clear either."""
    state = kit.run("""
        steps:
          - {id: usage, run: mem.sleep, with: {value: 50}}
        findings:
          - {id: inodes, when: steps.usage.inodes_pct > 90, say: full}
          - {id: remedy-text, when: "steps.usage.value > 1", say: "{{ steps.usage.nope }}"}
        """)
    for finding in ("inodes", "remedy-text"):
        reason = state.findings[finding].reason or ""
        assert state.findings[finding].status == "unknown"
        assert "step usage has no field" in reason, reason
        assert "dict object" not in reason and "attribute" not in reason
    assert "'inodes_pct' (it has: context, ok, slept, timeout, value)" in (
        state.findings["inodes"].reason or "")
    code, document = exit_code(state, capsys)
    assert (code, document["verdict"]) == (EXIT_UNDIAGNOSED, "inconclusive")
    assert "finding inodes: could not evaluate" in report.text(state)


def test_findings_and_failed_steps_exit_1_and_the_report_says_what_did_not_run(
        kit: Kit, capsys: Any) -> None:
    state = kit.run("""
        steps:
          - {id: a, run: mem.sleep, with: {value: 7}}
          - {id: broken, run: mem.fail}
        findings:
          - {id: low, severity: P3, when: steps.a.value > 5, say: "minor {{ steps.a.value }}"}
          - {id: worse, severity: P2, when: steps.a.value > 6, say: worse}
          - {id: worst, severity: P1, when: steps.a.value > 6, say: worst}
          - {id: also-worse, severity: P2, when: steps.a.value > 1, say: also}
        """)
    assert [f.id for f in state.fired()] == ["worst", "worse", "also-worse", "low"]
    code, document = exit_code(state, capsys)
    assert code == EXIT_FINDINGS
    assert document["verdict"] == "problems_found"
    assert [f["id"] for f in document["findings"]] == ["worst", "worse", "also-worse", "low"]
    assert [gap["id"] for gap in document["not_checked"]] == ["broken"]
    assert "failure number 1" in document["not_checked"][0]["reason"]
    text = report.text(state)
    assert text.index("FOUND") < text.index("[P1] worst") < text.index("[P3] low") \
        < text.index("COULD NOT CHECK (so there may be more") < text.index("broken (mem.fail")
    assert "Some checks did not run" in report.markdown(state)


def test_nothing_found_only_when_every_check_ran(kit: Kit, capsys: Any) -> None:
    state = kit.run("""
        steps:
          - {id: a, run: mem.sleep, with: {value: 1}}
          - {id: b, run: mem.sleep, when: "steps.a.value > 5"}
        findings:
          - {id: high, when: steps.a.value > 5, say: high}
          - {id: about-skipped, when: "steps.b.value == 2", say: never}
        """)
    code, document = exit_code(state, capsys)
    assert (code, document["verdict"], document["not_checked"]) == (EXIT_OK, "nothing_found", [])
    assert "FOUND nothing wrong (every check ran)" in report.text(state)
    assert "Nothing wrong found (every check ran)." in report.markdown(state)


def test_a_run_stopped_mid_diagnosis_is_inconclusive(kit: Kit) -> None:
    state = RunState.fold("r1", kit.journal.events(kit.run("""
        steps:
          - {id: a, run: mem.sleep, with: {value: 1}}
        findings:
          - {id: high, when: steps.a.value > 5, say: high}
        """).run_id)[:2])  # run.started and step.started: the process died there
    assert state.verdict() == "inconclusive"
    assert state.could_not_check()[0]["reason"].startswith("did not finish (running)")


def test_the_daemon_s_incident_message_gives_no_all_clear_either(kit: Kit) -> None:
    from runner.daemon.notify import incident

    state = kit.run("""
        steps:
          - {id: broken, run: mem.fail}
        findings:
          - {id: lagging, when: steps.broken.lag > 10, say: lag}
        """)
    message = incident(state, [])
    assert message["found"] == ["INCONCLUSIVE: nothing found, but some checks could not run"]
    assert message["not_checked"] == [
        "broken: failed: failure number 1",
        "lagging: step broken did not succeed (failure number 1)"]


def test_a_step_skipped_because_what_it_needs_failed_was_not_checked_either(
        kit: Kit) -> None:
    state = kit.run("""
        steps:
          - {id: broken, run: mem.fail}
          - {id: after, run: mem.sleep, needs: [broken]}
          - {id: maybe, run: mem.sleep, when: "false"}
        """)
    assert [(gap["id"], gap["reason"]) for gap in state.could_not_check()] == [
        ("broken", "failed: failure number 1"),
        ("after", "skipped: needs broken, which did not succeed")]
    assert state.steps["after"].blocked_by == ["broken"]
    assert state.verdict() == "inconclusive"


def test_a_condition_on_a_step_skipped_on_purpose_is_false_not_inconclusive(
        kit: Kit, capsys: Any) -> None:
    """A skipped step's fields read as none: `none > 90` is false, as the design says."""
    state = kit.run("""
        steps:
          - {id: a, run: mem.sleep, with: {value: 1}}
          - {id: pool, run: mem.sleep, when: "steps.a.value > 5", with: {value: 99}}
          - {id: broken, run: mem.fail, when: "steps.a.value > 5"}
          - {id: blocked, run: mem.sleep, needs: [broken]}
        findings:
          - {id: pool-full, when: steps.pool.value > 90, say: full}
          - {id: pool-listed, when: steps.pool.value | length > 0, say: listed}
          - {id: typo, when: steps.a.valeu > 0, say: never}
        """)
    assert state.findings["pool-full"].status == "clear"
    assert state.findings["pool-full"].reason == "reads pool, which was skipped: false"
    assert state.findings["pool-listed"].status == "clear"
    # A field misspelt on a step that ran is still unknown: never hidden as clear.
    assert state.findings["typo"].status == "unknown"
    assert "step a has no field 'valeu'" in (state.findings["typo"].reason or "")


def test_a_condition_on_a_step_skipped_for_a_failure_stays_unknown(kit: Kit) -> None:
    state = kit.run("""
        steps:
          - {id: broken, run: mem.fail}
          - {id: blocked, run: mem.sleep, needs: [broken]}
        findings:
          - {id: high, when: steps.blocked.value > 90, say: high}
        """)
    assert state.findings["high"].status == "unknown"
    assert state.verdict() == "inconclusive"
