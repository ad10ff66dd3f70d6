"""The alert daemon with real peers: Debian's Alertmanager posts the real webhook, and for
the full chain a real Prometheus evaluates a real alert rule. No mocks: the daemon runs on
loopback (uvicorn in a thread), Alertmanager and Prometheus are processes of their own, the
incident is induced in the lab's PostgreSQL, and a local receiver stands in for Slack.

Missing binaries are a failure (scripts/setup installs them), never a skip.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.daemonkit import Receiver, RunningDaemon, daemon_in_thread, receiver, write_world
from tests.lab.alerting import (
    ALERTMANAGER_BIN,
    PROMETHEUS_BIN,
    WEBHOOK_PATH,
    PeerMissing,
    alertmanager,
    free_port,
    metric_value,
    prometheus,
    require_binary,
)
from tests.lab.faults import Faults, LabDatabase
from tests.scenarios.helpers import alive, wait_idle_in_transaction
from tests.support.polling import wait_for

pytestmark = pytest.mark.lab

INTAKE_TOKEN = "alerting-intake-tok-5Rw"
ALICE_TOKEN = "alerting-alice-tok-8Pn"


@pytest.fixture(autouse=True)
def peers_installed() -> None:
    missing = []
    for binary, package in ((ALERTMANAGER_BIN, "prometheus-alertmanager"),
                            (PROMETHEUS_BIN, "prometheus")):
        try:
            require_binary(binary, package)
        except PeerMissing as exc:
            missing.append(str(exc))
    if missing:
        pytest.fail("\n".join(missing), pytrace=False)


@pytest.fixture
def slack() -> Iterator[Receiver]:
    with receiver() as rec:
        yield rec


@pytest.fixture(autouse=True)
def tokens(monkeypatch: pytest.MonkeyPatch, slack: Receiver) -> None:
    monkeypatch.setenv("ALERTING_INTAKE_TOKEN", INTAKE_TOKEN)
    monkeypatch.setenv("ALERTING_ALICE_TOKEN", ALICE_TOKEN)
    monkeypatch.setenv("ALERTING_SLACK_URL", slack.url)


def text_of(message: dict[str, Any]) -> str:
    """Everything a person would read in a Block Kit message."""
    return message["text"] + "\n" + json.dumps(message["blocks"], ensure_ascii=False)


def titled(got: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [m for m in got if m["text"].startswith(prefix)]


def outcomes(daemon: RunningDaemon) -> dict[str, int]:
    rows = daemon.daemon.journal.read("SELECT outcome, count(*) FROM alerts GROUP BY outcome")
    return {str(outcome): int(n) for outcome, n in rows}


# 1. A real Alertmanager's webhook, a real incident in the lab, approval over HTTP.

POOL_CONFIG = """
auth: {mode: bearer, token_env: ALERTING_INTAKE_TOKEN}
approvers:
  alice: {token_env: ALERTING_ALICE_TOKEN}
routes:
  - name: pool
    match: ['alertname="PostgresPoolExhausted"']
    playbook: db-pool-exhausted
    targets: {db: "{{ labels.instance }}"}
    params: {idle_after: 1s}
notify:
  - {kind: slack, url_env: ALERTING_SLACK_URL, retries: 1}
