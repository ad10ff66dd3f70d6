"""Who may approve what, for how long, and whether it takes two people.

One policy for every path that records an approval (`runbook approve`, `--approve`, the
terminal prompt, the daemon's HTTP approvals). It is read from `policy.yaml`:

    ttl: 1h              # an approval older than this is void when the remedy would run
    four_eyes: true      # two distinct people: the requester and another approver; an
                         # alert-started run (no person requested it) needs two approvers
    approvers:           # who may approve; the most specific key applies:
      "*": [alice, bob, carol]          # every playbook
      bad-deploy: [alice, bob]          # one playbook
      bad-deploy/roll-back: [alice]     # one remedy

Where: `--policy FILE`, else $RUNBOOK_POLICY, else `policy.yaml` beside the inventory, else
in the config dirs ($XDG_CONFIG_HOME/runbook, default ~/.config/runbook; then /etc/runbook).
A run records the policy it started under; later approvals of it apply the stricter of that
and the one in force then, so a run the daemon started with four-eyes keeps it when
approved from the command line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import PlaybookError, UsageError
from .model import Duration

FILE_NAME = "policy.yaml"
ANY = "*"


class _PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttl: Duration | None = Field(None, description="an approval older than this is void")
    four_eyes: bool = Field(False, description="two distinct people must agree")
    approvers: dict[str, list[str]] = Field(
        default_factory=dict, description="'*', PLAYBOOK or PLAYBOOK/REMEDY -> names")


@dataclass(frozen=True)
class Policy:
    ttl: float | None = None  # seconds; None: an approval stays good until it is used
    four_eyes: bool = False
    # One table per policy combined into this one; a person must be allowed by each.
    approvers: tuple[Mapping[str, tuple[str, ...]], ...] = ()
    source: str = ""  # where it was read, for messages

    def allowed(self, playbook: str, remedy: str) -> tuple[str, ...] | None:
        """The names that may approve this remedy; None when anyone may."""
        allowed: tuple[str, ...] | None = None
        for table in self.approvers:
            names = next((table[key] for key in (f"{playbook}/{remedy}", playbook, ANY)
                          if key in table), None)
            if names is not None:
                allowed = names if allowed is None else tuple(n for n in allowed if n in names)
        return allowed

    def stricter(self, other: Policy) -> Policy:
        """Both policies at once: the shorter TTL, four-eyes if either, approvers in both."""
        ttls = [t for t in (self.ttl, other.ttl) if t is not None]
        tables = self.approvers + tuple(t for t in other.approvers if t not in self.approvers)
        sources = " and ".join(s for s in (self.source, other.source) if s)
        return Policy(min(ttls) if ttls else None, self.four_eyes or other.four_eyes,
                      tables, sources)

    def rules(self) -> tuple[Any, ...]:
        """What the policy decides, without where it came from."""
        return (self.ttl, self.four_eyes, self.approvers)

    def to_json(self) -> dict[str, Any]:
        return {"ttl": self.ttl, "four_eyes": self.four_eyes,
                "approvers": [{k: list(v) for k, v in table.items()}
                              for table in self.approvers],
                "source": self.source}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Policy:
        if not data:
            return cls()
        tables = tuple({str(k): tuple(v) for k, v in table.items()}
                       for table in data.get("approvers") or [])
        return cls(data.get("ttl"), bool(data.get("four_eyes")), tables,
                   str(data.get("source", "")))


def read(path: Path) -> Policy:
    """One policy file; PlaybookError (file:line:col) when it is wrong."""
    from . import yamlsource
    from .loader import problem

    doc, problems = yamlsource.read(path)
    if problems:
        raise PlaybookError(problems)
    try:
        parsed = _PolicyFile.model_validate(doc.data if doc.data is not None else {})
    except ValidationError as exc:
        raise PlaybookError([problem(doc, error) for error in exc.errors()]) from None
    tables = ({k: tuple(v) for k, v in parsed.approvers.items()},) if parsed.approvers else ()
    return Policy(parsed.ttl, parsed.four_eyes, tables, str(path))


def locate(explicit: Path | None, inventory_paths: Iterable[Path]) -> Path | None:
    """The policy file that applies, or None (then no policy: anyone, once, no TTL)."""
    if explicit is None and (named := os.environ.get("RUNBOOK_POLICY")):
        explicit = Path(named).expanduser()
    if explicit is not None:
        if not explicit.is_file():
            raise UsageError(f"no policy file at {explicit}")
        return explicit
    from .paths import config_dirs

    beside = [(p if p.is_dir() else p.parent) / FILE_NAME for p in inventory_paths]
    for candidate in [*beside, *(folder / FILE_NAME for folder in config_dirs())]:
        if candidate.is_file():
            return candidate
    return None


def load(explicit: Path | None, inventory_paths: Iterable[Path]) -> Policy:
    found = locate(explicit, inventory_paths)
    return read(found) if found else Policy()
