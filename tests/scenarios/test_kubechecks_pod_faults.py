"""The kubernetes.* pod and node checks against the lab's real cluster, each fault induced for
real: one namespace for the module, every faulty workload created at once and waited for
together, then each check run by the real engine (`runbook run` of a playbook that runs all
eight checks on one target) and asserted on what it found, and on what it did not.

Faults, each a Deployment of its own (the lab's local images, `imagePullPolicy: Never`
unless said): an image tag that is not on the node (ErrImageNeverPull); an image name that
is not a valid reference (InvalidImageName); an image on a registry at a loopback port where
nothing listens (ErrImagePull then ImagePullBackOff: the engine really tries, and is
refused); a container whose database client (psycopg) finds 127.0.0.1:5432 refusing and
exits, again and again (CrashLoopBackOff); one that allocates past its memory limit
(OOMKilled); pods too big for the node, with a node selector no node matches, and with an
unbound PersistentVolumeClaim (Pending); an env var from a Secret that does not exist and
from a ConfigMap key that does not (CreateContainerConfigError); a readiness probe and a
liveness probe on a port nobody listens on; a container that writes past its
ephemeral-storage limit (evicted by the kubelet). A healthy workload raises nothing.

Here the healthy node reads ok through the real API; node pressure and NotReady are induced
for real in tests/scenarios/test_kubechecks_node_faults.py (the kubelet paused, or
restarted with an eviction threshold the node is past), and their grading is unit-tested
over real-shaped node JSON (tests/unit/test_kubechecks_pods.py).
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

CHECKS = ("image_pull", "crash_loop", "pending", "config_error", "probe_failures",
          "evictions", "node_pressure", "nodes_not_ready")
PLAYBOOK = {
    "name": "kube-pod-checks",
    "summary": "every kubernetes pod and node check on one service",
    "severity": "P2",
    "targets": {"service": {"kind": "service"}},
    "steps": [{"id": check, "run": f"kubernetes.{check}"} for check in CHECKS],
}
# The way an application dies of its database: it logs where it failed to connect, then the
# exception (psycopg 3.1's names no host) ends it; both on stderr, so in order. A real
# connect, refused by the pod's own loopback.
DB_CLIENT = """\
import logging
import psycopg
logging.basicConfig(format="%(levelname)s %(message)s")
print("starting journey-api v1.4.2", flush=True)
try:
    psycopg.connect("host=127.0.0.1 port=5432 dbname=journey user=journey connect_timeout=5")
except psycopg.OperationalError as exc:
    logging.error("cannot connect to the database at 127.0.0.1:5432: %s", exc)
    raise
"""
MEMORY_HOG = "x = bytearray(256 * 1024 * 1024)\nx[::4096] = b'a' * len(x[::4096])\n"
DISK_FILLER = ("dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>/dev/null; echo wrote 64 MiB; "
               "exec sleep 3600")


def container(image: str, *, command: list[str] | None = None, policy: str = "Never",
              **extra: Any) -> dict[str, Any]:
    return {"name": "app", "image": image, "imagePullPolicy": policy,
            **({"command": command} if command else {}), **extra}


def pod_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Quick to stop (sleep and python ignore SIGTERM as PID 1), and no service account
    token to mount: the kubelet's secret cache can hold a pod's start up for minutes."""
    return {"terminationGracePeriodSeconds": 1, "dnsPolicy": "Default",
            "automountServiceAccountToken": False, **spec}


