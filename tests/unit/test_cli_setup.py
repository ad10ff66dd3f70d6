"""A newcomer's setup: `validate` over folders, where the inventory is looked up (never the
lab's by default), `runbook init`, and unset `*_env` variables said before a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner import paths
from runner.cli import main

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.stem for p in (ROOT / "playbooks").glob("*.yaml"))


@pytest.fixture
def runbook(capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory outside the repository, no inventory named, an empty config."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("RUNBOOK_INVENTORY")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return work


def test_validate_takes_folders_and_files(runbook: Any, tmp_path: Path) -> None:
    code, out, err = runbook("validate", str(ROOT / "playbooks"))
    assert (code, err) == (0, "")
    assert out.startswith(f"ok: {len(SHIPPED)} playbook(s)")
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "bad.yaml").write_text("name: bad\nsummary: s\ntargets:\n  db: {kind: postgres}\n"
                                     "steps:\n  - {id: a, run: postgres.pingg}\n")
    (folder / "notes.txt").write_text("not a playbook")
    code, out, err = runbook("validate", str(folder), str(ROOT / "playbooks" / "api-down.yaml"))
    assert (code, out) == (2, "")
    problem, summary = err.splitlines()
    assert problem.startswith(f"{folder / 'bad.yaml'}:6:")
    assert "unknown step kind 'postgres.pingg'" in problem
    assert summary == "1 problem(s); nothing ran"  # the .txt is not read; api-down.yaml is fine


def test_outside_the_repository_the_lab_inventory_is_not_used(runbook: Any,
                                                              elsewhere: Path) -> None:
    assert paths.inventory_paths() == []
    code, out, err = runbook("plan", "db-pool-exhausted")
    assert (code, out) == (2, "")
    assert "lab-db" not in err
    assert "no inventory" in err and "runbook init" in err
    assert str(elsewhere / "inventory") in err and "/etc/runbook/inventory" in err


def test_the_lookup_order(runbook: Any, elsewhere: Path, tmp_path: Path) -> None:
    user = tmp_path / "config" / "runbook"
    assert paths.inventory_candidates() == [
        elsewhere / "inventory", elsewhere / "inventory.yaml",
        user / "inventory", user / "inventory.yaml",
        Path("/etc/runbook/inventory"), Path("/etc/runbook/inventory.yaml")]
    user.mkdir(parents=True)
    (user / "inventory.yaml").write_text(
        "targets:\n  home-db: {kind: postgres, dsn_env: HOME_DB_DSN}\n")
    code, out, _ = runbook("plan", "db-pool-exhausted", "-o", "json")
    assert code == 0 and json.loads(out)["targets"]["db"]["name"] == "home-db"
    (elsewhere / "inventory").mkdir()  # ./inventory comes first
    (elsewhere / "inventory" / "here.yaml").write_text(
        "targets:\n  here-db: {kind: postgres, dsn_env: HERE_DB_DSN}\n")
    code, out, _ = runbook("plan", "db-pool-exhausted", "-o", "json")
    assert code == 0 and json.loads(out)["targets"]["db"]["name"] == "here-db"
    code, out, _ = runbook("plan", "db-pool-exhausted", "-o", "json",  # and --inventory first
                           "--inventory", str(user / "inventory.yaml"))
    assert code == 0 and json.loads(out)["targets"]["db"]["name"] == "home-db"


def test_init_scaffolds_what_validates_and_never_overwrites(runbook: Any, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.delenv("APP_DB_DSN", raising=False)
    target = tmp_path / "team"
    code, out, _ = runbook("init", str(target))
    assert code == 0
    inventory = target / "inventory" / "targets.yaml"
    playbook = target / "playbooks" / "app-db-health.yaml"
    assert f"created {inventory}" in out and f"created {playbook}" in out
    assert "# " in inventory.read_text() and "# " in playbook.read_text()  # commented
    code, out, err = runbook("validate", str(target / "playbooks"),
                             "--inventory", str(target / "inventory"))
    assert (code, err) == (0, "")
    assert out.splitlines()[1:] == [
        f"WARNING app-db: dsn_env names APP_DB_DSN, which is not set in this environment "
        f"({inventory}:8)"]
    code, out, _ = runbook("plan", str(playbook), "--inventory", str(target / "inventory"))
    assert code == 0 and "db = app-db (postgres)" in out
    playbook.write_text("name: edited\n")
    code, out, err = runbook("init", str(target))
    assert (code, out) == (2, "")
    assert "already exists; nothing was written" in err
    assert playbook.read_text() == "name: edited\n"


def test_unset_variables_are_said_once_each(runbook: Any, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHARED_DSN", raising=False)
    monkeypatch.setenv("SET_DSN", "postgresql://there")
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "targets:\n"
        "  one: {kind: postgres, dsn_env: SHARED_DSN}\n"
        "  two: {kind: postgres, dsn_env: SHARED_DSN}\n"
        "  three: {kind: postgres, dsn_env: SET_DSN}\n"
        "  four:\n    kind: ssh\n    host: h\n    key_env: SSH_KEY_UNSET\n")
    monkeypatch.delenv("SSH_KEY_UNSET", raising=False)
    code, out, _ = runbook("validate", "--inventory", str(inventory), "-o", "json")
    assert code == 0
    found = [(w["target"], w["variable"], w["source"])
             for w in json.loads(out)["warnings"] if "variable" in w]
    assert found == [("one", "SHARED_DSN", f"{inventory}:2"),
                     ("four", "SSH_KEY_UNSET", f"{inventory}:6")]


def test_the_policy_is_looked_up_beside_the_inventory_then_in_the_config_dirs(
        elsewhere: Path, tmp_path: Path) -> None:
    from runner.policy import locate

    inventory = elsewhere / "inventory"
    inventory.mkdir()
    user = tmp_path / "config" / "runbook"
    user.mkdir(parents=True)
    # none yet, unless this machine has its own in /etc/runbook
    assert locate(None, [inventory]) in (None, Path("/etc/runbook/policy.yaml"))
    (user / "policy.yaml").write_text("four_eyes: true\n")
    assert locate(None, [inventory]) == user / "policy.yaml"
    (inventory / "policy.yaml").write_text("four_eyes: false\n")
    assert locate(None, [inventory]) == inventory / "policy.yaml"
