"""The daemon's configuration file, validated like a playbook (file:line:col errors), and
the warnings `runbook daemon --check` prints about a config that loads but is unsafe."""

from __future__ import annotations

import ipaddress
import os
import re
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..comms.config import Sink as Notify  # the same sinks as notify.yaml's
from ..errors import PlaybookError
from ..model import Duration, Severity
from .matchers import Matcher, parse_matchers

if TYPE_CHECKING:
    from ..policy import Policy


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


class MetricsAccess(_Strict):
    """Who may read `/metrics` (it names playbooks, step kinds and run counts)."""

    auth: Literal["token", "none"] = "token"
    token_env: str | None = Field(None, description="env var holding a scrape token; without "
                                  "it, the tokens that may read runs (GET /v1/runs) may scrape")


class TargetRule(_Strict):
    """A target chosen by an alert, constrained: the rendered name must be in `allow` or
    match `match` (a regex over the whole name, as Alertmanager anchors its matchers)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    template: str = Field(alias="from", description='e.g. "{{ labels.instance }}"')
    allow: list[str] | None = Field(None, min_length=1, description="target names it may be")
    match: str | None = Field(None, description="a regex the whole target name must match")

    @model_validator(mode="after")
    def _constrained(self) -> TargetRule:
        if self.allow is None and self.match is None:
            raise ValueError("a target rule needs allow: [names] or match: regex (a plain "
                             "string is the way to write an unconstrained template)")
        if self.match is not None:
            try:
                re.compile(self.match)
            except re.error as exc:
                raise ValueError(f"bad regex in match {self.match!r}: {exc}") from None
        return self

    def permits(self, name: str) -> bool:
        if self.allow is not None and name not in self.allow:
            return False
        return self.match is None or re.fullmatch(self.match, name) is not None


class EscalationTarget(_Strict):
    """One step of a route's escalation: a Slack channel or user (chat.postMessage with the
    Slack app's bot token), a generic JSON webhook, or PagerDuty's Events API v2."""

    kind: Literal["slack", "webhook", "pagerduty"]
    to: str | None = Field(None, description="slack: a channel id (C...) or a user id (U...)")
    url: str | None = Field(None, description="webhook: where; pagerduty: default Events v2")
    url_env: str | None = Field(None, description="env var holding the URL (a secret)")
    routing_key_env: str | None = Field(None, description="pagerduty: env var holding the "
                                                          "integration's routing key")

    @model_validator(mode="after")
    def _complete(self) -> EscalationTarget:
        if self.kind == "slack" and not self.to:
            raise ValueError("a slack escalation needs to: a channel or user id")
        if self.kind == "webhook" and bool(self.url) == bool(self.url_env):
            raise ValueError("a webhook escalation needs url or url_env (one of them)")
        if self.kind == "pagerduty" and not self.routing_key_env:
            raise ValueError("a pagerduty escalation needs routing_key_env")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url {self.url!r}: expected http:// or https://")
        return self


class Route(_Strict):
    name: str
    match: list[str] = Field(default_factory=list,
                             description='Alertmanager matchers: alertname="X", env=~"prod.*", '
                                         '{a="b", c!="d"}')
    playbook: str
    targets: dict[str, str | TargetRule] = Field(
        default_factory=dict, description="role -> template, or {from: template, allow: [...]}"
                                          " / {from: template, match: regex}")
    params: dict[str, str] = Field(default_factory=dict, description="param -> template")
    severity: Severity | None = None
    group_by: list[str] = Field(default_factory=list,
                                description="labels that make a group; default: the alert")
    once_within: Duration | None = Field(None, description="one run per group this long")
    escalation: list[EscalationTarget] = Field(
        default_factory=list, description="who hears of a remedy nobody approved: the Nth "
                                          "after N deadlines (escalate_after)")
    mode: Literal["live", "shadow"] = Field(
        "live", description="shadow: diagnose for real and record the remedies it would "
                            "propose, proposing none for approval and telling no one "
                            "(runner/shadow.py; `runbook history --shadow`)")

    @cached_property
    def matchers(self) -> list[Matcher]:
        """Parsed once: routing runs for every alert."""
        return [m for entry in self.match for m in parse_matchers(entry)]

    def target_template(self, role: str) -> str:
        spec = self.targets[role]
        return spec if isinstance(spec, str) else spec.template


class JournalAt(_Strict):
    """Where the journal's tables are: PostgreSQL, shared by several replicas."""

    dsn_env: str = Field(description="env var holding the PostgreSQL DSN (libpq form)")

    def dsn(self) -> str:
        from ..errors import UsageError

        value = os.environ.get(self.dsn_env)
        if not value:
            raise UsageError(f"journal: {self.dsn_env} is not set (the journal's DSN)")
        return value


