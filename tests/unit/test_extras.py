"""Install what you use: a kind whose client library is not installed says the pip line that
installs it, at plan, run, validate and daemon time, not with an ImportError mid-run.

A library is made absent the way Python documents it: `sys.modules[name] = None` makes its
import raise ModuleNotFoundError and `importlib.util.find_spec` answer None. (A fresh venv
with the core only: tests/scenarios/test_install_extras.py.)
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from runner import extras
from runner.cli import main
from runner.extras import EXTRAS, MissingExtra, client_of, missing_for, require

ROOT = Path(__file__).resolve().parents[2]

INVENTORY = """\
targets:
  shop-api:
    kind: service
    runtime: kubernetes
    namespace: shop
    deployment: shop-api
    kubeconfig: /nonexistent/kubeconfig
  shop-api-2:
    kind: service
    runtime: kubernetes
    namespace: shop
    deployment: shop-api-2
    kubeconfig: /nonexistent/kubeconfig
  box:
    kind: service
    runtime: docker
    container: box
"""


def _absent(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(INVENTORY)
    return path


def test_the_extras_are_pyproject_s() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == extras.DISTRIBUTION
    optional = project["optional-dependencies"]
    assert set(EXTRAS) <= set(optional)
    assert optional["all"] == [f"{extras.DISTRIBUTION}[{','.join(EXTRAS)}]"]
    assert "postgres" in optional  # in the core, and accepted by name
    core = " ".join(project["dependencies"]).lower()
    for name in EXTRAS:
        for requirement in optional[name]:
            assert requirement.split(">")[0].split("[")[0].lower() not in core, requirement


def test_plan_and_run_of_a_kubernetes_playbook_say_the_pip_line(
        monkeypatch: pytest.MonkeyPatch, inventory: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _absent(monkeypatch, "kubernetes")
    for command in ("plan", "run"):
        code = main([command, "k8s-workload-triage", "--inventory", str(inventory),
                     "--target", "service=shop-api"])
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.strip() == (
            "runbook: target shop-api (service) needs the Kubernetes client (kubernetes), "
            "which is not installed (no module 'kubernetes'): "
            "pip install 'runbook-runner[kubernetes]'")


def test_a_docker_service_needs_docker_not_kubernetes(
        monkeypatch: pytest.MonkeyPatch, inventory: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _absent(monkeypatch, "kubernetes")
    assert main(["plan", "container-triage", "--inventory", str(inventory),
                 "--target", "service=box"]) == 0, capsys.readouterr().err
    _absent(monkeypatch, "docker")
    assert main(["plan", "container-triage", "--inventory", str(inventory),
                 "--target", "service=box"]) == 2
    assert "pip install 'runbook-runner[docker]'" in capsys.readouterr().err


def test_validate_warns_once_per_extra(monkeypatch: pytest.MonkeyPatch, inventory: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    _absent(monkeypatch, "kubernetes")
    assert main(["validate", "--inventory", str(inventory)]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines()
                if "runbook-runner[" in line]
    assert warnings == ["WARNING shop-api: needs the Kubernetes client (kubernetes), "
                        "which is not installed (no module 'kubernetes'): "
                        "pip install 'runbook-runner[kubernetes]'"]


def test_the_daemon_says_its_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    _absent(monkeypatch, "uvicorn")
    config = tmp_path / "daemon.yaml"
    config.write_text("routes: []\n")
    assert main(["daemon", "--config", str(config)]) == 2
    assert capsys.readouterr().err.strip().endswith("pip install 'runbook-runner[daemon]'")


def test_missing_for_names_each_extra_once_with_its_first_target(
        monkeypatch: pytest.MonkeyPatch, inventory: Path) -> None:
    from runner import inventory as inventory_module
    from runner.registry import default_registry

    registry = default_registry()
    _absent(monkeypatch, "kubernetes", "docker")
    found = missing_for(registry, list(inventory_module.load([inventory], registry)))
    assert [(m.extra.name, m.who) for m in found] == [
        ("kubernetes", "target shop-api (service)"), ("docker", "target box (service)")]


def test_client_of_turns_only_its_own_modules_import_errors(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _absent(monkeypatch, "paramiko")
    with pytest.raises(MissingExtra) as caught, client_of("ssh", "the ssh backend"):
        import paramiko  # noqa: F401
    assert str(caught.value) == ("the ssh backend needs paramiko, which is not installed (no "
                                 "module 'paramiko'): pip install 'runbook-runner[ssh]'")
    with pytest.raises(ModuleNotFoundError, match="no_such_module_here"), \
            client_of("ssh", "the ssh backend"):
        import no_such_module_here  # type: ignore[import-not-found]  # noqa: F401


def test_require_names_the_first_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    require("ansible", "ansible")  # all there in the dev venv
    _absent(monkeypatch, "ansible")
    with pytest.raises(MissingExtra, match=r"no module 'ansible'\): pip install "
                                           r"'runbook-runner\[ansible\]'"):
        require("ansible", "target fleet (ansible)")


@pytest.mark.parametrize(("entry", "module", "extra"), [
    ("  box:\n    kind: ssh\n    hosts: [10.0.0.5]\n", "paramiko", "ssh"),
    ("  fleet:\n    kind: ansible\n    playbook_dir: /srv/ansible\n    hosts: [10.0.0.5]\n",
     "ansible_runner", "ansible"),
])
def test_ssh_and_ansible_targets_name_their_extra(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, entry: str, module: str, extra: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("targets:\n" + entry)
    assert main(["validate", "--inventory", str(inventory)]) == 0
    assert "runbook-runner[" not in capsys.readouterr().out
    _absent(monkeypatch, module)
    assert main(["validate", "--inventory", str(inventory)]) == 0
    assert f"(no module {module!r}): pip install 'runbook-runner[{extra}]'" \
        in capsys.readouterr().out
