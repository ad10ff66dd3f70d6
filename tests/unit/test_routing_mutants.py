"""Inbox and routing cases mutation testing found untested (scripts/mutation
runner/daemon/inbox.py routing.py): what is stored and answered for an alert no route takes,
one that joins a run, one whose template fails, a resolve that ends its run, and the
RESOLVED notice claimed once. A real journal (SQLite) and a clock the test moves; the main
tests are test_routing.py, whose helpers are reused."""

from __future__ import annotations

from pathlib import Path

from runner.daemon.inbox import Inbox
from runner.daemon.routing import TargetRefused, bindings, group_key
from runner.journal import Journal
from tests.unit.test_routing import Clock, alert, inbox, journal, route

__all__ = ["journal"]  # the fixture, shared with test_routing.py


def stored(journal: Journal) -> list[tuple[str, str | None, str | None]]:
    return [(str(o), r, k) for o, r, k in journal.read(
        "SELECT outcome, route, group_key FROM alerts ORDER BY id")]


def test_an_alert_no_route_takes_is_stored_unrouted(journal: Journal) -> None:
    box = inbox(journal, Clock(), routes=[{"name": "r", "playbook": "p",
                                           "match": ['alertname="X"']}])
    box.store([alert(alertname="Y")])
    [done] = box.dispatch()
    assert (done.outcome, done.run_id, done.reason, done.alert.labels) == (
        "unrouted", None, "", {"alertname": "Y"})
    assert stored(journal) == [("unrouted", None, None)]
    assert box.queue_depth() == 0


def test_a_joining_alert_names_the_run_of_its_group(journal: Journal) -> None:
    box = inbox(journal, Clock(), routes=[{"name": "r", "playbook": "p", "group_by": ["g"]}])
    box.store([alert(g="1")])
    [started] = box.dispatch()
    work = box.claim()
    assert started.outcome == "started" and work is not None
    box.set_run(work.id, "20261122-075345-0004")
    box.store([alert(g="1", extra="x")])
    [joined] = box.dispatch()
    assert (joined.outcome, joined.run_id) == ("joined", "20261122-075345-0004")
    key = group_key(alert(g="1"), route(name="r", group_by=["g"]))
    assert stored(journal) == [("started", "r", key), ("joined", "r", key)]


def test_a_template_that_fails_leaves_the_alert_unrouted_and_says_why(journal: Journal) -> None:
    box = inbox(journal, Clock(), routes=[{"name": "r", "playbook": "p",
                                           "params": {"n": "{{ labels.missing.deeper }}"}}])
    box.store([alert(a="1")])
    [done] = box.dispatch()
    assert done.outcome == "unrouted"
    assert done.reason.startswith("route r: ") and "missing" in done.reason
    assert done.reason_class.startswith("unrouted:r:")
    assert stored(journal)[0][:2] == ("unrouted", "r")
    assert box.queue_depth() == 0


def test_a_refused_target_says_which_route_and_role(journal: Journal) -> None:
    box = inbox(journal, Clock(), routes=[{
        "name": "r", "playbook": "p",
        "targets": {"db": {"from": "{{ labels.instance }}", "allow": ["lab-db"]}}}])
    box.store([alert(instance="other-db")])
    [refused] = box.dispatch()
    assert refused.reason_class == "refused:r:db"
    assert refused.reason == ("route r: target db = 'other-db' is not allowed by the route's "
                              "allow-list/match")
    assert stored(journal) == [("refused", "r", None)]


def test_target_refused_keeps_the_route_and_role() -> None:
    refused = TargetRefused("r", "db", "x" * 300)
    assert (refused.route, refused.role) == ("r", "db")
    assert str(refused) == (f"route r: target db = {'x' * 200!r} is not allowed by the "
                            "route's allow-list/match")


def test_params_are_rendered_from_labels_and_annotations() -> None:
    r = route(targets={"db": "lab-db"},
              params={"who": "{{ labels.team }}", "why": "{{ annotations.summary }}"})
    firing = alert(team="payments")
    firing.annotations["summary"] = "pool full"
    assert bindings(firing, r) == ({"db": "lab-db"}, {"who": "payments", "why": "pool full"})


