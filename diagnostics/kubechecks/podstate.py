"""A workload's pods and events as the `kubernetes.*` pod checks read them, and the small
helpers they share over the API's JSON (container statuses, waiting reasons, a pod's
events, readiness). Reads go through `diagnostics.kubernetes`'s read-only reader."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..grading import Level

EVENTS_READ = 300  # folded events kept per read (warnings first)
# Waiting reasons each of which one check explains (and `pending` leaves to it).
IMAGE_PULL = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
              "ImageInspectError")
CONFIG_ERRORS = ("CreateContainerConfigError", "CreateContainerError")

if TYPE_CHECKING:
    from ..kubernetes import KubernetesReader


@dataclass(frozen=True)
class Workload:
    """A workload's pods (raw API JSON, not those being deleted) and its events (folded by
    `KubernetesReader.events`: {type, reason, kind, message, count, objects, first_seen,
    last_seen})."""

    label: str
    pods: list[dict[str, Any]]
    events: list[dict[str, Any]]
    now: datetime


def read_workload(reader: KubernetesReader, events: bool = True) -> Workload:
    workload = reader.workload()
    pods = reader.pods(workload)
    folded = reader.events(workload, pods, limit=EVENTS_READ) if events else []
    return Workload(reader.label, pods, folded, datetime.now(UTC))


def statuses(pod: dict[str, Any]) -> Iterator[tuple[dict[str, Any], bool]]:
    """(container status, is an init container) of every container of the pod."""
    status = pod.get("status") or {}
    for cs in status.get("initContainerStatuses") or []:
        yield cs, True
    for cs in status.get("containerStatuses") or []:
        yield cs, False


def waiting(cs: dict[str, Any]) -> tuple[str | None, str | None]:
    state = (cs.get("state") or {}).get("waiting") or {}
    return state.get("reason"), state.get("message")


def pod_name(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["name"])


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def pod_events(events: list[dict[str, Any]], pod: str,
               reasons: set[str] | None = None) -> list[dict[str, Any]]:
    """The folded events about this pod (latest first), of these reasons."""
    found = [e for e in events if e.get("kind") == "Pod" and pod in (e.get("objects") or [])
             and (reasons is None or e.get("reason") in reasons)]
    return sorted(found, key=lambda e: e.get("last_seen") or "", reverse=True)


def result(level: Level, summary: str, **fields: Any) -> dict[str, Any]:
    return {"ok": level == "ok", "level": level, "summary": summary, **fields}


def others_ready(workload: Workload, affected: set[str]) -> str:
    ready = sum(1 for p in workload.pods if pod_name(p) not in affected and is_ready(p))
    return f"; {ready} other pod(s) still ready" if ready else ""
