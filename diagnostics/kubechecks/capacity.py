"""What a workload is allowed, and what it hit: read-only `kubernetes.*` checks of a
`service` target with `runtime: kubernetes`.

    kubernetes.oom_killed  containers the kernel killed at their memory limit (OOMKilled, in
                           the current or the last state): how often, when last, and the
                           limit and request they had (none: the node ran out of memory)
    kubernetes.quota       the namespace's ResourceQuotas near or at their hard limits
                           (used/hard per resource), and pods the workload's controllers could
                           not create because a quota refused them (FailedCreate: exceeded
                           quota, or a quota that needs limits the pods do not set)
    kubernetes.pdb         PodDisruptionBudgets selecting the workload's pods that allow no
                           disruption while every pod is healthy (a node drain blocks), that
                           are violated (fewer healthy pods than they require), or that
                           overlap (the eviction API refuses a pod with two)

Ideas after k8sgpt's pdb (DisruptionAllowed=False) and rs (ReplicaFailure FailedCreate)
analyzers. Each returns `ok`, `level` and a one-line `summary` naming the cause, plus what it
measured; the grading functions are pure, over the API's JSON. They read through
`diagnostics.kubernetes`'s read-only client (GET only, refused below this code).
PodDisruptionBudgets are read in policy/v1 or, on servers before 1.21, policy/v1beta1.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from runner.errors import PermanentError
from runner.model import Duration
from runner.registry import Registry, StepKind

from ..grading import Level, above, by_level, worst
from ..kubernetes.objects import as_int, format_quantity, owned_by, parse_quantity, parse_time
from ..kubernetes.objects import quantity as parse_amount
from ..service import KIND
from . import kubeapi
from .podstate import Workload, pod_name, read_workload, result, statuses

# kubernetes.oom_killed


class OomParams(kubeapi.Params):
    window: Duration = Field(3600.0, description="an OOM kill counts when it ended this recently")
    restarts_critical: int = Field(3, ge=1, description="restarts of an OOM-killed container "
                                   "that make it critical even while it runs again")


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "at an unknown time"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _memory(pod: dict[str, Any], container: str) -> tuple[int | None, int | None]:
    """(limit, request) in bytes of the pod's container, as the pod was created."""
    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if c.get("name") == container:
            res = c.get("resources") or {}
            return (parse_quantity((res.get("limits") or {}).get("memory")),
                    parse_quantity((res.get("requests") or {}).get("memory")))
    return None, None


def oom_kills(workload: Workload, params: OomParams) -> list[dict[str, Any]]:
    """Every container whose current or last termination is OOMKilled, with how often the
    API still shows it (the current and the last state: the kubelet keeps no more), its
    restarts, when last, and its memory limit and request. Worst first."""
    since = workload.now - timedelta(seconds=params.window)
    found = []
    for pod in workload.pods:
        for cs, init in statuses(pod):
            state, last = cs.get("state") or {}, (cs.get("lastState") or {}).get("terminated")
            current = state.get("terminated")
            exits = [t for t in (current, last) if t]
            kills = [t for t in exits if t.get("reason") == "OOMKilled"]
            if not kills:
                continue
            latest = max(kills, key=lambda t: t.get("finishedAt") or "")
            finished = parse_time(latest.get("finishedAt"))
            recent = finished is None or finished >= since
            down = bool(current and current.get("reason") == "OOMKilled") or (
                (state.get("waiting") or {}).get("reason") == "CrashLoopBackOff"
                and last is not None and last.get("reason") == "OOMKilled")
            restarts = as_int(cs.get("restartCount"))
            level: Level = "ok"
            if recent:
                level = "critical" if down or restarts >= params.restarts_critical else "warning"
            limit, request = _memory(pod, str(cs.get("name")))
            found.append({
                "pod": pod_name(pod), "container": cs.get("name"), "init": init,
                "level": level, "down": down, "restarts": restarts, "oom_kills": len(kills),
                "exits_seen": len(exits),
                "state": (state.get("waiting") or {}).get("reason") or next(iter(state), None),
                "exit_code": latest.get("exitCode"),
                "last_at": finished.isoformat() if finished else None,
                "seconds_ago": kubeapi.seconds_since(finished, workload.now),
                "memory_limit": format_quantity(limit) if limit else None,
                "memory_request": format_quantity(request) if request else None,
                "memory_limit_bytes": limit, "memory_request_bytes": request})
    return by_level(sorted(found, key=lambda f: f["last_at"] or "", reverse=True))


