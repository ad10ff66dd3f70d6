"""`runbook test`, `runbook record`, `--coverage` and the pytest plugin, on fixtures written
here for a playbook of the in-process `mem` backend, and on one recorded from a real run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from tests.enginekit import Kit

ROOT = Path(__file__).resolve().parents[2]

PLAYBOOK = """\
name: pb
summary: test
targets:
  box: {kind: mem}
params:
  limit: {type: int, default: 3}
steps:
  - {id: a, run: mem.sleep, with: {value: {n: 5}}}
  - {id: extra, run: mem.sleep, when: "steps.a.value.n > 100"}
findings:
  - {id: big, when: "steps.a.value.n > params.limit", say: "n is {{ steps.a.value.n }}"}
  - {id: small, when: "steps.a.value.n < 2", say: tiny, severity: P1}
  - {id: never, when: "steps.a.value.n < 0", say: never}
remedies:
  - {id: fix, run: mem.act, when: "findings.big", with: {items: "{{ [steps.a.value.n] }}"}}
  - {id: shrink, run: mem.act, when: "findings.small", with: {items: [3]}}
verify:
  - {id: v, run: mem.sleep, with: {value: 1}, expect: "result.value == 1"}
"""

GOOD = """\
# hand-written for this test
playbook: pb.yaml
targets: {box: {name: box, kind: mem}}
steps:
  a: {status: ok, result: {ok: true, value: {n: 5}}}
verify:
  v: {status: passed, result: {value: 1}}
cases:
  - name: big fires
    expect:
      findings: {big: {status: fired, severity: P3, says: "n is 5"}, small: clear}
      remedies: {fix: {status: proposed, target: box, args: {items: [5]}}, shrink: not proposed}
      verify: {v: passed}
  - name: small fires
    steps: {a: {result: {value: {n: 1}}}}
    expect:
      severity: P1
      findings: {big: not fired, small: fired}
      remedies: {fix: not_needed, shrink: proposed}
  - name: a higher limit
    params: {limit: 10}
    expect:
      findings: {big: clear}
  - name: a failed step leaves it unknown
    steps: {a: {status: failed, error: "connection refused"}}
    expect:
      findings: {big: unknown}
      remedies: {fix: skipped}
"""

BROKEN = """\
playbook: pb.yaml
targets: {box: {name: box, kind: mem}}
steps:
  a: {status: ok, result: {ok: true, value: {n: 5}}}
expect:
  findings: {big: clear, nosuch: fired}
  remedies: {fix: {status: proposed, args: {items: [6]}}}
