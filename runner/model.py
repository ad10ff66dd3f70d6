"""The playbook as a typed model: what `playbooks/*.yaml` may say.

Pydantic checks shape and types; `runner.validate` then checks meaning (known step kinds,
targets, step references) against the registry. `with` fields stay raw here because they
may hold templates that only the run can resolve.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    field_validator,
    model_validator,
)

from .durations import parse_duration

# Seconds; accepts "500ms", "30s", "5m", "1h30m" or a number.
Duration = Annotated[
    float,
    BeforeValidator(parse_duration, json_schema_input_type=float | str),
    PlainSerializer(lambda s: s, return_type=float),
    Field(json_schema_extra={"examples": ["30s", "5m"]}),
]
_PARAM_REF = re.compile(r"^\{\{\s*params\.([A-Za-z_]\w*)\s*\}\}$")


def param_ref(value: object) -> str | None:
    """`NAME` of a value written `{{ params.NAME }}`, else None."""
    found = _PARAM_REF.match(value) if isinstance(value, str) else None
    return found.group(1) if found else None


# A duration, or a duration param's reference resolved when the run is planned.
Window = Annotated[
    float | str,
    BeforeValidator(lambda v: v if param_ref(v) else parse_duration(v),
                    json_schema_input_type=float | str),
]
# The seeds' SEV1..SEV4 are accepted for P0..P3 (SEV1 is the worst, as P0 is).
SEVERITY_ALIASES = {"SEV1": "P0", "SEV2": "P1", "SEV3": "P2", "SEV4": "P3"}
Severity = Annotated[
    Literal["P0", "P1", "P2", "P3", "P4"],
    BeforeValidator(lambda v: SEVERITY_ALIASES.get(v, v) if isinstance(v, str) else v,
                    json_schema_input_type=Literal["P0", "P1", "P2", "P3", "P4", "SEV1", "SEV2",
                                                   "SEV3", "SEV4"]),
]
_LABEL: TypeAdapter[str] = TypeAdapter(Severity)
StepId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
ParamType = Literal["string", "name", "int", "float", "bool", "duration", "list"]
# What a `name` param holds (a client, a host, a queue): never an option, never a regex.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"


ALLOW_OPTIONS = ("an argv element rendered from a template may start with '-' (be read as an "
                 "option); by default that is refused")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Param(_Strict):
    """A playbook parameter, set with `--param NAME=VALUE`."""

    type: ParamType = "string"
    default: Any = None
    description: str = ""
    pattern: str | None = Field(None, description="a regex the whole value must match "
                                "(string, name, or each item of a list); checked when the "
                                "run is planned. An empty value means 'not given' and passes")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} is not a regex: {exc}") from None
        return pattern

    @model_validator(mode="after")
    def _pattern_on_text(self) -> Param:
        if self.pattern is not None and self.type not in ("string", "name", "list"):
            raise ValueError(f"a pattern applies to string, name and list params, not "
                             f"{self.type}")
        return self


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
    allow_options: bool = Field(False, description=ALLOW_OPTIONS)
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
    allow_options: bool = Field(False, description=ALLOW_OPTIONS)
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
    for_: Window | None = Field(None, alias="for", description=(
        "then it must hold this long (a duration, or `{{ params.NAME }}` of a duration "
        "param); a window longer than the engine holds inline is watched by schedule"))
    interval: Duration = Field(1.0, description="time between checks")
    timeout: Duration | None = None
    allow_options: bool = Field(False, description=ALLOW_OPTIONS)


class SeverityRule(_Strict):
    """One row of a severity matrix: the run is `level` when `when` holds."""

    level: Severity
    when: str = Field(description="expression over steps, params, targets and findings "
                      "(findings['id'] is true when that finding fired)")
    why: str = Field("", description="what this level means, shown with the run's severity")


class SeverityMatrix(_Strict):
    """Severity from impact: the first rule that holds sets the run's severity once the
    diagnosis is concluded (`runner.severity`); a run with no findings has none."""

    default: Severity = Field("P3", description="the label before diagnosis, and the level "
                              "when findings fired but no rule holds")
    rules: list[SeverityRule] = Field(min_length=1)


class Playbook(_Strict):
    """A whole playbook document."""

    name: Name
    summary: str
    # A label (P0..P3, SEV1..SEV4), or a matrix of rules over the diagnosis.
    severity_spec: Severity | SeverityMatrix = Field(
        "P3", alias="severity", description="P0..P3 (or SEV1..SEV4), or {default, rules: "
        "[{level, when, why}]}: the first rule that holds after diagnosis sets the run's")
    description: str = ""
    params: dict[StepId, Param] = Field(default_factory=dict)
    targets: dict[StepId, TargetRole] = Field(default_factory=dict)
    steps: list[Step] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    remedies: list[Remedy] = Field(default_factory=list)
    verify: list[Verify] = Field(default_factory=list)

    @field_validator("severity_spec", mode="before")
    @classmethod
    def _label_or_matrix(cls, value: Any) -> Any:
        """One shape's errors, at the author's own path (a union would report both)."""
        if isinstance(value, dict):
            return SeverityMatrix.model_validate(value)
        return value if isinstance(value, SeverityMatrix) else _LABEL.validate_python(value)

    @property
    def severity(self) -> str:
        """The playbook's label: what a run says before its diagnosis sets its own."""
        spec = self.severity_spec
        return spec if isinstance(spec, str) else spec.default

    @property
    def severity_rules(self) -> list[SeverityRule]:
        return [] if isinstance(self.severity_spec, str) else list(self.severity_spec.rules)

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
        items = value if isinstance(value, list) else \
            [item.strip() for item in str(value).split(",") if item.strip()]
        for item in items:
            _matches(spec, str(item))
        return items
    if isinstance(value, dict | list):
        raise ValueError(f"{value!r} is not a string")
    text = str(value)
    if kind == "name" and text and not re.fullmatch(NAME_PATTERN, text):
        raise ValueError(f"{text!r} is not a name: 1 to 128 letters, digits, '.', '_', ':' "
                         "or '-', starting with a letter or a digit")
    _matches(spec, text)
    return text


def _matches(spec: Param, text: str) -> None:
    """The param's own pattern, on the whole value (an empty one is 'not given')."""
    if spec.pattern is not None and text and not re.fullmatch(spec.pattern, text):
        raise ValueError(f"{text!r} does not match the param's pattern {spec.pattern!r}")
