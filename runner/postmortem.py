"""The post-incident draft: the review template, filled in from the journal and nothing else.

An incident is a run, or every run of one alert group (the daemon's `work.group_key`: a
recurrence after the group's window opens another run of the same incident). The draft has
a summary, the impact, the severity and why, the timeline, the milestones and their
durations, what was found, what was done and by whom, what was not checked, and action
items proposed from the findings' hints.

Every sentence is built from a journaled fact and cites it: the step's evidence file in the
run directory (`runs/<run>/evidence/<step>.json`, `remedy-<id>.json`) with its SHA-256,
and the journal event it states, as its line of `runs/<run>/events.jsonl` with that line's
SHA-256 (an alert, as its row of the journal's `alerts` table with the row's SHA-256). A
fact that cannot be cited is left out, never paraphrased: a reader can check every claim.

Milestones: detected = the first alert's startsAt, else the first run's start; diagnosed =
the first severity assessed; acknowledged = the first approval (or decline) or note;
mitigated = the first remedy that succeeded; resolved = the first run that ended completed
after its verify passed, else the daemon's "alerts resolved". TTD/TTA/TTM/TTR are measured
from detected (TTD: to diagnosed).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from . import expressions
from .durations import format_duration
from .journal import Journal
from .state import Event, RunState
from .timeline import Entry, entries, merge
from .vocabulary import EventKind, RemedyStatus, RunStatus, VerifyStatus

REVIEW_WITHIN = timedelta(hours=48)  # the seeds: a post-incident review within 48 hours


@dataclass(frozen=True)
class Cite:
    """Where a sentence's fact is, and the SHA-256 that lets a reader check it."""

    file: str  # relative to RUNBOOK_HOME
    sha256: str
    line: int | None = None  # a line of events.jsonl (its own SHA-256)
    row: int | None = None  # a row of a table of journal.sqlite3 (the alerts)

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"file": self.file, "sha256": self.sha256}
        if self.line is not None:
            found["line"] = self.line
        if self.row is not None:
            found["table"], found["row"] = "alerts", self.row
        return found


@dataclass
class Sentence:
    text: str
    cites: list[Cite] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "cites": [c.to_json() for c in self.cites]}


@dataclass
class Incident:
    """The runs of one incident, oldest first, and the alerts that started or joined them."""

    home: Path
    runs: list[RunState]
    sources: dict[str, dict[str, Any]]  # run id -> its journaled source (the playbook text)
    alerts: list[dict[str, Any]]  # the stored alert, with `row`, `received_at`, `sha256`
    group: str | None


def load(journal: Journal, run_id: str) -> Incident:
    """The incident `run_id` belongs to (raises JournalError for an unknown run)."""
    journal.get_run(run_id)
    run_ids, group = [run_id], None
    if _has_table(journal, "work"):
        rows = journal.read("SELECT group_key FROM work WHERE run_id = ? LIMIT 1", (run_id,))
        if rows:
            group = str(rows[0][0])
            found = journal.read("SELECT run_id FROM work WHERE group_key = ? AND run_id IS NOT "
                                 "NULL GROUP BY run_id ORDER BY min(id)", (group,))
            run_ids = [str(r[0]) for r in found] or run_ids
    for rid in run_ids:  # a run another replica drove: its directory, here, from the journal
        journal.export(rid)
    states = [journal.state(rid) for rid in run_ids]
    states.sort(key=lambda s: (s.started_at, s.run_id))
    sources = {s.run_id: journal.get_run(s.run_id).source for s in states}
    return Incident(journal.home, states, sources, _alerts(journal, run_ids), group)


def _has_table(journal: Journal, name: str) -> bool:
    return journal.has_table(name)


def _alerts(journal: Journal, run_ids: list[str]) -> list[dict[str, Any]]:
    if not _has_table(journal, "alerts") or not _has_table(journal, "work"):
        return []
    marks = ",".join("?" * len(run_ids))
    rows = journal.read("SELECT DISTINCT a.id, a.received_at, a.alert FROM alerts a JOIN work w "
                        f"ON w.id = a.work_id WHERE w.run_id IN ({marks}) ORDER BY a.id",
                        tuple(run_ids))
    return [{**json.loads(text), "row": row, "received_at": received,
             "sha256": hashlib.sha256(text.encode()).hexdigest()}
            for row, received, text in rows]


