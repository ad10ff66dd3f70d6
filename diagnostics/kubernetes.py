"""Services on Kubernetes: the runtime behind `service.*` steps when `runtime: kubernetes`.

    journey-api:
      kind: service
      runtime: kubernetes
      namespace: journey
      deployment: journey-api            # or statefulset: NAME, or selector: app=journey-api
      kubeconfig: /etc/runbook/diagnostics.kubeconfig  # default: KUBECONFIG, ~/.kube/config,
                                                       # then the pod's service account
      action_kubeconfig: /etc/runbook/remedies.kubeconfig  # remedies only (default: kubeconfig)
      health_url: http://{pod_ip}:8080/health   # {pod_ip}: a ready pod's IP, looked up per step

`KubernetesReader` is what probes get; `KubernetesOperator` (remedies only, through the
gate) adds rollout restart, rollback, scale and a memory limit, each of which waits for its
rollout to finish and reports how it went; a rollback deploys the revision pinned when it
was proposed, or refuses if that revision changed (`diagnostics.kubernetes_rollback`,
which also says what the pin does not cover). Both return what `diagnostics.docker` returns
for the same methods, so that the service playbooks run unchanged; Kubernetes adds its own
keys (pods, conditions, rollout, events, revisions).

Read-only is enforced twice: the reader's API client refuses every HTTP method but GET and
HEAD, and exec, attach, port-forward and proxy paths, matched on the decoded path, at its
lowest layers (urllib3's connection pools, the REST client, the websockets of
`kubernetes.stream`), so that a bug cannot change a workload or reach into a pod; and
the credentials should be bound to deploy/kubernetes/rbac.yaml's `runbook-diagnostics` role
(get, list, watch), so that the API server refuses too. A 403 becomes a PermanentError that
says which verb on which resource was refused.

Every request has a connect and a read timeout, and urllib3's own retries are off (the
engine decides about retries). Responses are read as plain JSON rather than the client's
model classes: the client is much newer than many servers (1.20 in the lab), and plain JSON
does not care about fields one side does not know.

Memory comes from the metrics.k8s.io API where a metrics-server serves it. Without one (the
lab), when the pods' containers run on this machine's Docker engine (dockershim), their
cgroup is sampled through it, read-only; otherwise the step says memory use is unknown.
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import json
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

from runner.errors import PermanentError, StepError, TemporaryError

from . import logclass, trend
from .kubernetes_rollback import (
    approved_revision,
    image_id_changes,
    pin,
    pod_image_id,
    target_revision,
    template_sha256,
)
from .request_guard import ReadOnlyRefusal, check_kubernetes_request

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # what `kubectl rollout restart` sets
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
HASH_LABEL = "pod-template-hash"
MAX_PODS = 10  # logs and memory of at most this many pods
# Waiting reasons that no amount of waiting fixes: a rollout that meets one has failed.
STUCK = frozenset({"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull",
                   "InvalidImageName", "CreateContainerConfigError", "CreateContainerError",
                   "RunContainerError"})
_BACK_OFF = re.compile(r"back-off (\S+) restarting", re.IGNORECASE)
MIB = 1024 * 1024


# Credentials and the API client


def _kubeconfig(settings: Any, action: bool) -> tuple[str | None, str | None]:
    """(kubeconfig path or None, context) for probes or for remedies."""
    if action and settings.action_kubeconfig:
        return settings.action_kubeconfig, settings.action_context
    if not action and (problem := probe_credentials_problem(settings)):
        raise PermanentError(problem)
    return settings.kubeconfig, (settings.action_context if action else None) or settings.context


def probe_credentials_problem(settings: Any) -> str | None:
    """Why probes must not run with these settings: remedies have their own credentials
    but probes none of their own, so they would fall back to KUBECONFIG, ~/.kube/config or
    the pod's service account, which may well be the broad ones."""
    if settings.action_kubeconfig and not settings.kubeconfig:
        return ("probes refuse to run: action_kubeconfig is set but kubeconfig is not, and "
                "the default credentials (KUBECONFIG, ~/.kube/config, the pod's service "
                "account) may be as broad as the remedies'; name the read-only ones with "
                "kubeconfig (deploy/kubernetes/rbac.yaml: runbook-diagnostics)")
    return None


# A mark on the client configuration of read-only handles: the websocket layer sees only
# the configuration, not the client.
_READ_ONLY_MARK = "runbook_read_only"


def _guard_rest_client(rest_client: Any) -> None:
    """Refuse every request but a GET or HEAD of a read path at the bottom of the client:
    its `request` (what call_api and any caller of the REST client use) and the urllib3
    connection pools under it (what anything reaching for the pool manager uses)."""
    inner_request = rest_client.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        check_kubernetes_request(method, url)
        return inner_request(method, url, *args, **kwargs)

    rest_client.request = request
    manager = rest_client.pool_manager
    manager.pool_classes_by_scheme = {
        scheme: _read_only_pool(pool) for scheme, pool in manager.pool_classes_by_scheme.items()}
    manager.clear()


