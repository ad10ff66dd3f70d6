"""Where notifications go, configured once: `notify.yaml` for the CLI (looked up like the
approval policy: RUNBOOK_NOTIFY, beside the inventory, then ~/.config/runbook and
/etc/runbook), and the daemon config's `notify:` list, which holds the same sinks.

Secrets (a Slack webhook URL, a bot token) come only from environment variables the file
names; a file that spells a Slack webhook URL out is refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import PlaybookError, UsageError
from ..model import Duration

FILE_NAME = "notify.yaml"
TEMPLATES_DIR = "notify-templates"  # beside notify.yaml: a team's templates
SLACK_API = "https://slack.com/api/"
# Mentions a sink may add to an INCIDENT ALERT: @here, @channel, a user, a user group.
MENTION = re.compile(r"^<(!here|!channel|@[UW][A-Z0-9]{2,}|!subteam\^[A-Z0-9]{2,})>$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sink(_Strict):
    """One place messages go: a Slack incoming webhook (`url_env`), Slack's Web API with a
    bot token (`bot_token_env` + `channel`: UPDATE and RESOLVED reply in the incident's
    thread), or a generic JSON webhook."""

    kind: Literal["slack", "webhook"]
    name: str | None = Field(None, description="how the journal names it (default: derived)")
    url: str | None = None
    url_env: str | None = Field(None, description="env var holding the URL (Slack's is a secret)")
    bot_token_env: str | None = Field(None, description="slack: env var holding a bot token")
    channel: str | None = Field(None, description="slack with a bot token: channel id or #name")
    api_url: str = Field(SLACK_API, description="Slack's Web API (a stand-in's in tests)")
    audience: Literal["team", "customer"] = Field(
        "team", description="team: ALERT/UPDATE/RESOLVED; customer: the customer update only")
    mentions: list[str] = Field(default_factory=list,
                                description="slack: who an INCIDENT ALERT pings, e.g. <!here>")
    timeout: Duration = 5.0
    retries: int = Field(3, ge=0, le=10)
    max_retry_after: Duration = Field(30.0, description="a longer Retry-After: retried later")

    @model_validator(mode="after")
    def _where(self) -> Sink:
        bot = self.bot_token_env is not None or self.channel is not None
        if bot:
            if self.kind != "slack":
                raise ValueError("bot_token_env and channel are for kind slack")
            if not (self.bot_token_env and self.channel):
                raise ValueError("a Slack bot needs bot_token_env and channel (both)")
            if self.url or self.url_env:
                raise ValueError("a Slack sink takes url/url_env or bot_token_env, not both")
        elif bool(self.url) == bool(self.url_env):
            raise ValueError("a notifier needs url or url_env (one of them)")
        for url in (self.url, self.api_url):
            if url and not url.startswith(("http://", "https://")):
                raise ValueError(f"url {url!r}: expected http:// or https://")
        bad = [m for m in self.mentions if not MENTION.match(m)]
        if bad:
            raise ValueError(f"mentions {bad}: expected <!here>, <!channel>, <@U...> or "
                             "<!subteam^S...>")
        if self.mentions and self.kind != "slack":
            raise ValueError("mentions are for kind slack")
        return self

    @property
    def bot(self) -> bool:
        return self.bot_token_env is not None

    def label(self) -> str:
        """How the journal names this sink: never its URL (a secret)."""
        where = self.channel or self.url_env or ""
        return self.name or (f"{self.kind}:{where}" if where else self.kind)

    def resolved_url(self) -> str:
        url = os.environ.get(self.url_env, "") if self.url_env else self.url or ""
        if not url:
            raise UsageError(f"notify {self.kind}: no URL ({self.url_env or 'url'} is empty)")
        return url

    def token(self) -> str:
        token = os.environ.get(self.bot_token_env or "", "")
        if not token:
            raise UsageError(f"notify {self.label()}: no bot token ({self.bot_token_env} is "
                             "empty)")
        return token

    def secret_envs(self) -> list[str]:
        return [e for e in (self.url_env, self.bot_token_env) if e]


class NotifyFile(_Strict):
    """notify.yaml."""

    notify: bool = Field(False, description="`runbook run` notifies without --notify")
    sinks: list[Sink] = Field(default_factory=list)
    responding: str | None = Field(None, description="who responds, e.g. 'on-call: db team'")
    service: str | None = Field(None, description="the service's name for customers")
    review_after: Duration = Field(48 * 3600.0, description="post-incident review due after")
    templates: str | None = Field(None, description=f"folder of templates (default "
                                                    f"{TEMPLATES_DIR}/ beside this file)")

    @model_validator(mode="after")
    def _checks(self) -> NotifyFile:
        labels = [s.label() for s in self.sinks]
        doubled = sorted({label for label in labels if labels.count(label) > 1})
        if doubled:
            raise ValueError(f"sinks named alike ({', '.join(doubled)}): give each a name")
        return self


class Settings(BaseModel):
    """What the messages need from the config besides the sinks (the daemon's defaults when
    it has no notify.yaml)."""

    model_config = ConfigDict(frozen=True)
    responding: str | None = None
    service: str | None = None
    review_after: float = 48 * 3600.0
    template_dir: Path | None = None


def locate(explicit: Path | None, inventory_paths: Iterable[Path]) -> Path | None:
    """The notify.yaml that applies, or None."""
    if explicit is None and (named := os.environ.get("RUNBOOK_NOTIFY")):
        explicit = Path(named).expanduser()
    if explicit is not None:
        if not explicit.is_file():
            raise UsageError(f"no notify file at {explicit}")
        return explicit
    from ..paths import config_dirs

    beside = [(p if p.is_dir() else p.parent) / FILE_NAME for p in inventory_paths]
    return next((c for c in [*beside, *(d / FILE_NAME for d in config_dirs())]
                 if c.is_file()), None)


def read(path: Path) -> NotifyFile:
    """One notify.yaml; PlaybookError (file:line:col) when it is wrong."""
    from .. import yamlsource
    from ..loader import problem

    doc, problems = yamlsource.read(path)
    if problems:
        raise PlaybookError(problems)
    try:
        parsed = NotifyFile.model_validate(doc.data if doc.data is not None else {})
    except ValidationError as exc:
        raise PlaybookError([problem(doc, error) for error in exc.errors()]) from None
    located = [doc.problem(("sinks", i, "url"), f"sinks.{i}.url: a Slack webhook URL is a "
                           "secret, never written in a file; name the environment variable "
                           "holding it with url_env")
               for i, sink in enumerate(parsed.sinks) if sink.kind == "slack" and sink.url]
    if parsed.templates and not (path.parent / parsed.templates).is_dir():
        located.append(doc.problem(("templates",), f"templates: no folder "
                                   f"{path.parent / parsed.templates}"))
    if located:
        raise PlaybookError(located)
    return parsed


def settings_of(path: Path | None, parsed: NotifyFile | None) -> Settings:
    if path is None or parsed is None:
        return Settings()
    folder = path.parent / (parsed.templates or TEMPLATES_DIR)
    return Settings(responding=parsed.responding, service=parsed.service,
                    review_after=parsed.review_after,
                    template_dir=folder if (parsed.templates or folder.is_dir()) else None)
