"""The catalogue: `runbook kinds KIND` shows one kind in full, and docs/catalogue.md is the
registry's, regenerated, never stale."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from runner import catalogue_doc
from runner.cli import main
from runner.registry import Backend, Registry, StepKind

ROOT = Path(__file__).resolve().parents[2]


class Probe(BaseModel):
    """Thresholds are percentages of the pool."""

    model_config = ConfigDict(extra="forbid")
    database: str = Field(max_length=63, description="which database")
    warn_pct: float = Field(80.0, ge=0, le=100, description="warn | above this")
    owners: list[str] = Field(default_factory=list, description="only these owners")
    limit: int | None = Field(None, gt=0)


def pool_usage(handle: Any, params: Probe) -> dict[str, Any]:
    """Reads pg_stat_activity against max_connections."""
    return {"ok": True}


class NoConnector:
    """Nothing here connects: the catalogue only describes."""


def register_sample(registry: Registry) -> None:
    registry.add_backend(Backend("sample", NoConnector(), BaseModel,  # type: ignore[arg-type]
                                 summary="a sample backend"))
    registry.add(StepKind("sample.pool_usage", "sample", pool_usage, Probe, False,
                          "connections used of the pool", {"ok": "under warn_pct",
                                                           "used_pct": "connections in use, %"},
                          timeout=12.5))
    registry.add(StepKind("sample.reset", "sample", pool_usage, Probe, True, "reset the pool"))


@pytest.fixture
def runbook(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("RUNBOOK_BACKENDS", f"{__name__}:register_sample")

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_one_kind_in_full_what_it_reads_its_params_and_its_result(runbook: Any) -> None:
    code, out, _ = runbook("kinds", "sample.pool_usage")
    assert code == 0
    lines = [line.strip() for line in out.splitlines()]
    assert lines[0] == "sample.pool_usage  [sample]  read-only  timeout 12.5s"
    assert "Reads pg_stat_activity against max_connections." in lines
    assert "Thresholds are percentages of the pool." in lines
    assert "database (string, required; at most 63 characters)" in lines
    assert "warn_pct (number, default 80.0; >= 0, <= 100)" in lines
    assert "owners (list of string, default [])" in lines
    assert "limit (integer or null, default null; > 0)" in lines
    assert "used_pct: connections in use, %" in lines
    code, out, _ = runbook("kinds", "sample.reset")
    assert "MUTATING: runs only as an approved remedy" in out.splitlines()[0]
    assert "result: not documented" in out


def test_one_kind_as_json_carries_its_schema(runbook: Any) -> None:
    code, out, _ = runbook("kinds", "sample.pool_usage", "-o", "json")
    document = json.loads(out)
    assert code == 0
    assert (document["name"], document["backend"], document["mutating"], document["timeout"]) \
        == ("sample.pool_usage", "sample", False, 12.5)
    assert document["params"][1] == {"name": "warn_pct", "type": "number", "required": False,
                                      "default": 80.0, "limits": [">= 0", "<= 100"],
                                      "description": "warn | above this"}
    assert document["params_schema"]["properties"]["database"]["maxLength"] == 63
    assert document["result"]["used_pct"] == "connections in use, %"


def test_an_unknown_kind_is_a_usage_error_with_a_suggestion(runbook: Any) -> None:
    code, out, err = runbook("kinds", "sample.pool_usag")
    assert (code, out) == (2, "")
    assert "did you mean sample.pool_usage" in err


def test_the_catalogue_groups_kinds_by_backend_and_keeps_tables_whole(runbook: Any) -> None:
    code, out, _ = runbook("kinds", "-o", "markdown")
    assert code == 0
    assert "| [sample](#sample) | 1 | 1 | `sample` |" in out
    section = out[out.index("## sample"):]
    assert "Targets of kind `sample`: a sample backend." in section
    assert section.index("### `sample.pool_usage`") < section.index("### `sample.reset`")
    # A `|` inside a description is escaped, so the row keeps its five cells.
    assert "| `warn_pct` | number | default 80.0 | >= 0, <= 100 | warn \\| above this |" in section


def test_the_committed_catalogue_is_current(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOOK_BACKENDS", f"{__name__}:register_sample")  # left out: not shipped
    committed = (ROOT / "docs" / "catalogue.md").read_text()
    current = catalogue_doc.markdown(catalogue_doc.shipped_registry())
    assert "sample." not in current
    assert committed == current, f"stale: run {catalogue_doc.REGENERATE}"
