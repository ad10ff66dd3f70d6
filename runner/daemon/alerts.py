"""Incoming alerts: Alertmanager's webhook (version 4) and a generic JSON alert, both
turned into `Alert`s. Validation errors name the field, for a 400 that says what is wrong."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Alert(BaseModel):
    """One alert, whatever sent it."""

    model_config = ConfigDict(frozen=True)

    source: str
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    fingerprint: str
    receiver: str = ""
    group_key: str = ""  # Alertmanager's groupKey, when it sent one
    group_status: str = ""  # Alertmanager's status of the whole group it sent

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "alert")


class _AMAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime | None = None
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = ""


class AlertmanagerPayload(BaseModel):
    """https://prometheus.io/docs/alerting/latest/configuration/#webhook_config"""

    model_config = ConfigDict(extra="ignore")
    version: Literal["4"]
    groupKey: str
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[_AMAlert] = Field(min_length=1)


class GenericAlert(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: dict[str, str] = Field(min_length=1, description="alertname is the usual one")
    annotations: dict[str, str] = Field(default_factory=dict)
    status: Literal["firing", "resolved"] = "firing"
    fingerprint: str | None = None
    starts_at: datetime | None = None


class GenericPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alerts: list[GenericAlert] = Field(min_length=1, max_length=1000)


class PayloadError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def fingerprint(labels: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


def _problems(exc: ValidationError) -> PayloadError:
    return PayloadError([f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                         for e in exc.errors()][:20])


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError([f"body: not JSON ({exc})"]) from None


def from_alertmanager(body: bytes) -> list[Alert]:
    try:
        payload = AlertmanagerPayload.model_validate(_json(body))
    except ValidationError as exc:
        raise _problems(exc) from None
    return [Alert(source="alertmanager", status=a.status, labels=a.labels,
                  annotations={**payload.commonAnnotations, **a.annotations},
                  starts_at=a.startsAt, ends_at=_real_time(a.endsAt),
                  fingerprint=a.fingerprint or fingerprint(a.labels), receiver=payload.receiver,
                  group_key=payload.groupKey, group_status=payload.status)
            for a in payload.alerts]


def from_generic(body: bytes) -> list[Alert]:
    data = _json(body)
    try:
        payload = GenericPayload.model_validate(data if isinstance(data, dict) and "alerts" in data
                                                else {"alerts": [data]})
    except ValidationError as exc:
        raise _problems(exc) from None
    return [Alert(source="generic", status=a.status, labels=a.labels, annotations=a.annotations,
                  starts_at=a.starts_at or datetime.now(UTC),
                  fingerprint=a.fingerprint or fingerprint(a.labels))
            for a in payload.alerts]


def _real_time(moment: datetime | None) -> datetime | None:
    """Alertmanager sends 0001-01-01 for 'not ended'."""
    return moment if moment and moment.year > 1 else None
