"""A Kubernetes rollback pinned to the revision the approver saw.

`service.rollback` names an image (`to_image`); on Kubernetes it returns to the latest
earlier revision whose pod template runs that image. When the rollback is proposed, that
revision is pinned: its ReplicaSet's (StatefulSet: ControllerRevision's) uid, revision
number, pod-template-hash, a SHA-256 of its whole pod template, and, when a pod of that
revision exists, the image ID its container status reports. The pins are arguments, so the
fingerprint covers them and the approver sees them. At execution the operator finds the
revision by uid again and refuses, saying what changed, when it is gone, its hash or
template differ, or its template no longer runs `to_image`; otherwise it deploys exactly
that revision's template.

What this does not cover: the template names an image by reference (a tag, in the lab:
`imagePullPolicy: Never`, no registry, no digest). A tag re-pointed on a node's image store
after the approval leaves the template, and so every pin but the pod's image ID, unchanged.
The image ID is pinned only when a pod of the revision existed at proposal time (an old
revision is usually scaled to zero), and then it is compared before acting (pods of the
revision running then) and after the rollout (the new pods): a mismatch after the rollout
is reported as a failure, but the rollout has happened. A revision number that changed
while uid and template did not (someone rolled to it and away again) is the same template,
and is not refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from runner.errors import NotApproved, PermanentError

# The RollbackParams fields a Kubernetes rollback pins (filled in when proposed).
PIN_FIELDS = ("revision", "revision_uid", "template_hash", "template_sha256", "pod_image_id")


def template_sha256(template: Any) -> str:
    """A digest of a pod template (or a ControllerRevision's data) as the API returns it:
    any change to the template after the proposal changes it."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def pod_image_id(pods: list[dict[str, Any]], container: str | None) -> str | None:
    """The image ID the container's status reports in the first of `pods` that has one."""
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") == container and status.get("imageID"):
                return str(status["imageID"])
    return None


def target_revision(revisions: list[dict[str, Any]], image: str, label: str
                    ) -> dict[str, Any]:
    """The latest earlier (not current) revision whose template runs `image`."""
    found: dict[str, Any] | None = next(
        (r for r in reversed(revisions) if r["image"] == image and not r["current"]), None)
    if found is None:
        known = ", ".join(f"{r['revision']}: {r['image']}" for r in revisions) or "none"
        raise PermanentError(f"no earlier revision of {label} ran {image} (revisions {known})")
    return found


def pin(revision: Mapping[str, Any], image_id: str | None) -> dict[str, Any]:
    """The pins of `revision` (an entry of KubernetesReader._revisions)."""
    return {"revision": revision["revision"], "revision_uid": revision["uid"],
            "template_hash": revision["hash"], "template_sha256": revision["sha256"],
            "pod_image_id": image_id}


def changes(pinned: Mapping[str, Any], image: str, revision: Mapping[str, Any] | None
            ) -> list[str]:
    """How the revision found now by the pinned uid (None: gone) differs from the pins in a
    way that voids the approval; empty when it is the revision approved."""
    if revision is None:
        return [f"revision {pinned['revision']} (uid {pinned['revision_uid']}) no longer "
                "exists"]
    found = []
    if revision["uid"] != pinned["revision_uid"]:
        found.append(f"uid {pinned['revision_uid']} -> {revision['uid']}")
    if revision["hash"] != pinned["template_hash"]:
        found.append(f"pod-template-hash {pinned['template_hash']} -> {revision['hash']}")
    if revision["image"] != image:
        found.append(f"its template's image {image} -> {revision['image']}")
    if revision["sha256"] != pinned["template_sha256"]:
        found.append("its pod template changed (sha256 "
                     f"{str(pinned['template_sha256'])[:12]} -> {revision['sha256'][:12]})")
    return found


def approved_revision(revisions: list[dict[str, Any]], pinned: Mapping[str, Any], image: str,
                      label: str, image_ids: Callable[[dict[str, Any]], list[str]]
                      ) -> dict[str, Any]:
    """The revision `pinned` names, as it is now, when nothing the approval covers changed
    (`image_ids`: what the revision's running pods report); else the NotApproved to raise."""
    found = next((r for r in revisions if r["uid"] == pinned["revision_uid"]), None)
    what = changes(pinned, image, found)
    if found is not None and not what:
        what = image_id_changes(pinned.get("pod_image_id"), image_ids(found))
    if found is None or what:
        raise refuse(label, pinned, what)
    return found


def refuse(label: str, pinned: Mapping[str, Any], what: list[str]) -> NotApproved:
    """The error of a rollback whose approved revision changed behind the approval."""
    return NotApproved(f"approval void: the revision of {label} approved for the rollback "
                       f"(revision {pinned['revision']}, uid {pinned['revision_uid']}, "
                       f"pod-template-hash {pinned['template_hash']}) changed since: "
                       + "; ".join(what) + ". Nothing was changed; run the playbook again "
                       "to propose the rollback as things are now")


def image_id_changes(pinned: str | None, found: list[str]) -> list[str]:
    """Image IDs of the revision's pods that differ from the one pinned (none pinned: none)."""
    if pinned is None:
        return []
    return sorted({f"image ID {pinned} -> {image_id}" for image_id in found
                   if image_id != pinned})


def is_pinned(params: Mapping[str, Any]) -> bool:
    return params.get("revision_uid") is not None


def explain(params: Mapping[str, Any]) -> str:
    """What the approver reads about the pinned revision."""
    if not is_pinned(params):
        return ""
    shown = (f" (revision {params['revision']}, uid {params['revision_uid']}, "
             f"pod-template-hash {params['template_hash']}")
    if params.get("pod_image_id"):
        shown += f", image ID {params['pod_image_id']}"
    return shown + ", pinned now)"
