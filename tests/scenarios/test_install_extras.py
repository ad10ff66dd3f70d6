"""Install what you use: the core alone (no Docker, Kubernetes, SSH, Ansible or daemon
clients) in a fresh venv, and what a Kubernetes playbook says there.

Offline: the project is built from this tree; its dependencies come from the dev venv's
installed distributions, repacked as wheels (`repack`), and from the machine's local package
files (hatchling to build, what else is there). No registry is asked.
Slow (a venv and a pip install): a lab-stage test.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCAL_FILES = Path("/opt/pypi/files")  # the machine's local package files (see pip config)
DISTRIBUTION = "runbook-runner"
PIP_LINE = "pip install 'runbook-runner[kubernetes]'"


def _closure(extras: Iterable[str] = ()) -> set[str]:
    """The names of the distributions `runbook-runner[extras]` needs, as installed here."""
    wanted, seen = [(DISTRIBUTION, set(extras))], set[str]()
    while wanted:
        name, chosen = wanted.pop()
        dist = metadata.distribution(name)
        for requirement in dist.requires or []:
            spec, _, marker = requirement.partition(";")
            match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(\[([^\]]*)\])?", spec)
            assert match, requirement
            extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
            if extra and extra.group(1) not in chosen:
                continue
            if not extra and marker.strip():
                env_marker = re.sub(r"\s*and\s*$", "", marker)
                from packaging.markers import Marker

                if not Marker(env_marker).evaluate():
                    continue
            dep = _normal(match.group(1))
            sub = {e.strip() for e in (match.group(3) or "").split(",") if e.strip()}
            if dep == _normal(DISTRIBUTION):
                wanted.append((DISTRIBUTION, sub))
            elif dep not in seen:
                seen.add(dep)
                wanted.append((dep, sub))
    return seen


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def repack(name: str, into: Path) -> Path:
    """The installed distribution `name` as a wheel again: its files under site-packages
    (RECORD's, bytecode left out) and its dist-info with a fresh RECORD."""
    dist = metadata.distribution(name)
    info = Path(str(dist._path))  # type: ignore[attr-defined]
    site = info.parent
    wheel_meta = (info / "WHEEL").read_text()
    tags = [line.split(":", 1)[1].strip() for line in wheel_meta.splitlines()
            if line.startswith("Tag:")]
    from packaging.tags import sys_tags

    here = {str(t) for t in sys_tags()}
    tag = next(t for t in tags if t in here)  # one of its tags that pip accepts here
    base = info.name.removesuffix(".dist-info")  # name-version, as installed
    target = into / f"{base}-{tag}.whl"
    info_name = f"{base}.dist-info"
    records: list[tuple[str, str, str]] = []
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as wheel:
        for file in dist.files or []:
            relative = str(file)
            if relative.startswith("..") or "__pycache__" in relative:
                continue  # scripts are made again from entry_points.txt; bytecode too
            path = site / relative
            if path.parent == info:
                if path.name in {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}:
                    continue
                relative = f"{info_name}/{path.name}"
            if not path.is_file():
                continue
            data = path.read_bytes()
            wheel.writestr(relative, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            records.append((relative, f"sha256={digest.decode()}", str(len(data))))
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(records + [(f"{info_name}/RECORD", "",
                                                                   "")])
        wheel.writestr(f"{info_name}/RECORD", out.getvalue())
    return target


def wheelhouse(into: Path, extras: Iterable[str] = ()) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    for name in sorted(_closure(extras)):
        repack(name, into)
    return into


def make_venv(where: Path, house: Path, extras: str = "") -> Path:
    """A fresh venv with `runbook-runner[extras]` installed offline; its python."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    python = where / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index",
                    "--disable-pip-version-check", "--find-links", str(house),
                    "--find-links", str(LOCAL_FILES), f"{ROOT}{extras}"],
                   check=True, env={**os.environ, "PIP_CONSTRAINT": ""})
    return python


def site_packages_bytes(venv: Path) -> int:
    return sum(f.stat().st_size for f in venv.glob("lib/python*/site-packages/**/*")
               if f.is_file() and not f.is_symlink())


K8S_INVENTORY = """\
targets:
  shop-api:
    kind: service
    runtime: kubernetes
    namespace: shop
    deployment: shop-api
    health_url: http://{pod_ip}:8080/health
"""

# Modules of the extras: none of them may be in the core's venv.
EXTRA_MODULES = ("docker", "kubernetes", "paramiko", "ansible", "ansible_runner", "uvicorn",
                 "starlette", "prometheus_client")


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with `pip install runbook-runner` (the core, no extra), offline."""
    where = tmp_path_factory.mktemp("core")
    make_venv(where / "venv", wheelhouse(where / "wheels"))
    return where / "venv"


def _runbook(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "runbook"), *args], capture_output=True,
                          text=True, timeout=120)


def test_the_core_has_no_extra_s_client(core: Path) -> None:
    found = subprocess.run(
        [str(core / "bin" / "python"), "-c",
         "import importlib.util as u, sys; "
         f"print(' '.join(m for m in {EXTRA_MODULES!r} if u.find_spec(m)))"],
        capture_output=True, text=True, check=True).stdout.split()
    assert found == []
    # every backend still registers: `kinds` lists the Kubernetes checks too
    kinds = _runbook(core, "kinds")
    assert kinds.returncode == 0, kinds.stderr
    assert "kubernetes.crash_loop" in kinds.stdout and "postgres.connection_usage" \
        in kinds.stdout


def test_a_kubernetes_playbook_says_which_extra(core: Path, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(K8S_INVENTORY)
    said = ("runbook: target shop-api (service) needs the Kubernetes client (kubernetes), "
            f"which is not installed (no module 'kubernetes'): {PIP_LINE}")
    for command in ("plan", "run"):
        result = _runbook(core, command, "k8s-workload-triage", "--inventory", str(inventory))
        assert (result.returncode, result.stderr.strip()) == (2, said), result
    validate = _runbook(core, "validate", "--inventory", str(inventory))
    assert validate.returncode == 0, validate.stderr
    assert f"WARNING shop-api: needs the Kubernetes client (kubernetes), which is not " \
           f"installed (no module 'kubernetes'): {PIP_LINE}" in validate.stdout


def test_a_postgres_playbook_plans_with_the_core_alone(core: Path, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("targets:\n  shop-db:\n    kind: postgres\n"
                         "    dsn: host=127.0.0.1 dbname=shop\n")
    result = _runbook(core, "plan", "postgres-health", "--inventory", str(inventory))
    assert result.returncode == 0, result.stderr
    assert "shop-db" in result.stdout


def test_the_core_s_size_beside_all(core: Path, tmp_path: Path) -> None:
    """Measured, not bounded (machines differ): printed for the README (-s shows it)."""
    empty = tmp_path / "empty"
    subprocess.run([sys.executable, "-m", "venv", str(empty)], check=True)
    base = site_packages_bytes(empty)
    size = site_packages_bytes(core) - base
    assert size > 0
    print(f"\ncore install: {size / 1e6:.0f} MB in site-packages (beyond pip and setuptools, "
          f"{base / 1e6:.0f} MB)")