def deployment(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "progressDeadlineSeconds": 600,
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": pod_spec(spec)}}}


# A bare pod, no controller: an evicted pod stays evicted (a ReplicaSet would replace it,
# and the kubelet evict the next one, over and over); its service names it by selector.
BARE = {"disk-hog"}


def probe(port: int, threshold: int = 1) -> dict[str, Any]:
    return {"httpGet": {"path": "/health", "port": port}, "periodSeconds": 1,
            "failureThreshold": threshold, "timeoutSeconds": 1}


def workloads(base: str) -> dict[str, dict[str, Any]]:
    python, sleep = ["python3", "-c"], ["sleep", "3600"]
    return {
        "healthy": {"containers": [container(
            base, command=["python3", "-m", "http.server", "8080"],
            readinessProbe={**probe(8080, 3), "httpGet": {"path": "/", "port": 8080}})]},
        "never-pull": {"containers": [container(base.rsplit(":", 1)[0] + ":no-such-tag")]},
        "invalid-name": {"containers": [container("runbook-lab/API-base:1")]},
        "registry-refuses": {"containers": [container(
            "127.0.0.1:5999/runbook-lab/api:1", policy="IfNotPresent")]},
        "crash-db": {"containers": [container(base, command=[*python, DB_CLIENT])]},
        "oom": {"containers": [container(base, command=[*python, MEMORY_HOG], resources={
            "limits": {"memory": "48Mi"}})]},
        "too-big": {"containers": [container(base, command=sleep, resources={
            "requests": {"memory": "4000Gi"}})]},
        "no-node": {"containers": [container(base, command=sleep)],
                    "nodeSelector": {"runbook.lab/pool": "nowhere"}},
        "unbound-claim": {"containers": [container(base, command=sleep, volumeMounts=[
            {"name": "data", "mountPath": "/data"}])],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]},
        "no-secret": {"containers": [container(base, command=sleep, env=[
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {
                "name": "db-creds", "key": "password"}}}])]},
        "no-key": {"containers": [container(base, command=sleep, env=[
            {"name": "LOG_LEVEL", "valueFrom": {"configMapKeyRef": {
                "name": "app-config", "key": "LOG_LEVEL"}}}])]},
        "not-ready": {"containers": [container(base, command=sleep,
                                               readinessProbe=probe(9999))]},
        "liveness": {"containers": [container(base, command=sleep,
                                              livenessProbe=probe(9998, 2))]},
        "disk-hog": {"containers": [container(base, command=["sh", "-c", DISK_FILLER],
                                              resources={"limits": {
                                                  "ephemeral-storage": "8Mi"}})]},
    }


def pods_of(namespace: str, name: str) -> list[Any]:
    return list(kube.core().list_namespaced_pod(namespace, label_selector=f"app={name}").items)


def statuses(namespace: str, name: str) -> list[Any]:
    return [s for p in pods_of(namespace, name) for s in p.status.container_statuses or []]


def waiting_in(namespace: str, name: str, *reasons: str) -> bool:
    return any(kube.waiting_reason(s) in reasons for s in statuses(namespace, name))


def unschedulable(namespace: str, name: str) -> bool:
    return any(c.type == "PodScheduled" and c.reason == "Unschedulable"
               for p in pods_of(namespace, name) for c in p.status.conditions or [])


def events_of(namespace: str, reason: str, name: str) -> int:
    return sum(e.count or 1 for e in kube.core().list_namespaced_event(namespace).items
               if e.reason == reason and e.involved_object.name.startswith(f"{name}-"))


def evicted(namespace: str, name: str) -> bool:
    return any(p.status.reason == "Evicted" for p in pods_of(namespace, name))


# What each workload must show before the checks look: the fault, as the kubelet and the
# scheduler report it.
READY: dict[str, Callable[[str], bool]] = {
    "healthy": lambda ns: bool(statuses(ns, "healthy")) and all(
        s.ready for s in statuses(ns, "healthy")),
    "never-pull": lambda ns: waiting_in(ns, "never-pull", "ErrImageNeverPull"),
    "invalid-name": lambda ns: waiting_in(ns, "invalid-name", "InvalidImageName"),
    "registry-refuses": lambda ns: events_of(ns, "Failed", "registry-refuses") >= 1
    and waiting_in(ns, "registry-refuses", "ImagePullBackOff", "ErrImagePull"),
    "crash-db": lambda ns: any(kube.waiting_reason(s) == "CrashLoopBackOff"
                               and s.restart_count >= 1 for s in statuses(ns, "crash-db")),
    "oom": lambda ns: any(kube.last_reason(s) == "OOMKilled" for s in statuses(ns, "oom")),
    "too-big": lambda ns: unschedulable(ns, "too-big"),
    "no-node": lambda ns: unschedulable(ns, "no-node"),
    "unbound-claim": lambda ns: unschedulable(ns, "unbound-claim"),
    "no-secret": lambda ns: waiting_in(ns, "no-secret", "CreateContainerConfigError"),
    "no-key": lambda ns: waiting_in(ns, "no-key", "CreateContainerConfigError"),
    "not-ready": lambda ns: events_of(ns, "Unhealthy", "not-ready") >= 3,
    "liveness": lambda ns: events_of(ns, "Killing", "liveness") >= 1,
    "disk-hog": lambda ns: evicted(ns, "disk-hog"),
}