def _read_only_pool(pool: type) -> type:
    def urlopen(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        check_kubernetes_request(method, url)
        return pool.urlopen(self, method, url, *args, **kwargs)  # type: ignore[attr-defined]

    return type(f"ReadOnly{pool.__name__}", (pool,), {"urlopen": urlopen})


def _guard_websockets() -> None:
    """exec, attach and port-forward go over websockets that `kubernetes.stream` opens
    itself (it swaps the client's call_api out while it does): refuse to open one for a
    read-only configuration. Installed once, in the library's module."""
    from kubernetes.stream import ws_client

    original: Any = ws_client.create_websocket
    if getattr(original, _READ_ONLY_MARK, False):
        return

    def create_websocket(configuration: Any, url: str, headers: Any = None) -> Any:
        if getattr(configuration, _READ_ONLY_MARK, False):
            raise ReadOnlyRefusal("this Kubernetes handle is read-only: diagnostics cannot "
                                  "open a websocket (exec, attach, port-forward)")
        return original(configuration, url, headers)

    setattr(create_websocket, _READ_ONLY_MARK, True)
    ws_client.create_websocket = create_websocket


def _api_client(settings: Any, timeout: float, *, read_only: bool) -> tuple[Any, str]:
    """An ApiClient for the target and a description of whose credentials it uses."""
    from kubernetes import client
    from kubernetes import config as kube_config

    config: Any = kube_config  # (its loaders are untyped)

    class ReadOnlyApiClient(client.ApiClient):
        """Kubernetes changes state through POST, PUT, PATCH and DELETE, and acts on a
        pod's processes through exec, attach, port-forward and proxy: refuse them all, here
        for a clear error, and again at every layer below (`_guard_rest_client`,
        `_guard_websockets`)."""

        def __init__(self, configuration: Any) -> None:
            setattr(configuration, _READ_ONLY_MARK, True)
            super().__init__(configuration)
            _guard_rest_client(self.rest_client)
            _guard_websockets()

        def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            check_kubernetes_request(method, url)
            return super().call_api(method, url, *args, **kwargs)

    path, context = _kubeconfig(settings, not read_only)
    configuration = client.Configuration()
    try:
        if path or os.environ.get("KUBECONFIG") or Path("~/.kube/config").expanduser().exists():
            # The file(s) by name: the client reads KUBECONFIG once, when it is imported.
            files = os.path.expanduser(os.path.expandvars(path)) if path else \
                os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
            config.load_kube_config(config_file=files, context=context,
                                    client_configuration=configuration, persist_config=False)
            source = f"kubeconfig {files}" + (f" (context {context})" if context else "")
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)
            source = "the pod's service account"
        else:
            raise PermanentError("no Kubernetes credentials: name a kubeconfig in the inventory, "
                                 "set KUBECONFIG, or run runbook in a pod")
    except (config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise PermanentError(f"cannot load Kubernetes credentials ({path or 'default'}): "
                             f"{exc}") from None
    configuration.retries = False  # the engine retries, within the step's deadline
    cls = ReadOnlyApiClient if read_only else client.ApiClient
    return cls(configuration), source


def _message(exc: Any) -> str:
    """The API server's own message from an ApiException's Status body."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    return str(body.get("message") or exc.reason or exc).strip()


class _Api:
    """The calls the runtime makes, each with timeouts, its answer as plain JSON, and its
    errors as runbook's temporary and permanent kinds."""

    def __init__(self, settings: Any, timeout: float, *, read_only: bool) -> None:
        from kubernetes import client

        self.settings = settings
        self.namespace: str = settings.namespace
        self.client, self.source = _api_client(settings, timeout, read_only=read_only)
        self.core = client.CoreV1Api(self.client)
        self.apps = client.AppsV1Api(self.client)
        self.custom = client.CustomObjectsApi(self.client)
        read = max(1.0, float(timeout))
        self.timeouts = (min(5.0, read), read)

    def close(self) -> None:
        self.client.close()

    def cancel(self) -> None:
        # Closes the connections: a request in flight fails at once.
        with contextlib.suppress(Exception):
            self.client.rest_client.pool_manager.clear()

    def call(self, verb: str, resource: str, func: Callable[..., Any], *args: Any,
             raw: bool = False, **kwargs: Any) -> Any:
        """`func(*args, **kwargs)`, as JSON (bytes decoded to text when `raw`)."""
        import urllib3
        from kubernetes.client.exceptions import ApiException

        try:
            response = func(*args, _preload_content=False, _request_timeout=self.timeouts,
                            **kwargs)
            data = response.data
        except ApiException as exc:
            raise self._error(exc, verb, resource) from None
        except urllib3.exceptions.HTTPError as exc:
            host = self.client.configuration.host
            raise TemporaryError(f"Kubernetes API at {host} unreachable: {exc}") from None
        if raw:
            return bytes(data).decode("utf-8", errors="replace")
        return json.loads(data) if data else {}

    def _error(self, exc: Any, verb: str, resource: str) -> StepError:
        status, message = exc.status, _message(exc)
        where = f"in namespace {self.namespace}"
        if status == 403:
            hint = (" Remedies need credentials bound to the runbook-remedies role "
                    "(action_kubeconfig; deploy/kubernetes/rbac.yaml)."
                    if verb in {"patch", "update", "create", "delete"} else
                    " Diagnostics need the runbook-diagnostics role "
                    "(deploy/kubernetes/rbac.yaml).")
            return PermanentError(f"forbidden: the Kubernetes API server refused to {verb} "
                                  f"{resource} {where} with {self.source}: {message}.{hint}")
        if status == 401:
            return PermanentError(f"the Kubernetes API server did not accept the credentials "
                                  f"of {self.source}: {message}")
        if status == 404:
            return PermanentError(f"not found: {message} ({verb} {resource} {where})")
        if status in (409, 429) or (status and status >= 500):
            return TemporaryError(f"Kubernetes API: {message} ({verb} {resource} {where})")
        return PermanentError(f"Kubernetes API refused to {verb} {resource} {where}: "
                              f"HTTP {status}: {message}")


# Small pure helpers over Kubernetes JSON


_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([numkMGTPE]i?|Ki)?$")
_SUFFIX = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
           "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12),
           "P": Decimal(10**15), "E": Decimal(10**18), "Ki": Decimal(2**10),
           "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
           "Pi": Decimal(2**50), "Ei": Decimal(2**60)}


def quantity(value: str | int | float) -> Decimal:
    """A Kubernetes quantity as a number: 96Mi, 1Gi, 500M, 250m (CPU), 1234n, 1e9."""
    match = _QUANTITY.match(str(value).strip())
    if not match or (match.group(2) or "") not in _SUFFIX:
        raise PermanentError(f"not a Kubernetes quantity: {value!r}")
    return Decimal(match.group(1)) * _SUFFIX[match.group(2) or ""]


def parse_quantity(value: str | int | float | None) -> int | None:
    """Bytes from a memory quantity (rounded up, as Kubernetes does); None for none."""
    if value is None or value == "":
        return None
    return int(quantity(value).to_integral_value(rounding=ROUND_CEILING))


def format_quantity(size: int) -> str:
    """A byte count as Kubernetes writes it: 192Mi rather than 201326592."""
    for suffix, unit in (("Gi", 1024**3), ("Mi", MIB), ("Ki", 1024)):
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _iso_of(text: str | None) -> str | None:
    return _iso(_time(text))


