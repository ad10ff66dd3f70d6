"""Services on Docker: the runtime behind `service.*` steps when `runtime: docker`.

`DockerReader` is what probes get. It talks to the engine through a Docker API client whose
transport (the requests adapter under every call) sends only GET and HEAD, and no websocket
attach (`request_guard.check_docker_request`): on Docker's HTTP API the other verbs are the
ones that change anything, so a probe cannot mutate a container even by a bug. `DockerOperator`
adds the actions (restart, start, roll back, scale, set the memory limit); only remedies
get one, through the gate.

A service is one container (`container:`) plus, when scaled out, its replicas: containers
labelled `runbook.replica-of=<container>`, cloned from it. Runbook records each image it
sees a service run (in RUNBOOK_HOME/state/service-images.json) so that a rollback knows
the image the service ran before; the inventory may also name it (`previous_image:`).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from runner.errors import PermanentError, StepError, TemporaryError

from .request_guard import ReadOnlyRefusal, check_docker_request

REPLICA_LABEL = "runbook.replica-of"


def _api(host: str | None, timeout: float, *, read_only: bool) -> Any:
    import docker
    import requests

    class ReadOnlyAdapter(requests.adapters.BaseAdapter):
        """The transport under every request the client sends (docker-py's helpers, the
        session's own `request`/`post`, a prepared request through `send`): only reads of
        Docker's API reach the engine."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            check_docker_request(request.method or "", request.url or "")
            return self.inner.send(request, *args, **kwargs)

        def close(self) -> None:
            self.inner.close()

    class ReadOnlyAPIClient(docker.APIClient):  # type: ignore[misc]
        """docker-py's client is a requests.Session: each adapter mounted on it is wrapped,
        and the websocket attach (its own socket, not a request) is refused."""

        def mount(self, prefix: str, adapter: Any) -> None:
            if not isinstance(adapter, ReadOnlyAdapter):
                adapter = ReadOnlyAdapter(adapter)
            super().mount(prefix, adapter)

        def _create_websocket_connection(self, url: str) -> Any:
            raise ReadOnlyRefusal("this Docker handle is read-only: diagnostics cannot attach "
                                  "to a container")

    kwargs = docker.utils.kwargs_from_env()
    if host:
        kwargs["base_url"] = host
    elif "base_url" not in kwargs:  # no DOCKER_HOST: the docker CLI's current context
        kwargs.update(context_endpoint())
    cls = ReadOnlyAPIClient if read_only else docker.APIClient
    try:
        return cls(version="auto", timeout=max(1, int(timeout)), **kwargs)
    except docker.errors.DockerException as exc:
        raise TemporaryError(f"Docker engine unreachable: {exc}") from None


def context_endpoint(environment: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The engine of the Docker context the docker CLI would use (Docker Desktop, rootless,
    colima): DOCKER_CONTEXT, else `currentContext` of config.json in DOCKER_CONFIG (default
    ~/.docker); its endpoint from contexts/meta/<sha256 of the name>/meta.json
    (Endpoints.docker.Host), its TLS files from contexts/tls/<same>/docker/. {} for the
    `default` context: the local socket."""
    import hashlib

    environment = os.environ if environment is None else environment
    config = Path(environment.get("DOCKER_CONFIG") or Path.home() / ".docker").expanduser()
    name = environment.get("DOCKER_CONTEXT")
    if not name:
        try:
            name = json.loads((config / "config.json").read_text()).get("currentContext")
        except FileNotFoundError:
            name = None
        except (OSError, ValueError, AttributeError) as exc:
            raise PermanentError(f"cannot read {config / 'config.json'}: {exc}") from None
    if not name or name == "default":
        return {}
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config / "contexts" / "meta" / digest / "meta.json"
    try:
        endpoint = json.loads(meta.read_text())["Endpoints"]["docker"]
        host = str(endpoint["Host"])
    except FileNotFoundError:
        raise PermanentError(f"the Docker context {name!r} does not exist (no {meta}); "
                             "`docker context ls`, or set DOCKER_HOST") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PermanentError(f"cannot read the Docker context {name!r} ({meta}): "
                             f"{type(exc).__name__}: {exc}") from None
    found: dict[str, Any] = {"base_url": host}
    tls = config / "contexts" / "tls" / digest / "docker"
    if (tls / "cert.pem").is_file() or (tls / "ca.pem").is_file():
        from docker.tls import TLSConfig

        cert = (str(tls / "cert.pem"), str(tls / "key.pem")) \
            if (tls / "cert.pem").is_file() else None
        ca = str(tls / "ca.pem") if (tls / "ca.pem").is_file() else None
        found["tls"] = TLSConfig(client_cert=cert, ca_cert=ca,
                                 verify=not endpoint.get("SkipTLSVerify", False))
    return found


def _translated(call: Any, *args: Any, **kwargs: Any) -> Any:
    """A Docker API call with its errors as runbook's temporary/permanent kinds."""
    import docker
    import requests

    try:
        return call(*args, **kwargs)
    except docker.errors.NotFound as exc:
        raise PermanentError(f"not found: {exc.explanation or exc}") from None
    except docker.errors.APIError as exc:
        error = TemporaryError if exc.is_server_error() else PermanentError
        raise error(f"Docker: {exc.explanation or exc}") from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TemporaryError(f"Docker engine unreachable: {exc}") from None


def _parse_time(text: str | None) -> datetime | None:
    """Docker's RFC 3339 times with nanoseconds; its zero time means 'never'."""
    if not text or text.startswith("0001-"):
        return None
    head, _, rest = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "." + (rest or "0")[:6]).replace(tzinfo=UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


class ImageHistory:
    """The images runbook has seen each service run, oldest first (runbook's own state)."""

    _lock = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, list[dict[str, str]]]:
        try:
            return dict(json.loads(self.path.read_text()))
        except (OSError, ValueError):
            return {}

    def record(self, service: str, image: str, image_id: str) -> None:
        with self._lock:
            seen = self._load()
            entries = seen.setdefault(service, [])
            if entries and entries[-1]["id"] == image_id:
                return
            entries.append({"image": image, "id": image_id,
                            "first_seen": datetime.now(UTC).isoformat(timespec="seconds")})
            del entries[:-20]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(seen, indent=2))
            tmp.replace(self.path)

    def before(self, service: str, image_id: str) -> str | None:
        """The last image seen before the current one, by name."""
        entries = [e for e in self._load().get(service, []) if e["id"] != image_id]
        return entries[-1]["image"] if entries else None


