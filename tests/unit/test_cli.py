"""The `runbook` command line: commands that need no database, exit codes, startup cost."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main
from runner.registry import default_registry

ROOT = Path(__file__).resolve().parents[2]
Run = tuple[int, str, str]


@pytest.fixture
def runbook(capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*argv: str) -> Run:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


def lines_with(text: str, fragment: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if fragment in line]


SHIPPED = sorted(p.stem for p in (ROOT / "playbooks").glob("*.yaml"))


def test_list_shows_every_shipped_playbook_with_its_severity(runbook: Any) -> None:
    code, out, _ = runbook("list")
    assert code == 0
    rows = [line.split()[:2] for line in out.splitlines()]
    assert [name for name, _ in rows] == SHIPPED
    assert ["db-pool-exhausted", "P1"] in rows and ["db-slow-or-blocked-queries", "P2"] in rows


def test_show_marks_steps_read_only_and_remedies_mutating(runbook: Any) -> None:
    code, out, _ = runbook("show", "db-pool-exhausted")
    assert code == 0
    assert lines_with(out, "usage: postgres.connection_usage") == [
        "read-only  usage: postgres.connection_usage"]
    (remedy,) = lines_with(out, "end-idle-transactions:")
    assert remedy.startswith("MUTATING") and "postgres.terminate_backends" in remedy


def test_validate_all(runbook: Any) -> None:
    code, out, err = runbook("validate")
    assert (code, err) == (0, "")
    assert out.startswith(f"ok: {len(SHIPPED)} playbook(s)")


def test_validate_a_bad_playbook(runbook: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsummary: s\ntargets:\n  db: {kind: postgres}\nsteps:\n"
                   "  - {id: a, run: postgres.pingg}\n  - {id: b, run: postgres.ping, target: x}\n")
    code, out, err = runbook("validate", str(bad))
    assert (code, out) == (2, "")
    *problems, summary = err.splitlines()
    assert [re.match(rf"{re.escape(str(bad))}:(\d+):(\d+): ", p) is not None for p in problems] \
        == [True, True]
    assert problems[0].startswith(f"{bad}:6:") and "did you mean postgres.ping" in problems[0]
    assert problems[1].startswith(f"{bad}:7:") and "unknown target role 'x'" in problems[1]
    assert summary == "2 problem(s); nothing ran"


@pytest.mark.parametrize("target", ["db=lab-db", "lab-db"])
def test_plan_resolves_targets_and_marks_remedies(runbook: Any, target: str) -> None:
    code, out, _ = runbook("plan", "db-pool-exhausted", "--target", target)
    assert code == 0
    assert lines_with(out, "db = ") == [
        "db = lab-db (postgres) the lab's PostgreSQL 15 (container runbook-lab-db)"]
    (remedy,) = lines_with(out, "end-idle-transactions=")
    assert remedy == ("MUTATING   end-idle-transactions=postgres.terminate_backends on lab-db"
                      "  when steps.idle_tx.count > 0")  # as --approve takes it
    assert lines_with(out, "read-only  usage:") == [
        "read-only  usage: postgres.connection_usage on lab-db  timeout 30s, retries 2"]


def _when(out: str, fragment: str) -> str:
    return lines_with(out, fragment)[0].split("  when ", 1)[1]


def test_plan_takes_a_duration_param_in_plain_seconds(runbook: Any) -> None:
    """`--param idle_after=30` means 30 seconds."""
    code, out, err = runbook("plan", "db-pool-exhausted", "--param", "idle_after=30")
    assert (code, err) == (0, "")
    assert lines_with(out, "idle_after =") == ["idle_after = 30.0"]


def test_plan_with_an_unknown_target_suggests_one(runbook: Any) -> None:
    code, out, err = runbook("plan", "db-pool-exhausted", "--target", "db=lab-bd")
    assert (code, out) == (2, "")
    assert "no target 'lab-bd'" in err and "did you mean lab-db" in err


def test_run_refuses_to_approve_an_unknown_remedy(runbook: Any, runbook_home: Path) -> None:
    code, out, err = runbook("run", "db-pool-exhausted", "--approve",
                             "no-such-remedy=postgres.terminate_backends")
    assert (code, out) == (2, "")
    assert "has no remedy 'no-such-remedy' running that kind" in err
    assert "end-idle-transactions=postgres.terminate_backends" in err
    assert not runbook_home.exists()  # refused before a run was journaled


@pytest.mark.parametrize("spec", ["end-idle-transactions",  # a bare id names no action
                                  "end-idle-transactions=service.restart",  # the wrong kind
                                  "ABC123"])
def test_approve_must_name_the_action_it_approves(runbook: Any, runbook_home: Path,
                                                  spec: str) -> None:
    code, out, err = runbook("run", "db-pool-exhausted", "--approve", spec)
    assert (code, out) == (2, "")
    assert "end-idle-transactions=postgres.terminate_backends" in err  # the form to copy
    if "=" not in spec:
        assert "REMEDY=KIND" in err and "FINGERPRINT" in err
    assert not runbook_home.exists()


def test_playbooks_in_the_working_directory_are_not_read_unless_asked(
        runbook: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ./playbooks/api-down.yaml planted where a cron job runs, whose `start-api` rolls
    back instead: not picked up; and pointed at, `start-api=service.restart` cannot approve
    the planted rollback."""
    planted = tmp_path / "playbooks"
    planted.mkdir()
    text = (ROOT / "playbooks" / "api-down.yaml").read_text()
    assert "id: start-api" in text
    honest = "    run: service.restart\n    target: api\n"
    at = text.index(honest, text.index("id: start-api"))
    evil = "    run: service.rollback\n    with: {to_image: 'evil:latest'}\n    target: api\n"
    (planted / "api-down.yaml").write_text(text[:at] + evil + text[at + len(honest):])
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNBOOK_PLAYBOOKS", raising=False)
    code, out, _ = runbook("plan", "api-down", "--target", "api=lab-api")
    assert code == 0
    assert lines_with(out, "start-api=") == [
        "MUTATING   start-api=service.restart on lab-api  when " + _when(out, "start-api=")]
    code, out, err = runbook("run", "api-down", "--playbooks", str(planted), "--target",
                             "api=lab-api", "--approve", "start-api=service.restart")
    assert (code, out) == (2, "")
    assert "start-api=service.rollback" in err  # refused: the planted action is not approved


