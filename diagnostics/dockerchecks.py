"""Containers on Docker: read-only `docker.*` checks of a `service` target with `runtime: docker`.

    docker.crash_loop      exits and restarts over a window (the engine's `die` events), exit
                           codes, OOMKilled, the classified last error line before each exit
                           and what it points at (a database, DNS, a missing file, a dependency)
    docker.healthcheck     the HEALTHCHECK's status, failing streak and last log entries
    docker.restart_policy  on-failure:N exhausted (RestartCount >= N, exited), or `no` and down
    docker.image_missing   the container's image id gone from the engine; its tag, or the
                           service's previous_image, absent
    docker.disk_usage      the engine's `/system/df`: images, build cache, volumes, containers,
                           what is reclaimable, against byte thresholds

Each returns `ok`, `level` (ok, warning, critical) and a one-line `summary` that names the
cause ("crash-loops because its database at 10.0.0.5:5432 refuses connections: check the
database; a restart will not help"), plus what it measured. They talk to the engine through
`diagnostics.docker`'s read-only client (GET and HEAD only, refused at its transport), so a
check cannot change a container even by a bug. A service on another runtime is refused: these
read Docker's own records, which Kubernetes does not keep.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from runner.errors import PermanentError
from runner.model import Duration
from runner.registry import Registry, StepKind

from .docker import _api
from .docker import _translated as _call  # Docker's errors as temporary/permanent
from .errorcause import last_errors_before_exits, point_at
from .grading import Level, above, worst
from .service import KIND, DockerService, parse_size

Bytes = Annotated[int, BeforeValidator(parse_size, json_schema_input_type=int | str)]
API_TIMEOUT = 30.0


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def span(seconds: float) -> str:
    """600 -> "10 min", 7200 -> "2 h", 45 -> "45 s": a window as a person says it."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def diagnose(state: dict[str, Any], restart_count: int, exits: list[dict[str, Any]],
             errors: list[dict[str, Any]], window: float, thresholds: CrashLoopParams,
             name: str) -> dict[str, Any]:
    """Grade a container's exits and say why it keeps dying. `exits` are the window's `die`
    events ({at, exit_code}); `errors` the last error before each (last_errors_before_exits)."""
    codes = [e["exit_code"] for e in exits if e.get("exit_code") is not None]
    failed = [c for c in codes if c != 0]
    oom = bool(state.get("OOMKilled")) or any(e.get("oom") for e in exits)
    per_hour = round(len(exits) * 3600 / window, 1) if window > 0 else None
    level = worst((above(len(exits), thresholds.exits_warning, thresholds.exits_critical),
                   above(restart_count, thresholds.restarts_warning, thresholds.restarts_critical)
                   if not state.get("Running") or state.get("Restarting") else "ok",
                   "critical" if oom else "ok",
                   "warning" if state.get("Restarting") else "ok"))
    pointers = [point_at(e["last_error"], e["class"]) for e in errors if e["last_error"]]
    if oom:
        pointers.append(point_at("", "oom"))
    causes = Counter(p["cause"] for p in pointers if p["cause"])
    cause = causes.most_common(1)[0][0] if causes else None
    pointer = next((p for p in reversed(pointers) if cause and p["cause"] == cause), None)
    last_error = next((e for e in reversed(errors) if e["last_error"]), None)
    code_text = (f"exit code {'/'.join(str(c) for c in sorted(set(codes)))}"
                 if codes else f"exit code {state.get('ExitCode')}")
    counted = (f"{len(exits)} exit(s) in the last {span(window)}, {restart_count} restart(s), "
               f"{code_text}")
    if level == "ok":
        summary = (f"{name} is {state.get('Status')}: {len(exits)} exit(s) in the last "
                   f"{span(window)}, {restart_count} restart(s) in all")
    else:
        verb = "crash-loops" if level == "critical" else "keeps exiting"
        if pointer is not None:
            summary = (f"{name} {verb} because {pointer['explain']} ({counted}): "
                       f"{pointer['advice']}")
        elif last_error is not None:
            summary = (f"{name} {verb} ({counted}); the last error before it exited: "
                       f"{last_error['last_error'][:160]}")
        else:
            summary = (f"{name} {verb} ({counted}) and logs no error before it exits: "
                       "read its full log (docker logs) and its command")
    return {"ok": level == "ok", "level": level, "summary": summary, "exits": len(exits),
            "exits_per_hour": per_hour, "exit_codes": codes, "failed_exits": len(failed),
            "restart_count": restart_count, "oom_killed": oom, "cause": cause,
            "cause_target": pointer["target"] if pointer else None,
            "last_errors": errors[-thresholds.exits_shown:],
            "state": state.get("Status"), "running": bool(state.get("Running"))}


