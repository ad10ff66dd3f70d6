"""A real watch window: a verify window longer than the engine holds inline is watched by
schedule (the run is MONITORING, nothing holds it), survives a restart of whatever watches,
resolves the run at the window's end, and a relapse inside it reopens the incident."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runner import lifecycle
from runner.engine import Engine
from runner.errors import PlaybookError
from runner.gate import Gate
from runner.journal import Journal
from runner.vocabulary import EventKind, RunStatus
from tests.enginekit import Kit

FIXED = """
steps:
  - {id: a, run: mem.sleep, with: {value: [1]}}
remedies:
  - {id: fix, run: mem.act, with: {items: "{{ steps.a.value }}"}}
verify:
  - {id: up, run: mem.exists, with: {file: up}, for: WINDOW, interval: 100ms}
"""


@pytest.fixture
def kit(tmp_path: Path) -> Kit:
    k = Kit(tmp_path)
    (k.box / "up").write_text("")
    return k


def start(kit: Kit, window: str = "2s", **options: object) -> str:
    plan = kit.plan(FIXED.replace("WINDOW", window))
    engine = kit.engine(approve=frozenset({"fix=mem.act"}), inline_watch=0.5)
    state = engine.start(plan, "run-1", trigger="test", requested_by="tester")
    return state.run_id


def test_a_long_window_is_watched_by_schedule_and_the_run_says_monitoring(kit: Kit) -> None:
    run_id = start(kit)
    state = kit.journal.state(run_id)
    assert state.status == RunStatus.MONITORING
    assert state.watch is not None and state.watch["checks"] == ["up"]
    assert state.watch["for"] == 2 and "up" not in state.verify  # judged at the window's end
    assert kit.journal.get_run(run_id).status == RunStatus.MONITORING
    # A look before the window ends changes nothing.
    engine = kit.engine(inline_watch=0.5)
    assert engine.watch(kit.plan(FIXED.replace("WINDOW", "2s")), run_id).status == \
        RunStatus.MONITORING


def test_a_watch_that_holds_to_its_end_resolves_the_run(kit: Kit) -> None:
    run_id = start(kit)
    looks: list[float] = []
    import time

    def sleep(seconds: float) -> None:
        looks.append(seconds)
        time.sleep(seconds)

    state = lifecycle.watch(kit.engine(inline_watch=0.5), kit.plan(FIXED.replace("WINDOW", "2s")),
                            run_id, sleep=sleep)
    assert state.status == RunStatus.COMPLETED and state.watch is None
    assert state.verify["up"].status == "passed"
    assert all(0 <= s <= 0.1 for s in looks) and len(looks) >= 2  # every interval, not once


def test_a_relapse_inside_the_window_fails_the_run_and_says_why(kit: Kit) -> None:
    run_id = start(kit, "30s")
    plan = kit.plan(FIXED.replace("WINDOW", "30s"))
    engine = kit.engine(inline_watch=0.5)
    assert engine.watch(plan, run_id).status == RunStatus.MONITORING
    (kit.box / "up").unlink()  # it stops holding
    state = engine.watch(plan, run_id)
    assert state.status == RunStatus.FAILED
    assert [e.type for e in state.timeline][-3:] == [
        EventKind.VERIFY_FINISHED, EventKind.WATCH_RELAPSED, EventKind.RUN_FINISHED]
    assert "relapsed during its watch" in (state.verify["up"].error or "")


def test_the_watch_lives_in_the_journal_not_in_the_process_that_started_it(kit: Kit) -> None:
    run_id = start(kit)
    # Another process: a new journal handle and engine over the same home.
    journal = Journal(kit.root / "home")
    engine = Engine(kit.registry, journal, Gate(journal, kit.registry, approver="other"),
                    inline_watch=0.5)
    state = lifecycle.watch(engine, kit.plan(FIXED.replace("WINDOW", "2s")), run_id)
    assert state.status == RunStatus.COMPLETED


def test_resuming_a_run_under_watch_leaves_it_under_watch(kit: Kit) -> None:
    run_id = start(kit, "30s")
    engine = kit.engine(inline_watch=0.5)
    state = engine.resume(kit.plan(FIXED.replace("WINDOW", "30s")), run_id, by="tester")
    assert state.status == RunStatus.MONITORING and state.watch is not None


def test_a_short_window_is_held_inline_as_before(kit: Kit) -> None:
    state = kit.run(FIXED.replace("WINDOW", "300ms"), approve=frozenset({"fix=mem.act"}))
    assert state.status == RunStatus.COMPLETED and state.verify["up"].status == "passed"


def test_verify_after_a_manual_fix(kit: Kit) -> None:
    """Nobody approved the remedy; a person fixed it by hand; `verify` watches it."""
    plan = kit.plan(FIXED.replace("WINDOW", "1s"))
    state = kit.engine(inline_watch=0.5).start(plan, "run-2", trigger="test",
                                               requested_by="tester")
    assert state.status == RunStatus.AWAITING_APPROVAL
    engine = kit.engine(inline_watch=0.5)
    assert lifecycle.verify(engine, plan, "run-2", by="alice").status == RunStatus.MONITORING
    assert lifecycle.watch(engine, plan, "run-2").status == RunStatus.COMPLETED
    assert kit.actions() == []  # the remedy never ran


def test_a_window_may_be_a_duration_param_so_a_test_can_shorten_it(kit: Kit) -> None:
    body = FIXED.replace("WINDOW", '"{{ params.watch_for }}"') + \
        "params:\n  watch_for: {type: duration, default: 15m}\n"
    assert kit.plan(body).window(kit.plan(body).playbook.verify[0].for_) == 900
    short = kit.plan(body, {"watch_for": "2s"})
    assert short.window(short.playbook.verify[0].for_) == 2
    with pytest.raises(PlaybookError, match="not a duration param"):
        kit.plan(FIXED.replace("WINDOW", '"{{ params.nope }}"'))


WATCHED = """name: watched
summary: s
targets:
  box: {kind: mem}
