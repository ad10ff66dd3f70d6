"""`runbook daemon --check` checks the config against the installed playbooks, their roles
and params, the inventory's targets and the notifiers, as file:line:col; the daemon refuses
to start on the same problems (before it listens)."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main


@pytest.fixture
def daemon(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Any:
    def run(config: str, *extra: str) -> tuple[int, str, str, Path]:
        path = tmp_path / "daemon.yaml"
        path.write_text(textwrap.dedent(config))
        code = main(["daemon", "--config", str(path), *extra])
        out, err = capsys.readouterr()
        return code, out, err, path
    return run


BROKEN = """\
    auth: {mode: none}
    listen: {host: 127.0.0.1, port: PORT}
    routes:
      - name: typo
        playbook: db-pool-exausted
      - name: roles
        playbook: db-pool-exhausted
        targets:
          database: {from: "{{ labels.instance }}", allow: [lab-db]}
          db: {from: "{{ labels.instance }}", allow: [lab-api]}
        params: {idle_aftr: 1m}
      - name: fixed
        playbook: api-down
        targets: {api: lab-ap}
    """


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("check", [True, False])
def test_routes_are_checked_against_playbooks_and_inventory(daemon: Any, check: bool) -> None:
    port = free_port()
    code, out, err, path = daemon(BROKEN.replace("PORT", str(port)),
                                  *(["--check"] if check else []))
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert lines == [
        f"{path}:5:15: route typo: no playbook named 'db-pool-exausted' (did you mean "
        "db-pool-exhausted?); `runbook list` shows the "
        f"{err.split('shows the ')[1].split()[0]} there are",
        f"{path}:9:17: route roles: db-pool-exhausted has no target role 'database'; roles: "
        "db, api",
        f"{path}:10:50: route roles: target db needs a postgres target; 'lab-api' is service",
        lines[3],
        f"{path}:14:20: route fixed: target api may be 'lab-ap', which is not in the inventory",
        "5 problem(s); nothing ran"]
    assert lines[3].startswith(f"{path}:11:25: route roles: db-pool-exhausted has no param "
                               "'idle_aftr'; params: idle_after, ")
    if not check:  # refused before listening: the port is still free
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_notifier_needs_a_url(daemon: Any) -> None:
    code, out, err, path = daemon("""\
        auth: {mode: none}
        notify:
          - {kind: webhook, url: "http://127.0.0.1:8088/x"}
          - {kind: slack}
        """, "--check")
    assert (code, out) == (2, "")
    [problem, _] = err.splitlines()
    assert problem.startswith(f"{path}:4:") and "a notifier needs url or url_env" in problem


def test_a_valid_config_passes_and_unknown_allowed_names_are_warnings(daemon: Any) -> None:
    code, out, err, path = daemon("""\
        auth: {mode: none}
        routes:
          - name: pool
            playbook: db-pool-exhausted
            targets:
              db: {from: "{{ labels.instance }}", allow: [lab-db, other-db]}
            params: {idle_after: 30s}
        """, "--check")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"warning: {path}:6:50: route pool: target db may be 'other-db', which is not in the "
        "inventory",
        f"{path}: valid, 1 route(s), 1 warning(s)"]


def test_without_an_inventory_routes_cannot_be_bound(daemon: Any, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNBOOK_INVENTORY")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    code, _, err, path = daemon("""\
        auth: {mode: none}
        routes:
          - {name: pool, playbook: db-pool-exhausted}
        """, "--check")
    assert code == 2
    assert err.splitlines()[0].startswith(f"{path}:1:1: no inventory")
