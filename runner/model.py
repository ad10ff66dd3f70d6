"""The playbook as a typed model: what `playbooks/*.yaml` may say.

Pydantic checks shape and types; `runner.validate` then checks meaning (known step kinds,
targets, step references) against the registry. `with` fields stay raw here because they
may hold templates that only the run can resolve.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from .durations import parse_duration

# Seconds; accepts "500ms", "30s", "5m", "1h30m" or a number.
Duration = Annotated[
    float,
    BeforeValidator(parse_duration, json_schema_input_type=float | str),
    PlainSerializer(lambda s: s, return_type=float),
    Field(json_schema_extra={"examples": ["30s", "5m"]}),
]
Severity = Literal["P1", "P2", "P3", "P4"]
StepId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
ParamType = Literal["string", "int", "float", "bool", "duration", "list"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Param(_Strict):
    """A playbook parameter, set with `--param NAME=VALUE`."""

    type: ParamType = "string"
    default: Any = None
    description: str = ""


class TargetRole(_Strict):
    """A role the playbook acts on; the inventory binds it to a real target."""

    kind: Name
    description: str = ""
    optional: bool = Field(False, description="without a target, its steps are skipped")


class Step(_Strict):
    """A read-only diagnostic step."""

    id: StepId
    run: str = Field(description="step kind, e.g. postgres.connection_usage")
    target: str | None = Field(None, description="target role; may be omitted with one role")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    when: str | None = Field(None, description="expression; the step is skipped when false")
    needs: list[StepId] = Field(default_factory=list)
    timeout: Duration | None = None
    retries: int = Field(0, ge=0, le=10)
    description: str = ""


class Finding(_Strict):
    """A conclusion drawn from step results."""

    id: Name
    when: str = Field(description="expression over steps, params and targets")
    say: str = Field(description="template for the message shown when the finding holds")
    severity: Severity | None = None
    hint: str = ""


class Remedy(_Strict):
    """A mutating step: proposed after diagnosis, run only through the gate."""

    id: Name
    run: str
    target: str | None = None
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    when: str | None = Field(None, description="expression over steps, params, targets and "
                             "findings (findings['id'] is true when that finding fired)")
    timeout: Duration | None = None
    description: str = ""


class Verify(_Strict):
    """A read-only check after remedies: it must come true `within` a settling time and,
    with `for`, then hold for that long."""

    id: StepId | None = None
    run: str
    target: str | None = None
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    expect: str | None = Field(None, description="expression over `result`; default: ok")
    within: Duration = Field(10.0, description="how long the fix may take to show")
    for_: Duration | None = Field(None, alias="for", description="then it must hold this long")
    interval: Duration = Field(1.0, description="time between checks")
    timeout: Duration | None = None


class Playbook(_Strict):
    """A whole playbook document."""

    name: Name
    summary: str
    severity: Severity = "P3"
    description: str = ""
    params: dict[StepId, Param] = Field(default_factory=dict)
    targets: dict[StepId, TargetRole] = Field(default_factory=dict)
    steps: list[Step] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    remedies: list[Remedy] = Field(default_factory=list)
    verify: list[Verify] = Field(default_factory=list)

    def verify_id(self, index: int) -> str:
        check = self.verify[index]
        return check.id or f"verify_{index + 1}"


def coerce_param(spec: Param, value: Any) -> Any:
    """Turn a default or a `--param` string into the declared type; ValueError if it won't."""
    if value is None:
        return None
    kind = spec.type
    if kind == "duration":
        return parse_duration(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"true", "yes", "on", "1"}:
            return True
        if text in {"false", "no", "off", "0"}:
            return False
        raise ValueError(f"{value!r} is not a bool (true/false)")
    if kind == "int":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{value!r} is not an int")
        return int(value)
    if kind == "float":
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number")
        return float(value)
    if kind == "list":
        if isinstance(value, list):
            return value
        return [item.strip() for item in str(value).split(",") if item.strip()]
    if isinstance(value, dict | list):
        raise ValueError(f"{value!r} is not a string")
    return str(value)
