"""Services, runtime-neutral: `service.*` steps whose inventory target says where it runs.

    targets:
      journey-api:
        kind: service
        runtime: docker                 # or kubernetes: the playbooks do not change
        container: journey-api
        health_url: http://10.0.0.5:8080/health
        endpoints: [http://10.0.0.5:8080/api/accounts]
      journey-api-k8s:
        kind: service
        runtime: kubernetes
        namespace: journey
        deployment: journey-api         # or statefulset:, or a label selector:
        health_url: http://{pod_ip}:8080/health   # a ready pod's IP, looked up per step
        endpoints: ["http://{pod_ip}:8080/api/accounts"]  # (quoted: braces in [...])

A probe gets a `ServiceView`: the runtime's read-only reader plus an HTTP client that can
only GET. A remedy gets a `ServiceControl`: the runtime's operator. The runtimes are
`diagnostics.docker` and `diagnostics.kubernetes`; their readers are `ServiceReader`s
(status, logs, memory, processes, deployment, ...) and their operators `ServiceRuntime`s
(restart, start, rollback, scale, set_memory_limit, ...), the Protocols of
`diagnostics.runtime`, with results of the same shape. Health, endpoint and
error-rate checks go through `diagnostics.http`; log classes through `diagnostics.logclass`;
memory trends through `diagnostics.trend`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    model_validator,
)

from runner.context import StepContext
from runner.errors import PermanentError
from runner.model import Duration
from runner.registry import Backend, Registry, StepKind, Target

from . import logclass, trend
from .runtime import ServiceReader, ServiceRuntime

if TYPE_CHECKING:
    from .kubernetes import KubernetesReader

KIND = "service"
POD_IP = "{pod_ip}"


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    health_url: str | None = Field(None, description="GET answers 2xx when the service is up")
    endpoints: list[str] = Field(default_factory=list, description="URLs the sweep checks")
    http_timeout: Duration = 5.0
    verify_tls: bool = True
    previous_image: str | None = Field(None, description="the image a rollback returns to")


class DockerService(_Common):
    runtime: Literal["docker"]
    container: str = Field(description="the service's container (replicas are cloned from it)")
    docker_host: str | None = Field(None, description="default: DOCKER_HOST, else the current "
                                    "Docker context (DOCKER_CONTEXT, ~/.docker/config.json), "
                                    "else the local socket")
    stop_timeout: Duration = 10.0


class KubernetesService(_Common):
    runtime: Literal["kubernetes"]
    namespace: str | None = Field(None, description="default: the kubeconfig context's "
                                  "namespace, in a pod its own, else `default` (as kubectl)")
    deployment: str | None = Field(None, description="the service's Deployment")
    statefulset: str | None = Field(None, description="or its StatefulSet")
    selector: str | None = Field(None, description="or a label selector of its pods "
                                 "(diagnostics only: remedies need a workload)")
    container: str | None = Field(None, description="the service's container in the pod; "
                                  "default: the first")
    kubeconfig: str | None = Field(None, description="for diagnostics (a read-only role); "
                                   "default: KUBECONFIG, ~/.kube/config, then in-cluster")
    context: str | None = None
    action_kubeconfig: str | None = Field(None, description="for remedies only; "
                                          "default: kubeconfig")
    action_context: str | None = None
    rollout_timeout: Duration = Field(90.0, description="how long a remedy waits for its "
                                      "rollout to finish")

    @model_validator(mode="after")
    def _one_workload(self) -> KubernetesService:
        named = [k for k in ("deployment", "statefulset", "selector") if getattr(self, k)]
        if len(named) != 1:
            raise ValueError("name exactly one of deployment, statefulset or selector"
                             + (f" (not {' and '.join(named)})" if named else ""))
        return self


RuntimeSettings = DockerService | KubernetesService


class ServiceSettings(RootModel[Annotated[RuntimeSettings, Field(discriminator="runtime")]]):
    """One service's inventory entry; `runtime:` picks the rest of its fields."""

    model_config = ConfigDict(frozen=True)


def _runtime_settings(target: Target) -> RuntimeSettings:
    settings = target.settings
    assert isinstance(settings, ServiceSettings)
    return settings.root


# Handles


