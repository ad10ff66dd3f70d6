"""The daemon's intake against an attacker, over real HTTP on loopback: signed requests
cannot be replayed, oversized and malformed requests get a 4xx that says why, a sender's
fingerprint is not trusted, a label cannot point a run at a target its route does not
allow, and /metrics and /healthz say nothing to a stranger."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from runner.daemon.alerts import fingerprint
from tests.daemonkit import RunningDaemon, daemon_in_thread, write_world
from tests.slackhook import SlackStandIn, slack_stand_in

SECRET = b"hmac-secret-for-tests"
READER = "reader-tok-77"

CONFIG = """
auth: {{mode: hmac, secret_env: TEST_HMAC_SECRET}}
max_alerts: 5
approvers:
  rita: {{token_env: TEST_READER_TOKEN}}
routes:
  - name: mem
    match: ['alertname="BoxTooHigh"']
    playbook: mem-incident
    targets: {{box: {{from: "{{{{ labels.box }}}}", allow: [box]}}}}
  - name: loose
    match: ['alertname="Loose"']
    playbook: mem-incident
    targets: {{box: "{{{{ labels.box }}}}"}}
notify:
  - {{kind: slack, url_env: TEST_SLACK_URL, retries: 0}}
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with slack_stand_in() as hook:
        yield hook


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slack: SlackStandIn) -> Path:
    monkeypatch.setenv("TEST_HMAC_SECRET", SECRET.decode())
    monkeypatch.setenv("TEST_READER_TOKEN", READER)
    monkeypatch.setenv("TEST_SLACK_URL", slack.url)
    return write_world(tmp_path, CONFIG)


@pytest.fixture
def daemon(world: Path, runbook_home: Path) -> Iterator[RunningDaemon]:
    with daemon_in_thread(world, runbook_home, READER) as running:
        yield running


def sign(body: bytes, stamp: int | None = None, secret: bytes = SECRET) -> dict[str, str]:
    """What a sender puts on a request (the daemon's module docstring says the same)."""
    ts = str(int(time.time()) if stamp is None else stamp)
    digest = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Runbook-Timestamp": ts, "X-Runbook-Signature": f"sha256={digest}",
            "Content-Type": "application/json"}


def send(d: RunningDaemon, body: bytes, headers: dict[str, str],
         path: str = "/v1/alerts") -> httpx.Response:
    return httpx.post(d.url + path, content=body, headers=headers, timeout=10)


def alert_body(box: str = "box", name: str = "BoxTooHigh", status: str = "firing",
               **labels: str) -> bytes:
    return json.dumps({"labels": {"alertname": name, "box": box, **labels},
                       "status": status}).encode()


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def outcomes(d: RunningDaemon) -> list[tuple[int, str | None]]:
    """Every stored alert's id and what the dispatcher did with it (None: not yet)."""
    return [(r[0], r[1]) for r in d.daemon.journal.read("SELECT id, outcome FROM alerts "
                                                        "ORDER BY id")]


def dispatched(d: RunningDaemon) -> bool:
    return all(outcome is not None for _, outcome in outcomes(d))


def metric(d: RunningDaemon, line: str) -> float:
    """A sample's value from /metrics (0 when absent)."""
    for sample in d.get("/metrics").text.splitlines():
        if sample.startswith(line + " "):
            return float(sample.rsplit(" ", 1)[1])
    return 0.0


# Replay (issue 10 item 11)


def test_a_signed_request_is_accepted_once_and_its_replay_is_refused(
        daemon: RunningDaemon) -> None:
    body, headers = alert_body(), sign(alert_body())
    assert send(daemon, body, headers).status_code == 202
    daemon.wait_run(lambda runs: len(runs) == 1 and runs[0]["status"] == "awaiting_approval")
    replay = send(daemon, body, headers)
    assert replay.status_code == 401 and "already used" in replay.json()["error"]
    # a fresh signature of the same alert is a new request, and is stored; it joins
    fresh = send(daemon, body, sign(body, int(time.time()) + 1))
    assert fresh.status_code == 202
    wait_until(lambda: dispatched(daemon) and len(outcomes(daemon)) == 2, "the fresh alert")
    assert [o for _, o in outcomes(daemon)] == ["started", "joined"]  # the replay stored nothing
    assert len(daemon.get("/v1/runs").json()["runs"]) == 1
    assert metric(daemon, 'runbook_alerts_refused_total{reason="replayed"}') == 1


