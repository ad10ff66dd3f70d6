"""kubernetes.oom_killed, kubernetes.quota and kubernetes.pdb against the lab's real cluster,
each fault induced for real and found by its own check (through `runbook run`, the real
engine), and by no other of the three:

- `oom`: a container that allocates 256 MiB under a 48Mi limit (OOMKilled, again and again);
- `crowded` in a namespace of its own with a ResourceQuota of `pods: 1`: a 2-replica
  Deployment whose second pod the ReplicaSet cannot create (FailedCreate: exceeded quota);
- `guarded`: 2 replicas and a PodDisruptionBudget of minAvailable 2 (no disruption allowed:
  a drain would block); `fragile`: a pod that never gets ready under minAvailable 1 (the
  budget is violated);
- `healthy`: ready, in a namespace with a roomy quota (pods: 20) and a budget of
  maxUnavailable 1 that selects it: raises nothing.

The faults are created at once (two namespaces for the module) and waited for together,
bounded. The lab runs Kubernetes 1.20: its budgets are policy/v1beta1, which the check reads
because the server offers no policy/v1. k8s-workload-triage finds the quota; the read-only
role of deploy/kubernetes/rbac.yaml reads all three.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.lab import kube
from tests.lab.images import require_image
from tests.scenarios.conftest import CLI
from tests.support.polling import wait_for

pytestmark = pytest.mark.lab

CHECKS = ("oom_killed", "quota", "pdb")
PLAYBOOK = {
    "name": "kube-capacity-checks",
    "summary": "the kubernetes capacity checks on one service",
    "severity": "P2",
    "targets": {"service": {"kind": "service"}},
    "steps": [{"id": check, "run": f"kubernetes.{check}"} for check in CHECKS],
}
MEMORY_HOG = "x = bytearray(256 * 1024 * 1024)\nx[::4096] = b'a' * len(x[::4096])\n"
SLEEP = ["sleep", "3600"]


def deployment(name: str, image: str, command: list[str], *, replicas: int = 1,
               **container: Any) -> dict[str, Any]:
    """Quick to start and stop: no service account token to mount, a 1 s grace period."""
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "terminationGracePeriodSeconds": 1, "dnsPolicy": "Default",
                         "automountServiceAccountToken": False,
                         "containers": [{"name": "app", "image": image,
                                         "imagePullPolicy": "Never", "command": command,
                                         **container}]}}}}


def _get(path: str) -> dict[str, Any]:
    client = kube.api_client()
    request = client.param_serialize("GET", path, auth_settings=["BearerToken"],
                                     header_params={"Accept": "application/json"})
    response = client.call_api(*request)
    response.read()
    return dict(json.loads(response.data)) if 200 <= response.status < 300 else {}


def budget(namespace: str, name: str, app: str, **spec: Any) -> None:
    kube.create_raw(f"/apis/policy/v1beta1/namespaces/{namespace}/poddisruptionbudgets", {
        "apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": app}}, **spec}})


def budget_status(namespace: str, name: str) -> dict[str, Any]:
    found = _get(f"/apis/policy/v1beta1/namespaces/{namespace}/poddisruptionbudgets/{name}")
    return dict(found.get("status") or {})


def resource_quota(namespace: str, name: str, pods: int) -> None:
    kube.core().create_namespaced_resource_quota(namespace, {
        "metadata": {"name": name}, "spec": {"hard": {"pods": str(pods)}}})
    # Admission refuses every pod ("status unknown for quota") until the controller has
    # computed the quota's status: wait for it before creating any.
    kube.wait(lambda: (kube.core().read_namespaced_resource_quota(name, namespace)
                       .status.hard or {}).get("pods"), 60, f"ResourceQuota {name}'s status")


def statuses(namespace: str, app: str) -> list[Any]:
    return [s for p in kube.core().list_namespaced_pod(namespace, label_selector=f"app={app}")
            .items for s in p.status.container_statuses or []]


def refused_by_quota(namespace: str, app: str) -> bool:
    return any(e.reason == "FailedCreate" and "exceeded quota" in (e.message or "")
               and e.involved_object.name.startswith(f"{app}-")
               for e in kube.core().list_namespaced_event(namespace).items)


@dataclass
class Lab:
    faults: str
    crowded: str
    playbooks: Path
    inventory: Path

    def report(self, cli: CLI, workload: str, playbook: str = "kube-capacity-checks",
               inventory: Path | None = None) -> dict[str, Any]:
        _code, report = cli.json("run", playbook, "--playbooks", str(self.playbooks),
                                 "--inventory", str(inventory or self.inventory),
                                 "--target", f"service={workload}", "--no-input")
        return report

    def run(self, cli: CLI, workload: str, inventory: Path | None = None
            ) -> dict[str, dict[str, Any]]:
        """The three checks on the workload's service: {check: result}; each ran."""
        steps = {s["id"]: s for s in self.report(cli, workload, inventory=inventory)["steps"]}
        failed = {k: s for k, s in steps.items() if s["status"] != "ok"}
        assert not failed, failed
        return {k: s["result"] for k, s in steps.items()}


