"""The Docker probe handle against the real engine: every way past docker-py's helpers that
an attacker (or a bug) would take to stop, kill or attach to a container is refused at the
client's transport, and the container keeps running, untouched."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from diagnostics.request_guard import ReadOnlyRefusal
from diagnostics.service import DockerService, ServiceConnector, ServiceSettings
from runner.context import StepContext
from runner.inventory import Target
from tests.lab.images import require_image

STDIN_FILE = "/tmp/stdin-received"


@pytest.fixture
def container() -> Iterator[Any]:
    """A running container whose stdin is open and copied to a file: an attach that wrote
    to it would leave a trace."""
    import docker

    engine = docker.from_env()
    started = engine.containers.run(
        require_image("api-base"), ["sh", "-c", f"cat > {STDIN_FILE}"], detach=True,
        stdin_open=True, name=f"rb-test-ro-{uuid.uuid4().hex[:6]}")
    try:
        yield started
    finally:
        started.remove(force=True)


def _bypasses(api: Any, cid: str) -> dict[str, Callable[[], Any]]:
    import requests

    url = api._url("/containers/{0}/stop", cid)
    return {
        "docker-py stop": lambda: api.stop(cid, timeout=1),
        "docker-py kill": lambda: api.kill(cid),
        "docker-py remove": lambda: api.remove_container(cid, force=True),
        "session.post": lambda: api.post(url),
        "session.request POST": lambda: api.request("POST", url),
        "session.request post": lambda: api.request("post", api._url("/containers/{0}/kill",
                                                                      cid)),
        "session.put": lambda: api.put(api._url("/containers/{0}/archive", cid),
                                       params={"path": "/tmp"}, data=b""),
        "session.delete": lambda: api.delete(api._url("/containers/{0}", cid),
                                             params={"force": 1}),
        "session.send prepared": lambda: api.send(api.prepare_request(
            requests.Request("POST", url))),
        "adapter.send": lambda: api.get_adapter(url).send(
            requests.Request("POST", url).prepare(), timeout=5),
        "requests.Session.request": lambda: requests.Session.request(api, "POST", url),
        "percent-encoded attach": lambda: api.get(
            api._url("/containers/{0}/%61ttach/ws", cid), params={"stdin": 1, "stream": 1}),
        "websocket attach": lambda: api.attach_socket(cid, params={"stdin": 1, "stream": 1},
                                                      ws=True),
        "mounted adapter": lambda: (api.mount("http+docker://", api.get_adapter(url).inner),
                                    api.post(url)),
    }


def test_no_way_through_the_probe_handle_stops_or_attaches_to_a_container(
        container: Any) -> None:
    container.reload()
    started_at = container.attrs["State"]["StartedAt"]
    settings = ServiceSettings(DockerService(runtime="docker", container=container.name))
    target = Target("t", "service", settings)
    refused = {}
    with ServiceConnector().probe(target, StepContext.outside_a_run(10)) as view:
        api = view.runtime._api
        assert view.runtime.status()["state"] == "running"  # reads work
        for name, attempt in _bypasses(api, container.id).items():
            with pytest.raises(ReadOnlyRefusal) as caught:
                attempt()
            refused[name] = str(caught.value)
    assert all("read-only" in why for why in refused.values()), refused
    container.reload()
    assert container.status == "running"
    assert container.attrs["State"]["StartedAt"] == started_at  # never stopped or restarted
    written = container.exec_run(["sh", "-c", f"wc -c < {STDIN_FILE}"]).output
    assert written.strip() == b"0"  # nothing reached its stdin