"""  # playbooks and inventory: the shipped ones (conftest points RUNBOOK_* at them)


def idle_in_transaction(db: LabDatabase, pids: list[int]) -> set[int]:
    with psycopg.connect(db.admin, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s) "
                            "AND state = 'idle in transaction'", (pids,)).fetchall()
    return {row[0] for row in rows}


def test_alertmanager_webhook_diagnoses_the_lab_pool_and_an_http_approval_fixes_it(
        lab: LabDatabase, faults: Faults, tmp_path: Path, runbook_home: Path,
        slack: Receiver) -> None:
    from runner.registry import default_registry

    config = tmp_path / "daemon.yaml"
    config.write_text(POOL_CONFIG)
    with daemon_in_thread(config, runbook_home, INTAKE_TOKEN,
                          registry=default_registry()) as daemon, \
            alertmanager(tmp_path, daemon_url=daemon.url, token=INTAKE_TOKEN) as am:
        pids = faults.idle_in_transaction(20)  # 20 of the 22 slots non-superusers may use
        wait_idle_in_transaction(lab, pids, seconds=1)  # longer than the route's idle_after
        fired = am.fire({"alertname": "PostgresPoolExhausted", "instance": "lab-db",
                         "severity": "page"},
                        {"summary": "journey-api: too many connections"})

        # Alertmanager -> daemon -> diagnosis -> INCIDENT ALERT in the channel.
        slack.wait_for(lambda got: bool(titled(got, "INCIDENT ALERT")), timeout=60)
        [incident] = titled(slack.got, "INCIDENT ALERT")
        assert incident["text"] == "INCIDENT ALERT [P1] db-pool-exhausted"
        text = text_of(incident)
        assert re.search(r"\d+ of 22 connections in use", text), text  # pool-saturated
        assert "20 session(s) idle inside a transaction" in text
        assert "journey-api: too many connections" in text  # the alert's own summary
        assert "end-idle-transactions: terminate 20 backend(s)" in text  # proposed, waits
        [run] = daemon.wait_run(lambda runs: len(runs) == 1)
        assert run["status"] == "awaiting_approval"
        assert run["requested_by"] == "alert:pool"
        assert run["targets"]["db"]["name"] == "lab-db"  # from the alert's instance label
        [remedy] = [r for r in run["remedies"] if r["id"] == "end-idle-transactions"]
        assert remedy["status"] == "proposed"
        assert {b["pid"] for b in remedy["args"]["backends"]} == set(pids)
        assert alive(lab, pids) == set(pids)  # nothing changes before an approval
        stored = daemon.daemon.journal.read("SELECT source, status FROM alerts ORDER BY id")
        assert stored[0] == ("alertmanager", "firing")

        # Approval over HTTP: the daemon runs the remedy through the gate.
        answer = daemon.post(f"/v1/runs/{run['run_id']}/approvals",
                             {"remedy": "end-idle-transactions"}, token=ALICE_TOKEN)
        assert answer.status_code == 202, answer.text
        [run] = daemon.wait_run(lambda runs: runs[0]["status"] not in
                                {"awaiting_approval", "running"}, timeout=60)
        assert run["status"] == "completed", run
        assert idle_in_transaction(lab, pids) == set()
        assert alive(lab, pids) == set()
        slack.wait_for(lambda got: bool(titled(got, "UPDATE")))
        [update] = titled(slack.got, "UPDATE")
        assert update["text"] == "UPDATE [P1] db-pool-exhausted: completed"
        assert "end-idle-transactions: succeeded (approved by alice)" in text_of(update)
        assert "idle_cleared: passed" in text_of(update)

        # Alertmanager resolves the alert: RESOLVED in the channel, and no new run.
        am.resolve(fired)
        slack.wait_for(lambda got: bool(titled(got, "RESOLVED")), timeout=30)
        [resolved] = titled(slack.got, "RESOLVED")
        assert resolved["text"] == "RESOLVED [P1] db-pool-exhausted"
        assert "end-idle-transactions (alice)" in text_of(resolved)
        wait_for(lambda: daemon.daemon.inbox.undispatched() == 0, "every alert routed")
        assert [r["run_id"] for r in daemon.get("/v1/runs").json()["runs"]] == [run["run_id"]]
        counts = outcomes(daemon)
        assert counts["started"] == 1 and counts["resolved"] == 1, counts
        assert set(counts) <= {"started", "joined", "resolved"}  # repeats join the run
        assert len(titled(slack.got, "INCIDENT ALERT")) == 1
        assert len(titled(slack.got, "RESOLVED")) == 1


# 2. The full chain: Prometheus rule -> Alertmanager -> daemon -> run -> channel, and back.

CHAIN_CONFIG = """
auth: {{mode: bearer, token_env: ALERTING_INTAKE_TOKEN}}
routes:
  - name: lab-api-down
    match: ['alertname="LabApiDown"', 'job="lab-api"']
    playbook: mem-incident
    targets: {{box: box}}
    params: {{value: "{{{{ labels.level }}}}"}}
    group_by: [alertname, instance]
