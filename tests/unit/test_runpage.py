"""The run page's HTML (runner/runpage.py): findings first with hints, what could not be
checked, the chart inline, each step collapsible, remedies with their exact action, target
identity and fingerprint, the timeline, the alert's links; forms only for a signed-in
approver; no secret and no markup from the data; a page in progress reloads itself; the runs
list puts runs awaiting approval first; `runbook report --format html` writes the page."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from diagnostics import trend
from runner import runpage
from runner.cli import main
from runner.journal import Journal, RunRow
from runner.redact import SECRETS
from runner.state import Event, RunState
from runner.vocabulary import EventKind

MIB = 1 << 20
AT = "2026-12-02T03:00:00+00:00"
FINGERPRINT = "ab" * 32


def events(*, finished: bool = True) -> list[tuple[str, dict[str, Any]]]:
    samples = [(float(t), float(100 * MIB + 2 * MIB * t)) for t in range(31)]
    out: list[tuple[str, dict[str, Any]]] = [
        (EventKind.RUN_STARTED, {"playbook": "memory-leak", "summary": "memory grows",
                                 "severity": "P2", "trigger": "alert", "requested_by":
                                 "alert:mem", "targets": {"api": {"name": "web",
                                                                  "kind": "service"}},
                                 "params": {}}),
        (EventKind.STEP_FINISHED, {"step": "memory", "kind": "service.memory", "target": "web",
                                   "status": "ok", "duration_ms": 30000,
                                   "result": trend.summary(samples, 256 * MIB)}),
        (EventKind.STEP_FINISHED, {"step": "logs", "kind": "service.logs", "target": "web",
                                   "status": "failed", "duration_ms": 5,
                                   "error": "cannot read logs <b>now</b>"}),
        (EventKind.FINDING, {"finding": "memory-growing", "status": "fired", "severity": "P2",
                             "message": "memory grows 120 MiB/min <script>alert(1)</script>",
                             "hint": "restart buys time"}),
        (EventKind.REMEDY_PROPOSED, {"remedy": "rolling-restart", "kind": "service.restart",
                                     "target": "web", "args": {"max": 1},
                                     "fingerprint": FINGERPRINT, "explain": "restart web",
                                     "identity": {"container": "c0ffee", "engine": "e1"}}),
    ]
    if finished:
        out.append((EventKind.RUN_FINISHED, {"status": "awaiting_approval"}))
    return out


def state_of(items: list[tuple[str, dict[str, Any]]]) -> RunState:
    return RunState.fold("r1", [Event(i, "r1", AT, kind, data)
                                for i, (kind, data) in enumerate(items, 1)])


class Tags(HTMLParser):
    """Every start tag with its attributes (the page must parse as HTML)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def named(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag
                and all(a.get(k) == v for k, v in attrs.items())]


def test_the_page_leads_with_findings_and_shows_everything_else_after() -> None:
    page = runpage.run_page(state_of(events()), base="",
                            links=[{"text": "Source of MemoryLeak", "url": "http://prom/g"}])
    order = [page.index(marker) for marker in (
        'id="findings"', "memory-growing", "hint: restart buys time", 'id="not-checked"',
        'id="charts"', 'id="remedies"', 'id="steps"', 'id="links"', 'id="timeline"')]
    assert order == sorted(order)
    assert "<svg" in page and 'class="limit"' in page  # the chart is inline
    tags = Tags(page)
    assert len(tags.named("details", **{"class": "step"})) == 2
    # a failed step is unfolded; the one that worked is folded
    assert ["open" in d for d in tags.named("details", **{"class": "step"})] == [False, True]
    assert FINGERPRINT in page and "c0ffee" in page and "&quot;max&quot;: 1" in page
    assert tags.named("a", href="http://prom/g")
    assert "memory-leak" in page and "P2" in page and "awaiting_approval" in page


def test_text_from_the_run_is_escaped_never_markup() -> None:
    page = runpage.run_page(state_of(events()), base="")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>now</b>" not in page
    tags = Tags(page)
    assert not tags.named("script")


def test_no_secret_reaches_the_page() -> None:
    SECRETS.register("hunter2-very-secret")
    items = events()
    items[2][1]["error"] = ("could not connect to postgresql://app:hunter2-very-secret@db:5432/x"
                            " (password=hunter2-very-secret)")
    page = runpage.run_page(state_of(items), base="")
    assert "hunter2-very-secret" not in page
    assert "postgresql://app:***@db" in page


