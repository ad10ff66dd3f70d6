"""`runbook postmortem`: the review draft from the journal. Every cited SHA-256 is checked
against the file (or the events.jsonl line, or the alerts row) it names; the milestones'
durations are the differences of the journaled times; several runs of one alert group
make one draft."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from runner.daemon.inbox import SCHEMA
from runner.journal import Journal
from tests.support.incidentkit import IncidentKit

FIXABLE = """\
severity:
  rules:
    - {level: P0, when: "findings['seen'] and steps.look.value > 2", why: all endpoints failing}
steps:
  - {id: look, run: mem.sleep, with: {value: 3}}
  - {id: gone, run: mem.fail, with: {key: g, times: 9}}
findings:
  - {id: seen, when: steps.look.value == 3, say: three, hint: find who holds the pool}
  - {id: lost, when: steps.gone.ok, say: never}
remedies:
  - {id: fix, run: mem.act, with: {items: [1]}}
verify:
  - {id: fine, run: mem.sleep, within: 1s}
"""
SECTIONS = {"title", "incident", "severity", "summary", "impact", "timeline", "milestones",
            "found", "done", "not_checked", "action_items"}


@pytest.fixture
def kit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> IncidentKit:
    return IncidentKit(tmp_path, monkeypatch, capsys)


def handled(kit: IncidentKit) -> str:
    """An incident taken to the end: found, noted, approved, fixed, verified."""
    run_id = str(kit.run(kit.playbook(FIXABLE))["run_id"])
    kit.cli("note", run_id, "on it", "--as", "bob", code=0)
    kit.cli("approve", run_id, "fix", "--as", "alice", code=0)
    kit.cli("resume", run_id, "--inventory", str(kit.inventory), "--no-input")
    return run_id


def every_cite(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, dict):
        found = list(document.get("cites", []))
        return found + [c for k, v in document.items() if k != "cites" for c in every_cite(v)]
    if isinstance(document, list):
        return [c for item in document for c in every_cite(item)]
    return []


def check(home: Path, cite: dict[str, Any]) -> None:
    """Recompute the SHA-256 of what the cite names and compare."""
    path = home / cite["file"]
    if "row" in cite:
        [(text,)] = Journal(home).read("SELECT alert FROM alerts WHERE id = ?", (cite["row"],))
        data = text.encode()
    elif "line" in cite:
        data = path.read_bytes().splitlines()[cite["line"] - 1]
    else:
        data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == cite["sha256"], cite


def test_every_cited_sha256_matches_what_it_names(kit: IncidentKit) -> None:
    run_id = handled(kit)
    draft = kit.json("postmortem", run_id, code=0)
    cites = every_cite(draft)
    for cite in cites:
        check(kit.home, cite)
    files = {c["file"] for c in cites}
    assert f"runs/{run_id}/evidence/look.json" in files  # the finding's and the rule's step
    assert f"runs/{run_id}/evidence/remedy-fix.json" in files
    for section in ("summary", "found", "done", "not_checked", "action_items"):
        assert draft[section], section
        for sentence in draft[section]:
            assert sentence["cites"], (section, sentence)  # no sentence without evidence
    # A file edited after the fact no longer matches its cite.
    evidence = kit.home / "runs" / run_id / "evidence" / "look.json"
    evidence.write_text(evidence.read_text().replace("3", "4"))
    cite = next(c for c in cites if c["file"].endswith("look.json"))
    with pytest.raises(AssertionError):
        check(kit.home, cite)


def test_the_draft_says_what_was_found_done_and_not_checked(kit: IncidentKit) -> None:
    run_id = handled(kit)
    draft = kit.json("postmortem", run_id, code=0)
    assert set(draft) == SECTIONS
    assert draft["incident"] == {"runs": [run_id], "group": None, "playbooks": ["pb"],
                                 "alerts": 0}
    assert draft["severity"]["level"] == "P0"
    assert "all endpoints failing" in draft["severity"]["why"][0]["text"]
    assert [s["text"] for s in draft["found"]] == ["[P3] seen: three"]
    done = " ".join(s["text"] for s in draft["done"])
    assert "alice approved fix" in done and "bob noted" in done
    assert "Remedy fix (mem.act on box, approved by alice) succeeded" in done
    assert "Verify fine passed" in done
    assert any("gone" in s["text"] for s in draft["not_checked"])
    assert draft["action_items"][0]["text"] == "find who holds the pool (from seen)."
    markdown = kit.cli("postmortem", run_id, code=0)
    for heading in ("## Summary", "## Impact", "## Severity: P0", "## Timeline",
                    "## Detection and response", "## What was found",
                    "## What was done, and by whom", "## What was not checked",
                    "## Action items (proposed)", "## Evidence"):
        assert heading in markdown, heading
    assert "[E1]" in markdown and "| E1 | `runs/" in markdown


def test_the_durations_are_the_journaled_times_apart(kit: IncidentKit) -> None:
    run_id = handled(kit)
    m = kit.json("postmortem", run_id, code=0)["milestones"]
    events = Journal(kit.home).events(run_id)

    def at(kind: str, **match: str) -> str:
        return next(e.at for e in events
                    if e.type == kind and all(e.data.get(k) == v for k, v in match.items()))

    detected = at("run.started")
    assert m["detected"]["at"] == detected  # no alert: the run's start
    assert m["diagnosed"]["at"] == at("severity")
    assert m["acknowledged"]["at"] == at("note")  # the note came before the approval
    assert m["mitigated"]["at"] == at("remedy.finished", status="succeeded")
    assert m["resolved"]["at"] == [e.at for e in events if e.type == "run.finished"][-1]

    def apart(later: str) -> float:
        return round((datetime.fromisoformat(later)
                      - datetime.fromisoformat(detected)).total_seconds(), 3)

    for label, name in (("ttd", "diagnosed"), ("tta", "acknowledged"), ("ttm", "mitigated"),
                        ("ttr", "resolved")):
        assert m[f"{label}_s"] == apart(m[name]["at"]), label
    assert m["tta_s"] <= m["ttm_s"] <= m["ttr_s"]
    assert m["review_by"].startswith(m["resolved"]["at"][:4])


def test_a_run_that_waits_leaves_mitigated_and_resolved_open(kit: IncidentKit) -> None:
    run_id = str(kit.run(kit.playbook(FIXABLE))["run_id"])
    draft = kit.json("postmortem", run_id, code=0)
    m = draft["milestones"]
    assert m["mitigated"] is None and m["resolved"] is None and m["ttr_s"] is None
    assert any(s["text"].startswith("Decide on remedy fix") for s in draft["action_items"])


def test_several_runs_of_one_alert_group_make_one_draft(kit: IncidentKit) -> None:
    book = kit.playbook(FIXABLE)
    first = str(kit.run(book)["run_id"])
    again = str(kit.run(book)["run_id"])  # the recurrence
    other = str(kit.run(book)["run_id"])  # another incident
    journal = Journal(kit.home)
    journal.extend_schema(SCHEMA)  # the daemon's inbox, as the daemon creates it
    alert = {"source": "alertmanager", "status": "firing", "labels": {"alertname": "PoolFull",
             "db": "box"}, "annotations": {}, "starts_at": "2026-01-01T00:00:00Z",
             "ends_at": None, "fingerprint": "f1"}
    with journal.transaction() as db:
        for number, (run_id, group) in enumerate(((first, "g"), (again, "g"), (other, "h"))):
            work = db.execute(
                "INSERT INTO work (kind, route, group_key, playbook, targets, params, run_id, "
                "status, created_at, updated_at) VALUES ('run', 'r', ?, 'pb', '{}', '{}', ?, "
                "'done', '', '')", (group, run_id)).lastrowid
            db.execute("INSERT INTO alerts (received_at, source, status, fingerprint, alert, "
                       "outcome, route, group_key, work_id) VALUES (?, 'alertmanager', "
                       "'firing', 'f1', ?, 'started', 'r', ?, ?)",
                       (f"2026-01-01T00:00:0{number}.000+00:00", json.dumps(alert), group, work))
    draft = kit.json("postmortem", again, code=0)
    assert draft["incident"]["runs"] == [first, again] and draft["incident"]["group"] == "g"
    assert draft["incident"]["alerts"] == 2
    assert draft["milestones"]["detected"]["at"] == "2026-01-01T00:00:00.000+00:00"
    assert [c.get("table") for c in draft["milestones"]["detected"]["cites"]] == ["alerts"]
    assert {s["text"].split()[1] for s in draft["summary"] if s["text"].startswith("Run ")} \
        == {first, again}
    for cite in every_cite(draft):
        check(kit.home, cite)
    runs_in_timeline = {e["run_id"] for e in draft["timeline"]}
    assert runs_in_timeline == {first, again}
    assert kit.json("postmortem", first, code=0)["incident"]["runs"] == [first, again]
    timeline = kit.json("timeline", first, code=0)
    assert timeline["runs"] == [first, again] and timeline["timeline"][0]["kind"] == "alert"
