"""A demo API service in the lab, with an inventory that points runbook at it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.daemonkit import free_port
from tests.lab.api import ApiService, container_dsn, remove_api, start_api
from tests.lab.faults import LabDatabase


@dataclass
class ServiceLab:
    db: LabDatabase
    inventory: Path
    started: list[str] = field(default_factory=list)

    def start(self, flavor: str = "good", mem_limit: str | None = "256m",
              pool_size: int = 5) -> ApiService:
        name = f"rb-test-api-{uuid.uuid4().hex[:6]}"
        self.started.append(name)
        # A published port keeps the URL when a restart moves the container to another
        # bridge address (the Kubernetes tests' pods come and go on the same bridge).
        api = start_api(name, container_dsn(self.db.app), flavor=flavor, mem_limit=mem_limit,
                        pool_size=pool_size, port=free_port())
        self.inventory.write_text(f"""
targets:
  test-api:
    kind: service
    runtime: docker
    container: {name}
    health_url: {api.url}/health
    endpoints: [{api.url}/api/accounts, {api.url}/api/balance-report]
    http_timeout: 3s
    stop_timeout: 2s
  test-db:
    kind: postgres
    dsn_env: RUNBOOK_LAB_DSN
    action_dsn_env: RUNBOOK_LAB_OPS_DSN
""")
        return api

    def container(self, api: ApiService) -> Any:
        import docker

        return docker.from_env().containers.get(api.name)


@pytest.fixture
def services(lab: LabDatabase, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[ServiceLab]:
    inventory = tmp_path / "inventory.yaml"
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(inventory))
    service_lab = ServiceLab(lab, inventory)
    try:
        yield service_lab
    finally:
        for name in service_lab.started:
            remove_api(name)
