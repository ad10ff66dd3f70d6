"""Read-only `kubernetes.*` checks of the controllers above a workload's pods.

    kubernetes.rollout            a rollout stuck or failed (Progressing=False,
                                  ProgressDeadlineExceeded, ReplicaFailure, new pods in a
                                  waiting reason no wait fixes), with its pods' reasons and the
                                  last revision that was available (what a rollback returns to)
    kubernetes.hpa                an HPA at its maximum that wants more, or unable to scale
                                  (AbleToScale / ScalingActive False), with the controller's reason
    kubernetes.jobs               failed Jobs and CronJobs of the namespace: the Failed
                                  condition (BackoffLimitExceeded, DeadlineExceeded), the last
                                  pod's exit, a CronJob's last schedule and its last run
    kubernetes.service_endpoints  a Service meant for the workload with no ready endpoint, and
                                  why (its selector matches no pod, the pods are not ready, a
                                  named targetPort no container has)
    kubernetes.warning_events     the workload's warning events by reason, most frequent first

Ideas and thresholds after k8sgpt's analyzers (deployment, hpa, job, cronjob, service): a
Progressing=False condition is a failure, ScalingLimited at the minimum is not, a Job that
failed and then succeeded is healthy. Each returns `ok`, `level` and a `summary` that names the
cause. They read through `diagnostics.kubernetes`'s read-only client: GET only, refused below
this code, so a check cannot change the cluster even by a bug.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from runner.model import Duration
from runner.registry import Registry, StepKind

from ..grading import Level, by_level, worst
from ..kubernetes.objects import (
    HASH_LABEL,
    REVISION,
    STUCK,
    annotation,
    as_int,
    label_selector,
    owned_by,
    parse_time,
    template_containers,
)
from ..service import KIND
from . import kubeapi
from .autoscaling import HpaParams, hpa
from .batch import JobsParams, jobs
from .kubeapi import Params

UNSCHEDULABLE = "Unschedulable"
# A pod that waits for one of these is blocked until something outside it changes.
BLOCKED = STUCK | {UNSCHEDULABLE}


# Pods: why one is not ready


def pod_reason(pod: dict[str, Any], container: str | None) -> dict[str, Any]:
    """Why a pod is not ready: {pod, hash, ready, reason, message, image, restarts}. The
    reason is the container's waiting reason (ErrImageNeverPull, CrashLoopBackOff, ...), the
    scheduler's (Unschedulable) or its last termination's, else NotReady (running, failing
    its readiness probe)."""
    meta, status = pod["metadata"], pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    cs = next((s for s in statuses if s.get("name") == container), statuses[0] if statuses else {})
    spec_image = next((c.get("image") for c in template_containers(pod)
                       if c.get("name") == (cs.get("name") or container)), None)
    state = cs.get("state") or {}
    labels = meta.get("labels") or {}
    reason, message = None, None
    if "waiting" in state:
        reason, message = state["waiting"].get("reason"), state["waiting"].get("message")
    elif "terminated" in state:
        reason, message = state["terminated"].get("reason"), state["terminated"].get("message")
    elif not statuses:
        scheduled = kubeapi.condition(pod, "PodScheduled")
        if scheduled.get("status") == "False":
            reason, message = scheduled.get("reason") or UNSCHEDULABLE, scheduled.get("message")
        else:
            reason = status.get("phase") or "Pending"
    elif not cs.get("ready"):
        ready = kubeapi.condition(pod, "Ready")
        reason, message = "NotReady", ready.get("message")
    return {"pod": meta["name"], "hash": labels.get(HASH_LABEL)
            or labels.get("controller-revision-hash"), "ready": bool(cs.get("ready")),
            "reason": reason, "message": (message or "").strip()[:300] or None,
            "image": cs.get("image") if spec_image is None else spec_image,
            "restarts": as_int(cs.get("restartCount"))}


def _reasons_text(pods: list[dict[str, Any]]) -> str:
    """"2 pod(s) in ErrImageNeverPull (Container image ... not present ...)"."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        groups.setdefault(pod["reason"] or "not ready", []).append(pod)
    parts = []
    for reason, members in sorted(groups.items(), key=lambda g: -len(g[1])):
        said = next((p["message"] for p in members if p["message"]), None)
        parts.append(f"{len(members)} pod(s) in {reason}" + (f" ({said[:200]})" if said else ""))
    return "; ".join(parts)