# The engine


@contextmanager
def _engine(view: Any) -> Iterator[Any]:
    """The read-only Docker API client for the service, or a refusal when it is not on
    Docker."""
    settings = view.settings
    if not isinstance(settings, DockerService):
        runtime = getattr(settings, "runtime", "?")
        raise PermanentError(f"{view.target}: docker.* checks need a service with runtime: "
                             f"docker; this one runs on {runtime} (use its own checks)")
    api = _api(settings.docker_host, API_TIMEOUT, read_only=True)
    try:
        yield api
    finally:
        api.close()


def _exists(api: Any, image: str) -> bool:
    import docker

    try:
        _call(api.inspect_image, image)
    except PermanentError:
        return False
    except docker.errors.NotFound:
        return False
    return True


def _moment(nanos: int | None, seconds: int | None) -> datetime:
    if nanos:
        return datetime.fromtimestamp(nanos / 1e9, UTC)
    return datetime.fromtimestamp(seconds or 0, UTC)


def _die_events(api: Any, container_id: str, window: float) -> list[dict[str, Any]]:
    """The container's `die` and `oom` events over the last `window` seconds: a bounded
    read (until now), never a stream left open."""
    now = int(time.time())
    events = _call(api.events, since=now - int(window), until=now + 1, decode=True,
                   filters={"type": ["container"], "container": [container_id],
                            "event": ["die", "oom"]})
    dies: list[dict[str, Any]] = []
    oom_at: list[datetime] = []
    for event in events:
        at = _moment(event.get("timeNano"), event.get("time"))
        if event.get("Action") == "oom":
            oom_at.append(at)
            continue
        code = (event.get("Actor") or {}).get("Attributes", {}).get("exitCode")
        dies.append({"at": at, "exit_code": int(code) if code not in (None, "") else None,
                     "oom": False})
    for moment in oom_at:  # the OOM kill comes just before its die
        later = [d for d in dies if d["at"] >= moment]
        if later:
            later[0]["oom"] = True
    return sorted(dies, key=lambda d: d["at"])


# Checks


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CrashLoopParams(_Params):
    window: Duration = Field(600.0, description="look at exits over this long")
    exits_warning: int = Field(1, ge=1, description="exits in the window that make a warning")
    exits_critical: int = Field(3, ge=1, description="exits in the window that make a crash loop")
    restarts_warning: int = Field(3, ge=1, description="restarts in all, when it is not "
                                  "running now, that make a warning")
    restarts_critical: int = Field(10, ge=1, description="restarts in all, when it is not "
                                   "running now, that make it critical")
    tail: int = Field(1000, ge=10, le=20000, description="log lines read")
    exits_shown: int = Field(5, ge=1, le=50, description="last errors reported")


def crash_loop(view: Any, params: CrashLoopParams) -> dict[str, Any]:
    with _engine(view) as api:
        info = dict(_call(api.inspect_container, view.settings.container))
        state = info["State"]
        dies = _die_events(api, info["Id"], params.window)
        exits = [{"at": d["at"], "exit_code": d["exit_code"], "oom": d["oom"]} for d in dies]
        raw = _call(api.logs, info["Id"], timestamps=True, tail=params.tail)
    lines = bytes(raw).decode("utf-8", errors="replace").splitlines()
    errors = last_errors_before_exits(lines, [e["at"] for e in exits])
    result = diagnose(state, int(info.get("RestartCount") or 0), exits, errors, params.window,
                      params, view.settings.container)
    return result


