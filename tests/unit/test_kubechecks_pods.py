"""The kubernetes.* pod and node checks' reading of what the API says, without a cluster: pods,
folded events and nodes shaped as Kubernetes 1.20 (the lab's) and later versions write them,
graded; the scheduler's messages parsed; the last error before a container's exit found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from diagnostics.kubechecks import cluster, crashes, pods, probes, scheduling
from diagnostics.kubechecks.podstate import Workload
from runner.registry import default_registry

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)
LABEL = "deployment/api"


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name: str, *, phase: str = "Running", ready: bool = True,
        containers: list[dict[str, Any]] | None = None, spec: dict[str, Any] | None = None,
        conditions: list[dict[str, Any]] | None = None, age: float = 600,
        **status: Any) -> dict[str, Any]:
    """A pod as GET /api/v1/namespaces/NS/pods returns it (the fields the checks read)."""
    default_conditions = [
        {"type": "Initialized", "status": "True", "lastTransitionTime": ago(age)},
        {"type": "Ready", "status": "True" if ready else "False",
         "lastTransitionTime": ago(age)},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": ago(age)}]
    return {
        "metadata": {"name": name, "namespace": "shop", "creationTimestamp": ago(age),
                     "labels": {"app": "api", "pod-template-hash": "5d8f7"}},
        "spec": {"nodeName": "127.0.0.1", "restartPolicy": "Always",
                 "containers": [{"name": "api", "image": "shop/api:1.4"}], **(spec or {})},
        "status": {"phase": phase,
                   "conditions": default_conditions if conditions is None else conditions,
                   "containerStatuses": containers if containers is not None else [
                       running("api", ready=ready)], **status},
    }


def running(name: str = "api", *, ready: bool = True, restarts: int = 0,
            last: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "ready": ready, "restartCount": restarts, "image": "shop/api:1.4",
            "imageID": "docker-pullable://shop/api@sha256:ab12", "containerID": "docker://c1",
            "state": {"running": {"startedAt": ago(30)}},
            "lastState": {"terminated": last} if last else {}}


def waiting_cs(reason: str, message: str | None, *, image: str = "shop/api:1.4",
               restarts: int = 0, last: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": "api", "ready": False, "restartCount": restarts, "image": image,
            "imageID": "", "state": {"waiting": {"reason": reason,
                                                 **({"message": message} if message else {})}},
            "lastState": {"terminated": last} if last else {}}


def terminated(code: int, reason: str = "Error", finished: float = 5) -> dict[str, Any]:
    return {"exitCode": code, "reason": reason, "startedAt": ago(finished + 1),
            "finishedAt": ago(finished), "containerID": "docker://c0"}


def event(reason: str, message: str, objects: list[str], *, count: int = 1,
          kind: str = "Pod", kind_of: str = "Warning", seen: float = 10) -> dict[str, Any]:
    """An event as KubernetesReader.events folds it."""
    return {"type": kind_of, "reason": reason, "kind": kind, "message": message,
            "count": count, "objects": objects, "first_seen": ago(seen + 60),
            "last_seen": ago(seen)}


def workload(pods_: list[dict[str, Any]], events: list[dict[str, Any]] | None = None
             ) -> Workload:
    return Workload(LABEL, pods_, events or [], NOW)


def test_every_kind_is_a_read_only_check_of_a_service() -> None:
    registry = default_registry()
    names = [f"kubernetes.{n}" for n in ("image_pull", "crash_loop", "pending",
                                         "config_error", "probe_failures", "evictions",
                                         "node_pressure", "nodes_not_ready")]
    for name in names:
        kind = registry.kind(name)
        assert (kind.target_kind, kind.mutating) == ("service", False), name
        assert {"ok", "level", "summary"} <= set(kind.result), name


# kubernetes.image_pull


def test_an_image_that_is_not_on_the_node_is_named_with_the_kubelets_message() -> None:
    never = ('Container image "shop/api:1.5-typo" is not present with pull policy of Never')
    bad = pod("api-new-x1", phase="Pending", ready=False,
              containers=[waiting_cs("ErrImageNeverPull", never, image="shop/api:1.5-typo")])
    old = pod("api-old-y2")
    found = pods.grade_image_pull(workload([old, bad], [
        event("ErrImageNeverPull", never, ["api-new-x1"], count=7),
        event("BackOff", "Back-off restarting failed container", ["api-old-y2"])]))
    assert (found["ok"], found["level"], found["cause"]) == (False, "critical", "not_on_node")
    assert found["images"] == ["shop/api:1.5-typo"]
    assert found["failing"][0]["event"] == never
    said = found["summary"]
    assert "1 pod(s) cannot start because the image is not on the node" in said
    assert "ErrImageNeverPull, image shop/api:1.5-typo" in said
    assert "1 other pod(s) still ready" in said and never in said


@pytest.mark.parametrize(("reason", "message", "cause"), [
    ("ImagePullBackOff", 'Failed to pull image "127.0.0.1:5999/shop/api:1": rpc error: code = '
     "Unknown desc = Error response from daemon: Get https://127.0.0.1:5999/v2/: dial tcp "
     "127.0.0.1:5999: connect: connection refused", "registry_unreachable"),
    ("ErrImagePull", 'Failed to pull image "shop/api:nope": rpc error: code = NotFound desc = '
     "failed to pull and unpack image: docker.io/shop/api:nope: not found", "not_found"),
    ("ErrImagePull", 'Failed to pull image "ghcr.io/acme/private:1": rpc error: code = Unknown '
     "desc = Error response from daemon: pull access denied for ghcr.io/acme/private, "
     "repository does not exist or may require 'docker login'", "not_found"),
    ("ErrImagePull", 'Failed to pull image "registry.acme/api:1": unexpected status: 401 '
     "Unauthorized", "auth"),
    ("ErrImagePull", "toomanyrequests: You have reached your pull rate limit", "rate_limited"),
    ("InvalidImageName", 'Failed to apply default image tag "shop/API:1": couldn\'t parse image '
     'reference "shop/API:1": invalid reference format: repository name must be lowercase',
     "invalid_name"),
    ("ErrImagePull", "something new", "pull_failed"),
])
def test_why_an_image_cannot_be_pulled(reason: str, message: str, cause: str) -> None:
    image = message.split('"')[1] if '"' in message else "shop/api:1"
    bad = pod("api-1", phase="Pending", ready=False,
              containers=[waiting_cs(reason, "Back-off pulling image" if reason ==
                                     "ImagePullBackOff" else message, image=image)])
    found = pods.grade_image_pull(workload([bad], [
        event("Failed", message, ["api-1"], count=3),
        event("BackOff", f'Back-off pulling image "{image}"', ["api-1"], seen=1)]))
    assert (found["level"], found["cause"]) == ("critical", cause)
    assert found["failing"][0]["event"] == message  # the failure, not the back-off note
    assert "still ready" not in found["summary"]


def test_running_pods_have_their_images() -> None:
    found = pods.grade_image_pull(workload([pod("api-1"), pod("api-2")]))
    assert (found["ok"], found["level"], found["failing"]) == (True, "ok", [])


# kubernetes.crash_loop

PARAMS = crashes.CrashLoopParams()


def test_a_crash_loop_is_found_with_its_previous_exit() -> None:
    looping = pod("api-1", ready=False, containers=[waiting_cs(
        "CrashLoopBackOff", "back-off 40s restarting failed container=api pod=api-1_shop(uid)",
        restarts=4, last=terminated(1))])
    [found] = crashes.crash_candidates(workload([looping, pod("api-2")]), PARAMS)
    assert found == {"pod": "api-1", "container": "api", "init": False,
                     "state": "CrashLoopBackOff", "level": "critical", "restarts": 4,
                     "back_off": "40s", "exit_code": 1, "reason": "Error",
                     "finished_at": (NOW - timedelta(seconds=5)).isoformat(), "previous": True}


def test_a_container_between_exit_and_back_off_is_looping_its_own_log_is_read() -> None:
    state = {**waiting_cs("x", None, restarts=2),
             "state": {"terminated": terminated(3, finished=1)}}
    [found] = crashes.crash_candidates(workload([pod("api-1", containers=[state])]), PARAMS)
    assert (found["level"], found["state"], found["exit_code"], found["previous"]) == (
        "critical", "terminated", 3, False)


def test_restarts_grade_by_count_and_recency() -> None:
    recent = pod("api-1", containers=[running(restarts=3, last=terminated(1, finished=60))])
    old = pod("api-2", containers=[running(restarts=9, last=terminated(1, finished=7200))])
    few = pod("api-3", containers=[running(restarts=1, last=terminated(1, finished=60))])
    found = crashes.crash_candidates(workload([recent, old, few]), PARAMS)
    assert [(c["pod"], c["level"]) for c in found] == [("api-1", "warning")]
    assert crashes.crash_candidates(workload([pod("api-4")]), PARAMS) == []


def test_a_job_pod_that_ran_to_completion_is_not_a_crash() -> None:
    done = pod("job-1", phase="Succeeded", ready=False, spec={"restartPolicy": "Never"},
               containers=[{**waiting_cs("x", None), "state": {"terminated": terminated(0)}}])
    failed = pod("job-2", phase="Failed", ready=False, spec={"restartPolicy": "Never"},
                 containers=[{**waiting_cs("x", None), "state": {"terminated": terminated(1)}}])
    assert crashes.crash_candidates(workload([done, failed]), PARAMS) == []


def stamp(seconds_ago: float, text: str) -> str:
    moment = NOW - timedelta(seconds=seconds_ago)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z " + text


def test_the_last_error_of_the_previous_run_includes_its_final_second() -> None:
    finished = ago(5)  # second-precise; the error below is 0.4 s into that second
    lines = [stamp(6.0, "starting journey-api v1.4.2"),
             stamp(5.6, "WARNING slow start"),
             stamp(4.6, 'psycopg.OperationalError: connection to server at "127.0.0.1", '
                        "port 5432 failed: Connection refused")]
    found = crashes.last_error(lines, finished)
    assert found["class"] == "db_connection"
    assert found["last_error"].startswith("psycopg.OperationalError")
    assert crashes.last_error([], finished)["last_error"] is None


def candidate(**fields: Any) -> dict[str, Any]:
    base = {"pod": "api-1", "container": "api", "init": False, "state": "CrashLoopBackOff",
            "level": "critical", "restarts": 3, "back_off": "20s", "exit_code": 1,
            "reason": "Error", "finished_at": ago(5), "previous": True, "last_error": None,
            "class": None, "classes": {}}
    return {**base, **fields}


def test_a_crash_loop_names_the_database_that_refuses_and_says_a_restart_will_not_help() -> None:
    error = ('psycopg.OperationalError: connection to server at "10.0.0.5", port 5432 failed: '
             "Connection refused")
    found = crashes.diagnose_crashes(LABEL, [
        candidate(last_error=error, **{"class": "db_connection"}),
        candidate(pod="api-2", restarts=4, last_error=error, **{"class": "db_connection"})])
    assert (found["level"], found["cause"], found["cause_target"]) == (
        "critical", "database", "10.0.0.5:5432")
    assert found["summary"] == (
        "deployment/api crash-loops because its database at 10.0.0.5:5432 refuses connections "
        "(2 pod(s), 7 restart(s), exit code 1, back-off 20s): check the database; a restart "
        "will not help")


def test_the_target_comes_from_an_earlier_error_when_the_last_names_none() -> None:
    lines = [stamp(3.0, "starting journey-api v1.4.2"),
             stamp(2.9, "ERROR cannot connect to the database at db.shop:5432: connection "
                        "failed: Connection refused"),
             stamp(2.8, "Traceback (most recent call last):"),
             stamp(2.8, '  File "app.py", line 4, in <module>'),
             stamp(2.8, "psycopg.OperationalError: connection failed: Connection refused")]
    found = crashes.last_error(lines, ago(2))
    assert found["last_error"] == ("psycopg.OperationalError: connection failed: Connection "
                                   "refused")
    assert found["earlier_errors"][0].startswith("ERROR cannot connect to the database at")
    graded = crashes.diagnose_crashes(LABEL, [candidate(**found)])
    assert (graded["cause"], graded["cause_target"]) == ("database", "db.shop:5432")
    assert "because its database at db.shop:5432 refuses connections" in graded["summary"]


def test_an_oom_kill_is_the_cause_and_it_is_critical() -> None:
    oom = pod("api-1", containers=[running(restarts=1, last=terminated(137, "OOMKilled", 30))])
    [found] = crashes.crash_candidates(workload([oom]), PARAMS)
    assert found["level"] == "critical"
    graded = crashes.diagnose_crashes(LABEL, [{**found, "last_error": None, "class": None}])
    assert (graded["cause"], graded["oom_killed"], graded["exit_codes"]) == ("oom", True, [137])
    assert "because it runs out of memory" in graded["summary"]
    assert "raise its memory limit" in graded["summary"]


@pytest.mark.parametrize(("code", "cause", "says"), [
    (127, "command", "its command is not found"),
    (0, "exits_cleanly", "exits with code 0"),
    (137, "killed", "SIGKILL"),
])
def test_an_exit_code_explains_a_crash_with_no_error_logged(code: int, cause: str,
                                                            says: str) -> None:
    found = crashes.diagnose_crashes(LABEL, [candidate(exit_code=code)])
    assert found["cause"] == cause and says in found["summary"]


def test_a_crash_with_an_unexplained_error_quotes_it_and_one_with_none_says_so() -> None:
    found = crashes.diagnose_crashes(LABEL, [candidate(exit_code=2, last_error="KeyError: 'x'",
                                                       **{"class": "exception"})])
    assert found["cause"] is None
    assert "the last error before it exited: KeyError: 'x'" in found["summary"]
    found = crashes.diagnose_crashes(LABEL, [candidate(exit_code=2)])
    assert "logs no error before it exits" in found["summary"]
    assert crashes.diagnose_crashes(LABEL, [])["level"] == "ok"


# kubernetes.pending


@pytest.mark.parametrize(("message", "expected"), [
    ("0/1 nodes are available: 1 Insufficient memory.",
     [(1, "Insufficient memory", "insufficient_memory")]),
    ("0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had taint "
     "{node-role.kubernetes.io/master: }, that the pod didn't tolerate.",
     [(2, "node(s) had taint {node-role.kubernetes.io/master: }, that the pod didn't "
          "tolerate", "taint"), (1, "Insufficient cpu", "insufficient_cpu")]),
    ("0/3 nodes are available: 3 node(s) had untolerated taint {dedicated: db}. preemption: "
     "0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
     [(3, "node(s) had untolerated taint {dedicated: db}", "taint")]),
    ("0/1 nodes are available: 1 node(s) didn't match node selector.",
     [(1, "node(s) didn't match node selector", "node_selector")]),
    ("0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.",
     [(2, "node(s) didn't match Pod's node affinity/selector", "node_selector")]),
    ("0/1 nodes are available: 1 pod has unbound immediate PersistentVolumeClaims.",
     [(1, "pod has unbound immediate PersistentVolumeClaims", "unbound_pvc")]),
    ('persistentvolumeclaim "data" not found',
     [(None, 'persistentvolumeclaim "data" not found', "missing_pvc")]),
    ("0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
     [(4, "Insufficient nvidia.com/gpu", "insufficient")]),
    ("0/2 nodes are available: 2 node(s) were unschedulable.",
     [(2, "node(s) were unschedulable", "unschedulable_node")]),
])
def test_the_schedulers_reasons_are_parsed(message: str,
                                           expected: list[tuple[Any, str, str]]) -> None:
    found = scheduling.parse_scheduler_message(message)
    assert [(r["nodes"], r["reason"], r["cause"]) for r in found] == expected


def unschedulable(name: str, message: str, **spec: Any) -> dict[str, Any]:
    return pod(name, phase="Pending", ready=False, containers=[], spec=spec, age=30,
               conditions=[{"type": "PodScheduled", "status": "False",
                            "reason": "Unschedulable", "message": message,
                            "lastTransitionTime": ago(30)}])


def test_a_pod_too_big_for_any_node_says_what_it_requests() -> None:
    big = unschedulable("api-1", "0/1 nodes are available: 1 Insufficient memory.",
                        containers=[{"name": "api", "image": "x", "resources": {
                            "requests": {"memory": "64Gi", "cpu": "250m"}}}])
    found = scheduling.grade_pending(workload([big, pod("api-0")]),
                                     scheduling.PendingParams())
    assert (found["level"], found["cause"]) == ("critical", "insufficient_memory")
    assert found["pending"][0]["requests"] == {"cpu": "0.25", "memory": "64Gi"}
    assert found["summary"] == (
        "deployment/api: 1 pod(s) pending because it requests 64Gi of memory and 1 node(s) "
        "have too little left (Insufficient memory); 1 other pod(s) still ready: no node has "
        "that much memory left to request: lower its memory request or add capacity")


def test_a_node_selector_and_an_unbound_claim_are_named() -> None:
    picky = unschedulable("api-1", "0/1 nodes are available: 1 node(s) didn't match node "
                          "selector.", nodeSelector={"disk": "ssd"})
    found = scheduling.grade_pending(workload([picky]), scheduling.PendingParams())
    assert found["cause"] == "node_selector"
    assert "its node selector (disk=ssd) matches no node" in found["summary"]
    claim = unschedulable("db-0", "0/1 nodes are available: 1 pod has unbound immediate "
                          "PersistentVolumeClaims.",
                          volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}])
    found = scheduling.grade_pending(workload([claim]), scheduling.PendingParams())
    assert found["cause"] == "unbound_pvc"
    assert "its PersistentVolumeClaim data is not bound to a volume" in found["summary"]


def test_a_failed_scheduling_event_stands_in_for_a_missing_condition() -> None:
    bare = pod("api-1", phase="Pending", ready=False, containers=[], conditions=[], age=5)
    found = scheduling.grade_pending(workload([bare], [event(
        "FailedScheduling", "0/1 nodes are available: 1 Insufficient cpu.", ["api-1"],
        count=4)]), scheduling.PendingParams())
    assert (found["cause"], found["pending"][0]["failed_scheduling"]) == ("insufficient_cpu", 4)


def test_a_scheduled_pod_that_does_not_start_is_a_warning_after_a_while() -> None:
    creating = {**waiting_cs("ContainerCreating", None)}
    young = pod("api-1", phase="Pending", ready=False, containers=[creating], age=30)
    old = pod("api-2", phase="Pending", ready=False, containers=[creating], age=600)
    mount = event("FailedMount", 'MountVolume.SetUp failed for volume "certs" : secret '
                  '"tls" not found', ["api-2"], count=9)
    found = scheduling.grade_pending(workload([young, old], [mount]),
                                     scheduling.PendingParams())
    assert [p["pod"] for p in found["pending"]] == ["api-2"]
    assert (found["level"], found["cause"]) == ("warning", "FailedMount")
    assert 'FailedMount: MountVolume.SetUp failed for volume "certs"' in found["summary"]


def test_pending_leaves_image_and_config_errors_to_their_checks() -> None:
    pulling = pod("api-1", phase="Pending", ready=False, age=900,
                  containers=[waiting_cs("ErrImageNeverPull", "not present")])
    config = pod("api-2", phase="Pending", ready=False, age=900,
                 containers=[waiting_cs("CreateContainerConfigError", 'secret "x" not found')])
    found = scheduling.grade_pending(workload([pulling, config, pod("api-3")]),
                                     scheduling.PendingParams())
    assert (found["level"], found["waiting_elsewhere"]) == ("ok", 2)
    assert "kubernetes.image_pull" in found["summary"]


# kubernetes.config_error


@pytest.mark.parametrize(("message", "cause", "kind", "name", "key"), [
    ('secret "db-creds" not found', "missing_secret", "Secret", "db-creds", None),
    ('configmap "app-config" not found', "missing_configmap", "ConfigMap", "app-config", None),
    ("couldn't find key password in Secret shop/db-creds", "missing_key", "Secret", "db-creds",
     "password"),
    ("couldn't find key LOG_LEVEL in ConfigMap shop/app-config", "missing_key", "ConfigMap",
     "app-config", "LOG_LEVEL"),
    ("container has runAsNonRoot and image will run as root (pod: \"api-1_shop(u)\", "
     "container: api)", "security_context", None, None, None),
])
def test_config_errors_name_what_is_missing(message: str, cause: str, kind: str | None,
                                            name: str | None, key: str | None) -> None:
    found = pods.parse_config_error(message)
    assert (found["cause"], found["kind"], found["name"], found["key"]) == (cause, kind, name,
                                                                              key)


def test_a_missing_secret_key_is_critical_and_says_the_pod_starts_once_it_exists() -> None:
    bad = pod("api-1", phase="Pending", ready=False, containers=[waiting_cs(
        "CreateContainerConfigError", "couldn't find key password in Secret shop/db-creds")])
    found = pods.grade_config_error(workload([bad]))
    assert (found["level"], found["cause"], found["missing"]) == (
        "critical", "missing_key", ["Secret/db-creds key password"])
    assert found["summary"].startswith("deployment/api: 1 pod(s) cannot create container api "
                                       "because its Secret db-creds has no key password")
    assert pods.grade_config_error(workload([pod("api-2")]))["level"] == "ok"


# kubernetes.probe_failures

READINESS = ('Readiness probe failed: Get "http://172.17.0.9:9999/health": dial tcp '
             "172.17.0.9:9999: connect: connection refused")


def test_a_failing_readiness_probe_with_pods_not_ready_is_critical() -> None:
    found = probes.grade_probes(workload([pod("api-1", ready=False)], [
        event("Unhealthy", READINESS, ["api-1"], count=12)]), probes.ProbeParams())
    assert (found["level"], found["cause"], found["not_ready"]) == ("critical", "refused",
                                                                   ["api-1"])
    [readiness] = found["probes"]
    assert (readiness["probe"], readiness["failures"], readiness["last_message"]) == (
        "readiness", 12, READINESS)
    assert ("its readiness probe fails because nothing listens on the probed port 9999 "
            "(12 failure(s) in the last 600 s, 1 of 1 pod(s) not ready)") in found["summary"]


def test_a_liveness_probe_that_got_containers_killed_is_critical() -> None:
    found = probes.grade_probes(workload([pod("api-1")], [
        event("Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 500",
              ["api-1"], count=6),
        event("Killing", "Container api failed liveness probe, will be restarted", ["api-1"],
              kind_of="Normal", count=2)]), probes.ProbeParams())
    [liveness] = found["probes"]
    assert (found["level"], liveness["kills"], found["cause"]) == ("critical", 2, "http_status")
    assert "the probed endpoint answers HTTP 500" in found["summary"]


@pytest.mark.parametrize(("events", "level"), [
    ([event("Unhealthy", READINESS, ["api-1"], count=2)], "ok"),  # under the threshold
    ([event("Unhealthy", READINESS, ["api-1"], count=50, seen=3600)], "ok"),  # too old
    ([event("Unhealthy", "Readiness probe failed: Get \"http://10.1.0.4:8080/\": context "
            "deadline exceeded (Client.Timeout exceeded while awaiting headers)", ["api-1"],
            count=5)], "warning"),  # failing, but every pod is ready now
    ([], "ok"),
])
def test_probe_failures_grade_by_count_recency_and_readiness(events: list[dict[str, Any]],
                                                             level: str) -> None:
    assert probes.grade_probes(workload([pod("api-1")], events),
                               probes.ProbeParams())["level"] == level


# kubernetes.evictions


def evicted(name: str, message: str) -> dict[str, Any]:
    return pod(name, phase="Failed", ready=False, containers=[], reason="Evicted",
               message=message, startTime=ago(900))


def test_evictions_name_why_and_grade_by_count() -> None:
    storage = ("Pod ephemeral local storage usage exceeds the total limit of containers 1Mi. ")
    found = pods.grade_evictions(workload([evicted("api-1", storage), pod("api-2")]),
                                 pods.EvictionParams())
    assert (found["level"], found["cause"]) == ("warning", "local_storage_limit")
    assert "1 pod(s) evicted because it wrote more local disk than its limit allows" in \
        found["summary"]
    memory = ("The node was low on resource: memory. Container api was using 1520Mi, which "
              "exceeds its request of 0. ")
    found = pods.grade_evictions(workload([evicted(f"api-{i}", memory) for i in range(3)]),
                                 pods.EvictionParams())
    assert (found["level"], found["cause"]) == ("critical", "node_pressure")
    assert "its node ran short of memory" in found["summary"]
    assert pods.grade_evictions(workload([pod("api-1")]), pods.EvictionParams())["ok"] is True


# kubernetes.node_pressure and kubernetes.nodes_not_ready


def node(name: str = "127.0.0.1", *, unschedulable: bool = False,
         **statuses: str | tuple[str, str, str]) -> dict[str, Any]:
    """A node as GET /api/v1/nodes/NAME returns it (1.20, kubelet conditions)."""
    healthy = {"MemoryPressure": ("False", "KubeletHasSufficientMemory",
                                  "kubelet has sufficient memory available"),
               "DiskPressure": ("False", "KubeletHasNoDiskPressure", "kubelet has no disk "
                                "pressure"),
               "PIDPressure": ("False", "KubeletHasSufficientPID", "kubelet has sufficient PID "
                               "available"),
               "Ready": ("True", "KubeletReady", "kubelet is posting ready status")}
    merged: dict[str, Any] = {**healthy, **statuses}
    return {"metadata": {"name": name},
            "spec": {"unschedulable": True} if unschedulable else {},
            "status": {"allocatable": {"cpu": "2", "memory": "8046816Ki", "pods": "110",
                                       "ephemeral-storage": "48294789041"},
                       "conditions": [{"type": kind, "status": s, "reason": r, "message": m,
                                       "lastHeartbeatTime": ago(4),
                                       "lastTransitionTime": ago(900)}
                                      for kind, (s, r, m) in merged.items()]}}


def test_healthy_nodes_raise_nothing() -> None:
    for grade in (cluster.grade_pressure, cluster.grade_not_ready):
        found = grade([node(), node("10.0.0.2")], "all", NOW)
        assert (found["ok"], found["level"], found["affected"]) == (True, "ok", [])
        assert "127.0.0.1, 10.0.0.2" in found["summary"]


def test_memory_and_disk_pressure_are_critical_and_named() -> None:
    found = cluster.grade_pressure([node(), node("10.0.0.2", MemoryPressure=(
        "True", "KubeletHasInsufficientMemory", "kubelet has insufficient memory available"))],
        "workload", NOW)
    assert (found["level"], found["affected"]) == ("critical", ["10.0.0.2"])
    assert found["summary"].startswith(
        "1 of 2 node(s) under the workload: 10.0.0.2 is short of memory (MemoryPressure for 15 "
        "min: kubelet has insufficient memory available): the kubelet evicts pods")
    unknown = cluster.grade_pressure([node(DiskPressure=("Unknown", "NodeStatusUnknown",
                                                         "Kubelet stopped posting node "
                                                         "status."))], "all", NOW)
    assert unknown["level"] == "warning"


def test_a_node_whose_kubelet_stopped_reporting_is_not_ready() -> None:
    found = cluster.grade_not_ready([node(Ready=("Unknown", "NodeStatusUnknown",
                                                 "Kubelet stopped posting node status."))],
                                    "all", NOW)
    assert found["level"] == "critical"
    assert ("127.0.0.1 is NotReady for 15 min because its kubelet stopped reporting: Kubelet "
            "stopped posting node status.") in found["summary"]
    said = cluster.grade_not_ready([node(Ready=("False", "KubeletNotReady", "container runtime "
                                                "network not ready: NetworkReady=false"))],
                                   "all", NOW)["summary"]
    assert "because its kubelet says it is not ready: container runtime network" in said


def test_a_cordoned_node_is_a_warning_and_no_node_at_all_is_not_an_all_clear() -> None:
    assert cluster.grade_not_ready([node(unschedulable=True)], "all", NOW)["level"] == "warning"
    nothing = cluster.grade_not_ready([], "all", NOW)
    assert (nothing["ok"], nothing["level"]) == (False, "warning")
