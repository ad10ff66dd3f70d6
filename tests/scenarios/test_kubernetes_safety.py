"""The Kubernetes probe handle against the real cluster, built from the ADMIN kubeconfig:
credentials that could exec into a pod or patch a Deployment, so that only runbook's own
read-only client stands in the way. Every way an attacker (or a bug) would take is refused,
and nothing happened in the pod or to the objects. Plus events attributed by owner
references: a crash-looping `web-canary` never shows in `web`'s events."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from diagnostics.kubernetes import KubernetesReader
from diagnostics.service import KubernetesService
from tests.lab import kube
from tests.lab.api import container_dsn
from tests.lab.faults import LabDatabase

MARKER = "/tmp/runbook-probe-was-here"


@pytest.fixture
def namespace(k8s: kube.Cluster) -> Iterator[str]:
    name = kube.create_namespace()
    try:
        yield name
    finally:
        kube.delete_namespace(name)


def _reader(namespace: str, deployment: str) -> KubernetesReader:
    settings = KubernetesService(runtime="kubernetes", namespace=namespace,
                                 deployment=deployment, kubeconfig=str(kube.ADMIN_KUBECONFIG))
    return KubernetesReader(settings, 10.0)


def _admin_exec(namespace: str, pod: str, command: list[str]) -> str:
    """kubectl exec with the admin's own client: what the same credentials can do."""
    from kubernetes.stream import stream

    session = stream(kube.core().connect_get_namespaced_pod_exec, pod, namespace,
                     command=command, stdout=True, stderr=True, stdin=False, tty=False,
                     _preload_content=False)
    try:
        session.run_forever(timeout=30)
        return str(session.read_stdout())
    finally:
        session.close()
        session.sock.shutdown()  # close() leaves the socket open once the server hung up


def _attempts(reader: KubernetesReader, namespace: str, pod: str,
              deployment: str) -> dict[str, Callable[[], Any]]:
    import urllib3
    from kubernetes.stream import portforward, stream, ws_client

    api = reader.api
    client = api.client
    host = client.configuration.host
    pod_path = f"/api/v1/namespaces/{namespace}/pods/{pod}"
    deployment_path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}"
    touch = f"command=touch&command={MARKER}&stdout=true&stderr=true"
    scale_up = b'{"spec": {"replicas": 3}}'
    merge = {"Content-Type": "application/merge-patch+json"}
    auth = client.configuration.api_key.get("authorization")  # None with client certs
    headers = {"authorization": auth} if auth else {}
    return {
        "stream exec": lambda: stream(
            api.core.connect_get_namespaced_pod_exec, pod, namespace,
            command=["touch", MARKER], stdout=True, stderr=True, stdin=False, tty=False),
        "stream attach": lambda: stream(
            api.core.connect_get_namespaced_pod_attach, pod, namespace, container="api",
            stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False),
        "port-forward": lambda: portforward(
            api.core.connect_get_namespaced_pod_portforward, pod, namespace, ports="8080"),
        "websocket_call": lambda: ws_client.websocket_call(
            client.configuration, "GET", f"{host}{pod_path}/exec?{touch}", headers=headers),
        "create_websocket": lambda: ws_client.create_websocket(
            client.configuration, f"{host.replace('https', 'wss')}{pod_path}/exec?{touch}",
            headers),
        "percent-encoded exec": lambda: client.rest_client.request(
            "GET", f"{host}{pod_path}/%65xec?{touch}"),
        "double-encoded exec": lambda: client.rest_client.request(
            "GET", f"{host}{pod_path}/%2565xec?{touch}"),
        "proxy into the pod": lambda: client.rest_client.request(
            "GET", f"{host}{pod_path}:8080/proxy/health"),
        "rest_client PATCH": lambda: client.rest_client.request(
            "PATCH", f"{host}{deployment_path}", headers=merge,
            body={"spec": {"replicas": 3}}),
        "pool_manager PATCH": lambda: client.rest_client.pool_manager.request(
            "PATCH", f"{host}{deployment_path}", body=scale_up, headers={**merge, **headers}),
        "connection pool PATCH": lambda: client.rest_client.pool_manager.connection_from_url(
            host).urlopen("PATCH", deployment_path, body=scale_up, headers={**merge, **headers},
                          retries=urllib3.Retry(0)),
        "call_api DELETE": lambda: client.call_api("DELETE", f"{host}{pod_path}"),
        "generated patch": lambda: api.apps.patch_namespaced_deployment(
            deployment, namespace, {"spec": {"replicas": 3}}),
        "generated delete": lambda: api.core.delete_namespaced_pod(pod, namespace),
    }


def test_a_probe_handle_with_admin_credentials_cannot_exec_attach_forward_or_patch(
        lab: LabDatabase, namespace: str) -> None:
    api = kube.deploy_api(namespace, "api", db_dsn=container_dsn(lab.app))
    [pod] = kube.pods(api)
    before = kube.deployment(api)
    # The credentials could: the admin's own client execs (the positive control).
    assert _admin_exec(namespace, pod.metadata.name, ["sh", "-c", "echo reachable"]).strip() \
        == "reachable"
    reader = _reader(namespace, "api")
    try:
        assert reader.status()["state"] == "running"  # reads work
        refused = {}
        for name, attempt in _attempts(reader, namespace, pod.metadata.name, "api").items():
            try:
                attempt()
                refused[name] = "GOT THROUGH"
            except Exception as exc:  # ReadOnlyRefusal, or the ApiException stream wraps it in
                refused[name] = str(exc)
    finally:
        reader.close()
    assert {name: why for name, why in refused.items() if "read-only" not in why} == {}
    # Nothing happened: no file in the pod, the same pod, the same Deployment.
    check = f"test -e {MARKER} && echo present || echo absent"
    assert _admin_exec(namespace, pod.metadata.name, ["sh", "-c", check]).strip() == "absent"
    [same] = kube.pods(api)
    assert same.metadata.uid == pod.metadata.uid
    after = kube.deployment(api)
    assert (after.spec.replicas, after.metadata.generation) == (1, before.metadata.generation)


def test_events_follow_owner_references_not_name_prefixes(
        lab: LabDatabase, namespace: str) -> None:
    dsn = container_dsn(lab.app)
    kube.deploy_api(namespace, "web", db_dsn=dsn)
    # The canary's app dies at start (its pool size does not parse): CrashLoopBackOff.
    canary = kube.deploy_api(namespace, "web-canary", db_dsn=dsn, wait_ready=False,
                             env={"POOL_SIZE": "not-a-number"})
    kube.wait_container(canary, lambda c: kube.waiting_reason(c) == "CrashLoopBackOff", 120,
                        "the canary crash-looping")
    web, crashing = _reader(namespace, "web"), _reader(namespace, "web-canary")
    try:
        canary_events = kube.wait(
            lambda: [e for e in crashing.status()["events"] if e["reason"] == "BackOff"], 60,
            "the canary's BackOff warning")
        web_events = web.status()["events"]
    finally:
        web.close()
        crashing.close()
    assert canary_events[0]["type"] == "Warning"
    assert all(o.startswith("web-canary-") for e in canary_events for o in e["objects"])
    assert web_events, "web has events of its own (scheduled, pulled, started, scaled)"
    objects = [o for e in web_events for o in e["objects"]]
    assert not [o for o in objects if o.startswith("web-canary")], web_events
    assert not [e for e in web_events if e["type"] == "Warning" and e["reason"] == "BackOff"]
    assert any(e["kind"] == "Deployment" for e in web_events)
    assert any(e["kind"] == "Pod" for e in web_events)
