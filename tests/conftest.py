"""Shared fixtures. Lab fixtures fail loudly when the lab is missing: never a silent skip."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.lab.faults import Faults, LabDatabase

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # no Ryuk image here

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "tests" / "scenarios"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/scenarios/ needs the lab: `-m "not lab"` is the unit stage."""
    for item in items:
        if SCENARIOS in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.lab)


@pytest.fixture(autouse=True)
def runbook_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test journals into its own RUNBOOK_HOME and sees the shipped playbooks."""
    home = tmp_path / "home"
    monkeypatch.setenv("RUNBOOK_HOME", str(home))
    monkeypatch.setenv("RUNBOOK_PLAYBOOKS", str(ROOT / "playbooks"))
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(ROOT / "inventory"))
    return home


# The lab: a real PostgreSQL 15 in a throwaway container, shared by the session.


@pytest.fixture(scope="session")
def lab_db() -> Iterator[LabDatabase]:
    from tests.lab.faults import prepare
    from tests.lab.postgres import postgres_container

    try:
        container = postgres_container(max_connections=25)
        container.start()
    except Exception as exc:
        pytest.fail(f"LAB MISSING: cannot start the lab PostgreSQL ({exc}); run scripts/setup",
                    pytrace=False)
    try:
        yield prepare(container.get_connection_url(driver=None))
    finally:
        container.stop()


@pytest.fixture
def lab(lab_db: LabDatabase, monkeypatch: pytest.MonkeyPatch) -> LabDatabase:
    """The lab database, with inventory/lab.yaml's env vars pointing at it."""
    monkeypatch.setenv("RUNBOOK_LAB_DSN", lab_db.ro)
    monkeypatch.setenv("RUNBOOK_LAB_OPS_DSN", lab_db.ops)
    return lab_db


@pytest.fixture
def faults(lab: LabDatabase) -> Iterator[Faults]:
    from tests.lab.faults import Faults

    with Faults(lab) as injected:
        yield injected