class HealthParams(_Params):
    streak_warning: int = Field(1, ge=1, description="failed probes in a row that make a warning")
    entries: int = Field(5, ge=1, le=5, description="last probe results reported")


def grade_health(health: dict[str, Any] | None, test: list[str] | None, name: str,
                 params: HealthParams) -> dict[str, Any]:
    """Grade Docker's State.Health: unhealthy is critical; failing while starting or still
    healthy (under its retries) a warning."""
    if not health:
        return {"ok": True, "level": "ok", "configured": False, "status": None,
                "failing_streak": 0, "log": [],
                "summary": f"{name} has no HEALTHCHECK: Docker does not probe it "
                           "(service.health does, through its health_url)"}
    log = [{"start": e.get("Start"), "exit_code": e.get("ExitCode"),
            "output": (e.get("Output") or "").strip()[:300]}
           for e in (health.get("Log") or [])][-params.entries:]
    status = health.get("Status")
    streak = int(health.get("FailingStreak") or 0)
    command = " ".join((test or [])[1:])[:120] or "(the image's)"
    failure = next((e for e in reversed(log) if e["exit_code"] != 0), None)
    said = ""
    if failure is not None:
        output = failure["output"].splitlines()[-1] if failure["output"] else "no output"
        said = f"; last failure exit {failure['exit_code']}: {output[:160]}"
    if status == "unhealthy":
        level: Level = "critical"
        summary = (f"{name} is unhealthy: its HEALTHCHECK ({command}) failed {streak} time(s) "
                   f"in a row{said}")
    elif streak >= params.streak_warning:
        level = "warning"
        summary = (f"{name} is {status} but its HEALTHCHECK ({command}) failed {streak} time(s) "
                   f"in a row{said}")
    else:
        level = "ok"
        summary = f"{name} is {status}: its HEALTHCHECK ({command}) passes"
    return {"ok": level == "ok", "level": level, "summary": summary, "configured": True,
            "status": status, "failing_streak": streak, "log": log}


def healthcheck(view: Any, params: HealthParams) -> dict[str, Any]:
    with _engine(view) as api:
        info = dict(_call(api.inspect_container, view.settings.container))
    test = ((info.get("Config") or {}).get("Healthcheck") or {}).get("Test")
    return grade_health(info["State"].get("Health"), test, view.settings.container, params)


class NoParams(_Params):
    pass


def grade_restart_policy(info: dict[str, Any], name: str) -> dict[str, Any]:
    """on-failure:N with RestartCount >= N and the container exited: Docker gave up."""
    policy = (info.get("HostConfig") or {}).get("RestartPolicy") or {}
    kind = policy.get("Name") or "no"
    limit = int(policy.get("MaximumRetryCount") or 0)
    state = info["State"]
    restarts = int(info.get("RestartCount") or 0)
    down = not state.get("Running") and state.get("Status") in ("exited", "dead")
    code = state.get("ExitCode")
    text = f"{kind}:{limit}" if kind == "on-failure" and limit else kind
    level: Level = "ok"
    if kind == "on-failure" and limit and restarts >= limit and down and code != 0:
        level = "critical"
        summary = (f"{name}'s restart policy {text} is exhausted: it exited with code {code} "
                   f"after {restarts} restart(s) and Docker will not start it again; fix "
                   "why it exits (docker.crash_loop), then start it")
    elif down and code != 0 and kind in ("no", ""):
        level = "warning"
        summary = (f"{name} exited with code {code} and its restart policy is 'no': it stays "
                   "down until started")
    elif down and code != 0 and kind == "unless-stopped":
        summary = f"{name} was stopped (exit code {code}): unless-stopped keeps it down"
    else:
        summary = f"{name}'s restart policy {text}: not exhausted ({restarts} restart(s))"
    return {"ok": level == "ok", "level": level, "summary": summary, "policy": kind,
            "maximum_retries": limit, "restart_count": restarts, "exit_code": code,
            "exhausted": level == "critical", "state": state.get("Status")}


