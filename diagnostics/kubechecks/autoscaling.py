"""`kubernetes.hpa`: the HorizontalPodAutoscalers that scale a workload, at their maximum
(wanting more, or not) or unable to scale (AbleToScale / ScalingActive False), with the
controller's reason and the metrics against their targets. After k8sgpt's hpa analyzer:
ScalingLimited at the minimum (TooFewReplicas) is the floor working, not a fault.
autoscaling/v2, v2beta2 or v1 (conditions in an annotation), whichever the server serves."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from ..grading import Level, by_level, worst
from ..kubernetes.objects import annotation, as_int
from . import kubeapi
from .kubeapi import Params


class HpaParams(Params):
    at_max_level: Level = Field("warning", description="the level of an HPA at its maximum "
                                "that does not say it wants more (one that does is critical)")


def _v1_conditions(hpa: dict[str, Any]) -> list[dict[str, Any]]:
    """autoscaling/v1 keeps the conditions in an annotation, as JSON."""
    text = annotation(hpa, "autoscaling.alpha.kubernetes.io/conditions")
    try:
        found = json.loads(text) if text else []
    except ValueError:
        return []
    return found if isinstance(found, list) else []


def _metrics_text(hpa: dict[str, Any]) -> str:
    """"cpu 180% (target 50%)" for each metric the HPA reports."""
    spec, st = hpa.get("spec") or {}, hpa.get("status") or {}
    if "targetCPUUtilizationPercentage" in spec or "currentCPUUtilizationPercentage" in st:
        return (f"cpu {st.get('currentCPUUtilizationPercentage', '?')}% "
                f"(target {spec.get('targetCPUUtilizationPercentage', 80)}%)")
    targets = {}
    for metric in spec.get("metrics") or []:
        body = metric.get(str(metric.get("type", "")).lower().replace("containerresource",
                                                                      "containerResource"))
        if isinstance(body, dict):
            name = body.get("name") or (body.get("metric") or {}).get("name")
            targets[name] = body.get("target") or {}
    parts = []
    for metric in st.get("currentMetrics") or []:
        body = next((v for k, v in metric.items() if k != "type" and isinstance(v, dict)), {})
        name = body.get("name") or (body.get("metric") or {}).get("name")
        current, target = body.get("current") or {}, targets.get(name) or {}
        if current.get("averageUtilization") is not None:
            parts.append(f"{name} {current['averageUtilization']}% (target "
                         f"{target.get('averageUtilization', '?')}%)")
        else:
            value = current.get("averageValue") or current.get("value")
            parts.append(f"{name} {value} (target "
                         f"{target.get('averageValue') or target.get('value') or '?'})")
    return ", ".join(parts)


def grade_hpa(hpa: dict[str, Any], params: HpaParams) -> dict[str, Any]:
    """One HPA: unable to scale, at its maximum (wanting more or not), or fine."""
    spec, st = hpa.get("spec") or {}, hpa.get("status") or {}
    name = hpa["metadata"]["name"]
    conditions = st.get("conditions") or _v1_conditions(hpa)
    by_type = {c.get("type"): c for c in conditions}
    current, desired = as_int(st.get("currentReplicas")), as_int(st.get("desiredReplicas"))
    low, high = as_int(spec.get("minReplicas"), 1), as_int(spec.get("maxReplicas"))
    limited = by_type.get("ScalingLimited") or {}
    metrics = _metrics_text(hpa)
    problems: list[tuple[Level, str]] = []
    for kind in ("AbleToScale", "ScalingActive"):
        cond = by_type.get(kind) or {}
        if cond.get("status") == "False":
            level: Level = "warning" if cond.get("reason") == "ScalingDisabled" else "critical"
            problems.append((level, f"HPA {name} cannot scale ({kind}=False, "
                                    f"{cond.get('reason')}): {cond.get('message')}"))
    wants_more = (limited.get("status") == "True" and limited.get("reason") == "TooManyReplicas"
                  ) or desired > high
    if high and current >= high:
        problems.append(("critical" if wants_more else params.at_max_level,
                         f"HPA {name} is at its maximum of {high} replica(s)"
                         + (" and wants more" if wants_more else "")
                         + (f": {metrics}" if metrics else "")
                         + (f" ({limited.get('message')})" if wants_more and
                            limited.get("message") else "")
                         + ": raise maxReplicas or find why the load grew"))
    elif limited.get("status") == "True" and limited.get("reason") != "TooFewReplicas":
        problems.append(("warning", f"HPA {name} is limited ({limited.get('reason')}): "
                                    f"{limited.get('message')}"))
    level = worst(p[0] for p in problems)
    target = spec.get("scaleTargetRef") or {}
    return {"name": name, "level": level, "target": f"{target.get('kind')}/{target.get('name')}",
            "min_replicas": low, "max_replicas": high, "current_replicas": current,
            "desired_replicas": desired, "at_max": bool(high and current >= high),
            "wants_more": wants_more, "metrics": metrics,
            "conditions": [{k: c.get(k) for k in ("type", "status", "reason", "message")}
                           for c in conditions],
            "problems": [p[1] for p in problems if p[0] != "ok"]}


def hpa(view: Any, params: HpaParams) -> dict[str, Any]:
    reader = kubeapi.reader(view)
    workload = reader.workload()
    kind = {"deployment": "Deployment", "statefulset": "StatefulSet"}.get(reader.kind)
    found = kubeapi.list_preferred(reader.api, "autoscaling",
                                   ("v2", "v2beta2", "v1"), "horizontalpodautoscalers")
    mine = [h for h in found if kind and ((h.get("spec") or {}).get("scaleTargetRef") or {})
            .get("kind") == kind and h["spec"]["scaleTargetRef"].get("name") == reader.name]
    graded = by_level([grade_hpa(h, params) for h in mine])
    level = worst(h["level"] for h in graded)
    if not graded:
        summary = (f"no HorizontalPodAutoscaler scales {reader.label}"
                   + ("" if workload is not None else " (pods by selector: none can)"))
    elif level == "ok":
        summary = "; ".join(f"HPA {h['name']}: {h['current_replicas']} replica(s) within "
                            f"{h['min_replicas']}..{h['max_replicas']}"
                            + (f", {h['metrics']}" if h["metrics"] else "") for h in graded)
    else:
        summary = "; ".join(p for h in graded for p in h["problems"])
    return {"ok": level == "ok", "level": level, "summary": summary, "hpas": graded,
            "at_max": any(h["at_max"] for h in graded),
            "unable_to_scale": any("cannot scale" in p for h in graded for p in h["problems"])}