def label_selector(selector: dict[str, Any]) -> str:
    """A LabelSelector object as the `key=value,key in (a,b)` string the API takes."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        parts.append({"In": f"{key} in ({','.join(values)})",
                      "NotIn": f"{key} notin ({','.join(values)})",
                      "Exists": key, "DoesNotExist": f"!{key}"}[op])
    return ",".join(parts)


_EPOCH = datetime.min.replace(tzinfo=UTC)


def _line_time(line: str) -> datetime:
    """A log line's leading timestamp (the runtime's, nanoseconds and all), for merging."""
    moment = logclass.split_timestamp(line.split(" ", 1)[0])[0]
    return moment if moment is not None and moment.tzinfo else _EPOCH


def _annotation(obj: dict[str, Any], key: str) -> str | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(key)
    return str(value) if value is not None else None


def _containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    return list(((template.get("spec") or {}).get("containers")) or [])


def _owned_by(obj: dict[str, Any], owners: set[str]) -> bool:
    """Whether an owner reference of `obj` names one of the `owners` uids."""
    return any(ref.get("uid") in owners
               for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def _int(value: Any, default: int = 0) -> int:
    return int(value) if value is not None else default


class KubernetesReader:
    """Read-only view of a service on Kubernetes: a Deployment, a StatefulSet, or the pods a
    label selector picks (then without rollouts: no history, no remedies)."""

    def __init__(self, settings: Any, timeout: float, *, read_only: bool = True) -> None:
        self.settings = settings
        self.timeout = timeout
        self.namespace: str = settings.namespace
        if settings.deployment:
            self.kind, self.name = "deployment", str(settings.deployment)
        elif settings.statefulset:
            self.kind, self.name = "statefulset", str(settings.statefulset)
        else:
            self.kind, self.name = "selector", str(settings.selector)
        self.api = _Api(settings, timeout, read_only=read_only)

    def cancel(self) -> None:
        self.api.cancel()

    def close(self) -> None:
        self.api.close()

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name}" if self.kind != "selector" else f"pods {self.name}"

    # The objects

    def _workload(self) -> dict[str, Any] | None:
        if self.kind == "deployment":
            return dict(self.api.call("get", "deployments",
                                      self.api.apps.read_namespaced_deployment,
                                      self.name, self.namespace))
        if self.kind == "statefulset":
            return dict(self.api.call("get", "statefulsets",
                                      self.api.apps.read_namespaced_stateful_set,
                                      self.name, self.namespace))
        return None

    def identity(self) -> dict[str, str]:
        """The API server, namespace and workload uid behind the service's name: an
        approval binds to these (a workload deleted and re-created has a new uid)."""
        workload = self._workload()
        uid = str(workload["metadata"]["uid"]) if workload is not None else "(pods by selector)"
        return {"runtime": "kubernetes", "api_server": str(self.api.client.configuration.host),
                "namespace": self.namespace, "workload": self.label, "uid": uid}

    def _selector(self, workload: dict[str, Any] | None) -> str:
        if workload is None:
            return self.name
        return label_selector(workload["spec"].get("selector") or {})

    def _pods(self, workload: dict[str, Any] | None, *, terminating: bool = False
              ) -> list[dict[str, Any]]:
        """The workload's pods, oldest first; not those being deleted, unless asked."""
        found = self.api.call("list", "pods", self.api.core.list_namespaced_pod, self.namespace,
                              label_selector=self._selector(workload))
        pods = [p for p in found.get("items") or []
                if terminating or not p["metadata"].get("deletionTimestamp")]
        return sorted(pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "",
                                           p["metadata"]["name"]))

    def _template(self, workload: dict[str, Any] | None,
                  pods: list[dict[str, Any]]) -> dict[str, Any]:
        if workload is not None:
            return dict(workload["spec"]["template"])
        return {"spec": pods[0]["spec"]} if pods else {"spec": {"containers": []}}

    def _container_name(self, template: dict[str, Any]) -> str | None:
        if self.settings.container:
            return str(self.settings.container)
        containers = _containers(template)
        return str(containers[0]["name"]) if containers else None

    def _container(self, template: dict[str, Any]) -> dict[str, Any]:
        name = self._container_name(template)
        for container in _containers(template):
            if container["name"] == name:
                return container
        raise PermanentError(f"{self.label} in {self.namespace} has no container {name!r}")

    def _status_of(self, pod: dict[str, Any], container: str | None) -> dict[str, Any]:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        return next((s for s in statuses if s.get("name") == container), {})

    def _pod_view(self, pod: dict[str, Any], container: str | None) -> dict[str, Any]:
        """One pod, the way `kubectl get pods` and `describe` tell it."""
        meta, status = pod["metadata"], pod.get("status") or {}
        cs = self._status_of(pod, container)
        state = cs.get("state") or {}
        last = (cs.get("lastState") or {}).get("terminated")
        running = "running" in state
        message = None
        if running:
            shown = "running"
        elif "waiting" in state:
            shown = state["waiting"].get("reason") or "waiting"
            message = state["waiting"].get("message")
        elif "terminated" in state:
            shown = state["terminated"].get("reason") or "terminated"
            message = state["terminated"].get("message")
        else:
            unschedulable = next((c for c in status.get("conditions") or []
                                  if c.get("type") == "PodScheduled"
                                  and c.get("status") == "False"), None)
            shown = (unschedulable or {}).get("reason") or str(status.get("phase", "Pending"))
            message = (unschedulable or {}).get("message")
        terminated = state.get("terminated") or last
        back_off = _BACK_OFF.search(message or "")
        return {
            "name": meta["name"],
            "phase": status.get("phase"),
            "state": shown,
            "running": running,
            "ready": bool(cs.get("ready")),
            "ip": status.get("podIP"),
            "node": (pod.get("spec") or {}).get("nodeName"),
            "revision": (meta.get("labels") or {}).get(HASH_LABEL)
            or (meta.get("labels") or {}).get("controller-revision-hash"),
            "restarts": _int(cs.get("restartCount")),
            "started_at": _iso_of((state.get("running") or {}).get("startedAt")),
            "message": message,
            "back_off": back_off.group(1) if back_off else None,
            "last_termination": {
                "reason": terminated.get("reason"),
                "exit_code": terminated.get("exitCode"),
                "started_at": _iso_of(terminated.get("startedAt")),
                "finished_at": _iso_of(terminated.get("finishedAt")),
                "message": terminated.get("message"),
                "current": "terminated" in state,
            } if terminated else None,
            "container_id": cs.get("containerID"),
            "image_id": cs.get("imageID"),
            "created_at": _iso_of(meta.get("creationTimestamp")),
        }

    @staticmethod
    def _rank(pod: dict[str, Any]) -> tuple[int, int]:
        """Lower is worse: stuck, then stopped, then starting, then unready, then fine."""
        if pod["state"] in STUCK:
            rank = 0
        elif pod["last_termination"] and pod["last_termination"]["current"]:
            rank = 1
        elif not pod["running"]:
            rank = 2
        else:
            rank = 3 if not pod["ready"] else 4
        return rank, -pod["restarts"]

    def _rollout(self, workload: dict[str, Any] | None,
                 pods: list[dict[str, Any]]) -> dict[str, Any]:
        """How far the current rollout is, as `kubectl rollout status` would say it."""
        if workload is None:
            ready = sum(1 for p in pods if p["ready"])
            return {"complete": bool(pods) and ready == len(pods), "failed": False,
                    "revision": None, "message": f"{ready} of {len(pods)} pods ready"}
        meta, spec, st = workload["metadata"], workload["spec"], workload.get("status") or {}
        desired = _int(spec.get("replicas"), 1)
        observed = _int(st.get("observedGeneration")) >= _int(meta.get("generation"))
        updated, total = _int(st.get("updatedReplicas")), _int(st.get("replicas"))
        ready, available = _int(st.get("readyReplicas")), _int(st.get("availableReplicas"))
        failed = False
        progressing: dict[str, Any] = {}
        if self.kind == "deployment":
            revision = _annotation(workload, REVISION)
            progressing = next((c for c in st.get("conditions") or []
                                if c.get("type") == "Progressing"), {})
            failed = progressing.get("reason") == "ProgressDeadlineExceeded"
            waiting_for = [
                (not observed, "the controller to see the new spec"),
                (updated < desired, f"{updated} of {desired} new replicas updated"),
                (total > updated, f"{total - updated} old replicas pending termination"),
                (available < updated, f"{available} of {updated} updated replicas available"),
            ]
        else:
            revision = st.get("updateRevision")
            waiting_for = [
                (not observed, "the controller to see the new spec"),
                (updated < desired and st.get("currentRevision") != st.get("updateRevision"),
                 f"{updated} of {desired} pods updated"),
                (ready < desired, f"{ready} of {desired} pods ready"),
            ]
        pending = [what for waiting, what in waiting_for if waiting]
        message = ("progress deadline exceeded: " + progressing.get("message", "")
                   if failed else "; ".join(pending) or "complete")
        return {"complete": not pending, "failed": failed, "revision": revision,
                "message": message}

    # What the service steps call

    def pod_ips(self) -> list[str]:
        """Pod IPs, ready pods first (each kind oldest first): where {pod_ip} points."""
        workload = self._workload()
        container = self._container_name(self._template(workload, []))
        views = [self._pod_view(p, container) for p in self._pods(workload)]
        ordered = sorted((v for v in views if v["ip"]),
                         key=lambda v: (not v["ready"], not v["running"]))
        return [v["ip"] for v in ordered]

    def status(self) -> dict[str, Any]:
        workload = self._workload()
        raw_pods = self._pods(workload)
        template = self._template(workload, raw_pods)
        container_name = self._container_name(template)
        container = self._container(template) if container_name else {}
        pods = [self._pod_view(p, container_name) for p in raw_pods]
        limits = (container.get("resources") or {}).get("limits") or {}
        requests = (container.get("resources") or {}).get("requests") or {}
        desired = (_int(workload["spec"].get("replicas"), 1) if workload is not None
                   else len(pods))
        st = (workload or {}).get("status") or {}
        running = [p for p in pods if p["running"]]
        worst = min(pods, key=self._rank) if pods else None
        terminations = [p["last_termination"] for p in pods if p["last_termination"]]
        ooms = [t for t in terminations if t["reason"] == "OOMKilled"]
        # The termination the report talks about: the latest OOM kill if there was one (the
        # playbooks say "killed for memory at ..."), else the worst pod's, else the latest.
        reported = (max(ooms, key=lambda t: t["finished_at"] or "") if ooms
                    else (worst or {}).get("last_termination")
                    or (max(terminations, key=lambda t: t["finished_at"] or "")
                        if terminations else None))
        if desired == 0 and not pods:
            state = "scaled_to_zero"
        elif not pods:
            state = "no_pods"
        elif worst and self._rank(worst)[0] >= 3:
            state = "running"
        else:
            state = worst["state"] if worst else "unknown"
        ready = sum(1 for p in pods if p["ready"])
        return {
            "runtime": "kubernetes",
            "name": self.name,
            "namespace": self.namespace,
            "workload": self.label,
            "state": state,
            "running": bool(running),
            "exit_code": reported["exit_code"] if reported else None,
            "oom_killed": bool(ooms),
            "error": (worst or {}).get("message") or (reported or {}).get("message"),
            "restart_count": sum(p["restarts"] for p in pods),
            "back_off": (worst or {}).get("back_off"),
            "health": "healthy" if pods and ready >= max(desired, 1) else "unhealthy",
            "started_at": (worst or {}).get("started_at")
            or next((p["started_at"] for p in running), None),
            "finished_at": reported["finished_at"] if reported else None,
            "termination_reason": reported["reason"] if reported else None,
            "image": container.get("image"),
            "memory_limit": parse_quantity(limits.get("memory")),
            "memory_request": parse_quantity(requests.get("memory")),
            "replicas": desired,
            "replicas_running": len(running),
            "replicas_ready": ready,
            "replicas_updated": _int(st.get("updatedReplicas")) if workload else None,
            "replicas_available": _int(st.get("availableReplicas")) if workload else None,
            "replica_states": [{"name": p["name"], "state": p["state"]} for p in pods],
            "rollout": self._rollout(workload, pods),
            "conditions": [{k: c.get(k) for k in ("type", "status", "reason", "message")}
                           for c in st.get("conditions") or []],
            "pods": pods,
            "events": self.events(workload, raw_pods),
        }

    def events(self, workload: dict[str, Any] | None, pods: list[dict[str, Any]],
               limit: int = 15) -> list[dict[str, Any]]:
        """Events of the workload, its ReplicaSets and pods (also the pods already gone):
        warnings first, then the latest; repeats folded into one with their count.

        What is the workload's follows owner references (pod -> ReplicaSet -> Deployment,
        pod -> StatefulSet), by uid, never names: `web-canary-...` is not `web`'s. A pod
        already gone is the workload's when one of its ReplicaSets said it created it."""
        found = self.api.call("list", "events", self.api.core.list_namespaced_event,
                              self.namespace, limit=1000)
        owners = self._owner_uids(workload)
        uids = owners | {p["metadata"]["uid"] for p in pods
                         if workload is None or _owned_by(p, owners)}
        created = {str(ev.get("message"))[len("Created pod: "):]
                   for ev in found.get("items") or []
                   if (ev.get("involvedObject") or {}).get("uid") in owners
                   and ev.get("reason") == "SuccessfulCreate"
                   and str(ev.get("message")).startswith("Created pod: ")}

        def ours(ev: dict[str, Any]) -> bool:
            obj = ev.get("involvedObject") or {}
            return obj.get("uid") in uids or (obj.get("kind") == "Pod"
                                               and obj.get("name") in created)

        folded: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        for ev in filter(ours, found.get("items") or []):
            obj = ev.get("involvedObject") or {}
            key = (ev.get("type") or "Normal", ev.get("reason") or "", obj.get("kind") or "",
                   ev.get("message") or "")
            count = _int((ev.get("series") or {}).get("count")) or _int(ev.get("count"), 1)
            first = _iso_of(ev.get("firstTimestamp") or ev.get("eventTime"))
            last = _iso_of(ev.get("lastTimestamp") or ev.get("eventTime")) or first
            entry = folded.setdefault(key, {"type": key[0], "reason": key[1], "kind": key[2],
                                            "message": key[3], "count": 0, "objects": [],
                                            "first_seen": first, "last_seen": last})
            entry["count"] += count
            if obj.get("name") not in entry["objects"] and len(entry["objects"]) < 5:
                entry["objects"].append(obj.get("name"))
            entry["first_seen"] = min(filter(None, (entry["first_seen"], first)), default=None)
            entry["last_seen"] = max(filter(None, (entry["last_seen"], last)), default=None)
        ordered = sorted(folded.values(), key=lambda e: e["last_seen"] or "", reverse=True)
        ordered.sort(key=lambda e: e["type"] != "Warning")  # stable: latest first in each
        return ordered[:limit]

    def _owner_uids(self, workload: dict[str, Any] | None) -> set[str]:
        """The uids that own the workload's pods: the workload's, and for a Deployment those
        of the ReplicaSets it owns."""
        if workload is None:
            return set()
        uid = str(workload["metadata"]["uid"])
        if self.kind != "deployment":
            return {uid}
        found = self.api.call("list", "replicasets", self.api.apps.list_namespaced_replica_set,
                              self.namespace, label_selector=self._selector(workload))
        return {uid} | {str(rs["metadata"]["uid"]) for rs in found.get("items") or []
                        if _owned_by(rs, {uid})}

    def logs(self, tail: int, since: float | None = None) -> list[str]:
        """The last `tail` lines of the service's container in each pod, with the previous
        container's (the one that crashed or was killed) where it restarted, merged in time
        order. Each line starts with the runtime's RFC 3339 timestamp."""
        workload = self._workload()
        raw = self._pods(workload)[:MAX_PODS]
        container = self._container_name(self._template(workload, raw))
        streams: list[list[str]] = []
        for pod in raw:
            view = self._pod_view(pod, container)
            wanted = []
            if view["restarts"] or (view["last_termination"]
                                    and not view["last_termination"]["current"]):
                wanted.append(True)
            if view["running"] or (view["last_termination"]
                                   and view["last_termination"]["current"]):
                wanted.append(False)
            for previous in wanted:
                with contextlib.suppress(PermanentError):  # no such container (any more)
                    text = self.api.call(
                        "get", "pods/log", self.api.core.read_namespaced_pod_log,
                        view["name"], self.namespace, container=container, previous=previous,
                        timestamps=True, tail_lines=tail, raw=True,
                        **({"since_seconds": max(1, int(since))} if since else {}))
                    streams.append(text.splitlines())
        merged = list(heapq.merge(*streams, key=_line_time))
        return merged[-tail:]

    def _docker_containers(self, views: list[dict[str, Any]]) -> dict[str, str]:
        """{pod: docker container id} for pods whose container this machine's Docker engine
        runs (dockershim on this node); empty when there is no such engine."""
        ids = {v["name"]: v["container_id"].split("://", 1)[1] for v in views
               if v["running"] and (v["container_id"] or "").startswith("docker://")}
        if not ids:
            return {}
        from . import docker

        try:
            api = docker._api(None, min(5.0, self.timeout), read_only=True)
        except StepError:
            return {}
        try:
            found = {}
            for pod, cid in ids.items():
                with contextlib.suppress(StepError):
                    docker._translated(api.inspect_container, cid)
                    found[pod] = cid
            return found
        finally:
            api.close()

    def _docker_reader(self, container_id: str) -> Any:
        from types import SimpleNamespace

        from . import docker

        shim = SimpleNamespace(container=container_id, docker_host=None, previous_image=None)
        return docker.DockerReader(shim, self.timeout)

    def memory(self, window: float, interval: float) -> dict[str, Any]:
        """Memory use sampled over `window` seconds: metrics.k8s.io where it is served, else
        the pods' cgroups through this node's Docker engine; the pod growing fastest."""
        workload = self._workload()
        raw = self._pods(workload)
        template = self._template(workload, raw)
        container_name = self._container_name(template)
        container = self._container(template) if container_name else {}
        limit = parse_quantity(((container.get("resources") or {}).get("limits") or {})
                               .get("memory"))
        views = [v for v in (self._pod_view(p, container_name) for p in raw)
                 if v["running"]][:MAX_PODS]
        base = {"limit": limit, "limited": bool(limit)}
        if not views:
            return {**base, "samples": [], "cpu_pct": None, "source": None, "pod": None,
                    "note": "no pod of the service runs"}
        metrics, note = self._metrics_sampler(workload)
        if metrics is not None:
            per_pod, cpu = metrics(window, interval, {v["name"] for v in views})
            source = "metrics.k8s.io"
        else:
            on_docker = self._docker_containers(views)
            if not on_docker:
                return {**base, "samples": [], "cpu_pct": None, "source": None, "pod": None,
                        "note": f"{note}, and the pods' containers are not on this machine's "
                                f"Docker engine: memory use is unknown"}
            per_pod, cpu = self._docker_samples(on_docker, window, interval)
            source = "docker"
            note += "; sampled the containers' cgroups through this node's Docker engine"
        if not any(per_pod.values()):
            return {**base, "samples": [], "cpu_pct": None, "source": source, "pod": None,
                    "note": note + " (no samples came back)"}
        # The pod that grows fastest is the one a leak shows in (ties: the biggest).
        pod = max(per_pod, key=lambda name: (trend.fit(per_pod[name]).slope,
                                             per_pod[name][-1][1] if per_pod[name] else 0))
        return {**base, "samples": per_pod[pod], "cpu_pct": cpu.get(pod), "source": source,
                "pod": pod, "pods_sampled": len(per_pod), "note": note}

    def _metrics_sampler(self, workload: dict[str, Any] | None) -> tuple[Any, str]:
        """(a sampling function, or None and why not)."""
        selector = self._selector(workload)

        def fetch() -> dict[str, Any]:
            return dict(self.api.call("list", "pods.metrics.k8s.io",
                                      self.api.custom.list_namespaced_custom_object,
                                      "metrics.k8s.io", "v1beta1", self.namespace, "pods",
                                      label_selector=selector))

        try:
            fetch()
        except PermanentError as exc:
            text = str(exc)
            if text.startswith("not found"):
                return None, "no metrics.k8s.io API in this cluster (no metrics-server)"
            if text.startswith("forbidden"):
                return None, "metrics.k8s.io is not readable with these credentials"
            raise
        container = self.settings.container

        def sample(window: float, interval: float, pods: set[str]
                   ) -> tuple[dict[str, list[tuple[float, float]]], dict[str, float]]:
            series: dict[str, list[tuple[float, float]]] = {p: [] for p in pods}
            cpu: dict[str, float] = {}
            seen: dict[str, str] = {}
            origin: datetime | None = None
            started = time.monotonic()
            while True:
                for item in fetch().get("items") or []:
                    name = item["metadata"]["name"]
                    stamp = item.get("timestamp") or ""
                    if name not in series or seen.get(name) == stamp:
                        continue  # metrics-server refreshes every ~15 s: no duplicates
                    seen[name] = stamp
                    usage = next((c["usage"] for c in item.get("containers") or []
                                  if container is None or c["name"] == container), None)
                    at = _time(stamp) or datetime.now(UTC)
                    origin = origin or at
                    if usage:
                        series[name].append(((at - origin).total_seconds(),
                                             float(parse_quantity(usage.get("memory")) or 0)))
                        cores = usage.get("cpu")
                        if cores is not None:
                            cpu[name] = round(float(quantity(cores)) * 100.0, 1)
                if time.monotonic() - started + interval > window:
                    return series, cpu
                time.sleep(interval)

        return sample, "metrics from metrics.k8s.io"

    def _docker_samples(self, containers: dict[str, str], window: float, interval: float
                        ) -> tuple[dict[str, list[tuple[float, float]]], dict[str, float]]:
        readers = {pod: self._docker_reader(cid) for pod, cid in containers.items()}
        try:
            with ThreadPoolExecutor(max_workers=len(readers)) as pool:
                sampled = dict(zip(readers, pool.map(
                    lambda r: r.memory(window, interval), readers.values()), strict=True))
        finally:
            for reader in readers.values():
                reader.close()
        return ({pod: s["samples"] for pod, s in sampled.items()},
                {pod: s["cpu_pct"] for pod, s in sampled.items() if s["cpu_pct"] is not None})

    def processes(self) -> dict[str, Any]:
        """The processes in the first running pod's container, when this node's Docker engine
        runs it; Kubernetes itself lists processes only through exec, which diagnostics do
        not get."""
        workload = self._workload()
        raw = self._pods(workload)
        container = self._container_name(self._template(workload, raw))
        views = [v for v in (self._pod_view(p, container) for p in raw) if v["running"]]
        on_docker = self._docker_containers(views[:1])
        if not on_docker:
            return {"count": 0, "processes": [], "pod": None,
                    "note": "no process list: Kubernetes gives one only through exec "
                            "(pods/exec), which diagnostics are not allowed"}
        pod, cid = next(iter(on_docker.items()))
        reader = self._docker_reader(cid)
        try:
            return {**reader.processes(), "pod": pod, "source": "docker"}
        finally:
            reader.close()

    # Revisions

    def _revisions(self, workload: dict[str, Any]) -> list[dict[str, Any]]:
        """The workload's revisions, oldest first: {revision, name, uid, hash (its pods'
        pod-template-hash), sha256 (of its template), pods (the label its pods carry),
        image, created, replicas, current, template (deployments) or data (statefulsets)}."""
        selector = self._selector(workload)
        uid = workload["metadata"]["uid"]
        container = self._container_name(workload["spec"]["template"])

        def owned(obj: dict[str, Any]) -> bool:
            return _owned_by(obj, {uid})

        def image(template: dict[str, Any]) -> str | None:
            return next((c.get("image") for c in _containers(template)
                         if c["name"] == container), None)

        revisions = []
        if self.kind == "deployment":
            found = self.api.call("list", "replicasets",
                                  self.api.apps.list_namespaced_replica_set, self.namespace,
                                  label_selector=selector)
            current = _annotation(workload, REVISION)
            for rs in filter(owned, found.get("items") or []):
                revision = _annotation(rs, REVISION)
                if revision is None:
                    continue
                revisions.append({
                    "revision": int(revision), "name": rs["metadata"]["name"],
                    "uid": rs["metadata"].get("uid"),
                    "hash": (rs["metadata"].get("labels") or {}).get(HASH_LABEL),
                    "sha256": template_sha256(rs["spec"]["template"]),
                    "pods": (HASH_LABEL, (rs["metadata"].get("labels") or {}).get(HASH_LABEL)),
                    "image": image(rs["spec"]["template"]),
                    "created": _iso_of(rs["metadata"].get("creationTimestamp")),
                    "replicas": _int((rs.get("status") or {}).get("replicas")),
                    "change_cause": _annotation(rs, "kubernetes.io/change-cause"),
                    "reused": _annotation(rs, REVISION_HISTORY) is not None,
                    "current": revision == current,
                    "template": rs["spec"]["template"],
                })
        else:
            found = self.api.call("list", "controllerrevisions",
                                  self.api.apps.list_namespaced_controller_revision,
                                  self.namespace, label_selector=selector)
            current = (workload.get("status") or {}).get("updateRevision")
            for cr in filter(owned, found.get("items") or []):
                template = ((cr.get("data") or {}).get("spec") or {}).get("template") or {}
                revisions.append({
                    "revision": _int(cr.get("revision")), "name": cr["metadata"]["name"],
                    "uid": cr["metadata"].get("uid"),
                    "hash": cr["metadata"]["name"].rsplit("-", 1)[-1],
                    "sha256": template_sha256(cr.get("data")),
                    "pods": ("controller-revision-hash", cr["metadata"]["name"]),
                    "image": image(template),
                    "created": _iso_of(cr["metadata"].get("creationTimestamp")),
                    "replicas": None, "change_cause": None, "reused": False,
                    "current": cr["metadata"]["name"] == current,
                    "data": cr.get("data"),
                })
        return sorted(revisions, key=lambda r: r["revision"])

    def _revision_image_ids(self, workload: dict[str, Any], revision: dict[str, Any]
                            ) -> list[str]:
        """The image IDs that the running pods of `revision` report, oldest pod first."""
        key, value = revision["pods"]
        container = self._container_name(workload["spec"]["template"])
        if value is None:
            return []
        ids = [pod_image_id([p], container) for p in self._pods(workload)
               if (p["metadata"].get("labels") or {}).get(key) == value]
        return [i for i in ids if i]

    def pin_rollback(self, image: str) -> dict[str, Any]:
        """The pins of the revision a rollback to `image` returns to (see
        diagnostics.kubernetes_rollback): what the approval binds to."""
        workload = self._workload()
        if workload is None:
            raise PermanentError(f"{self.label} names pods, not a workload: a rollback needs "
                                 "`deployment:` or `statefulset:` in the inventory")
        revision = target_revision(self._revisions(workload), image, self.label)
        return pin(revision, next(iter(self._revision_image_ids(workload, revision)), None))

    def _reactivated_at(self, revision: dict[str, Any]) -> datetime | None:
        """When a ReplicaSet that a rollback brought back was scaled up again (its creation
        time is from its first life), from the Deployment's ScalingReplicaSet events."""
        found = self.api.call("list", "events", self.api.core.list_namespaced_event,
                              self.namespace, field_selector=f"involvedObject.name={self.name}")
        times = [_time(ev.get("lastTimestamp") or ev.get("eventTime"))
                 for ev in found.get("items") or []
                 if ev.get("reason") == "ScalingReplicaSet"
                 and (ev.get("message") or "").startswith(
                     f"Scaled up replica set {revision['name']} ")]
        return max(filter(None, times), default=None)

    def deployment(self) -> dict[str, Any]:
        """The running image, when its revision was rolled out, and the image before it."""
        workload = self._workload()
        raw = self._pods(workload)
        template = self._template(workload, raw)
        container_name = self._container_name(template)
        image = self._container(template).get("image") if container_name else None
        views = [self._pod_view(p, container_name) for p in raw]
        revisions = self._revisions(workload) if workload is not None else []
        current = next((r for r in revisions if r["current"]), None)
        deployed: datetime | None = None
        previous = None
        if current is not None:
            deployed = _time(current["created"])
            if current["reused"]:
                with contextlib.suppress(PermanentError):  # events are a bonus here
                    deployed = max(filter(None, (deployed, self._reactivated_at(current))))
            # The image a rollback returns to: the latest earlier revision that ran another
            # image (a restart or a config change keeps the image).
            previous = next((r for r in reversed(revisions)
                             if r["revision"] < current["revision"] and r["image"] != image),
                            None)
        elif views:  # pods of a selector: the oldest that runs the image now
            deployed = min(filter(None, (_time(v["created_at"]) for v in views)), default=None)
        running_ids = [v["image_id"] for v in views
                       if v["running"] and v["image_id"]
                       and (current is None or self.kind != "deployment"
                            or v["revision"] == current["name"].rsplit("-", 1)[-1])]
        return {
            "image": image,
            "image_id": running_ids[0] if running_ids else None,
            "deployed_at": _iso(deployed),
            "age_s": round((datetime.now(UTC) - deployed).total_seconds(), 1)
            if deployed else None,
            "previous_image": self.settings.previous_image
            or (previous["image"] if previous else None),
            "revision": current["revision"] if current else None,
            "previous_revision": previous["revision"] if previous else None,
            "history": [{k: r[k] for k in ("revision", "name", "image", "created", "replicas",
                                            "change_cause", "current")}
                        for r in revisions[-10:]],
            "rollout": self._rollout(workload, views) if workload is not None else None,
        }