@dataclass
class ServiceView:
    """What a probe gets: reads only."""

    target: str
    settings: RuntimeSettings
    runtime: ServiceReader
    http: Any  # diagnostics.http read-only client
    _pod_ips: list[str] | None = None

    def cancel(self) -> None:
        self.runtime.cancel()
        self.http.cancel()

    def url(self, url: str) -> str | None:
        """`url` with `{pod_ip}` filled in (Kubernetes: a ready pod's IP, the same one for
        every URL of this step); None when no pod has an IP."""
        if POD_IP not in url:
            return url
        if not isinstance(self.settings, KubernetesService):
            raise PermanentError(f"{self.target}: {POD_IP} in a URL needs runtime: kubernetes")
        if self._pod_ips is None:
            self._pod_ips = list(self._pods_reader().pod_ips())
        return url.replace(POD_IP, self._pod_ips[0]) if self._pod_ips else None

    def _pods_reader(self) -> KubernetesReader:
        # Pods and their IPs are Kubernetes' own: not part of the runtime Protocol.
        from .kubernetes import KubernetesReader

        assert isinstance(self.runtime, KubernetesReader)
        return self.runtime

    def no_pod(self, url: str) -> dict[str, Any]:
        """A failed check for a URL that has no pod to go to (what check_health returns)."""
        reader = self._pods_reader()
        return {"ok": False, "url": url, "status": None, "latency_ms": None,
                "error_class": "no_pod", "body_excerpt": None,
                "error": f"no pod of {reader.label} in {reader.namespace} has an "
                         "IP: nothing to send the request to"}


@dataclass
class ServiceControl:
    """What a remedy gets, only through the gate."""

    target: str
    settings: RuntimeSettings
    runtime: ServiceRuntime

    def cancel(self) -> None:
        self.runtime.cancel()

    def interrupt(self) -> None:
        """The remedy's deadline passed: stop where the action can put things back."""
        self.runtime.interrupt()


def _reader(settings: RuntimeSettings, timeout: float,
            home: Path | None = None) -> ServiceReader:
    """The runtime's read-only reader (probes) for this service."""
    if isinstance(settings, KubernetesService):
        from . import kubernetes

        return kubernetes.KubernetesReader(settings, timeout)
    from . import docker

    return docker.DockerReader(settings, timeout, home=home)


def _operator(settings: RuntimeSettings, ctx: StepContext) -> ServiceRuntime:
    """The runtime's operator (remedies, through the gate) for this service."""
    if isinstance(settings, KubernetesService):
        from . import kubernetes

        return kubernetes.KubernetesOperator(settings, ctx.timeout)
    from . import docker

    return docker.DockerOperator(settings, ctx.timeout, home=ctx.home)


class ServiceConnector:
    def prepare(self) -> None:
        import httpx  # noqa: F401 - imported before the steps' clocks start

        from runner.extras import missing_module

        if missing_module("docker") is None:  # [docker] may not be installed, nor needed
            import docker  # noqa: F401

    def extras(self, target: Target) -> list[str]:
        """The runtime's client library: [docker] or [kubernetes] (runner.extras)."""
        return ["kubernetes" if isinstance(_runtime_settings(target), KubernetesService)
                else "docker"]

    @contextmanager
    def probe(self, target: Target, ctx: StepContext) -> Iterator[ServiceView]:
        from . import http

        settings = _runtime_settings(target)
        reader = _reader(settings, ctx.timeout, ctx.home)
        client = http.open_client(timeout=min(settings.http_timeout, ctx.timeout),
                                  verify_tls=settings.verify_tls)
        try:
            yield ServiceView(target.name, settings, reader, client)
        finally:
            client.close()
            reader.close()

    def warnings(self, target: Target) -> list[str]:
        """What `plan` and `validate` say about the setup: Kubernetes probes that would
        fall back to broad default credentials (they refuse to run)."""
        settings = _runtime_settings(target)
        if isinstance(settings, KubernetesService):
            from .kubernetes import probe_credentials_problem

            problem = probe_credentials_problem(settings)
            return [problem] if problem else []
        return []

    def identity(self, target: Target, timeout: float) -> dict[str, str]:
        """What the service's name resolves to now (Docker: engine and container id;
        Kubernetes: API server, namespace and workload uid)."""
        reader = _reader(_runtime_settings(target), timeout)
        try:
            return dict(reader.identity())
        finally:
            reader.close()

    @contextmanager
    def action(self, target: Target, ctx: StepContext) -> Iterator[ServiceControl]:
        settings = _runtime_settings(target)
        operator = _operator(settings, ctx)
        try:
            yield ServiceControl(target.name, settings, operator)
        finally:
            operator.close()


# Probes


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoParams(_Params):
    pass


class HealthParams(_Params):
    expect_status: int | None = None
    expect_body: str | None = None


class LogParams(_Params):
    tail: int = Field(500, ge=1, le=20000)
    since: Duration | None = Field(None, description="only lines this recent")
    excerpt: int = Field(15, ge=0, le=200, description="last error lines to show")


