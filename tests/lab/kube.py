"""The lab's Kubernetes cluster (tests/lab/k8s/) from Python, and the demo API on it.

    ensure_built()                        # tests/lab/k8s/build.sh: a no-op when cached
    with cluster() as lab:                # start.sh now, stop.sh afterwards
        ns = create_namespace()
        api = deploy_api(ns, db_dsn=container_dsn(db.app), mem_limit="96Mi")
        fault(api, leak_mb_per_s=25)      # POST /admin/fault on a ready pod
        wait_container(api, lambda c: last_reason(c) == "OOMKilled")

A real single-node Kubernetes 1.20 built from Debian's source package: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and a kubelet whose dockershim runs pods on this
machine's Docker engine. Loopback only; no kube-proxy and no DNS, so the API is reached at
its pod's IP on the docker bridge, as are other containers (the lab PostgreSQL, through
`tests.lab.api.container_dsn`). Pods run the lab's locally built images
(`imagePullPolicy: Never`): nothing can be pulled here.

    python -m tests.lab.kube build|start|stop|status

Node faults, for tests that induce them (and undo them in a `finally`): `pause_kubelet()` /
`resume_kubelet()` (SIGSTOP/SIGCONT: the node goes NotReady), `restart_kubelet(extra_args)`
(the same kubelet with more flags) and `restart_kubelet()` (back to start.sh's flags).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.lab.images import require_image
from tests.support.polling import wait_for

HERE = Path(__file__).resolve().parent / "k8s"
STATE = Path(os.environ.get("RUNBOOK_K8S_STATE", "/var/lib/runbook-k8slab"))
ADMIN_KUBECONFIG = STATE / "admin.kubeconfig"
API_SERVER = "https://127.0.0.1:16443"
NODE = "127.0.0.1"  # start.sh's --hostname-override: the only node
# Present while the kubelet runs with a test's extra flags: the command line to go back to.
KUBELET_EXTRA = STATE / "kubelet.extra-args.json"
APP_PORT = 8080
RBAC_MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "rbac.yaml"


def _script(name: str, *args: str, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HERE / name), *args], text=True, check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE if quiet else None)


def cache_dir() -> Path:
    """Where build.sh keeps (or would keep) the binaries of the current recipe."""
    return Path(_script("build.sh", "--dir", quiet=True).stdout.strip())


def is_built() -> bool:
    return _script("build.sh", "--check", quiet=True).returncode == 0


def ensure_built() -> None:
    """Build the binaries and import the pause image unless cached (about 5 minutes cold)."""
    if _script("build.sh").returncode:
        raise RuntimeError("building the lab's Kubernetes failed (see above)")


def require_built() -> None:
    if not is_built():
        raise RuntimeError(f"LAB NOT READY: the lab's Kubernetes is not built ({cache_dir()} "
                           "or the pause image is missing). Run scripts/setup.")


def _alive(daemon: str) -> bool:
    try:
        os.kill(int((STATE / f"{daemon}.pid").read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def running() -> bool:
    """Whether every daemon of the cluster runs (not whether the node is Ready)."""
    return all(_alive(d) for d in ("etcd", "kube-apiserver", "kube-controller-manager",
                                   "kube-scheduler", "kubelet"))


def start() -> float:
    """Start the cluster (idempotent) and wait for a Ready node; the seconds it took."""
    started = time.monotonic()
    _undo_kubelet_faults()
    proc = _script("start.sh", quiet=True)
    if proc.returncode:
        raise RuntimeError(f"the lab's Kubernetes did not start:\n{proc.stderr[-3000:]}")
    return time.monotonic() - started


def stop() -> None:
    proc = _script("stop.sh", quiet=True)
    if proc.returncode:
        raise RuntimeError(f"stopping the lab's Kubernetes failed:\n{proc.stderr[-3000:]}")


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    start_seconds: float
    started_here: bool  # False: it was running before, and is left running


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """The cluster, running; stopped afterwards unless it was running before."""
    require_built()
    was_running = running()
    seconds = start()
    try:
        yield Cluster(ADMIN_KUBECONFIG, seconds, not was_running)
    finally:
        if not was_running:
            stop()


# The kubelet alone: node faults induced for real. Its pod containers run under dockerd, so
# they keep running while it is paused or restarted.


def kubelet_pid() -> int:
    return int((STATE / "kubelet.pid").read_text())


def pause_kubelet() -> None:
    """SIGSTOP the kubelet: it stops posting node status and renewing its lease, and the
    controller-manager marks the node's conditions Unknown once its node-monitor-grace-period
    (40 s) has passed. `resume_kubelet()` undoes it; so does the next `start()`."""
    os.kill(kubelet_pid(), signal.SIGSTOP)


def resume_kubelet() -> None:
    """SIGCONT the kubelet (nothing happens to one that runs)."""
    if _alive("kubelet"):
        os.kill(kubelet_pid(), signal.SIGCONT)


def _gone(pid: int) -> bool:
    try:  # a zombie is gone too: its parent (init here) may not reap it at once
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _stop_kubelet() -> None:
    if not _alive("kubelet"):
        (STATE / "kubelet.pid").unlink(missing_ok=True)
        return
    pid = kubelet_pid()
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGCONT)  # a paused kubelet would never see the SIGTERM
    try:
        wait_for(lambda: _gone(pid), f"kubelet (pid {pid}) to exit", 10, every=0.1)
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: _gone(pid), f"kubelet (pid {pid}) killed", 10, every=0.1)
    (STATE / "kubelet.pid").unlink()


def _undo_kubelet_faults() -> None:
    """What a test that died left: a paused kubelet, or one with its extra flags (stopped
    here, for start.sh to start as usual)."""
    resume_kubelet()
    if KUBELET_EXTRA.exists():
        _stop_kubelet()
        KUBELET_EXTRA.unlink()


def wait_node_reporting(since: float, timeout: float = 120) -> None:
    """Until the node is Ready by a heartbeat of the kubelet posted at `since` (epoch
    seconds) or later: etcd keeps the Ready=True of an earlier one. RuntimeError, with the
    end of its log, as soon as the kubelet exits."""
    pid = kubelet_pid()

    def fresh() -> bool:
        if _gone(pid):
            log = (STATE / "logs" / "kubelet.log").read_text(errors="replace")
            raise RuntimeError("the kubelet exited: " + "\n".join(
                line for line in log.splitlines() if line[:1] in ("E", "F"))[-2000:])
        node = core().read_node(NODE)
        ready = next((c for c in node.status.conditions or [] if c.type == "Ready"), None)
        return bool(ready and ready.status == "True"
                    and ready.last_heartbeat_time.timestamp() >= math.ceil(since))

    wait(fresh, timeout, f"node {NODE} Ready, posted by the kubelet started now", interval=0.5)


def restart_kubelet(extra_args: Sequence[str] = ()) -> float:
    """Stop the kubelet and start it again, and wait until the new one reports the node
    Ready; the seconds it took. With `extra_args`, the kubelet's usual command line and
    environment plus them (a flag overrides the config file: `--eviction-hard=...`; the
    kubelet refuses a threshold that leaves a negative allocatable); without,
    the kubelet as start.sh starts it. A restart with extra flags is undone by the next
    `restart_kubelet()`, or else by the next `start()`."""
    started = time.monotonic()
    if not extra_args:
        _stop_kubelet()
        KUBELET_EXTRA.unlink(missing_ok=True)
        start()
        return time.monotonic() - started
    pid = kubelet_pid()
    usual = (json.loads(KUBELET_EXTRA.read_text())["argv"] if KUBELET_EXTRA.exists() else
             Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1])
    env = dict(line.split("=", 1) for line in
               Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in line)
    KUBELET_EXTRA.write_text(json.dumps({"argv": usual, "extra": list(extra_args)}))
    _stop_kubelet()
    since = time.time()
    # As start.sh does: its own session, reparented to init once the shell exits.
    new = subprocess.run(["sh", "-c", 'setsid "$@" >>"$0" 2>&1 </dev/null & echo $!',
                          str(STATE / "logs" / "kubelet.log"), *usual, *extra_args],
                         env=env, text=True, check=True, stdout=subprocess.PIPE).stdout
    (STATE / "kubelet.pid").write_text(new.strip() + "\n")
    wait_node_reporting(since)
    return time.monotonic() - started


# The client side: the official client, the admin's credentials.


def create_raw(path: str, body: dict[str, Any]) -> None:
    """POST an object of an API version the client library no longer has (the lab runs
    Kubernetes 1.20: batch/v1beta1 CronJobs, policy/v1beta1 budgets)."""
    client = api_client()
    request = client.param_serialize(
        "POST", path, body=body, auth_settings=["BearerToken"],
        header_params={"Content-Type": "application/json", "Accept": "application/json"})
    response = client.call_api(*request)
    response.read()
    assert 200 <= response.status < 300, response.data


def api_client(kubeconfig: Path = ADMIN_KUBECONFIG) -> Any:
    from kubernetes import config

    return config.new_client_from_config(str(kubeconfig), persist_config=False)


def core(kubeconfig: Path = ADMIN_KUBECONFIG) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api_client(kubeconfig))


def apps(kubeconfig: Path = ADMIN_KUBECONFIG) -> Any:
    from kubernetes import client

    return client.AppsV1Api(api_client(kubeconfig))


def wait(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.3) -> Any:
    """Poll until `predicate()` is truthy; its value. An ApiException is "not yet" (not
    there yet, or a passing hiccup)."""
    from kubernetes.client.rest import ApiException

    return wait_for(predicate, what, timeout, every=interval, retry_on=(ApiException,))


def create_namespace(name: str | None = None) -> str:
    """A new namespace (default: rb-k8s-<random>), usable once its ServiceAccount exists."""
    name = name or f"rb-k8s-{uuid.uuid4().hex[:6]}"
    v1 = core()
    v1.create_namespace({"metadata": {"name": name, "labels": {"runbook.lab": "test"}}})
    wait(lambda: v1.list_namespaced_service_account(name).items, 30,
         f"the default ServiceAccount of {name}")
    return name


def delete_namespace(name: str, wait_gone: bool = False) -> None:
    from kubernetes.client.rest import ApiException

    v1 = core()
    try:
        v1.delete_namespace(name, grace_period_seconds=0)
    except ApiException as exc:
        if exc.status != 404:
            raise
    if wait_gone:
        wait(lambda: name not in {n.metadata.name for n in v1.list_namespace().items},
             120, f"namespace {name} deleted")


def delete_test_namespaces() -> None:
    """What tests that died left behind (labelled runbook.lab=test)."""
    for ns in core().list_namespace(label_selector="runbook.lab=test").items:
        if not ns.metadata.deletion_timestamp:
            delete_namespace(ns.metadata.name)


# The demo API as a Deployment.


@dataclass(frozen=True)
class ApiDeployment:
    namespace: str
    name: str
    image: str  # of the revision deployed first

    @property
    def selector(self) -> str:
        return f"app={self.name}"


def api_manifest(name: str, image: str, db_dsn: str, *, replicas: int = 1,
                 mem_limit: str | None = "256Mi", pool_size: int = 5,
                 env: dict[str, str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "api",
        "image": image,
        "imagePullPolicy": "Never",  # no registry: the lab's images are local
        "env": [{"name": k, "value": v} for k, v in
                {"DATABASE_URL": db_dsn, "POOL_SIZE": str(pool_size), **(env or {})}.items()],
        "ports": [{"containerPort": APP_PORT, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": APP_PORT},
                           "periodSeconds": 1, "failureThreshold": 3, "timeoutSeconds": 2},
    }
    if mem_limit:
        container["resources"] = {"limits": {"memory": mem_limit}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "progressDeadlineSeconds": 120,
            "template": {
                "metadata": {"labels": {"app": name}},
                # The app stops at once on SIGTERM; a short grace keeps rollouts quick.
                # No cluster DNS in the lab: the node's resolver (and no MissingClusterDNS).
                "spec": {"terminationGracePeriodSeconds": 5, "dnsPolicy": "Default",
                         "containers": [container]},
            },
        },
    }


def deploy_api(namespace: str, name: str = "api", *, db_dsn: str, flavor: str = "good",
               replicas: int = 1, mem_limit: str | None = "256Mi", pool_size: int = 5,
               env: dict[str, str] | None = None, wait_ready: bool = True) -> ApiDeployment:
    """Create the Deployment of the demo API (runbook-lab/api:*-<flavor>) and, by default,
    wait until its rollout is complete and every pod answers /health."""
    image = require_image(f"api-{flavor}")
    apps().create_namespaced_deployment(
        namespace, api_manifest(name, image, db_dsn, replicas=replicas, mem_limit=mem_limit,
                                pool_size=pool_size, env=env))
    api = ApiDeployment(namespace, name, image)
    if wait_ready:
        wait_rollout(api)
    return api


def set_image(api: ApiDeployment, flavor: str) -> str:
    """A deploy: the Deployment's template gets the other flavor's image (a new revision);
    waits for the rollout. The new image."""
    image = require_image(f"api-{flavor}")
    apps().patch_namespaced_deployment(api.name, api.namespace, {"spec": {"template": {"spec": {
        "containers": [{"name": "api", "image": image}]}}}})
    wait_rollout(api)
    return image


def rollout_complete(api: ApiDeployment) -> bool:
    d = apps().read_namespaced_deployment(api.name, api.namespace)
    s, want = d.status, d.spec.replicas
    return bool((s.observed_generation or 0) >= d.metadata.generation
                and (s.updated_replicas or 0) == want and (s.replicas or 0) == want
                and (s.available_replicas or 0) == want)


def wait_rollout(api: ApiDeployment, timeout: float = 90) -> None:
    wait(lambda: rollout_complete(api) and len(ready_pods(api)) >= 1, timeout,
         f"rollout of deployment {api.namespace}/{api.name}")


def pods(api: ApiDeployment) -> list[Any]:
    """The Deployment's pods that are not being deleted, oldest first."""
    found = core().list_namespaced_pod(api.namespace, label_selector=api.selector).items
    return sorted((p for p in found if not p.metadata.deletion_timestamp),
                  key=lambda p: p.metadata.creation_timestamp)


