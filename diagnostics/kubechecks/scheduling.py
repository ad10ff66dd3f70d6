"""`kubernetes.pending`: why the scheduler cannot place a pod, in its own words (the
`PodScheduled=False` condition's message, or the `FailedScheduling` event's) parsed into
causes; and pods placed on a node that do not start.

The scheduler says, per node, what ruled it out, then (1.19+) why preemption would not help:

    0/3 nodes are available: 1 Insufficient memory, 2 node(s) had taint
    {node-role.kubernetes.io/master: }, that the pod didn't tolerate.
    0/1 nodes are available: 1 pod has unbound immediate PersistentVolumeClaims.
    persistentvolumeclaim "data" not found

Wordings from Kubernetes 1.20 to 1.30 (`didn't match node selector` became `didn't match
Pod's node affinity/selector`, `had taint` became `had untolerated taint`).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from runner.model import Duration

from ..grading import worst
from ..kubernetes.objects import parse_quantity, parse_time, quantity
from . import kubeapi
from .podstate import (
    CONFIG_ERRORS,
    IMAGE_PULL,
    Workload,
    others_ready,
    pod_events,
    pod_name,
    read_workload,
    result,
    statuses,
    waiting,
)

_AVAILABLE = re.compile(r"(\d+)/(\d+) nodes are available:\s*(?P<reasons>.*)", re.DOTALL)
_ITEM = re.compile(r"^(?P<nodes>\d+)\s+(?P<text>.+)$", re.DOTALL)
_INSUFFICIENT = re.compile(r"^Insufficient (?P<resource>\S+)$", re.IGNORECASE)
_PVC_MISSING = re.compile(r'persistentvolumeclaim "(?P<name>[^"]+)" not found', re.IGNORECASE)
_TAINT = re.compile(r"\{(?P<taint>[^}]*)\}")

# (cause, pattern on one node's reason); the first that matches.
_CAUSES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (cause, re.compile(pattern, re.IGNORECASE)) for cause, pattern in (
        ("unbound_pvc", r"unbound (?:immediate )?PersistentVolumeClaims|didn't find available "
                        r"persistent volumes|volume node affinity conflict|not bound"),
        ("taint", r"\btaints?\b"),
        ("node_selector", r"didn't match (?:node selector|Pod's node affinity)|node affinity"),
        ("pod_affinity", r"pod (?:anti-)?affinity|anti-affinity"),
        ("unschedulable_node", r"were unschedulable|node\(s\) (?:was|were) unschedulable"),
        ("host_port", r"free ports"),
        ("too_many_pods", r"Too many pods"),
        ("topology_spread", r"topology spread"),
    ))

ADVICE = {
    "insufficient_memory": "no node has that much memory left to request: lower its memory "
                           "request or add capacity",
    "insufficient_cpu": "no node has that much CPU left to request: lower its CPU request or "
                        "add capacity",
    "insufficient": "no node has enough of a resource it requests: lower the request or add "
                    "nodes that have it",
    "unbound_pvc": "its PersistentVolumeClaim is not bound to a volume: check the claim's "
                   "storage class and its provisioner, or create a matching PersistentVolume",
    "missing_pvc": "it mounts a PersistentVolumeClaim that does not exist: create the claim "
                   "or fix the pod's volume",
    "taint": "the nodes carry taints it does not tolerate: add a toleration or remove the "
             "taint",
    "node_selector": "its nodeSelector or node affinity matches no node: fix the selector or "
                     "label a node",
    "pod_affinity": "its pod affinity or anti-affinity rules rule out every node: relax them "
                    "or add nodes",
    "unschedulable_node": "the nodes are cordoned (unschedulable): uncordon one or add nodes",
    "host_port": "the hostPort it asks for is taken on every node: drop the hostPort or add "
                 "nodes",
    "too_many_pods": "the nodes are at their pod limit: add nodes or raise maxPods",
    "topology_spread": "its topology spread constraints cannot be met: relax them or add "
                       "nodes in the missing zones",
    "scheduling_gated": "it has scheduling gates that nothing removed: check the controller "
                        "that should lift them",
    "other": "read the scheduler's message",
}


def _cause(text: str) -> str:
    insufficient = _INSUFFICIENT.match(text.strip())
    if insufficient:
        resource = insufficient.group("resource").lower()
        return f"insufficient_{resource}" if resource in ("cpu", "memory") else "insufficient"
    return next((cause for cause, pattern in _CAUSES if pattern.search(text)), "other")


def parse_scheduler_message(message: str | None) -> list[dict[str, Any]]:
    """The reasons in a scheduler message, most nodes first: [{nodes, reason, cause}];
    `nodes` is None for a reason that is not per node (a missing claim)."""
    if not message:
        return []
    text = message.split(" preemption:", 1)[0].strip()
    found: list[dict[str, Any]] = []
    available = _AVAILABLE.search(text)
    if available:
        reasons = available.group("reasons").strip().rstrip(".")
        # Items are "N text", split at ", N " (a taint's text has commas of its own).
        for item in re.split(r",\s+(?=\d+\s)", reasons):
            match = _ITEM.match(item.strip())
            if not match:
                continue
            reason = match.group("text").strip().rstrip(".")
            found.append({"nodes": int(match.group("nodes")), "reason": reason,
                          "cause": _cause(reason)})
    elif (missing := _PVC_MISSING.search(text)) is not None:
        found.append({"nodes": None, "reason": missing.group(0), "cause": "missing_pvc",
                      "claim": missing.group("name")})
    else:
        found.append({"nodes": None, "reason": text.rstrip("."), "cause": _cause(text)})
    return sorted(found, key=lambda r: -(r["nodes"] or 0))


def pod_requests(pod: dict[str, Any]) -> dict[str, str]:
    """What the pod asks the scheduler for: the sum of its containers' requests (memory in
    bytes' quantity, cpu in cores), the larger of that and any init container's."""
    spec = pod.get("spec") or {}

    def summed(containers: list[dict[str, Any]]) -> dict[str, float]:
        total: dict[str, float] = {}
        for container in containers:
            for resource, value in ((container.get("resources") or {}).get("requests")
                                    or {}).items():
                total[resource] = total.get(resource, 0.0) + _amount(resource, value)
        return total

    requests = summed(spec.get("containers") or [])
    for init in spec.get("initContainers") or []:
        for resource, value in summed([init]).items():
            requests[resource] = max(requests.get(resource, 0.0), value)
    return {resource: _shown(resource, value) for resource, value in sorted(requests.items())}


def _amount(resource: str, value: Any) -> float:
    return float(quantity(value)) if resource == "cpu" else float(parse_quantity(value) or 0)


def _shown(resource: str, value: float) -> str:
    if resource == "cpu":
        return f"{value:g}"
    for suffix, unit in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if value >= unit:
            return f"{value / unit:g}{suffix}"
    return f"{value:g}"


def explain_reasons(reasons: list[dict[str, Any]], pod: dict[str, Any]) -> dict[str, Any]:
    """The main cause of a scheduler verdict in words: {cause, explain, advice}."""
    if not reasons:
        return {"cause": "other", "explain": "the scheduler cannot place it",
                "advice": ADVICE["other"]}
    top = reasons[0]
    cause = top["cause"]
    spec = pod.get("spec") or {}
    requests = pod_requests(pod)
    if cause in ("insufficient_memory", "insufficient_cpu", "insufficient"):
        resource = _INSUFFICIENT.match(top["reason"])
        name = resource.group("resource") if resource else "a resource"
        asked = requests.get(name)
        said = f"it requests {asked} of {name}" if asked else f"it requests {name}"
        text = f"{said} and {top['nodes']} node(s) have too little left (Insufficient {name})"
    elif cause == "taint":
        taints = _TAINT.findall(top["reason"])
        text = (f"{top['nodes']} node(s) have taint(s) it does not tolerate "
                f"({', '.join('{' + t + '}' for t in taints) or top['reason']})")
    elif cause == "node_selector":
        selector = spec.get("nodeSelector")
        shown = ", ".join(f"{k}={v}" for k, v in sorted(selector.items())) if selector else None
        text = (f"its node selector ({shown}) matches no node" if shown
                else "its node affinity matches no node")
    elif cause in ("unbound_pvc", "missing_pvc"):
        claims = top.get("claim") or ", ".join(
            (v.get("persistentVolumeClaim") or {}).get("claimName", "")
            for v in spec.get("volumes") or [] if v.get("persistentVolumeClaim"))
        text = (f"its PersistentVolumeClaim {claims} does not exist" if cause == "missing_pvc"
                else f"its PersistentVolumeClaim {claims or '(?)'} is not bound to a volume")
    else:
        text = f"the scheduler says: {top['reason']}"
    return {"cause": cause, "explain": text, "advice": ADVICE.get(cause, ADVICE["other"])}


# kubernetes.pending


class PendingParams(kubeapi.Params):
    warning_after: Duration = Field(120.0, description="a scheduled pod not started after "
                                    "this long is a warning")


def grade_pending(workload: Workload, params: PendingParams) -> dict[str, Any]:
    """Pending pods: unschedulable ones with the scheduler's reason (critical); scheduled
    ones that have not started after `warning_after`, with their latest warning event. Pods
    waiting on an image or a config error are the other checks' (counted, not graded)."""
    stuck_elsewhere = set(IMAGE_PULL) | set(CONFIG_ERRORS) | {"CrashLoopBackOff"}
    found, elsewhere = [], 0
    for pod in workload.pods:
        status = pod.get("status") or {}
        if status.get("phase") != "Pending":
            continue
        if any(waiting(cs)[0] in stuck_elsewhere for cs, _ in statuses(pod)):
            elsewhere += 1
            continue
        name = pod_name(pod)
        created = parse_time(pod["metadata"].get("creationTimestamp"))
        age = (workload.now - created).total_seconds() if created else None
        scheduled = next((c for c in status.get("conditions") or []
                          if c.get("type") == "PodScheduled"), None)
        failed = pod_events(workload.events, name, {"FailedScheduling"})
        if (scheduled is not None and scheduled.get("status") == "False") or (failed and not (
                scheduled and scheduled.get("status") == "True")):
            message = (scheduled or {}).get("message") or (failed[0]["message"] if failed
                                                            else None)
            if (scheduled or {}).get("reason") == "SchedulingGated":
                reasons = [{"nodes": None, "reason": message or "scheduling gates",
                            "cause": "scheduling_gated"}]
            else:
                reasons = parse_scheduler_message(message)
            said = explain_reasons(reasons, pod)
            found.append({"pod": name, "level": "critical", "scheduled": False,
                          "age_s": age, "message": message, "reasons": reasons,
                          "requests": pod_requests(pod),
                          "failed_scheduling": sum(e["count"] for e in failed), **said})
        elif age is not None and age >= params.warning_after:
            warning = next((e for e in pod_events(workload.events, name)
                            if e.get("type") == "Warning"), None)
            waiting_for = sorted({str(waiting(cs)[0]) for cs, _ in statuses(pod)
                                  if waiting(cs)[0]}) or ["no container status"]
            message = warning["message"] if warning else None
            explain = (f"it was placed on {(pod.get('spec') or {}).get('nodeName')} but has "
                       f"not started in {age:.0f} s ({', '.join(waiting_for)})"
                       if scheduled else f"no scheduler has placed it in {age:.0f} s")
            advice = (f"the kubelet says: {warning['reason']}: {message}" if warning
                      else "check the node's kubelet and the pod's volumes"
                      if scheduled else "check that kube-scheduler runs, and the pod's "
                                        "schedulerName")
            found.append({"pod": name, "level": "warning", "scheduled": bool(scheduled),
                          "age_s": age, "message": message, "reasons": [],
                          "requests": pod_requests(pod), "failed_scheduling": 0,
                          "cause": warning["reason"] if warning else "not_started",
                          "explain": explain, "advice": advice})
    level = worst(f["level"] for f in found)
    if not found:
        return result("ok", f"{workload.label}: no pod waits to be scheduled or started"
                             + (f" ({elsewhere} wait on an image or config error: see "
                                "kubernetes.image_pull and kubernetes.config_error)"
                                if elsewhere else ""),
                       pending=[], cause=None, waiting_elsewhere=elsewhere)
    found.sort(key=lambda f: f["level"] != "critical")  # stable: the API's order in each
    first = found[0]
    others = "".join(f"; also {r['nodes']} node(s): {r['reason']}"
                     for r in first["reasons"][1:3])
    summary = (f"{workload.label}: {len(found)} pod(s) pending because {first['explain']}"
               f"{others}{others_ready(workload, {f['pod'] for f in found})}: "
               f"{first['advice']}")
    return result(level, summary, pending=found, cause=first["cause"],
                   waiting_elsewhere=elsewhere)


def pending(view: Any, params: PendingParams) -> dict[str, Any]:
    """Reads the workload's pods (phase, PodScheduled condition, requests, selectors) and
    their FailedScheduling and other warning events."""
    return grade_pending(read_workload(kubeapi.reader(view)), params)