def test_a_replay_is_refused_after_a_restart_too(world: Path, runbook_home: Path) -> None:
    body, headers = alert_body(), sign(alert_body())
    with daemon_in_thread(world, runbook_home, READER) as first:
        assert send(first, body, headers).status_code == 202
    with daemon_in_thread(world, runbook_home, READER) as second:
        assert send(second, body, headers).status_code == 401
        assert len(second.daemon.journal.read("SELECT id FROM alerts")) == 1


BAD_HEADERS: dict[str, Callable[[], dict[str, str]]] = {
    "stale": lambda: sign(alert_body(), int(time.time()) - 302),
    "ahead": lambda: sign(alert_body(), int(time.time()) + 120),
    "forged": lambda: sign(alert_body(), secret=b"not-the-secret"),
    "another body": lambda: sign(alert_body(box="other")),
    "no timestamp": lambda: {"X-Runbook-Signature": sign(alert_body())["X-Runbook-Signature"]},
    "bad timestamp": lambda: {**sign(alert_body()), "X-Runbook-Timestamp": "1e9"},
    "unsigned": lambda: {"X-Runbook-Timestamp": str(int(time.time()))},
}


@pytest.mark.parametrize("case, why", [
    ("stale", "old"), ("ahead", "ahead"), ("forged", "Signature"),
    ("another body", "Signature"), ("no timestamp", "Timestamp"),
    ("bad timestamp", "Timestamp"), ("unsigned", "Signature")])
def test_stale_future_forged_and_unsigned_requests_are_refused(
        daemon: RunningDaemon, case: str, why: str) -> None:
    answer = send(daemon, alert_body(), BAD_HEADERS[case]())
    assert answer.status_code == 401 and why in answer.json()["error"]
    assert outcomes(daemon) == []  # nothing stored


@pytest.mark.parametrize("offset, accepted", [
    (-300, True), (-301, False), (60, True), (61, False), (0, True)])
def test_the_timestamp_window_edges(daemon: RunningDaemon, offset: int, accepted: bool) -> None:
    """Five minutes old or one minute ahead of the daemon's clock, and no further."""
    now = 1_900_000_000
    daemon.daemon.inbox.clock = lambda: float(now)
    answer = send(daemon, alert_body(), sign(alert_body(), now + offset))
    assert answer.status_code == (202 if accepted else 401), answer.text


def test_the_signature_covers_the_timestamp(daemon: RunningDaemon) -> None:
    """An old captured request cannot be refreshed by changing its timestamp header."""
    headers = sign(alert_body(), int(time.time()) - 400)
    headers["X-Runbook-Timestamp"] = str(int(time.time()))
    assert send(daemon, alert_body(), headers).status_code == 401


# Caps and malformed input (issue 10 item 12)


def many(count: int) -> bytes:
    return json.dumps({"alerts": [{"labels": {"alertname": "BoxTooHigh", "box": "box",
                                              "n": str(i)}} for i in range(count)]}).encode()


def test_more_alerts_than_max_alerts_is_a_413_and_nothing_is_stored(
        daemon: RunningDaemon) -> None:
    answer = send(daemon, many(6), sign(many(6)))
    assert answer.status_code == 413
    assert "6 alerts in one request, at most 5" in answer.json()["problems"][0]
    assert outcomes(daemon) == []
    assert send(daemon, many(5), sign(many(5))).status_code == 202


