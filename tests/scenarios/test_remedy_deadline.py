"""A rollback cut off by its deadline while the old container is stopping: the service is
not left down. A real `runbook` process, a real container that is slow to stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.journal import Journal
from tests.lab.api import SERVICE_LABEL, remove_api
from tests.lab.images import require_image

ROOT = Path(__file__).resolve().parents[2]

PLAYBOOK = """
name: slow-rollback
summary: roll back a service whose container takes longer to stop than the remedy may take
targets:
  svc: {kind: service}
steps:
  - {id: status, run: service.status}
remedies:
  - id: roll-back
    run: service.rollback
    timeout: 2s
    with: {to_image: "%s"}
"""


@pytest.fixture
def slow_to_stop() -> Iterator[Any]:
    """A container that ignores SIGTERM: `docker stop` waits its full timeout."""
    import docker

    name = f"rb-test-slow-{uuid.uuid4().hex[:6]}"
    container = docker.from_env().containers.run(
        require_image("api-good"), entrypoint=["sh", "-c", "trap '' TERM; exec sleep infinity"],
        name=name, detach=True, labels={SERVICE_LABEL: name})
    try:
        yield container
    finally:
        remove_api(name)
        for aside in docker.from_env().containers.list(
                all=True, filters={"name": f"{name}-before-rollback"}):
            aside.remove(force=True)


def test_a_rollback_past_its_deadline_leaves_the_service_running(
        slow_to_stop: Any, tmp_path: Path, runbook_home: Path) -> None:
    old_image = slow_to_stop.attrs["Image"]
    (tmp_path / "pb").mkdir()
    (tmp_path / "pb" / "slow-rollback.yaml").write_text(PLAYBOOK % require_image("api-bad"))
    (tmp_path / "inventory.yaml").write_text(f"""
targets:
  slow-svc:
    kind: service
    runtime: docker
    container: {slow_to_stop.name}
    stop_timeout: 6s
""")
    env = {**os.environ, "RUNBOOK_PLAYBOOKS": str(tmp_path / "pb"),
           "RUNBOOK_INVENTORY": str(tmp_path / "inventory.yaml")}
    done = subprocess.run(
        [sys.executable, "-m", "runner", "run", "slow-rollback", "--no-input",
         "--approve", "roll-back=service.rollback", "--format", "json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    report = json.loads(done.stdout)
    [remedy] = report["remedies"]
    # Cut off at 2 s while `docker stop` still waited for the container (6 s): the outcome
    # was unknown then; the process waited, and the rollback put the old container back.
    assert remedy["status"] == "outcome_unknown", done.stderr
    assert "within 2s" in remedy["error"]
    assert "ended after its deadline and failed" in remedy["reason"]
    assert "started again on its old image" in remedy["reason"]
    assert report["status"] == "failed"
    slow_to_stop.reload()
    assert slow_to_stop.status == "running"
    assert slow_to_stop.attrs["Image"] == old_image
    with Journal(runbook_home) as journal:
        assert journal.target_lock("slow-svc") is None  # released when the action ended
        events = [e.type for e in journal.events(report["run_id"])]
    assert events.index("remedy.finished") < events.index("remedy.ended_late")
