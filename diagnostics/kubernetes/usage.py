"""How much a service on Kubernetes uses: memory sampled over a window (metrics.k8s.io
where a metrics-server serves it, else the pods' cgroups through this node's Docker engine),
and the processes of a pod's container (through that engine: Kubernetes lists processes only
through exec, which diagnostics do not get)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from runner.errors import PermanentError

from .. import docker, trend
from .objects import MAX_PODS, parse_quantity, parse_time, pod_view, quantity

if TYPE_CHECKING:
    from .reads import KubernetesReader


def _docker_containers(reader: KubernetesReader, views: list[dict[str, Any]]) -> dict[str, str]:
    """{pod: docker container id} for pods whose container this machine's Docker engine
    runs (dockershim on this node); empty when there is no such engine."""
    ids = {v["name"]: v["container_id"].split("://", 1)[1] for v in views
           if v["running"] and (v["container_id"] or "").startswith("docker://")}
    if not ids:
        return {}
    known = docker.engine_containers(ids.values(), min(5.0, reader.timeout))
    return {pod: cid for pod, cid in ids.items() if cid in known}


def memory(reader: KubernetesReader, window: float, interval: float) -> dict[str, Any]:
    """Memory use sampled over `window` seconds: metrics.k8s.io where it is served, else
    the pods' cgroups through this node's Docker engine; the pod growing fastest."""
    workload = reader.workload()
    raw = reader.pods(workload)
    template = reader.template(workload, raw)
    container_name = reader.container_name(template)
    container = reader.container(template) if container_name else {}
    limit = parse_quantity(((container.get("resources") or {}).get("limits") or {})
                           .get("memory"))
    views = [v for v in (pod_view(p, container_name) for p in raw)
             if v["running"]][:MAX_PODS]
    base = {"limit": limit, "limited": bool(limit)}
    if not views:
        return {**base, "samples": [], "cpu_pct": None, "source": None, "pod": None,
                "note": "no pod of the service runs"}
    metrics, note = _metrics_sampler(reader, workload)
    if metrics is not None:
        per_pod, cpu = metrics(window, interval, {v["name"] for v in views})
        source = "metrics.k8s.io"
    else:
        on_docker = _docker_containers(reader, views)
        if not on_docker:
            return {**base, "samples": [], "cpu_pct": None, "source": None, "pod": None,
                    "note": f"{note}, and the pods' containers are not on this machine's "
                            f"Docker engine: memory use is unknown"}
        per_pod, cpu = _docker_samples(reader.timeout, on_docker, window, interval)
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

def _metrics_sampler(reader: KubernetesReader, workload: dict[str, Any] | None) -> tuple[Any, str]:
    """(a sampling function, or None and why not)."""
    selector = reader.selector(workload)

    def fetch() -> dict[str, Any]:
        return dict(reader.api.call("list", "pods.metrics.k8s.io",
                                  reader.api.custom.list_namespaced_custom_object,
                                  "metrics.k8s.io", "v1beta1", reader.namespace, "pods",
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
    container = reader.settings.container

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
                at = parse_time(stamp) or datetime.now(UTC)
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


def _docker_samples(timeout: float, containers: dict[str, str], window: float, interval: float
                    ) -> tuple[dict[str, list[tuple[float, float]]], dict[str, float]]:
    readers = {pod: docker.container_reader(cid, timeout) for pod, cid in containers.items()}
    try:
        with ThreadPoolExecutor(max_workers=len(readers)) as pool:
            sampled = dict(zip(readers, pool.map(
                lambda r: r.memory(window, interval), readers.values()), strict=True))
    finally:
        for container_reader in readers.values():
            container_reader.close()
    return ({pod: s["samples"] for pod, s in sampled.items()},
            {pod: s["cpu_pct"] for pod, s in sampled.items() if s["cpu_pct"] is not None})


def processes(reader: KubernetesReader) -> dict[str, Any]:
    """The processes in the first running pod's container, when this node's Docker engine
    runs it; Kubernetes itself lists processes only through exec, which diagnostics do
    not get."""
    workload = reader.workload()
    raw = reader.pods(workload)
    container = reader.container_name(reader.template(workload, raw))
    views = [v for v in (pod_view(p, container) for p in raw) if v["running"]]
    on_docker = _docker_containers(reader, views[:1])
    if not on_docker:
        return {"count": 0, "processes": [], "pod": None,
                "note": "no process list: Kubernetes gives one only through exec "
                        "(pods/exec), which diagnostics are not allowed"}
    pod, cid = next(iter(on_docker.items()))
    container_reader = docker.container_reader(cid, reader.timeout)
    try:
        return {**container_reader.processes(), "pod": pod, "source": "docker"}
    finally:
        container_reader.close()
