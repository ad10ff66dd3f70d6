"""The shipped playbooks' fixtures (playbooks/fixtures/, recorded from lab runs and cases
derived from them) all pass and reach every finding and remedy: `runbook test` in the unit
stage, without the lab."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.cli import main

ROOT = Path(__file__).resolve().parents[2]
FIXTURES, PLAYBOOKS = ROOT / "playbooks" / "fixtures", ROOT / "playbooks"


def test_shipped_fixtures_pass_at_full_finding_and_remedy_coverage(
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["test", str(FIXTURES), "--coverage", "--playbooks", str(PLAYBOOKS),
                 "--fail-under", "100", "-o", "json"])
    report = json.loads(capsys.readouterr().out)
    assert report["failures"] == {}
    assert report["failed"] == 0 and report["passed"] >= len(list(FIXTURES.glob("*.yaml")))
    coverage = report["coverage"]
    shipped = sorted(p.stem for p in PLAYBOOKS.glob("*.yaml"))
    assert sorted(coverage["playbooks"]) == shipped  # every shipped playbook is replayed
    gaps = {name: (p["findings"]["not_reached"], p["remedies"]["not_reached"])
            for name, p in coverage["playbooks"].items()
            if p["findings"]["not_reached"] or p["remedies"]["not_reached"]}
    assert gaps == {}
    assert (coverage["findings_pct"], coverage["remedies_pct"]) == (100.0, 100.0)
    assert code == 0


def test_every_shipped_fixture_says_where_its_step_results_come_from() -> None:
    for fixture in sorted(FIXTURES.glob("*.yaml")):
        header = fixture.read_text().split("\nplaybook", 1)[0]
        assert "Recorded by `runbook record` from run" in header, fixture.name
        assert "# Lab: " in header, fixture.name
        if "\ncases:\n" in fixture.read_text():
            assert "derived from this run's step results" in header, fixture.name
