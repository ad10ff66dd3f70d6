"""Run a small playbook on the in-process `mem` backend through the real command line, for
the incident tests (severity, timeline, notes, post-incident draft)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runner.cli import main


class IncidentKit:
    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch,
                 capsys: pytest.CaptureFixture[str]) -> None:
        monkeypatch.setenv("RUNBOOK_BACKENDS", "tests.support.membackend:register")
        self.root, self.capsys = root, capsys
        self.box = root / "box"
        self.inventory = root / "inventory.yaml"
        self.inventory.write_text(f"targets:\n  box:\n    kind: mem\n    path: {self.box}\n")
        self.home = Path(__import__("os").environ["RUNBOOK_HOME"])

    def playbook(self, body: str, name: str = "pb") -> Path:
        path = self.root / f"{name}.yaml"
        path.write_text(f"name: {name}\nsummary: a test incident\ntargets:\n  box: {{kind: mem}}\n"
                        + textwrap.dedent(body))
        return path

    def cli(self, *argv: str, code: int | None = None) -> str:
        self.capsys.readouterr()
        got = main(list(argv))
        out, err = self.capsys.readouterr()
        if code is not None:
            assert got == code, out + err
        return out

    def json(self, *argv: str, code: int | None = None) -> Any:
        return json.loads(self.cli(*argv, "-o", "json", code=code))

    def run(self, playbook: Path, *extra: str) -> Any:
        return self.json("run", str(playbook), "--inventory", str(self.inventory),
                         "--no-input", *extra)