class Triage(_Strict):
    """Alerts that no route takes: run the triage playbook of the target they name."""

    target_labels: list[str] = Field(
        default_factory=lambda: ["target", "service", "instance"], min_length=1,
        description="the labels looked at, in order, for the name of an inventory target")
    playbooks: dict[str, str] = Field(
        default_factory=lambda: {"docker": "container-triage",
                                 "kubernetes": "k8s-workload-triage",
                                 "postgres": "postgres-health", "ssh": "host-health"},
        description="the target's kind (a service's runtime) -> its triage playbook")
    severity: Severity | None = None


class SlackApp(_Strict):
    """A Slack app: approvals from its buttons (Slack signs each click with the signing
    secret) and messages through its Web API with the bot token."""

    signing_secret_env: str = Field(description="env var holding the app's signing secret")
    bot_token_env: str = Field(description="env var holding the bot token (xoxb-...)")
    api_url: str = Field("https://slack.com/api", description="Slack's Web API")
    timeout: Duration = 5.0

    @model_validator(mode="after")
    def _http(self) -> SlackApp:
        if not self.api_url.startswith(("http://", "https://")):
            raise ValueError(f"api_url {self.api_url!r}: expected http:// or https://")
        return self


class DaemonConfig(_Strict):
    listen: Listen = Listen()
    auth: Auth = Auth()
    metrics: MetricsAccess = MetricsAccess()
    body_limit: int = Field(1_048_576, ge=1024, description="bytes per request")
    max_alerts: int = Field(1000, ge=1, description="alerts per request; more is a 413")
    max_concurrent_runs: int = Field(4, ge=1, le=64)
    dedup_window: Duration = Field(600.0, description="alerts of a group within it join a run")
    approval_ttl: Duration | None = Field(3600.0, description="an older approval is void")
    four_eyes: bool = Field(False, description="the approver may not be who requested the run")
    approvers: dict[str, Approver] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    public_url: str | None = Field(None, description="where people reach the daemon, e.g. "
                                   "https://runbook.example.com: every message links to "
                                   "the run's page under it")
    journal: JournalAt | None = Field(None, description="PostgreSQL for several replicas; "
                                      "default: SQLite under RUNBOOK_HOME (or "
                                      "RUNBOOK_JOURNAL_DSN)")
    triage: Triage | None = Field(None, description="alerts no route takes: the triage "
                                                    "playbook of the target they name")
    notify: list[Notify] = Field(default_factory=list)
    inventory: list[str] = Field(default_factory=list, description="default: as the CLI")
    playbooks: list[str] = Field(default_factory=list, description="default: as the CLI")
    slack_app: SlackApp | None = None
    slack_users: dict[str, str] = Field(default_factory=dict,
                                        description="Slack user id -> approver name")
    escalate_after: dict[str, Duration] = Field(
        default_factory=lambda: {"P0": 300.0, "P1": 1800.0},
        description="severity -> how long a proposed remedy may wait before escalating")
    escalation_check: Duration = Field(15.0, description="how often waiting is looked at")

    @model_validator(mode="after")
    def _checks(self) -> DaemonConfig:
        if self.auth.mode == "none" and not _loopback(self.listen.host):
            raise ValueError("auth mode none is allowed only when listening on loopback")
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ValueError(f"public_url {self.public_url!r}: expected http:// or https://")
        if self.auth.mode == "bearer" and not self.auth.token_env:
            raise ValueError("auth mode bearer needs token_env")
        if self.auth.mode == "hmac" and not self.auth.secret_env:
            raise ValueError("auth mode hmac needs secret_env")
        names = [r.name for r in self.routes]
        if len(names) != len(set(names)):
            raise ValueError("route names must be unique")
        for route in self.routes:
            _ = route.matchers  # a bad matcher fails here, at load time
            if self.slack_app is None and any(t.kind == "slack" for t in route.escalation):
                raise ValueError(f"route {route.name}: a slack escalation needs slack_app")
        for user in self.slack_users:
            if not re.fullmatch(r"[UW][A-Z0-9]{2,}", user):
                raise ValueError(f"slack_users: {user!r} is not a Slack user id (U...)")
        return self

    def inventory_paths(self) -> list[Path]:
        from ..paths import inventory_paths

        return [Path(p) for p in self.inventory] or inventory_paths()

    def playbook_dirs(self) -> list[Path]:
        from ..paths import playbook_dirs

        return [Path(p) for p in self.playbooks] or playbook_dirs()

    def policy(self) -> Policy:
        """The approval settings here and the policy file's, the stricter of both; the file
        is read at each call."""
        from ..policy import Policy, load

        configured = Policy(self.approval_ttl, self.four_eyes, source="the daemon's config")
        return configured.stricter(load(None, self.inventory_paths()))


