"""An approval binds to the things acted on, on a real Docker engine: the container behind
a target's name, and the image behind a tag.

The attacks: approve a restart with inventory a.yaml (target `svc` = container X), then
resume with b.yaml binding `svc` to container Y; and approve a rollback to `app:v2`, then
move the tag before the rollback runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.scenarios.conftest import CLI
from tests.scenarios.helpers import remedy

BASE_IMAGE = "runbook-lab/api-base"  # any local image with a `sleep`: lab images are built

PLAYBOOKS = {
    "svc-down": """
name: svc-down
summary: a service is not running
severity: P2
targets:
  svc: {kind: service}
steps:
  - {id: status, run: service.status}
findings:
  - {id: down, when: not steps.status.running, say: "{{ steps.status.name }} is down"}
remedies:
  - {id: start-svc, when: not steps.status.running, run: service.restart}
""",
    "svc-rollback": """
name: svc-rollback
summary: roll a service back to a named image
severity: P2
params:
  image: {type: string}
targets:
  svc: {kind: service}
steps:
  - {id: status, run: service.status}
findings:
  - {id: running, when: steps.status.running, say: "{{ steps.status.image }}"}
remedies:
  - {id: roll-back, run: service.rollback, with: {to_image: "{{ params.image }}"}}
""",
}


@dataclass
class DockerBox:
    client: Any
    root: Path
    tag: str  # unique per test
    containers: list[str]
    tags: list[str]

    def image(self, repo: str) -> Any:
        """The newest local image of `repo` (the lab's images carry content tags)."""
        found = [i for i in self.client.images.list() if any(
            t.startswith(repo + ":") for t in i.tags)]
        assert found, f"no local image of {repo}: run scripts/setup"
        return found[0]

    def sleeper(self, name: str, image: str) -> Any:
        full = f"rb-{self.tag}-{name}"
        self.containers.append(full)
        return self.client.containers.run(image, ["sleep", "600"], name=full, detach=True,
                                          stop_signal="SIGKILL")

    def retag(self, image: Any, reference: str) -> None:
        repo, _, tag = reference.partition(":")
        image.tag(repo, tag)
        self.tags.append(reference)

    def inventory(self, name: str, container: str) -> Path:
        path = self.root / name
        path.write_text(f"targets:\n  svc:\n    kind: service\n    runtime: docker\n"
                        f"    container: {container}\n    stop_timeout: 1s\n")
        return path

    def state(self, container: str) -> dict[str, Any]:
        info = self.client.api.inspect_container(container)
        return {"id": info["Id"], "image": info["Image"], "running": info["State"]["Running"],
                "started_at": info["State"]["StartedAt"]}


@pytest.fixture
def box(tmp_path: Path) -> Iterator[DockerBox]:
    import docker

    client = docker.from_env()
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    for name, text in PLAYBOOKS.items():
        (playbooks / f"{name}.yaml").write_text(text)
    found = DockerBox(client, tmp_path, uuid.uuid4().hex[:8], [], [])
    yield found
    for name in found.containers:
        for container in client.containers.list(all=True, filters={"name": name}):
            container.remove(force=True)
    for reference in set(found.tags):
        client.images.remove(reference, noprune=True)


def test_an_approval_for_container_x_never_restarts_container_y(box: DockerBox, cli: CLI) -> None:
    image = box.image(BASE_IMAGE).id
    x, y = box.sleeper("x", image), box.sleeper("y", image)
    x.stop(timeout=1)
    a, b = box.inventory("a.yaml", x.name), box.inventory("b.yaml", y.name)
    playbooks = str(box.root / "playbooks")
    code, report = cli.json("run", "svc-down", "--playbooks", playbooks, "--inventory", str(a),
                            "--no-input")
    assert code == 1 and report["status"] == "awaiting_approval"
    run_id = report["run_id"]
    code, _ = cli("approve", run_id, "start-svc", "--as", "alice")
    assert code == 0
    y_before = box.state(y.name)

    code, report = cli.json("resume", run_id, "--inventory", str(b), "--no-input")

    assert box.state(y.name) == y_before  # Y: not restarted
    assert not box.state(x.name)["running"]
    assert report["status"] == "awaiting_approval"
    start = remedy(report, "start-svc")
    assert start["status"] == "proposed" and start["approved_by"] is None
    x_id, y_id = box.state(x.name)["id"], y_before["id"]
    # the run says why: which container the name pointed at, and which it points at now
    assert f'container_id "{x_id}" -> "{y_id}"' in start["reason"]
    assert f'container "{x.name}" -> "{y.name}"' in start["reason"]
    code, text = cli("report", run_id)
    assert "approval void" in text and y_id in text


def test_resume_uses_the_inventory_the_run_was_planned_with(
        box: DockerBox, cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    image = box.image(BASE_IMAGE).id
    x, y = box.sleeper("x", image), box.sleeper("y", image)
    x.stop(timeout=1)
    a, b = box.inventory("a.yaml", x.name), box.inventory("b.yaml", y.name)
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(a))
    code, report = cli.json("run", "svc-down", "--playbooks", str(box.root / "playbooks"),
                            "--no-input")
    run_id = report["run_id"]
    assert cli("approve", run_id, "start-svc", "--as", "alice")[0] == 0
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(b))  # the environment changed since
    y_before = box.state(y.name)

    code, report = cli.json("resume", run_id, "--no-input")
    assert code == 1

    assert remedy(report, "start-svc")["status"] == "succeeded"
    assert box.state(x.name)["running"]  # the approved container, from a.yaml as recorded
    assert box.state(y.name) == y_before