# kubernetes.rollout


class RolloutParams(Params):
    slow_after: Duration = Field(300.0, description="a rollout with no progress for this "
                                 "long, and no pod blocked, is a warning")


def revision_table(kind: str, workload: dict[str, Any], owned: list[dict[str, Any]],
                   container: str | None) -> list[dict[str, Any]]:
    """The workload's revisions, oldest first: {revision, name, hash, image, current}, from
    its ReplicaSets (deployment) or ControllerRevisions (statefulset)."""
    uid = workload["metadata"]["uid"]

    def image(template: dict[str, Any]) -> str | None:
        images = [(c.get("name"), c.get("image")) for c in template_containers(template)]
        return next((i for n, i in images if n == container), images[0][1] if images else None)

    found = []
    for obj in owned:
        if not owned_by(obj, {uid}):
            continue
        if kind == "deployment":
            number = annotation(obj, REVISION)
            if number is None:
                continue
            found.append({"revision": int(number), "name": obj["metadata"]["name"],
                          "hash": (obj["metadata"].get("labels") or {}).get(HASH_LABEL),
                          "image": image(obj["spec"]["template"]),
                          "current": number == annotation(workload, REVISION)})
        else:
            template = ((obj.get("data") or {}).get("spec") or {}).get("template") or {}
            name = obj["metadata"]["name"]
            found.append({"revision": as_int(obj.get("revision")), "name": name,
                          "hash": name, "image": image(template),
                          "current": name == (workload.get("status") or {}).get(
                              "updateRevision")})
    return sorted(found, key=lambda r: r["revision"])


def grade_rollout(kind: str, workload: dict[str, Any], revisions: list[dict[str, Any]],
                  pods: list[dict[str, Any]], container: str | None, now: datetime,
                  params: RolloutParams) -> dict[str, Any]:
    """Whether the workload's rollout is stuck, and why; the revision that still serves."""
    label = f"{kind}/{workload['metadata']['name']}"
    spec, st = workload.get("spec") or {}, workload.get("status") or {}
    desired = as_int(spec.get("replicas"), 1)
    views = [pod_reason(p, container) for p in pods]
    current = next((r for r in revisions if r["current"]), None)
    new_hash = current["hash"] if current else None
    new = [v for v in views if new_hash and v["hash"] == new_hash]
    available = {r["hash"]: sum(1 for v in views if v["hash"] == r["hash"] and v["ready"])
                 for r in revisions}
    older = [r for r in revisions if not r["current"]
             and (current is None or r["revision"] < current["revision"])]
    serving = next((r for r in reversed(older) if available.get(r["hash"])), None)
    previous = serving or (older[-1] if older else None)
    progressing = kubeapi.condition(workload, "Progressing")
    failure = kubeapi.condition(workload, "ReplicaFailure")
    observed = as_int(st.get("observedGeneration")) >= as_int(workload["metadata"].get(
        "generation"))
    updated = as_int(st.get("updatedReplicas"))
    ready_new = available.get(new_hash or "", 0)
    if kind == "deployment":
        # NewReplicaSetAvailable: the rollout finished; pods unavailable since are the pods'
        # problem (a crash loop, a node), not the rollout's.
        finished = progressing.get("reason") == "NewReplicaSetAvailable"
        complete = (observed and updated >= desired and as_int(st.get("replicas")) <= desired
                    and (as_int(st.get("availableReplicas")) >= desired or finished))
    else:
        complete = observed and ready_new >= desired and (
            st.get("currentRevision") == st.get("updateRevision") or updated >= desired)
    blocked = [v for v in new if not v["ready"] and v["reason"] in BLOCKED]
    not_ready = [v for v in views if not v["ready"]]
    deadline = (progressing.get("status") == "False"
                or progressing.get("reason") == "ProgressDeadlineExceeded")
    stalled_s = kubeapi.seconds_since(parse_time(progressing.get("lastUpdateTime")), now)
    target = (f"revision {current['revision']}" + (f" ({current['image']})"
                                                  if current and current["image"] else "")
              if current else "its new revision")
    fallback = ""
    if previous is not None:
        serves = available.get(previous["hash"], 0)
        fallback = (f"; revision {previous['revision']} ({previous['image']}) "
                    + (f"still serves {serves} ready pod(s)" if serves else "ran before it")
                    + f": roll back to it (kubectl rollout undo {label} --to-revision="
                      f"{previous['revision']}) or fix the new revision")
    level: Level = "ok"
    if deadline or failure.get("status") == "True" or (not complete and blocked):
        level = "critical"
        why = [_reasons_text(blocked or [v for v in new if not v["ready"]])]
        if failure.get("status") == "True":
            why.append(f"ReplicaFailure {failure.get('reason')}: {failure.get('message')}")
        if deadline:
            why.append(f"Progressing=False, {progressing.get('reason')}: "
                       f"{progressing.get('message')}")
        summary = (f"the rollout of {label} to {target} is stuck: "
                   + "; ".join(w for w in why if w) + fallback)
    elif not complete and spec.get("paused"):
        level = "warning"
        summary = (f"the rollout of {label} to {target} is paused ({updated} of {desired} "
                   f"updated, {ready_new} ready): resume it (kubectl rollout resume {label}) "
                   "or roll back" + fallback)
    elif not complete and stalled_s is not None and stalled_s >= params.slow_after:
        level = "warning"
        summary = (f"the rollout of {label} to {target} has made no progress for "
                   f"{stalled_s:.0f} s ({updated} of {desired} updated, {ready_new} ready)"
                   + (f": {_reasons_text(not_ready)}" if not_ready else "") + fallback)
    elif not complete:
        summary = (f"{label} is rolling out {target}: {updated} of {desired} updated, "
                   f"{ready_new} ready" + (f"; {_reasons_text(not_ready)}" if not_ready else ""))
    elif not_ready:
        level = "warning"
        summary = (f"the rollout of {label} to {target} is complete, but "
                   f"{_reasons_text(not_ready)} (not a rollout problem: see the pod checks)")
    else:
        summary = f"{label} is rolled out: {target}, {desired} of {desired} ready"
    return {"ok": level == "ok", "level": level, "summary": summary,
            "stuck": level == "critical", "complete": complete,
            "progress_deadline_exceeded": deadline,
            "progressing": {k: progressing.get(k) for k in ("status", "reason", "message")}
            if progressing else None,
            "seconds_since_progress": stalled_s,
            "revision": current["revision"] if current else None,
            "image": current["image"] if current else None,
            "replicas": desired, "updated_replicas": updated, "new_ready": ready_new,
            "new_pods": new, "not_ready": not_ready,
            "reasons": sorted({v["reason"] for v in not_ready if v["reason"]}),
            "last_available_revision": previous["revision"] if previous else None,
            "last_available_image": previous["image"] if previous else None,
            "last_available_name": previous["name"] if previous else None,
            "last_available_ready": available.get(previous["hash"], 0) if previous else 0}