"""


@pytest.fixture
def fixtures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNBOOK_BACKENDS", "tests.support.membackend:register")
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))
    folder = tmp_path / "fixtures"
    folder.mkdir()
    (folder / "pb.yaml").write_text(PLAYBOOK)
    (folder / "good.yaml").write_text(GOOD)
    return folder


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out + err


def test_good_fixtures_pass(fixtures: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = cli(capsys, "test", str(fixtures / "good.yaml"))
    assert (code, out.splitlines()[-1]) == (0, "4 passed, 0 failed")


def test_a_broken_fixture_fails_and_says_why(fixtures: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (fixtures / "broken.yaml").write_text(BROKEN)
    (fixtures / "unreadable.yaml").write_text("playbook: nosuch.yaml\n")
    code, out = cli(capsys, "test", str(fixtures / "good.yaml"), str(fixtures / "broken.yaml"),
                    str(fixtures / "unreadable.yaml"))
    assert code == 1
    assert out.splitlines()[-1] == "4 passed, 2 failed"
    assert f"FAILED {fixtures / 'broken.yaml'}::broken" in out
    assert "    finding big: expected clear, got fired" in out
    assert "    finding nosuch: the playbook has no such finding" in out
    assert "    remedy fix: argument items: expected [6], got [5]" in out
    assert "playbook nosuch.yaml not found" in out


def test_no_fixture_at_all_is_a_failure(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    code, out = cli(capsys, "test", str(tmp_path / "empty"))
    assert (code, out.splitlines()[-1]) == (1, "0 passed, 0 failed")


def test_coverage_counts_findings_remedies_branches_and_verify(
        fixtures: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = cli(capsys, "test", str(fixtures / "good.yaml"), "--coverage", "-o", "json")
    report = json.loads(out)["coverage"]
    pb = report["playbooks"]["pb"]
    assert pb["cases"] == 4
    assert pb["findings"] == {"reached": ["big", "small"], "not_reached": ["never"],
                              "pct": 66.7}
    assert pb["remedies"] == {"reached": ["fix", "shrink"], "not_reached": [], "pct": 100.0}
    # step extra's condition was false in every case; fix's and shrink's both ways
    assert pb["when_branches"]["not_reached"] == ["step extra: true"]
    assert pb["when_branches"]["pct"] == 83.3
    assert pb["verify"] == {"reached": ["v"], "not_reached": [], "pct": 100.0}
    assert (report["findings_pct"], report["remedies_pct"]) == (66.7, 100.0)
    code, out = cli(capsys, "test", str(fixtures / "good.yaml"), "--coverage")
    assert code == 0
    assert "pb (4 case(s)): findings 2/3, remedies 2/2, when branches 5/6, verify 1/1" in out
    assert "    finding never never fired" in out
    assert "    `when` of step extra: true never taken" in out
    code, out = cli(capsys, "test", str(fixtures / "good.yaml"), "--coverage",
                    "--fail-under", "100")
    assert code == 1 and "coverage below 100 %" in out


def test_a_fixture_recorded_from_a_run_passes_and_catches_an_edit(
        fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kit = Kit(tmp_path / "kit")
    kit.journal.close()
    loaded_text = (fixtures / "pb.yaml").read_text()
    from runner import loader
    from runner.engine import Engine
    from runner.gate import Gate
    from runner.journal import Journal, new_run_id
    from runner.plan import make_plan

    journal = Journal(tmp_path / "home")
    loaded = loader.parse(loaded_text, str(fixtures / "pb.yaml"), kit.registry)
    plan = make_plan(loaded, kit.inventory, kit.registry, {}, {})
    state = Engine(kit.registry, journal, Gate(journal, kit.registry, approver="t")).start(
        plan, new_run_id(), trigger="test", requested_by="t")
    recorded = fixtures / "recorded.yaml"
    code, out = cli(capsys, "record", state.run_id, "--to", str(recorded))
    assert code == 0, out
    text = recorded.read_text()
    assert text.startswith(f"# Recorded by `runbook record` from run {state.run_id} of pb")
    assert "playbook: pb.yaml\n" in text
    code, out = cli(capsys, "test", str(recorded))
    assert (code, out.splitlines()[-1]) == (0, "1 passed, 0 failed")
    (fixtures / "pb.yaml").write_text(loaded_text.replace("> params.limit", "> 7"))
    code, out = cli(capsys, "test", str(recorded))
    assert code == 1 and "finding big: expected fired, got clear" in out


def test_the_pytest_plugin_collects_one_test_per_case(fixtures: Path) -> None:
    (fixtures / "broken.yaml").write_text(BROKEN)
    (fixtures / "notes.yaml").write_text("just: some yaml\n")
    done = subprocess.run(
        # The plugin loads through its pytest11 entry point, as in a team's suite.
        [sys.executable, "-m", "pytest", "-q", "-p",
         "no:cacheprovider", "--rootdir", str(fixtures), "-c", "/dev/null", str(fixtures)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**_env(), "RUNBOOK_BACKENDS": "tests.support.membackend:register"})
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 1, done.stdout + done.stderr
    assert summary.startswith("1 failed, 4 passed"), done.stdout
    assert "remedy fix: argument items: expected [6], got [5]" in done.stdout


def _env() -> dict[str, Any]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}


def test_fixture_format_is_documented_with_an_example_that_parses() -> None:
    import yaml

    from runner import fixtures as module

    example = textwrap.dedent(module.__doc__.split("```yaml")[1].split("```")[0])
    data = yaml.safe_load(example)
    assert {"playbook", "targets", "steps", "cases"} <= set(data)


def test_a_fixture_may_take_its_steps_from_a_run_directory(
        fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kit = Kit(tmp_path / "kit")
    from runner import loader
    from runner.plan import make_plan

    loaded = loader.parse((fixtures / "pb.yaml").read_text(), "pb.yaml", kit.registry)
    state = kit.engine().start(make_plan(loaded, kit.inventory, kit.registry, {}, {}),
                               "20261202-000000-abcd", trigger="test", requested_by="t")
    (fixtures / "from-run.yaml").write_text(
        f"playbook: pb.yaml\nrun: {kit.journal.run_dir(state.run_id)}\n"
        "cases:\n  - name: as run\n    expect: {findings: {big: fired}}\n"
        "  - name: a smaller n\n    steps: {a: {result: {value: {n: 1}}}}\n"
        "    expect: {findings: {big: clear, small: fired}}\n")
    code, out = cli(capsys, "test", str(fixtures / "from-run.yaml"))
    assert (code, out.splitlines()[-1]) == (0, "2 passed, 0 failed")


def test_record_trims_bulky_evidence_and_masks_secret_shapes() -> None:
    from runner.record import MAX_ITEMS, MAX_TEXT, trim

    trimmed = trim({"log": "x" * (MAX_TEXT + 500), "rows": list(range(MAX_ITEMS + 10)),
                    "line": "connect with password=hunter2-secret now"})
    assert len(trimmed["log"]) < MAX_TEXT + 20 and trimmed["log"].endswith("(trimmed)")
    assert trimmed["rows"] == list(range(MAX_ITEMS))
    assert "hunter2-secret" not in trimmed["line"]