def test_the_last_resolve_of_a_run_closes_it_and_the_notice_is_claimed_once(
        journal: Journal) -> None:
    box = inbox(journal, Clock(), routes=[{"name": "r", "playbook": "p"}])
    box.store([alert(a="1")])
    box.dispatch()
    work = box.claim()
    assert work is not None
    box.set_run(work.id, "20261122-075345-0005")
    assert not box.claim_resolved_notice("20261122-075345-0005")  # still firing
    box.store([alert("resolved", a="1")])
    [resolved] = box.dispatch()
    assert (resolved.outcome, resolved.closes, resolved.run_id) == (
        "resolved", True, "20261122-075345-0005")
    assert stored(journal)[-1][:2] == ("resolved", "r")
    assert not box.claim_resolved_notice("20261122-075345-0005")  # its work still runs
    box.finish(work.id)
    assert box.claim_resolved_notice("20261122-075345-0005")
    assert not box.claim_resolved_notice("20261122-075345-0005")  # once


def test_a_resolve_for_a_queued_run_drops_its_work(journal: Journal) -> None:
    box = inbox(journal, Clock(), routes=[{"name": "r", "playbook": "p"}])
    box.store([alert(a="1")])
    box.dispatch()
    assert box.queue_depth() == 1
    box.store([alert("resolved", a="1")])
    [resolved] = box.dispatch()
    assert (resolved.closes, resolved.run_id) == (True, None)  # it never started
    assert box.queue_depth() == 0
    assert journal.read("SELECT status, error FROM work") == [
        ("done", "its alerts resolved before it started")]


def test_a_group_still_firing_elsewhere_is_not_closed(journal: Journal) -> None:
    box = inbox(journal, Clock(), routes=[{"name": "r", "playbook": "p", "group_by": ["g"]}])
    box.store([alert(g="1", host="a"), alert(g="1", host="b")])
    box.dispatch()
    box.store([alert("resolved", g="1", host="a")])
    [resolved] = box.dispatch()
    assert (resolved.outcome, resolved.closes) == ("resolved", False)
    assert box.queue_depth() == 1


def test_an_inbox_keeps_its_journal_and_clock(tmp_path: Path) -> None:
    with Journal(tmp_path / "home") as j:
        clock = Clock()
        box = inbox(j, clock)
        assert isinstance(box, Inbox) and box.journal is j and box.clock is clock


def test_the_work_item_holds_the_rendered_targets_and_params(journal: Journal) -> None:
    box = inbox(journal, Clock(), routes=[{
        "name": "r", "playbook": "p", "group_by": ["g"],
        "targets": {"db": {"from": "{{ labels.instance }}", "allow": ["lab-db"]}},
        "params": {"team": "{{ labels.team }}"}}])
    firing = alert(g="1", instance="lab-db", team="payments")
    box.store([firing])
    [started] = box.dispatch()
    assert (started.outcome, started.alert.labels) == ("started", firing.labels)
    work = box.claim()
    assert work is not None
    assert (work.route, work.playbook, work.targets, work.params) == (
        "r", "p", {"db": "lab-db"}, {"team": "payments"})
    assert work.group_key == group_key(firing, route(name="r", group_by=["g"]))
    box.store([alert(g="1", instance="lab-db", team="payments", host="b")])
    [joined] = box.dispatch()
    assert joined.alert.labels["host"] == "b"


def test_a_resolve_while_alertmanager_says_the_group_fires_does_not_close_it(
        journal: Journal) -> None:
    box = inbox(journal, Clock(), routes=[{"name": "r", "playbook": "p"}])
    box.store([alert(a="1")])
    box.dispatch()
    resolved = alert("resolved", a="1")
    box.store([resolved.model_copy(update={"group_status": "firing"})])
    [done] = box.dispatch()
    assert (done.outcome, done.closes) == ("resolved", False)
    assert box.queue_depth() == 1
