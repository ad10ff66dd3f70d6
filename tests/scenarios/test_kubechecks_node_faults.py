"""kubernetes.nodes_not_ready and kubernetes.node_pressure against the lab's only node, each
fault induced for real and undone: the checks run by the real engine (`runbook run` of a
playbook of both checks on a workload of this module's own namespace).

- NotReady: the kubelet is paused (SIGSTOP). It stops posting node status and renewing its
  lease; once the controller-manager's node-monitor-grace-period (40 s, start.sh's default)
  has passed, the node lifecycle controller sets every condition Unknown ("Kubelet stopped
  posting node status.") and taints the node unreachable. Pods keep running under dockerd.
- MemoryPressure: the kubelet is restarted with an eviction threshold the machine is past
  (`--eviction-hard=memory.available<99%`: pressure once more than 1% of the memory is in
  use; above 100% the kubelet refuses to start, its allocatable negative), so its eviction
  manager reports MemoryPressure=True; the controller-manager taints the node. Not
  DiskPressure: under it the kubelet deletes unused images, and the lab's cannot be pulled.

Each test undoes its fault in a `finally` (resume, or restart with start.sh's flags) and
waits until the node is Ready, without pressure and without those taints. The kubelet under
memory pressure evicts pods: before inducing it the test makes sure no other namespace has a
pod on the node. Other lab tests must not run at the same time (the node is theirs too).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.lab import kube
from tests.lab.images import require_image
from tests.scenarios.conftest import CLI
from tests.support.polling import wait_for

pytestmark = pytest.mark.lab

CHECKS = ("nodes_not_ready", "node_pressure")
PLAYBOOK = {
    "name": "kube-node-checks",
    "summary": "the node checks on one service",
    "severity": "P2",
    "targets": {"service": {"kind": "service"}},
    "steps": [{"id": check, "run": f"kubernetes.{check}"} for check in CHECKS],
}
FAULT_TAINTS = {"node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready",
                "node.kubernetes.io/memory-pressure", "node.kubernetes.io/disk-pressure",
                "node.kubernetes.io/pid-pressure"}


def node() -> Any:
    return kube.core().read_node(kube.NODE)


def condition(name: str) -> str | None:
    return next((c.status for c in node().status.conditions or [] if c.type == name), None)


def taints() -> set[str]:
    return {f"{t.key}:{t.effect}" for t in node().spec.taints or []}


def healthy() -> bool:
    """Ready, no pressure, no taint of a node fault: the node as the other tests need it."""
    return (condition("Ready") == "True"
            and all(condition(c) == "False" for c in ("MemoryPressure", "DiskPressure",
                                                      "PIDPressure"))
            and not {t.split(":")[0] for t in taints()} & FAULT_TAINTS)


def wait_healthy() -> None:
    kube.wait(healthy, 120, f"node {kube.NODE} Ready, without pressure or fault taints",
              interval=1.0)


def foreign_pods(namespace: str) -> list[str]:
    """Pods of other namespaces on the node that are not being deleted: the kubelet under
    memory pressure would evict them."""
    found = kube.core().list_pod_for_all_namespaces(
        field_selector=f"spec.nodeName={kube.NODE}").items
    return [f"{p.metadata.namespace}/{p.metadata.name}" for p in found
            if p.metadata.namespace != namespace and not p.metadata.deletion_timestamp
            and p.status.phase in {"Pending", "Running"}]


@dataclass
class Lab:
    namespace: str
    playbooks: Path
    inventory: Path

    def run(self, cli: CLI) -> dict[str, dict[str, Any]]:
        """Both checks on the workload, through `runbook run`: {check: result}."""
        _code, report = cli.json("run", "kube-node-checks", "--playbooks", str(self.playbooks),
                                 "--inventory", str(self.inventory),
                                 "--target", "service=idle", "--no-input")
        steps = {s["id"]: s for s in report["steps"]}
        assert {k: s["status"] for k, s in steps.items()} == dict.fromkeys(CHECKS, "ok"), steps
        return {k: s["result"] for k, s in steps.items()}


@pytest.fixture(scope="module")
def lab(k8s: kube.Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A namespace with one idle pod on the node (a Deployment), and a healthy node."""
    wait_healthy()
    namespace = kube.create_namespace()
    try:
        kube.apps().create_namespaced_deployment(namespace, {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "idle", "labels": {"app": "idle"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "idle"}},
                     "template": {"metadata": {"labels": {"app": "idle"}}, "spec": {
                         "terminationGracePeriodSeconds": 1, "dnsPolicy": "Default",
                         "automountServiceAccountToken": False,
                         "containers": [{"name": "app", "image": require_image("api-base"),
                                         "imagePullPolicy": "Never",
                                         "command": ["sleep", "3600"]}]}}}})
        kube.wait_rollout(kube.ApiDeployment(namespace, "idle", ""), timeout=120)
        folder = tmp_path_factory.mktemp("kubenodes")
        (folder / "kube-node-checks.yaml").write_text(json.dumps(PLAYBOOK))
        inventory = folder / "inventory.yaml"
        inventory.write_text(json.dumps({"targets": {"idle": {
            "kind": "service", "runtime": "kubernetes", "kubeconfig": str(k8s.kubeconfig),
            "namespace": namespace, "deployment": "idle"}}}))
        yield Lab(namespace, folder, inventory)
    finally:
        kube.delete_namespace(namespace)