def rollout(view: Any, params: RolloutParams) -> dict[str, Any]:
    reader = kubeapi.reader(view)
    workload = reader.workload()
    pods = reader.pods(workload)
    template = reader.template(workload, pods)
    container = reader.container_name(template)
    if workload is None:  # pods by selector: no rollout, but their readiness
        views = [pod_reason(p, container) for p in pods]
        not_ready = [v for v in views if not v["ready"]]
        blocked = [v for v in not_ready if v["reason"] in BLOCKED]
        level: Level = "critical" if blocked else "warning" if not_ready else "ok"
        return {"ok": level == "ok", "level": level, "stuck": False, "complete": None,
                "not_ready": not_ready, "new_pods": [], "revision": None,
                "reasons": sorted({v["reason"] for v in not_ready if v["reason"]}),
                "last_available_revision": None, "last_available_image": None,
                "summary": f"{reader.label} have no rollout (no workload named): "
                + (_reasons_text(not_ready) if not_ready else f"{len(views)} pod(s) ready")}
    if reader.kind == "deployment":
        owned = reader.api.call("list", "replicasets", reader.api.apps.list_namespaced_replica_set,
                                reader.namespace, label_selector=reader.selector(workload))
    else:
        owned = reader.api.call("list", "controllerrevisions",
                                reader.api.apps.list_namespaced_controller_revision,
                                reader.namespace, label_selector=reader.selector(workload))
    revisions = revision_table(reader.kind, workload, owned.get("items") or [], container)
    return grade_rollout(reader.kind, workload, revisions, pods, container, datetime.now(UTC),
                         params)

# kubernetes.service_endpoints