def am_body(count: int) -> bytes:
    return json.dumps({"version": "4", "groupKey": "k", "status": "firing", "receiver": "r",
                       "alerts": [{"status": "firing", "labels": {"alertname": "X", "n": str(i)}}
                                  for i in range(count)]}).encode()


def test_max_alerts_holds_for_alertmanager_payloads(daemon: RunningDaemon) -> None:
    answer = send(daemon, am_body(8000), sign(am_body(8000)), "/v1/alerts/alertmanager")
    assert answer.status_code == 413 and "max_alerts" in answer.json()["problems"][0]
    assert outcomes(daemon) == []


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"labels": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001,
])
def test_deeply_nested_json_is_a_400(daemon: RunningDaemon, body: bytes) -> None:
    answer = send(daemon, body, sign(body))
    assert answer.status_code == 400
    assert answer.json()["problems"] == ["body: JSON nested too deeply"]
    approval = httpx.post(daemon.url + "/v1/runs/r/approvals", content=body, timeout=10,
                          headers={"Authorization": f"Bearer {READER}"})
    assert approval.status_code == 400 and "nested too deeply" in approval.json()["error"]


@pytest.mark.parametrize("limit", ["abc", "-1", "0", "1.5", "", "²", "99999999999"])
def test_a_bad_runs_limit_is_a_400(daemon: RunningDaemon, limit: str) -> None:
    answer = daemon.get(f"/v1/runs?limit={limit}")
    assert answer.status_code == 400 and "limit must be" in answer.json()["error"]


def test_a_big_runs_limit_is_clamped(daemon: RunningDaemon) -> None:
    assert daemon.get("/v1/runs?limit=1000000").status_code == 200


def test_a_flood_of_failing_work_logs_one_line(
        daemon: RunningDaemon, caplog: pytest.LogCaptureFixture) -> None:
    """Five alerts naming a target that is not in the inventory: five failures, one line."""
    caplog.set_level(logging.INFO, logger="runbook.daemon")
    body = json.dumps({"alerts": [{"labels": {"alertname": "Loose", "box": "nowhere",
                                              "n": str(i)}} for i in range(5)]}).encode()
    assert send(daemon, body, sign(body)).status_code == 202
    wait_until(lambda: metric(daemon, 'runbook_work_failed_total{kind="run"}') == 5,
               "five failed work items")
    lines = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]


# Metrics and health (issue 18 item 10)


def test_metrics_need_a_token_by_default_and_healthz_says_nothing(
        daemon: RunningDaemon) -> None:
    assert httpx.get(daemon.url + "/metrics").status_code == 401
    assert daemon.get("/metrics", token="wrong").status_code == 401
    assert daemon.get("/metrics").status_code == 200  # a reader's token
    health = httpx.get(daemon.url + "/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}


def test_metrics_auth_none_and_a_scrape_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runbook_home: Path) -> None:
    monkeypatch.setenv("TEST_TOKEN", "intake-tok")
    monkeypatch.setenv("TEST_SCRAPE", "scrape-tok")
    open_config = write_world(tmp_path, "auth: {{mode: bearer, token_env: TEST_TOKEN}}\n"
                                        "metrics: {{auth: none}}\n")
    with daemon_in_thread(open_config, runbook_home, "intake-tok") as d:
        assert httpx.get(d.url + "/metrics").status_code == 200
    scrape_config = write_world(tmp_path, "auth: {{mode: bearer, token_env: TEST_TOKEN}}\n"
                                          "metrics: {{token_env: TEST_SCRAPE}}\n")
    with daemon_in_thread(scrape_config, runbook_home, "intake-tok") as d:
        assert d.get("/metrics", token="scrape-tok").status_code == 200
        assert d.get("/metrics", token="intake-tok").status_code == 401  # only the scrape token


# The sender's fingerprint (issue 18 item 7)


def am_alert(status: str, labels: dict[str, str], sent: str) -> bytes:
    return json.dumps({"version": "4", "groupKey": "g", "status": status, "receiver": "r",
                       "alerts": [{"status": status, "labels": labels,
                                   "fingerprint": sent}]}).encode()


