"""The lab's demo API service (journey-api, tests/lab/api/app.py) in real containers.

    with postgres_container() as pg:
        db = prepare(pg.get_connection_url())
        with api_service("journey-api", container_dsn(db.app), port=0) as api:
            fault(api.url, leak_mb_per_s=20)      # ... and the container is OOM-killed
            wait_exit(api.name)["OOMKilled"]      # True

Each service is one container on the default bridge, labelled `runbook.service=<name>`,
with a memory limit (so that a leak ends in an OOM kill) and no restart policy (so that a
crash stays visible until something restarts it). The container reads DATABASE_URL from
inside: `container_dsn()` turns a lab PostgreSQL's host DSN into one that uses the
PostgreSQL container's bridge IP and port 5432.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.lab.images import require_image

FLAVORS = ("good", "bad")  # image recipes api-good (1.4.2) and api-bad (1.5.0)
SERVICE_LABEL = "runbook.service"
APP_PORT = "8080/tcp"


@dataclass(frozen=True)
class ApiService:
    name: str
    container_id: str
    url: str  # reachable from the host: the published 127.0.0.1 port, else the bridge IP
    flavor: str
    image: str


def _docker() -> Any:
    import docker

    return docker.from_env()


def container_dsn(dsn: str, container: str | None = None) -> str:
    """`dsn` as a container on the default bridge reaches the same database.

    The PostgreSQL container is the one publishing the DSN's port on the host (what
    testcontainers and `ensure_demo_postgres()` do), or `container` (a name or an id, e.g.
    `pg.get_wrapped_container().id`). Its bridge IP changes when it is re-created.
    """
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    client = _docker()
    if container is not None:
        found = client.containers.get(container)
    else:
        port = str(conninfo_to_dict(dsn).get("port", 5432))
        matches = [c for c in client.containers.list()
                   if any(b.get("HostPort") == port for b in c.ports.get("5432/tcp") or [])]
        if len(matches) != 1:
            raise RuntimeError(f"{len(matches)} running containers publish port 5432 on "
                               f"host port {port}; name the PostgreSQL container")
        found = matches[0]
    ip = found.attrs["NetworkSettings"]["IPAddress"]
    if not ip:
        raise RuntimeError(f"container {found.name} has no IP on the default bridge")
    return make_conninfo(dsn, host=ip, port="5432")


def start_api(
    name: str,
    db_dsn: str,
    flavor: str = "good",
    mem_limit: str | None = "256m",
    port: int | None = None,
    pool_size: int = 5,
) -> ApiService:
    """Start the service (replacing any container named `name`) and wait for /health.

    `db_dsn` must work from inside a container (see `container_dsn`). `port` publishes
    the service on 127.0.0.1 (0: a free port Docker picks); None publishes nothing.
    """
    if flavor not in FLAVORS:
        raise ValueError(f"unknown flavor {flavor!r}; known: {', '.join(FLAVORS)}")
    image = require_image(f"api-{flavor}")
    remove_api(name)
    container = _docker().containers.run(
        image,
        name=name,
        detach=True,
        environment={"DATABASE_URL": db_dsn, "POOL_SIZE": str(pool_size)},
        labels={SERVICE_LABEL: name},
        mem_limit=mem_limit,
        # The same as the limit: with swap allowed, a leak would swap instead of being killed.
        memswap_limit=mem_limit,
        ports=_ports(port),
    )
    return _wait_healthy(container, flavor, image)


def deploy(name: str, flavor: str) -> ApiService:
    """Replace the service's container with one of `flavor`'s image, as a deploy tool
    would: same name, environment, published port, memory limit, restart policy, labels."""
    client = _docker()
    old = client.containers.get(name)
    info = old.attrs
    config, host = info["Config"], info["HostConfig"]
    # The container's Env and Labels include what the old image baked in (APP_FLAVOR,
    # APP_VERSION, its version label): carried over, they would override the new image's.
    baked = client.images.get(info["Image"]).attrs["Config"] or {}
    baked_env, baked_labels = set(baked.get("Env") or []), baked.get("Labels") or {}
    env = [e for e in config.get("Env") or [] if e not in baked_env]
    labels = {k: v for k, v in (config.get("Labels") or {}).items() if baked_labels.get(k) != v}
    # The port actually bound (a Docker-picked one too); an exited container has none left.
    bound = (info["NetworkSettings"].get("Ports") or {}).get(APP_PORT) or \
        (host.get("PortBindings") or {}).get(APP_PORT)
    ports = {APP_PORT: (bound[0]["HostIp"], int(bound[0]["HostPort"]))
             if bound[0].get("HostPort") else (bound[0]["HostIp"],)} if bound else None
    restart = host.get("RestartPolicy") or {}

    image = require_image(f"api-{flavor}")
    old.stop(timeout=5)  # SIGTERM: the service stops at once (it handles the signal as PID 1)
    old.remove()
    container = client.containers.run(
        image,
        name=name,
        detach=True,
        environment=env,
        labels=labels,
        mem_limit=host.get("Memory") or None,
        memswap_limit=host.get("MemorySwap") or None,
        ports=ports,
        restart_policy=restart if restart.get("Name") else None,
    )
    return _wait_healthy(container, flavor, image)


def fault(url: str, **switches: Any) -> dict[str, Any]:
    """POST the switches to /admin/fault, e.g. `fault(api.url, slow_ms=500)`; the new state."""
    request = urllib.request.Request(
        f"{url}/admin/fault", data=json.dumps(switches).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.load(response)
        return result


def wait_exit(name: str, timeout: float = 120) -> dict[str, Any]:
    """Wait until the service's container stops (a crash, an OOM kill); its State."""
    container = _docker().containers.get(name)
    container.wait(timeout=timeout)
    container.reload()
    state: dict[str, Any] = container.attrs["State"]
    return state


