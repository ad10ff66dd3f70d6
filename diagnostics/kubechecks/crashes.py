"""`kubernetes.crash_loop`: containers that crash-loop, were OOM-killed, or keep
restarting; the previous container's exit code and reason, the classified last error in its
log (GET .../log?previous=true) and what it points at (`diagnostics.errorcause`): "crash-loops
because its database at HOST:5432 refuses connections: check the database; a restart will
not help"."""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field

from runner.errors import PermanentError
from runner.model import Duration

from .. import logclass
from ..errorcause import is_error_line, last_errors_before_exits, point_at
from ..grading import worst
from ..kubernetes.objects import MAX_PODS, parse_time
from . import kubeapi
from .podstate import Workload, pod_name, read_workload, result, statuses, waiting


class CrashLoopParams(kubeapi.Params):
    window: Duration = Field(3600.0, description="a restart or OOM kill counts when the last "
                             "exit is this recent")
    restarts_warning: int = Field(3, ge=1, description="restarts of a container, its last "
                                  "exit within the window, that make a warning")
    tail: int = Field(500, ge=10, le=10000, description="log lines read of each crashed "
                      "container's last run")


_SIGNALS = {
    0: ("exits_cleanly", "its process exits with code 0, and the pod's restartPolicy starts "
        "it again", "it must keep running in the foreground: fix its command"),
    126: ("command", "its command is not executable (exit code 126)",
          "fix the image's entrypoint or the pod's command"),
    127: ("command", "its command is not found (exit code 127)",
          "fix the image's entrypoint or the pod's command"),
    137: ("killed", "it is killed (SIGKILL, exit code 137) without running out of memory: a "
          "failing liveness probe or an outside kill", "see kubernetes.probe_failures"),
    139: ("crash", "it crashes (SIGSEGV, exit code 139)", "read its previous log; a restart "
          "will not help"),
}


def crash_candidates(workload: Workload, params: CrashLoopParams) -> list[dict[str, Any]]:
    """The containers that crash-loop (CrashLoopBackOff, or exited and restarted), were
    OOM-killed within the window, or restarted at least `restarts_warning` times with their
    last exit within the window; with their last termination."""
    since = workload.now - timedelta(seconds=params.window)
    found = []
    for pod in workload.pods:
        policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
        for cs, init in statuses(pod):
            state = cs.get("state") or {}
            reason, message = waiting(cs)
            restarts = int(cs.get("restartCount") or 0)
            current = state.get("terminated")
            last = current or (cs.get("lastState") or {}).get("terminated") or {}
            finished = parse_time(last.get("finishedAt"))
            recent = finished is not None and finished >= since
            looping = reason == "CrashLoopBackOff" or bool(
                current and restarts and policy != "Never" and current.get("exitCode") != 0)
            oom = last.get("reason") == "OOMKilled" and recent
            if not (looping or oom or (recent and restarts >= params.restarts_warning)):
                continue
            back_off = re.search(r"back-off (\S+) restarting", message or "")
            found.append({
                "pod": pod_name(pod), "container": cs.get("name"), "init": init,
                "state": reason or ("terminated" if current else "running"),
                "level": "critical" if looping or oom else "warning",
                "restarts": restarts, "back_off": back_off.group(1) if back_off else None,
                "exit_code": last.get("exitCode"), "reason": last.get("reason"),
                "finished_at": finished.isoformat() if finished else None,
                "previous": current is None})  # its log: the previous container's
    return sorted(found, key=lambda c: (c["level"] != "critical", -c["restarts"]))


def last_error(lines: list[str], finished_at: str | None) -> dict[str, Any]:
    """The last classified error of one container's log (every line is of the run that
    ended at `finished_at`, second-precise: a later line of that second is still its), and
    the error lines before it (an application often logs where it failed to connect, then
    dies of an exception that does not say)."""
    end = parse_time(finished_at)
    stamped = [t for t in (parse_time_of(line) for line in lines) if t is not None]
    moment = max(filter(None, [end + timedelta(seconds=1) if end else None, *stamped]),
                 default=None)
    if moment is None:
        return {"at": finished_at, "last_error": None, "class": None, "classes": {},
                "earlier_errors": []}
    found = last_errors_before_exits(lines, [moment])[0]
    errors = [m.strip()[:300] for m in (logclass.split_timestamp(line)[1] for line in lines)
              if is_error_line(m)]
    earlier = errors[:-1] if errors and errors[-1] == found["last_error"] else errors
    return found | {"at": finished_at, "earlier_errors": earlier[-10:]}


