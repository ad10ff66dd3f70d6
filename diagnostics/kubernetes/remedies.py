"""`KubernetesOperator`, what remedies get (through the gate): the reads, plus rollout
restart, start, rollback, scale and a memory limit, each one PATCH that then waits for its
rollout to finish and says how it went."""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime
from typing import Any

from runner.errors import PermanentError

from .objects import (
    HASH_LABEL,
    STUCK,
    as_int,
    format_quantity,
    parse_quantity,
    parse_time,
    pod_view,
)
from .reads import KubernetesReader
from .rollback import approved_revision, image_id_changes, target_revision

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # what `kubectl rollout restart` sets


class KubernetesOperator(KubernetesReader):
    """What remedies get: the reads, plus the changes. Each change is one PATCH (what kubectl
    sends for the same command) and then waits for the rollout to finish, or fails saying
    which pods are stuck and why."""

    def __init__(self, settings: Any, timeout: float) -> None:
        super().__init__(settings, timeout, read_only=False)
        self.rollout_timeout = max(5.0, min(float(settings.rollout_timeout), timeout - 5.0))

    def interrupt(self) -> None:
        """Nothing to do: each change is one PATCH, sent whole or not at all, and then a wait
        for the controller's rollout, which the step's deadline (cancel) ends."""

    def _require_workload(self) -> dict[str, Any]:
        workload = self.workload()
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
        return {p["metadata"]["name"] for p in self.pods(self.workload())}

    def _wait_rollout(self, since: float) -> dict[str, Any]:
        """Wait until the rollout is complete; its outcome, or a PermanentError that says
        how far it got and which new pods are stuck."""
        started = time.monotonic()
        deadline = started + self.rollout_timeout
        began = datetime.now(UTC).timestamp() - (time.monotonic() - since) - 1.0
        while True:
            workload = self._require_workload()
            raw = self.pods(workload)
            container = self.container_name(workload["spec"]["template"])
            views = [pod_view(p, container) for p in raw]
            progress = self.rollout(workload, views)
            if progress["complete"]:
                return {"complete": True, "seconds": round(time.monotonic() - since, 1),
                        "revision": progress["revision"],
                        "ready": sum(1 for v in views if v["ready"]),
                        "pods": sorted(v["name"] for v in views)}
            new = [v for v in views
                   if (parse_time(v["created_at"]) or datetime.now(UTC)).timestamp() >= began]
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
        if as_int(workload["spec"].get("replicas"), 1) > 0:
            return {"started": [], "count": 0,
                    "note": "every replica is scheduled; Kubernetes restarts containers itself"}
        result = self.scale(1)
        return {"started": result["added"], "count": len(result["added"]),
                "rollout": result["rollout"]}

    def set_memory_limit(self, limit: int) -> dict[str, Any]:
        from ..service import refuse_unsafe_memory_limit  # a last line: 0 lifts the limit

        refuse_unsafe_memory_limit(limit)
        workload = self._require_workload()
        container = self.container(workload["spec"]["template"])
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
                 image_id: str | None = None,
                 pinned: dict[str, Any] | None = None) -> dict[str, Any]:
        """`kubectl rollout undo --to-revision=N`: N's pod template goes back into the
        workload, and the controller scales that revision's ReplicaSet up again. N is the
        revision `pinned` when the rollback was proposed (refused, saying what changed, when
        it is gone or its template differs: diagnostics.kubernetes.rollback), or, unpinned,
        the latest earlier revision that runs `image`. (`image_id`: Docker's pin, refused
        here; `stop_timeout`: the pods' terminationGracePeriodSeconds applies instead.)"""
        if image_id is not None:
            raise PermanentError("image_id is pinned by Docker services only")
        workload = self._require_workload()
        current_image = self.container(workload["spec"]["template"]).get("image")
        if current_image == image:
            raise PermanentError(f"{self.label} already runs {image}")
        revisions = self.revisions(workload)
        if pinned is None:
            target = target_revision(revisions, image, self.label)
        else:
            target = approved_revision(
                revisions, pinned, image, self.label,
                lambda revision: self.revision_image_ids(workload, revision))
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
            after = self.revision_image_ids(self._require_workload(), target)
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
        before_count = as_int(workload["spec"].get("replicas"), 1)
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
