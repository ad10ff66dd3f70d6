"""Slack messages: what comes from alerts and systems posts as text, never as a mention or a
disguised link, and a message too big for Block Kit is cut rather than refused. Sent over
real HTTP to a stand-in that checks Slack's limits (tests/slackhook.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.daemon.config import Notify
from runner.daemon.notify import Notifier, fit, slack_blocks
from tests.daemonkit import daemon_in_thread, write_world
from tests.slackhook import SlackStandIn, slack_stand_in

CUT = " … (cut: the run has it all)"  # 28 characters
HOSTILE = "<!channel> see <http://evil.example|the dashboard> & <@U0123> <!here>"


@pytest.fixture
def hook() -> Iterator[SlackStandIn]:
    with slack_stand_in() as stand_in:
        yield stand_in


def message(**overrides: Any) -> dict[str, Any]:
    return {"kind": "incident", "title": f"INCIDENT ALERT [P2] db {HOSTILE}",
            "fields": {"Severity": "P2", "Symptoms": HOSTILE, HOSTILE: "label as key"},
            "found": [f"[P2] log line: {HOSTILE}"], "not_checked": [f"probe: {HOSTILE}"],
            "waiting": [f"fix: {HOSTILE}"], "next": "approve: POST /v1/runs/R/approvals",
            **overrides}


def post(hook: SlackStandIn, payload: dict[str, Any]) -> str | None:
    return Notifier._post(Notify(kind="slack", url=hook.url, retries=0), payload)


def test_alert_and_system_text_posts_as_text(hook: SlackStandIn) -> None:
    assert post(hook, slack_blocks(message())) is None
    assert hook.refused == []
    assert hook.controls == []  # no mention, no link: Slack shows them as typed
    posted = str(hook.got[0])
    assert "&lt;!channel&gt;" in posted and "&lt;http://evil.example|the dashboard&gt;" in posted
    assert "&amp; &lt;@U0123&gt;" in posted
    assert "*Symptoms*" in posted  # runbook's own markup still applies


def test_unescaped_text_is_what_the_stand_in_catches(hook: SlackStandIn) -> None:
    """The stand-in itself: the raw message would have pinged the channel."""
    raw = {"text": "x", "blocks": [{"type": "section",
                                    "text": {"type": "mrkdwn", "text": HOSTILE}}]}
    assert post(hook, raw) is None
    assert "<!channel>" in hook.controls and "<http://evil.example|the dashboard>" in hook.controls


def test_a_message_past_slacks_limits_is_cut_not_refused(hook: SlackStandIn) -> None:
    huge = message(
        title="T" * 400,
        fields={f"F{i}": "<" * 3000 for i in range(14)},
        found=[f"line {i}: " + "&" * 700 for i in range(400)],  # escaped: 5x longer
        not_checked=["x" * 10_000], done=["d"] * 5000, next="n" * 5000)
    payload = slack_blocks(huge)
    assert post(hook, payload) is None, hook.refused
    assert hook.refused == []
    blocks = payload["blocks"]
    assert len(blocks) == 50
    assert "more section(s) cut" in blocks[-2]["text"]["text"]
    assert blocks[-1]["type"] == "context"  # the next step survives the cut
    assert "cut: the run has it all" in blocks[1]["fields"][0]["text"]


def test_raw_the_same_message_is_refused_by_the_stand_in(hook: SlackStandIn) -> None:
    """The limits the stand-in checks are real ones: an uncut section is refused."""
    raw = {"text": "x", "blocks": [{"type": "section",
                                    "text": {"type": "mrkdwn", "text": "x" * 3001}}]}
    assert post(hook, raw) == "HTTP 400"
    assert hook.refused == ["invalid_blocks"]


@pytest.mark.parametrize("text, limit, expected", [
    ("short", 10, "short"),
    ("a" * 40 + "&amp;", 44, "a" * 16 + CUT),
    ("a" * 13 + "&amp;" + "b" * 40, 44, "a" * 13 + CUT),  # "&am" would be cut: dropped
    ("a" * 11 + "&amp;" + "b" * 40, 44, "a" * 11 + "&amp;" + CUT),  # whole: kept
    ("&amp;" * 20, 44, "&amp;" * 3 + CUT),
])
def test_fit_never_cuts_inside_an_entity(text: str, limit: int, expected: str) -> None:
    assert fit(text, limit) == expected
    assert len(fit(text, limit)) <= limit


ECHO_PLAYBOOK = """
name: mem-echo
summary: repeats what the alert said, as a system's log line would
severity: P3
targets:
  box: {kind: mem}
params:
  note: {type: string, default: ""}
steps:
  - {id: look, run: mem.sleep, with: {value: "{{ params.note }}"}}
findings:
  - {id: said, when: steps.look.ok, say: "log line: {{ steps.look.value }}"}
"""

ECHO_CONFIG = """
auth: {{mode: bearer, token_env: TEST_INTAKE_TOKEN}}
routes:
  - name: echo
    match: ['alertname="Echo"']
    playbook: mem-echo
    targets: {{box: box}}
    params: {{note: "{{{{ labels.note }}}}"}}
notify:
  - {{kind: slack, url_env: TEST_SLACK_URL, retries: 0}}
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""


def test_an_alerts_text_reaches_slack_as_text_through_the_daemon(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runbook_home: Path,
        hook: SlackStandIn) -> None:
    monkeypatch.setenv("TEST_INTAKE_TOKEN", "intake-tok")
    monkeypatch.setenv("TEST_SLACK_URL", hook.url)
    config = write_world(tmp_path, ECHO_CONFIG)
    (tmp_path / "playbooks" / "mem-echo.yaml").write_text(ECHO_PLAYBOOK)
    with daemon_in_thread(config, runbook_home, "intake-tok") as d:
        answer = d.post("/v1/alerts", {"labels": {"alertname": "Echo", "note": "<!here> hi"},
                                       "annotations": {"summary": HOSTILE}})
        assert answer.status_code == 202
        hook.wait_for(lambda got: len(got) == 1)
    assert hook.refused == [] and hook.controls == []
    posted = str(hook.got[0])
    assert "&lt;!channel&gt;" in posted  # the annotation, in Symptoms
    assert "log line: &lt;!here&gt; hi" in posted  # the finding, from the system