def ready_pods(api: ApiDeployment) -> list[Any]:
    return [p for p in pods(api) if p.status.pod_ip and any(
        c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]


def pod_url(api: ApiDeployment) -> str:
    """http://<pod IP>:8080 of a ready pod (pod IPs are on the docker bridge)."""
    ready = wait(lambda: ready_pods(api), 60, f"a ready pod of {api.namespace}/{api.name}")
    return f"http://{ready[0].status.pod_ip}:{APP_PORT}"


def fault(api: ApiDeployment, **switches: Any) -> dict[str, Any]:
    """POST the switches to /admin/fault of a ready pod (see tests.lab.api.fault)."""
    from tests.lab.api import fault as post_fault

    return post_fault(pod_url(api), **switches)


def container_status(pod: Any) -> Any:
    return next(iter(pod.status.container_statuses or []), None)


def last_reason(status: Any) -> str | None:
    last = status.last_state.terminated if status and status.last_state else None
    return last.reason if last else None


def waiting_reason(status: Any) -> str | None:
    waiting = status.state.waiting if status and status.state else None
    return waiting.reason if waiting else None


def wait_container(api: ApiDeployment, predicate: Callable[[Any], bool], timeout: float = 60,
                   what: str = "container state") -> Any:
    """Wait until a pod's API container status satisfies `predicate`; that status."""
    def found() -> Any:
        return next((s for s in map(container_status, pods(api)) if s and predicate(s)), None)

    return wait(found, timeout, f"{what} in {api.namespace}/{api.name}", interval=0.5)


def replica_sets(api: ApiDeployment) -> dict[int, Any]:
    """The Deployment's ReplicaSets by revision."""
    found = apps().list_namespaced_replica_set(api.namespace, label_selector=api.selector).items
    return {int(rs.metadata.annotations["deployment.kubernetes.io/revision"]): rs
            for rs in found}


def deployment(api: ApiDeployment) -> Any:
    return apps().read_namespaced_deployment(api.name, api.namespace)


# Least privilege: deploy/kubernetes/rbac.yaml, and credentials of its ServiceAccounts.


def apply_rbac(target_namespace: str, manifest: Path = RBAC_MANIFEST) -> list[str]:
    """Create the manifest's objects, its RoleBindings in `target_namespace` (the manifest
    says `namespace: apps` for the workloads' namespace); existing ones are left as they are,
    but cluster roles are replaced, so that their rules are the manifest's now.
    The kinds and names created."""
    import yaml
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    v1, rbac = core(), client.RbacAuthorizationV1Api(api_client())
    created = []
    for doc in yaml.safe_load_all(manifest.read_text()):
        if not doc:
            continue
        kind, meta = doc["kind"], doc["metadata"]
        if kind == "RoleBinding":
            meta["namespace"] = target_namespace
        create = {
            "Namespace": lambda d: v1.create_namespace(d),
            "ServiceAccount": lambda d: v1.create_namespaced_service_account(
                d["metadata"]["namespace"], d),
            "ClusterRole": lambda d: rbac.create_cluster_role(d),
            "ClusterRoleBinding": lambda d: rbac.create_cluster_role_binding(d),
            "Role": lambda d: rbac.create_namespaced_role(d["metadata"]["namespace"], d),
            "RoleBinding": lambda d: rbac.create_namespaced_role_binding(
                d["metadata"]["namespace"], d),
        }[kind]
        try:
            create(doc)
        except ApiException as exc:
            if exc.status != 409:  # already there
                raise
            if kind == "ClusterRole":
                rbac.replace_cluster_role(meta["name"], doc)
        created.append(f"{kind}/{meta['name']}")
    return created


def service_account_kubeconfig(namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig at `path` that authenticates as the ServiceAccount, with its token (the
    token Secret Kubernetes 1.20 makes for every ServiceAccount)."""
    v1 = core()

    def token() -> str | None:
        sa = v1.read_namespaced_service_account(account, namespace)
        for ref in sa.secrets or []:
            secret = v1.read_namespaced_secret(ref.name, namespace)
            if secret.type == "kubernetes.io/service-account-token" and secret.data:
                return base64.b64decode(secret.data["token"]).decode()
        return None

    bearer = wait(token, 30, f"the token of ServiceAccount {namespace}/{account}")
    ca = STATE / "pki" / "ca.crt"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "runbook-lab",
                      "cluster": {"server": API_SERVER, "certificate-authority": str(ca)}}],
        "users": [{"name": account, "user": {"token": bearer}}],
        "contexts": [{"name": account,
                      "context": {"cluster": "runbook-lab", "user": account,
                                  "namespace": namespace}}],
        "current-context": account,
    }, indent=2))
    path.chmod(0o600)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.kube", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("build", "start", "stop", "status"))
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            ensure_built()
        elif args.command == "start":
            require_built()
            print(f"started in {start():.1f} s; export KUBECONFIG={ADMIN_KUBECONFIG}")
        elif args.command == "stop":
            stop()
        else:
            print(f"binaries: {cache_dir()} ({'built' if is_built() else 'NOT built'}); "
                  f"cluster: {'running' if running() else 'stopped'}; state: {STATE}")
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
