"""`kubernetes.probe_failures`: readiness, liveness and startup probes that fail, from the
kubelet's `Unhealthy` events (and its `Killing` events for a failed liveness or startup
probe): counts over a window, the last message, and what it means (nothing listens on the
port, an HTTP status, a timeout)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import Field

from runner.model import Duration

from ..grading import above, worst
from ..kubernetes.objects import parse_time
from . import kubeapi
from .podstate import Workload, is_ready, pod_name, read_workload, result


class ProbeParams(kubeapi.Params):
    window: Duration = Field(600.0, description="count probe failures seen this recently")
    failures_warning: int = Field(3, ge=1, description="failures of one probe in the window "
                                  "that make a warning (critical: pods not ready, or killed)")


_PROBE = re.compile(r"^(?P<probe>Readiness|Liveness|Startup) probe (?:failed|errored)"
                    r"(?::\s*(?P<detail>.*))?$", re.IGNORECASE | re.DOTALL)
_KILLED_BY = re.compile(r"failed (?P<probe>liveness|startup) probe", re.IGNORECASE)
_PORT = re.compile(r"dial tcp [^\s]*:(?P<port>\d+)")
_STATUS_CODE = re.compile(r"statuscode: (?P<code>\d{3})", re.IGNORECASE)


def probe_cause(detail: str) -> tuple[str, str]:
    """(cause, what it means) of one probe failure's message."""
    if re.search(r"connection refused", detail, re.IGNORECASE):
        port = _PORT.search(detail)
        return "refused", ("nothing listens on the probed port"
                           + (f" {port.group('port')}" if port else ""))
    if (code := _STATUS_CODE.search(detail)) is not None:
        return "http_status", f"the probed endpoint answers HTTP {code.group('code')}"
    if re.search(r"timeout|deadline exceeded|timed out", detail, re.IGNORECASE):
        return "timeout", "the probed endpoint does not answer within its timeoutSeconds"
    if re.search(r"no route to host|network is unreachable", detail, re.IGNORECASE):
        return "unreachable", "the pod's IP cannot be reached from its node"
    return "failed", f"it fails: {detail.strip()[:160] or 'no output'}"


def grade_probes(workload: Workload, params: ProbeParams) -> dict[str, Any]:
    since = workload.now - timedelta(seconds=params.window)
    probes: dict[str, dict[str, Any]] = {}
    for event in workload.events:
        seen = parse_time(event.get("last_seen"))
        if seen is None or seen < since or event.get("kind") != "Pod":
            continue
        message = event.get("message") or ""
        if event.get("reason") == "Unhealthy" and (match := _PROBE.match(message)):
            entry = probes.setdefault(match.group("probe").lower(), {
                "failures": 0, "kills": 0, "pods": [], "last_message": None, "last_seen": ""})
            entry["failures"] += event["count"]
            entry["pods"] = sorted(set(entry["pods"]) | set(event.get("objects") or []))
            if (event.get("last_seen") or "") >= entry["last_seen"]:
                entry["last_message"], entry["last_seen"] = message, event.get("last_seen")
        elif event.get("reason") == "Killing" and (killed := _KILLED_BY.search(message)):
            probes.setdefault(killed.group("probe").lower(), {
                "failures": 0, "kills": 0, "pods": [], "last_message": None,
                "last_seen": ""})["kills"] += event["count"]
    not_ready = [pod_name(p) for p in workload.pods
                 if (p.get("status") or {}).get("phase") == "Running" and not is_ready(p)]
    graded = []
    for probe, entry in sorted(probes.items()):
        detail = _PROBE.match(entry["last_message"] or "")
        cause, explain = probe_cause((detail.group("detail") or "") if detail else "")
        level = above(entry["failures"], params.failures_warning, None)
        if probe == "readiness" and level != "ok" and not_ready:
            level = "critical"
        if entry["kills"]:
            level = "critical"
        graded.append({"probe": probe, "level": level, "cause": cause, "explain": explain,
                        **entry})
    level = worst(g["level"] for g in graded)
    shown = [g for g in graded if g["level"] != "ok"]
    window = f"{params.window:g} s"
    if not shown:
        return result("ok", f"{workload.label}: no probe failed enough to matter in the "
                             f"last {window} ({sum(g['failures'] for g in graded)} failure(s))",
                       probes=graded, not_ready=not_ready, cause=None)
    shown.sort(key=lambda g: (g["level"] != "critical", -g["failures"]))
    parts = []
    for g in shown:
        consequence = (f", {g['kills']} container kill(s)" if g["kills"]
                       else f", {len(not_ready)} of {len(workload.pods)} pod(s) not ready"
                       if g["probe"] == "readiness" and not_ready else "")
        parts.append(f"its {g['probe']} probe fails because {g['explain']} "
                     f"({g['failures']} failure(s) in the last {window}{consequence})")
    summary = (f"{workload.label}: {'; '.join(parts)}: fix what the probe checks, or the "
               f"probe's port, path or timeout; last: {str(shown[0]['last_message'])[:160]}")
    return result(level, summary, probes=graded, not_ready=not_ready, cause=shown[0]["cause"])


def probe_failures(view: Any, params: ProbeParams) -> dict[str, Any]:
    """Reads the workload's pods (readiness) and the kubelet's Unhealthy and Killing
    events about them."""
    return grade_probes(read_workload(kubeapi.reader(view)), params)