class DockerReader:
    """Read-only view of a service on Docker."""

    def __init__(self, settings: Any, timeout: float, *, home: Path | None = None,
                 read_only: bool = True) -> None:
        self.settings = settings
        self.name: str = settings.container
        self._api = _api(settings.docker_host, timeout, read_only=read_only)
        self._home = home  # runbook's home, from the step context: where the history lives

    @property
    def history(self) -> ImageHistory:
        if self._home is None:
            raise PermanentError(f"{self.name}: opened outside a step, so runbook's image "
                                 "history is not known")
        return ImageHistory(self._home / "state" / "service-images.json")

    def cancel(self) -> None:
        self._api.close()

    def close(self) -> None:
        self._api.close()

    def _inspect(self, container: str | None = None) -> dict[str, Any]:
        return dict(_translated(self._api.inspect_container, container or self.name))

    def identity(self) -> dict[str, str]:
        """The engine (its ID) and the container (its id) behind the service's name: an
        approval binds to these, not to the name."""
        engine = dict(_translated(self._api.info))
        return {"runtime": "docker", "engine": str(engine.get("ID") or engine.get("Name")),
                "container": self.name, "container_id": str(self._inspect()["Id"])}

    def image_id(self, image: str) -> str:
        """The immutable id an image reference (a tag) resolves to now."""
        return str(dict(_translated(self._api.inspect_image, image))["Id"])

    def pin_rollback(self, image: str) -> dict[str, Any]:
        """A rollback to `image` pinned to the id its tag has now: deployed by that id even
        if the tag is moved after the approval."""
        return {"image_id": self.image_id(image)}

    def _replicas(self) -> list[dict[str, Any]]:
        found = _translated(self._api.containers, all=True,
                            filters={"label": f"{REPLICA_LABEL}={self.name}"})
        return sorted(found, key=lambda c: c["Names"][0])

    def status(self) -> dict[str, Any]:
        info = self._inspect()
        state = info["State"]
        self.history.record(self.name, info["Config"]["Image"], info["Image"])
        replicas = [{"name": r["Names"][0].lstrip("/"), "state": r["State"]}
                    for r in self._replicas()]
        running = [r for r in replicas if r["state"] == "running"]
        return {
            "runtime": "docker",
            "name": self.name,
            "state": state["Status"],  # created, running, restarting, exited, dead, paused
            "running": bool(state["Running"]),
            "exit_code": state["ExitCode"],
            "oom_killed": bool(state["OOMKilled"]),
            "error": state.get("Error") or None,
            "restart_count": info.get("RestartCount", 0),
            "health": (state.get("Health") or {}).get("Status"),
            "started_at": _iso(_parse_time(state.get("StartedAt"))),
            "finished_at": _iso(_parse_time(state.get("FinishedAt"))),
            "image": info["Config"]["Image"],
            "memory_limit": info["HostConfig"].get("Memory") or None,
            "replicas": 1 + len(replicas),
            "replicas_running": int(bool(state["Running"])) + len(running),
            "replica_states": replicas,
        }

    def logs(self, tail: int, since: float | None = None) -> list[str]:
        """The last `tail` lines (stdout and stderr), each prefixed by Docker's timestamp."""
        raw = _translated(self._api.logs, self.name, timestamps=True, tail=tail,
                          since=int(time.time() - since) if since else None)
        return bytes(raw).decode("utf-8", errors="replace").splitlines()

    def memory(self, window: float, interval: float) -> dict[str, Any]:
        """Working-set memory sampled over `window` seconds (what `docker stats` shows)."""
        samples: list[tuple[float, float]] = []
        cpu: list[float] = []
        limit = None
        previous = None
        started = time.monotonic()
        while True:
            stats = _translated(self._api.stats, self.name, stream=False, one_shot=True)
            memory = stats.get("memory_stats") or {}
            if "usage" in memory:
                extra = memory.get("stats") or {}
                cache = extra.get("total_inactive_file", extra.get("inactive_file", 0))
                samples.append((time.monotonic() - started, float(memory["usage"] - cache)))
                limit = memory.get("limit")
                usage = stats.get("cpu_stats") or {}
                total, system = (usage.get("cpu_usage") or {}).get("total_usage"), usage.get(
                    "system_cpu_usage")
                if previous and total is not None and system and system > previous[1]:
                    cpus = usage.get("online_cpus") or 1
                    cpu.append(100.0 * (total - previous[0]) / (system - previous[1]) * cpus)
                previous = (total, system) if total is not None and system else None
            if time.monotonic() - started + interval > window:
                break
            time.sleep(interval)
        configured = self._inspect()["HostConfig"].get("Memory") or None
        return {"samples": samples, "limit": configured or limit, "limited": bool(configured),
                "cpu_pct": round(sum(cpu) / len(cpu), 1) if cpu else None}

    def processes(self) -> dict[str, Any]:
        top = _translated(self._api.top, self.name, ps_args="-eo pid,user,rss,pcpu,etime,args")
        # ps prints its own headers for these columns
        names = {"PID": "pid", "USER": "user", "RSS": "rss_kb", "%CPU": "cpu_pct",
                 "ELAPSED": "elapsed", "COMMAND": "args"}
        titles = [names.get(t, t.lower()) for t in top.get("Titles") or []]
        rows = [dict(zip(titles, row, strict=False)) for row in top.get("Processes") or []]
        for row in rows:
            row["rss_kb"] = int(row.get("rss_kb") or 0)
        rows.sort(key=lambda r: -r["rss_kb"])
        return {"count": len(rows), "processes": rows}

    def deployment(self) -> dict[str, Any]:
        info = self._inspect()
        self.history.record(self.name, info["Config"]["Image"], info["Image"])
        created = _parse_time(info.get("Created"))
        previous = self.settings.previous_image or self.history.before(self.name, info["Image"])
        return {"image": info["Config"]["Image"], "image_id": info["Image"],
                "deployed_at": _iso(created),
                "age_s": round((datetime.now(UTC) - created).total_seconds(), 1)
                if created else None,
                "previous_image": previous}


