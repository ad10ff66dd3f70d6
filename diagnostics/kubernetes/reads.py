"""`KubernetesReader`, what probes get: a Deployment, a StatefulSet or the pods of a label
selector, read through the read-only client: status (pods, rollout, conditions), events by
owner reference, logs, memory and processes (`usage`), and the workload's revisions."""

from __future__ import annotations

import contextlib
import heapq
from datetime import UTC, datetime
from typing import Any

from runner.errors import PermanentError

from . import usage
from .client import _Api
from .objects import (
    HASH_LABEL,
    MAX_PODS,
    REVISION,
    REVISION_HISTORY,
    annotation,
    as_int,
    iso,
    iso_of,
    label_selector,
    line_time,
    owned_by,
    parse_quantity,
    parse_time,
    pod_rank,
    pod_view,
    template_containers,
)
from .rollback import pin, pod_image_id, target_revision, template_sha256


class KubernetesReader:
    """Read-only view of a service on Kubernetes: a Deployment, a StatefulSet, or the pods a
    label selector picks (then without rollouts: no history, no remedies)."""

    def __init__(self, settings: Any, timeout: float, *, read_only: bool = True) -> None:
        self.settings = settings
        self.timeout = timeout
        if settings.deployment:
            self.kind, self.name = "deployment", str(settings.deployment)
        elif settings.statefulset:
            self.kind, self.name = "statefulset", str(settings.statefulset)
        else:
            self.kind, self.name = "selector", str(settings.selector)
        self.api = _Api(settings, timeout, read_only=read_only)
        self.namespace: str = self.api.namespace  # named, else the kube context's

    def cancel(self) -> None:
        self.api.cancel()

    def close(self) -> None:
        self.api.close()

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name}" if self.kind != "selector" else f"pods {self.name}"

    # The objects

    def workload(self) -> dict[str, Any] | None:
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
        workload = self.workload()
        uid = str(workload["metadata"]["uid"]) if workload is not None else "(pods by selector)"
        return {"runtime": "kubernetes", "api_server": str(self.api.client.configuration.host),
                "namespace": self.namespace, "workload": self.label, "uid": uid}

    def selector(self, workload: dict[str, Any] | None) -> str:
        if workload is None:
            return self.name
        return label_selector(workload["spec"].get("selector") or {})

    def pods(self, workload: dict[str, Any] | None, *, terminating: bool = False
              ) -> list[dict[str, Any]]:
        """The workload's pods, oldest first; not those being deleted, unless asked."""
        found = self.api.call("list", "pods", self.api.core.list_namespaced_pod, self.namespace,
                              label_selector=self.selector(workload))
        pods = [p for p in found.get("items") or []
                if terminating or not p["metadata"].get("deletionTimestamp")]
        return sorted(pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "",
                                           p["metadata"]["name"]))

    def template(self, workload: dict[str, Any] | None,
                  pods: list[dict[str, Any]]) -> dict[str, Any]:
        if workload is not None:
            return dict(workload["spec"]["template"])
        return {"spec": pods[0]["spec"]} if pods else {"spec": {"containers": []}}

    def container_name(self, template: dict[str, Any]) -> str | None:
        if self.settings.container:
            return str(self.settings.container)
        containers = template_containers(template)
        return str(containers[0]["name"]) if containers else None

    def container(self, template: dict[str, Any]) -> dict[str, Any]:
        name = self.container_name(template)
        for container in template_containers(template):
            if container["name"] == name:
                return container
        raise PermanentError(f"{self.label} in {self.namespace} has no container {name!r}")

    def rollout(self, workload: dict[str, Any] | None,
                 pods: list[dict[str, Any]]) -> dict[str, Any]:
        """How far the current rollout is, as `kubectl rollout status` would say it."""
        if workload is None:
            ready = sum(1 for p in pods if p["ready"])
            return {"complete": bool(pods) and ready == len(pods), "failed": False,
                    "revision": None, "message": f"{ready} of {len(pods)} pods ready"}
        meta, spec, st = workload["metadata"], workload["spec"], workload.get("status") or {}
        desired = as_int(spec.get("replicas"), 1)
        observed = as_int(st.get("observedGeneration")) >= as_int(meta.get("generation"))
        updated, total = as_int(st.get("updatedReplicas")), as_int(st.get("replicas"))
        ready, available = as_int(st.get("readyReplicas")), as_int(st.get("availableReplicas"))
        failed = False
        progressing: dict[str, Any] = {}
        if self.kind == "deployment":
            revision = annotation(workload, REVISION)
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
        workload = self.workload()
        container = self.container_name(self.template(workload, []))
        views = [pod_view(p, container) for p in self.pods(workload)]
        ordered = sorted((v for v in views if v["ip"]),
                         key=lambda v: (not v["ready"], not v["running"]))
        return [v["ip"] for v in ordered]

    def status(self) -> dict[str, Any]:
        workload = self.workload()
        raw_pods = self.pods(workload)
        template = self.template(workload, raw_pods)
        container_name = self.container_name(template)
        container = self.container(template) if container_name else {}
        pods = [pod_view(p, container_name) for p in raw_pods]
        limits = (container.get("resources") or {}).get("limits") or {}
        requests = (container.get("resources") or {}).get("requests") or {}
        desired = (as_int(workload["spec"].get("replicas"), 1) if workload is not None
                   else len(pods))
        st = (workload or {}).get("status") or {}
        running = [p for p in pods if p["running"]]
        worst = min(pods, key=pod_rank) if pods else None
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
        elif worst and pod_rank(worst)[0] >= 3:
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
            "replicas_updated": as_int(st.get("updatedReplicas")) if workload else None,
            "replicas_available": as_int(st.get("availableReplicas")) if workload else None,
            "replica_states": [{"name": p["name"], "state": p["state"]} for p in pods],
            "rollout": self.rollout(workload, pods),
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
                         if workload is None or owned_by(p, owners)}
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
            count = as_int((ev.get("series") or {}).get("count")) or as_int(ev.get("count"), 1)
            first = iso_of(ev.get("firstTimestamp") or ev.get("eventTime"))
            last = iso_of(ev.get("lastTimestamp") or ev.get("eventTime")) or first
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
                              self.namespace, label_selector=self.selector(workload))
        return {uid} | {str(rs["metadata"]["uid"]) for rs in found.get("items") or []
                        if owned_by(rs, {uid})}

    def logs(self, tail: int, since: float | None = None) -> list[str]:
        """The last `tail` lines of the service's container in each pod, with the previous
        container's (the one that crashed or was killed) where it restarted, merged in time
        order. Each line starts with the runtime's RFC 3339 timestamp."""
        workload = self.workload()
        raw = self.pods(workload)[:MAX_PODS]
        container = self.container_name(self.template(workload, raw))
        streams: list[list[str]] = []
        for pod in raw:
            view = pod_view(pod, container)
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
        merged = list(heapq.merge(*streams, key=line_time))
        return merged[-tail:]

    def memory(self, window: float, interval: float) -> dict[str, Any]:
        """Memory use sampled over `window` seconds: metrics.k8s.io where it is served, else
        the pods' cgroups through this node's Docker engine; the pod growing fastest."""
        return usage.memory(self, window, interval)

    def processes(self) -> dict[str, Any]:
        """The processes in the first running pod's container, when this node's Docker engine
        runs it (see diagnostics.kubernetes.usage)."""
        return usage.processes(self)

    # Revisions

    def revisions(self, workload: dict[str, Any]) -> list[dict[str, Any]]:
        """The workload's revisions, oldest first: {revision, name, uid, hash (its pods'
        pod-template-hash), sha256 (of its template), pods (the label its pods carry),
        image, created, replicas, current, template (deployments) or data (statefulsets)}."""
        selector = self.selector(workload)
        uid = workload["metadata"]["uid"]
        container = self.container_name(workload["spec"]["template"])

        def owned(obj: dict[str, Any]) -> bool:
            return owned_by(obj, {uid})

        def image(template: dict[str, Any]) -> str | None:
            return next((c.get("image") for c in template_containers(template)
                         if c["name"] == container), None)

        revisions = []
        if self.kind == "deployment":
            found = self.api.call("list", "replicasets",
                                  self.api.apps.list_namespaced_replica_set, self.namespace,
                                  label_selector=selector)
            current = annotation(workload, REVISION)
            for rs in filter(owned, found.get("items") or []):
                revision = annotation(rs, REVISION)
                if revision is None:
                    continue
                revisions.append({
                    "revision": int(revision), "name": rs["metadata"]["name"],
                    "uid": rs["metadata"].get("uid"),
                    "hash": (rs["metadata"].get("labels") or {}).get(HASH_LABEL),
                    "sha256": template_sha256(rs["spec"]["template"]),
                    "pods": (HASH_LABEL, (rs["metadata"].get("labels") or {}).get(HASH_LABEL)),
                    "image": image(rs["spec"]["template"]),
                    "created": iso_of(rs["metadata"].get("creationTimestamp")),
                    "replicas": as_int((rs.get("status") or {}).get("replicas")),
                    "change_cause": annotation(rs, "kubernetes.io/change-cause"),
                    "reused": annotation(rs, REVISION_HISTORY) is not None,
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
                    "revision": as_int(cr.get("revision")), "name": cr["metadata"]["name"],
                    "uid": cr["metadata"].get("uid"),
                    "hash": cr["metadata"]["name"].rsplit("-", 1)[-1],
                    "sha256": template_sha256(cr.get("data")),
                    "pods": ("controller-revision-hash", cr["metadata"]["name"]),
                    "image": image(template),
                    "created": iso_of(cr["metadata"].get("creationTimestamp")),
                    "replicas": None, "change_cause": None, "reused": False,
                    "current": cr["metadata"]["name"] == current,
                    "data": cr.get("data"),
                })
        return sorted(revisions, key=lambda r: r["revision"])

    def revision_image_ids(self, workload: dict[str, Any], revision: dict[str, Any]
                            ) -> list[str]:
        """The image IDs that the running pods of `revision` report, oldest pod first."""
        key, value = revision["pods"]
        container = self.container_name(workload["spec"]["template"])
        if value is None:
            return []
        ids = [pod_image_id([p], container) for p in self.pods(workload)
               if (p["metadata"].get("labels") or {}).get(key) == value]
        return [i for i in ids if i]

    def pin_rollback(self, image: str) -> dict[str, Any]:
        """The pins of the revision a rollback to `image` returns to (see
        diagnostics.kubernetes.rollback): what the approval binds to."""
        workload = self.workload()
        if workload is None:
            raise PermanentError(f"{self.label} names pods, not a workload: a rollback needs "
                                 "`deployment:` or `statefulset:` in the inventory")
        revision = target_revision(self.revisions(workload), image, self.label)
        return pin(revision, next(iter(self.revision_image_ids(workload, revision)), None))

    def _reactivated_at(self, revision: dict[str, Any]) -> datetime | None:
        """When a ReplicaSet that a rollback brought back was scaled up again (its creation
        time is from its first life), from the Deployment's ScalingReplicaSet events."""
        found = self.api.call("list", "events", self.api.core.list_namespaced_event,
                              self.namespace, field_selector=f"involvedObject.name={self.name}")
        times = [parse_time(ev.get("lastTimestamp") or ev.get("eventTime"))
                 for ev in found.get("items") or []
                 if ev.get("reason") == "ScalingReplicaSet"
                 and (ev.get("message") or "").startswith(
                     f"Scaled up replica set {revision['name']} ")]
        return max(filter(None, times), default=None)

    def deployment(self) -> dict[str, Any]:
        """The running image, when its revision was rolled out, and the image before it."""
        workload = self.workload()
        raw = self.pods(workload)
        template = self.template(workload, raw)
        container_name = self.container_name(template)
        image = self.container(template).get("image") if container_name else None
        views = [pod_view(p, container_name) for p in raw]
        revisions = self.revisions(workload) if workload is not None else []
        current = next((r for r in revisions if r["current"]), None)
        deployed: datetime | None = None
        previous = None
        if current is not None:
            deployed = parse_time(current["created"])
            if current["reused"]:
                with contextlib.suppress(PermanentError):  # events are a bonus here
                    deployed = max(filter(None, (deployed, self._reactivated_at(current))))
            # The image a rollback returns to: the latest earlier revision that ran another
            # image (a restart or a config change keeps the image).
            previous = next((r for r in reversed(revisions)
                             if r["revision"] < current["revision"] and r["image"] != image),
                            None)
        elif views:  # pods of a selector: the oldest that runs the image now
            deployed = min(filter(None, (parse_time(v["created_at"]) for v in views)), default=None)
        running_ids = [v["image_id"] for v in views
                       if v["running"] and v["image_id"]
                       and (current is None or self.kind != "deployment"
                            or v["revision"] == current["name"].rsplit("-", 1)[-1])]
        return {
            "image": image,
            "image_id": running_ids[0] if running_ids else None,
            "deployed_at": iso(deployed),
            "age_s": round((datetime.now(UTC) - deployed).total_seconds(), 1)
            if deployed else None,
            "previous_image": self.settings.previous_image
            or (previous["image"] if previous else None),
            "revision": current["revision"] if current else None,
            "previous_revision": previous["revision"] if previous else None,
            "history": [{k: r[k] for k in ("revision", "name", "image", "created", "replicas",
                                            "change_cause", "current")}
                        for r in revisions[-10:]],
            "rollout": self.rollout(workload, views) if workload is not None else None,
        }
