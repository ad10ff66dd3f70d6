"""The daemon's configuration file, validated like a playbook (file:line:col errors)."""

from __future__ import annotations

import ipaddress
import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import PlaybookError, UsageError
from ..model import Duration, Severity
from .routing import Matcher, parse_matcher


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(9095, ge=0, le=65535)


class Auth(_Strict):
    """How senders prove who they are. `none` is accepted only on a loopback address."""

    mode: Literal["bearer", "hmac", "none"] = "bearer"
    token_env: str | None = Field(None, description="bearer: env var holding the token")
    secret_env: str | None = Field(None, description="hmac: env var holding the shared secret")


class Approver(_Strict):
    token_env: str = Field(description="env var holding this approver's bearer token")


class Route(_Strict):
    name: str
    match: list[str] = Field(default_factory=list,
                             description='Alertmanager matchers: alertname="X", env=~"prod.*"')
    playbook: str
    targets: dict[str, str] = Field(default_factory=dict, description="role -> template")
    params: dict[str, str] = Field(default_factory=dict, description="param -> template")
    severity: Severity | None = None
    group_by: list[str] = Field(default_factory=list,
                                description="labels that make a group; default: the alert")
    once_within: Duration | None = Field(None, description="one run per group this long")

    @cached_property
    def matchers(self) -> list[Matcher]:
        """Parsed once: routing runs for every alert."""
        return [parse_matcher(m) for m in self.match]


class Notify(_Strict):
    kind: Literal["slack", "webhook"]
    url: str | None = None
    url_env: str | None = Field(None, description="env var holding the URL (Slack's is a secret)")
    timeout: Duration = 5.0
    retries: int = Field(3, ge=0, le=10)

    def resolved_url(self) -> str:
        url = os.environ.get(self.url_env, "") if self.url_env else self.url or ""
        if not url:
            raise UsageError(f"notify {self.kind}: no URL ({self.url_env or 'url'} is empty)")
        return url


class DaemonConfig(_Strict):
    listen: Listen = Listen()
    auth: Auth = Auth()
    body_limit: int = Field(1_048_576, ge=1024, description="bytes per request")
    max_concurrent_runs: int = Field(4, ge=1, le=64)
    dedup_window: Duration = Field(600.0, description="alerts of a group within it join a run")
    approval_ttl: Duration | None = Field(3600.0, description="an older approval is void")
    four_eyes: bool = Field(False, description="the approver may not be who requested the run")
    approvers: dict[str, Approver] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    notify: list[Notify] = Field(default_factory=list)
    inventory: list[str] = Field(default_factory=list, description="default: as the CLI")
    playbooks: list[str] = Field(default_factory=list, description="default: as the CLI")

    @model_validator(mode="after")
    def _checks(self) -> DaemonConfig:
        if self.auth.mode == "none" and not _loopback(self.listen.host):
            raise ValueError("auth mode none is allowed only when listening on loopback")
        if self.auth.mode == "bearer" and not self.auth.token_env:
            raise ValueError("auth mode bearer needs token_env")
        if self.auth.mode == "hmac" and not self.auth.secret_env:
            raise ValueError("auth mode hmac needs secret_env")
        names = [r.name for r in self.routes]
        if len(names) != len(set(names)):
            raise ValueError("route names must be unique")
        for route in self.routes:
            _ = route.matchers  # a bad matcher fails here, at load time
        return self


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load(path: Path) -> DaemonConfig:
    from .. import yamlsource
    from ..loader import problem

    doc, problems = yamlsource.read(path)
    if problems:
        raise PlaybookError(problems)
    try:
        return DaemonConfig.model_validate(doc.data or {})
    except ValidationError as exc:
        raise PlaybookError([problem(doc, e) for e in exc.errors()]) from None
