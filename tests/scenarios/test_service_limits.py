"""service.set_memory_limit on real Docker: a limit of 0 (Docker's "unlimited") or anything
below the floor, given as a parameter and approved in advance, never reaches the container;
its limit stays what it was."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diagnostics.docker import DockerOperator
from diagnostics.service import DockerService
from runner.errors import PermanentError
from runner.paths import home
from tests.lab.images import require_image
from tests.scenarios.conftest import CLI
from tests.scenarios.helpers import remedy

LIMIT = 128 * 1024 * 1024

PLAYBOOK = """\
name: lift-limit
summary: raise the memory limit to what the caller says
params:
  limit: {type: string, default: 96m}
targets:
  api: {kind: service}
steps:
  - {id: status, run: service.status}
remedies:
  - id: set-limit
    run: service.set_memory_limit
    with: {limit: "{{ params.limit }}", max: 128m}
"""


@pytest.fixture
def container(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import docker

    client = docker.from_env()
    name = f"rb-test-limit-{uuid.uuid4().hex[:6]}"
    # Any lab image will do: the container only has to run, with a limit.
    started = client.containers.run(require_image("sshd"), entrypoint=["sleep", "infinity"],
                                    name=name, detach=True, mem_limit=LIMIT,
                                    memswap_limit=LIMIT, labels={"runbook.lab": "limit"})
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "lift-limit.yaml").write_text(PLAYBOOK)
    (tmp_path / "inventory.yaml").write_text(json.dumps({"targets": {"lab-api": {
        "kind": "service", "runtime": "docker", "container": name}}}))
    monkeypatch.setenv("RUNBOOK_PLAYBOOKS", str(tmp_path / "playbooks"))
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(tmp_path / "inventory.yaml"))
    try:
        yield started
    finally:
        started.remove(force=True)


def memory_limit(container: Any) -> int:
    container.reload()
    assert container.status == "running"
    return int(container.attrs["HostConfig"]["Memory"])


@pytest.mark.parametrize("limit", ["0", "0m", "0.5", "-1", "true", "1k", "3m"])
def test_an_approved_limit_that_would_lift_the_limit_leaves_the_container_alone(
        cli: CLI, container: Any, limit: str) -> None:
    _code, report = cli.json("run", "lift-limit", "-p", f"limit={limit}", "--no-input",
                            "--approve", "set-limit=service.set_memory_limit")
    attempt = remedy(report, "set-limit")
    assert attempt["status"] == "skipped", attempt
    assert "cannot be resolved: limit: " in json.dumps(attempt)  # refused by the params model
    assert memory_limit(container) == LIMIT


def test_a_limit_within_the_bound_is_applied(cli: CLI, container: Any) -> None:
    _code, report = cli.json("run", "lift-limit", "-p", "limit=96m", "--no-input",
                            "--approve", "set-limit=service.set_memory_limit")
    assert remedy(report, "set-limit")["status"] == "succeeded", report
    assert memory_limit(container) == 96 * 1024 * 1024


@pytest.mark.parametrize("limit", [0, -1, True])
def test_the_docker_operator_refuses_it_itself(container: Any, limit: Any) -> None:
    operator = DockerOperator(DockerService(runtime="docker", container=container.name), 10,
                              home=home())
    try:
        with pytest.raises(PermanentError, match="refusing a memory limit"):
            operator.set_memory_limit(limit)
    finally:
        operator.close()
    assert memory_limit(container) == LIMIT