# labels.NAME (not a method call) or labels["NAME"]
_LABEL_USE = re.compile(r"""\blabels\s*(?:\.\s*([A-Za-z_]\w*)\b(?!\s*\()"""
                        r"""|\[\s*['"]([^'"]+)['"]\s*\])""")


def _labels_used(template: str) -> tuple[set[str], bool]:
    """The labels a template reads by name, and whether it reads alert data some other way
    (a computed label name, annotations) that no matcher can constrain."""
    named = {a or b for a, b in _LABEL_USE.findall(template)}
    other = bool(re.search(r"\bannotations\b", _LABEL_USE.sub("", template))
                 or re.search(r"\blabels\b", _LABEL_USE.sub("", template)))
    return named, other


def warnings(config: DaemonConfig) -> list[str]:
    """What `runbook daemon --check` (and the daemon at start) warns about: a config that
    is valid but lets an alert choose what runbook acts on, or misses a secret."""
    found: list[str] = []
    for route in config.routes:
        pinned = {m.label for m in route.matchers if m.op in {"=", "=~"}}
        for role, spec in route.targets.items():
            if not isinstance(spec, str):
                continue  # an allow-list or a match constrains it
            named, other = _labels_used(spec)
            loose = sorted(named - pinned) + (["annotations or a computed label"] if other
                                              else [])
            if loose:
                found.append(
                    f"route {route.name}: target {role} comes from {', '.join(loose)}, which "
                    f"nothing constrains: any alert that matches can bind any target; use "
                    f"targets: {{{role}: {{from: ..., allow: [names]}}}} or a matcher on the "
                    "label")
    if config.slack_app is not None and not config.slack_users:
        found.append("slack_app without slack_users: every click in Slack is refused (no Slack "
                     "user is an approver)")
    if config.metrics.auth == "none" and not _loopback(config.listen.host):
        found.append("metrics: auth none off loopback: anyone who can connect reads "
                     "playbook names, step kinds and run counts")
    envs = [config.auth.token_env, config.auth.secret_env, config.metrics.token_env,
            *(a.token_env for a in config.approvers.values()),
            *(env for n in config.notify for env in n.secret_envs()),
            *((config.slack_app.signing_secret_env, config.slack_app.bot_token_env)
              if config.slack_app else ()),
            *(e for r in config.routes for t in r.escalation
              for e in (t.url_env, t.routing_key_env))]
    found += [f"{name} is not set in this environment" for name in envs
              if name and not os.environ.get(name)]
    return found


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