class NoParams(Params):
    pass


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def grade_endpoints(label: str, template: dict[str, Any], pods: list[dict[str, Any]],
                    services: list[dict[str, Any]], endpoints: list[dict[str, Any]],
                    container: str | None) -> dict[str, Any]:
    """The Services meant for the workload (their selector matches its pod template, or
    shares a label with it, or the Service has the workload's name) and their endpoints."""
    labels = (template.get("metadata") or {}).get("labels") or {}
    workload_name = label.split("/", 1)[-1]
    ports = {p.get("name") for c in template_containers(template) for p in c.get("ports") or []}
    by_name = {e["metadata"]["name"]: e for e in endpoints}
    views = [pod_reason(p, container) for p in pods]
    results = []
    for svc in services:
        name, spec = svc["metadata"]["name"], svc.get("spec") or {}
        selector = spec.get("selector") or {}
        if not selector or spec.get("type") == "ExternalName":
            continue  # endpoints managed by hand, or none
        shared = {k for k, v in selector.items() if labels.get(k) == v}
        if not (_selects(selector, labels) or shared or name == workload_name):
            continue
        subsets = (by_name.get(name) or {}).get("subsets") or []
        ready = sum(len(s.get("addresses") or []) for s in subsets)
        waiting = [a for s in subsets for a in s.get("notReadyAddresses") or []]
        wanted = label_selector({"matchLabels": selector})
        level: Level = "ok"
        if ready:
            say = f"Service {name} has {ready} ready endpoint(s)"
            if waiting:
                level = "warning"
                say += f" and {len(waiting)} not ready"
        else:
            level = "critical"
            named = [p.get("targetPort") for p in spec.get("ports") or []
                     if isinstance(p.get("targetPort"), str) and p["targetPort"] not in ports]
            if not _selects(selector, labels):
                carries = label_selector({"matchLabels": {k: labels[k] for k in selector
                                                          if k in labels}}) or "none of them"
                why = (f"its selector {wanted} matches no pod of {label} (they carry "
                       f"{carries}; {label_selector({'matchLabels': labels})} in all)")
            elif not pods:
                why = f"its selector {wanted} matches {label}, which has no pods"
            elif named:
                why = (f"its targetPort {', '.join(map(str, named))} names no port of "
                       f"{label}'s containers ({', '.join(sorted(filter(None, ports))) or 'none'})")
            elif not [v for v in views if v["ready"]]:
                why = f"no pod of {label} is ready: {_reasons_text(views)}"
            else:
                why = f"the endpoints controller lists none yet ({len(views)} pod(s))"
            say = f"Service {name} has no ready endpoint: {why}"
        results.append({"service": name, "level": level, "selector": wanted,
                        "selects_workload": _selects(selector, labels),
                        "ready_endpoints": ready, "not_ready_endpoints": len(waiting),
                        "not_ready_pods": sorted((a.get("targetRef") or {}).get("name") or
                                                 a.get("ip") for a in waiting), "say": say})
    results = by_level(results)
    level = worst(r["level"] for r in results)
    summary = ("; ".join(r["say"] for r in results if r["level"] != "ok")
               if level != "ok" else "; ".join(r["say"] for r in results)
               or f"no Service selects {label}")
    return {"ok": level == "ok", "level": level, "summary": summary, "services": results,
            "without_endpoints": [r["service"] for r in results if r["level"] == "critical"]}


def service_endpoints(view: Any, params: NoParams) -> dict[str, Any]:
    reader = kubeapi.reader(view)
    api = reader.api
    workload = reader.workload()
    pods = reader.pods(workload)
    template = reader.template(workload, pods)
    if workload is None and pods:
        template = {"metadata": {"labels": pods[0]["metadata"].get("labels") or {}},
                    "spec": pods[0].get("spec") or {}}
    services = api.call("list", "services", api.core.list_namespaced_service, reader.namespace)
    endpoints = api.call("list", "endpoints", api.core.list_namespaced_endpoints,
                         reader.namespace)
    return grade_endpoints(reader.label, template, pods, services.get("items") or [],
                           endpoints.get("items") or [], reader.container_name(template))


# kubernetes.warning_events


class EventParams(Params):
    within: Duration = Field(3600.0, description="warnings last seen longer ago are ignored")
    critical_count: int = Field(10, ge=1, description="occurrences of one reason in the window "
                                "that make it critical")
    shown: int = Field(10, ge=1, le=50, description="reasons reported")


