"""The docker.* container checks against the real engine, each fault induced for real: a
container whose every start finds its database port refusing (a real connect to a closed
loopback port) and exits 3 until its on-failure:2 policy gives up; a HEALTHCHECK that fails;
the image a container was created from removed from the engine; the engine's disk usage over
a low threshold. A healthy container raises nothing, and container-triage finds several
faults at once without being told which."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from diagnostics import dockerchecks
from diagnostics.request_guard import ReadOnlyRefusal
from diagnostics.service import DockerService, ServiceConnector, ServiceSettings
from runner.context import StepContext
from runner.inventory import Target
from tests.lab.images import require_image
from tests.scenarios.conftest import CLI
from tests.scenarios.helpers import findings
from tests.support.polling import wait_for

pytestmark = pytest.mark.lab

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
SECOND = 1_000_000_000  # Docker's healthcheck durations are in nanoseconds

# A real connect to a port nobody listens on, in the container's own loopback: refused.
DB_CLIENT = """\
import socket, sys
try:
    socket.create_connection(("127.0.0.1", 5432), timeout=5)
except ConnectionRefusedError as exc:
    print(f"starting journey-api v1.4.2", flush=True)
    print(f"Error: connect ECONNREFUSED 127.0.0.1:5432 ({exc})", flush=True)
    sys.exit(3)
print("unexpected: something listens on 5432", flush=True)
sys.exit(0)
"""

# Each a real failure inside a container with no network but its loopback (network_mode
# none): the name lookup fails without a packet leaving, the file is really absent.
DNS_CLIENT = """\
import socket, sys
try:
    socket.getaddrinfo("orders-db.invalid", 5432)
except socket.gaierror as exc:
    print(f"ERROR could not resolve orders-db.invalid: {exc}", flush=True)
    sys.exit(2)
sys.exit(0)
"""
CONFIG_READER = """\
import sys
try:
    open("/etc/journey/config.yaml")
except FileNotFoundError as exc:
    print(f"FileNotFoundError: {exc}", flush=True)
    sys.exit(1)
