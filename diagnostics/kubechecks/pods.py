"""Why a workload's pods do not run: read-only `kubernetes.*` checks of a `service` target
with `runtime: kubernetes`.

    kubernetes.image_pull      ErrImagePull, ImagePullBackOff, ErrImageNeverPull,
                               InvalidImageName: the image, the kubelet's event, and why
                               (no such tag, not on the node, registry unreachable, refused)
    kubernetes.crash_loop      CrashLoopBackOff, OOMKilled and repeated restarts: the previous
                               container's exit code and reason, the classified last error in
                               its log (GET .../log?previous=true) and what it points at
    kubernetes.pending         Pending pods with the scheduler's reason (insufficient cpu or
                               memory, taints, node selector or affinity, unbound claims)
    kubernetes.config_error    CreateContainerConfigError: the missing Secret, ConfigMap or key
    kubernetes.probe_failures  readiness, liveness and startup probe failures (Unhealthy
                               events): counts, the last message, what it means
    kubernetes.evictions       pods the kubelet evicted (status.reason Evicted), with why

Each returns `ok`, `level` (ok, warning, critical) and a one-line `summary` that names the
cause, plus what it measured; the grading functions are pure, over the API's JSON. Each
lives with its own kind of reasoning: `crashes` (crash loops), `scheduling` (pending),
`probes` (probe failures), here the rest; `podstate` is how they read the workload. The
node checks live in `cluster`. All of them are registered from here.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

from runner.registry import Registry, StepKind

from ..grading import above
from ..service import KIND
from . import kubeapi
from .crashes import CrashLoopParams, crash_loop
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
from .probes import ProbeParams, probe_failures
from .scheduling import PendingParams, pending


class NoParams(kubeapi.Params):
    pass


class EvictionParams(kubeapi.Params):
    evictions_warning: int = Field(1, ge=1, description="evicted pods for a warning")
    evictions_critical: int = Field(3, ge=1, description="evicted pods for critical")


# kubernetes.image_pull

_PULL_EVENTS = {"Failed", "ErrImageNeverPull", "InspectFailed", "BackOff"}
_PULL_CAUSES: tuple[tuple[str, re.Pattern[str], str, str], ...] = tuple(
    (cause, re.compile(pattern, re.IGNORECASE), explain, advice)
    for cause, pattern, explain, advice in (
        ("not_found", r"not found|manifest unknown|does not exist|no such image|repository "
                      r"\S+ not found", "the registry has no such image or tag",
         "fix the tag or push the image; it will not start until then"),
        ("auth", r"unauthorized|authentication required|pull access denied|denied|forbidden"
                 r"|no basic auth credentials", "the registry refused to serve it",
         "check imagePullSecrets and the registry's permissions"),
        ("rate_limited", r"toomanyrequests|rate limit", "the registry rate-limits the pulls",
         "authenticate the pulls or use a mirror"),
        ("registry_unreachable", r"no such host|i/o timeout|connection refused|dial tcp"
                                 r"|network is unreachable|TLS handshake|deadline exceeded"
                                 r"|server gave HTTP response",
         "the node cannot reach the registry",
         "check the registry's address and the node's network, DNS or proxy"),
    ))


def pull_cause(reason: str, message: str) -> tuple[str, str, str]:
    """(cause, what it means, what to do) of an image pull failure."""
    if reason == "ErrImageNeverPull":
        return ("not_on_node", "the image is not on the node and its imagePullPolicy is Never",
                "load the image onto the node or fix the tag")
    if reason == "InvalidImageName":
        return ("invalid_name", "the image reference is not a valid name",
                "fix the image in the pod template")
    for cause, pattern, explain, advice in _PULL_CAUSES:
        if pattern.search(message):
            return cause, explain, advice
    return ("pull_failed", "the image cannot be pulled",
            "read the event's message; it stays down until the image or its access is fixed")


def _pull_event(events: list[dict[str, Any]], pod: str, image: str) -> dict[str, Any] | None:
    """The kubelet's event that says why: the failure itself before the back-off notes."""
    found = pod_events(events, pod, _PULL_EVENTS)
    found = [e for e in found if e.get("reason") != "BackOff" or "image" in e["message"]]
    found.sort(key=lambda e: (e.get("reason") == "BackOff",
                              image not in (e.get("message") or "")))
    return found[0] if found else None