@pytest.mark.parametrize("command", ["show", "plan", "run"])
def test_an_unknown_playbook_gets_a_suggestion(runbook: Any, command: str) -> None:
    code, _, err = runbook(command, "db-pool-exausted")
    assert code == 2
    assert "no playbook named 'db-pool-exausted' (did you mean db-pool-exhausted?)" in err


def test_kinds_marks_mutating_ones(runbook: Any) -> None:
    code, out, _ = runbook("kinds")
    assert code == 0
    kinds = list(default_registry())
    assert {"postgres.ping", "postgres.terminate_backends"} <= {k.name for k in kinds}
    for kind in kinds:
        (line,) = lines_with(out, f"{kind.name}(")
        assert line.startswith("MUTATING" if kind.mutating else "read-only"), line


def schema_of(runbook: Any) -> dict[str, Any]:
    code, out, _ = runbook("schema")
    assert code == 0
    return dict(json.loads(out))


def test_schema_lists_kinds_by_section(runbook: Any) -> None:
    defs = schema_of(runbook)["$defs"]
    mutating = {k.name for k in default_registry() if k.mutating}
    assert "postgres.ping" in defs["Step"]["properties"]["run"]["enum"]
    assert "postgres.ping" in defs["Verify"]["properties"]["run"]["enum"]
    assert set(defs["Remedy"]["properties"]["run"]["enum"]) == mutating
    assert not mutating & set(defs["Step"]["properties"]["run"]["enum"])


def types_allowed(schema: dict[str, Any]) -> set[str]:
    if "anyOf" in schema:
        return set().union(*(types_allowed(option) for option in schema["anyOf"]))
    return {schema.get("type", "any")}


@pytest.mark.parametrize(("model", "field"), [
    ("Step", "timeout"), ("Remedy", "timeout"), ("Verify", "within"), ("Verify", "for")])
def test_schema_lets_durations_be_written_as_text(runbook: Any, model: str, field: str) -> None:
    """Editors must accept `timeout: 10s` as well as a number."""
    assert "string" in types_allowed(schema_of(runbook)["$defs"][model]["properties"][field])


def test_the_committed_schema_is_current(runbook: Any) -> None:
    committed = json.loads((ROOT / "playbooks" / "playbook.schema.json").read_text())
    assert committed == schema_of(runbook), "run: runbook schema > playbooks/playbook.schema.json"


def test_history_of_an_empty_journal(runbook: Any) -> None:
    code, out, err = runbook("history")
    assert (code, out) == (0, "")
    assert "no runs yet" in err


def test_report_of_an_unknown_run(runbook: Any) -> None:
    code, out, err = runbook("report", "NOPE")
    assert (code, out) == (2, "")
    assert "no run 'NOPE'" in err


# As a process


HEAVY = "{'pydantic', 'psycopg', 'jinja2', 'docker', 'testcontainers'}"


def test_list_imports_no_heavy_module() -> None:
    """`runbook list` must start fast, so it imports no heavy module."""
    script = ("import sys; from runner.cli import main; main(['list']); "
              f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY}))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    assert "db-pool-exhausted" in done.stdout
    assert done.stdout.splitlines()[-1] == "[]"


def test_help_of_the_console_script() -> None:
    script = Path(sys.executable).parent / "runbook"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "--approve" in done.stdout and "approve" in done.stdout.split("examples:")[0]


def test_every_command_the_parser_knows_has_a_handler_and_no_handler_is_unreachable() -> None:
    from runner.cli import COMMANDS
    from runner.cli.parsing import build_parser

    [subparsers] = [a for a in build_parser()._actions if a.dest == "command"]
    assert isinstance(subparsers.choices, dict)
    assert set(subparsers.choices) == set(COMMANDS)

