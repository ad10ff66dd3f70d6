"""What is wrong with the nodes under a workload: read-only `kubernetes.*` checks of a
`service` target with `runtime: kubernetes`.

    kubernetes.node_pressure    MemoryPressure, DiskPressure, PIDPressure (the kubelet evicts
                                pods and taints the node while one holds)
    kubernetes.nodes_not_ready  Ready not True (False: the kubelet says why; Unknown: it
                                stopped reporting), NetworkUnavailable, cordoned nodes

Which nodes: those the workload's pods run on (`scope: workload`, the default); when none of
its pods is on a node (all pending), every node, since any could be where it must go. With
`scope: all`, every node. Nodes are cluster-scoped: reading them needs `get`/`list` on nodes
bound with a ClusterRoleBinding (a namespace's RoleBinding cannot grant them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from runner.errors import PermanentError
from runner.registry import Registry, StepKind

from ..grading import Level, worst
from ..kubernetes.objects import parse_time
from ..service import KIND
from . import kubeapi

PRESSURE = ("MemoryPressure", "DiskPressure", "PIDPressure")
_WHAT = {"MemoryPressure": "memory", "DiskPressure": "disk", "PIDPressure": "process IDs"}
_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable",
           "node.kubernetes.io/memory-pressure", "node.kubernetes.io/disk-pressure",
           "node.kubernetes.io/pid-pressure", "node.kubernetes.io/network-unavailable",
           "node.kubernetes.io/unschedulable")

if TYPE_CHECKING:
    from ..kubernetes import KubernetesReader


class NodeParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: Literal["workload", "all"] = Field(
        "workload", description="the nodes the workload's pods run on (every node when none "
        "is placed), or every node")


def conditions(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (node.get("status") or {}).get("conditions") or []
            if c.get("type")}


def _since(condition: dict[str, Any], now: datetime) -> str:
    moment = parse_time(condition.get("lastTransitionTime"))
    if moment is None:
        return ""
    seconds = (now - moment).total_seconds()
    return (f" for {seconds / 3600:.1f} h" if seconds >= 7200 else f" for {seconds / 60:.0f} min"
            if seconds >= 120 else f" for {seconds:.0f} s")


def _taints(node: dict[str, Any]) -> list[str]:
    return [f"{t.get('key')}:{t.get('effect')}"
            for t in (node.get("spec") or {}).get("taints") or [] if t.get("key") in _TAINTS]


def _node(node: dict[str, Any], problems: list[tuple[Level, str]],
          now: datetime) -> dict[str, Any]:
    found = conditions(node)
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    return {"node": node["metadata"]["name"], "level": worst(p[0] for p in problems),
            "problems": [p[1] for p in problems],
            "conditions": {k: v.get("status") for k, v in sorted(found.items())},
            "taints": _taints(node), "unschedulable": bool((node.get("spec") or {})
                                                            .get("unschedulable")),
            "allocatable": {k: allocatable[k] for k in ("cpu", "memory", "pods",
                                                         "ephemeral-storage")
                            if k in allocatable}}


def grade_pressure(nodes: list[dict[str, Any]], scope: str, now: datetime) -> dict[str, Any]:
    """True is critical (the kubelet evicts pods and keeps new ones off); Unknown a warning
    (the kubelet does not say)."""
    graded = []
    for node in nodes:
        found = conditions(node)
        problems: list[tuple[Level, str]] = []
        for kind in PRESSURE:
            condition = found.get(kind) or {}
            status = condition.get("status")
            if status == "True":
                problems.append(("critical", f"{node['metadata']['name']} is short of "
                                 f"{_WHAT[kind]} ({kind}{_since(condition, now)}: "
                                 f"{condition.get('message') or condition.get('reason')})"))
            elif status == "Unknown":
                problems.append(("warning", f"{node['metadata']['name']}'s {kind} is unknown "
                                 f"({condition.get('message') or condition.get('reason')})"))
        graded.append(_node(node, problems, now))
    return _summed(graded, scope, "the kubelet evicts pods from a node under pressure and "
                   "keeps new ones off it: free memory or disk on it, or move load off it",
                   "no node under memory, disk or PID pressure")


def grade_not_ready(nodes: list[dict[str, Any]], scope: str, now: datetime) -> dict[str, Any]:
    """Ready False or Unknown, or NetworkUnavailable, is critical: pods on it are not
    served (and are evicted after the tolerations' 5 minutes); cordoned is a warning."""
    graded = []
    for node in nodes:
        name = node["metadata"]["name"]
        found = conditions(node)
        ready = found.get("Ready") or {}
        problems: list[tuple[Level, str]] = []
        if ready.get("status") != "True":
            why = ("its kubelet stopped reporting" if ready.get("status") == "Unknown"
                   else "its kubelet says it is not ready" if ready else
                   "it has no Ready condition")
            problems.append(("critical", f"{name} is NotReady{_since(ready, now)} because "
                             f"{why}: {ready.get('message') or ready.get('reason') or '?'}"))
        network = found.get("NetworkUnavailable") or {}
        if network.get("status") == "True":
            problems.append(("critical", f"{name}'s network is unavailable: "
                             f"{network.get('message') or network.get('reason')}"))
        if (node.get("spec") or {}).get("unschedulable"):
            problems.append(("warning", f"{name} is cordoned: no new pod goes there"))
        graded.append(_node(node, problems, now))
    return _summed(graded, scope, "pods on a NotReady node do not serve and are evicted "
                   "after 5 minutes: check the node's kubelet and container runtime",
                   "every node is Ready")


def _summed(graded: list[dict[str, Any]], scope: str, advice: str,
            fine: str) -> dict[str, Any]:
    level = worst(n["level"] for n in graded)
    bad = [n for n in graded if n["level"] != "ok"]
    which = "node(s) under the workload" if scope == "workload" else "node(s) in the cluster"
    if not graded:
        return {"ok": False, "level": "warning", "nodes": [], "scope": scope,
                "summary": "no node to check: the cluster lists none"}
    if not bad:
        summary = f"{fine} ({len(graded)} {which}: {', '.join(n['node'] for n in graded)})"
    else:
        problems = "; ".join(p for n in bad for p in n["problems"])
        summary = f"{len(bad)} of {len(graded)} {which}: {problems[:400]}: {advice}"
    return {"ok": level == "ok", "level": level, "summary": summary, "nodes": graded,
            "scope": scope, "affected": [n["node"] for n in bad]}


def read_nodes(reader: KubernetesReader, scope: str) -> tuple[list[dict[str, Any]], str]:
    """The nodes to check and the scope they were read for ("workload" or "all")."""
    api = reader.api
    try:
        names: set[str] = set()
        if scope == "workload":
            names = {str(n) for p in reader.pods(reader.workload())
                     if (n := (p.get("spec") or {}).get("nodeName"))}
        if names:
            return [dict(api.call("get", "nodes", api.core.read_node, n))
                    for n in sorted(names)], "workload"
        found = api.call("list", "nodes", api.core.list_node)
        return list(found.get("items") or []), "all"
    except PermanentError as exc:
        if str(exc).startswith("forbidden") and "nodes" in str(exc):
            raise PermanentError(f"{exc} Nodes are cluster-scoped: bind get and list on nodes "
                                 "with a ClusterRoleBinding.") from None
        raise


def node_pressure(view: Any, params: NodeParams) -> dict[str, Any]:
    """Reads the nodes (their MemoryPressure, DiskPressure and PIDPressure conditions) that
    the workload's pods run on, or every node."""
    nodes, scope = read_nodes(kubeapi.reader(view), params.scope)
    return grade_pressure(nodes, scope, datetime.now(UTC))


def nodes_not_ready(view: Any, params: NodeParams) -> dict[str, Any]:
    """Reads the nodes (Ready, NetworkUnavailable, spec.unschedulable) that the workload's
    pods run on, or every node."""
    nodes, scope = read_nodes(kubeapi.reader(view), params.scope)
    return grade_not_ready(nodes, scope, datetime.now(UTC))


_RESULT = {"ok": "nothing wrong", "level": "ok, warning or critical",
           "summary": "one line: the cause, and what to do",
           "nodes": "[{node, level, problems, conditions, taints, unschedulable, allocatable}]",
           "scope": "workload (its pods' nodes) or all", "affected": "nodes with a problem"}


def register(registry: Registry) -> None:
    registry.add(StepKind("kubernetes.node_pressure", KIND, node_pressure, NodeParams, False,
                          "nodes under memory, disk or PID pressure", _RESULT, timeout=30.0))
    registry.add(StepKind("kubernetes.nodes_not_ready", KIND, nodes_not_ready, NodeParams,
                          False, "nodes not Ready, with no network, or cordoned", _RESULT,
                          timeout=30.0))
