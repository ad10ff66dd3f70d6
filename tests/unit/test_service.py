"""service.set_memory_limit: a limit that would lift the limit (0, -1, a fraction that rounds
to 0, a bool) is refused when the playbook is validated, before any runtime is reached, and
again by each runtime's operator."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from pydantic import ValidationError

import diagnostics.service
from diagnostics.docker import DockerOperator
from diagnostics.kubernetes import KubernetesOperator
from diagnostics.service import MEMORY_FLOOR, MemoryLimitParams
from runner import loader
from runner.errors import PermanentError, PlaybookError
from runner.registry import Registry

# Each would have meant "no limit" (0) or been taken for one under a max of 128m.
UNSAFE = ["0m", "0", 0, 0.5, "0.5", -1, "-1", True, False, None, "1.5", 4 * 1024 * 1024 - 1,
          "3m", 268435456.5, "1.00000001m", "200m", [1], "", "12 parsecs"]


@pytest.mark.parametrize("limit", UNSAFE, ids=repr)
def test_a_limit_that_lifts_or_passes_the_bound_is_refused_at_validation(limit: Any) -> None:
    with pytest.raises(ValidationError):
        MemoryLimitParams.model_validate({"limit": limit, "max": "128m"})


@pytest.mark.parametrize("limit, expected", [
    ("64m", 64 << 20), ("128m", 128 << 20), (MEMORY_FLOOR, MEMORY_FLOOR), ("4MiB", 4 << 20),
    (100663296, 96 << 20), (100663296.0, 96 << 20), ("0.0625g", 64 << 20)])
def test_a_whole_size_within_the_bound_is_taken(limit: Any, expected: int) -> None:
    assert MemoryLimitParams.model_validate({"limit": limit, "max": "128m"}).limit == expected


def test_a_zero_max_is_refused_too() -> None:
    with pytest.raises(ValidationError):
        MemoryLimitParams.model_validate({"limit": "64m", "max": 0})


def test_runbook_validate_points_at_a_literal_zero_limit() -> None:
    registry = Registry()
    diagnostics.service.register(registry)
    text = textwrap.dedent("""\
        name: pb
        summary: test
        targets:
          api: {kind: service}
        remedies:
          - id: lift
            run: service.set_memory_limit
            with: {limit: 0m, max: 128m}
        """)
    with pytest.raises(PlaybookError) as caught:
        loader.parse(text, "pb.yaml", registry)
    [problem] = caught.value.problems
    assert problem.line == 8 and "refusing a memory limit of 0" in problem.message


class _Unreachable:
    """Stands for the runtime's client: any use of it means the guard let the value by."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the runtime was reached ({name})")


@pytest.mark.parametrize("operator_class", [DockerOperator, KubernetesOperator])
@pytest.mark.parametrize("limit", [0, -1, True, 0.5, MEMORY_FLOOR - 1, "512m"], ids=repr)
def test_each_runtime_operator_refuses_an_unsafe_limit_itself(
        operator_class: type[Any], limit: Any) -> None:
    """The operator's own last line, for a caller that skipped the params model."""
    operator = object.__new__(operator_class)  # no engine or cluster: it must not get there
    operator.__dict__.update({"_api": _Unreachable(), "_apps": _Unreachable(),
                              "_core": _Unreachable()})
    with pytest.raises(PermanentError, match="refusing a memory limit"):
        operator.set_memory_limit(limit)