def grade_image_pull(workload: Workload) -> dict[str, Any]:
    failing: list[dict[str, Any]] = []
    for pod in workload.pods:
        for cs, init in statuses(pod):
            reason, message = waiting(cs)
            if reason not in IMAGE_PULL:
                continue
            image = str(cs.get("image") or "?")
            event = _pull_event(workload.events, pod_name(pod), image)
            said = (event or {}).get("message") or message or ""
            cause, explain, advice = pull_cause(reason or "", said)
            failing.append({"pod": pod_name(pod), "container": cs.get("name"), "init": init,
                            "image": image, "reason": reason, "message": message,
                            "event": said or None, "cause": cause, "explain": explain,
                            "advice": advice})
    if not failing:
        return result("ok", f"{workload.label}: every container's image is there "
                             f"({len(workload.pods)} pod(s))", failing=[], images=[],
                       cause=None)
    first = failing[0]
    pods = sorted({f["pod"] for f in failing})
    images = sorted({f["image"] for f in failing})
    summary = (f"{workload.label}: {len(pods)} pod(s) cannot start because {first['explain']} "
               f"({first['reason']}, image {first['image']}){others_ready(workload, set(pods))}"
               f": {first['advice']}; the kubelet says: {str(first['event'])[:200]}")
    return result("critical", summary, failing=failing, images=images, cause=first["cause"])


def image_pull(view: Any, params: NoParams) -> dict[str, Any]:
    """Reads the workload's pods (their containers' waiting reasons) and its events."""
    return grade_image_pull(read_workload(kubeapi.reader(view)))


# kubernetes.config_error

_MISSING_OBJECT = re.compile(r'(?P<kind>secret|configmap)s? "(?P<name>[^"]+)" not found',
                             re.IGNORECASE)
_MISSING_KEY = re.compile(r"couldn't find key (?P<key>\S+) in (?P<kind>Secret|ConfigMap) "
                          r"(?:(?P<namespace>[\w.-]+)/)?(?P<name>[\w.-]+)", re.IGNORECASE)
_KINDS = {"secret": "Secret", "configmap": "ConfigMap"}


def parse_config_error(message: str) -> dict[str, Any]:
    """{cause, kind, name, key, explain} of a CreateContainerConfigError's message."""
    if (key := _MISSING_KEY.search(message)) is not None:
        kind = _KINDS[key.group("kind").lower()]
        return {"cause": "missing_key", "kind": kind, "name": key.group("name"),
                "key": key.group("key"),
                "explain": f"its {kind} {key.group('name')} has no key {key.group('key')}"}
    if (missing := _MISSING_OBJECT.search(message)) is not None:
        kind = _KINDS[missing.group("kind").lower()]
        return {"cause": f"missing_{kind.lower()}", "kind": kind, "name": missing.group("name"),
                "key": None, "explain": f"the {kind} {missing.group('name')} it references "
                                        "does not exist"}
    if "runAsNonRoot" in message:
        return {"cause": "security_context", "kind": None, "name": None, "key": None,
                "explain": "its securityContext says runAsNonRoot but the image runs as root"}
    return {"cause": "other", "kind": None, "name": None, "key": None,
            "explain": f"the kubelet cannot create its container: {message[:200]}"}


def grade_config_error(workload: Workload) -> dict[str, Any]:
    failing: list[dict[str, Any]] = []
    for pod in workload.pods:
        for cs, init in statuses(pod):
            reason, message = waiting(cs)
            if reason not in CONFIG_ERRORS:
                continue
            event = next(iter(pod_events(workload.events, pod_name(pod), {"Failed"})), None)
            text = message or (event or {}).get("message") or ""
            failing.append({"pod": pod_name(pod), "container": cs.get("name"), "init": init,
                            "reason": reason, "message": text, **parse_config_error(text)})
    if not failing:
        return result("ok", f"{workload.label}: no container waits on a configuration "
                             "error", failing=[], cause=None, missing=[])
    first = failing[0]
    missing = sorted({f"{f['kind']}/{f['name']}" + (f" key {f['key']}" if f["key"] else "")
                      for f in failing if f["kind"]})
    pods = {f["pod"] for f in failing}
    advice = ("create it or fix the reference; the kubelet retries, so the pod starts once it "
              "exists (a restart will not help)" if first["kind"]
              else "fix the pod template")
    summary = (f"{workload.label}: {len(pods)} pod(s) cannot create container "
               f"{first['container']} because {first['explain']} ({first['reason']})"
               f"{others_ready(workload, pods)}: {advice}")
    return result("critical", summary, failing=failing, cause=first["cause"], missing=missing)


def config_error(view: Any, params: NoParams) -> dict[str, Any]:
    """Reads the workload's pods (their containers' waiting reasons and messages) and the
    kubelet's Failed events; never the Secrets or ConfigMaps themselves."""
    return grade_config_error(read_workload(kubeapi.reader(view)))


# kubernetes.evictions

_LOW_ON = re.compile(r"low on resource: (?P<resource>[\w.-]+)", re.IGNORECASE)


