"""deploy/: the Kubernetes manifests and the systemd unit, checked without a cluster: what
they promise (replicas, probes, secrets from a Secret, a locked-down pod, selectors that
select) and that the daemon they run answers it (its config valid, its probe paths served,
no readiness without a journal). tests/scenarios/test_deploy_kubernetes.py deploys them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.daemonkit import daemon_in_thread, free_port, write_world
from tests.lab import daemonimage

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
UNIT = ROOT / "deploy" / "systemd" / "runbook-daemon.service"


def objects(path: Path = KUBERNETES / "daemon.yaml") -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    kinds = [d["kind"] for d in docs]
    assert len(kinds) == len(set(kinds)), kinds  # one of each: looked up by kind below
    return {d["kind"]: d for d in docs}


@pytest.fixture
def shipped() -> dict[str, dict[str, Any]]:
    return objects()


def pod_spec(shipped: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = shipped["Deployment"]["spec"]["template"]["spec"]
    return spec


def container(shipped: dict[str, dict[str, Any]]) -> dict[str, Any]:
    [only] = pod_spec(shipped)["containers"]
    return dict(only)


def env(shipped: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(shipped)["env"]}


def test_the_deployment_runs_several_replicas_probed_on_healthz(
        shipped: dict[str, dict[str, Any]]) -> None:
    assert shipped["Deployment"]["spec"]["replicas"] >= 2
    rollout = shipped["Deployment"]["spec"]["strategy"]["rollingUpdate"]
    assert rollout["maxUnavailable"] == 0  # a rollout never leaves fewer replicas serving
    daemon = container(shipped)
    [port] = daemon["ports"]
    # readiness asks about the journal; liveness and startup do not (a database outage
    # must not restart every replica)
    assert daemon["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    for probe in ("livenessProbe", "startupProbe"):
        assert daemon[probe]["httpGet"] == {"path": "/healthz?live", "port": port["name"]}
    assert daemon["args"] == ["--config", "/etc/runbook/daemon.yaml", "--host", "0.0.0.0",
                              "--port", str(port["containerPort"])]
    assert port["containerPort"] == daemonimage.PORT


def test_every_secret_comes_from_the_secret_by_key(shipped: dict[str, dict[str, Any]]) -> None:
    variables = env(shipped)
    literal = {name for name, e in variables.items() if "value" in e}
    assert literal == {"RUNBOOK_HOME"}  # nothing else is written into the manifest
    refs = {name: e["valueFrom"]["secretKeyRef"] for name, e in variables.items()
            if name not in literal}
    assert refs["RUNBOOK_JOURNAL_DSN"] == {"name": "runbook-daemon", "key": "journal-dsn"}
    assert {r["name"] for r in refs.values()} == {"runbook-daemon"}
    assert not any(r.get("optional") for r in refs.values())  # a missing key stops the pod
    # every secret the config and inventory name is there, and nothing in the ConfigMap is
    # one (no dsn: or token: written out)
    data = shipped["ConfigMap"]["data"]
    config, inventory = yaml.safe_load(data["daemon.yaml"]), yaml.safe_load(data["inventory.yaml"])
    named = {config["journal"]["dsn_env"], config["auth"]["token_env"],
             config["metrics"]["token_env"],
             *(a["token_env"] for a in config["approvers"].values()),
             *(v for t in inventory["targets"].values() for k, v in t.items()
               if k.endswith("_env"))}
    assert named == set(refs)
    assert "postgresql://" not in data["daemon.yaml"] + data["inventory.yaml"]


def test_the_pod_runs_locked_down(shipped: dict[str, dict[str, Any]]) -> None:
    pod, daemon = pod_spec(shipped), container(shipped)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == daemonimage.UID  # the image's user
    assert pod["automountServiceAccountToken"] is False
    assert shipped["ServiceAccount"]["automountServiceAccountToken"] is False
    assert daemon["securityContext"] == {"allowPrivilegeEscalation": False,
                                         "readOnlyRootFilesystem": True,
                                         "capabilities": {"drop": ["ALL"]}}
    assert {"cpu", "memory"} <= set(daemon["resources"]["requests"])
    assert "memory" in daemon["resources"]["limits"]
    # the only writable places are emptyDirs: RUNBOOK_HOME inside one, and /tmp
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in daemon["volumeMounts"]}
    writable = {path for path, v in mounts.items() if "emptyDir" in v}
    assert writable == {"/var/lib/runbook", "/tmp"}
    home = env(shipped)["RUNBOOK_HOME"]["value"]
    assert Path(home).parent == Path("/var/lib/runbook")  # a directory runbook owns
    assert "configMap" in mounts["/etc/runbook"]


def test_the_service_and_the_budget_select_the_replicas(
        shipped: dict[str, dict[str, Any]]) -> None:
    labels = shipped["Deployment"]["spec"]["template"]["metadata"]["labels"]
    selectors = [shipped["Service"]["spec"]["selector"],
                 shipped["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
                 shipped["Deployment"]["spec"]["selector"]["matchLabels"]]
    for selector in selectors:
        assert selector and selector.items() <= labels.items()
    [port] = shipped["Service"]["spec"]["ports"]
    assert port["targetPort"] == container(shipped)["ports"][0]["name"]
    budget = shipped["PodDisruptionBudget"]["spec"]
    assert 1 <= budget["minAvailable"] < shipped["Deployment"]["spec"]["replicas"]
    namespaces = {d["metadata"].get("namespace") for k, d in shipped.items() if k != "Namespace"}
    assert namespaces == {shipped["Namespace"]["metadata"]["name"]}


def test_the_servicemonitor_scrapes_the_services_port_with_the_metrics_token(
        shipped: dict[str, dict[str, Any]]) -> None:
    monitor = objects(KUBERNETES / "optional" / "servicemonitor.yaml")["ServiceMonitor"]
    service = shipped["Service"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items())
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    metrics_env = yaml.safe_load(shipped["ConfigMap"]["data"]["daemon.yaml"])["metrics"]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": env(shipped)[metrics_env["token_env"]]["valueFrom"]["secretKeyRef"]}


@pytest.fixture
def configmap_files(shipped: dict[str, dict[str, Any]], tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The ConfigMap's files where the pod mounts them (/etc/runbook), here under tmp_path,
    with the pod's environment (placeholder secrets)."""
    etc = tmp_path / "etc-runbook"
    etc.mkdir()
    for name, text in shipped["ConfigMap"]["data"].items():
        (etc / name).write_text(text.replace("/etc/runbook/", f"{etc}/"))
    for name in env(shipped):
        monkeypatch.setenv(name, f"placeholder-{name.lower()}")
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RUNBOOK_INVENTORY", raising=False)
    yield etc / "daemon.yaml"