notify:
  - {{kind: slack, url_env: ALERTING_SLACK_URL, retries: 1}}
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""

RULES = """
groups:
  - name: lab
    rules:
      - alert: LabApiDown
        expr: up{job="lab-api"} == 0
        for: 0s
        labels: {level: "4"}
        annotations: {summary: "lab-api does not answer its scrape"}
"""


class MetricsTarget:
    """A scrape target on a fixed loopback port that answers only once started."""

    def __init__(self) -> None:
        self.port = free_port()  # closed until start(): Prometheus finds it down
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b"# TYPE lab_api_requests_total counter\nlab_api_requests_total 1\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def test_a_prometheus_rule_on_a_down_target_reaches_the_channel_through_alertmanager(
        tmp_path: Path, runbook_home: Path, slack: Receiver) -> None:
    target = MetricsTarget()
    config = write_world(tmp_path, CHAIN_CONFIG)
    try:
        with daemon_in_thread(config, runbook_home, INTAKE_TOKEN) as daemon, \
                alertmanager(tmp_path, daemon_url=daemon.url,
                             token=INTAKE_TOKEN) as am, \
                prometheus(tmp_path, alertmanager=am, rules=RULES,
                           scrape={"lab-api": [f"127.0.0.1:{target.port}"]}) as prom:
            # Prometheus finds the target down, fires, Alertmanager posts the webhook, the
            # daemon runs the routed playbook and reports.
            slack.wait_for(lambda got: bool(titled(got, "INCIDENT ALERT")), timeout=60)
            [firing] = prom.alerts()
            assert firing["state"] == "firing"
            assert firing["labels"]["instance"] == f"127.0.0.1:{target.port}"
            [incident] = titled(slack.got, "INCIDENT ALERT")
            assert incident["text"] == "INCIDENT ALERT [P2] mem-incident"
            text = text_of(incident)
            assert "value is 4" in text  # the rule's label, through the route's params
            assert "lab-api does not answer its scrape" in text  # the rule's annotation
            [run] = daemon.wait_run(lambda runs: len(runs) == 1)
            assert run["status"] == "awaiting_approval" and run["params"] == {"value": 4}
            stored = daemon.daemon.journal.read("SELECT alert FROM alerts ORDER BY id LIMIT 1")
            first = json.loads(stored[0][0])
            assert first["labels"]["job"] == "lab-api"
            assert "/graph?g0.expr=" in am.alerts()[0]["generatorURL"]  # Prometheus sent it

            # The target comes back: the rule stops firing, Prometheus resolves the alert,
            # Alertmanager sends it resolved, the daemon says RESOLVED; no new run.
            target.start()
            slack.wait_for(lambda got: bool(titled(got, "RESOLVED")), timeout=60)
            assert prom.alerts() == []
            assert titled(slack.got, "RESOLVED")[0]["text"] == "RESOLVED [P2] mem-incident"
            assert len(daemon.get("/v1/runs").json()["runs"]) == 1
            assert outcomes(daemon)["started"] == 1
    finally:
        target.stop()


# 3. What a real Alertmanager gets when the daemon refuses its webhook.

