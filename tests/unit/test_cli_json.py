"""The command line's conventions: `-o/--format json` on every command that prints data (one
document on stdout, the keys the README documents), exit 5 and one line for an unexpected
error, shell completion, `--version`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner import __version__
from runner.cli import main
from runner.registry import default_registry

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.stem for p in (ROOT / "playbooks").glob("*.yaml"))
CONSOLE = Path(sys.executable).parent / "runbook"


@pytest.fixture
def as_json(capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*argv: str, code: int = 0) -> Any:
        got = main([*argv, "-o", "json"])
        out, _ = capsys.readouterr()
        assert got == code, out
        return json.loads(out)  # the whole of stdout is one document
    return run


def test_list(as_json: Any) -> None:
    rows = as_json("list")["playbooks"]
    assert [row["name"] for row in rows] == SHIPPED
    pool = next(row for row in rows if row["name"] == "db-pool-exhausted")
    assert pool == {"name": "db-pool-exhausted", "severity": "P1", "summary": pool["summary"],
                    "path": str(ROOT / "playbooks" / "db-pool-exhausted.yaml"), "parses": True}


def test_show_marks_each_step_and_remedy(as_json: Any) -> None:
    book = as_json("show", "db-pool-exhausted")
    assert {"path", "name", "summary", "severity", "description", "params", "targets", "steps",
            "findings", "remedies", "verify"} <= set(book)
    assert book["targets"]["db"]["kind"] == "postgres"
    usage = next(step for step in book["steps"] if step["id"] == "usage")
    assert (usage["run"], usage["mutating"]) == ("postgres.connection_usage", False)
    end = next(r for r in book["remedies"] if r["id"] == "end-idle-transactions")
    assert (end["run"], end["mutating"]) == ("postgres.terminate_backends", True)


def test_plan_binds_targets_and_gives_the_approve_form(as_json: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOOK_LAB_DSN", "postgresql://set-for-this-test")
    monkeypatch.delenv("RUNBOOK_LAB_OPS_DSN", raising=False)
    plan = as_json("plan", "db-pool-exhausted", "-t", "db=lab-db", "-p", "idle_after=30")
    assert plan["playbook"] == "db-pool-exhausted" and plan["params"]["idle_after"] == 30.0
    assert plan["targets"]["db"]["name"] == "lab-db"
    usage = next(step for step in plan["steps"] if step["id"] == "usage")
    assert usage == {"id": "usage", "kind": "postgres.connection_usage", "role": "db",
                     "target": "lab-db", "mutating": False, "read_only_by_author": False,
                     "timeout": 30.0, "retries": 2, "after": [], "notes": []}
    end = next(r for r in plan["remedies"] if r["id"] == "end-idle-transactions")
    assert end["approve"] == "end-idle-transactions=postgres.terminate_backends"
    assert end["target"] == "lab-db" and end["mutating"] is True
    # the unset variable is said once; the one that is set is not
    assert [w["variable"] for w in plan["warnings"] if "variable" in w] == ["RUNBOOK_LAB_OPS_DSN"]


def test_kinds(as_json: Any) -> None:
    kinds = {kind["name"]: kind for kind in as_json("kinds")["kinds"]}
    assert set(kinds) == {kind.name for kind in default_registry()}
    assert kinds["postgres.terminate_backends"]["mutating"] is True
    assert kinds["postgres.ping"]["mutating"] is False
    assert kinds["postgres.ping"]["target_kind"] == "postgres"
    assert "properties" in kinds["postgres.connection_usage"]["params"]


def test_validate_ok_and_with_problems(as_json: Any, tmp_path: Path) -> None:
    ok = as_json("validate")
    assert ok["ok"] is True and ok["problems"] == []
    assert len(ok["playbooks"]) == len(SHIPPED) and ok["inventory"] == [str(ROOT / "inventory")]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsummary: s\ntargets:\n  db: {kind: postgres}\nsteps:\n"
                   "  - {id: a, run: postgres.pingg}\n")
    found = as_json("validate", str(bad), code=2)
    assert found["ok"] is False
    [problem] = found["problems"]
    assert (problem["file"], problem["line"]) == (str(bad), 6)
    assert "did you mean postgres.ping" in problem["message"] and problem["col"] >= 1


def test_run_and_history(as_json: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOOK_BACKENDS", "tests.support.membackend:register")
    (tmp_path / "inventory.yaml").write_text(
        f"targets:\n  box:\n    kind: mem\n    path: {tmp_path / 'box'}\n")
    (tmp_path / "pb.yaml").write_text(
        "name: pb\nsummary: s\ntargets:\n  box: {kind: mem}\n"
        "steps:\n  - {id: look, run: mem.sleep, with: {value: 3}}\n"
        "findings:\n  - {id: three, when: steps.look.value == 3, say: three}\n")
    assert as_json("history") == {"runs": []}
    report = as_json("run", str(tmp_path / "pb.yaml"), "--inventory",
                     str(tmp_path / "inventory.yaml"), "--no-input", code=1)
    [run] = as_json("history")["runs"]
    assert run["id"] == report["run_id"] and run["playbook"] == "pb"
    assert {"status", "severity", "created_at", "updated_at"} <= set(run)
    assert run["targets"] == {"box": "box"}


def test_approve(as_json: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOOK_BACKENDS", "tests.support.membackend:register")
    (tmp_path / "inventory.yaml").write_text(
        f"targets:\n  box:\n    kind: mem\n    path: {tmp_path / 'box'}\n")
    (tmp_path / "pb.yaml").write_text(
        "name: pb\nsummary: s\ntargets:\n  box: {kind: mem}\n"
        "steps:\n  - {id: look, run: mem.sleep}\n"
        "remedies:\n  - {id: fix, run: mem.act, with: {items: [1]}}\n")
    report = as_json("run", str(tmp_path / "pb.yaml"), "--inventory",
                     str(tmp_path / "inventory.yaml"), "--no-input")
    assert report["status"] == "awaiting_approval"
    decided = as_json("approve", report["run_id"], "fix", "--as", "alice")
    assert decided == {
        "run_id": report["run_id"], "remedy": "fix", "decision": "approved", "kind": "mem.act",
        "target": "box", "by": "alice", "fingerprint": decided["fingerprint"],
        "runnable": True, "waiting_for": None, "explain": "act on 1 item(s)",
        "next": f"runbook resume {report['run_id']}"}
    assert len(decided["fingerprint"]) == 64


def test_dash_o_is_format(capsys: pytest.CaptureFixture[str]) -> None:
    main(["kinds", "--format", "json"])
    long, _ = capsys.readouterr()
    main(["kinds", "-o", "json"])
    short, _ = capsys.readouterr()
    assert json.loads(long) == json.loads(short)


# An unexpected error: exit 5, one line on stderr, the traceback only with --debug


def console(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CONSOLE), *argv], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


@pytest.mark.parametrize("command", [("validate",), ("validate", "-o", "json")])
def test_a_backend_bug_exits_5_with_one_line(tmp_path: Path, command: tuple[str, ...]) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("targets:\n  odd:\n    kind: broken\n")
    done = console(*command, "--inventory", str(inventory),
                   RUNBOOK_BACKENDS="tests.support.brokenbackend:register")
    assert done.returncode == 5, done.stderr
    assert done.stderr.splitlines() == [
        "runbook: internal error: KeyError: 'where' (--debug shows the traceback)"]
    assert done.stdout == ""


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("targets:\n  odd:\n    kind: broken\n")
    for argv in (["--debug", "validate"], ["validate", "--debug"]):
        done = console(*argv, "--inventory", str(inventory),
                       RUNBOOK_BACKENDS="tests.support.brokenbackend:register")
        assert done.returncode == 5
        assert "Traceback (most recent call last)" in done.stderr
        assert "brokenbackend.py" in done.stderr
        assert done.stderr.splitlines()[-1].startswith("runbook: internal error: KeyError")


def test_version_is_the_packages() -> None:
    from importlib.metadata import version

    done = console("--version")
    assert (done.returncode, done.stdout) == (0, f"runbook {__version__}\n")
    assert __version__ == version("runbook-runner")


# Shell completion


def test_bash_completion_completes_commands_options_and_playbooks() -> None:
    script = console("completion", "bash").stdout
    probe = (f"{script}\n"
             'complete_words() { COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _runbook; '
             'echo "${COMPREPLY[*]}"; }\n'
             "complete_words runbook va\n"
             "complete_words runbook plan --ta\n"
             "complete_words runbook show db-pool\n"
             "complete_words runbook history -\n")
    env = {**os.environ, "PATH": f"{CONSOLE.parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60,
                          env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "validate", "--target", "db-pool-exhausted",
        "-h --help --debug --limit --status --shadow -o --format --home --server"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_name_every_command(shell: str) -> None:
    from runner.cli import COMMANDS

    done = console("completion", shell)
    assert done.returncode == 0
    for command in COMMANDS:
        assert f" {command}" in done.stdout
    if shell == "zsh":
        assert "bashcompinit" in done.stdout and "complete -o default -F _runbook" in done.stdout
    else:
        assert "complete -c runbook -n '__fish_seen_subcommand_from plan' -l target" \
            in done.stdout


def test_one_version_a_license_and_type_marks() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["hatch"]["version"]["path"] == "runner/__init__.py"
    assert project["project"]["license"] == "MIT"
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "runbook authors" in license_text
    assert all((ROOT / package / "py.typed").is_file() for package in ("runner", "diagnostics"))