def test_a_forged_resolved_with_the_same_fingerprint_does_not_close_another_run(
        daemon: RunningDaemon, slack: SlackStandIn) -> None:
    victim = {"alertname": "BoxTooHigh", "box": "box", "level": "3"}
    real = fingerprint(victim)
    path = "/v1/alerts/alertmanager"
    body = am_alert("firing", victim, real)
    assert send(daemon, body, sign(body), path).status_code == 202
    [run] = daemon.wait_run(lambda runs: len(runs) == 1
                            and runs[0]["status"] == "awaiting_approval")

    forged = am_alert("resolved", {"alertname": "BoxTooHigh", "box": "box", "x": "y"}, real)
    assert send(daemon, forged, sign(forged), path).status_code == 202
    wait_until(lambda: dispatched(daemon) and len(outcomes(daemon)) == 2, "the forged alert")
    groups = daemon.daemon.journal.read("SELECT resolved FROM alert_groups")
    assert groups == [(0,)]  # the victim's run stays open
    assert metric(daemon, "runbook_alerts_fingerprint_mismatch_total") == 1

    genuine = am_alert("resolved", victim, real)
    assert send(daemon, genuine, sign(genuine), path).status_code == 202
    slack.wait_for(lambda got: any(m["text"].startswith("RESOLVED") for m in got))
    assert [m["text"].split()[0] for m in slack.got] == ["INCIDENT", "RESOLVED"]
    assert daemon.daemon.journal.read("SELECT resolved FROM alert_groups") == [(1,)]
    events = daemon.daemon.journal.events(run["run_id"])
    assert [e.type for e in events].count("alert.resolved") == 1


# Labels choose targets only within the route's rule (issue 18 item 8)


def test_a_label_outside_the_allow_list_opens_no_run(
        daemon: RunningDaemon, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="runbook.daemon")
    for i in range(3):
        body = alert_body(box="journey-db", n=str(i))
        assert send(daemon, body, sign(body)).status_code == 202  # stored and answered
    wait_until(lambda: len(outcomes(daemon)) == 3 and dispatched(daemon), "dispatch")
    assert [o for _, o in outcomes(daemon)] == ["refused"] * 3
    assert daemon.get("/v1/runs").json()["runs"] == []
    assert metric(daemon, 'runbook_alerts_dispatched_total{outcome="refused"}') == 3
    lines = [r.getMessage() for r in caplog.records if "not allowed" in r.getMessage()]
    assert len(lines) == 1 and "'journey-db'" in lines[0]
    body = alert_body(box="box")  # the allowed one does open a run
    assert send(daemon, body, sign(body)).status_code == 202
    daemon.wait_run(lambda runs: len(runs) == 1)


def test_a_forged_fingerprint_cannot_forge_log_lines(
        daemon: RunningDaemon, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="runbook.daemon")
    body = am_alert("firing", {"alertname": "X"}, "abc\n2026 ERROR forged line" + "z" * 500)
    assert send(daemon, body, sign(body), "/v1/alerts/alertmanager").status_code == 202
    [line] = [r.getMessage() for r in caplog.records if "fingerprint" in r.getMessage()]
    assert "\n" not in line and len(line) < 300


def test_alert_labels_cannot_forge_log_lines(
        daemon: RunningDaemon, caplog: pytest.LogCaptureFixture) -> None:
    """A refused target's reason names the label's value; the value stays on one line."""
    caplog.set_level(logging.INFO, logger="runbook.daemon")
    body = alert_body(box="x\r\n2026 INFO runbook.daemon approved by alice\x1b[2J")
    assert send(daemon, body, sign(body)).status_code == 202
    wait_until(lambda: dispatched(daemon) and bool(outcomes(daemon)), "dispatch")
    [line] = [r.getMessage() for r in caplog.records if "not allowed" in r.getMessage()]
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