class MemoryParams(_Params):
    window: Duration = Field(10.0, description="sample for this long")
    interval: Duration = 1.0


class ErrorRateParams(_Params):
    url: str | None = Field(None, description="default: the first endpoint, else health_url")
    requests: int = Field(20, ge=1, le=1000)
    window: Duration = 5.0


class DeployParams(_Params):
    within: Duration = Field(3600.0, description="a deploy this recent counts as recent")
    tail: int = Field(2000, ge=1, le=20000, description="log lines searched for the first error")


def health(view: ServiceView, params: HealthParams) -> dict[str, Any]:
    from . import http

    template = view.settings.health_url
    if not template:
        raise PermanentError(f"{view.target} has no health_url in the inventory")
    url = view.url(template)
    if url is None:
        return view.no_pod(template)
    return dict(http.check_health(view.http, url, expect_status=params.expect_status,
                                  expect_body=params.expect_body))


def endpoints(view: ServiceView, params: NoParams) -> dict[str, Any]:
    from . import http

    if not view.settings.endpoints:
        raise PermanentError(f"{view.target} lists no endpoints in the inventory")
    urls = [view.url(url) for url in view.settings.endpoints]
    if any(url is None for url in urls):  # no pod: every endpoint fails alike
        results = [view.no_pod(url) for url in view.settings.endpoints]
        return {"total": len(results), "ok": 0, "failed": len(results), "all_fail": True,
                "some_fail": False, "failing": [r["url"] for r in results],
                "results": results}
    return dict(http.sweep(view.http, [url for url in urls if url is not None]))


def error_rate(view: ServiceView, params: ErrorRateParams) -> dict[str, Any]:
    from . import http

    template = (params.url or next(iter(view.settings.endpoints), None)
                or view.settings.health_url)
    if not template:
        raise PermanentError(f"{view.target} has no endpoints or health_url to sample")
    url = view.url(template)
    if url is None:
        return {"url": template, "requests": params.requests, "window_s": params.window,
                "ok": 0, "errors": params.requests, "error_pct": 100.0, "http_5xx": 0,
                "by_class": {"no_pod": params.requests}, "p50_ms": None, "p95_ms": None,
                "max_ms": None}
    return dict(http.error_rate(view.http, url, requests=params.requests, window=params.window))


def status(view: ServiceView, params: NoParams) -> dict[str, Any]:
    return dict(view.runtime.status())


def logs(view: ServiceView, params: LogParams) -> dict[str, Any]:
    lines = view.runtime.logs(params.tail, params.since)
    summary = logclass.classify(lines)
    # The runtime's own timestamp prefix goes: the line keeps the application's.
    errors = [logclass.split_timestamp(line)[1] for line in lines if logclass.is_error(line)]
    return {**summary, "excerpt": errors[-params.excerpt:] if params.excerpt else []}


def memory(view: ServiceView, params: MemoryParams) -> dict[str, Any]:
    sampled = view.runtime.memory(params.window, params.interval)
    state = view.runtime.status()
    found = trend.summary(sampled["samples"], sampled["limit"] if sampled["limited"] else None)
    # Where the samples came from, when the runtime says (Kubernetes: metrics.k8s.io, the
    # node's Docker engine, or nothing, and which pod).
    extra: dict[str, Any] = {k: sampled[k] for k in ("source", "pod", "note") if k in sampled}
    return {**found, "limited": sampled["limited"], "cpu_pct": sampled["cpu_pct"],
            "oom_killed": state["oom_killed"], "restart_count": state["restart_count"],
            "running": state["running"], **extra}


def processes(view: ServiceView, params: NoParams) -> dict[str, Any]:
    return dict(view.runtime.processes())


def recent_deploy(view: ServiceView, params: DeployParams) -> dict[str, Any]:
    deployed = view.runtime.deployment()
    first_error = logclass.classify(view.runtime.logs(params.tail))["first_error_at"]
    age = deployed["age_s"]
    before_errors = bool(first_error and deployed["deployed_at"]
                         and deployed["deployed_at"] <= first_error)
    return {**deployed, "recent": age is not None and age <= params.within,
            "first_error_at": first_error, "deploy_before_first_error": before_errors}


# Actions


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
MEMORY_FLOOR = 4 * 1024 * 1024  # Docker refuses less than 6 MiB; 0 would mean "unlimited"