params:
  watch_for: {type: duration, default: 15m}
steps:
  - {id: look, run: mem.sleep, with: {value: [1]}}
remedies:
  - {id: fix, run: mem.act, with: {items: "{{ steps.look.value }}"}}
verify:
  - {id: up, run: mem.exists, with: {file: up}, for: "{{ params.watch_for }}", interval: 100ms}
"""


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Any:
    """`runbook ... -o json` in-process over the mem backend; (exit code, document)."""
    import json

    from runner.cli import main

    monkeypatch.setenv("RUNBOOK_BACKENDS", "tests.support.membackend:register")
    monkeypatch.setenv("RUNBOOK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RUNBOOK_WATCH_INLINE", "0")  # every window is watched by schedule
    (tmp_path / "box").mkdir()
    (tmp_path / "box" / "up").write_text("")
    (tmp_path / "inventory.yaml").write_text(
        f"targets:\n  box:\n    kind: mem\n    path: {tmp_path / 'box'}\n")
    (tmp_path / "watched.yaml").write_text(WATCHED)

    def run(*argv: str) -> tuple[int, Any]:
        code = main([*argv, "-o", "json"])
        out, _ = capsys.readouterr()
        return code, json.loads(out)

    run.playbook = str(tmp_path / "watched.yaml")  # type: ignore[attr-defined]
    run.inventory = str(tmp_path / "inventory.yaml")  # type: ignore[attr-defined]
    return run


def test_the_cli_watches_in_the_foreground_until_the_window_ends(cli: Any) -> None:
    code, report = cli("run", cli.playbook, "--inventory", cli.inventory, "--no-input",
                       "--approve", "fix=mem.act", "--param", "watch_for=1s")
    assert code == 0  # no finding of its own; the remedy ran and held
    assert report["status"] == "completed" and report["watch"] is None
    assert report["verify"][0]["status"] == "passed"


def test_no_watch_leaves_it_monitoring_and_runbook_watch_carries_on(cli: Any) -> None:
    _, report = cli("run", cli.playbook, "--inventory", cli.inventory, "--no-input",
                    "--approve", "fix=mem.act", "--param", "watch_for=1s", "--no-watch")
    assert report["status"] == "monitoring" and report["watch"]["checks"] == ["up"]
    _, watched = cli("watch", report["run_id"])
    assert watched["status"] == "completed"
    assert cli("history", "--status", "monitoring")[1] == {"runs": []}


def test_runbook_verify_checks_a_fix_made_by_hand(cli: Any) -> None:
    _, report = cli("run", cli.playbook, "--inventory", cli.inventory, "--no-input",
                    "--param", "watch_for=1s")
    assert report["status"] == "awaiting_approval"  # nobody approved; someone fixed it
    _, verified = cli("verify", report["run_id"], "--as", "alice")
    assert verified["status"] == "completed"
    assert verified["remedies"][0]["status"] == "proposed"  # never run by runbook


def test_the_timeline_says_when_the_watch_started_and_that_it_relapsed(kit: Kit) -> None:
    from runner import timeline

    run_id = start(kit, "30s")
    (kit.box / "up").unlink()
    state = kit.engine(inline_watch=0.5).watch(kit.plan(FIXED.replace("WINDOW", "30s")), run_id)
    said = [(e.kind, e.what) for e in timeline.entries(state)]
    assert any(k == "watch" and w.startswith("watching up until") for k, w in said)
    assert any(k == "watch" and w.startswith("relapsed: up stopped holding") for k, w in said)