def grade_oom(workload: Workload, params: OomParams) -> dict[str, Any]:
    killed = oom_kills(workload, params)
    graded = [k for k in killed if k["level"] != "ok"]
    level = worst(k["level"] for k in killed)
    fields = {"oom_killed": killed, "containers": sorted({str(k["container"]) for k in graded}),
              "oom_kills": sum(k["oom_kills"] for k in graded),
              "restart_count": sum(k["restarts"] for k in graded),
              "memory_limit": graded[0]["memory_limit"] if graded else None,
              "cause": None}
    if not graded:
        older = f" ({len(killed)} older than {params.window:g} s)" if killed else ""
        return result("ok", f"{workload.label}: no container was OOM-killed recently{older}",
                      **fields)
    first = graded[0]
    pods = sorted({k["pod"] for k in graded})
    where = (f"container {first['container']} of {first['pod']} OOMKilled in "
             f"{first['oom_kills']} of its last {first['exits_seen']} exit(s), last "
             f"{_ago(first['seconds_ago'])}"
             + (f" (exit code {first['exit_code']})" if first["exit_code"] is not None else "")
             + f", {first['restarts']} restart(s)"
             + (f", down now ({first['state']})" if first["down"] else ", running again"))
    if len(pods) > 1:
        where += f"; {len(pods)} pod(s) OOM-killed in all"
    if first["memory_limit"]:
        fields["cause"] = "limit"
        request = (f", request {first['memory_request']}" if first["memory_request"]
                   else ", no request")
        advice = (f"at its {first['memory_limit']} limit{request}: raise the limit or find "
                  "what allocates (a leak, a cache, a batch too big); a restart will not help")
    else:
        fields["cause"] = "node_memory"
        advice = ("with no memory limit: the node ran out of memory and the kernel chose it; "
                  "set a request and a limit that cover its use (see kubernetes.node_pressure)")
    return result(level, f"{workload.label}: {where}, {advice}", **fields)


def oom_killed(view: Any, params: OomParams) -> dict[str, Any]:
    """Reads the workload's pods: their containers' current and last terminations."""
    return grade_oom(read_workload(kubeapi.reader(view), events=False), params)


# kubernetes.quota


class QuotaParams(kubeapi.Params):
    warning_percent: float = Field(90.0, gt=0, le=100, description="used/hard at or above "
                                   "this is a warning")
    critical_percent: float = Field(100.0, gt=0, le=100, description="used/hard at or above "
                                    "this is critical")
    within: Duration = Field(3600.0, description="quota refusals (FailedCreate events) last "
                             "seen longer ago are ignored")


_EXCEEDED = re.compile(r"exceeded quota: (?P<quota>[^,\s]+), requested: (?P<requested>.*?), "
                       r"used: (?P<used>.*?), limited: (?P<limited>[^\s'\"]*[^\s'\".,])")
_MUST_SPECIFY = re.compile(r"failed quota: (?P<quota>[^:\s]+): must specify "
                           r"(?P<resources>[\w./,-]+)")


def _resource_list(text: str) -> dict[str, str]:
    """"limits.memory=1Gi,pods=1" as {resource: amount}."""
    return dict(part.split("=", 1) for part in text.split(",") if "=" in part)


def parse_quota_refusal(message: str) -> dict[str, Any] | None:
    """{quota, cause, resources, requested, used, limited} of a quota admission refusal in
    a FailedCreate message; None when the message is not one."""
    if (found := _EXCEEDED.search(message)) is not None:
        requested = _resource_list(found.group("requested"))
        return {"quota": found.group("quota"), "cause": "exceeded",
                "resources": sorted(requested), "requested": requested,
                "used": _resource_list(found.group("used")),
                "limited": _resource_list(found.group("limited"))}
    if (found := _MUST_SPECIFY.search(message)) is not None:
        return {"quota": found.group("quota"), "cause": "must_specify",
                "resources": sorted(found.group("resources").split(",")),
                "requested": {}, "used": {}, "limited": {}}
    return None


def _percent(used: str | None, hard: str | None) -> float | None:
    if hard is None:
        return None
    try:
        high, low = parse_amount(hard), parse_amount(used) if used is not None else Decimal(0)
    except PermanentError:
        return None
    if high == 0:
        return None if low == 0 else float("inf")
    return round(float(low / high * 100), 1)


