"""Scenario replays run the real CLI in-process against the lab."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runner.cli import main


class CLI:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str]:
        code = main(list(argv))
        out = self.capsys.readouterr()
        return code, out.out + out.err

    def json(self, *argv: str) -> tuple[int, dict[str, Any]]:
        code = main([*argv, "--format", "json"])
        return code, json.loads(self.capsys.readouterr().out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI(capsys)


from tests.scenarios.kubelab import k8s  # noqa: E402, F401 - one cluster for the whole session
from tests.scenarios.servicelab import services  # noqa: E402, F401 - a fixture for every scenario