class KubernetesOperator(KubernetesReader):
    """What remedies get: the reads, plus the changes. Each change is one PATCH (what kubectl
    sends for the same command) and then waits for the rollout to finish, or fails saying
    which pods are stuck and why."""

    def __init__(self, settings: Any, timeout: float) -> None:
        super().__init__(settings, timeout, read_only=False)
        self.rollout_timeout = max(5.0, min(float(settings.rollout_timeout), timeout - 5.0))

    def _require_workload(self) -> dict[str, Any]:
        workload = self._workload()
        if workload is None:
            raise PermanentError(f"{self.label} names pods, not a workload: remedies need "
                                 "`deployment:` or `statefulset:` in the inventory")
        return workload

    def _patch(self, body: Any) -> None:
        if self.kind == "deployment":
            self.api.call("patch", "deployments", self.api.apps.patch_namespaced_deployment,
                          self.name, self.namespace, body)
        else:
            self.api.call("patch", "statefulsets", self.api.apps.patch_namespaced_stateful_set,
                          self.name, self.namespace, body)

    def _pod_names(self) -> set[str]:
        return {p["metadata"]["name"] for p in self._pods(self._workload())}

    def _wait_rollout(self, since: float) -> dict[str, Any]:
        """Wait until the rollout is complete; its outcome, or a PermanentError that says
        how far it got and which new pods are stuck."""
        started = time.monotonic()
        deadline = started + self.rollout_timeout
        began = datetime.now(UTC).timestamp() - (time.monotonic() - since) - 1.0
        while True:
            workload = self._require_workload()
            raw = self._pods(workload)
            container = self._container_name(workload["spec"]["template"])
            views = [self._pod_view(p, container) for p in raw]
            progress = self._rollout(workload, views)
            if progress["complete"]:
                return {"complete": True, "seconds": round(time.monotonic() - since, 1),
                        "revision": progress["revision"],
                        "ready": sum(1 for v in views if v["ready"]),
                        "pods": sorted(v["name"] for v in views)}
            new = [v for v in views
                   if (_time(v["created_at"]) or datetime.now(UTC)).timestamp() >= began]
            stuck = [v for v in new if v["state"] in STUCK
                     and (v["state"] != "CrashLoopBackOff" or v["restarts"] >= 2)]
            if progress["failed"] or stuck or time.monotonic() > deadline:
                why = progress["message"]
                if stuck:
                    why += "; " + ", ".join(
                        f"{v['name']} {v['state']}" + (f" ({v['message']})" if v["message"]
                                                       else "") for v in stuck)
                raise PermanentError(
                    f"the change to {self.label} was applied, but its rollout did not finish "
                    f"({round(time.monotonic() - since, 1)} s): {why}")
            time.sleep(0.5)

    def restart(self, stop_timeout: float | None = None) -> dict[str, Any]:
        """`kubectl rollout restart`: a new restartedAt annotation in the pod template, so
        that the controller replaces every pod under the workload's rollout strategy (the
        pods' own terminationGracePeriodSeconds applies, not `stop_timeout`)."""
        self._require_workload()
        before = self._pod_names()
        started = time.monotonic()
        now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        self._patch({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}})
        rollout = self._wait_rollout(started)
        return {"restarted": sorted(before), "count": len(before),
                "new_pods": sorted(set(rollout["pods"]) - before), "restarted_at": now,
                "rollout": rollout}

    def start(self) -> dict[str, Any]:
        """Scaled to zero: one replica again. Otherwise nothing to start: Kubernetes restarts
        crashed containers itself (service.restart replaces the pods)."""
        workload = self._require_workload()
        if _int(workload["spec"].get("replicas"), 1) > 0:
            return {"started": [], "count": 0,
                    "note": "every replica is scheduled; Kubernetes restarts containers itself"}
        result = self.scale(1)
        return {"started": result["added"], "count": len(result["added"]),
                "rollout": result["rollout"]}

    def set_memory_limit(self, limit: int) -> dict[str, Any]:
        from .service import refuse_unsafe_memory_limit  # a last line: 0 lifts the limit

        refuse_unsafe_memory_limit(limit)
        workload = self._require_workload()
        container = self._container(workload["spec"]["template"])
        resources = container.get("resources") or {}
        before = parse_quantity((resources.get("limits") or {}).get("memory"))
        request = parse_quantity((resources.get("requests") or {}).get("memory"))
        change: dict[str, Any] = {"limits": {"memory": format_quantity(limit)}}
        if request and request > limit:  # a request above the limit would be refused
            change["requests"] = {"memory": format_quantity(limit)}
        started = time.monotonic()
        # Strategic merge: the containers list merges by name, other fields stay.
        self._patch({"spec": {"template": {"spec": {"containers": [
            {"name": container["name"], "resources": change}]}}}})
        rollout = self._wait_rollout(started)
        return {"before": before, "after": limit, "container": container["name"],
                "containers": rollout["pods"], "rollout": rollout}

    def rollback(self, image: str, stop_timeout: float | None = None, *,
                 pinned: dict[str, Any] | None = None) -> dict[str, Any]:
        """`kubectl rollout undo --to-revision=N`: N's pod template goes back into the
        workload, and the controller scales that revision's ReplicaSet up again. N is the
        revision `pinned` when the rollback was proposed (refused, saying what changed, when
        it is gone or its template differs: diagnostics.kubernetes_rollback), or, unpinned,
        the latest earlier revision that runs `image`."""
        workload = self._require_workload()
        current_image = self._container(workload["spec"]["template"]).get("image")
        if current_image == image:
            raise PermanentError(f"{self.label} already runs {image}")
        revisions = self._revisions(workload)
        if pinned is None:
            target = target_revision(revisions, image, self.label)
        else:
            target = approved_revision(
                revisions, pinned, image, self.label,
                lambda revision: self._revision_image_ids(workload, revision))
        started = time.monotonic()
        if self.kind == "deployment":
            template = copy.deepcopy(target["template"])
            (template.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
            self._patch([{"op": "replace", "path": "/spec/template", "value": template}])
        else:
            self._patch(target["data"])  # a ControllerRevision holds the patch itself
        rollout = self._wait_rollout(started)
        result = {"from_image": current_image, "to_image": image,
                  "to_revision": target["revision"], "revision": rollout["revision"],
                  "replicaset": target["name"], "replicaset_uid": target["uid"],
                  "template_hash": target["hash"], "containers": rollout["pods"],
                  "rollout": rollout}
        if pinned is not None:
            # A tag re-pointed on the node shows only in what the new pods report.
            after = self._revision_image_ids(self._require_workload(), target)
            moved = image_id_changes(pinned.get("pod_image_id"), after)
            if moved:
                raise PermanentError(
                    f"{self.label} was rolled back to revision {target['revision']} "
                    f"({target['name']}), but its pods run another image than the one "
                    f"approved: {'; '.join(moved)}")
            result["image_ids"] = sorted(set(after))
        return result

    def scale(self, replicas: int) -> dict[str, Any]:
        workload = self._require_workload()
        before_count = _int(workload["spec"].get("replicas"), 1)
        before = self._pod_names()
        started = time.monotonic()
        body = {"spec": {"replicas": replicas}}
        if self.kind == "deployment":
            self.api.call("patch", "deployments/scale",
                          self.api.apps.patch_namespaced_deployment_scale,
                          self.name, self.namespace, body)
        else:
            self.api.call("patch", "statefulsets/scale",
                          self.api.apps.patch_namespaced_stateful_set_scale,
                          self.name, self.namespace, body)
        rollout = self._wait_rollout(started)
        after = set(rollout["pods"])
        return {"replicas": replicas, "before": before_count,
                "added": sorted(after - before), "removed": sorted(before - after),
                "rollout": rollout}

