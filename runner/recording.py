"""What a run recorded, as replay reads it: the playbook text it ran, the targets and params
it was planned with, each step's outcome, its findings, the remedies it proposed (with the
identity their target resolved to) and its verify results.

A recording comes from the journal (a run id), from a run directory (`events.jsonl`), or
from a fixture file (`runner.fixtures`). Everything in it was scrubbed of secrets when the
journal wrote it; nothing here reads an inventory or opens a connection.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .vocabulary import EventKind


@dataclass(frozen=True)
class RecordedStep:
    """One step's last recorded outcome."""

    status: str
    result: Any = None
    error: str | None = None


@dataclass(frozen=True)
class RecordedRemedy:
    """A remedy as the run left it: proposed (with what it would act on) or held back."""

    status: str
    kind: str = ""
    target: str = ""
    proposed: bool = False
    args: dict[str, Any] = field(default_factory=dict)
    approved_by: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Recording:
    run_id: str
    playbook_path: str
    playbook_text: str | None  # None: the run directory alone does not hold it
    targets: dict[str, dict[str, str]]  # role -> {name, kind}
    params: dict[str, Any]
    steps: dict[str, RecordedStep] = field(default_factory=dict)
    findings: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> status, ...
    remedies: dict[str, RecordedRemedy] = field(default_factory=dict)
    verify: dict[str, RecordedStep] = field(default_factory=dict)
    identities: dict[str, dict[str, str]] = field(default_factory=dict)  # target -> identity


def from_events(run_id: str, source: Mapping[str, Any],
                events: Iterable[Mapping[str, Any]]) -> Recording:
    """Fold a run's events (as events.jsonl holds them: type and data in one object)."""
    targets: dict[str, dict[str, str]] = {}
    params: dict[str, Any] = dict(source.get("params") or {})
    steps: dict[str, RecordedStep] = {}
    findings: dict[str, dict[str, Any]] = {}
    remedies: dict[str, RecordedRemedy] = {}
    verify: dict[str, RecordedStep] = {}
    identities: dict[str, dict[str, str]] = {}
    for event in events:
        kind, d = event.get("type"), event
        if kind == EventKind.RUN_STARTED:
            targets = {role: {"name": t["name"], "kind": t["kind"]}
                       for role, t in (d.get("targets") or {}).items()}
            params = dict(d.get("params") or params)
        elif kind == EventKind.STEP_FINISHED:
            steps[d["step"]] = RecordedStep(d["status"], d.get("result"), d.get("error"))
        elif kind == EventKind.FINDING:
            findings[d["finding"]] = {"status": d["status"], "severity": d.get("severity"),
                                      "message": d.get("message")}
        elif kind == EventKind.REMEDY_PROPOSED:
            remedies[d["remedy"]] = RecordedRemedy("proposed", d["kind"], d["target"], True,
                                                   dict(d.get("args") or {}))
            if d.get("identity"):
                identities[d["target"]] = {str(k): str(v) for k, v in d["identity"].items()}
        elif kind == EventKind.REMEDY_SKIPPED:
            was = remedies.get(d["remedy"])
            remedies[d["remedy"]] = RecordedRemedy(
                d.get("status", "skipped"), d.get("kind") or (was.kind if was else ""),
                d.get("target") or (was.target if was else ""), bool(was and was.proposed),
                was.args if was else {}, reason=d.get("reason"))
        elif kind == EventKind.APPROVAL and d["remedy"] in remedies:
            was = remedies[d["remedy"]]
            if d.get("decision") == "approved":
                remedies[d["remedy"]] = RecordedRemedy(was.status, was.kind, was.target,
                                                       was.proposed, was.args, d.get("by"))
        elif kind in {EventKind.REMEDY_FINISHED, EventKind.REMEDY_INTERRUPTED} \
                and d["remedy"] in remedies:
            was = remedies[d["remedy"]]
            remedies[d["remedy"]] = RecordedRemedy(d.get("status", "interrupted"),
                                                   was.kind, was.target, was.proposed, was.args,
                                                   was.approved_by, was.reason)
        elif kind == EventKind.VERIFY_FINISHED:
            verify[d["verify"]] = RecordedStep(d["status"], d.get("result"), d.get("error"))
    return Recording(run_id, str(source.get("playbook_path") or ""), source.get("playbook_text"),
                     targets, params, steps, findings, remedies, verify, identities)


def from_journal(home: Path, run_id: str) -> Recording:
    """A run of the journal in `home`, by id."""
    from .journal import Journal

    with Journal(home) as journal:
        source = journal.get_run(run_id).source
        events = [e.to_json() for e in journal.events(run_id)]
    return from_events(run_id, source, events)


def from_run_dir(path: Path) -> Recording:
    """A run directory (runs/<id>/ with events.jsonl). Its playbook text comes from the
    journal beside it when there is one (RUNBOOK_HOME/runs/<id>); a copied directory needs
    the playbook named."""
    events_file = path / "events.jsonl"
    if not events_file.is_file():
        raise UsageError(f"{path} is not a run directory: it has no events.jsonl")
    home = path.resolve().parent.parent
    if path.resolve().parent.name == "runs" and (home / "journal.sqlite3").is_file():
        return from_journal(home, path.resolve().name)
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    return from_events(path.resolve().name, {}, events)


def load(run: str, home: Path) -> Recording:
    """RUN_ID (in the journal at `home`) or RUN_DIR."""
    candidate = Path(run)
    if candidate.is_dir():
        return from_run_dir(candidate)
    from .errors import JournalError

    if not (home / "journal.sqlite3").is_file():
        raise UsageError(f"no run {run}: neither a run directory nor a run of the journal "
                         f"in {home}")
    try:
        return from_journal(home, run)
    except JournalError as exc:
        raise UsageError(f"no run {run}: {exc}") from None