def test_a_rollback_deploys_the_image_id_approved_not_what_the_tag_names_now(
        box: DockerBox, cli: CLI) -> None:
    approved_image, other_image = box.image(BASE_IMAGE), box.image("runbook-lab/api")
    assert approved_image.id != other_image.id
    v1, v2 = f"rb-{box.tag}-app:v1", f"rb-{box.tag}-app:v2"
    box.retag(other_image, v1)
    box.retag(approved_image, v2)
    service = box.sleeper("app", v1)
    inventory = box.inventory("app.yaml", service.name)
    code, report = cli.json("run", "svc-rollback", "--playbooks", str(box.root / "playbooks"),
                            "--inventory", str(inventory), "-p", f"image={v2}", "--no-input")
    run_id = report["run_id"]
    proposal = remedy(report, "roll-back")
    pinned = {k: v for k, v in proposal["args"].items() if v is not None}  # (k8s pins: None)
    assert pinned == {"to_image": v2, "image_id": approved_image.id}
    assert approved_image.id in proposal["explain"]  # shown to the approver
    assert cli("approve", run_id, "roll-back", "--as", "alice")[0] == 0
    box.retag(other_image, v2)  # moved after the approval

    code, report = cli.json("resume", run_id, "--no-input")
    assert code == 1

    assert remedy(report, "roll-back")["status"] == "succeeded", report
    now = box.state(service.name)
    assert now["running"] and now["image"] == approved_image.id
    assert now["image"] != other_image.id  # never what v2 names now


def test_a_database_is_known_by_its_system_identifier(lab: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The identity an approval binds to is the cluster (pg_control_system()), read with the
    probe role, with where the remedies will connect; never a password."""
    import psycopg

    from diagnostics.postgres import PostgresConnector, PostgresSettings
    from runner.inventory import Target

    monkeypatch.setenv("TEST_ID_DSN", lab.ro)
    monkeypatch.setenv("TEST_ID_OPS_DSN", lab.ops)
    target = Target("db", "postgres", PostgresSettings(dsn_env="TEST_ID_DSN",
                                                       action_dsn_env="TEST_ID_OPS_DSN"))
    identity = PostgresConnector().identity(target, 10)
    with psycopg.connect(lab.admin) as admin:
        row = admin.execute("SELECT system_identifier::text, current_database() "
                            "FROM pg_control_system()").fetchone()
    assert row is not None
    assert identity["system_identifier"] == row[0]
    assert identity["database"].endswith(f"/{row[1]}")
    ops = psycopg.conninfo.conninfo_to_dict(lab.ops)
    assert identity["action_database"] == f"{ops.get('host')}:{ops.get('port')}/{ops['dbname']}"
    assert str(ops.get("password")) not in str(identity)
