"""deploy/kubernetes/daemon.yaml on the lab's Kubernetes: the daemon's image built from this
checkout (tests/lab/daemonimage.py), two replicas sharing one journal on a lab PostgreSQL,
an alert posted to the Service opening one run that both replicas serve, and readiness that
drops while the journal's database does not answer. Plus /healthz of a daemon on loopback
whose PostgreSQL journal goes away.

The manifests are applied as shipped, but for what the lab lacks, each said where it is
done (`adapt`): the test's namespace; the local image with imagePullPolicy Never (no
registry); dnsPolicy Default (no cluster DNS); PodDisruptionBudget policy/v1beta1 where the
server (1.20) has no policy/v1. The lab has no kube-proxy either, so the Service is reached
through the API server's service proxy (`/api/v1/namespaces/NS/services/NAME:http/proxy/`),
which picks a ready endpoint of the Service as kube-proxy would; traffic stays on this
machine (the API server on loopback, pods and PostgreSQL on the docker bridge).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from tests.lab import daemonimage, kube
from tests.lab.api import container_dsn
from tests.lab.postgres import postgres_container
from tests.support.polling import wait_for

pytestmark = pytest.mark.lab

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "daemon.yaml"
NAME = "runbook-daemon"
SELECTOR = "app.kubernetes.io/name=runbook,app.kubernetes.io/component=daemon"
INTAKE_SECRET = "intake-8hQw2"  # the lab's (the HMAC secret through the API server)
APPROVER_TOKEN = "alice-tok-3Vn7"
ALERT = {"version": "4", "groupKey": '{}:{alertname="PostgresPoolExhausted"}',
         "status": "firing", "receiver": "runbook", "groupLabels": {}, "commonLabels": {},
         "commonAnnotations": {}, "externalURL": "http://alertmanager.lab",
         "truncatedAlerts": 0,
         "alerts": [{"status": "firing",
                     "labels": {"alertname": "PostgresPoolExhausted", "instance": "journey-db"},
                     "annotations": {"summary": "pool exhausted"},
                     "startsAt": "2026-12-01T07:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                     "generatorURL": "", "fingerprint": ""}]}


def manifests() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]


def adapt(docs: list[dict[str, Any]], namespace: str, image: str,
          policy_v1: bool) -> list[dict[str, Any]]:
    """The shipped objects, changed only where the lab differs (see the module docstring)."""
    out = []
    for doc in copy.deepcopy(docs):
        if doc["kind"] == "Namespace":
            continue  # the test's own namespace instead
        doc["metadata"]["namespace"] = namespace
        if doc["kind"] == "Deployment":
            pod = doc["spec"]["template"]["spec"]
            pod["dnsPolicy"] = "Default"
            [container] = pod["containers"]
            container["image"], container["imagePullPolicy"] = image, "Never"
        if doc["kind"] == "ConfigMap":
            # The API server's proxy drops the Authorization header once it has
            # authenticated the caller: through it, intake is signed (HMAC) instead.
            config = doc["data"]["daemon.yaml"]
            bearer = "auth: {mode: bearer, token_env: RUNBOOK_INTAKE_TOKEN}"
            assert bearer in config
            doc["data"]["daemon.yaml"] = config.replace(
                bearer, "auth: {mode: hmac, secret_env: RUNBOOK_INTAKE_TOKEN}")
        if doc["kind"] == "PodDisruptionBudget" and not policy_v1:
            doc["apiVersion"] = "policy/v1beta1"
        out.append(doc)
    return out


@dataclass
class Deployed:
    namespace: str
    pg: Any  # the journal's PostgresContainer
    host_dsn: str  # the journal, as this machine reaches it

    def service_url(self, path: str) -> str:
        """`path` on the Service, through the API server's service proxy."""
        return (f"{kube.API_SERVER}/api/v1/namespaces/{self.namespace}/services/"
                f"{NAME}:http/proxy{path}")

    def pods(self) -> list[Any]:
        found = kube.core().list_namespaced_pod(self.namespace, label_selector=SELECTOR).items
        return [p for p in found if not p.metadata.deletion_timestamp]

    def ready_pods(self) -> list[Any]:
        return [p for p in self.pods() if p.status.pod_ip and any(
            c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]


def admin_http() -> httpx.Client:
    """An HTTP client with the lab admin's client certificate, for the API server."""
    import ssl

    pki = kube.STATE / "pki"
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return httpx.Client(verify=context, timeout=15)


def signed(body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    digest = hmac.new(INTAKE_SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256)
    return {"Content-Type": "application/json", "X-Runbook-Timestamp": stamp,
            "X-Runbook-Signature": f"sha256={digest.hexdigest()}"}


def create(namespace: str, docs: list[dict[str, Any]]) -> None:
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(kube.api_client())  # type: ignore[no-untyped-call]
    for doc in docs:
        resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        resource.create(body=doc, namespace=namespace)


def serves_policy_v1() -> bool:
    from kubernetes import client

    groups = client.ApisApi(kube.api_client()).get_api_versions().groups
    return any(g.name == "policy" and any(v.version == "v1" for v in g.versions)
               for g in groups)


@pytest.fixture
def deployed(k8s: kube.Cluster) -> Iterator[Deployed]:
    """The manifests in a fresh namespace, the journal on a PostgreSQL of the lab's image;
    both replicas Ready."""
    image = daemonimage.ensure_image()  # a minute when the code changed, else at once
    with postgres_container() as pg:
        host_dsn = pg.get_connection_url()
        pod_dsn = container_dsn(host_dsn, container=pg.get_wrapped_container().id)
        namespace = kube.create_namespace()
        try:
            kube.core().create_namespaced_secret(namespace, {
                "metadata": {"name": NAME},
                "stringData": {"journal-dsn": pod_dsn, "intake-token": INTAKE_SECRET,
                               "metrics-token": "metrics-tok-9Kx1",
                               "approver-alice": APPROVER_TOKEN,
                               "approver-bob": "bob-tok-6Wm4",
                               "journey-db-dsn": pod_dsn, "journey-db-ops-dsn": pod_dsn}})
            create(namespace, adapt(manifests(), namespace, image, serves_policy_v1()))
            lab = Deployed(namespace, pg, host_dsn)
            kube.wait(lambda: len(lab.ready_pods()) == 2, 240,
                      f"both replicas Ready in {namespace}", interval=1)
            yield lab
        finally:
            kube.delete_namespace(namespace)


def runs_on(pod: Any) -> list[dict[str, Any]]:
    """GET /v1/runs of one replica, at its pod IP (a reader's bearer token cannot pass the
    API server's proxy, which keeps the Authorization header for itself)."""
    answer = httpx.get(f"http://{pod.status.pod_ip}:8080/v1/runs", timeout=10,
                       headers={"Authorization": f"Bearer {APPROVER_TOKEN}"})
    answer.raise_for_status()
    runs: list[dict[str, Any]] = answer.json()["runs"]
    return runs


def restarts(lab: Deployed) -> dict[str, int]:
    return {p.metadata.name: sum(c.restart_count for c in p.status.container_statuses or [])
            for p in lab.pods()}


def why_restarted(lab: Deployed) -> str:
    """The end of the log of each replica's container before its last restart."""
    v1 = kube.core()
    return "\n".join(
        f"{name}: {v1.read_namespaced_pod_log(name, lab.namespace, previous=True)[-1500:]}"
        for name, count in restarts(lab).items() if count)


def test_two_replicas_share_the_postgresql_journal_and_an_alert_to_the_service_opens_a_run(
        deployed: Deployed) -> None:
    replicas = deployed.ready_pods()
    assert len({p.status.pod_ip for p in replicas}) == 2
    endpoints = kube.core().read_namespaced_endpoints(NAME, deployed.namespace)
    assert sorted(a.ip for s in endpoints.subsets for a in s.addresses) == sorted(
        p.status.pod_ip for p in replicas)
    body = json.dumps(ALERT).encode()
    with admin_http() as api:
        unsigned = api.post(deployed.service_url("/v1/alerts/alertmanager"), content=body,
                            headers={"Content-Type": "application/json"})
        assert unsigned.status_code == 401, unsigned.text  # intake stays authenticated
        accepted = api.post(deployed.service_url("/v1/alerts/alertmanager"), content=body,
                            headers=signed(body))
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["accepted"] == 1

    def finished_everywhere() -> list[list[dict[str, Any]]]:
        seen = [runs_on(pod) for pod in replicas]
        done = all(len(runs) == 1 and runs[0]["status"] not in {"queued", "running"}
                   for runs in seen)
        return seen if done else []

    first, second = wait_for(finished_everywhere, "one finished run on both replicas", 120,
                             every=0.5)
    assert first == second  # one journal: both replicas serve the same run, whole
    [run] = first
    assert run["playbook"] == "db-pool-exhausted"
    assert run["trigger"] == "alert route pool"
    assert run["targets"]["db"]["name"] == "journey-db"
    assert {s["id"]: s["status"] for s in run["steps"]}["ping"] == "ok"  # reached the db
    with psycopg.connect(deployed.host_dsn) as db:  # and it is in PostgreSQL, not a pod
        assert db.execute("SELECT id, playbook FROM runs").fetchall() == [
            (run["run_id"], "db-pool-exhausted")]
    assert set(restarts(deployed).values()) == {0}, why_restarted(deployed)


def test_readiness_drops_while_the_journal_does_not_answer_and_liveness_restarts_nothing(
        deployed: Deployed) -> None:
    container = deployed.pg.get_wrapped_container()
    before = restarts(deployed)
    container.pause()  # the database stops answering: a partition, as seen from the pods
    try:
        kube.wait(lambda: not deployed.ready_pods(), 60, "both replicas NotReady",
                  interval=0.5)
        endpoints = kube.core().read_namespaced_endpoints(NAME, deployed.namespace)
        assert not [a for s in endpoints.subsets or [] for a in s.addresses or []]
        body = json.dumps(ALERT).encode()
        with admin_http() as api:  # no replica can store it: the Service takes nothing
            refused = api.post(deployed.service_url("/v1/alerts/alertmanager"),
                               content=body, headers=signed(body))
        assert refused.status_code == 503, refused.text
        assert restarts(deployed) == before  # liveness leaves the journal out
    finally:
        container.unpause()
    kube.wait(lambda: len(deployed.ready_pods()) == 2, 60, "both replicas Ready again",
              interval=0.5)
    assert restarts(deployed) == before


def test_healthz_is_unavailable_while_the_postgresql_journal_is_gone(
        tmp_path: Path, runbook_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon on loopback, its journal on a lab PostgreSQL that then stops."""
    from runner.journalstore import DSN_ENV
    from tests.daemonkit import daemon_in_thread, write_world

    monkeypatch.setenv("TEST_TOKEN", "intake-tok")
    config = write_world(tmp_path, "auth: {{mode: bearer, token_env: TEST_TOKEN}}\n"
                                   "playbooks: [{root}/playbooks]\n"
                                   "inventory: [{root}/inventory.yaml]\n")
    with postgres_container() as pg:
        monkeypatch.setenv(DSN_ENV, pg.get_connection_url())
        with daemon_in_thread(config, runbook_home, "intake-tok") as daemon:
            assert daemon.daemon.journal.kind == "postgresql"
            ready = httpx.get(daemon.url + "/healthz", timeout=10)
            assert ready.status_code == 200 and ready.json() == {"status": "ok"}
            pg.get_wrapped_container().stop(timeout=5)
            gone = httpx.get(daemon.url + "/healthz", timeout=30)
            assert gone.status_code == 503
            assert gone.json() == {"status": "unavailable"}  # why goes to the log only
            live = httpx.get(daemon.url + "/healthz?live", timeout=10)
            assert live.status_code == 200 and live.json() == {"status": "ok"}