REFUSING_CONFIG = """
auth: {{mode: bearer, token_env: ALERTING_INTAKE_TOKEN}}
body_limit: 2048
routes:
  - {{name: any, match: ['alertname=~".+"'], playbook: mem-incident, targets: {{box: box}}}}
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""


@pytest.mark.parametrize("case", ["wrong-token", "wrong-endpoint", "group-too-big"])
def test_a_refused_webhook_is_a_clear_4xx_that_alertmanager_logs_and_does_not_retry(
        case: str, tmp_path: Path, runbook_home: Path) -> None:
    token, path, alerts, status, says = {
        # Alertmanager configured with a stale token.
        "wrong-token": ("stale-token", WEBHOOK_PATH, 1, 401,
                        "unauthorized: a valid bearer token is required"),
        # Alertmanager pointed at the generic endpoint: its payload is not a generic alert.
        "wrong-endpoint": (INTAKE_TOKEN, "/v1/alerts", 1, 400, "invalid payload"),
        # A group whose webhook is larger than body_limit (max_alerts: 0 sends them all).
        "group-too-big": (INTAKE_TOKEN, WEBHOOK_PATH, 12, 413, "body larger than 2048 bytes"),
    }[case]
    config = write_world(tmp_path, REFUSING_CONFIG)
    with daemon_in_thread(config, runbook_home, INTAKE_TOKEN) as daemon, \
            alertmanager(tmp_path, daemon_url=daemon.url, path=path, token=token,
                         group_by=["alertname"]) as am:
        am.post_alerts([{"labels": {"alertname": "Refused", "instance": f"host-{i}"},
                         "annotations": {"summary": "x" * 100}} for i in range(alerts)])
        line = am.wait_log("Notify for alerts failed")[0]
        assert f"unexpected status code {status}" in line, line
        assert says in line, line  # the daemon's answer, as Alertmanager reports it
        # A 4xx is final for Alertmanager: one attempt, no retries hammering the daemon.
        assert "unrecoverable error after 1 attempts" in line, line
        if case == "wrong-endpoint":
            assert "version: Extra inputs are not permitted" in line, line
        assert am.metric("alertmanager_notifications_failed_total",
                         integration="webhook") >= 1
        assert daemon.daemon.journal.read("SELECT count(*) FROM alerts") == [(0,)]
        metrics = daemon.get("/metrics").text
        assert metric_value(metrics, "runbook_alerts_received_total") == 0
        assert daemon.get("/v1/runs").json()["runs"] == []


# 4. Resolution as Alertmanager sends it: per alert, for groups of several alerts.

GROUP_CONFIG = """
auth: {{mode: bearer, token_env: ALERTING_INTAKE_TOKEN}}
max_concurrent_runs: 1
routes:
  - name: boxes
    match: ['alertname="BoxDown"']
    playbook: mem-incident
    targets: {{box: box}}
    group_by: [alertname, cluster]
  - name: slow
    match: ['alertname="SlowBox"']
    playbook: slow-incident
    targets: {{box: box}}
notify:
  - {{kind: slack, url_env: ALERTING_SLACK_URL, retries: 1}}
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""

SLOW_PLAYBOOK = """
name: slow-incident
summary: diagnosis waits for a file, so that it holds the only worker
targets:
  box: {kind: mem}
steps:
  - {id: wait, run: mem.wait_for, with: {file: release, value: 1}}
findings:
  - {id: seen, when: steps.wait.ok, say: seen}
"""


def test_resolved_is_said_once_every_alert_of_the_group_has_resolved(
        tmp_path: Path, runbook_home: Path, slack: Receiver) -> None:
    """Two alerts (two hosts of one cluster) make one group and one run. When only one of
    them resolves, Alertmanager's webhook carries it `resolved` and the other still
    `firing` (the group's status is `firing`): the incident is not over. RESOLVED comes
    once, when the last one resolves."""
    config = write_world(tmp_path, GROUP_CONFIG)
    with daemon_in_thread(config, runbook_home, INTAKE_TOKEN) as daemon, \
            alertmanager(tmp_path, daemon_url=daemon.url, token=INTAKE_TOKEN,
                         group_by=["alertname", "cluster"]) as am:
        a = am.fire({"alertname": "BoxDown", "cluster": "c1", "instance": "a"})
        b = am.fire({"alertname": "BoxDown", "cluster": "c1", "instance": "b"})
        slack.wait_for(lambda got: bool(titled(got, "INCIDENT ALERT")), timeout=30)
        daemon.wait_run(lambda runs: len(runs) == 1 and runs[0]["status"] == "awaiting_approval")

        am.resolve(a)  # b still fires
        wait_until_routed(daemon, status="resolved", count=1)
        # The dispatcher decides "the incident is over" in the transaction that routes the
        # alert (alert_groups.resolved), and says RESOLVED only after that.
        assert group_resolved(daemon) == [0], "a's resolve closed the group while b fires"
        assert titled(slack.got, "RESOLVED") == [], (
            "RESOLVED was posted while alert b of the group still fires")

        am.resolve(b)
        slack.wait_for(lambda got: bool(titled(got, "RESOLVED")), timeout=30)
        # Said once: the claim that precedes RESOLVED is stored, and a second one is refused.
        assert group_resolved(daemon) == [1]
        [run] = daemon.wait_run(lambda runs: len(runs) == 1)
        assert not daemon.daemon.inbox.claim_resolved_notice(run["run_id"])
        assert len(titled(slack.got, "RESOLVED")) == 1
        assert len(daemon.get("/v1/runs").json()["runs"]) == 1