def test_forms_only_for_a_signed_in_approver() -> None:
    state = state_of(events())
    anonymous = Tags(runpage.run_page(state, base="", viewer=runpage.Viewer(
        sign_in="/signin?next=/runs/r1")))
    assert not anonymous.named("form", **{"class": "decide"})
    assert anonymous.named("a", href="/signin?next=/runs/r1")
    signed = Tags(runpage.run_page(state, base="", viewer=runpage.Viewer(
        approver="alice", csrf="tok-123", sign_in="/signin")))
    [form] = signed.named("form", **{"class": "decide"})
    assert form["method"] == "post" and form["action"] == "/runs/r1/decide"
    hidden = {a["name"]: a["value"] for a in signed.named("input", type="hidden")}
    assert hidden == {"csrf": "tok-123", "remedy": "rolling-restart",
                      "fingerprint": FINGERPRINT}
    assert {b["value"] for b in signed.named("button", name="decision")} == {"approve",
                                                                             "decline"}


def test_no_decision_form_once_the_run_no_longer_waits() -> None:
    items = events()
    items[-1] = (EventKind.RUN_FINISHED, {"status": "completed"})
    page = Tags(runpage.run_page(state_of(items), base="",
                                 viewer=runpage.Viewer(approver="alice", csrf="x")))
    assert not page.named("form", **{"class": "decide"})


def test_the_file_from_the_cli_has_no_forms_and_says_how_to_approve() -> None:
    page = runpage.run_page(state_of(events()))
    assert not Tags(page).named("form")
    assert "runbook approve r1 rolling-restart" in page


def test_a_run_in_progress_reloads_and_a_finished_one_does_not() -> None:
    running = Tags(runpage.run_page(state_of(events(finished=False)), base=""))
    assert running.named("meta", **{"http-equiv": "refresh"})
    waiting = Tags(runpage.run_page(state_of(events()), base=""))
    assert not waiting.named("meta", **{"http-equiv": "refresh"})
    approved = events() + [(EventKind.APPROVAL, {"remedy": "rolling-restart",
                                                 "decision": "approved", "by": "alice",
                                                 "how": "web"})]
    assert Tags(runpage.run_page(state_of(approved), base="")).named(
        "meta", **{"http-equiv": "refresh"})  # the remedy is about to run


def test_only_web_links_become_links() -> None:
    page = Tags(runpage.run_page(state_of(events()), base="", links=[
        {"text": "evil", "url": "javascript:alert(1)"}, {"text": "ok", "url": "https://am/x"}]))
    hrefs = [a.get("href") for a in page.named("a")]
    assert "https://am/x" in hrefs and not any(h and "javascript" in h for h in hrefs)


def test_the_runs_list_puts_runs_awaiting_approval_first_and_filters() -> None:
    def row(run_id: str, status: str) -> RunRow:
        return RunRow(run_id, "memory-leak", status, "P2", AT, AT,
                      {"targets": {"api": "web"}})

    page = runpage.runs_page([row("a", "completed"), row("b", "awaiting_approval"),
                              row("c", "failed")], statuses=["awaiting_approval"])
    assert re.findall(r'href="/runs/(\w)"', page) == ["b", "a", "c"]
    assert 'href="/runs?status=awaiting_approval"' in page and "api=web" in page
    empty = runpage.runs_page([], status="failed")
    assert "No runs with status failed" in empty


@pytest.mark.parametrize("width", [375])
def test_the_page_declares_a_phone_viewport(width: int) -> None:
    page = runpage.run_page(state_of(events()), base="")
    assert Tags(page).named("meta", name="viewport")
    assert "@media (max-width:40em)" in page and "overflow-wrap:anywhere" in page


def test_report_format_html_writes_the_page(tmp_path: Path, capsys: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(tmp_path)
    run_id = "r-html"
    journal.create_run(run_id, "memory-leak", "P2", {"targets": {}})
    for kind, data in events():
        journal.append(run_id, kind, data)
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path))
    assert main(["report", run_id, "--format", "html"]) == 0
    page = capsys.readouterr().out
    assert page.startswith("<!doctype html>") and "memory-growing" in page
    assert "<svg" in page and not Tags(page).named("form")


def test_the_severity_says_why_and_the_timeline_holds_alerts_and_notes() -> None:
    items = events() + [
        (EventKind.SEVERITY, {"level": "P1", "why": "rule: memory-growing on a payment API"}),
        (EventKind.NOTE, {"text": "customers see 502s <again>", "by": "carol"})]
    page = runpage.run_page(state_of(items), base="", alerts=[{
        "labels": {"alertname": "ApiMemoryLeak", "env": "prod"}, "status": "firing",
        "starts_at": "2026-12-02T02:59:00Z", "annotations": {"summary": "api leaks"},
        "source": "alertmanager"}])
    headline = page[:page.index('id="findings"')]
    assert "P1" in headline and "rule: memory-growing on a payment API" in headline
    rows = re.findall(r'<tr class="entry-(\w+)">', page)
    assert rows[0] == "alert" and "note" in rows and "severity" in rows
    assert "carol: note: customers see 502s &lt;again&gt;" in page
    assert "alert ApiMemoryLeak firing (env=prod): api leaks" in page
