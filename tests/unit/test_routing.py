"""Routing: Alertmanager's matchers on every branch, dedup windows on a clock the test moves,
groups keyed by the labels' own fingerprint, and targets an alert may choose only within
its route's rule. The inbox runs on a real journal (SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.daemon.alerts import Alert, fingerprint
from runner.daemon.config import DaemonConfig, Route, warnings
from runner.daemon.inbox import Inbox
from runner.daemon.matchers import parse_matcher
from runner.daemon.routing import TargetRefused, bindings, group_key, route_for
from runner.journal import Journal

# Matchers


@pytest.mark.parametrize("matcher, labels, matches", [
    ('env="prod"', {"env": "prod"}, True),
    ('env="prod"', {"env": "prod2"}, False),
    ('env="prod"', {}, False),
    ('env=""', {}, True),  # a missing label reads as ""
    ('env=""', {"env": "x"}, False),
    ('env!="prod"', {"env": "prod"}, False),
    ('env!="prod"', {"env": "dev"}, True),
    ('env!="prod"', {}, True),
    ('env!=""', {}, False),
    ('env=~"prod|staging"', {"env": "staging"}, True),
    ('env=~"prod|staging"', {"env": "preprod"}, False),  # anchored at the start
    ('env=~"prod|staging"', {"env": "prod-1"}, False),  # and at the end
    ('env=~"prod|staging"', {"env": "prodstaging"}, False),  # around the alternation
    ('env=~"prod|staging"', {}, False),
    ('env=~".*"', {}, True),
    ('env=~"p.*"', {"env": "prod"}, True),
    ('env!~"prod|staging"', {"env": "prod"}, False),
    ('env!~"prod|staging"', {"env": "preprod"}, True),
    ('env!~"prod|staging"', {}, True),
    ('env!~".*"', {}, False),
    ('msg="say \\"hi\\""', {"msg": 'say "hi"'}, True),
    (' env = "prod" ', {"env": "prod"}, True),
])
def test_matchers(matcher: str, labels: dict[str, str], matches: bool) -> None:
    assert parse_matcher(matcher).matches(labels) is matches


@pytest.mark.parametrize("text", ['env=', 'env=="prod"', '1env="x"', 'env=~"("',
                                  'env~="x"', '"env"="x"', 'env="x" extra'])
def test_bad_matchers_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="bad"):
        parse_matcher(text)


def route(**fields: Any) -> Route:
    return Route.model_validate({"name": "r", "playbook": "p", **fields})


def alert(status: str = "firing", **labels: str) -> Alert:
    return Alert(source="generic", status=status, labels=labels,
                 fingerprint=fingerprint(labels))


def test_the_first_route_whose_matchers_all_match_wins() -> None:
    routes = [route(name="a", match=['alertname="X"', 'env="prod"']),
              route(name="b", match=['alertname="X"']), route(name="c")]
    assert route_for(alert(alertname="X", env="prod"), routes) is routes[0]
    assert route_for(alert(alertname="X", env="dev"), routes) is routes[1]
    assert route_for(alert(alertname="Y"), routes) is routes[2]  # no matchers: everything
    assert route_for(alert(alertname="Y"), routes[:2]) is None


# Groups


def test_without_group_by_the_group_is_the_labels_own_fingerprint() -> None:
    r = route()
    assert group_key(alert(a="1", b="2"), r) == group_key(alert(b="2", a="1"), r)
    assert group_key(alert(a="1"), r) != group_key(alert(a="1", b="2"), r)
    grouped = route(group_by=["a"])
    assert group_key(alert(a="1", b="2"), grouped) == group_key(alert(a="1", b="3"), grouped)
    assert group_key(alert(a="1"), grouped) != group_key(alert(a="2"), grouped)


class Clock:
    """Unix time that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "home") as j:
        yield j


def inbox(journal: Journal, clock: Clock, **config: Any) -> Inbox:
    return Inbox(journal, DaemonConfig.model_validate(
        {"auth": {"mode": "none"}, "dedup_window": 600, **config}), clock)


def dispatch(box: Inbox, *alerts: Alert) -> list[str]:
    box.store(list(alerts))
    return [d.outcome for d in box.dispatch()]


def test_the_dedup_window_on_a_clock_the_test_controls(journal: Journal) -> None:
    clock = Clock()
    box = inbox(journal, clock, routes=[{"name": "r", "playbook": "p", "group_by": ["g"]}])
    assert dispatch(box, alert(g="1")) == ["started"]
    clock.now += 599.5  # inside dedup_window (600 s)
    assert dispatch(box, alert(g="1"), alert(g="2")) == ["joined", "started"]
    clock.now += 0.5  # exactly 600 s: the window is over for g=1, not for g=2
    assert dispatch(box, alert(g="1"), alert(g="2")) == ["started", "joined"]
    assert box.queue_depth() == 3


def test_once_within_overrides_the_dedup_window(journal: Journal) -> None:
    clock = Clock()
    box = inbox(journal, clock, routes=[{"name": "r", "playbook": "p", "group_by": ["g"],
                                         "once_within": "15m"}])
    assert dispatch(box, alert(g="1")) == ["started"]
    clock.now += 899
    assert dispatch(box, alert(g="1")) == ["joined"]
    clock.now += 1
    assert dispatch(box, alert(g="1")) == ["started"]


