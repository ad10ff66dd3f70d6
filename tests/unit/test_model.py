"""Playbook params from outside (--param, an alert's labels): a `name` param and a param's
own `pattern` are checked when the run is planned, so `client=--reset` never reaches a
command line and `.*` never reaches a regex."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from runner import inventory, loader
from runner.errors import UsageError
from runner.model import Param, coerce_param
from runner.plan import make_plan
from runner.registry import default_registry

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("value", ["--reset", "-x", ".*", "acme.*", "a b", "a;b", "$(id)",
                                   "a\n", "\nacme", "_x", "x" * 129, "é", "a/b", "[a]"])
def test_a_name_param_refuses_what_is_not_a_name(value: str) -> None:
    with pytest.raises(ValueError, match="is not a name"):
        coerce_param(Param(type="name"), value)


@pytest.mark.parametrize("value", ["acme", "acme-2", "eu.west_1:a", "9lives", "x" * 128, ""])
def test_a_name_param_takes_names_and_empty_for_not_given(value: str) -> None:
    assert coerce_param(Param(type="name"), value) == value


def test_a_pattern_must_match_the_whole_value() -> None:
    spec = Param(type="string", pattern=r"[a-z]+")
    assert coerce_param(spec, "abc") == "abc"
    for bad in ("abc1", "1abc", "abc\n", "-abc"):
        with pytest.raises(ValueError, match="does not match the param's pattern"):
            coerce_param(spec, bad)
    listed = Param(type="list", pattern=r"[a-z]+")
    assert coerce_param(listed, "a, b") == ["a", "b"]
    with pytest.raises(ValueError, match="'--x' does not match"):
        coerce_param(listed, "a,--x")


@pytest.mark.parametrize("fields, message", [
    ({"type": "string", "pattern": "(unclosed"}, "is not a regex"),
    ({"type": "int", "pattern": "[0-9]+"}, "applies to string, name and list params"),
])
def test_a_bad_pattern_is_refused_when_the_playbook_loads(
        fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Param.model_validate(fields)


@pytest.fixture
def sync_plan(tmp_path: Path) -> Any:
    registry = default_registry()
    file = tmp_path / "inventory.yaml"
    file.write_text(json.dumps({"targets": {
        "sync-host": {"kind": "ssh", "host": "sync-1"},
        "upstream": {"kind": "http", "url": "http://127.0.0.1:9/"},
        "sync-db": {"kind": "postgres", "dsn_env": "NOT_SET_HERE"}}}))
    targets = inventory.load([file], registry)
    book = loader.load(ROOT / "playbooks" / "sync-failure.yaml", registry)

    def plan(**params: str) -> Any:
        return make_plan(book, targets, registry, {}, params)
    return plan


@pytest.mark.parametrize("client", ["--reset", "--skip-errors", ".*", "acme|other", "-"])
def test_sync_failure_refuses_a_client_that_is_not_a_name_at_plan_time(
        sync_plan: Any, client: str) -> None:
    with pytest.raises(UsageError) as refused:
        sync_plan(client=client)
    assert str(refused.value).startswith(f"--param client: {client!r} is not a name")


def test_sync_failure_plans_with_a_name_or_without_one(sync_plan: Any) -> None:
    assert sync_plan(client="acme.eu-1").params["client"] == "acme.eu-1"
    assert sync_plan().params["client"] == ""