def grade_quota_usage(quota: dict[str, Any], params: QuotaParams) -> dict[str, Any]:
    """One ResourceQuota: each resource's used/hard and level, worst first."""
    status = quota.get("status") or {}
    hard, used = status.get("hard") or {}, status.get("used") or {}
    rows = []
    for resource in sorted(hard):
        percent = _percent(used.get(resource), hard[resource])
        rows.append({"resource": resource, "used": used.get(resource, "0"),
                     "hard": hard[resource], "percent": percent,
                     "level": above(percent, params.warning_percent, params.critical_percent)})
    spec = quota.get("spec") or {}
    return {"name": quota["metadata"]["name"], "level": worst(r["level"] for r in rows),
            "resources": by_level(rows), "scopes": spec.get("scopes") or [],
            "scope_selector": spec.get("scopeSelector")}


def grade_quota(label: str, quotas: list[dict[str, Any]], refusals: list[dict[str, Any]],
                now: datetime, params: QuotaParams) -> dict[str, Any]:
    """The namespace's quotas graded, and the refusals of the workload's pods (FailedCreate
    events and ReplicaFailure conditions as {object, message, count, last_seen, current})
    that a quota caused. A refusal is critical: the controller cannot create the pods it
    wants."""
    graded = by_level([grade_quota_usage(q, params) for q in quotas])
    refused: dict[str, dict[str, Any]] = {}
    for seen in refusals:
        parsed = parse_quota_refusal(str(seen.get("message") or ""))
        last = parse_time(seen.get("last_seen"))
        # A ReplicaFailure condition stays True while creation fails: current, however old.
        stale = last and (now - last).total_seconds() > params.within
        if parsed is None or (stale and not seen.get("current")):
            continue
        entry = refused.setdefault(parsed["quota"], {**parsed, "objects": [], "count": 0,
                                                     "last_seen": None,
                                                     "message": seen.get("message")})
        entry["count"] += as_int(seen.get("count"), 1)
        if seen.get("object") and seen["object"] not in entry["objects"]:
            entry["objects"].append(seen["object"])
        if (seen.get("last_seen") or "") >= (entry["last_seen"] or ""):
            entry["last_seen"] = seen.get("last_seen")
    exceeded = sorted(refused.values(), key=lambda e: e["quota"])
    full = [f"{q['name']}/{r['resource']}" for q in graded for r in q["resources"]
            if r["level"] != "ok"]
    usage = "; ".join(
        f"ResourceQuota {q['name']}: " + ", ".join(
            f"{r['resource']} {r['used']}/{r['hard']}"
            + (f" ({r['percent']:g}%)" if r["percent"] not in (None, float("inf")) else "")
            for r in q["resources"] if r["level"] != "ok") for q in graded if q["level"] != "ok")
    level = worst([q["level"] for q in graded] + ["critical"] * bool(exceeded))
    if exceeded:
        first = exceeded[0]
        if first["cause"] == "exceeded":
            why = (f"quota {first['quota']} is exceeded for {', '.join(first['resources'])} "
                   f"(requested {_text(first['requested'])}, used {_text(first['used'])}, "
                   f"limited {_text(first['limited'])})")
            advice = ("raise the quota's hard limit, scale something else down, or ask for "
                      "less")
        else:
            why = (f"quota {first['quota']} requires every pod to set "
                   f"{', '.join(first['resources'])}")
            advice = "set those requests/limits in the pod template (or a LimitRange default)"
        summary = (f"{label} cannot create pods: {why}, {first['count']} refusal(s) of "
                   f"{', '.join(first['objects']) or 'its controller'}"
                   + (f"; {usage}" if usage else "") + f": {advice}")
    elif usage:
        summary = (f"{label}'s namespace is near its quota: {usage}: new pods or objects will "
                   "be refused at the limit")
    elif graded:
        summary = (f"{label}: {len(graded)} ResourceQuota(s) in its namespace, none near its "
                   "limit and no pod refused")
    else:
        summary = f"{label}: no ResourceQuota in its namespace, no pod refused"
    return {"ok": level == "ok", "level": level, "summary": summary, "quotas": graded,
            "at_limit": full, "exceeded": exceeded,
            "resources": sorted({r for e in exceeded for r in e["resources"]})}


def _text(amounts: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(amounts.items())) or "?"