def restart_policy(view: Any, params: NoParams) -> dict[str, Any]:
    with _engine(view) as api:
        info = dict(_call(api.inspect_container, view.settings.container))
    return grade_restart_policy(info, view.settings.container)


def image_missing(view: Any, params: NoParams) -> dict[str, Any]:
    name = view.settings.container
    previous = view.settings.previous_image
    with _engine(view) as api:
        info = dict(_call(api.inspect_container, name))
        image_id, tag = info["Image"], info["Config"]["Image"]
        id_present = _exists(api, image_id)
        tag_id = dict(_call(api.inspect_image, tag))["Id"] if _exists(api, tag) else None
        previous_present = _exists(api, previous) if previous else None
    problems: list[tuple[Level, str]] = []
    if not id_present:
        problems.append(("critical", f"the image {name} was created from ({image_id[:19]}, "
                         f"{tag}) is gone from the engine: re-creating the container (a "
                         f"rollback, a scale-out, a recreate) will fail; pull or rebuild {tag}"))
    if tag_id is None and id_present:
        problems.append(("warning", f"its image tag {tag} is absent from the engine (the "
                         "image is still there by id): a re-create by tag will fail"))
    if previous and not previous_present:
        problems.append(("warning", f"its previous_image {previous} is not on the engine: a "
                         "rollback has nothing to return to"))
    level = worst(p[0] for p in problems)
    summary = "; ".join(p[1] for p in problems) or (
        f"{name}'s image {tag} is on the engine"
        + (f", and so is its previous_image {previous}" if previous else ""))
    return {"ok": level == "ok", "level": level, "summary": summary, "image": tag,
            "image_id": image_id, "image_id_present": id_present,
            "tag_present": tag_id is not None, "tag_moved": bool(tag_id and tag_id != image_id),
            "previous_image": previous, "previous_image_present": previous_present}


class DiskParams(_Params):
    total_warning: Bytes = Field(50 * 1024**3, ge=0, description="bytes the engine holds in all "
                                 "(images, build cache, volumes, containers) for a warning")
    total_critical: Bytes = Field(200 * 1024**3, ge=0, description="... for critical")
    reclaimable_warning: Bytes = Field(20 * 1024**3, ge=0, description="reclaimable bytes "
                                       "(unused images, idle build cache, orphan volumes) "
                                       "for a warning")