def alert_cite(alert: Mapping[str, Any]) -> Cite:
    return Cite("journal.sqlite3", str(alert["sha256"]), row=int(alert["row"]))


class _Citer:
    """Finds and hashes what a sentence rests on, once per file."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._lines: dict[str, dict[int, tuple[int, str]]] = {}
        self._files: dict[str, str | None] = {}

    def event(self, event: Event) -> list[Cite]:
        """The event's line of its run's events.jsonl (none if the line is not there)."""
        relative = f"runs/{event.run_id}/events.jsonl"
        if relative not in self._lines:
            self._lines[relative] = _index_lines(self.home / relative)
        found = self._lines[relative].get(event.seq)
        return [Cite(relative, found[1], line=found[0])] if found else []

    def file(self, run_id: str, name: str) -> list[Cite]:
        relative = f"runs/{run_id}/{name}"
        if relative not in self._files:
            path = self.home / relative
            self._files[relative] = (hashlib.sha256(path.read_bytes()).hexdigest()
                                     if path.is_file() else None)
        digest = self._files[relative]
        return [Cite(relative, digest)] if digest else []


def _index_lines(path: Path) -> dict[int, tuple[int, str]]:
    """seq -> (line number, SHA-256 of the line without its newline)."""
    found: dict[int, tuple[int, str]] = {}
    if not path.is_file():
        return found
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            seq = json.loads(raw).get("seq")
        except ValueError:
            continue
        if isinstance(seq, int):
            found[seq] = (number, hashlib.sha256(raw).hexdigest())
    return found


def _step_refs(source: Mapping[str, Any], section: str, ident: str) -> list[str]:
    """The steps a finding's (or a severity rule's) condition reads, from the playbook text
    the run started with."""
    import yaml

    try:
        book = yaml.safe_load(source.get("playbook_text") or "") or {}
        if section == "severity":
            spec = book.get("severity")
            rules = spec.get("rules", []) if isinstance(spec, dict) else []
            when = str(rules[int(ident) - 1].get("when", ""))
        else:
            when = next(str(f.get("when", "")) for f in book.get(section, [])
                        if f.get("id") == ident)
    except (yaml.YAMLError, StopIteration, AttributeError, IndexError, ValueError, TypeError):
        return []
    return sorted({name for space, name in expressions.references(when, template=False)
                   if space == "steps"})


def _first(states: Iterable[RunState], kinds: set[str], test: Any = None) -> Event | None:
    found = [e for s in states for e in s.timeline
             if e.type in kinds and (test is None or test(e))]
    return min(found, key=lambda e: e.at) if found else None


def _between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return round(delta.total_seconds(), 3)


def _utc(at: str) -> str:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).isoformat(timespec="milliseconds")


def draft(incident: Incident) -> dict[str, Any]:
    """The draft as a JSON document (`render_markdown` turns it into the template)."""
    cite = _Citer(incident.home)
    runs = incident.runs
    first, last = runs[0], runs[-1]

    def started(state: RunState) -> Event:
        return next(e for e in state.timeline if e.type == EventKind.RUN_STARTED)

    def events(state: RunState, kind: str) -> list[Event]:
        return [e for e in state.timeline if e.type == kind]

    summary: list[Sentence] = []
    impact: list[Sentence] = []
    severity: list[Sentence] = []
    found: list[Sentence] = []
    done: list[Sentence] = []
    gaps: list[Sentence] = []
    actions: list[Sentence] = []
    for state in runs:
        begun = started(state)
        targets = ", ".join(f"{role}={t['name']} ({t['kind']})"
                            for role, t in state.targets.items()) or "no target"
        summary.append(Sentence(
            f"Run {state.run_id} of {state.playbook} ({state.summary}) started at "
            f"{state.started_at} on {targets}, requested by {state.requested_by} "
            f"({state.trigger}).", cite.event(begun)))
        for ended in events(state, EventKind.RUN_FINISHED)[-1:]:
            summary.append(Sentence(f"Run {state.run_id} ended {ended.data.get('status')} at "
                                    f"{ended.at}.", cite.event(ended)))
        source = incident.sources.get(state.run_id, {})
        for event in events(state, EventKind.SEVERITY):
            d = event.data
            basis = cite.event(event)
            if d.get("rule"):
                for step in _step_refs(source, "severity", str(d["rule"])):
                    basis += cite.file(state.run_id, f"evidence/{step}.json")
            rule = f" (rule {d['rule']}: {d.get('when')})" if d.get("rule") else ""
            severity.append(Sentence(f"Run {state.run_id}: severity {d.get('level')}{rule}: "
                                     f"{d.get('why', '')}.", basis))
            for unjudged in d.get("unjudged", []):
                actions.append(Sentence(
                    f"Judge severity rule {unjudged['rule']} ({unjudged['level']}) of "
                    f"{state.playbook} by hand: it could not be evaluated "
                    f"({unjudged['reason']}).", cite.event(event)))
        fired_events = {e.data["finding"]: e for e in events(state, EventKind.FINDING)}
        for finding in state.fired():
            event = fired_events[finding.id]
            basis = cite.event(event)
            for step in _step_refs(source, "findings", finding.id):
                basis += cite.file(state.run_id, f"evidence/{step}.json")
            sentence = Sentence(f"[{finding.severity}] {finding.id}: {finding.message}", basis)
            found.append(sentence)
            if finding.severity in {"P0", "P1"}:
                impact.append(sentence)
            if finding.hint:
                actions.append(Sentence(f"{finding.hint} (from {finding.id}).",
                                        cite.event(event)))
        for event in state.timeline:
            d = event.data
            if event.type == EventKind.APPROVAL:
                done.append(Sentence(f"{d.get('by')} {d.get('decision')} {d.get('remedy')} at "
                                     f"{event.at} ({d.get('how')}).", cite.event(event)))
            elif event.type == EventKind.REMEDY_FINISHED:
                remedy = state.remedies.get(d["remedy"])
                who = f", approved by {remedy.approved_by}" if remedy and remedy.approved_by \
                    else ""
                what = f"{remedy.kind} on {remedy.target}" if remedy else d["remedy"]
                error = f": {d['error']}" if d.get("error") else ""
                done.append(Sentence(
                    f"Remedy {d['remedy']} ({what}{who}) {d.get('status')} at {event.at}{error}.",
                    cite.event(event)
                    + cite.file(state.run_id, f"evidence/remedy-{d['remedy']}.json")))
            elif event.type == EventKind.VERIFY_FINISHED:
                error = f": {d['error']}" if d.get("error") else ""
                done.append(Sentence(f"Verify {d.get('verify')} {d.get('status')} after "
                                     f"{d.get('checks', 0)} check(s) at {event.at}{error}.",
                                     cite.event(event)))
            elif event.type == EventKind.NOTE:
                done.append(Sentence(f"{d.get('by')} noted at {event.at}: {d.get('text')}",
                                     cite.event(event)))
        step_events = {e.data["step"]: e for e in events(state, EventKind.STEP_FINISHED)}
        for gap in state.could_not_check():
            about = step_events.get(gap["id"]) if gap["what"] == "step" else \
                fired_events.get(gap["id"])
            what = f"{gap['id']} ({gap['kind']} on {gap['target']})" if gap["what"] == "step" \
                else f"finding {gap['id']}"
            gaps.append(Sentence(f"Run {state.run_id}: {what} was not checked: {gap['reason']}.",
                                 cite.event(about) if about else []))
        for remedy in state.remedies.values():
            if remedy.status == RemedyStatus.PROPOSED:
                proposed = [e for e in events(state, EventKind.REMEDY_PROPOSED)
                            if e.data.get("remedy") == remedy.id][-1:]
                actions.append(Sentence(
                    f"Decide on remedy {remedy.id} ({remedy.kind} on {remedy.target}), still "
                    f"waiting for an approval in run {state.run_id}.",
                    cite.event(proposed[0]) if proposed else []))
    for alert in incident.alerts:
        name = (alert.get("labels") or {}).get("alertname", "alert")
        summary.insert(0, Sentence(f"Alert {name} ({alert.get('status')}) started at "
                                   f"{alert.get('starts_at') or '?'}; runbook received it at "
                                   f"{alert.get('received_at')}.", [alert_cite(alert)]))
    milestones = _milestones(incident, cite)
    timeline = merge(*(entries(s, incident.alerts if s is first else ()) for s in runs))
    verdict_title = last.severity if last.severity else "?"
    return {
        "title": f"Post-incident review: {first.playbook} ({verdict_title})",
        "incident": {"runs": [s.run_id for s in runs], "group": incident.group,
                     "playbooks": sorted({s.playbook for s in runs}),
                     "alerts": len(incident.alerts)},
        "severity": {"level": _worst([s.severity for s in runs]),
                     "why": [s.to_json() for s in severity]},
        "summary": [s.to_json() for s in summary],
        "impact": [s.to_json() for s in (impact or severity)],
        "timeline": [_timeline_entry(e, cite, runs) for e in timeline],
        "milestones": milestones,
        "found": [s.to_json() for s in found],
        "done": [s.to_json() for s in done],
        "not_checked": [s.to_json() for s in gaps],
        "action_items": [s.to_json() for s in actions],
    }


def _worst(levels: list[str]) -> str:
    from .severity import NONE, rank

    incident = [level for level in levels if rank(level) < 99]
    return min(incident, key=rank) if incident else (levels[-1] if levels else NONE)


def _timeline_entry(entry: Entry, cite: _Citer, runs: list[RunState]) -> dict[str, Any]:
    cites: list[Cite] = []
    if entry.seq is not None:
        event = next((e for s in runs if s.run_id == entry.run_id for e in s.timeline
                      if e.seq == entry.seq), None)
        cites = cite.event(event) if event else []
        if entry.evidence:
            cites += cite.file(entry.run_id, entry.evidence)
    return {**entry.to_json(), "cites": [c.to_json() for c in cites]}


def _milestones(incident: Incident, cite: _Citer) -> dict[str, Any]:
    runs = incident.runs
    marks: dict[str, tuple[str, list[Cite]] | None] = {}
    starts = [(_utc(str(a["starts_at"])), a) for a in incident.alerts if a.get("starts_at")]
    if starts:
        at, alert = min(starts, key=lambda pair: pair[0])
        marks["detected"] = (at, [alert_cite(alert)])
    else:
        begun = _first(runs, {EventKind.RUN_STARTED})
        marks["detected"] = (begun.at, cite.event(begun)) if begun else None

    def mark(event: Event | None) -> tuple[str, list[Cite]] | None:
        return (event.at, cite.event(event)) if event else None

    marks["diagnosed"] = mark(_first(runs, {EventKind.SEVERITY}))
    marks["acknowledged"] = mark(_first(runs, {EventKind.APPROVAL, EventKind.NOTE}))
    marks["mitigated"] = mark(_first(runs, {EventKind.REMEDY_FINISHED},
                                     lambda e: e.data.get("status") == RemedyStatus.SUCCEEDED))
    marks["resolved"] = mark(_resolved(runs))
    detected = marks["detected"][0] if marks["detected"] else None
    found: dict[str, Any] = {}
    for name, value in marks.items():
        found[name] = None if value is None else {
            "at": value[0], "cites": [c.to_json() for c in value[1]]}
    for label, name in (("ttd", "diagnosed"), ("tta", "acknowledged"), ("ttm", "mitigated"),
                        ("ttr", "resolved")):
        value = marks[name]
        found[f"{label}_s"] = _between(detected, value[0] if value else None)
    resolved = marks["resolved"]
    base = resolved[0] if resolved else (detected or "")
    found["review_by"] = ((datetime.fromisoformat(base) + REVIEW_WITHIN).isoformat(
        timespec="minutes") if base else None)
    return found


def _resolved(runs: list[RunState]) -> Event | None:
    """The first run that ended completed after every verify check of its round passed."""
    for state in runs:
        verdicts: list[str] = []
        for event in state.timeline:
            if event.type == EventKind.VERIFY_FINISHED:
                verdicts.append(event.data.get("status", ""))
            elif event.type == EventKind.RUN_FINISHED:
                if (event.data.get("status") == RunStatus.COMPLETED and verdicts
                        and all(v in {VerifyStatus.PASSED, VerifyStatus.SKIPPED}
                                for v in verdicts)
                        and VerifyStatus.PASSED in verdicts):
                    return event
                verdicts = []
    return _first(runs, {EventKind.ALERT_RESOLVED})


# Markdown


def render_markdown(doc: dict[str, Any]) -> str:
    """The review template; each sentence's evidence as [E1] ..., listed at the end."""
    refs: dict[tuple[Any, ...], int] = {}
    listed: list[dict[str, Any]] = []

    def marks(cites: list[dict[str, Any]]) -> str:
        numbers = []
        for c in cites:
            key = (c["file"], c.get("line"), c.get("row"), c["sha256"])
            if key not in refs:
                refs[key] = len(refs) + 1
                listed.append(c)
            numbers.append(f"[E{refs[key]}]")
        return (" " + " ".join(numbers)) if numbers else ""

    def section(title: str, sentences: list[dict[str, Any]], empty: str) -> list[str]:
        body = [f"- {s['text']}{marks(s['cites'])}" for s in sentences] or [f"- {empty}"]
        return ["", f"## {title}", "", *body]

    m, inc = doc["milestones"], doc["incident"]
    out = [f"# {doc['title']}", "",
           f"Runs: {', '.join(f'`{r}`' for r in inc['runs'])}"
           + (f" (alert group `{inc['group']}`, {inc['alerts']} alert(s))" if inc["group"]
              else ""),
           "",
           "_A draft written by `runbook postmortem` from the journal: every sentence cites "
           "its evidence (listed at the end with its SHA-256). Add what people know._"]
    out += section("Summary", doc["summary"], "nothing journaled")
    out += section("Impact", doc["impact"], "no finding fired: no user impact was found")
    out += ["", f"## Severity: {doc['severity']['level']}", ""]
    out += [f"- {s['text']}{marks(s['cites'])}" for s in doc["severity"]["why"]] or \
        ["- not assessed (a run journaled before severity was)"]
    out += ["", "## Timeline", ""]
    for e in doc["timeline"]:
        who = f"{e['by']}: " if e["by"] and e["kind"] in {"note", "approval"} else ""
        out.append(f"- {e['at'][:23].replace('T', ' ')} **{e['kind']}** {who}{e['what']}"
                   f"{marks(e['cites'])}")
    out += ["", "## Detection and response", "", "| milestone | at | since detected |",
            "|---|---|---|"]
    since = {"diagnosed": "ttd_s", "acknowledged": "tta_s", "mitigated": "ttm_s",
             "resolved": "ttr_s"}
    for name in ("detected", "diagnosed", "acknowledged", "mitigated", "resolved"):
        value = m[name]
        seconds = m.get(since.get(name, ""), None)
        took = f"{since[name][:3].upper()} {format_duration(seconds)}" \
            if seconds is not None else ("" if name == "detected" else "-")
        at = f"{value['at']}{marks(value['cites'])}" if value else "not journaled"
        out.append(f"| {name} | {at} | {took} |")
    out += section("What was found", doc["found"], "no finding fired")
    out += section("What was done, and by whom", doc["done"], "nothing was done through runbook")
    out += section("What was not checked", doc["not_checked"], "every check ran")
    out += section("Action items (proposed)", doc["action_items"], "none proposed")
    if m.get("review_by"):
        basis = m["resolved"] or m["detected"] or {"cites": []}
        out += ["", f"Review by {m['review_by']} (within 48 hours of "
                f"{'the resolution' if m['resolved'] else 'the detection'})"
                f"{marks(basis['cites'])}."]
    out += ["", "## Evidence", "", "| ref | file | sha256 |", "|---|---|---|"]
    for number, c in enumerate(listed, start=1):
        where = c["file"] + (f" line {c['line']}" if c.get("line") else "") + (
            f" table {c['table']} row {c['row']}" if c.get("row") else "")
        out.append(f"| E{number} | `{where}` | `{c['sha256']}` |")
    return "\n".join(out) + "\n"