def assert_all_clear(results: dict[str, dict[str, Any]]) -> None:
    assert {c: r["level"] for c, r in results.items()} == dict.fromkeys(CHECKS, "ok"), {
        c: r["summary"] for c, r in results.items()}


def test_a_node_whose_kubelet_stopped_reporting_is_not_ready(lab: Lab, cli: CLI) -> None:
    assert_all_clear(lab.run(cli))
    try:
        kube.pause_kubelet()
        kube.wait(lambda: condition("Ready") == "Unknown"
                  and "node.kubernetes.io/unreachable:NoSchedule" in taints(), 150,
                  f"node {kube.NODE} Ready=Unknown and tainted unreachable", interval=1.0)
        results = lab.run(cli)
    finally:
        kube.resume_kubelet()
        wait_healthy()  # before any other test runs, even when this one failed
    found = results["nodes_not_ready"]
    assert (found["level"], found["scope"], found["affected"]) == (
        "critical", "workload", [kube.NODE]), found["summary"]
    [seen] = found["nodes"]
    assert seen["conditions"]["Ready"] == "Unknown"
    assert "node.kubernetes.io/unreachable:NoSchedule" in seen["taints"]
    assert found["summary"].startswith(
        f"1 of 1 node(s) under the workload: {kube.NODE} is NotReady for ")
    assert "because its kubelet stopped reporting: Kubelet stopped posting node status." in \
        found["summary"]
    assert found["summary"].endswith("check the node's kubelet and container runtime")
    # The controller-manager made every condition Unknown, pressure ones too: not known to
    # be fine, so a warning, not an all-clear.
    pressure = results["node_pressure"]
    assert pressure["level"] == "warning", pressure["summary"]
    assert f"{kube.NODE}'s MemoryPressure is unknown (Kubelet stopped posting node status.)" \
        in pressure["summary"]
    assert healthy()
    assert_all_clear(lab.run(cli))


def test_a_node_under_memory_pressure(lab: Lab, cli: CLI) -> None:
    assert_all_clear(lab.run(cli))
    # Under pressure the kubelet evicts pods: only this module's may be there to evict.
    wait_for(lambda: not foreign_pods(lab.namespace),
             lambda: f"no pod of another namespace on the node (refusing to evict "
             f"{foreign_pods(lab.namespace)})", timeout=90, every=2.0)
    try:
        kube.restart_kubelet(["--eviction-hard=memory.available<99%"])
        kube.wait(lambda: condition("MemoryPressure") == "True"
                  and "node.kubernetes.io/memory-pressure:NoSchedule" in taints(), 120,
                  f"node {kube.NODE} MemoryPressure=True and tainted", interval=1.0)
        results = lab.run(cli)
    finally:
        kube.restart_kubelet()
        wait_healthy()  # before any other test runs, even when this one failed
    found = results["node_pressure"]
    assert (found["level"], found["affected"]) == ("critical", [kube.NODE]), found["summary"]
    [seen] = found["nodes"]
    assert (seen["conditions"]["MemoryPressure"], seen["conditions"]["Ready"]) == (
        "True", "True")
    assert "node.kubernetes.io/memory-pressure:NoSchedule" in seen["taints"]
    assert found["summary"].startswith(f"1 of 1 node(s) under the workload: {kube.NODE} is "
                                       "short of memory (MemoryPressure for ")
    assert "kubelet has insufficient memory available" in found["summary"]
    assert found["summary"].endswith("free memory or disk on it, or move load off it")
    # Short of memory, the node is still Ready: not a NotReady finding.
    assert results["nodes_not_ready"]["level"] == "ok", results["nodes_not_ready"]["summary"]
    assert healthy()
    assert not kube.KUBELET_EXTRA.exists()
    assert_all_clear(lab.run(cli))