def quota(view: Any, params: QuotaParams) -> dict[str, Any]:
    """Reads the namespace's ResourceQuotas, the workload's events (its ReplicaSets' and its
    own FailedCreate) and, for a Deployment, its ReplicaSets' ReplicaFailure conditions."""
    reader = kubeapi.reader(view)
    api = reader.api
    found = api.call("list", "resourcequotas", api.core.list_namespaced_resource_quota,
                     reader.namespace)
    workload = reader.workload()
    pods = reader.pods(workload)
    refusals = [{"object": (e.get("objects") or [None])[0], "message": e.get("message"),
                 "count": e.get("count"), "last_seen": e.get("last_seen")}
                for e in reader.events(workload, pods, limit=300)
                if e.get("reason") == "FailedCreate"]
    if workload is not None and reader.kind == "deployment":
        owned = api.call("list", "replicasets", api.apps.list_namespaced_replica_set,
                         reader.namespace, label_selector=reader.selector(workload))
        for rs in owned.get("items") or []:
            failure = kubeapi.condition(rs, "ReplicaFailure")
            if owned_by(rs, {workload["metadata"]["uid"]}) and failure.get("status") == "True" \
                    and not any(r["object"] == rs["metadata"]["name"] for r in refusals):
                refusals.append({"object": rs["metadata"]["name"],
                                 "message": failure.get("message"), "count": 1,
                                 "last_seen": failure.get("lastTransitionTime"),
                                 "current": True})
    return grade_quota(reader.label, list(found.get("items") or []), refusals,
                       datetime.now(UTC), params)


# kubernetes.pdb


class PdbParams(kubeapi.Params):
    blocking_level: Level = Field("warning", description="the level of a budget that allows "
                                  "no disruption while every pod is healthy (a drain blocks)")


def selects(selector: dict[str, Any] | None, labels: dict[str, str], *,
            empty_matches_all: bool) -> bool:
    """Whether a LabelSelector selects these labels. An empty selector selects every pod in
    policy/v1, none in policy/v1beta1; a missing one selects none."""
    if selector is None:
        return False
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return empty_matches_all
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        ok = {"In": key in labels and labels[key] in values,
              "NotIn": key not in labels or labels[key] not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}.get(str(op), False)
        if not ok:
            return False
    return True


def _budget_text(spec: dict[str, Any]) -> str:
    if "minAvailable" in spec:
        return f"minAvailable {spec['minAvailable']}"
    if "maxUnavailable" in spec:
        return f"maxUnavailable {spec['maxUnavailable']}"
    return "no budget"


def grade_pdb(pdb: dict[str, Any], label: str, params: PdbParams) -> dict[str, Any]:
    """One budget: violated (fewer healthy than desired), blocking (no disruption allowed
    while healthy), or fine; with the controller's DisruptionAllowed condition."""
    meta, spec, st = pdb["metadata"], pdb.get("spec") or {}, pdb.get("status") or {}
    name, budget = meta["name"], _budget_text(spec)
    allowed = as_int(st.get("disruptionsAllowed", st.get("podDisruptionsAllowed")))
    healthy, desired = as_int(st.get("currentHealthy")), as_int(st.get("desiredHealthy"))
    expected = as_int(st.get("expectedPods"))
    condition = kubeapi.condition(pdb, "DisruptionAllowed")
    observed = as_int(st.get("observedGeneration")) >= as_int(meta.get("generation"))
    level: Level = "ok"
    if not observed or not st:
        say = f"PDB {name} ({budget}): the disruption controller has not computed it yet"
    elif expected == 0:  # scaled to zero, or not created yet: nothing to protect
        say = f"PDB {name} ({budget}) selects no pod now"
    elif healthy < desired:
        level = "critical"
        say = (f"PDB {name} ({budget}) is violated: {healthy} healthy pod(s) of the {desired} "
               f"it requires ({expected} expected): every eviction of {label}'s pods is "
               "refused until they recover (see the pod checks for why they are not ready)")
    elif allowed == 0:
        level = params.blocking_level
        say = (f"PDB {name} ({budget}) allows 0 disruptions with {healthy} of {expected} "
               f"pod(s) healthy: a node drain or eviction of {label}'s pods blocks; "
               + ("use maxUnavailable 1 or more" if "maxUnavailable" in spec else
                  f"lower minAvailable below {expected} or add a replica"))
    else:
        say = (f"PDB {name} ({budget}) allows {allowed} disruption(s), {healthy} of "
               f"{expected} pod(s) healthy")
    return {"name": name, "api_version": pdb.get("apiVersion"), "level": level,
            "min_available": spec.get("minAvailable"),
            "max_unavailable": spec.get("maxUnavailable"), "disruptions_allowed": allowed,
            "current_healthy": healthy, "desired_healthy": desired, "expected_pods": expected,
            "condition": {k: condition.get(k) for k in ("status", "reason", "message")}
            if condition else None, "say": say}