@pytest.fixture(scope="module")
def lab(k8s: kube.Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = require_image("api-base")
    faults, crowded = kube.create_namespace(), kube.create_namespace()
    try:
        apps = kube.apps()
        resource_quota(faults, "roomy", 20)
        resource_quota(crowded, "pods-one", 1)
        budget(faults, "guarded", "guarded", minAvailable=2)
        budget(faults, "fragile", "fragile", minAvailable=1)
        budget(faults, "healthy", "healthy", maxUnavailable=1)
        apps.create_namespaced_deployment(faults, deployment(
            "oom", base, ["python3", "-c", MEMORY_HOG],
            resources={"limits": {"memory": "48Mi"}, "requests": {"memory": "32Mi"}}))
        apps.create_namespaced_deployment(faults, deployment("guarded", base, SLEEP,
                                                             replicas=2))
        apps.create_namespaced_deployment(faults, deployment(
            "fragile", base, SLEEP, readinessProbe={
                "exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1}))
        apps.create_namespaced_deployment(faults, deployment("healthy", base, SLEEP))
        apps.create_namespaced_deployment(crowded, deployment("crowded", base, SLEEP,
                                                              replicas=2))
        ready: dict[str, Callable[[], bool]] = {
            "oom": lambda: any(kube.last_reason(s) == "OOMKilled"
                               for s in statuses(faults, "oom")),
            "guarded": lambda: budget_status(faults, "guarded").get("currentHealthy") == 2
            and budget_status(faults, "guarded").get("disruptionsAllowed") == 0,
            "fragile": lambda: bool(statuses(faults, "fragile")) and all(
                s.state.running for s in statuses(faults, "fragile"))
            and budget_status(faults, "fragile").get("desiredHealthy") == 1,
            "healthy": lambda: budget_status(faults, "healthy").get("disruptionsAllowed") == 1,
            "crowded": lambda: refused_by_quota(crowded, "crowded")
            and any(s.ready for s in statuses(crowded, "crowded")),
        }

        def shown() -> bool:
            for name in [n for n, check in ready.items() if check()]:
                del ready[name]
            return not ready

        from kubernetes.client.exceptions import ApiException

        wait_for(shown, lambda: f"the faults to show: still waiting for {sorted(ready)}",
                 timeout=180, every=1.0, retry_on=(ApiException,))
        folder = tmp_path_factory.mktemp("kubecapacity")
        (folder / "kube-capacity-checks.yaml").write_text(json.dumps(PLAYBOOK))
        (folder / "k8s-workload-triage.yaml").write_text(
            (Path(__file__).resolve().parents[2] / "playbooks" / "k8s-workload-triage.yaml")
            .read_text())
        inventory = folder / "inventory.yaml"
        inventory.write_text(json.dumps({"targets": {
            name: {"kind": "service", "runtime": "kubernetes",
                   "kubeconfig": str(k8s.kubeconfig), "deployment": name,
                   "namespace": crowded if name == "crowded" else faults}
            for name in ("oom", "guarded", "fragile", "healthy", "crowded")}}))
        yield Lab(faults, crowded, folder, inventory)
    finally:
        kube.delete_namespace(faults)
        kube.delete_namespace(crowded)


def quiet_but(results: dict[str, dict[str, Any]], check: str) -> None:
    others = {c: r["summary"] for c, r in results.items() if c != check and r["level"] != "ok"}
    assert others == {}


def test_a_healthy_workload_raises_nothing(lab: Lab, cli: CLI) -> None:
    results = lab.run(cli, "healthy")
    assert {c: r["level"] for c, r in results.items()} == dict.fromkeys(CHECKS, "ok"), {
        c: r["summary"] for c, r in results.items()}
    [roomy] = results["quota"]["quotas"]
    assert roomy["name"] == "roomy" and roomy["resources"][0]["resource"] == "pods"
    assert 0 < roomy["resources"][0]["percent"] < 90
    [healthy] = results["pdb"]["pdbs"]
    assert (healthy["name"], healthy["api_version"], healthy["disruptions_allowed"]) == (
        "healthy", "policy/v1beta1", 1)
    assert results["oom_killed"]["oom_killed"] == []


def test_an_oom_killed_container_names_its_limit(lab: Lab, cli: CLI) -> None:
    results = lab.run(cli, "oom")
    found = results["oom_killed"]
    assert (found["level"], found["cause"], found["memory_limit"]) == ("critical", "limit",
                                                                      "48Mi")
    [killed] = found["oom_killed"]
    assert (killed["container"], killed["exit_code"], killed["memory_request"]) == (
        "app", 137, "32Mi")
    assert killed["oom_kills"] >= 1 and killed["seconds_ago"] is not None
    assert found["containers"] == ["app"]
    assert f"container app of {killed['pod']} OOMKilled in {killed['oom_kills']} of its " \
        f"last {killed['exits_seen']} exit(s)" in found["summary"]
    assert "at its 48Mi limit, request 32Mi: raise the limit or find what allocates" in \
        found["summary"]
    quiet_but(results, "oom_killed")


def test_a_quota_that_refuses_the_second_replica(lab: Lab, cli: CLI) -> None:
    results = lab.run(cli, "crowded")
    found = results["quota"]
    assert (found["level"], found["resources"], found["at_limit"]) == (
        "critical", ["pods"], ["pods-one/pods"])
    [refused] = found["exceeded"]
    assert (refused["quota"], refused["cause"], refused["limited"]) == (
        "pods-one", "exceeded", {"pods": "1"})
    assert refused["objects"][0].startswith("crowded-") and refused["count"] >= 1
    [usage] = found["quotas"][0]["resources"]
    assert (usage["used"], usage["hard"], usage["percent"]) == ("1", "1", 100.0)
    assert found["summary"].startswith(
        "deployment/crowded cannot create pods: quota pods-one is exceeded for pods "
        "(requested pods=1, used pods=1, limited pods=1)")
    assert "ResourceQuota pods-one: pods 1/1 (100%)" in found["summary"]
    quiet_but(results, "quota")


def test_a_budget_as_large_as_the_replicas_blocks_a_drain(lab: Lab, cli: CLI) -> None:
    results = lab.run(cli, "guarded")
    found = results["pdb"]
    assert (found["level"], found["blocking"], found["violated"]) == ("warning", ["guarded"],
                                                                     [])
    [guarded] = found["pdbs"]
    assert (guarded["min_available"], guarded["disruptions_allowed"],
            guarded["current_healthy"], guarded["desired_healthy"]) == (2, 0, 2, 2)
    assert found["summary"].startswith(
        "PDB guarded (minAvailable 2) allows 0 disruptions with 2 of 2 pod(s) healthy: a node "
        "drain or eviction of deployment/guarded's pods blocks")
    quiet_but(results, "pdb")


def test_a_violated_budget(lab: Lab, cli: CLI) -> None:
    results = lab.run(cli, "fragile")
    found = results["pdb"]
    assert (found["level"], found["violated"], found["blocking"]) == ("critical", ["fragile"],
                                                                     [])
    assert "PDB fragile (minAvailable 1) is violated: 0 healthy pod(s) of the 1 it requires" \
        in found["summary"]
    quiet_but(results, "pdb")


def test_k8s_workload_triage_finds_the_quota(lab: Lab, cli: CLI) -> None:
    report = lab.report(cli, "crowded", "k8s-workload-triage")
    fired = {f["id"]: f for f in report["findings"] if f["status"] == "fired"}
    assert fired["quota-exhausted"]["severity"] == "P1"
    assert "exceeded for pods" in fired["quota-exhausted"]["message"]
    assert not {"oom-killed", "oom-killed-recently", "pdb-violated",
                "pdb-blocks-drain"} & set(fired)


def test_the_read_only_role_reads_quotas_and_budgets(lab: Lab, cli: CLI,
                                                     tmp_path: Path) -> None:
    """deploy/kubernetes/rbac.yaml's runbook-diagnostics, bound in the namespace: it may list
    ResourceQuotas and PodDisruptionBudgets, so the healthy workload is an all-clear."""
    kube.apply_rbac(lab.faults)
    read_only = kube.service_account_kubeconfig("runbook", "runbook-diagnostics",
                                                tmp_path / "diagnostics.kubeconfig")
    targets = json.loads(lab.inventory.read_text())["targets"]
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(json.dumps({"targets": {
        name: {**targets[name], "kubeconfig": str(read_only)} for name in ("healthy", "oom")}}))
    assert {c: r["level"] for c, r in lab.run(cli, "healthy", inventory).items()} == \
        dict.fromkeys(CHECKS, "ok")
    assert lab.run(cli, "oom", inventory)["oom_killed"]["cause"] == "limit"
