"""Incoming alerts: Alertmanager's webhook (version 4), Grafana's (the same shape, version
"1", with a silence link per alert) and a generic JSON alert, all turned into `Alert`s.
Validation errors name the field, for a 400 that says what is wrong.

An alert's fingerprint is always computed from its labels, as Alertmanager computes it: a
sender's `fingerprint` field is never trusted, since it decides which run a `resolved`
closes. A claimed fingerprint that differs is kept on the alert (`sent_fingerprint`) so
the intake can report it.

Each alert keeps what the notification links to: its `generatorURL`, the sender's view of
its group (from `externalURL`) and a silence for it, and how many alerts the sender left
out of the request (`truncatedAlerts`, when its `max_alerts` cut the group).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import quote

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
    generator_url: str = ""  # the rule or graph that fired it
    group_url: str = ""  # its group in Alertmanager (Grafana: its alerting page)
    silence_url: str = ""  # a new silence for it
    truncated_alerts: int = 0  # alerts of the same request the sender left out

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
    silenceURL: str = ""  # Grafana's


class AlertmanagerPayload(BaseModel):
    """https://prometheus.io/docs/alerting/latest/configuration/#webhook_config; Grafana's
    webhook contact point sends the same with version "1" (and fields ignored here)."""

    model_config = ConfigDict(extra="ignore")
    version: Literal["4", "1"]
    groupKey: str = ""  # Alertmanager always sends it; it only names the group here
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    truncatedAlerts: int = Field(0, ge=0)
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
    """Alertmanager's webhook, or Grafana's (version "1") sent to the same endpoint."""
    data = _json(body)
    _count(data, max_alerts)
    try:
        payload = AlertmanagerPayload.model_validate(data)
    except ValidationError as exc:
        raise _problems(exc) from None
    grafana = payload.version == "1"
    base = _web_url(payload.externalURL).rstrip("/")
    # Alertmanager's UI: the receiver's alerts filtered to the group
    group_url = base if grafana or not base else (
        f"{base}/#/alerts?receiver={quote(payload.receiver, safe='')}"
        f"&filter={quote(_selector(payload.groupLabels), safe='')}")
    alerts = []
    for a in payload.alerts:
        computed = fingerprint(a.labels)
        silence = _web_url(a.silenceURL) if grafana else \
            f"{base}/#/silences/new?filter={quote(_selector(a.labels), safe='')}" if base else ""
        alerts.append(Alert(
            source="grafana" if grafana else "alertmanager", status=a.status, labels=a.labels,
            annotations={**payload.commonAnnotations, **a.annotations},
            starts_at=a.startsAt, ends_at=_real_time(a.endsAt), fingerprint=computed,
            sent_fingerprint=_claimed(a.fingerprint, computed), receiver=payload.receiver,
            group_key=payload.groupKey, group_status=payload.status,
            generator_url=_web_url(a.generatorURL), group_url=group_url, silence_url=silence,
            truncated_alerts=payload.truncatedAlerts))
    return alerts


def from_grafana(body: bytes, max_alerts: int = 1000) -> list[Alert]:
    """Grafana's webhook contact point on its own endpoint: version "1" only."""
    data = _json(body)
    if isinstance(data, dict) and data.get("version") != "1":
        raise PayloadError([f"version: Grafana's webhook sends version \"1\", not "
                            f"{str(data.get('version'))[:20]!r} (Alertmanager's goes to "
                            "/v1/alerts/alertmanager)"])
    return from_alertmanager(body, max_alerts)


def _web_url(text: str) -> str:
    """A link the sender gave, kept only when it is plainly http(s): a notification makes
    it clickable, so no other scheme, no blanks or control characters, bounded."""
    if len(text) > 2000 or not text.lower().startswith(("http://", "https://")) or \
            any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
        return ""
    return text


def _selector(labels: dict[str, str]) -> str:
    """`{a="b", c="d"}`: Alertmanager's filter syntax, its escapes included."""
    def quoted(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ", ".join(f'{k}="{quoted(v)}"' for k, v in sorted(labels.items())) + "}"


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
