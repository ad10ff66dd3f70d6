"""A pytest plugin (entry point `pytest11`): playbook fixtures run in a team's own suite.

Every `*.yaml`/`*.yml` file in a folder named `fixtures` that is a playbook fixture (a
mapping with `playbook` or `playbook_text`, see `runner.fixtures`) is collected, one test
per case: `pytest tests/fixtures` or `pytest playbooks/fixtures`. Each case is a replay:
no infrastructure, nothing live. Without the installed entry point: `pytest -p
runner.fixture_pytest`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


class FixtureFailed(Exception):
    """A case whose replay does not conclude what it expects."""


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in {".yaml", ".yml"} or "fixtures" not in file_path.parent.parts:
        return None
    head = file_path.read_text(errors="replace")
    if not any(line.startswith(("playbook:", "playbook_text:")) for line in head.splitlines()):
        return None
    return PlaybookFixture.from_parent(parent, path=file_path)


class PlaybookFixture(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from .fixtures import read_cases

        for case in read_cases(self.path):
            yield FixtureCase.from_parent(self, name=case.name, case=case)


class FixtureCase(pytest.Item):
    def __init__(self, *, case: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case

    def runtest(self) -> None:
        from .fixtures import run_case
        from .registry import default_registry

        outcome = run_case(self.case, default_registry())
        if outcome.failures:
            raise FixtureFailed("\n".join(outcome.failures))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, FixtureFailed):
            return f"{self.case.id}:\n{excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"fixture {self.case.name}"
