"""Incoming alerts: Alertmanager's webhook (version 4) and a generic JSON alert, both
turned into `Alert`s. Validation errors name the field, for a 400 that says what is wrong.

An alert's fingerprint is always computed from its labels, as Alertmanager computes it: a
sender's `fingerprint` field is never trusted, since it decides which run a `resolved`
closes. A claimed fingerprint that differs is kept on the alert (`sent_fingerprint`) so
the intake can report it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
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
    sent_fingerprint: str = ""  # the sender's fingerprint, only when it differs from ours

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
    alerts: list[GenericAlert] = Field(min_length=1)


class PayloadError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class TooManyAlerts(PayloadError):
    """More alerts in one request than the daemon's `max_alerts` (a 413)."""


_FNV64_OFFSET = 0xCBF29CE484222325
_FNV64_PRIME = 0x100000001B3
_SEPARATOR = b"\xff"  # a byte that never occurs in UTF-8 text


def fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's fingerprint (prometheus/common model.LabelSet.Fingerprint): FNV-1a
    64 over the label names in byte order, each name and value followed by 0xff, as 16
    hex digits. The same labels give the same fingerprint here and in Alertmanager."""
    return _fnv1a64(tuple(sorted(labels.items())))  # code-point order is UTF-8 byte order


@lru_cache(maxsize=8192)  # senders repeat the same alerts; the byte loop is ~50 us in Python
def _fnv1a64(items: tuple[tuple[str, str], ...]) -> str:
    data = b"".join(name.encode() + _SEPARATOR + value.encode() + _SEPARATOR
                    for name, value in items)
    digest = _FNV64_OFFSET
    for byte in data:
        digest = ((digest ^ byte) * _FNV64_PRIME) & 0xFFFF_FFFF_FFFF_FFFF
    return f"{digest:016x}"


def _claimed(sent: str | None, computed: str) -> str:
    return sent if sent and sent != computed else ""


def _problems(exc: ValidationError) -> PayloadError:
    return PayloadError([f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                         for e in exc.errors()][:20])


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except RecursionError:
        raise PayloadError(["body: JSON nested too deeply"]) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError([f"body: not JSON ({exc})"]) from None


def _count(data: Any, max_alerts: int) -> None:
    """Refuse an oversized batch before validating any of it: 8,000 alerts must not make
    8,000 runs (nor cost 8,000 validations)."""
    alerts = data.get("alerts") if isinstance(data, dict) else None
    if isinstance(alerts, list) and len(alerts) > max_alerts:
        raise TooManyAlerts([f"alerts: {len(alerts)} alerts in one request, at most "
                             f"{max_alerts} (the daemon's max_alerts); set max_alerts on "
                             "the sender (Alertmanager: webhook_config.max_alerts)"])


def from_alertmanager(body: bytes, max_alerts: int = 1000) -> list[Alert]:
    data = _json(body)
    _count(data, max_alerts)
    try:
        payload = AlertmanagerPayload.model_validate(data)
    except ValidationError as exc:
        raise _problems(exc) from None
    alerts = []
    for a in payload.alerts:
        computed = fingerprint(a.labels)
        alerts.append(Alert(
            source="alertmanager", status=a.status, labels=a.labels,
            annotations={**payload.commonAnnotations, **a.annotations},
            starts_at=a.startsAt, ends_at=_real_time(a.endsAt), fingerprint=computed,
            sent_fingerprint=_claimed(a.fingerprint, computed), receiver=payload.receiver,
            group_key=payload.groupKey, group_status=payload.status))
    return alerts


def from_generic(body: bytes, max_alerts: int = 1000) -> list[Alert]:
    data = _json(body)
    _count(data, max_alerts)
    try:
        payload = GenericPayload.model_validate(data if isinstance(data, dict) and "alerts" in data
                                                else {"alerts": [data]})
    except ValidationError as exc:
        raise _problems(exc) from None
    alerts = []
    for a in payload.alerts:
        computed = fingerprint(a.labels)
        alerts.append(Alert(source="generic", status=a.status, labels=a.labels,
                            annotations=a.annotations, starts_at=a.starts_at or datetime.now(UTC),
                            fingerprint=computed,
                            sent_fingerprint=_claimed(a.fingerprint, computed)))
    return alerts


def _real_time(moment: datetime | None) -> datetime | None:
    """Alertmanager sends 0001-01-01 for 'not ended'."""
    return moment if moment and moment.year > 1 else None