sys.exit(0)
"""


class Engine:
    """Containers and images made by a test, all removed when it ends."""

    def __init__(self) -> None:
        import docker

        self.client = docker.from_env()
        self.containers: list[str] = []
        self.images: list[str] = []

    def name(self, what: str) -> str:
        return f"rb-test-dc-{what}-{uuid.uuid4().hex[:6]}"

    def run(self, what: str, image: str | None = None, **kwargs: Any) -> Any:
        kwargs.setdefault("entrypoint", ["sleep", "infinity"])
        name = self.name(what)
        self.containers.append(name)
        return self.client.containers.run(image or require_image("api-base"), name=name,
                                          detach=True, labels={"runbook.lab": "dockerchecks"},
                                          **kwargs)

    def throwaway_image(self) -> str:
        """An image of its own (a commit of a lab image's container): its id is not shared
        with any lab tag, so removing it removes the id from the engine."""
        base = self.client.containers.create(require_image("api-base"),
                                             entrypoint=["true"], name=self.name("base"))
        try:
            repository = f"rb-test-gone-{uuid.uuid4().hex[:6]}"
            self.images.append(f"{repository}:v1")
            base.commit(repository=repository, tag="v1")
        finally:
            base.remove(force=True)
        return f"{repository}:v1"

    def cleanup(self) -> None:
        import docker

        for name in self.containers:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.containers.get(name).remove(force=True)
        for image in self.images:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.images.remove(image, force=True)


@pytest.fixture
def engine() -> Iterator[Engine]:
    made = Engine()
    try:
        yield made
    finally:
        made.cleanup()


def check(kind: str, container: Any, previous_image: str | None = None,
          **params: Any) -> dict[str, Any]:
    """Run one docker.* check the way the engine does: through the service connector's
    read-only view of the target."""
    func, model = next((f, m) for name, f, m, *_ in dockerchecks.KINDS if name == kind)
    settings = ServiceSettings(DockerService(runtime="docker", container=container.name,
                                             previous_image=previous_image))
    with ServiceConnector().probe(Target("svc", "service", settings),
                                  StepContext.outside_a_run(10)) as view:
        return dict(func(view, model(**params)))


def state(container: Any) -> dict[str, Any]:
    container.reload()
    return {**container.attrs["State"], "RestartCount": container.attrs["RestartCount"]}


def crash_looping(engine: Engine, image: str | None = None, script: str = DB_CLIENT) -> Any:
    """A container that exits on a refused database port (or what `script` fails on),
    restarted twice by Docker (on-failure:2), then left exited."""
    container = engine.run("crash", image, entrypoint=["python3", "-c", script],
                           network_mode="none",
                           restart_policy={"Name": "on-failure", "MaximumRetryCount": 2})
    wait_for(lambda: (s := state(container))["RestartCount"] == 2 and s["Status"] == "exited",
             lambda: f"{container.name} to exit after 2 restarts: {state(container)}",
             timeout=60, every=0.2)
    return container


def test_a_crash_loop_names_the_database_that_refuses(engine: Engine) -> None:
    container = crash_looping(engine)
    found = check("crash_loop", container)
    assert found["level"] == "critical", found
    assert found["exits"] == 3 and found["exit_codes"] == [3, 3, 3], found
    assert found["restart_count"] == 2
    assert found["cause"] == "database" and found["cause_target"] == "127.0.0.1:5432", found
    assert found["summary"].startswith(
        f"{container.name} crash-loops because its database at 127.0.0.1:5432 refuses "
        "connections"), found["summary"]
    assert found["summary"].endswith("check the database; a restart will not help")
    assert [e["class"] for e in found["last_errors"]] == ["db_connection"] * 3
    assert all("ECONNREFUSED 127.0.0.1:5432" in e["last_error"] for e in found["last_errors"])

    exhausted = check("restart_policy", container)
    assert exhausted["level"] == "critical" and exhausted["exhausted"], exhausted
    assert "on-failure:2 is exhausted: it exited with code 3 after 2 restart(s)" in \
        exhausted["summary"]

    # A narrower crash loop threshold: the same three exits are below it.
    lenient = check("crash_loop", container, exits_warning=5, exits_critical=10)
    assert lenient["level"] == "ok", lenient


@pytest.mark.parametrize(("script", "cause", "target", "said"), [
    (DNS_CLIENT, "dns", "orders-db.invalid",
     "crash-loops because the name orders-db.invalid does not resolve (DNS)"),
    (CONFIG_READER, "missing_file", "/etc/journey/config.yaml",
     "crash-loops because a file or setting it needs is missing (/etc/journey/config.yaml)"),
])
def test_a_crash_loop_names_what_its_last_error_points_at(
        engine: Engine, script: str, cause: str, target: str, said: str) -> None:
    container = crash_looping(engine, script=script)
    found = check("crash_loop", container)
    assert found["level"] == "critical" and found["exits"] == 3, found
    assert (found["cause"], found["cause_target"]) == (cause, target), found
    assert said in found["summary"] and found["summary"].endswith("a restart will not help")


def test_the_checks_engine_client_cannot_stop_or_remove_a_container(engine: Engine) -> None:
    container = engine.run("readonly")
    started_at = state(container)["StartedAt"]
    settings = ServiceSettings(DockerService(runtime="docker", container=container.name))
    with ServiceConnector().probe(Target("svc", "service", settings),
                                  StepContext.outside_a_run(10)) as view, \
            dockerchecks._engine(view) as api:
        attempts: list[Callable[[], Any]] = [
            lambda: api.stop(container.id, timeout=1),
            lambda: api.kill(container.id),
            lambda: api.remove_container(container.id, force=True),
            lambda: api.prune_images(),
            lambda: api.post(api._url("/containers/{0}/restart", container.id))]
        for attempt in attempts:
            with pytest.raises(ReadOnlyRefusal):
                attempt()
    after = state(container)
    assert after["Status"] == "running" and after["StartedAt"] == started_at


def test_a_failing_healthcheck_is_reported_with_its_output(engine: Engine) -> None:
    container = engine.run("unhealthy", healthcheck={
        "test": ["CMD-SHELL", "echo 'probe: GET /health: connection refused' >&2; exit 1"],
        "interval": SECOND // 5, "timeout": 2 * SECOND, "retries": 2})
    wait_for(lambda: (state(container).get("Health") or {}).get("Status") == "unhealthy",
             lambda: f"{container.name} to be unhealthy: {state(container).get('Health')}",
             timeout=60, every=0.1)
    found = check("healthcheck", container)
    assert found["level"] == "critical" and found["status"] == "unhealthy", found
    assert found["failing_streak"] >= 2
    assert found["log"][-1]["exit_code"] == 1
    assert "probe: GET /health: connection refused" in found["summary"], found["summary"]
    assert found["summary"].startswith(f"{container.name} is unhealthy: its HEALTHCHECK")


def test_an_image_removed_after_the_container_was_created_is_missing(engine: Engine) -> None:
    tag = engine.throwaway_image()
    # A container that ran and exited (Docker keeps a running container's image by id).
    container = engine.run("orphan", tag, entrypoint=["true"])
    wait_for(lambda: state(container)["Status"] == "exited",
             lambda: f"{container.name} to exit: {state(container)}", timeout=30, every=0.1)
    image_id = container.attrs["Image"]
    engine.client.images.remove(tag, force=True)  # Docker allows it: the container stays
    assert not engine.client.images.list(filters={"reference": tag})
    found = check("image_missing", container)
    assert found["level"] == "critical", found
    assert not found["image_id_present"] and not found["tag_present"]
    assert found["image_id"] == image_id
    assert "is gone from the engine: re-creating the container" in found["summary"]
    assert tag in found["summary"]


def test_the_tag_of_a_running_container_removed(engine: Engine) -> None:
    tag = engine.throwaway_image()
    container = engine.run("untagged", tag)
    engine.client.images.remove(tag, force=True)  # running: Docker only untags it
    found = check("image_missing", container)
    assert found["level"] == "warning", found
    assert found["image_id_present"] and not found["tag_present"]
    assert f"its image tag {tag} is absent from the engine" in found["summary"]


def test_a_previous_image_that_is_not_on_the_engine(engine: Engine) -> None:
    container = engine.run("previous")
    absent = f"runbook-lab/api:absent-{uuid.uuid4().hex[:6]}"
    found = check("image_missing", container, previous_image=absent)
    assert found["level"] == "warning" and found["previous_image_present"] is False, found
    assert f"its previous_image {absent} is not on the engine" in found["summary"]


def test_engine_disk_usage_over_a_low_threshold(engine: Engine) -> None:
    container = engine.run("disk")
    measured = check("disk_usage", container)
    assert measured["images_bytes"] > 0 and measured["total_bytes"] >= measured["images_bytes"]
    over = check("disk_usage", container, total_warning=measured["total_bytes"] // 2,
                 total_critical=measured["total_bytes"] * 4)
    assert over["level"] == "warning", over
    assert "over the" in over["summary"] and "threshold" in over["summary"]
    critical = check("disk_usage", container, total_warning="1k", total_critical="2k")
    assert critical["level"] == "critical", critical


def test_a_healthy_container_raises_nothing(engine: Engine) -> None:
    container = engine.run("healthy", restart_policy={"Name": "on-failure",
                                                      "MaximumRetryCount": 2},
                           healthcheck={"test": ["CMD", "true"], "interval": SECOND // 5,
                                        "retries": 2})
    wait_for(lambda: (state(container).get("Health") or {}).get("Status") == "healthy",
             lambda: f"{container.name} to be healthy: {state(container).get('Health')}",
             timeout=60, every=0.1)
    engine_total = check("disk_usage", container)["total_bytes"]
    results = {
        "crash_loop": check("crash_loop", container),
        "healthcheck": check("healthcheck", container),
        "restart_policy": check("restart_policy", container),
        "image_missing": check("image_missing", container,
                               previous_image=require_image("api-base")),
        "disk_usage": check("disk_usage", container, total_warning=engine_total * 2 + 1,
                            total_critical=engine_total * 4 + 2,
                            reclaimable_warning=engine_total * 2 + 1),
    }
    assert {k: r["level"] for k, r in results.items()} == dict.fromkeys(results, "ok"), results
    assert all(r["ok"] for r in results.values())
    assert results["healthcheck"]["configured"] and results["healthcheck"]["status"] == "healthy"


def test_container_triage_finds_the_faults_of_a_container_unasked(
        engine: Engine, cli: CLI, tmp_path: Path) -> None:
    tag = engine.throwaway_image()
    container = crash_looping(engine, tag)
    engine.client.images.remove(tag, force=True)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(json.dumps({"targets": {"broken-api": {
        "kind": "service", "runtime": "docker", "container": container.name}}}))
    _code, report = cli.json("run", "container-triage", "--playbooks", str(PLAYBOOKS),
                             "--inventory", str(inventory), "--target", "service=broken-api",
                             "-p", "disk_warning=1k", "--no-input")
    fired = findings(report)
    assert {"crash-loop", "restart-policy-exhausted", "image-missing", "disk-warning"} <= fired, \
        report
    ranked = [f["id"] for f in report["findings"] if f["status"] == "fired"]
    # critical (P1) findings come before the warning
    assert ranked.index("disk-warning") > max(ranked.index(i) for i in
                                              ("crash-loop", "restart-policy-exhausted",
                                               "image-missing")), ranked
    said = json.dumps(report)
    assert "its database at 127.0.0.1:5432 refuses connections" in said


def test_container_triage_on_a_healthy_container_fires_nothing(
        engine: Engine, cli: CLI, tmp_path: Path) -> None:
    container = engine.run("triage-ok", healthcheck={"test": ["CMD", "true"],
                                                     "interval": SECOND // 5, "retries": 2})
    wait_for(lambda: (state(container).get("Health") or {}).get("Status") == "healthy",
             lambda: f"{container.name} to be healthy: {state(container).get('Health')}",
             timeout=60, every=0.1)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(json.dumps({"targets": {"good-api": {
        "kind": "service", "runtime": "docker", "container": container.name}}}))
    code, report = cli.json("run", "container-triage", "--playbooks", str(PLAYBOOKS),
                            "--inventory", str(inventory), "--target", "service=good-api",
                            "--no-input")
    assert findings(report) == set(), report
    assert {s["status"] for s in report["steps"]} == {"ok"}, report["steps"]  # every check ran
    assert code == 0, report
