"""The `kubernetes.*` workload checks on the lab's Kubernetes cluster: each fault induced for
real (a rollout to an image tag no node has, one whose pod fits no node, an HPA with no
metrics to scale on, a Job and a CronJob that fail, a Service whose pods never get ready and
one whose selector matches none), found by its check and by k8s-workload-triage, most
severe first; a healthy workload raises nothing; api-down names why pods are not ready;
bad-deploy rolls a stuck rollout back, after approval, to the revision that was available.

Every faulty object is created at once, in one namespace for this module (the healthy
workload has its own, as Jobs are graded per namespace), and the test waits, bounded, for
each fault to show. The demo API's /health does not touch its database: no database here.
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
from tests.scenarios.helpers import SHORT_WATCH, findings, remedy

pytestmark = pytest.mark.lab

BAD_TAG = "runbook-lab/api:no-such-tag"  # never built: ErrImageNeverPull
NO_DB = "postgresql://nobody@127.0.0.1:1/none"
SEVERITY = {"P1": 1, "P2": 2, "P3": 3}
MINE = {"rollout": ("rollout-stuck", "rollout-slow"),
        "hpa": ("hpa-cannot-scale-or-maxed", "hpa-at-max"),
        "jobs": ("jobs-failed", "jobs-retrying"),
        "service_endpoints": ("service-without-endpoints", "service-endpoints-not-ready"),
        "events": ("warning-events-storm", "warning-events")}


@dataclass(frozen=True)
class Lab:
    faulty: str
    healthy: str
    good_image: str
    kubeconfig: Path

    def inventory(self, path: Path) -> Path:
        def target(namespace: str, deployment: str) -> str:
            return f"""
  {deployment}:
    kind: service
    runtime: kubernetes
    kubeconfig: {self.kubeconfig}
    namespace: {namespace}
    deployment: {deployment}
    health_url: http://{{pod_ip}}:8080/health
    endpoints: ["http://{{pod_ip}}:8080/health"]
    http_timeout: 3s"""
        path.write_text("targets:" + target(self.faulty, "stuck") + target(self.faulty, "undo")
                        + target(self.faulty, "unready") + target(self.faulty, "greedy")
                        + target(self.healthy, "healthy") + "\n")
        return path


def _pod_spec(image: str, command: list[str]) -> dict[str, Any]:
    return {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "task", "image": image, "imagePullPolicy": "Never",
                            "command": command}]}


FAIL = ["python3", "-c", "print('migration failed: relation \"accounts\" does not exist'); "
        "raise SystemExit(3)"]


def _deployment(namespace: str, name: str, image: str, *, probe_path: str | None = "/health"
                ) -> None:
    manifest = kube.api_manifest(name, image, NO_DB)
    # No service-account token to mount: under load its mount can fail for a while and
    # leave a warning event on a workload that is otherwise healthy.
    manifest["spec"]["template"]["spec"]["automountServiceAccountToken"] = False
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    if probe_path is None:
        del container["readinessProbe"]  # ready once it runs: no startup probe failures
    else:
        container["readinessProbe"]["httpGet"]["path"] = probe_path
    kube.apps().create_namespaced_deployment(namespace, manifest)


def _service(namespace: str, name: str, selector: dict[str, str]) -> None:
    kube.core().create_namespaced_service(namespace, {
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"port": 80, "targetPort": 8080}]}})


def _condition(obj: Any, kind: str) -> bool:
    return any(c.type == kind and c.status == "True" for c in obj.status.conditions or [])


def _stuck_on_missing_image(namespace: str, name: str) -> bool:
    api = kube.ApiDeployment(namespace, name, "")
    return any(kube.waiting_reason(kube.container_status(p)) == "ErrImageNeverPull"
               for p in kube.pods(api)) and len(kube.ready_pods(api)) == 1


def _unschedulable(namespace: str) -> bool:
    api = kube.ApiDeployment(namespace, "greedy", "")
    return any(c.type == "PodScheduled" and c.reason == "Unschedulable"
               for p in kube.pods(api) for c in p.status.conditions or []
               ) and len(kube.ready_pods(api)) == 1


@pytest.fixture(scope="module")
def lab(k8s: kube.Cluster) -> Iterator[Lab]:
    from kubernetes import client

    faulty, healthy = kube.create_namespace(), kube.create_namespace()
    good = require_image("api-good")
    batch = client.BatchV1Api(kube.api_client())
    try:
        for name in ("stuck", "undo", "greedy"):
            _deployment(faulty, name, good)
        _deployment(faulty, "unready", good, probe_path="/not-here")
        _service(faulty, "unready", {"app": "unready"})
        _service(faulty, "unready-typo", {"app": "unready", "tier": "web"})
        _deployment(healthy, "healthy", good, probe_path=None)
        _service(healthy, "healthy", {"app": "healthy"})
        batch.create_namespaced_job(faulty, {"metadata": {"name": "migrate"}, "spec": {
            "backoffLimit": 0, "template": {"spec": _pod_spec(good, FAIL)}}})
        batch.create_namespaced_job(healthy, {"metadata": {"name": "seed"}, "spec": {
            "backoffLimit": 0, "template": {"spec": _pod_spec(good, ["true"])}}})
        kube.create_raw(f"/apis/batch/v1beta1/namespaces/{faulty}/cronjobs", {
            "apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {"name": "report"},
            "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {
                "backoffLimit": 0, "template": {"spec": _pod_spec(good, ["false"])}}}}})
        client.AutoscalingV1Api(kube.api_client()).create_namespaced_horizontal_pod_autoscaler(
            faulty, {"metadata": {"name": "stuck"}, "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                   "name": "stuck"},
                "minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50}})
        for name in ("stuck", "undo"):  # revision 1 serves; revision 2 names no image
            kube.wait_rollout(kube.ApiDeployment(faulty, name, good))
            kube.apps().patch_namespaced_deployment(name, faulty, {"spec": {"template": {
                "spec": {"containers": [{"name": "api", "image": BAD_TAG}]}}}})
        # greedy's revision 2 asks for more memory than the node has: Pending, Unschedulable
        kube.wait_rollout(kube.ApiDeployment(faulty, "greedy", good))
        kube.apps().patch_namespaced_deployment("greedy", faulty, {"spec": {"template": {
            "spec": {"containers": [{"name": "api", "resources": {
                "requests": {"memory": "4000Gi"}, "limits": {"memory": "4000Gi"}}}]}}}})
        for name in ("stuck", "undo"):
            kube.wait(lambda n=name: _stuck_on_missing_image(faulty, n), 120,
                      f"{faulty}/{name}'s new pod in ErrImageNeverPull, the old one ready")
        kube.wait(lambda: _unschedulable(faulty), 120,
                  f"{faulty}/greedy's new pod unschedulable, the old one ready")
        kube.wait_rollout(kube.ApiDeployment(healthy, "healthy", good))
        unready = kube.ApiDeployment(faulty, "unready", good)
        kube.wait(lambda: [p for p in kube.pods(unready) if p.status.phase == "Running"], 90,
                  "the unready pod running")
        kube.wait(lambda: _condition(batch.read_namespaced_job("migrate", faulty), "Failed"),
                  120, "Job migrate failed")
        kube.wait(lambda: _condition(batch.read_namespaced_job("seed", healthy), "Complete"),
                  120, "Job seed complete")
        kube.wait(lambda: [j for j in batch.list_namespaced_job(faulty).items
                           if j.metadata.name.startswith("report-")
                           and _condition(j, "Failed")], 150,
                  "a run of CronJob report failed")
        hpas = client.AutoscalingV1Api(kube.api_client())
        kube.wait(lambda: "ScalingActive" in (hpas.read_namespaced_horizontal_pod_autoscaler(
            "stuck", faulty).metadata.annotations or {}).get(
            "autoscaling.alpha.kubernetes.io/conditions", ""), 90, "the HPA's conditions")
        yield Lab(faulty, healthy, good, k8s.kubeconfig)
    finally:
        kube.delete_namespace(faulty)
        kube.delete_namespace(healthy)


@pytest.fixture
def inventory(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = lab.inventory(tmp_path / "inventory.yaml")
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return path


def triage(cli: CLI, service: str) -> dict[str, Any]:
    _code, report = cli.json("run", "k8s-workload-triage", "--target", f"service={service}",
                             "--no-input")
    return report


def result(report: dict[str, Any], step_id: str) -> dict[str, Any]:
    found = next(s for s in report["steps"] if s["id"] == step_id)
    assert found["status"] == "ok", found
    return dict(found["result"])


def test_rollout_to_a_missing_image_is_stuck_with_the_reason_and_the_revision_that_serves(
        cli: CLI, lab: Lab, inventory: Path) -> None:
    rollout = result(triage(cli, "stuck"), "rollout")
    assert (rollout["level"], rollout["stuck"], rollout["complete"]) == ("critical", True, False)
    assert (rollout["revision"], rollout["image"]) == (2, BAD_TAG)
    [new] = rollout["new_pods"]
    assert new["reason"] == "ErrImageNeverPull" and BAD_TAG in new["message"]
    assert (rollout["last_available_revision"], rollout["last_available_image"],
            rollout["last_available_ready"]) == (1, lab.good_image, 1)
    assert "ErrImageNeverPull" in rollout["summary"] and "revision 1" in rollout["summary"]


def test_rollout_whose_pod_fits_no_node_is_stuck_with_the_scheduler_reason(
        cli: CLI, lab: Lab, inventory: Path) -> None:
    rollout = result(triage(cli, "greedy"), "rollout")
    assert (rollout["level"], rollout["stuck"]) == ("critical", True)
    [new] = rollout["new_pods"]
    assert new["reason"] == "Unschedulable" and "Insufficient memory" in new["message"]
    assert "Insufficient memory" in rollout["summary"]
    assert (rollout["last_available_revision"], rollout["last_available_ready"]) == (1, 1)


def test_hpa_without_metrics_cannot_scale_and_says_why(
        cli: CLI, lab: Lab, inventory: Path) -> None:
    hpa = result(triage(cli, "stuck"), "hpa")
    assert hpa["level"] == "critical" and hpa["unable_to_scale"]
    [one] = hpa["hpas"]
    assert (one["name"], one["max_replicas"], one["target"]) == ("stuck", 3, "Deployment/stuck")
    assert "ScalingActive=False, FailedGetResourceMetric" in hpa["summary"]


def test_failed_job_and_cronjob_are_found_with_their_reason_and_exit_code(
        cli: CLI, lab: Lab, inventory: Path) -> None:
    jobs = result(triage(cli, "stuck"), "jobs")
    assert jobs["level"] == "critical" and "migrate" in jobs["failed"]
    migrate = next(j for j in jobs["jobs"] if j["name"] == "migrate")
    assert (migrate["reason"], migrate["last_exit"]["exit_code"]) == ("BackoffLimitExceeded", 3)
    [report] = jobs["cronjobs"]
    assert report["name"] == "report" and report["last_job_failed"] and report["last_schedule"]
    assert "CronJob report's last run" in jobs["summary"]
    assert "Job migrate failed (BackoffLimitExceeded" in jobs["summary"]


def test_services_without_ready_endpoints_say_why(cli: CLI, lab: Lab, inventory: Path) -> None:
    endpoints = result(triage(cli, "unready"), "service_endpoints")
    assert endpoints["level"] == "critical"
    assert sorted(endpoints["without_endpoints"]) == ["unready", "unready-typo"]
    said = {s["service"]: s["say"] for s in endpoints["services"]}
    assert "no pod of deployment/unready is ready: 1 pod(s) in NotReady" in said["unready"]
    assert "app=unready,tier=web matches no pod of deployment/unready" in said["unready-typo"]
    assert next(s for s in endpoints["services"] if s["service"] == "unready")[
        "not_ready_endpoints"] == 1


def test_warning_events_are_summarised_by_reason(cli: CLI, lab: Lab, inventory: Path) -> None:
    events = result(triage(cli, "stuck"), "events")
    assert events["level"] in {"warning", "critical"}
    assert "ErrImageNeverPull" in events["reasons"]
    counts = [w["count"] for w in events["warnings"]]
    assert counts == sorted(counts, reverse=True)  # most frequent first
    never = next(w for w in events["warnings"] if w["reason"] == "ErrImageNeverPull")
    assert "is not present with pull policy of Never" in never["last_message"]


def test_triage_finds_several_faults_most_severe_first(
        cli: CLI, lab: Lab, inventory: Path) -> None:
    report = triage(cli, "stuck")
    fired = [f for f in report["findings"] if f["status"] == "fired"]
    assert {"rollout-stuck", "hpa-cannot-scale-or-maxed", "jobs-failed"} <= findings(report)
    ranks = [SEVERITY[f["severity"]] for f in fired]
    assert ranks == sorted(ranks), [(f["id"], f["severity"]) for f in fired]
    assert report["verdict"] == "problems_found"
    rollout = next(f for f in fired if f["id"] == "rollout-stuck")
    assert rollout["severity"] == "P1" and "ErrImageNeverPull" in rollout["message"]


def test_a_healthy_workload_raises_nothing(cli: CLI, lab: Lab, inventory: Path) -> None:
    report = triage(cli, "healthy")
    assert (report["verdict"], findings(report), report["not_checked"]) == (
        "nothing_found", set(), [])
    for step, ids in MINE.items():
        found = result(report, step)
        assert found["level"] == "ok" and found["ok"], (step, found["summary"])
        assert not findings(report) & set(ids)
    assert result(report, "rollout")["complete"]
    [service] = result(report, "service_endpoints")["services"]
    assert (service["service"], service["ready_endpoints"]) == ("healthy", 1)
    seed = result(report, "jobs")["jobs"]
    assert [(j["name"], j["succeeded"]) for j in seed] == [("seed", True)]


def test_api_down_names_the_waiting_reason_of_pods_not_ready(
        cli: CLI, lab: Lab, inventory: Path) -> None:
    _code, report = cli.json("run", "api-down", *SHORT_WATCH, "--target", "api=stuck", "--no-input")
    assert {"pods-not-ready", "rollout-stuck"} <= findings(report)
    said = next(f["message"] for f in report["findings"] if f["id"] == "pods-not-ready")
    assert "ErrImageNeverPull" in said and BAD_TAG in said


def test_api_down_names_the_scheduler_reason_of_a_pending_pod(
        cli: CLI, lab: Lab, inventory: Path) -> None:
    _code, report = cli.json("run", "api-down", *SHORT_WATCH, "--target", "api=greedy",
                             "--no-input")
    said = next(f["message"] for f in report["findings"] if f["id"] == "pods-not-ready"
                and f["status"] == "fired")
    assert "Unschedulable" in said and "Insufficient memory" in said


def test_bad_deploy_rolls_a_stuck_rollout_back_to_the_available_revision_after_approval(
        cli: CLI, lab: Lab, inventory: Path) -> None:
    undo = kube.ApiDeployment(lab.faulty, "undo", lab.good_image)
    good_rs = kube.replica_sets(undo)[1]
    code, report = cli.json("run", "bad-deploy", *SHORT_WATCH, "--target", "api=undo", "--no-input")
    assert code == 1 and "rollout-stuck" in findings(report)
    proposed = remedy(report, "roll-back-stuck-rollout")
    assert proposed["status"] == "proposed"
    assert proposed["args"]["to_image"] == lab.good_image
    assert (proposed["args"]["revision"], proposed["args"]["revision_uid"]) == (
        1, good_rs.metadata.uid)
    assert remedy(report, "roll-back")["status"] != "proposed"
    assert kube.deployment(undo).spec.template.spec.containers[0].image == BAD_TAG  # not yet

    _code, report = cli.json("resume", report["run_id"], "--approve",
                             "roll-back-stuck-rollout=service.rollback", "--no-input")
    rolled = remedy(report, "roll-back-stuck-rollout")
    assert rolled["status"] == "succeeded", json.dumps(rolled)[:2000]
    assert rolled["result"]["to_revision"] == 1
    assert kube.deployment(undo).spec.template.spec.containers[0].image == lab.good_image
    good_hash = good_rs.metadata.labels["pod-template-hash"]
    assert {p.metadata.labels["pod-template-hash"] for p in kube.pods(undo)} == {good_hash}
    assert kube.rollout_complete(undo)
    assert {v["id"]: v["status"] for v in report["verify"]} == {
        "healthy": "passed", "error_rate_low": "passed"}
