"""`runbook note` and `runbook timeline`: a person's note is journaled with the OS user, and
the timeline merges steps, findings, severity, approvals, remedies, verify and notes in
the order they happened; the reports include it."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from runner.journal import Journal
from runner.vocabulary import EventKind
from tests.support.incidentkit import IncidentKit

FIXABLE = """\
steps:
  - {id: look, run: mem.sleep, with: {value: 3}}
findings:
  - {id: seen, when: steps.look.value == 3, say: three, severity: P1, hint: look closer}
remedies:
  - {id: fix, run: mem.act, with: {items: [1]}}
verify:
  - {id: fine, run: mem.sleep, within: 1s}
"""


@pytest.fixture
def kit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> IncidentKit:
    return IncidentKit(tmp_path, monkeypatch, capsys)


def test_a_note_is_journaled_with_who_and_the_os_user(kit: IncidentKit) -> None:
    run = kit.run(kit.playbook(FIXABLE))
    said = kit.json("note", run["run_id"], "customer says  checkout\nis slow", "--as", "alice",
                    code=0)
    assert said["by"] == "alice" and said["text"] == "customer says checkout is slow"
    assert f"(OS user {getpass.getuser()})" in said["how"]
    [note] = [e for e in Journal(kit.home).events(run["run_id"]) if e.type == EventKind.NOTE]
    assert note.data == {"by": "alice", "how": said["how"], "text": said["text"]}
    assert kit.cli("note", run["run_id"], "   ", code=2) == ""
    assert kit.cli("note", "no-such-run", "text", code=2) == ""


def test_the_timeline_is_in_the_order_things_happened(kit: IncidentKit) -> None:
    run = kit.run(kit.playbook(FIXABLE))
    run_id = run["run_id"]
    kit.cli("note", run_id, "paged the database team", "--as", "bob", code=0)
    kit.cli("approve", run_id, "fix", "--as", "alice", code=0)
    kit.cli("resume", run_id, "--inventory", str(kit.inventory), "--no-input")
    kit.cli("note", run_id, "checkout works again", "--as", "bob", code=0)
    found = kit.json("timeline", run_id, code=0)
    assert found["runs"] == [run_id]
    lines = found["timeline"]
    kinds = [e["kind"] for e in lines]
    order = ["run", "step", "finding", "severity", "remedy", "run", "note", "approval", "run",
             "remedy", "verify", "run", "note"]
    assert kinds == order, kinds
    assert [e["at"] for e in lines] == sorted(e["at"] for e in lines)
    seqs = [e["seq"] for e in lines]
    assert seqs == sorted(seqs)
    step = lines[1]
    assert step["evidence"] == "evidence/look.json"
    assert (kit.home / "runs" / run_id / step["evidence"]).is_file()
    assert lines[3]["what"].startswith("severity P1:")
    assert lines[5]["what"] == "run ended: awaiting_approval"
    assert lines[6]["by"] == "bob" and lines[6]["what"] == "note: paged the database team"
    assert lines[7]["by"] == "alice" and lines[7]["what"].startswith("approved fix")
    assert lines[9]["what"] == "remedy fix succeeded"
    text = kit.cli("timeline", run_id, code=0)
    assert "bob: note: checkout works again" in text
    verbose = kit.json("timeline", run_id, "--all", code=0)["timeline"]
    assert len(verbose) > len(lines)  # the starts of steps, remedy and verify too


def test_the_reports_include_the_timeline(kit: IncidentKit) -> None:
    run = kit.run(kit.playbook(FIXABLE))
    kit.cli("note", run["run_id"], "looking", "--as", "carol", code=0)
    text = kit.cli("report", run["run_id"])
    assert "\nTIMELINE\n" in text and "carol: note: looking" in text
    assert text.index("TIMELINE") < text.index("NEXT")
    markdown = kit.cli("report", run["run_id"], "--format", "markdown")
    timeline = markdown[markdown.index("## Timeline"):]
    assert "**note** carol: note: looking" in timeline
    assert "**severity** severity P1" in timeline