def engine_containers(container_ids: Iterable[str], timeout: float) -> set[str]:
    """Those of `container_ids` that this machine's Docker engine (DOCKER_HOST or its
    socket) knows, asked through a read-only client; empty when there is no engine."""
    try:
        api = _api(None, timeout, read_only=True)
    except StepError:
        return set()
    try:
        found = set()
        for container_id in container_ids:
            with contextlib.suppress(StepError):
                _translated(api.inspect_container, container_id)
                found.add(container_id)
        return found
    finally:
        api.close()


def container_reader(container_id: str, timeout: float) -> DockerReader:
    """A read-only reader of one container of this machine's engine, by id (a Kubernetes
    node's dockershim container): no service settings of its own."""
    settings = SimpleNamespace(container=container_id, docker_host=None, previous_image=None)
    return DockerReader(settings, timeout)


class DockerOperator(DockerReader):
    """What remedies get: the reads, plus the actions."""

    def __init__(self, settings: Any, timeout: float, *, home: Path | None = None) -> None:
        super().__init__(settings, timeout, home=home, read_only=False)
        # Set when the remedy's deadline passes (runner.remedies): an action then stops at
        # the next point where it can put things back, instead of being cut off half-way.
        self._interrupted = threading.Event()

    def interrupt(self) -> None:
        self._interrupted.set()

    def _all(self) -> list[str]:
        return [self.name] + [r["Names"][0].lstrip("/") for r in self._replicas()]

    def _wait_running(self, container: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = self._inspect(container)["State"]
            if state["Running"] and not state.get("Restarting"):
                return dict(state)
            if time.monotonic() > deadline:
                raise TemporaryError(f"{container} is not running {timeout:g}s after the action "
                                     f"(state {state['Status']}, exit code {state['ExitCode']})")
            time.sleep(0.2)

    def _stop_timeout(self, given: float | None) -> int:
        """Seconds a container has to stop: `given`, else the inventory's stop_timeout."""
        return int(self.settings.stop_timeout if given is None else given)

    def restart(self, stop_timeout: float | None = None) -> dict[str, Any]:
        """Restart every replica, one at a time (a stopped one is started)."""
        done = []
        for container in self._all():
            _translated(self._api.restart, container, timeout=self._stop_timeout(stop_timeout))
            self._wait_running(container)
            done.append(container)
        return {"restarted": done, "count": len(done)}

    def start(self) -> dict[str, Any]:
        started = []
        for container in self._all():
            if not self._inspect(container)["State"]["Running"]:
                _translated(self._api.start, container)
                self._wait_running(container)
                started.append(container)
        return {"started": started, "count": len(started)}

    def set_memory_limit(self, limit: int) -> dict[str, Any]:
        from .service import refuse_unsafe_memory_limit  # a last line: 0 lifts the limit

        refuse_unsafe_memory_limit(limit)
        before = self._inspect()["HostConfig"].get("Memory") or None
        for container in self._all():
            # memswap must be set with memory: the same value means no swap on top
            _translated(self._api.update_container, container, mem_limit=limit,
                        memswap_limit=limit)
        return {"before": before, "after": limit, "containers": self._all()}

    def _clone_config(self, info: dict[str, Any], image: str) -> dict[str, Any]:
        """create_container() arguments that re-create `info` from `image`: what the
        container adds to its image (env, labels, command), never what the image bakes in."""
        old_image = dict(_translated(self._api.inspect_image, info["Image"]))["Config"] or {}
        config = info["Config"]
        baked_env = set(old_image.get("Env") or [])
        baked_labels = old_image.get("Labels") or {}
        return {
            "environment": [e for e in config.get("Env") or [] if e not in baked_env],
            "labels": {k: v for k, v in (config.get("Labels") or {}).items()
                       if baked_labels.get(k) != v},
            "command": config.get("Cmd") if config.get("Cmd") != old_image.get("Cmd") else None,
            "ports": list((config.get("ExposedPorts") or {}).keys()) or None,
            "host_config": info["HostConfig"],
            "image": image,
        }

    def rollback(self, image: str, stop_timeout: float | None = None, *,
                 image_id: str | None = None,
                 pinned: dict[str, Any] | None = None) -> dict[str, Any]:
        """Re-create the service's container from `image`, restoring the old one on failure.
        With `image_id` (pinned when the rollback was approved) the container is created from
        that id, whatever `image` has been re-tagged to since. (`pinned`: a Kubernetes
        revision, refused here.)"""
        if pinned is not None:
            raise PermanentError("a revision is pinned by Kubernetes services only")
        info = self._inspect()
        if info["Config"]["Image"] == image and image_id in (None, info["Image"]):
            raise PermanentError(f"{self.name} already runs {image}")
        if image_id is not None and info["Image"] == image_id:
            raise PermanentError(f"{self.name} already runs {image_id}")
        _translated(self._api.inspect_image, image_id or image)  # fail before touching
        args = self._clone_config(info, image_id or image)
        aside = f"{self.name}-before-rollback-{int(time.time())}"
        try:
            _translated(self._api.stop, self.name, timeout=self._stop_timeout(stop_timeout))
            if self._interrupted.is_set():
                raise TemporaryError(f"the rollback's deadline passed while {self.name} "
                                     "stopped: it was started again on its old image")
        except Exception:  # stopped, or half-way: the service must not stay down
            _translated(self._api.start, self.name)
            raise
        _translated(self._api.rename, self.name, aside)
        try:
            if self._interrupted.is_set():
                raise TemporaryError(f"the rollback's deadline passed: {self.name} was put "
                                     "back on its old image")
            self._create(self.name, args)
        except Exception:
            self._restore(aside)
            raise
        _translated(self._api.remove_container, aside, force=True)
        replicas = [r["Names"][0].lstrip("/") for r in self._replicas()]
        for replica in replicas:  # replicas follow the main container's image
            args = self._clone_config(self._inspect(replica), image_id or image)
            _translated(self._api.remove_container, replica, force=True)
            self._create(replica, args)
        self.history.record(self.name, image, self._inspect()["Image"])
        return {"from_image": info["Config"]["Image"], "to_image": image,
                "to_image_id": self._inspect()["Image"], "containers": [self.name, *replicas]}

    def _restore(self, aside: str) -> None:
        import contextlib

        with contextlib.suppress(PermanentError, TemporaryError):
            _translated(self._api.remove_container, self.name, force=True)
        _translated(self._api.rename, aside, self.name)
        _translated(self._api.start, self.name)

    def scale(self, replicas: int) -> dict[str, Any]:
        """Clone the service's container up to `replicas`, or remove the newest clones."""
        info = self._inspect()
        current = [r["Names"][0].lstrip("/") for r in self._replicas()]
        added, removed = [], []
        while 1 + len(current) > replicas and current:
            victim = current.pop()
            _translated(self._api.remove_container, victim, force=True)
            removed.append(victim)
        number = 2
        while 1 + len(current) < replicas:
            name = f"{self.name}-{number}"
            number += 1
            if name in current:
                continue
            args = self._clone_config(info, info["Config"]["Image"])
            host_config = {k: v for k, v in args["host_config"].items()
                           if k != "PortBindings"}  # a clone cannot take the same host port
            labels = {**args["labels"], REPLICA_LABEL: self.name}
            self._create(name, {**args, "host_config": host_config, "labels": labels})
            current.append(name)
            added.append(name)
        return {"replicas": 1 + len(current), "added": added, "removed": removed}

    def _create(self, name: str, args: dict[str, Any]) -> None:
        created = _translated(self._api.create_container, name=name, **args)
        _translated(self._api.start, created["Id"])
        self._wait_running(name)
