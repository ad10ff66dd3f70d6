"""api-down, memory-leak and bad-deploy on a real Kubernetes cluster (the lab's, see
tests/lab/kube.py): the same playbooks as tests/scenarios/test_services.py, with an inventory
that differs only in its runtime section. Induce the fault in the pods, diagnose it, approve
the remedy, and watch the Deployment roll out and recover. Plus least privilege: read-only
credentials diagnose but cannot change anything."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.lab import kube
from tests.lab.api import container_dsn
from tests.lab.faults import LabDatabase
from tests.scenarios.conftest import CLI
from tests.scenarios.helpers import SHORT_WATCH, findings, remedy

pytestmark = pytest.mark.lab

# As in test_services.py: a Deployment created seconds ago is not the deploy under suspicion.
NO_DEPLOY = ("--param", "deploy_within=0s")
MIB = 1024 * 1024


@dataclass
class KubeLab:
    db: LabDatabase
    inventory: Path
    namespace: str
    kubeconfig: Path

    def deploy(self, flavor: str = "good", *, mem_limit: str = "256Mi", replicas: int = 1,
               env: dict[str, str] | None = None, wait_ready: bool = True
               ) -> kube.ApiDeployment:
        api = kube.deploy_api(self.namespace, "api", db_dsn=container_dsn(self.db.app),
                              flavor=flavor, mem_limit=mem_limit, replicas=replicas, env=env,
                              wait_ready=wait_ready)
        self.write_inventory()
        return api

    def write_inventory(self, kubeconfig: Path | None = None,
                        action_kubeconfig: Path | None = None) -> None:
        """The inventory of test_services.py, but for the runtime section."""
        action = f"\n    action_kubeconfig: {action_kubeconfig}" if action_kubeconfig else ""
        self.inventory.write_text(f"""
targets:
  test-api:
    kind: service
    runtime: kubernetes
    kubeconfig: {kubeconfig or self.kubeconfig}{action}
    namespace: {self.namespace}
    deployment: api
    health_url: http://{{pod_ip}}:8080/health
    endpoints: ["http://{{pod_ip}}:8080/api/accounts", "http://{{pod_ip}}:8080/api/balance-report"]
    http_timeout: 3s
  test-db:
    kind: postgres
    dsn_env: RUNBOOK_LAB_DSN
    action_dsn_env: RUNBOOK_LAB_OPS_DSN
