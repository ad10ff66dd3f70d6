"""The comms of one process, put together from the config: the CLI's from notify.yaml,
the daemon's from its config's `notify:` sinks (with notify.yaml's templates and wording
when there is one in the config dirs)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..journal import Journal
from .announce import RunAnnouncer
from .config import NotifyFile, Settings, locate, read, settings_of
from .delivery import Sleep
from .notifier import Notifier
from .templates import Template, load, shipped


@dataclass(frozen=True)
class Comms:
    """notify.yaml as found (or none): the sinks, the wording, the templates."""

    path: Path | None
    parsed: NotifyFile
    settings: Settings
    templates: Mapping[str, Template] = field(default_factory=dict)

    @property
    def on_by_default(self) -> bool:
        return self.parsed.notify

    def announcer(self, journal: Journal, *, sleep: Sleep | None = None,
                  always: bool = False) -> RunAnnouncer:
        notifier = (Notifier(self.parsed.sinks, journal) if sleep is None
                    else Notifier(self.parsed.sinks, journal, sleep=sleep))
        return RunAnnouncer(notifier, self.templates, self.settings, always=always)


def for_cli(explicit: Path | None, inventory_paths: Iterable[Path]) -> Comms:
    """notify.yaml (RUNBOOK_NOTIFY, beside the inventory, the config dirs) and its
    templates, each checked: PlaybookError (file:line:col) when one is wrong."""
    path = locate(explicit, inventory_paths)
    parsed = read(path) if path is not None else NotifyFile()
    settings = settings_of(path, parsed)
    return Comms(path, parsed, settings, load(settings.template_dir))


def daemon_templates() -> tuple[Mapping[str, Template], Settings]:
    """The daemon's templates and wording: notify.yaml's from the config dirs if it is
    there and sound; else the shipped ones (a broken file must not silence the daemon)."""
    from ..errors import RunbookError

    try:
        comms = for_cli(None, [])
    except (RunbookError, OSError):
        return shipped(), Settings()
    return comms.templates, comms.settings