def pointed(candidate: dict[str, Any]) -> dict[str, Any]:
    """What the candidate's last error points at; its target, when that line names none,
    from the latest earlier error line of the same run that points at the same cause."""
    pointer = point_at(candidate["last_error"], candidate["class"])
    if pointer["cause"] is None or pointer["target"]:
        return pointer
    for line in reversed(candidate.get("earlier_errors") or []):
        earlier = point_at(line, logclass.classify_message(line))
        if earlier["cause"] == pointer["cause"] and earlier["target"]:
            return earlier
    return pointer


def parse_time_of(line: str) -> datetime | None:
    moment = logclass.split_timestamp(line)[0]
    return moment if moment is not None and moment.tzinfo else None


def diagnose_crashes(label: str, candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """Grade the candidates (each with its `last_error` and `class` added) and say why they
    keep dying: the cause most of their last errors point at, OOM kills included."""
    if not candidates:
        return result("ok", f"{label}: no container crash-loops or was OOM-killed",
                       crashing=[], cause=None, cause_target=None, restart_count=0,
                       exit_codes=[], oom_killed=False)
    level = worst(c["level"] for c in candidates)
    pointers = [pointed(c) for c in candidates if c["last_error"]]
    pointers += [point_at("", "oom") for c in candidates if c["reason"] == "OOMKilled"]
    causes = Counter(p["cause"] for p in pointers if p["cause"])
    cause = causes.most_common(1)[0][0] if causes else None
    pointer = next((p for p in reversed(pointers) if cause and p["cause"] == cause), None)
    codes = sorted({c["exit_code"] for c in candidates if c["exit_code"] is not None})
    if pointer is None and len(codes) == 1 and codes[0] in _SIGNALS:
        cause, explain, advice = _SIGNALS[codes[0]]
        pointer = {"cause": cause, "target": None, "explain": explain, "advice": advice}
    restarts = sum(c["restarts"] for c in candidates)
    pods = sorted({c["pod"] for c in candidates})
    back_off = next((c["back_off"] for c in candidates if c["back_off"]), None)
    counted = (f"{len(pods)} pod(s), {restarts} restart(s), exit code "
               f"{'/'.join(map(str, codes)) or '?'}"
               + (f", back-off {back_off}" if back_off else ""))
    verb = "crash-loops" if level == "critical" else "keeps restarting"
    said = next((c for c in candidates if c["last_error"]), None)
    if pointer is not None:
        summary = f"{label} {verb} because {pointer['explain']} ({counted}): {pointer['advice']}"
    elif said is not None:
        summary = (f"{label} {verb} ({counted}); the last error before it exited: "
                   f"{said['last_error'][:160]}")
    else:
        summary = (f"{label} {verb} ({counted}) and logs no error before it exits: read its "
                   "previous log (kubectl logs --previous) and its command")
    return result(level, summary, crashing=candidates, cause=cause,
                   cause_target=pointer["target"] if pointer else None,
                   restart_count=restarts, exit_codes=codes,
                   oom_killed=any(c["reason"] == "OOMKilled" for c in candidates))


def crash_loop(view: Any, params: CrashLoopParams) -> dict[str, Any]:
    """Reads the workload's pods, then the log of each crashing container's last run
    (GET .../log?previous=true while it waits to restart), at most MAX_PODS of them."""
    reader = kubeapi.reader(view)
    workload = read_workload(reader, events=False)
    candidates = crash_candidates(workload, params)
    for candidate in candidates[:MAX_PODS]:
        lines: list[str] = []
        with contextlib.suppress(PermanentError):  # no previous container (any more)
            text = reader.api.call(
                "get", "pods/log", reader.api.core.read_namespaced_pod_log, candidate["pod"],
                reader.namespace, container=candidate["container"],
                previous=candidate["previous"], timestamps=True, tail_lines=params.tail,
                raw=True)
            lines = text.splitlines()
        found = last_error(lines, candidate["finished_at"])
        candidate.update({"last_error": found["last_error"], "class": found["class"],
                          "classes": found["classes"],
                          "earlier_errors": found["earlier_errors"]})
    for candidate in candidates[MAX_PODS:]:
        candidate.update({"last_error": None, "class": None, "classes": {},
                          "earlier_errors": []})
    return diagnose_crashes(workload.label, candidates)