def grade_disk(df: dict[str, Any], params: DiskParams) -> dict[str, Any]:
    """Sum /system/df. Reclaimable: images no container uses (their own bytes, shared layers
    not counted), build cache not in use, volumes no container mounts."""
    images = df.get("Images") or []
    image_bytes = int(df.get("LayersSize") or sum(max(i.get("Size") or 0, 0) for i in images))
    unused_images = [i for i in images if (i.get("Containers") or 0) == 0]
    image_free = sum(max((i.get("Size") or 0) - max(i.get("SharedSize") or 0, 0), 0)
                     for i in unused_images)
    cache = df.get("BuildCache") or []
    cache_bytes = sum(max(c.get("Size") or 0, 0) for c in cache)
    cache_free = sum(max(c.get("Size") or 0, 0) for c in cache
                     if not c.get("InUse") and not c.get("Shared"))
    volumes = df.get("Volumes") or []
    usage = [(v.get("UsageData") or {}) for v in volumes]
    volume_bytes = sum(max(u.get("Size") or 0, 0) for u in usage)
    volume_free = sum(max(u.get("Size") or 0, 0) for u in usage if (u.get("RefCount") or 0) == 0)
    container_bytes = sum(max(c.get("SizeRw") or 0, 0) for c in df.get("Containers") or [])
    total = image_bytes + cache_bytes + volume_bytes + container_bytes
    reclaimable = image_free + cache_free + volume_free
    level = worst((above(total, params.total_warning, params.total_critical),
                   above(reclaimable, params.reclaimable_warning, None)))
    parts = (f"images {human_bytes(image_bytes)}, build cache {human_bytes(cache_bytes)}, "
             f"volumes {human_bytes(volume_bytes)}, containers {human_bytes(container_bytes)}")
    free = (f"{human_bytes(reclaimable)} reclaimable (unused images {human_bytes(image_free)}, "
            f"build cache {human_bytes(cache_free)}, unused volumes {human_bytes(volume_free)})")
    if level == "ok":
        summary = f"the Docker engine holds {human_bytes(total)} ({parts}); {free}"
    else:
        over = ("critical" if total >= params.total_critical else "warning")
        limit = params.total_critical if over == "critical" else params.total_warning
        why = (f"over the {human_bytes(limit)} threshold" if total >= params.total_warning
               else f"with {human_bytes(reclaimable)} reclaimable, over the "
                    f"{human_bytes(params.reclaimable_warning)} threshold")
        summary = (f"the Docker engine holds {human_bytes(total)} ({parts}), {why}; {free}: "
                   "pruning unused images, build cache and volumes would free it")
    return {"ok": level == "ok", "level": level, "summary": summary, "total_bytes": total,
            "images_bytes": image_bytes, "build_cache_bytes": cache_bytes,
            "volumes_bytes": volume_bytes, "containers_bytes": container_bytes,
            "reclaimable_bytes": reclaimable, "reclaimable_images_bytes": image_free,
            "reclaimable_build_cache_bytes": cache_free,
            "reclaimable_volumes_bytes": volume_free, "images": len(images),
            "unused_images": len(unused_images)}


def disk_usage(view: Any, params: DiskParams) -> dict[str, Any]:
    with _engine(view) as api:
        df = dict(_call(api.df))
    return grade_disk(df, params)


_GRADED = {"ok": "nothing wrong", "level": "ok, warning or critical",
           "summary": "one line: the cause, and what to do"}

KINDS: tuple[tuple[str, Any, type[BaseModel], str, dict[str, str], float], ...] = (
    ("crash_loop", crash_loop, CrashLoopParams,
     "exits and restarts, exit codes, OOMKilled, the last error before each exit and its cause",
     {"exits": "die events in the window", "exits_per_hour": "rate", "exit_codes": "list",
      "restart_count": "Docker's RestartCount", "oom_killed": "bool",
      "cause": "database, dns, missing_file, dependency, oom or null",
      "cause_target": "host:port, name or path it points at",
      "last_errors": "[{at, last_error, class, classes}] before each exit"}, 60.0),
    ("healthcheck", healthcheck, HealthParams, "the HEALTHCHECK's status and its last results",
     {"configured": "bool", "status": "starting, healthy, unhealthy",
      "failing_streak": "failed probes in a row", "log": "[{start, exit_code, output}]"}, 30.0),
    ("restart_policy", restart_policy, NoParams, "a restart policy Docker has given up on",
     {"policy": "no, always, unless-stopped, on-failure", "maximum_retries": "N of on-failure",
      "restart_count": "restarts", "exhausted": "bool"}, 30.0),
    ("image_missing", image_missing, NoParams,
     "the container's image, its tag, or the previous_image gone from the engine",
     {"image_id_present": "bool", "tag_present": "bool", "tag_moved": "tag now names another id",
      "previous_image_present": "bool or null"}, 30.0),
    ("disk_usage", disk_usage, DiskParams,
     "the engine's disk use (/system/df) and what is reclaimable",
     {"total_bytes": "images + build cache + volumes + containers",
      "reclaimable_bytes": "unused images, idle build cache, unused volumes",
      "images_bytes / build_cache_bytes / volumes_bytes / containers_bytes": "each"}, 120.0),
)


def register(registry: Registry) -> None:
    for name, func, params, summary, result, timeout in KINDS:
        registry.add(StepKind(f"docker.{name}", KIND, func, params, False, summary,
                              {**_GRADED, **result}, timeout=timeout))