""")

    def settings(self, kubeconfig: Path | None = None) -> Any:
        from diagnostics.service import KubernetesService

        return KubernetesService(runtime="kubernetes", namespace=self.namespace,
                                 deployment="api", kubeconfig=str(kubeconfig or self.kubeconfig))


@pytest.fixture
def kl(k8s: kube.Cluster, lab: LabDatabase, tmp_path: Path,
       monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeLab]:
    """A fresh namespace for the test, and an inventory pointing runbook at it."""
    inventory = tmp_path / "inventory.yaml"
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(inventory))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    namespace = kube.create_namespace()
    try:
        yield KubeLab(lab, inventory, namespace, k8s.kubeconfig)
    finally:
        kube.delete_namespace(namespace)


def step(report: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in report["steps"] if s["id"] == step_id)


def test_oom_killed_pod_gets_a_higher_limit_and_the_rollout_finishes(
        cli: CLI, kl: KubeLab) -> None:
    api = kl.deploy(mem_limit="96Mi")
    kube.fault(api, leak_mb_per_s=25)
    # Kubernetes restarts the killed container at once: OOMKilled is its last state. At the
    # limit the kernel reclaims the container's page cache before it kills: on a freshly
    # set-up machine the kill came 60 s after the leak began (dmesg), usually in 4.
    kube.wait_container(api, lambda c: kube.last_reason(c) == "OOMKilled"
                        and c.restart_count >= 1 and bool(c.state.running), 240, "an OOM kill")

    code, report = cli.json("run", "memory-leak", *SHORT_WATCH, "--param", "window=3s",
                            "--no-input")
    assert code == 1
    assert {"oom-killed", "restarting"} <= findings(report)
    status = step(report, "status")["result"]
    assert (status["oom_killed"], status["termination_reason"], status["exit_code"]) == (
        True, "OOMKilled", 137)
    assert status["restart_count"] >= 1 and status["memory_limit"] == 96 * MIB
    assert remedy(report, "raise-memory-limit")["status"] == "proposed"
    memory = step(report, "memory")["result"]
    assert memory["source"] == "docker" and "no metrics.k8s.io" in memory["note"]

    _code, report = cli.json("run", "api-down", *SHORT_WATCH, *NO_DEPLOY, "--no-input",
                             "--approve", "raise-memory-limit=service.set_memory_limit")
    assert "oom-killed" in findings(report)
    assert "api-unreachable" not in findings(report)  # it runs again, for now
    raised = remedy(report, "raise-memory-limit")
    assert raised["args"]["limit"] == 192 * MIB
    assert raised["status"] == "succeeded", raised
    assert raised["result"]["rollout"]["complete"] is True
    template = kube.deployment(api).spec.template.spec.containers[0]
    assert template.resources.limits["memory"] == "192Mi"
    pods = kube.pods(api)
    assert len(pods) == 1 and kube.container_status(pods[0]).restart_count == 0
    assert {v["id"]: v["status"] for v in report["verify"]} == {
        "healthy": "passed", "endpoints_ok": "passed"}
    assert report["status"] == "completed"


def test_crash_looping_pod_is_diagnosed_from_its_previous_container(
        cli: CLI, kl: KubeLab) -> None:
    # A typo in the configuration: the app dies at start, every time.
    api = kl.deploy(env={"POOL_SIZE": "five"}, wait_ready=False)
    kube.wait_container(api, lambda c: kube.waiting_reason(c) == "CrashLoopBackOff"
                        and c.restart_count >= 1, 90, "CrashLoopBackOff")

    code, report = cli.json("run", "api-down", *SHORT_WATCH, *NO_DEPLOY, "--no-input")
    assert code == 1
    assert {"api-unreachable", "crashed"} <= findings(report)
    status = step(report, "status")["result"]
    assert status["state"] == "CrashLoopBackOff" and status["running"] is False
    assert (status["exit_code"], status["termination_reason"]) == (1, "Error")
    assert status["back_off"] in {"10s", "20s", "40s"}
    assert "back-off" in status["error"]
    warnings = [e for e in status["events"] if e["type"] == "Warning"]
    assert warnings and warnings[0]["reason"] == "BackOff"  # warnings first
    assert step(report, "health")["result"]["error_class"] in {"refused", "timeout"}
    logs = step(report, "logs")["result"]  # the container that crashed: it is not running
    assert "exception" in logs["classes"]
    assert "ValueError: invalid literal for int() with base 10: 'five'" in logs["excerpt"][-1]
    crashed = next(f for f in report["findings"] if f["id"] == "crashed")
    assert "CrashLoopBackOff" in crashed["message"] and "ValueError" in crashed["message"]
    assert remedy(report, "start-api")["status"] == "proposed"


def test_bad_image_rollout_is_undone_to_the_old_replica_set(cli: CLI, kl: KubeLab) -> None:
    api = kl.deploy("good", replicas=2)
    good_rs = kube.replica_sets(api)[1]
    kube.set_image(api, "bad")  # revision 2
    time.sleep(1.1)
    url = kube.pod_url(api)
    for _ in range(3):  # users hit the broken endpoint: the first errors follow the deploy
        httpx.get(f"{url}/api/accounts", timeout=5)

    code, report = cli.json("run", "bad-deploy", *SHORT_WATCH, "--no-input")
    assert code == 1
    assert "errors-since-deploy" in findings(report)
    deploy = step(report, "deploy")["result"]
    assert (deploy["revision"], deploy["previous_revision"]) == (2, 1)
    assert deploy["previous_image"] == api.image and deploy["deploy_before_first_error"]
    proposed = remedy(report, "roll-back")
    assert proposed["args"]["to_image"] == api.image

    code, report = cli.json("resume", report["run_id"],
                            "--approve", "roll-back=service.rollback", "--no-input")
    rolled = remedy(report, "roll-back")
    assert rolled["status"] == "succeeded", rolled
    assert rolled["result"]["to_revision"] == 1
    assert rolled["result"]["replicaset"] == good_rs.metadata.name
    # `kubectl rollout undo`: the old ReplicaSet serves again, as revision 3
    assert kube.deployment(api).spec.template.spec.containers[0].image == api.image
    good_hash = good_rs.metadata.labels["pod-template-hash"]
    pods = kube.pods(api)
    assert len(pods) == 2
    assert {p.metadata.labels["pod-template-hash"] for p in pods} == {good_hash}
    assert 3 in kube.replica_sets(api)
    assert kube.replica_sets(api)[3].metadata.name == good_rs.metadata.name
    assert {v["id"]: v["status"] for v in report["verify"]} == {
        "healthy": "passed", "error_rate_low": "passed"}


def test_memory_leak_rolling_restart_then_scale_out_and_back(cli: CLI, kl: KubeLab) -> None:
    from diagnostics.kubernetes import KubernetesOperator
    from diagnostics.service import ScaleParams, ServiceControl, scale
    from runner.errors import PermanentError

    api = kl.deploy(mem_limit="512Mi")
    leaking = kube.pods(api)[0].metadata.name
    kube.fault(api, leak_mb_per_s=4)
    code, report = cli.json("run", "memory-leak", *SHORT_WATCH, "--param", "window=6s",
                            "--no-input",
                            "--approve", "rolling-restart=service.restart")
    assert code == 1
    assert "memory-growing" in findings(report)
    memory = step(report, "memory")["result"]
    assert memory["pod"] == leaking
    assert memory["growth_bytes_per_min"] > 60 * MIB  # about 240 MiB/min induced
    assert memory["seconds_to_limit"] > 0
    restarted = remedy(report, "rolling-restart")
    assert restarted["status"] == "succeeded", restarted
    assert restarted["result"]["restarted"] == [leaking]
    assert leaking not in restarted["result"]["rollout"]["pods"]
    annotations = kube.deployment(api).spec.template.metadata.annotations
    assert "kubectl.kubernetes.io/restartedAt" in annotations
    assert remedy(report, "scale-out")["status"] == "proposed"
    assert report["status"] == "awaiting_approval"

    _code, report = cli.json("resume", report["run_id"],
                             "--approve", "scale-out=service.scale", "--no-input")
    scaled = remedy(report, "scale-out")
    assert scaled["status"] == "succeeded", scaled
    assert (scaled["result"]["replicas"], len(scaled["result"]["added"])) == (2, 1)
    assert len(kube.ready_pods(api)) == 2

    # ... and back, with the playbook's bound still enforced
    operator = KubernetesOperator(kl.settings(), 60)
    try:
        control = ServiceControl("test-api", kl.settings(), operator)
        with pytest.raises(PermanentError, match="at most 4"):
            scale(control, ScaleParams(replicas=5, max=4))
        back = scale(control, ScaleParams(replicas=1, max=4))
    finally:
        operator.close()
    assert (back["replicas"], back["before"], len(back["removed"])) == (1, 2, 1)
    assert back["rollout"]["complete"] and kube.deployment(api).spec.replicas == 1
    assert len(kube.pods(api)) == 1


def test_read_only_credentials_diagnose_but_the_api_server_refuses_remedies(
        cli: CLI, kl: KubeLab, tmp_path: Path) -> None:
    from diagnostics.kubernetes import KubernetesOperator
    from runner.errors import PermanentError

    kube.apply_rbac(kl.namespace)  # deploy/kubernetes/rbac.yaml, bound in the test namespace
    read_only = kube.service_account_kubeconfig("runbook", "runbook-diagnostics",
                                                tmp_path / "diagnostics.kubeconfig")
    remedies = kube.service_account_kubeconfig("runbook", "runbook-remedies",
                                               tmp_path / "remedies.kubeconfig")
    api = kl.deploy(mem_limit="512Mi")
    kl.write_inventory(kubeconfig=read_only)  # remedies too get the read-only credentials
    kube.fault(api, leak_mb_per_s=4)

    code, report = cli.json("run", "memory-leak", *SHORT_WATCH, "--param", "window=4s",
                            "--no-input",
                            "--approve", "rolling-restart=service.restart")
    assert code == 1  # diagnosed: every step ran with get/list/watch alone
    assert {s["id"]: s["status"] for s in report["steps"]} == {
        "status": "ok", "memory": "ok", "top": "ok", "logs": "ok"}
    assert "memory-growing" in findings(report)
    refused = remedy(report, "rolling-restart")
    assert refused["status"] == "failed"
    error = refused["error"]
    assert error.startswith("forbidden: the Kubernetes API server refused to patch deployments")
    assert 'User "system:serviceaccount:runbook:runbook-diagnostics" cannot patch resource ' \
           '"deployments"' in error
    assert "runbook-remedies role" in error
    template = kube.deployment(api).spec.template
    assert "kubectl.kubernetes.io/restartedAt" not in (template.metadata.annotations or {})

    operator = KubernetesOperator(kl.settings(read_only), 30)
    try:
        with pytest.raises(PermanentError, match=r"refused to patch deployments/scale .*"
                                                 r"cannot patch resource \"deployments/scale\""):
            operator.scale(3)
    finally:
        operator.close()
    assert kube.deployment(api).spec.replicas == 1

    # The remedies' own credentials (runbook-remedies) are enough for the same remedy.
    kl.write_inventory(kubeconfig=read_only, action_kubeconfig=remedies)
    code, report = cli.json("run", "memory-leak", *SHORT_WATCH, "--param", "window=4s",
                            "--no-input",
                            "--approve", "rolling-restart=service.restart")
    assert remedy(report, "rolling-restart")["status"] == "succeeded"


def test_the_diagnostics_client_refuses_writes_even_with_admin_credentials(
        kl: KubeLab) -> None:
    from diagnostics.kubernetes import KubernetesReader
    from runner.errors import PermanentError

    api = kl.deploy()
    pod = kube.pods(api)[0].metadata.name
    reader = KubernetesReader(kl.settings(), 10)  # the cluster admin's kubeconfig
    try:
        assert reader.status()["running"] is True
        clients = reader.api  # past the reader's methods, to the API client itself
        for attempt in (
                lambda: clients.apps.patch_namespaced_deployment_scale(
                    "api", kl.namespace, {"spec": {"replicas": 3}}),
                lambda: clients.apps.delete_namespaced_deployment("api", kl.namespace),
                lambda: clients.core.delete_namespaced_pod(pod, kl.namespace),
                lambda: clients.core.create_namespaced_pod(kl.namespace, {}),
                # GET, but runs a command in the pod
                lambda: clients.core.connect_get_namespaced_pod_exec(
                    pod, kl.namespace, command=["true"])):
            with pytest.raises(PermanentError, match="read-only"):
                attempt()
    finally:
        reader.close()
    assert kube.deployment(api).spec.replicas == 1
    assert [p.metadata.name for p in kube.pods(api)] == [pod]