def test_the_configmap_is_a_daemon_config_that_passes_its_own_check(
        shipped: dict[str, dict[str, Any]], configmap_files: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from runner.daemon.config import load
    from runner.daemon.server import check

    config = load(configmap_files)
    assert config.listen.port == container(shipped)["ports"][0]["containerPort"]
    assert config.journal is not None and config.journal.dsn_env == "RUNBOOK_JOURNAL_DSN"
    assert config.auth.mode == "bearer"  # what Alertmanager sends
    assert config.four_eyes
    assert check(configmap_files) == 0  # playbooks, inventory and routes agree
    assert "0 warning(s)" in capsys.readouterr().out


def test_the_daemon_answers_the_probe_paths_the_manifest_names(
        shipped: dict[str, dict[str, Any]], tmp_path: Path, runbook_home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_TOKEN", "intake-tok")
    config = write_world(tmp_path, "auth: {{mode: bearer, token_env: TEST_TOKEN}}\n"
                                   "playbooks: [{root}/playbooks]\n"
                                   "inventory: [{root}/inventory.yaml]\n")
    daemon = container(shipped)
    paths = {daemon[p]["httpGet"]["path"] for p in
             ("readinessProbe", "livenessProbe", "startupProbe")}
    with daemon_in_thread(config, runbook_home, "intake-tok") as running:
        for path in paths:
            answer = httpx.get(running.url + path, timeout=10)  # no token: kubelet has none
            assert (answer.status_code, answer.json()) == (200, {"status": "ok"}), path


def test_a_replica_whose_journal_dsn_is_a_closed_port_never_serves(tmp_path: Path) -> None:
    """It refuses to start (exit 4, saying why, naming no secret): in Kubernetes it is
    never Ready, and the Service sends it nothing."""
    config = write_world(tmp_path, "auth: {{mode: bearer, token_env: TEST_TOKEN}}\n"
                                   "journal: {{dsn_env: TEST_JOURNAL_DSN}}\n"
                                   "playbooks: [{root}/playbooks]\n"
                                   "inventory: [{root}/inventory.yaml]\n")
    closed = free_port()  # bound and released: nothing listens there
    password = "pw-Closed-4Kq9"
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "daemon", "--config", str(config), "--port",
         str(free_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "RUNBOOK_HOME": str(tmp_path / "home"), "TEST_TOKEN": "t",
             "TEST_JOURNAL_DSN": f"postgresql://runbook:{password}@127.0.0.1:{closed}/rb",
             "RUNBOOK_BACKENDS": "tests.support.membackend:register"})
    assert proc.returncode == 4, proc.stderr
    assert "journal unavailable" in proc.stderr and str(closed) in proc.stderr
    assert password not in proc.stdout + proc.stderr


def test_a_replica_without_the_journal_dsn_refuses_to_start_rather_than_journal_alone(
        configmap_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two replicas each on SQLite in its emptyDir would each believe it holds a target's
    lock: the shipped config names its journal, so a missing DSN stops the replica."""
    monkeypatch.delenv("RUNBOOK_JOURNAL_DSN")
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "daemon", "--config", str(configmap_files),
         "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert proc.returncode != 0
    assert "RUNBOOK_JOURNAL_DSN is not set" in proc.stderr
    assert not list((tmp_path / "home").rglob("journal.sqlite3"))


# The systemd unit


def directives(path: Path = UNIT) -> dict[str, list[str]]:
    """Each `Key=value` of the unit, in order (a key may repeat)."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_systemd_unit_runs_the_daemon_confined_to_its_state_directory() -> None:
    unit = directives()
    assert unit["ExecStart"] == ["/opt/runbook/bin/runbook daemon --config "
                                 "/etc/runbook/daemon.yaml"]
    assert unit["DynamicUser"] == ["yes"] and unit["NoNewPrivileges"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"] and unit["ProtectHome"] == ["yes"]
    assert unit["StateDirectory"] == ["runbook"] and unit["StateDirectoryMode"] == ["0700"]
    assert unit["CapabilityBoundingSet"] == [""]
    assert "RUNBOOK_HOME=/var/lib/runbook" in unit["Environment"][0].split()
    assert unit["EnvironmentFile"] == ["/etc/runbook/daemon.env"]  # secrets stay out of it
    assert unit["PrivateTmp"] == ["yes"] and unit["Restart"] == ["on-failure"]


def test_systemd_rates_the_unit_well_confined(tmp_path: Path) -> None:
    """systemd's own score of the unit's exposure (0 best, 10 worst), offline: at most 2."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: apt-get install systemd"
    units = tmp_path / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    shutil.copy(UNIT, units)
    binary = tmp_path / "opt" / "runbook" / "bin" / "runbook"  # what ExecStart names
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    # --threshold is in tenths (systemd 252): above 20 it exits 1
    proc = subprocess.run([analyze, "security", "--offline=yes", f"--root={tmp_path}",
                           "--threshold=20", UNIT.name], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    score = re.search(r"Overall exposure level for runbook-daemon\.service: (\d+\.\d+)",
                      proc.stdout)
    assert score and float(score[1]) <= 2.0, proc.stdout[-500:]
