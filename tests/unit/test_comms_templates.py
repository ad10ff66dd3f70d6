"""The messages' wording: a team's templates replace the shipped ones, a broken one is a
file:line:col error before anything runs, the customer update cannot say anything internal,
and whatever a system or an alert said posts as text within Slack's limits. Sent over real
HTTP to stand-ins speaking Slack's protocols (tests/slackapi.py, tests/slackhook.py)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.cli import main
from tests.daemonkit import receiver, write_world
from tests.slackapi import TOKEN, SlackApiStandIn, slack_api_stand_in

ECHO_PLAYBOOK = """
name: mem-echo
summary: repeats what it was told, as a system's log line would
severity: P2
targets:
  box: {kind: mem}
params:
  note: {type: string, default: ""}
steps:
  - {id: look, run: mem.sleep, with: {value: "{{ params.note }}"}}
findings:
  - {id: said, when: steps.look.ok, say: "log line: {{ steps.look.value }}"}
"""
HOSTILE = "<!channel> see <http://evil.example|the dashboard> & <@U0123> <!here>"


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackApiStandIn]:
    monkeypatch.setenv("TEST_SLACK_BOT", TOKEN)
    with slack_api_stand_in() as stand_in:
        yield stand_in


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: SlackApiStandIn) -> Path:
    write_world(tmp_path, "")
    (tmp_path / "playbooks" / "mem-echo.yaml").write_text(ECHO_PLAYBOOK)
    monkeypatch.setenv("RUNBOOK_PLAYBOOKS", str(tmp_path / "playbooks"))
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(tmp_path / "inventory.yaml"))
    monkeypatch.setenv("RUNBOOK_BACKENDS", "tests.support.membackend:register")
    write_notify(tmp_path, api)
    return tmp_path


def write_notify(root: Path, api: SlackApiStandIn, extra: str = "", sink: str = "") -> None:
    (root / "notify.yaml").write_text(textwrap.dedent(f"""\
        service: Journey planner
        sinks:
          - {{kind: slack, bot_token_env: TEST_SLACK_BOT, channel: "#incidents",
              api_url: "{api.url}", retries: 0{sink}}}
        """) + extra)


def test_a_teams_template_replaces_the_shipped_one(
        world: Path, api: SlackApiStandIn) -> None:
    (world / "notify-templates").mkdir()
    (world / "notify-templates" / "alert.yaml").write_text(textwrap.dedent("""\
        title: "SEV {{ severity }} on {{ service }}: {{ impact }}"
        fields:
          Pager: "db-oncall"
          What: "{{ symptoms }}"
        next: "{{ next_step }}"
        """))
    assert main(["run", "mem-incident", "--notify", "--no-input", "-p", "value=3"]) == 1
    [alert] = api.messages
    assert alert.text == "SEV P2 on box: a test incident on the mem backend"
    shown = json.dumps(alert.blocks)
    assert "*Pager*\\ndb-oncall" in shown and "*What*\\nvalue is 3" in shown
    assert "Responding" not in shown  # the team's file, not the shipped one
    assert "waiting for approval of fix" in shown


@pytest.mark.parametrize("text, message", [
    ('title: "{{ nope }}"\n', "1:8: title: ' nope ': 'nope' is undefined"),
    ('title: "x"\nfields:\n  A: "{{ severity"\n', "3:6: fields.A: unexpected end of template"),
    ('title: "x"\nfooter: "y"\n', "2:9: unknown key 'footer'"),
])
def test_a_broken_team_template_is_a_located_error_and_nothing_runs(
        world: Path, api: SlackApiStandIn, capsys: pytest.CaptureFixture[str], text: str,
        message: str) -> None:
    (world / "notify-templates").mkdir()
    (world / "notify-templates" / "update.yaml").write_text(text)
    assert main(["run", "mem-incident", "--notify", "--no-input"]) == 2
    err = capsys.readouterr().err
    assert f"{world / 'notify-templates' / 'update.yaml'}:{message}" in err
    assert "nothing ran" in err and api.calls == []


@pytest.mark.parametrize("text, message", [
    ("sinks:\n  - {kind: slack, url: 'https://hooks.slack.com/services/T/B/x'}\n",
     "2:24: sinks.0.url: a Slack webhook URL is a secret, never written in a file"),
    ("sinks:\n  - {kind: slack, bot_token_env: X}\n",
     "2:5: sinks.0: a Slack bot needs bot_token_env and channel (both)"),
    ("sinks:\n  - {kind: slack, url_env: X, mentions: ['@channel']}\n",
     "2:5: sinks.0: mentions ['@channel']: expected <!here>"),
    ("notify: true\nsinkz: []\n", "2:8: sinkz: unknown field 'sinkz'"),
])
def test_a_wrong_notify_file_is_a_located_error(
        world: Path, capsys: pytest.CaptureFixture[str], text: str, message: str) -> None:
    (world / "notify.yaml").write_text(text)
    assert main(["run", "mem-incident", "--notify", "--no-input"]) == 2
    assert f"{world / 'notify.yaml'}:{message}" in capsys.readouterr().err


def test_notify_without_sinks_says_where_it_looked(
        world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (world / "notify.yaml").unlink()
    assert main(["run", "mem-incident", "--notify", "--no-input"]) == 2
    assert "--notify: no sinks configured" in capsys.readouterr().err


def test_the_customer_update_says_nothing_internal(
        world: Path, api: SlackApiStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    with receiver() as status_page:
        monkeypatch.setenv("TEST_STATUS_PAGE", status_page.url)
        write_notify(world, api, extra="  - {kind: webhook, url_env: TEST_STATUS_PAGE, "
                                       "audience: customer, retries: 0}\n")
        assert main(["run", "mem-incident", "--notify", "--no-input", "-p", "value=8",
                     "--approve", "fix=mem.act", "--as", "alice"]) == 1
    said = [m["status"] for m in status_page.got]
    assert said == ["Identified", "Monitoring", "Resolved"]  # one per change of status
    first = status_page.got[0]
    assert first["title"] == "Journey planner: Identified"
    assert "identified the cause of the problems with Journey planner" in first["body"]
    every = json.dumps(status_page.got)
    for internal in ("box", "mem-incident", "value is 8", "alice", "mem.act",
                     "P2", "runbook", *(e["run_id"] for e in api_run_ids(world))):
        assert internal not in every, internal
    assert all(m.text.split()[0] != "Journey" for m in api.messages)  # team channel: team's


def api_run_ids(world: Path) -> list[dict[str, str]]:
    from runner.journal import Journal
    from runner.paths import home

    return [{"run_id": row.id} for row in Journal(home()).runs()]


def test_a_customer_template_cannot_reach_internals_even_when_a_team_writes_one(
        world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (world / "notify-templates").mkdir()
    (world / "notify-templates" / "customer.yaml").write_text(
        'title: "{{ service }}"\nbody: "{{ found }} on {{ run_id }}"\n')
    assert main(["run", "mem-incident", "--notify", "--no-input"]) == 2
    assert ("customer.yaml:2:7: body: '{{ found }} on {{ run_id }}': 'found' is undefined; "
            "names: service, started_at, status, time") in capsys.readouterr().err


def test_what_a_system_said_posts_as_text_and_only_configured_mentions_ping(
        world: Path, api: SlackApiStandIn) -> None:
    write_notify(world, api, sink=", mentions: ['<!subteam^S0DBONCALL>']")
    assert main(["run", "mem-echo", "--notify", "--no-input", "-p",
                 f"note={HOSTILE} " + "x&" * 3000]) == 1
    [alert] = api.messages  # accepted: within Block Kit's limits although the line is huge
    assert api.controls == ["<!subteam^S0DBONCALL>"] * 2  # in the text and a block: only it
    shown = json.dumps(alert.blocks)
    assert "log line: &lt;!channel&gt; see &lt;http://evil.example|the dashboard&gt;" in shown
    assert "cut: the run has it all" in shown


def test_validate_finds_a_wrong_notify_file_before_any_run(
        world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (world / "notify.yaml").write_text("notify: true\nsinkz: []\n")
    assert main(["validate"]) == 2
    assert f"{world / 'notify.yaml'}:2:8: sinkz: unknown field 'sinkz'" in \
        capsys.readouterr().err
