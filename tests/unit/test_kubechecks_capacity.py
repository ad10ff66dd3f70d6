"""The grading of kubernetes.oom_killed, kubernetes.quota and kubernetes.pdb over API JSON
shaped as the lab's Kubernetes 1.20 returns it (container statuses, ResourceQuota status,
policy/v1beta1 budgets, the replicaset-controller's FailedCreate messages, copied from the
lab cluster's answers): thresholds, parsing and the summaries that name the cause."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from diagnostics.kubechecks import capacity
from diagnostics.kubechecks.capacity import (
    OomParams,
    PdbParams,
    QuotaParams,
    grade_oom,
    grade_pdbs,
    grade_quota,
    parse_quota_refusal,
    selects,
)
from diagnostics.kubechecks.podstate import Workload
from runner.errors import PermanentError
from runner.registry import Registry

NOW = datetime(2026, 12, 2, 12, 15, 0, tzinfo=UTC)
LABEL = "deployment/oom"


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def oom_term(seconds_ago: float) -> dict[str, Any]:
    return {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                           "startedAt": ago(seconds_ago), "finishedAt": ago(seconds_ago),
                           "containerID": "docker://a9fba2ed44b08d33190425e8a1bb0730111440f4"}}


def pod(name: str, state: dict[str, Any], last: dict[str, Any] | None, restarts: int, *,
        limits: dict[str, str] | None = None,
        requests: dict[str, str] | None = None) -> dict[str, Any]:
    resources = {**({"limits": limits} if limits else {}),
                 **({"requests": requests} if requests else {})}
    return {"metadata": {"name": name, "labels": {"app": "oom", "pod-template-hash": "7d9f"}},
            "spec": {"containers": [{"name": "app", "image": "runbook-lab/api-base:6f05efcc7bc3",
                                     "resources": resources}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "app", "state": state, "lastState": last or {}, "ready": False,
                "restartCount": restarts, "image": "runbook-lab/api-base:6f05efcc7bc3",
                "started": False}]}}


def workload(*pods: dict[str, Any]) -> Workload:
    return Workload(LABEL, list(pods), [], NOW)


LIMITED = {"limits": {"memory": "48Mi"}, "requests": {"memory": "32Mi"}}


def test_a_container_oom_killed_between_restarts_is_critical_and_names_its_limit() -> None:
    # As the lab shows it between two restarts: current and last state both OOMKilled.
    found = grade_oom(workload(pod("oom-7d9f-x2x9z", oom_term(120), oom_term(134), 2,
                                   **LIMITED)), OomParams())
    assert (found["level"], found["cause"], found["memory_limit"]) == ("critical", "limit",
                                                                      "48Mi")
    [killed] = found["oom_killed"]
    assert (killed["oom_kills"], killed["restarts"], killed["down"], killed["exit_code"],
            killed["memory_request"], killed["memory_limit_bytes"]) == (
        2, 2, True, 137, "32Mi", 48 * 1024 * 1024)
    assert found["summary"] == (
        "deployment/oom: container app of oom-7d9f-x2x9z OOMKilled in 2 of its last 2 exit(s), "
        "last 2 min ago (exit code 137), 2 restart(s), down now (terminated), at its 48Mi "
        "limit, request 32Mi: raise the limit or find what allocates (a leak, a cache, a batch "
        "too big); a restart will not help")


def test_crash_loop_back_off_after_an_oom_kill_is_down() -> None:
    waiting = {"waiting": {"reason": "CrashLoopBackOff",
                           "message": "back-off 40s restarting failed container=app"}}
    found = grade_oom(workload(pod("oom-a", waiting, oom_term(30), 1, **LIMITED)), OomParams())
    assert found["level"] == "critical" and found["oom_killed"][0]["state"] == "CrashLoopBackOff"


def test_running_again_after_one_oom_kill_is_a_warning_until_it_repeats() -> None:
    running = {"running": {"startedAt": ago(60)}}
    once = grade_oom(workload(pod("oom-a", running, oom_term(70), 1, **LIMITED)), OomParams())
    assert once["level"] == "warning" and "running again" in once["summary"]
    often = grade_oom(workload(pod("oom-a", running, oom_term(70), 3, **LIMITED)), OomParams())
    assert often["level"] == "critical"


def test_an_oom_kill_older_than_the_window_is_reported_but_not_graded() -> None:
    running = {"running": {"startedAt": ago(7000)}}
    found = grade_oom(workload(pod("oom-a", running, oom_term(7200), 5, **LIMITED)),
                      OomParams(window=3600))
    assert (found["ok"], found["oom_kills"], found["containers"]) == (True, 0, [])
    assert found["summary"] == "deployment/oom: no container was OOM-killed recently (1 older " \
                               "than 3600 s)"
    assert len(found["oom_killed"]) == 1


def test_without_a_limit_the_node_ran_out_of_memory() -> None:
    found = grade_oom(workload(pod("oom-a", oom_term(10), None, 0)), OomParams())
    assert (found["cause"], found["memory_limit"]) == ("node_memory", None)
    assert "OOMKilled in 1 of its last 1 exit(s), last 10 s ago" in found["summary"]
    assert "with no memory limit: the node ran out of memory" in found["summary"]


def test_other_exits_are_not_oom_kills() -> None:
    crashed = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(5)}}
    found = grade_oom(workload(pod("a", crashed, crashed, 4, **LIMITED)), OomParams())
    assert (found["level"], found["oom_killed"]) == ("ok", [])


def test_several_pods_are_counted() -> None:
    found = grade_oom(workload(pod("a", oom_term(10), None, 0, **LIMITED),
                               pod("b", oom_term(300), oom_term(400), 1, **LIMITED)),
                      OomParams())
    assert found["oom_kills"] == 3 and "2 pod(s) OOM-killed in all" in found["summary"]
    assert [k["pod"] for k in found["oom_killed"]] == ["a", "b"]  # latest first


# kubernetes.quota

REFUSED = ('Error creating: pods "crowded-56755f664d-9hpxw" is forbidden: exceeded quota: '
           'pods-one, requested: pods=1, used: pods=1, limited: pods=1')
COMBINED = ('(combined from similar events): Error creating: pods "crowded-56755f664d-fp449" '
            'is forbidden: exceeded quota: compute, requested: limits.memory=1Gi,'
            'requests.memory=512Mi, used: limits.memory=3584Mi,requests.memory=1792Mi, '
            'limited: limits.memory=4Gi,requests.memory=2Gi')
MUST = ('Error creating: pods "api-5d8f-abcde" is forbidden: failed quota: compute: must '
        'specify limits.cpu,limits.memory')


def resource_quota(name: str, hard: dict[str, str], used: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "rb-k8s-5c9ade"},
            "spec": {"hard": hard}, "status": {"hard": hard, "used": used}}


def refusal(message: str, count: int = 1, seconds_ago: float = 30) -> dict[str, Any]:
    return {"object": "crowded-56755f664d", "message": message, "count": count,
            "last_seen": (NOW - timedelta(seconds=seconds_ago)).isoformat()}


def test_refusal_messages_are_parsed() -> None:
    assert parse_quota_refusal(REFUSED) == {
        "quota": "pods-one", "cause": "exceeded", "resources": ["pods"],
        "requested": {"pods": "1"}, "used": {"pods": "1"}, "limited": {"pods": "1"}}
    combined = parse_quota_refusal(COMBINED)
    assert combined is not None and combined["resources"] == ["limits.memory",
                                                              "requests.memory"]
    assert combined["limited"] == {"limits.memory": "4Gi", "requests.memory": "2Gi"}
    assert parse_quota_refusal(MUST) == {
        "quota": "compute", "cause": "must_specify",
        "resources": ["limits.cpu", "limits.memory"], "requested": {}, "used": {},
        "limited": {}}
    assert parse_quota_refusal('pods "x" is forbidden: error looking up service account') \
        is None


def test_a_refused_pod_is_critical_and_names_quota_and_resource() -> None:
    found = grade_quota("deployment/crowded", [resource_quota("pods-one", {"pods": "1"},
                                                              {"pods": "1"})],
                        [refusal(REFUSED), refusal(REFUSED.replace("9hpxw", "87j4s"), 2)],
                        NOW, QuotaParams())
    assert (found["level"], found["resources"], found["at_limit"]) == (
        "critical", ["pods"], ["pods-one/pods"])
    [exceeded] = found["exceeded"]
    assert (exceeded["count"], exceeded["objects"]) == (3, ["crowded-56755f664d"])
    assert found["summary"] == (
        "deployment/crowded cannot create pods: quota pods-one is exceeded for pods (requested "
        "pods=1, used pods=1, limited pods=1), 3 refusal(s) of crowded-56755f664d; "
        "ResourceQuota pods-one: pods 1/1 (100%): raise the quota's hard limit, scale "
        "something else down, or ask for less")


def test_a_quota_that_needs_limits_the_pods_do_not_set() -> None:
    found = grade_quota("deployment/api", [], [refusal(MUST)], NOW, QuotaParams())
    assert found["level"] == "critical"
    assert "quota compute requires every pod to set limits.cpu, limits.memory" in \
        found["summary"]


@pytest.mark.parametrize(("used", "level"), [("8", "ok"), ("9", "warning"), ("10", "critical"),
                                             ("11", "critical")])
def test_usage_thresholds(used: str, level: str) -> None:
    found = grade_quota("deployment/api", [resource_quota("counts", {"pods": "10"},
                                                          {"pods": used})], [], NOW,
                        QuotaParams())
    assert found["level"] == level


def test_quantities_compare_across_units() -> None:
    quota = resource_quota("compute", {"requests.memory": "2Gi", "requests.cpu": "2",
                                       "limits.memory": "4Gi"},
                           {"requests.memory": "1900Mi", "requests.cpu": "500m",
                            "limits.memory": "3Gi"})
    found = grade_quota("deployment/api", [quota], [], NOW, QuotaParams())
    rows = {r["resource"]: (r["percent"], r["level"]) for r in found["quotas"][0]["resources"]}
    assert rows == {"requests.memory": (92.8, "warning"), "requests.cpu": (25.0, "ok"),
                    "limits.memory": (75.0, "ok")}
    assert found["summary"] == (
        "deployment/api's namespace is near its quota: ResourceQuota compute: requests.memory "
        "1900Mi/2Gi (92.8%): new pods or objects will be refused at the limit")


def test_a_zero_hard_limit_with_nothing_used_is_a_ban_not_a_full_quota() -> None:
    quota = resource_quota("no-lb", {"services.loadbalancers": "0"},
                           {"services.loadbalancers": "0"})
    found = grade_quota("deployment/api", [quota], [], NOW, QuotaParams())
    assert (found["level"], found["quotas"][0]["resources"][0]["percent"]) == ("ok", None)


def test_old_refusals_and_other_failures_are_ignored() -> None:
    found = grade_quota("deployment/api", [], [refusal(REFUSED, seconds_ago=7200),
                                               refusal("Error creating: pods is forbidden: "
                                                       "unable to validate")], NOW,
                        QuotaParams())
    assert (found["level"], found["exceeded"]) == ("ok", [])
    assert found["summary"] == "deployment/api: no ResourceQuota in its namespace, no pod refused"


def test_a_replica_failure_condition_counts_however_old() -> None:
    # The ReplicaSet's condition, as the lab shows it: True while creation keeps failing.
    condition = {**refusal(REFUSED[len("Error creating: "):], seconds_ago=7200), "current": True}
    found = grade_quota("deployment/crowded", [], [condition], NOW, QuotaParams())
    assert (found["level"], found["resources"]) == ("critical", ["pods"])


# kubernetes.pdb


def budget(name: str, spec: dict[str, Any], status: dict[str, Any], *,
           version: str = "policy/v1beta1") -> dict[str, Any]:
    return {"apiVersion": version,
            "metadata": {"name": name, "namespace": "rb-k8s-73c01d", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "guarded"}}, **spec},
            "status": {"observedGeneration": 1, **status}}


GUARDED = [{"app": "guarded", "pod-template-hash": "6d4cf56db6"}] * 2


def test_a_budget_as_large_as_the_replicas_blocks_a_drain() -> None:
    found = grade_pdbs("deployment/guarded", [budget("guarded", {"minAvailable": 2}, {
        "disruptionsAllowed": 0, "currentHealthy": 2, "desiredHealthy": 2,
        "expectedPods": 2})], GUARDED, PdbParams())
    assert (found["level"], found["blocking"], found["violated"]) == ("warning", ["guarded"],
                                                                     [])
    assert found["summary"] == (
        "PDB guarded (minAvailable 2) allows 0 disruptions with 2 of 2 pod(s) healthy: a node "
        "drain or eviction of deployment/guarded's pods blocks; lower minAvailable below 2 or "
        "add a replica")


def test_max_unavailable_zero_blocks_too_and_the_level_is_a_parameter() -> None:
    found = grade_pdbs("deployment/guarded", [budget("guarded", {"maxUnavailable": 0}, {
        "disruptionsAllowed": 0, "currentHealthy": 2, "desiredHealthy": 2,
        "expectedPods": 2})], GUARDED, PdbParams(blocking_level="critical"))
    assert found["level"] == "critical" and found["blocking"] == ["guarded"]
    assert "use maxUnavailable 1 or more" in found["summary"]


def test_a_violated_budget_is_critical() -> None:
    found = grade_pdbs("deployment/guarded", [budget("guarded", {"minAvailable": 2}, {
        "disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 2,
        "expectedPods": 2})], GUARDED, PdbParams())
    assert (found["level"], found["violated"], found["blocking"]) == ("critical", ["guarded"],
                                                                     [])
    assert found["summary"].startswith("PDB guarded (minAvailable 2) is violated: 1 healthy "
                                       "pod(s) of the 2 it requires (2 expected)")


def test_a_budget_with_room_or_with_no_pod_yet_is_fine() -> None:
    room = grade_pdbs("deployment/guarded", [budget("guarded", {"maxUnavailable": 1}, {
        "disruptionsAllowed": 1, "currentHealthy": 2, "desiredHealthy": 1,
        "expectedPods": 2})], GUARDED, PdbParams())
    assert (room["level"], room["pdbs"][0]["disruptions_allowed"]) == ("ok", 1)
    # As the lab's controller first reports a budget whose pods do not exist yet.
    empty = grade_pdbs("deployment/guarded", [budget("guarded", {"minAvailable": 2}, {
        "disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 2,
        "expectedPods": 0})], GUARDED, PdbParams())
    assert empty["level"] == "ok" and "selects no pod now" in empty["summary"]
    unseen = budget("guarded", {"minAvailable": 2}, {})
    unseen["metadata"]["generation"] = 2
    assert grade_pdbs("deployment/guarded", [unseen], GUARDED, PdbParams())["level"] == "ok"


def test_budgets_of_other_pods_are_not_the_workloads() -> None:
    other = budget("web", {"minAvailable": 1}, {"disruptionsAllowed": 0, "currentHealthy": 0,
                                               "desiredHealthy": 1, "expectedPods": 1})
    other["spec"]["selector"] = {"matchLabels": {"app": "web"}}
    found = grade_pdbs("deployment/guarded", [other], GUARDED, PdbParams())
    assert (found["level"], found["pdbs"]) == ("ok", [])
    assert found["summary"] == "no PodDisruptionBudget selects deployment/guarded's pods"


def test_two_budgets_on_one_pod_block_evictions() -> None:
    fine = {"disruptionsAllowed": 1, "currentHealthy": 2, "desiredHealthy": 1,
            "expectedPods": 2}
    found = grade_pdbs("deployment/guarded", [budget("a", {"minAvailable": 1}, fine),
                                              budget("b", {"maxUnavailable": 1}, fine)],
                       GUARDED, PdbParams())
    assert found["level"] == "warning"
    assert "2 PDBs select deployment/guarded's pods (a, b)" in found["summary"]


def test_label_selectors() -> None:
    labels = {"app": "api", "tier": "web"}
    assert selects({"matchLabels": {"app": "api"}}, labels, empty_matches_all=False)
    assert not selects({"matchLabels": {"app": "db"}}, labels, empty_matches_all=False)
    assert selects({"matchExpressions": [{"key": "tier", "operator": "In",
                                          "values": ["web", "edge"]},
                                         {"key": "canary", "operator": "DoesNotExist"}]},
                   labels, empty_matches_all=False)
    assert not selects({"matchExpressions": [{"key": "tier", "operator": "NotIn",
                                              "values": ["web"]}]}, labels,
                       empty_matches_all=False)
    assert not selects({"matchExpressions": [{"key": "tier", "operator": "Exists"},
                                             {"key": "zone", "operator": "Exists"}]},
                       labels, empty_matches_all=False)
    # An empty selector: every pod in policy/v1, none in policy/v1beta1; none when missing.
    assert selects({}, labels, empty_matches_all=True)
    assert not selects({}, labels, empty_matches_all=False)
    assert not selects(None, labels, empty_matches_all=True)


def test_an_empty_selector_selects_by_api_version() -> None:
    status = {"disruptionsAllowed": 0, "currentHealthy": 2, "desiredHealthy": 2,
              "expectedPods": 2}
    v1 = budget("all", {"minAvailable": 2}, status, version="policy/v1")
    v1beta1 = budget("none", {"minAvailable": 2}, status)
    v1["spec"]["selector"] = v1beta1["spec"]["selector"] = {}
    found = grade_pdbs("deployment/guarded", [v1, v1beta1], GUARDED, PdbParams())
    assert [p["name"] for p in found["pdbs"]] == ["all"]


# Registration


@pytest.mark.parametrize("kind", ["oom_killed", "quota", "pdb"])
def test_each_kind_is_registered_read_only_and_refuses_other_runtimes(kind: str) -> None:
    from diagnostics.service import DockerService

    registry = Registry()
    capacity.register(registry)
    step = registry.kind(f"kubernetes.{kind}")
    assert (step.target_kind, step.mutating) == ("service", False)
    assert {"ok", "level", "summary"} <= set(step.result)

    class View:
        target = "api"
        settings = DockerService(runtime="docker", container="api")

    with pytest.raises(PermanentError, match="need a service with runtime: kubernetes"):
        step.func(View(), step.params())