def parse_size(value: Any) -> int:
    """Whole bytes from 268435456, "256m", "1.5g", "512MiB"; a bool, a fraction of a byte
    or anything else is a ValueError (never rounded: 0.5 must not become 0, "no limit")."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"bad size {value!r}: use bytes or e.g. 512m, 2g")
    if isinstance(value, int | float):
        number, power = Decimal(str(value)), 0
    else:
        match = _SIZE.match(value)
        if not match:
            raise ValueError(f"bad size {value!r}: use bytes or e.g. 512m, 2g")
        number, power = Decimal(match.group(1)), " kmgt".index(match.group(2).lower() or " ")
    size = number * 1024**power
    if size != size.to_integral_value():
        raise ValueError(f"bad size {value!r}: not a whole number of bytes")
    return int(size)


def check_memory_limit(limit: object) -> int:
    """`limit` when it is a whole number of bytes of at least MEMORY_FLOOR; else ValueError.
    Both runtimes' operators call it again as a last line: 0 or -1 would lift the limit."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < MEMORY_FLOOR:
        raise ValueError(f"refusing a memory limit of {limit!r}: it must be a whole number "
                         f"of bytes, at least {MEMORY_FLOOR >> 20} MiB")
    return limit


def refuse_unsafe_memory_limit(limit: object) -> None:
    """check_memory_limit for the runtimes' operators, as the step's error."""
    try:
        check_memory_limit(limit)
    except ValueError as exc:
        raise PermanentError(str(exc)) from None


Size = Annotated[int, BeforeValidator(parse_size), AfterValidator(check_memory_limit),
                 Field(json_schema_extra={"examples": ["512m", "2g"]})]


class RestartParams(_Params):
    stop_timeout: Duration | None = Field(None, description="default: the inventory's")


class RollbackParams(_Params):
    to_image: str = Field(description="the image to run again, as the proposal shows it")
    image_id: str | None = Field(None, description="the id to_image had when the rollback was "
                                 "proposed (Docker; filled in then): what is deployed")
    # Kubernetes: the revision returned to, pinned when proposed (diagnostics.kubernetes.rollback)
    revision: int | None = Field(None, description="Kubernetes: the revision returned to")
    revision_uid: str | None = Field(None, description="Kubernetes: its ReplicaSet's (or "
                                     "ControllerRevision's) uid; the rollback deploys it")
    template_hash: str | None = Field(None, description="Kubernetes: its pod-template-hash")
    template_sha256: str | None = Field(None, description="Kubernetes: a digest of its "
                                        "pod template")
    pod_image_id: str | None = Field(None, description="Kubernetes: the image ID a pod of "
                                     "that revision reported, if one ran")

    def pins(self) -> dict[str, Any]:
        """The Kubernetes revision pins (diagnostics.kubernetes.rollback); None when unpinned."""
        from .kubernetes.rollback import PIN_FIELDS

        return {name: getattr(self, name) for name in PIN_FIELDS}


def pin_rollback(view: ServiceView, params: RollbackParams) -> RollbackParams:
    """Pin what the rollback returns to as it is now, so that the approver sees, and the
    rollback deploys, exactly that. Docker: the tag's image id (deployed by id even if the
    tag is moved after the approval). Kubernetes: the revision whose template runs the
    image, by ReplicaSet uid, pod-template-hash and template digest (refused if any of them
    changes; a tag re-pointed on a node is caught only through a pod's image ID, see
    diagnostics.kubernetes.rollback)."""
    pinned = params.image_id if isinstance(view.settings, DockerService) else params.revision_uid
    if pinned is not None:
        return params
    return params.model_copy(update=view.runtime.pin_rollback(params.to_image))


def _explain_rollback(params: RollbackParams) -> str:
    from .kubernetes.rollback import explain

    return (f"re-create the service from image {params.to_image}"
            + (f" (id {params.image_id}, pinned now)" if params.image_id else "")
            + explain(params.pins()))


class ScaleParams(_Params):
    replicas: int = Field(ge=1)
    max: int = Field(ge=1, le=50, description="never more replicas than this")


class MemoryLimitParams(_Params):
    limit: Size = Field(description="bytes, or e.g. 512m; at least 4 MiB")
    max: Size = Field(description="never above this (bytes, or e.g. 2g)")

    @model_validator(mode="after")
    def _within_max(self) -> MemoryLimitParams:
        if self.limit > self.max:
            raise ValueError(f"a {self.limit >> 20} MiB limit is above the playbook's max "
                             f"of {self.max >> 20} MiB")
        return self


def restart(control: ServiceControl, params: RestartParams) -> dict[str, Any]:
    # None (or 0): the inventory's stop_timeout (Kubernetes: the pods' grace period)
    return dict(control.runtime.restart(params.stop_timeout or None))


def start(control: ServiceControl, params: NoParams) -> dict[str, Any]:
    return dict(control.runtime.start())