def summarise_warnings(label: str, events: Iterable[dict[str, Any]], now: datetime,
                       params: EventParams) -> dict[str, Any]:
    """Warnings (as KubernetesReader.events folds them) by reason, most frequent first."""
    reasons: dict[str, dict[str, Any]] = {}
    for ev in events:
        last = parse_time(ev.get("last_seen"))
        if ev.get("type") != "Warning" or (last and (now - last).total_seconds() > params.within):
            continue
        entry = reasons.setdefault(ev["reason"], {"reason": ev["reason"], "count": 0,
                                                  "objects": [], "last_seen": None,
                                                  "last_message": None})
        entry["count"] += as_int(ev.get("count"), 1)
        for obj in ev.get("objects") or []:
            if obj not in entry["objects"] and len(entry["objects"]) < 5:
                entry["objects"].append(obj)
        if entry["last_seen"] is None or (ev.get("last_seen") or "") >= entry["last_seen"]:
            entry["last_seen"], entry["last_message"] = ev.get("last_seen"), ev.get("message")
    ordered = sorted(reasons.values(), key=lambda e: (-e["count"], e["reason"]))
    level = worst("critical" if e["count"] >= params.critical_count else "warning"
                  for e in ordered)
    if ordered:
        summary = f"{label} has warning events: " + "; ".join(
            f"{e['reason']} x{e['count']} (last: {(e['last_message'] or '')[:160]})"
            for e in ordered[:3])
    else:
        summary = f"{label} has no warning event in the last {params.within:g} s"
    return {"ok": level == "ok", "level": level, "summary": summary,
            "warnings": ordered[:params.shown], "total": sum(e["count"] for e in ordered),
            "reasons": [e["reason"] for e in ordered]}


def warning_events(view: Any, params: EventParams) -> dict[str, Any]:
    reader = kubeapi.reader(view)
    workload = reader.workload()
    pods = reader.pods(workload, terminating=True)
    events = reader.events(workload, pods, limit=500)
    return summarise_warnings(reader.label, events, datetime.now(UTC), params)


# Registration


_GRADED = {"ok": "nothing wrong", "level": "ok, warning or critical",
           "summary": "one line: the cause, and what to do"}

KINDS: tuple[tuple[str, Any, type[BaseModel], str, dict[str, str]], ...] = (
    ("rollout", rollout, RolloutParams,
     "a stuck or failed rollout, its new pods' reasons, and the last available revision",
     {"stuck": "bool (critical)", "complete": "bool", "progress_deadline_exceeded": "bool",
      "revision / image": "the revision rolled out", "new_pods": "[{pod, reason, message, "
      "image, ready}] of the new revision", "not_ready": "every pod not ready, with its reason",
      "reasons": "their waiting reasons", "last_available_revision / last_available_image":
      "what a rollback returns to", "last_available_ready": "its ready pods now"}),
    ("hpa", hpa, HpaParams, "an HPA at its maximum that wants more, or unable to scale",
     {"hpas": "[{name, min/max/current/desired_replicas, at_max, wants_more, metrics, "
      "conditions, problems}]", "at_max": "bool", "unable_to_scale": "bool"}),
    ("jobs", jobs, JobsParams, "failed Jobs and CronJobs of the namespace, with the reason",
     {"failed": "names of failed Jobs", "problems": "what is wrong, worst first",
      "jobs": "[{name, cronjob, failed, reason, message, failures, backoff_limit, last_exit}]",
      "cronjobs": "[{name, schedule, suspended, last_schedule, last_job, last_job_failed}]"}),
    ("service_endpoints", service_endpoints, NoParams,
     "a Service meant for the workload with no ready endpoint, and why",
     {"services": "[{service, selector, selects_workload, ready_endpoints, "
      "not_ready_endpoints, not_ready_pods, say}]", "without_endpoints": "their names"}),
    ("warning_events", warning_events, EventParams,
     "the workload's warning events by reason, most frequent first",
     {"warnings": "[{reason, count, objects, last_seen, last_message}]",
      "total": "warnings in the window", "reasons": "most frequent first"}),
)


def register(registry: Registry) -> None:
    """Adds this module's kinds."""
    for name, func, params, summary, result in KINDS:
        registry.add(StepKind(f"kubernetes.{name}", KIND, func, params, False, summary,
                              {**_GRADED, **result}, timeout=30.0))