def remove_api(name: str) -> None:
    """Remove the service's container and any others labelled as the service (replicas
    that a scale remedy cloned from it); nothing happens when there are none."""
    import docker

    client = _docker()
    labelled = client.containers.list(all=True, filters={"label": f"{SERVICE_LABEL}={name}"})
    with contextlib.suppress(docker.errors.NotFound):
        labelled.append(client.containers.get(name))
    for container in labelled:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


@contextlib.contextmanager
def api_service(
    name: str,
    db_dsn: str,
    flavor: str = "good",
    mem_limit: str | None = "256m",
    port: int | None = None,
    pool_size: int = 5,
) -> Iterator[ApiService]:
    """`start_api()`, and the service is removed afterwards whatever happened."""
    try:
        yield start_api(name, db_dsn, flavor, mem_limit, port, pool_size)
    finally:
        remove_api(name)


def _ports(port: int | None) -> dict[str, Any] | None:
    if port is None:
        return None
    # A 1-tuple binds the address only: Docker picks a free host port.
    return {APP_PORT: ("127.0.0.1", port) if port else ("127.0.0.1",)}


def _base_url(container: Any) -> str | None:
    network = container.attrs["NetworkSettings"]
    bound = (network.get("Ports") or {}).get(APP_PORT)
    if bound:
        return f"http://127.0.0.1:{bound[0]['HostPort']}"
    return f"http://{network['IPAddress']}:8080" if network.get("IPAddress") else None


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_healthy(container: Any, flavor: str, image: str, timeout: float = 30) -> ApiService:
    started = time.monotonic()
    while True:
        container.reload()
        url = _base_url(container) if container.status == "running" else None
        if url and _healthy(url):
            return ApiService(container.name, container.id, url, flavor, image)
        waited = time.monotonic() - started
        if container.status in ("exited", "dead") or waited > timeout:
            logs = container.logs(tail=30).decode(errors="replace")
            raise RuntimeError(
                f"API service {container.name} ({image}) is not healthy after {waited:.1f} s "
                f"(container {container.status}, exit code "
                f"{container.attrs['State']['ExitCode']}); its last log lines:\n{logs}"
            )
        time.sleep(0.1)