def test_a_resolved_alert_closes_only_its_own_group(journal: Journal) -> None:
    box = inbox(journal, Clock(), routes=[{"name": "r", "playbook": "p"}])
    assert dispatch(box, alert(a="1")) == ["started"]
    box.store([alert("resolved", a="1", b="forged")])
    [forged] = box.dispatch()
    assert (forged.outcome, forged.closes) == ("resolved", False)
    box.store([alert("resolved", a="1")])
    [genuine] = box.dispatch()
    assert (genuine.outcome, genuine.closes) == ("resolved", True)


# Targets an alert may choose


def test_an_allow_list_refuses_any_other_target() -> None:
    r = route(targets={"db": {"from": "{{ labels.instance }}", "allow": ["lab-db"]}})
    assert bindings(alert(instance="lab-db"), r)[0] == {"db": "lab-db"}
    for name in ("journey-db", "lab-db2", "", "lab-db "):
        with pytest.raises(TargetRefused, match="not allowed"):
            bindings(alert(instance=name), r)


def test_a_match_rule_is_anchored_like_a_matcher() -> None:
    r = route(targets={"api": {"from": "{{ labels.service }}", "match": "api-(blue|green)"}})
    assert bindings(alert(service="api-blue"), r)[0] == {"api": "api-blue"}
    for name in ("api-blue-x", "x-api-green", "api-", "api-bluegreen"):
        with pytest.raises(TargetRefused):
            bindings(alert(service=name), r)


def test_a_target_rule_needs_allow_or_match() -> None:
    with pytest.raises(ValueError, match="allow"):
        route(targets={"db": {"from": "{{ labels.instance }}"}})
    with pytest.raises(ValueError, match="bad regex"):
        route(targets={"db": {"from": "x", "match": "("}})


def test_a_refused_target_is_stored_and_opens_no_run(journal: Journal) -> None:
    box = inbox(journal, Clock(), routes=[{
        "name": "r", "playbook": "p",
        "targets": {"db": {"from": "{{ labels.instance }}", "allow": ["lab-db"]}}}])
    box.store([alert(instance="other-db")])
    [refused] = box.dispatch()
    assert refused.outcome == "refused" and "'other-db'" in refused.reason
    assert box.queue_depth() == 0
    assert journal.read("SELECT outcome FROM alerts") == [("refused",)]


@pytest.mark.parametrize("targets, match, loose", [
    ({"db": "{{ labels.instance }}"}, ['alertname="X"'], "instance"),
    ({"db": "{{ labels['instance'] }}"}, [], "instance"),
    ({"db": "{{ labels.instance }}"}, ['instance!="x"'], "instance"),  # != constrains nothing
    ({"db": "{{ annotations.db }}"}, [], "annotations"),
    ({"db": "{{ labels.get('instance') }}"}, ['instance="a"'], "computed label"),
])
def test_check_warns_about_a_target_from_an_unconstrained_label(
        targets: dict[str, Any], match: list[str], loose: str) -> None:
    config = DaemonConfig.model_validate({"auth": {"mode": "none"}, "routes": [
        {"name": "r", "playbook": "p", "targets": targets, "match": match}]})
    [warning] = warnings(config)
    assert "route r: target db" in warning and loose in warning


@pytest.mark.parametrize("targets, match", [
    ({"db": "lab-db"}, []),
    ({"db": {"from": "{{ labels.instance }}", "allow": ["lab-db"]}}, []),
    ({"db": {"from": "{{ labels.instance }}", "match": "lab-.*"}}, []),
    ({"db": "{{ labels.instance }}"}, ['instance=~"lab-db|journey-db"']),
    ({"db": "{{ labels.instance }}"}, ['instance="lab-db"']),
])
def test_check_is_quiet_about_constrained_targets(
        targets: dict[str, Any], match: list[str]) -> None:
    config = DaemonConfig.model_validate({"auth": {"mode": "none"}, "routes": [
        {"name": "r", "playbook": "p", "targets": targets, "match": match}]})
    assert warnings(config) == []


def test_daemon_check_prints_warnings_and_exits(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.cli import main

    monkeypatch.setenv("CHECK_TOKEN", "t")
    path = tmp_path / "daemon.yaml"
    path.write_text("auth: {mode: bearer, token_env: CHECK_TOKEN}\nroutes:\n"
                    "  - {name: loose, playbook: db-pool-exhausted, "
                    "targets: {db: '{{ labels.instance }}'}}\n"
                    "  - name: tight\n    playbook: db-pool-exhausted\n"
                    "    targets: {db: {from: '{{ labels.instance }}', allow: [lab-db]}}\n")
    assert main(["daemon", "--config", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "warning: route loose: target db comes from instance" in out
    assert "route tight" not in out
    assert "valid, 2 route(s), 1 warning(s)" in out


def test_the_shipped_example_constrains_every_target() -> None:
    from runner.daemon.config import load

    config = load(Path(__file__).resolve().parents[2] / "deploy" / "daemon.yaml")
    assert not [w for w in warnings(config) if "route" in w]
    assert config.metrics.auth == "token"