def eviction_cause(message: str) -> tuple[str, str, str]:
    """(cause, what it means, what to do) of an eviction's message."""
    if (low := _LOW_ON.search(message)) is not None:
        resource = low.group("resource")
        return ("node_pressure", f"its node ran short of {resource}",
                "see kubernetes.node_pressure; give the pod requests that cover its use so "
                "it is not evicted first")
    if re.search(r"ephemeral (?:local )?storage|EmptyDir", message, re.IGNORECASE):
        return ("local_storage_limit", "it wrote more local disk than its limit allows",
                "raise its ephemeral-storage limit or emptyDir sizeLimit, or write less "
                "(logs, temporary files)")
    return ("evicted", "the kubelet evicted it", "read the message")


def grade_evictions(workload: Workload, params: EvictionParams) -> dict[str, Any]:
    evicted: list[dict[str, Any]] = []
    for pod in workload.pods:
        status = pod.get("status") or {}
        if status.get("reason") != "Evicted":
            continue
        message = str(status.get("message") or "")
        finished = [t for cs, _ in statuses(pod)
                    if (t := ((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))]
        cause, explain, advice = eviction_cause(message)
        evicted.append({"pod": pod_name(pod), "message": message.strip(), "cause": cause,
                        "explain": explain, "advice": advice,
                        "node": (pod.get("spec") or {}).get("nodeName"),
                        "at": max(finished, default=status.get("startTime"))})
    level = above(len(evicted), params.evictions_warning, params.evictions_critical)
    if not evicted:
        return result("ok", f"{workload.label}: no evicted pod", evicted=[], cause=None)
    evicted.sort(key=lambda e: e["at"] or "", reverse=True)
    causes = Counter(e["cause"] for e in evicted)
    first = next(e for e in evicted if e["cause"] == causes.most_common(1)[0][0])
    summary = (f"{workload.label}: {len(evicted)} pod(s) evicted because {first['explain']}: "
               f"{first['advice']}; the kubelet said: {first['message'][:200]}")
    return result(level, summary, evicted=evicted, cause=first["cause"])


def evictions(view: Any, params: EvictionParams) -> dict[str, Any]:
    """Reads the workload's pods: those the kubelet evicted stay, failed, until deleted."""
    return grade_evictions(read_workload(kubeapi.reader(view), events=False), params)


_GRADED = {"ok": "nothing wrong", "level": "ok, warning or critical",
           "summary": "one line: the cause, and what to do"}

KINDS: tuple[tuple[str, Any, type[BaseModel], str, dict[str, str]], ...] = (
    ("image_pull", image_pull, NoParams,
     "pods that cannot get their image, with the image, the kubelet's message and why",
     {"failing": "[{pod, container, image, reason, message, event, cause}]",
      "images": "the images", "cause": "not_found, not_on_node, invalid_name, auth, "
      "registry_unreachable, rate_limited, pull_failed or null"}),
    ("crash_loop", crash_loop, CrashLoopParams,
     "crash loops and OOM kills: exit codes, the last error before each exit and its cause",
     {"crashing": "[{pod, container, state, restarts, back_off, exit_code, reason, "
      "finished_at, last_error, class}]", "cause": "database, dns, missing_file, dependency, "
      "oom, command, killed, exits_cleanly, crash or null", "cause_target": "host:port, name "
      "or path it points at", "restart_count": "restarts of those containers",
      "exit_codes": "list", "oom_killed": "bool"}),
    ("pending", pending, PendingParams,
     "pending pods with the scheduler's reason (resources, taints, selectors, claims)",
     {"pending": "[{pod, scheduled, age_s, message, reasons: [{nodes, reason, cause}], "
      "requests, cause, explain, advice}]", "cause": "insufficient_memory, insufficient_cpu, "
      "taint, node_selector, unbound_pvc, missing_pvc, ... or null",
      "waiting_elsewhere": "pending pods left to image_pull and config_error"}),
    ("config_error", config_error, NoParams,
     "containers that cannot be created: a missing Secret, ConfigMap or key",
     {"failing": "[{pod, container, reason, message, cause, kind, name, key}]",
      "missing": "Kind/name [key k]", "cause": "missing_secret, missing_configmap, "
      "missing_key, security_context, other or null"}),
    ("probe_failures", probe_failures, ProbeParams,
     "readiness, liveness and startup probe failures from the kubelet's events",
     {"probes": "[{probe, level, failures, kills, pods, last_message, last_seen, cause}]",
      "not_ready": "running pods not ready", "cause": "refused, http_status, timeout, "
      "unreachable, failed or null"}),
    ("evictions", evictions, EvictionParams, "pods the kubelet evicted, and why",
     {"evicted": "[{pod, message, cause, node, at}]",
      "cause": "node_pressure, local_storage_limit, evicted or null"}),
)


def register(registry: Registry) -> None:
    """Adds this module's kinds, and the node checks of `cluster`."""
    from . import cluster

    for name, func, params, summary, fields in KINDS:
        registry.add(StepKind(f"kubernetes.{name}", KIND, func, params, False, summary,
                              {**_GRADED, **fields}, timeout=60.0))
    cluster.register(registry)