def test_an_alert_resolved_while_its_run_waits_in_the_queue_still_gets_its_resolved(
        tmp_path: Path, runbook_home: Path, slack: Receiver) -> None:
    """One worker, held by a slow run; a second incident's run waits in the queue and its
    alert resolves meanwhile. The channel must not end up with an INCIDENT ALERT for it
    and never a RESOLVED (either the queued run is dropped, or RESOLVED follows it)."""
    config = write_world(tmp_path, GROUP_CONFIG)
    (tmp_path / "playbooks" / "slow-incident.yaml").write_text(SLOW_PLAYBOOK)
    with daemon_in_thread(config, runbook_home, INTAKE_TOKEN) as daemon, \
            alertmanager(tmp_path, daemon_url=daemon.url, token=INTAKE_TOKEN,
                         group_by=["alertname", "cluster"]) as am:
        am.fire({"alertname": "SlowBox", "instance": "s"})
        daemon.wait_run(lambda runs: len(runs) == 1 and runs[0]["status"] == "running")
        box = am.fire({"alertname": "BoxDown", "cluster": "c2", "instance": "x"})
        wait_until_routed(daemon, status="firing", count=2)
        assert daemon.daemon.inbox.queue_depth() == 1  # BoxDown's run waits for the worker

        am.resolve(box)
        wait_until_routed(daemon, status="resolved", count=1)
        (tmp_path / "box" / "release").touch()  # the worker is free again
        # BoxDown's work item is done: dropped before it ran (no run, so nothing can be
        # said of it), or run; then its RESOLVED follows, and is waited for.
        [(run_id,)] = wait_for(lambda: daemon.daemon.journal.read(
            "SELECT run_id FROM work WHERE kind = 'run' AND playbook = 'mem-incident' "
            "AND status = 'done'"),
            "BoxDown's work item to be done")
        if run_id is not None:
            slack.wait_for(lambda got: any(m["text"].startswith("RESOLVED")
                                           and "mem-incident" in m["text"] for m in got))
        boxes = [m for m in slack.got if "mem-incident" in m["text"]]
        said = [m["text"].split(" [")[0] for m in boxes]
        assert said in ([], ["INCIDENT ALERT", "RESOLVED"]), (
            f"the channel got {said} for an incident whose alert resolved before its run "
            "started")


def wait_until_routed(daemon: RunningDaemon, status: str, count: int) -> None:
    """Until `count` alerts of `status` are stored with their outcome: the dispatcher has
    routed them and acted on that (the outcome is written in the same transaction)."""
    wait_for(lambda: int(daemon.daemon.journal.read(
        "SELECT count(*) FROM alerts WHERE status = ? AND outcome IS NOT NULL",
        (status,))[0][0]) >= count, f"{count} {status} alert(s) routed")


def group_resolved(daemon: RunningDaemon) -> list[int]:
    return [int(r[0]) for r in daemon.daemon.journal.read("SELECT resolved FROM alert_groups")]