def rollback(control: ServiceControl, params: RollbackParams) -> dict[str, Any]:
    if params.image_id is not None:
        if not isinstance(control.settings, DockerService):
            raise PermanentError("image_id is pinned by Docker services only")
        return dict(control.runtime.rollback(params.to_image, image_id=params.image_id))
    if params.revision_uid is not None:
        if not isinstance(control.settings, KubernetesService):
            raise PermanentError("a revision is pinned by Kubernetes services only")
        return dict(control.runtime.rollback(params.to_image, pinned=params.pins()))
    return dict(control.runtime.rollback(params.to_image))


def scale(control: ServiceControl, params: ScaleParams) -> dict[str, Any]:
    if params.replicas > params.max:
        raise PermanentError(f"refusing {params.replicas} replicas: the playbook allows at "
                             f"most {params.max}")
    return dict(control.runtime.scale(params.replicas))


def set_memory_limit(control: ServiceControl, params: MemoryLimitParams) -> dict[str, Any]:
    if not MEMORY_FLOOR <= params.limit <= params.max:
        raise PermanentError(f"refusing a memory limit of {params.limit} bytes: it must be at "
                             f"least {MEMORY_FLOOR >> 20} MiB and at most the playbook's "
                             f"{params.max >> 20} MiB")
    return dict(control.runtime.set_memory_limit(params.limit))


def register(registry: Registry) -> None:
    registry.add_backend(Backend(KIND, ServiceConnector(), ServiceSettings,
                                 "a service on Docker (runtime: docker) or Kubernetes "
                                 "(runtime: kubernetes)"))

    def probe(name: str, func: Any, params: type[BaseModel], summary: str,
              result: dict[str, str], timeout: float = 30.0) -> None:
        registry.add(StepKind(f"service.{name}", KIND, func, params, False, summary, result,
                              timeout=timeout))

    def action(name: str, func: Any, params: type[BaseModel], summary: str,
               explain: Any, pin: Any = None) -> None:
        registry.add(StepKind(f"service.{name}", KIND, func, params, True, summary,
                              timeout=120.0, explain=explain, pin=pin))

    probe("health", health, HealthParams, "GET the health URL: up, or how it fails",
          {"ok": "2xx as expected", "error_class": "refused, timeout, tls, http_5xx, ...",
           "status": "HTTP status", "latency_ms": "round trip"})
    probe("endpoints", endpoints, NoParams, "check every endpoint at once",
          {"all_fail": "every endpoint failed (the database?)",
           "some_fail": "some failed (a code bug?)", "failing": "their URLs"})
    probe("error_rate", error_rate, ErrorRateParams, "sample requests over a window",
          {"error_pct": "share failing", "http_5xx": "5xx answers", "p50_ms / p95_ms": "latency"},
          timeout=120.0)
    probe("status", status, NoParams, "where and how the service runs",
          {"running": "bool", "state": "running, exited, restarting ...", "exit_code": "last",
           "oom_killed": "killed for memory", "restart_count": "restarts",
           "replicas / replicas_running": "counts", "memory_limit": "bytes or null"})
    probe("logs", logs, LogParams, "log tail with errors classified",
          {"classes": "{class: {count, first_seen, last_seen, sample}}",
           "top_class": "most frequent error class", "first_error_at": "ISO time",
           "excerpt": "the last error lines"})
    probe("memory", memory, MemoryParams, "memory sampled over a window, with its trend",
          {"growing": "bool", "growth_bytes_per_min": "slope", "used_pct": "of the limit",
           "seconds_to_limit": "projected", "oom_killed": "bool"}, timeout=300.0)
    probe("processes", processes, NoParams, "processes inside, biggest first",
          {"processes": "[{pid, user, rss_kb, cpu_pct, elapsed, args}]"})
    probe("recent_deploy", recent_deploy, DeployParams, "the running image and when it came",
          {"image": "running now", "previous_image": "what ran before, if known",
           "recent": "deployed within `within`", "deploy_before_first_error": "bool"})
    action("restart", restart, RestartParams, "restart every replica, one at a time",
           lambda p: "restart the service (every replica, one at a time)")
    action("start", start, NoParams, "start the replicas that are not running",
           lambda p: "start the replicas that are not running")
    action("rollback", rollback, RollbackParams, "run the previous image again",
           _explain_rollback, pin=pin_rollback)
    action("scale", scale, ScaleParams, "set the number of replicas",
           lambda p: f"scale to {p.replicas} replica(s) (max {p.max})")
    action("set_memory_limit", set_memory_limit, MemoryLimitParams, "change the memory limit",
           lambda p: f"set the memory limit to {p.limit >> 20} MiB (max {p.max >> 20} MiB)")