def grade_pdbs(label: str, pdbs: list[dict[str, Any]], labels: list[dict[str, str]],
               params: PdbParams) -> dict[str, Any]:
    """The budgets that select any of the workload's pods (`labels`: each pod's, or its
    template's when it has none), graded; two or more on one pod is a warning too: the
    eviction API refuses to evict a pod more than one budget selects."""
    mine = [p for p in pdbs if any(
        selects((p.get("spec") or {}).get("selector"), each,
                empty_matches_all=p.get("apiVersion") != "policy/v1beta1") for each in labels)]
    graded = by_level([grade_pdb(p, label, params) for p in mine])
    problems = [g["say"] for g in graded if g["level"] != "ok"]
    level = worst(g["level"] for g in graded)
    if len(graded) > 1:
        level = worst([level, "warning"])
        problems.append(f"{len(graded)} PDBs select {label}'s pods "
                        f"({', '.join(g['name'] for g in graded)}): the eviction API refuses "
                        "to evict a pod more than one budget selects, so drains block")
    if problems:
        summary = "; ".join(problems)
    elif graded:
        summary = "; ".join(g["say"] for g in graded)
    else:
        summary = f"no PodDisruptionBudget selects {label}'s pods"
    return {"ok": level == "ok", "level": level, "summary": summary, "pdbs": graded,
            "blocking": [g["name"] for g in graded if g["level"] != "ok"
                         and g["current_healthy"] >= g["desired_healthy"]],
            "violated": [g["name"] for g in graded if g["level"] == "critical"],
            "problems": problems}


def pdb(view: Any, params: PdbParams) -> dict[str, Any]:
    """Reads the namespace's PodDisruptionBudgets (policy/v1, else v1beta1) and the
    workload's pods' labels."""
    reader = kubeapi.reader(view)
    workload = reader.workload()
    pods = reader.pods(workload)
    labels = [dict(p["metadata"].get("labels") or {}) for p in pods] or [
        dict((reader.template(workload, pods).get("metadata") or {}).get("labels") or {})]
    found = kubeapi.list_preferred(reader.api, "policy", ("v1", "v1beta1"),
                                   "poddisruptionbudgets")
    return grade_pdbs(reader.label, found, labels, params)


# Registration

_GRADED = {"ok": "nothing wrong", "level": "ok, warning or critical",
           "summary": "one line: the cause, and what to do"}

KINDS: tuple[tuple[str, Any, type[BaseModel], str, dict[str, str]], ...] = (
    ("oom_killed", oom_killed, OomParams,
     "containers OOM-killed: how often, when last, and the memory limit they had",
     {"oom_killed": "[{pod, container, level, down, restarts, oom_kills, exits_seen, state, "
      "exit_code, "
      "last_at, seconds_ago, memory_limit, memory_request}] worst first",
      "containers": "the containers OOM-killed within the window",
      "oom_kills": "OOM terminations the API still shows (current and last state)",
      "restart_count": "their restarts", "memory_limit": "the worst one's limit (96Mi)",
      "cause": "limit, node_memory or null"}),
    ("quota", quota, QuotaParams,
     "ResourceQuotas near or at their limits, and pods a quota refused to create",
     {"quotas": "[{name, level, resources: [{resource, used, hard, percent, level}], "
      "scopes}]", "at_limit": "quota/resource at or over the warning percent",
      "exceeded": "[{quota, cause, resources, requested, used, limited, objects, count, "
      "last_seen, message}] refusals of the workload's pods",
      "resources": "the resources a quota refused"}),
    ("pdb", pdb, PdbParams,
     "PodDisruptionBudgets that block drains (0 disruptions allowed) or are violated",
     {"pdbs": "[{name, api_version, level, min_available, max_unavailable, "
      "disruptions_allowed, current_healthy, desired_healthy, expected_pods, condition, "
      "say}]", "blocking": "budgets allowing no disruption while healthy",
      "violated": "budgets with fewer healthy pods than they require",
      "problems": "what is wrong, worst first"}),
)


def register(registry: Registry) -> None:
    """Adds this module's kinds."""
    for name, func, params, summary, fields in KINDS:
        registry.add(StepKind(f"kubernetes.{name}", KIND, func, params, False, summary,
                              {**_GRADED, **fields}, timeout=30.0))
