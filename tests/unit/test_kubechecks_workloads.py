"""The grading of the `kubernetes.*` workload checks over API JSON shaped as a 1.20 API server
returns it (fields, conditions and messages copied from the lab cluster's answers): a stuck
rollout and the revision that still serves, HPAs at their maximum or unable to scale, failed
Jobs and CronJobs, Services without endpoints, warning events by reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from diagnostics.kubechecks.autoscaling import HpaParams, grade_hpa
from diagnostics.kubechecks.batch import JobsParams, grade_jobs
from diagnostics.kubechecks.workloads import (
    EventParams,
    RolloutParams,
    grade_endpoints,
    grade_rollout,
    pod_reason,
    revision_table,
    summarise_warnings,
)
from runner.registry import Registry

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)
DEPLOY_UID = "6f1c7d1e-2b1a-4f7e-9a55-0d7d4e1f0a01"
GOOD, BAD = "runbook-lab/api:2f0165f9d137-good", "runbook-lab/api:no-such-tag"


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def deployment(revision: int = 2, *, replicas: int = 1, updated: int = 1, available: int = 1,
               total: int = 2, progressing: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": {"name": "api", "namespace": "rb-k8s-1", "uid": DEPLOY_UID,
                     "generation": revision,
                     "annotations": {"deployment.kubernetes.io/revision": str(revision)}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "api"}},
                 "template": {"metadata": {"labels": {"app": "api"}},
                              "spec": {"containers": [{"name": "api", "image": BAD}]}},
                 "progressDeadlineSeconds": 120},
        "status": {"observedGeneration": revision, "replicas": total,
                   "updatedReplicas": updated, "readyReplicas": available,
                   "availableReplicas": available, "unavailableReplicas": total - available,
                   "conditions": [
                       {"type": "Available", "status": "True",
                        "lastUpdateTime": ago(300), "lastTransitionTime": ago(300),
                        "reason": "MinimumReplicasAvailable",
                        "message": "Deployment has minimum availability."},
                       progressing or {
                           "type": "Progressing", "status": "True",
                           "lastUpdateTime": ago(20), "lastTransitionTime": ago(300),
                           "reason": "ReplicaSetUpdated",
                           "message": 'ReplicaSet "api-7d9c6b5f4d" is progressing.'}]},
    }


DEADLINE = {"type": "Progressing", "status": "False", "lastUpdateTime": ago(5),
            "lastTransitionTime": ago(5), "reason": "ProgressDeadlineExceeded",
            "message": 'ReplicaSet "api-7d9c6b5f4d" has timed out progressing.'}


def replica_set(revision: int, hash_: str, image: str, ready: int) -> dict[str, Any]:
    return {
        "kind": "ReplicaSet",
        "metadata": {"name": f"api-{hash_}", "uid": f"rs-{revision}",
                     "labels": {"app": "api", "pod-template-hash": hash_},
                     "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                          "name": "api", "uid": DEPLOY_UID,
                                          "controller": True}]},
        "spec": {"replicas": 1, "template": {
            "metadata": {"labels": {"app": "api", "pod-template-hash": hash_}},
            "spec": {"containers": [{"name": "api", "image": image}]}}},
        "status": {"replicas": 1, "readyReplicas": ready, "availableReplicas": ready},
    }


def pod(name: str, hash_: str, image: str, *, ready: bool = True,
        waiting: tuple[str, str] | None = None, scheduled: str | None = None
        ) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Running" if ready else "Pending",
                              "conditions": [{"type": "Ready",
                                              "status": "True" if ready else "False"}]}
    if scheduled:
        status["conditions"].append({"type": "PodScheduled", "status": "False",
                                     "reason": "Unschedulable", "message": scheduled})
    else:
        state = ({"waiting": {"reason": waiting[0], "message": waiting[1]}} if waiting
                 else {"running": {"startedAt": ago(200)}})
        status["containerStatuses"] = [{"name": "api", "ready": ready, "restartCount": 0,
                                        "image": image, "imageID": "", "state": state}]
    return {"metadata": {"name": name, "uid": f"uid-{name}", "creationTimestamp": ago(100),
                         "labels": {"app": "api", "pod-template-hash": hash_}},
            "spec": {"containers": [{"name": "api", "image": image,
                                     "ports": [{"containerPort": 8080, "name": "http"}]}]},
            "status": status}


NEVER_PULL = ("ErrImageNeverPull", f'Container image "{BAD}" is not present with pull '
              "policy of Never")
OLD_POD = pod("api-5c8f9d7b6-x2x9k", "5c8f9d7b6", GOOD)
NEW_POD = pod("api-7d9c6b5f4d-q7w2e", "7d9c6b5f4d", BAD, ready=False, waiting=NEVER_PULL)
REPLICA_SETS = [replica_set(1, "5c8f9d7b6", GOOD, 1), replica_set(2, "7d9c6b5f4d", BAD, 0)]


def rollout(workload: dict[str, Any], pods: list[dict[str, Any]],
            sets: list[dict[str, Any]] = REPLICA_SETS, **params: Any) -> dict[str, Any]:
    revisions = revision_table("deployment", workload, sets, "api")
    return grade_rollout("deployment", workload, revisions, pods, "api", NOW,
                         RolloutParams(**params))


# kubernetes.rollout


def test_new_pods_that_never_pull_make_a_stuck_rollout_with_the_serving_revision() -> None:
    found = rollout(deployment(updated=1, available=1, total=2), [OLD_POD, NEW_POD])
    assert (found["level"], found["stuck"], found["complete"]) == ("critical", True, False)
    assert found["revision"] == 2 and found["image"] == BAD
    assert [p["reason"] for p in found["new_pods"]] == ["ErrImageNeverPull"]
    assert found["new_pods"][0]["image"] == BAD
    assert (found["last_available_revision"], found["last_available_image"],
            found["last_available_ready"]) == (1, GOOD, 1)
    summary = found["summary"]
    assert "stuck" in summary and "ErrImageNeverPull" in summary and BAD in summary
    assert "revision 1" in summary and "still serves 1 ready pod" in summary


def test_progress_deadline_exceeded_is_critical_and_says_the_condition() -> None:
    waiting = pod("api-7d9c6b5f4d-q7w2e", "7d9c6b5f4d", BAD, ready=False,
                  waiting=("ContainerCreating", ""))
    found = rollout(deployment(progressing=DEADLINE), [OLD_POD, waiting])
    assert found["level"] == "critical" and found["progress_deadline_exceeded"]
    assert "ProgressDeadlineExceeded" in found["summary"]
    assert "has timed out progressing" in found["summary"]


def test_unschedulable_new_pod_names_the_scheduler_reason() -> None:
    pending = pod("api-7d9c6b5f4d-q7w2e", "7d9c6b5f4d", BAD, ready=False,
                  scheduled="0/1 nodes are available: 1 Insufficient memory.")
    found = rollout(deployment(), [OLD_POD, pending])
    assert found["level"] == "critical"
    assert found["new_pods"][0]["reason"] == "Unschedulable"
    assert "Insufficient memory" in found["summary"]


def test_a_rollout_in_progress_without_blocked_pods_is_ok_then_a_warning_when_it_stalls(
        ) -> None:
    creating = pod("api-7d9c6b5f4d-q7w2e", "7d9c6b5f4d", BAD, ready=False,
                   waiting=("ContainerCreating", ""))
    found = rollout(deployment(), [OLD_POD, creating])
    assert (found["level"], found["complete"]) == ("ok", False)
    assert "rolling out" in found["summary"]
    stalled = rollout(deployment(), [OLD_POD, creating], slow_after=10)
    assert stalled["level"] == "warning" and "no progress for 20 s" in stalled["summary"]


def test_a_paused_rollout_is_a_warning_that_says_so() -> None:
    creating = pod("api-7d9c6b5f4d-q7w2e", "7d9c6b5f4d", BAD, ready=False,
                   waiting=("ContainerCreating", ""))
    paused = deployment(progressing={"type": "Progressing", "status": "Unknown",
                                     "lastUpdateTime": ago(900), "reason": "DeploymentPaused",
                                     "message": "Deployment is paused"})
    paused["spec"]["paused"] = True
    found = rollout(paused, [OLD_POD, creating])
    assert (found["level"], found["stuck"]) == ("warning", False)
    assert "is paused" in found["summary"] and "rollout resume" in found["summary"]


def test_a_complete_rollout_with_a_pod_not_ready_is_a_warning_for_the_pod_checks() -> None:
    done = deployment(revision=1, updated=1, available=0, total=1, progressing={
        "type": "Progressing", "status": "True", "lastUpdateTime": ago(900),
        "reason": "NewReplicaSetAvailable",
        "message": 'ReplicaSet "api-5c8f9d7b6" has successfully progressed.'})
    crashing = pod("api-5c8f9d7b6-x2x9k", "5c8f9d7b6", GOOD, ready=False,
                   waiting=("CrashLoopBackOff", "back-off 40s restarting failed container=api"))
    found = rollout(done, [crashing], REPLICA_SETS[:1])
    assert (found["level"], found["stuck"], found["complete"]) == ("warning", False, True)
    assert found["reasons"] == ["CrashLoopBackOff"] and "pod checks" in found["summary"]
    # The same pod while its revision was still rolling out: the rollout is stuck on it.
    rolling = rollout(deployment(revision=1, updated=1, available=0, total=1), [crashing],
                      REPLICA_SETS[:1])
    assert (rolling["level"], rolling["stuck"]) == ("critical", True)
    assert rolling["last_available_revision"] is None  # nothing to roll back to


def test_a_complete_rollout_is_ok() -> None:
    done = deployment(revision=1, updated=1, available=1, total=1)
    done["spec"]["template"]["spec"]["containers"][0]["image"] = GOOD
    found = rollout(done, [OLD_POD], REPLICA_SETS[:1])
    assert found["ok"] and found["level"] == "ok" and found["complete"]
    assert found["not_ready"] == [] and found["last_available_revision"] is None
    assert "rolled out" in found["summary"]


def test_revisions_of_another_deployment_are_not_ours() -> None:
    stranger = replica_set(7, "abcdef", GOOD, 1)
    stranger["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    table = revision_table("deployment", deployment(), [*REPLICA_SETS, stranger], "api")
    assert [r["revision"] for r in table] == [1, 2]
    assert [r["current"] for r in table] == [False, True]


def test_pod_reason_of_a_running_pod_that_fails_its_readiness_probe() -> None:
    unready = pod("api-1", "h", GOOD, ready=False)
    unready["status"]["conditions"][0]["message"] = "containers with unready status: [api]"
    view = pod_reason(unready, "api")
    assert (view["reason"], view["ready"]) == ("NotReady", False)
    assert "unready status" in view["message"]


# kubernetes.hpa


def hpa(current: int, desired: int, maximum: int, conditions: list[dict[str, Any]],
        metrics: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v2beta2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "api"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": "api"},
                     "minReplicas": 1, "maxReplicas": maximum,
                     "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu", "target": {"type": "Utilization",
                                                   "averageUtilization": 50}}}]},
            "status": {"currentReplicas": current, "desiredReplicas": desired,
                       "currentMetrics": metrics or [], "conditions": conditions}}


ABLE = {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale",
        "message": "recommended size matches current size"}
ACTIVE = {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound",
          "message": "the HPA was able to successfully calculate a replica count from cpu "
                     "resource utilization (percentage of request)"}
CPU_180 = [{"type": "Resource", "resource": {"name": "cpu", "current": {
    "averageUtilization": 180, "averageValue": "90m"}}}]


def test_hpa_at_its_maximum_that_wants_more_is_critical_with_its_metrics() -> None:
    limited = {"type": "ScalingLimited", "status": "True", "reason": "TooManyReplicas",
               "message": "the desired replica count is more than the maximum replica count"}
    found = grade_hpa(hpa(5, 5, 5, [ABLE, ACTIVE, limited], CPU_180), HpaParams())
    assert (found["level"], found["at_max"], found["wants_more"]) == ("critical", True, True)
    assert "maximum of 5" in found["problems"][0] and "cpu 180% (target 50%)" in found["metrics"]


def test_hpa_at_its_maximum_without_wanting_more_is_the_configured_level() -> None:
    fine = {"type": "ScalingLimited", "status": "False", "reason": "DesiredWithinRange",
            "message": "the desired count is within the acceptable range"}
    found = grade_hpa(hpa(3, 3, 3, [ABLE, ACTIVE, fine]), HpaParams())
    assert (found["level"], found["wants_more"]) == ("warning", False)
    assert grade_hpa(hpa(3, 3, 3, [ABLE, ACTIVE, fine]),
                     HpaParams(at_max_level="ok"))["level"] == "ok"


def test_hpa_that_cannot_get_metrics_cannot_scale_and_says_why() -> None:
    failing = {"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric",
               "message": "the HPA was unable to compute the replica count: unable to get "
                          "metrics for resource cpu: unable to fetch metrics from resource "
                          "metrics API: the server could not find the requested resource "
                          "(get pods.metrics.k8s.io)"}
    found = grade_hpa(hpa(1, 1, 4, [ABLE, failing]), HpaParams())
    assert found["level"] == "critical" and not found["at_max"]
    assert "ScalingActive=False, FailedGetResourceMetric" in found["problems"][0]
    assert "pods.metrics.k8s.io" in found["problems"][0]


def test_hpa_at_its_minimum_is_the_floor_working() -> None:
    floor = {"type": "ScalingLimited", "status": "True", "reason": "TooFewReplicas",
             "message": "the desired replica count is less than the minimum replica count"}
    found = grade_hpa(hpa(1, 1, 4, [ABLE, ACTIVE, floor]), HpaParams())
    assert found["level"] == "ok" and found["problems"] == []


def test_autoscaling_v1_conditions_come_from_the_annotation() -> None:
    v1 = {"apiVersion": "autoscaling/v1", "metadata": {"name": "api", "annotations": {
        "autoscaling.alpha.kubernetes.io/conditions": json.dumps([
            {"type": "AbleToScale", "status": "False", "reason": "FailedGetScale",
             "message": 'deployments/scale.apps "nope" not found'}])}},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "api"}, "minReplicas": 1,
                 "maxReplicas": 3, "targetCPUUtilizationPercentage": 60},
        "status": {"currentReplicas": 0, "desiredReplicas": 0}}
    found = grade_hpa(v1, HpaParams())
    assert found["level"] == "critical" and "FailedGetScale" in found["problems"][0]
    assert found["metrics"] == "cpu ?% (target 60%)"


# kubernetes.jobs


def job(name: str, *, failed: int = 0, condition: tuple[str, str, str] | None = None,
        cronjob: str | None = None, created: float = 100, active: int = 0
        ) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": ago(created),
                            "labels": {"job-name": name}}
    if cronjob:
        meta["ownerReferences"] = [{"apiVersion": "batch/v1beta1", "kind": "CronJob",
                                    "name": cronjob, "uid": f"cj-{cronjob}"}]
    conditions = []
    if condition:
        kind, reason, message = condition
        conditions.append({"type": kind, "status": "True", "reason": reason or None,
                           "message": message or None, "lastProbeTime": ago(30),
                           "lastTransitionTime": ago(30)})
    return {"metadata": meta, "spec": {"backoffLimit": 1, "completions": 1},
            "status": {"failed": failed, "active": active, "conditions": conditions}}


BACKOFF = ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
JOB_POD = {"metadata": {"name": "migrate-x7k2p", "creationTimestamp": ago(60),
                        "labels": {"job-name": "migrate", "controller-uid": "u"}},
           "status": {"phase": "Failed", "containerStatuses": [{"name": "migrate", "state": {
               "terminated": {"exitCode": 3, "reason": "Error", "startedAt": ago(61),
                              "finishedAt": ago(60)}}}]}}


def test_a_job_past_its_backoff_limit_is_critical_with_the_exit_of_its_last_pod() -> None:
    found = grade_jobs([job("migrate", failed=2, condition=BACKOFF)], [], [JOB_POD], NOW,
                       JobsParams())
    assert found["level"] == "critical" and found["failed"] == ["migrate"]
    assert "BackoffLimitExceeded" in found["summary"] and "exited with code 3" in found["summary"]
    assert found["jobs"][0]["last_exit"]["exit_code"] == 3


def test_a_cronjob_is_graded_by_its_last_run() -> None:
    cron = {"metadata": {"name": "report"}, "spec": {"schedule": "*/1 * * * *"},
            "status": {"lastScheduleTime": ago(20)}}
    runs = [job("report-1", failed=2, condition=BACKOFF, cronjob="report", created=200),
            job("report-2", condition=("Complete", "", ""), cronjob="report", created=80)]
    assert grade_jobs(runs, [cron], [], NOW, JobsParams())["level"] == "ok"
    runs.append(job("report-3", failed=2, condition=BACKOFF, cronjob="report", created=20))
    found = grade_jobs(runs, [cron], [], NOW, JobsParams())
    assert found["level"] == "critical"
    assert "CronJob report's last run, job report-3, failed" in found["summary"]
    assert found["cronjobs"][0]["last_job_failed"] and found["cronjobs"][0]["last_job"] == \
        "report-3"


def test_retrying_job_is_a_warning_and_an_old_failure_is_not_graded() -> None:
    retrying = grade_jobs([job("sync", failed=1, active=1)], [], [], NOW, JobsParams())
    assert retrying["level"] == "warning" and "retries" in retrying["summary"]
    old = grade_jobs([job("migrate", failed=2, condition=BACKOFF)], [], [], NOW,
                     JobsParams(within=10))
    assert old["level"] == "ok" and old["older_failures"] == 1


def test_a_job_that_failed_then_succeeded_is_healthy() -> None:
    done = job("seed", failed=1, condition=("Complete", "", ""))
    assert grade_jobs([done], [], [], NOW, JobsParams())["level"] == "ok"


# kubernetes.service_endpoints

TEMPLATE = {"metadata": {"labels": {"app": "api"}},
            "spec": {"containers": [{"name": "api", "ports": [{"containerPort": 8080,
                                                                "name": "http"}]}]}}


def service(name: str, selector: dict[str, str], target_port: Any = 8080) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"type": "ClusterIP", "selector": selector,
            "ports": [{"port": 80, "targetPort": target_port, "protocol": "TCP"}]}}


def endpoints(name: str, ready: list[str], not_ready: list[str]) -> dict[str, Any]:
    subset = {"ports": [{"port": 8080, "protocol": "TCP"}]}
    if ready:
        subset["addresses"] = [{"ip": f"172.17.0.{i + 5}", "targetRef": {
            "kind": "Pod", "name": n}} for i, n in enumerate(ready)]
    if not_ready:
        subset["notReadyAddresses"] = [{"ip": f"172.17.0.{i + 9}", "targetRef": {
            "kind": "Pod", "name": n}} for i, n in enumerate(not_ready)]
    return {"metadata": {"name": name}, "subsets": [subset] if ready or not_ready else None}


def test_service_whose_selector_matches_no_pod_says_which_labels_differ() -> None:
    found = grade_endpoints("deployment/api", TEMPLATE, [OLD_POD],
                            [service("api", {"app": "api", "tier": "web"})],
                            [endpoints("api", [], [])], "api")
    assert found["level"] == "critical" and found["without_endpoints"] == ["api"]
    assert "app=api,tier=web matches no pod" in found["summary"]


def test_service_with_only_unready_pods_names_their_reasons() -> None:
    found = grade_endpoints("deployment/api", TEMPLATE, [NEW_POD],
                            [service("api", {"app": "api"})],
                            [endpoints("api", [], [NEW_POD["metadata"]["name"]])], "api")
    assert found["level"] == "critical"
    assert "no pod of deployment/api is ready" in found["summary"]
    assert "ErrImageNeverPull" in found["summary"]
    assert found["services"][0]["not_ready_pods"] == [NEW_POD["metadata"]["name"]]


def test_named_target_port_no_container_has() -> None:
    found = grade_endpoints("deployment/api", TEMPLATE, [OLD_POD],
                            [service("api", {"app": "api"}, "web")],
                            [endpoints("api", [], [])], "api")
    assert "targetPort web names no port" in found["summary"]


def test_healthy_service_and_unrelated_ones() -> None:
    found = grade_endpoints("deployment/api", TEMPLATE, [OLD_POD],
                            [service("api", {"app": "api"}), service("db", {"app": "pg"})],
                            [endpoints("api", ["api-1"], [])], "api")
    assert found["ok"] and [s["service"] for s in found["services"]] == ["api"]
    nothing = grade_endpoints("deployment/api", TEMPLATE, [OLD_POD],
                              [service("db", {"app": "pg"})], [], "api")
    assert nothing["ok"] and nothing["summary"] == "no Service selects deployment/api"


# kubernetes.warning_events


def test_warnings_by_reason_most_frequent_first_with_the_last_message() -> None:
    folded = [
        {"type": "Warning", "reason": "Failed", "kind": "Pod", "count": 4,
         "message": 'Container image "x" is not present with pull policy of Never',
         "objects": ["api-1"], "first_seen": ago(100), "last_seen": ago(10)},
        {"type": "Warning", "reason": "BackOff", "kind": "Pod", "count": 7,
         "message": "Back-off restarting failed container", "objects": ["api-2"],
         "first_seen": ago(100), "last_seen": ago(20)},
        {"type": "Warning", "reason": "BackOff", "kind": "Pod", "count": 5,
         "message": "Back-off restarting failed container again", "objects": ["api-3"],
         "first_seen": ago(100), "last_seen": ago(5)},
        {"type": "Normal", "reason": "Pulled", "kind": "Pod", "count": 30, "message": "ok",
         "objects": ["api-1"], "first_seen": ago(100), "last_seen": ago(5)},
        {"type": "Warning", "reason": "Unhealthy", "kind": "Pod", "count": 50,
         "message": "Readiness probe failed", "objects": ["api-4"],
         "first_seen": ago(9000), "last_seen": ago(8000)},
    ]
    found = summarise_warnings("deployment/api", folded, NOW, EventParams())
    assert found["reasons"] == ["BackOff", "Failed"]
    assert found["warnings"][0]["count"] == 12
    assert found["warnings"][0]["last_message"] == "Back-off restarting failed container again"
    assert found["warnings"][0]["objects"] == ["api-2", "api-3"]
    assert found["level"] == "critical" and found["total"] == 16
    assert found["summary"].startswith("deployment/api has warning events: BackOff x12")
    assert summarise_warnings("deployment/api", folded[:1], NOW,
                              EventParams())["level"] == "warning"
    assert summarise_warnings("deployment/api", folded[3:], NOW, EventParams())["ok"]


@pytest.mark.parametrize("kind", ["rollout", "hpa", "jobs", "service_endpoints",
                                  "warning_events"])
def test_kinds_are_read_only_service_kinds_and_refuse_docker_services(kind: str) -> None:
    from diagnostics.kubechecks import workloads
    from diagnostics.service import DockerService
    from runner.errors import PermanentError

    registry = Registry()
    workloads.register(registry)
    step = registry.kind(f"kubernetes.{kind}")
    assert (step.target_kind, step.mutating) == ("service", False)

    class View:
        target = "api"
        settings = DockerService(runtime="docker", container="api")

    with pytest.raises(PermanentError, match="runtime: kubernetes; this one runs on docker"):
        step.func(View(), step.params())


def test_statefulset_rollout_stuck_on_its_update_revision() -> None:
    uid = "sts-uid"
    sts = {"kind": "StatefulSet", "metadata": {"name": "web", "uid": uid, "generation": 2},
           "spec": {"replicas": 2, "template": {"spec": {"containers": [
               {"name": "api", "image": BAD}]}}},
           "status": {"observedGeneration": 2, "replicas": 2, "readyReplicas": 1,
                      "currentReplicas": 1, "updatedReplicas": 1,
                      "currentRevision": "web-5c8f9d7b6", "updateRevision": "web-7d9c6b5f4d"}}

    def revision(number: int, name: str, image: str) -> dict[str, Any]:
        return {"kind": "ControllerRevision", "revision": number,
                "metadata": {"name": name, "ownerReferences": [
                    {"kind": "StatefulSet", "name": "web", "uid": uid}]},
                "data": {"spec": {"template": {"spec": {"containers": [
                    {"name": "api", "image": image}]}}}}}

    def member(name: str, hash_: str, image: str, **kw: Any) -> dict[str, Any]:
        found = pod(name, hash_, image, **kw)
        found["metadata"]["labels"] = {"app": "web", "controller-revision-hash": hash_}
        return found

    revisions = revision_table("statefulset", sts, [revision(1, "web-5c8f9d7b6", GOOD),
                                                    revision(2, "web-7d9c6b5f4d", BAD)], "api")
    pods = [member("web-0", "web-5c8f9d7b6", GOOD),
            member("web-1", "web-7d9c6b5f4d", BAD, ready=False, waiting=NEVER_PULL)]
    found = grade_rollout("statefulset", sts, revisions, pods, "api", NOW, RolloutParams())
    assert (found["level"], found["stuck"], found["revision"]) == ("critical", True, 2)
    assert [p["pod"] for p in found["new_pods"]] == ["web-1"]
    assert (found["last_available_revision"], found["last_available_image"]) == (1, GOOD)
    assert "statefulset/web" in found["summary"]


def test_the_raw_reads_go_through_the_read_only_client(tmp_path: Any) -> None:
    """kubeapi's GETs of version-dependent groups use the reader's guarded client: a path
    that acts (exec) is refused before connecting; a read reaches the socket (nothing
    listens there) and fails as the API being unreachable."""
    import socket

    from diagnostics.kubechecks import kubeapi
    from diagnostics.kubernetes import KubernetesReader
    from diagnostics.service import KubernetesService
    from runner.errors import TemporaryError

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""
apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:{port}"}}}}]
users: [{{name: u, user: {{token: not-a-secret}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""")
    reader = KubernetesReader(KubernetesService(runtime="kubernetes", namespace="web",
                                                deployment="web", kubeconfig=str(kubeconfig)),
                              2.0)
    try:
        with pytest.raises(Exception, match="Kubernetes handle is read-only"):
            kubeapi.get(reader.api, "/api/v1/namespaces/web/pods/p/exec", "pods")
        with pytest.raises(TemporaryError, match="unreachable"):
            kubeapi.list_preferred(reader.api, "batch", ("v1",), "jobs")
    finally:
        reader.close()