@dataclass
class Lab:
    namespace: str
    playbooks: Path
    inventory: Path

    def report(self, cli: CLI, workload: str, inventory: Path | None = None
               ) -> tuple[int, dict[str, Any]]:
        return cli.json("run", "kube-pod-checks", "--playbooks", str(self.playbooks),
                        "--inventory", str(inventory or self.inventory),
                        "--target", f"service={workload}", "--no-input")

    def run(self, cli: CLI, workload: str) -> dict[str, dict[str, Any]]:
        """Every check on the workload's service, through `runbook run`: {check: result}."""
        _code, report = self.report(cli, workload)
        steps = {s["id"]: s for s in report["steps"]}
        failed = {k: s for k, s in steps.items() if s["status"] != "ok"}
        assert not failed, failed  # every check ran: none of these faults stops a check
        return {k: s["result"] for k, s in steps.items()}


@pytest.fixture(scope="module")
def faults(k8s: kube.Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The namespace with every workload, each showing its fault (waited for together,
    bounded); the inventory names each as a service."""
    base = require_image("api-base")
    namespace = kube.create_namespace()
    try:
        v1, apps = kube.core(), kube.apps()
        v1.create_namespaced_config_map(namespace, {"metadata": {"name": "app-config"},
                                                    "data": {"PORT": "8080"}})
        v1.create_namespaced_persistent_volume_claim(namespace, {
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                     "resources": {"requests": {"storage": "1Gi"}}}})
        for name, spec in workloads(base).items():
            if name in BARE:
                v1.create_namespaced_pod(namespace, {"metadata": {
                    "name": name, "labels": {"app": name}}, "spec": pod_spec(spec)})
            else:
                apps.create_namespaced_deployment(namespace, deployment(name, spec))
        pending = dict(READY)

        def shown() -> bool:
            for name in [n for n, ready in pending.items() if ready(namespace)]:
                del pending[name]
            return not pending

        from kubernetes.client.exceptions import ApiException

        wait_for(shown, lambda: f"the faults to show: still waiting for {sorted(pending)}",
                 timeout=240, every=1.0, retry_on=(ApiException,))
        folder = tmp_path_factory.mktemp("kubechecks")
        (folder / "kube-pod-checks.yaml").write_text(json.dumps(PLAYBOOK))
        inventory = folder / "inventory.yaml"
        inventory.write_text(json.dumps({"targets": {name: {
            "kind": "service", "runtime": "kubernetes", "kubeconfig": str(k8s.kubeconfig),
            "namespace": namespace, **({"selector": f"app={name}"} if name in BARE
                                       else {"deployment": name})} for name in READY}}))
        yield Lab(namespace, folder, inventory)
    finally:
        kube.delete_namespace(namespace)


def levels(results: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {check: result["level"] for check, result in results.items()}


def quiet_but(results: dict[str, dict[str, Any]], *checks: str) -> None:
    """Every check but `checks` reads ok: a fault is found by its own check only."""
    others = {c: lvl for c, lvl in levels(results).items() if c not in checks and lvl != "ok"}
    assert others == {}, {c: results[c]["summary"] for c in others}


def test_a_healthy_workload_raises_nothing_and_its_node_reads_ok(faults: Lab,
                                                                 cli: CLI) -> None:
    results = faults.run(cli, "healthy")
    assert levels(results) == dict.fromkeys(CHECKS, "ok"), {
        c: r["summary"] for c, r in results.items()}
    for check in ("node_pressure", "nodes_not_ready"):
        nodes = results[check]["nodes"]
        assert (results[check]["scope"], [n["node"] for n in nodes]) == ("workload",
                                                                         ["127.0.0.1"])
        assert nodes[0]["conditions"]["Ready"] == "True"
        assert {nodes[0]["conditions"][c] for c in ("MemoryPressure", "DiskPressure",
                                                     "PIDPressure")} == {"False"}


def test_an_image_tag_that_is_not_on_the_node(faults: Lab, cli: CLI) -> None:
    results = faults.run(cli, "never-pull")
    found = results["image_pull"]
    assert (found["level"], found["cause"]) == ("critical", "not_on_node")
    [failing] = found["failing"]
    assert failing["reason"] == "ErrImageNeverPull"
    assert failing["image"].endswith(":no-such-tag")
    assert "is not present with pull policy of Never" in failing["event"]
    assert "cannot start because the image is not on the node" in found["summary"]
    quiet_but(results, "image_pull")


def test_an_invalid_image_name(faults: Lab, cli: CLI) -> None:
    found = faults.run(cli, "invalid-name")["image_pull"]
    assert (found["level"], found["cause"]) == ("critical", "invalid_name")
    assert found["failing"][0]["reason"] == "InvalidImageName"
    assert "invalid reference format" in found["failing"][0]["event"]


def test_a_registry_that_refuses_the_pull(faults: Lab, cli: CLI) -> None:
    results = faults.run(cli, "registry-refuses")
    found = results["image_pull"]
    assert (found["level"], found["cause"]) == ("critical", "registry_unreachable")
    assert found["failing"][0]["reason"] in {"ErrImagePull", "ImagePullBackOff"}
    assert "127.0.0.1:5999" in found["failing"][0]["event"]
    assert "connection refused" in found["failing"][0]["event"]
    assert "the node cannot reach the registry" in found["summary"]
    quiet_but(results, "image_pull")


def test_a_crash_loop_names_the_database_that_refuses(faults: Lab, cli: CLI) -> None:
    results = faults.run(cli, "crash-db")
    found = results["crash_loop"]
    assert (found["level"], found["cause"], found["cause_target"]) == (
        "critical", "database", "127.0.0.1:5432")
    assert found["exit_codes"] == [1] and found["restart_count"] >= 1
    [crashing] = found["crashing"]
    assert crashing["state"] in {"CrashLoopBackOff", "terminated"}
    assert crashing["class"] == "db_connection"
    assert crashing["last_error"].startswith("psycopg.OperationalError: ")
    assert any("127.0.0.1:5432" in line for line in crashing["earlier_errors"])
    assert found["summary"].startswith(
        "deployment/crash-db crash-loops because its database at 127.0.0.1:5432 refuses "
        "connections (1 pod(s)")
    assert found["summary"].endswith("check the database; a restart will not help")
    quiet_but(results, "crash_loop")


def test_an_oom_killed_container(faults: Lab, cli: CLI) -> None:
    results = faults.run(cli, "oom")
    found = results["crash_loop"]
    assert (found["level"], found["cause"], found["oom_killed"]) == ("critical", "oom", True)
    assert 137 in found["exit_codes"]
    assert "because it runs out of memory" in found["summary"]


@pytest.mark.parametrize(("workload", "cause", "says"), [
    ("too-big", "insufficient_memory",
     "it requests 4000Gi of memory and 1 node(s) have too little left (Insufficient memory)"),
    ("no-node", "node_selector",
     "its node selector (runbook.lab/pool=nowhere) matches no node"),
    ("unbound-claim", "unbound_pvc", "its PersistentVolumeClaim data is not bound"),
])
def test_a_pending_pod_says_why_the_scheduler_cannot_place_it(
        faults: Lab, cli: CLI, workload: str, cause: str, says: str) -> None:
    results = faults.run(cli, workload)
    found = results["pending"]
    assert (found["level"], found["cause"]) == ("critical", cause), found["summary"]
    assert says in found["summary"]
    assert found["pending"][0]["scheduled"] is False
    quiet_but(results, "pending", "node_pressure", "nodes_not_ready")
    # No pod placed: the node checks look at every node, and find them fine.
    assert results["nodes_not_ready"]["scope"] == "all"
    assert results["nodes_not_ready"]["level"] == "ok"


@pytest.mark.parametrize(("workload", "cause", "missing"), [
    ("no-secret", "missing_secret", "Secret/db-creds"),
    ("no-key", "missing_key", "ConfigMap/app-config key LOG_LEVEL"),
])
def test_a_missing_secret_or_configmap_key(faults: Lab, cli: CLI, workload: str, cause: str,
                                           missing: str) -> None:
    results = faults.run(cli, workload)
    found = results["config_error"]
    assert (found["level"], found["cause"], found["missing"]) == ("critical", cause, [missing])
    assert "the pod starts once it exists" in found["summary"]
    quiet_but(results, "config_error")


def test_a_readiness_probe_on_a_port_nobody_listens_on(faults: Lab, cli: CLI) -> None:
    results = faults.run(cli, "not-ready")
    found = results["probe_failures"]
    assert (found["level"], found["cause"]) == ("critical", "refused")
    readiness = next(p for p in found["probes"] if p["probe"] == "readiness")
    assert readiness["failures"] >= 3
    assert "9999" in readiness["last_message"]
    assert "its readiness probe fails because nothing listens on the probed port 9999" in \
        found["summary"]
    quiet_but(results, "probe_failures")


def test_a_liveness_probe_that_gets_the_container_killed(faults: Lab, cli: CLI) -> None:
    results = faults.run(cli, "liveness")
    found = results["probe_failures"]
    liveness = next(p for p in found["probes"] if p["probe"] == "liveness")
    assert found["level"] == "critical" and liveness["kills"] >= 1
    assert "its liveness probe fails because nothing listens on the probed port 9998" in \
        found["summary"]


def test_a_pod_evicted_for_its_local_storage(faults: Lab, cli: CLI) -> None:
    results = faults.run(cli, "disk-hog")
    found = results["evictions"]
    assert (found["level"], found["cause"]) == ("warning", "local_storage_limit")
    [pod] = found["evicted"]
    assert pod["pod"] == "disk-hog"
    assert "exceeds the total limit of containers 8Mi" in pod["message"]
    assert found["summary"].startswith("pods app=disk-hog: 1 pod(s) evicted because it wrote "
                                       "more local disk than its limit allows")
    quiet_but(results, "evictions")


def test_the_read_only_role_reads_everything_the_checks_need(
        faults: Lab, cli: CLI, tmp_path: Path) -> None:
    """deploy/kubernetes/rbac.yaml's runbook-diagnostics, bound in the namespace, and its
    nodes ClusterRoleBinding: enough for every pod check (pods, pods/log, events) and both
    node checks (nodes are cluster-scoped), so a healthy workload is an all-clear."""
    kube.apply_rbac(faults.namespace)
    read_only = kube.service_account_kubeconfig("runbook", "runbook-diagnostics",
                                                tmp_path / "diagnostics.kubeconfig")
    inventory = tmp_path / "inventory.yaml"
    targets = json.loads(faults.inventory.read_text())["targets"]
    inventory.write_text(json.dumps({"targets": {
        name: {**targets[name], "kubeconfig": str(read_only)}
        for name in ("healthy", "crash-db")}}))

    code, report = faults.report(cli, "crash-db", inventory)
    steps = {s["id"]: s for s in report["steps"]}
    assert steps["crash_loop"]["result"]["cause_target"] == "127.0.0.1:5432"  # its log read
    code, report = faults.report(cli, "healthy", inventory)
    steps = {s["id"]: s for s in report["steps"]}
    assert {k: s["status"] for k, s in steps.items() if s["status"] != "ok"} == {}
    assert report["verdict"] == "nothing_found" and code == 0
