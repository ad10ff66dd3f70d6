"""Kubernetes objects as the API returns them (plain JSON): quantities, times, label
selectors, and a pod the way `kubectl get pods` and `describe` tell it. Pure functions."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

from runner.errors import PermanentError

from .. import logclass

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
HASH_LABEL = "pod-template-hash"
MAX_PODS = 10  # logs and memory of at most this many pods
# Waiting reasons that no amount of waiting fixes: a rollout that meets one has failed.
STUCK = frozenset({"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull",
                   "InvalidImageName", "CreateContainerConfigError", "CreateContainerError",
                   "RunContainerError"})
_BACK_OFF = re.compile(r"back-off (\S+) restarting", re.IGNORECASE)
MIB = 1024 * 1024


_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([numkMGTPE]i?|Ki)?$")
_SUFFIX = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
           "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12),
           "P": Decimal(10**15), "E": Decimal(10**18), "Ki": Decimal(2**10),
           "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
           "Pi": Decimal(2**50), "Ei": Decimal(2**60)}


def quantity(value: str | int | float) -> Decimal:
    """A Kubernetes quantity as a number: 96Mi, 1Gi, 500M, 250m (CPU), 1234n, 1e9."""
    match = _QUANTITY.match(str(value).strip())
    if not match or (match.group(2) or "") not in _SUFFIX:
        raise PermanentError(f"not a Kubernetes quantity: {value!r}")
    return Decimal(match.group(1)) * _SUFFIX[match.group(2) or ""]


def parse_quantity(value: str | int | float | None) -> int | None:
    """Bytes from a memory quantity (rounded up, as Kubernetes does); None for none."""
    if value is None or value == "":
        return None
    return int(quantity(value).to_integral_value(rounding=ROUND_CEILING))


def format_quantity(size: int) -> str:
    """A byte count as Kubernetes writes it: 192Mi rather than 201326592."""
    for suffix, unit in (("Gi", 1024**3), ("Mi", MIB), ("Ki", 1024)):
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def iso_of(text: str | None) -> str | None:
    return iso(parse_time(text))


def label_selector(selector: dict[str, Any]) -> str:
    """A LabelSelector object as the `key=value,key in (a,b)` string the API takes."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        parts.append({"In": f"{key} in ({','.join(values)})",
                      "NotIn": f"{key} notin ({','.join(values)})",
                      "Exists": key, "DoesNotExist": f"!{key}"}[op])
    return ",".join(parts)


_EPOCH = datetime.min.replace(tzinfo=UTC)


def line_time(line: str) -> datetime:
    """A log line's leading timestamp (the runtime's, nanoseconds and all), for merging."""
    moment = logclass.split_timestamp(line.split(" ", 1)[0])[0]
    return moment if moment is not None and moment.tzinfo else _EPOCH


def annotation(obj: dict[str, Any], key: str) -> str | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(key)
    return str(value) if value is not None else None


def template_containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    return list(((template.get("spec") or {}).get("containers")) or [])


def owned_by(obj: dict[str, Any], owners: set[str]) -> bool:
    """Whether an owner reference of `obj` names one of the `owners` uids."""
    return any(ref.get("uid") in owners
               for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def as_int(value: Any, default: int = 0) -> int:
    return int(value) if value is not None else default


def container_status(pod: dict[str, Any], container: str | None) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return next((s for s in statuses if s.get("name") == container), {})

def pod_view(pod: dict[str, Any], container: str | None) -> dict[str, Any]:
    """One pod, the way `kubectl get pods` and `describe` tell it."""
    meta, status = pod["metadata"], pod.get("status") or {}
    cs = container_status(pod, container)
    state = cs.get("state") or {}
    last = (cs.get("lastState") or {}).get("terminated")
    running = "running" in state
    message = None
    if running:
        shown = "running"
    elif "waiting" in state:
        shown = state["waiting"].get("reason") or "waiting"
        message = state["waiting"].get("message")
    elif "terminated" in state:
        shown = state["terminated"].get("reason") or "terminated"
        message = state["terminated"].get("message")
    else:
        unschedulable = next((c for c in status.get("conditions") or []
                              if c.get("type") == "PodScheduled"
                              and c.get("status") == "False"), None)
        shown = (unschedulable or {}).get("reason") or str(status.get("phase", "Pending"))
        message = (unschedulable or {}).get("message")
    terminated = state.get("terminated") or last
    back_off = _BACK_OFF.search(message or "")
    return {
        "name": meta["name"],
        "phase": status.get("phase"),
        "state": shown,
        "running": running,
        "ready": bool(cs.get("ready")),
        "ip": status.get("podIP"),
        "node": (pod.get("spec") or {}).get("nodeName"),
        "revision": (meta.get("labels") or {}).get(HASH_LABEL)
        or (meta.get("labels") or {}).get("controller-revision-hash"),
        "restarts": as_int(cs.get("restartCount")),
        "started_at": iso_of((state.get("running") or {}).get("startedAt")),
        "message": message,
        "back_off": back_off.group(1) if back_off else None,
        "last_termination": {
            "reason": terminated.get("reason"),
            "exit_code": terminated.get("exitCode"),
            "started_at": iso_of(terminated.get("startedAt")),
            "finished_at": iso_of(terminated.get("finishedAt")),
            "message": terminated.get("message"),
            "current": "terminated" in state,
        } if terminated else None,
        "container_id": cs.get("containerID"),
        "image_id": cs.get("imageID"),
        "created_at": iso_of(meta.get("creationTimestamp")),
    }

def pod_rank(pod: dict[str, Any]) -> tuple[int, int]:
    """Lower is worse: stuck, then stopped, then starting, then unready, then fine."""
    if pod["state"] in STUCK:
        rank = 0
    elif pod["last_termination"] and pod["last_termination"]["current"]:
        rank = 1
    elif not pod["running"]:
        rank = 2
    else:
        rank = 3 if not pod["ready"] else 4
    return rank, -pod["restarts"]
