"""Daemon replicas sharing one journal on the lab's PostgreSQL: real processes on loopback,
really killed. A storm spread over them opens one run per group; a replica killed mid-run is
taken over; an approval posted to one is executed by another; one target is changed by one
remedy at a time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from runner.journal import Journal
from tests.daemonkit import DaemonProcess, write_world
from tests.lab.faults import LabDatabase
from tests.scenarios.test_journal_postgres import fresh_database
from tests.support.polling import wait_for

TOKEN = "replica-intake"

GATED = """
name: gated
summary: diagnosis waits for a gate file (named by the alert), then proposes a fix
targets:
  box: {kind: mem}
params:
  gate: {type: string, default: open}
steps:
  - {id: wait, run: mem.wait_for, with: {file: "{{ params.gate }}", value: 1}}
findings:
  - {id: seen, when: steps.wait.ok, say: seen}
remedies:
  - {id: fix, run: mem.act, with: {items: [1], wait_for: release-act}}
"""

CONFIG = """
auth: {{mode: bearer, token_env: REPLICA_TOKEN}}
max_concurrent_runs: 1
approvers:
  carol: {{token_env: REPLICA_CAROL}}
journal: {{dsn_env: REPLICA_DSN}}
routes:
  - name: gated
    match: ['alertname="Gated"']
    playbook: gated
    targets: {{box: box}}
    params: {{gate: "{{{{ labels.gate }}}}"}}
    group_by: [group]
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""


class Replicas:
    def __init__(self, root: Path, dsn: str) -> None:
        self.root, self.dsn = root, dsn
        self.config = write_world(root, CONFIG)
        (root / "playbooks" / "gated.yaml").write_text(GATED)
        (root / "box" / "open").write_text("")
        self.all: list[DaemonProcess] = []

    def start(self) -> DaemonProcess:
        replica = DaemonProcess(self.config, self.root / f"home-{len(self.all)}", TOKEN,
                                {"REPLICA_TOKEN": TOKEN, "REPLICA_CAROL": "carol-token",
                                 "REPLICA_DSN": self.dsn})
        replica.start()
        self.all.append(replica)
        return replica

    def journal(self) -> Journal:
        return Journal(self.root / "reader", dsn=self.dsn)

    def read(self, sql: str) -> list[Any]:
        with self.journal() as journal:
            return journal.read(sql)


@pytest.fixture
def replicas(tmp_path: Path, lab_db: LabDatabase) -> Iterator[Replicas]:
    for dsn in fresh_database(lab_db):
        group = Replicas(tmp_path, dsn)
        try:
            yield group
        finally:
            for replica in group.all:  # no graceful stop: a run may wait on a gate forever
                if replica.proc is not None and replica.proc.poll() is None:
                    replica.kill9()


def alert(group: str, gate: str = "open") -> dict[str, Any]:
    return {"labels": {"alertname": "Gated", "group": group, "gate": gate}}


def test_a_storm_spread_over_three_replicas_opens_one_run_per_group(
        replicas: Replicas) -> None:
    three = [replicas.start() for _ in range(3)]
    answers: list[int] = []

    def send(replica: DaemonProcess, offset: int) -> None:
        for i in range(12):
            answers.append(replica.post("/v1/alerts", alert(f"g{(i + offset) % 4}"))
                           .status_code)

    senders = [threading.Thread(target=send, args=(r, n)) for n, r in enumerate(three)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(timeout=120)
    assert answers == [202] * 36
    wait_for(lambda: replicas.read("SELECT count(*) FROM alerts WHERE outcome IS NULL")
             == [(0,)], "every alert to be dispatched")
    outcomes = dict(replicas.read("SELECT outcome, count(*) FROM alerts GROUP BY outcome"))
    assert outcomes == {"started": 4, "joined": 32}
    wait_for(lambda: len(three[0].runs()) == 4, "one run per group")
    assert {r["status"] for r in three[2].runs()} <= {"running", "awaiting_approval"}


def owner_pid(replicas: Replicas, run_id: str) -> int:
    """The pid of the process driving a running run."""
    [(owner,)] = replicas.read(f"SELECT owner FROM runs WHERE id='{run_id}'")
    return int(owner.rsplit(":", 2)[1])


def test_a_replica_killed_mid_run_is_taken_over_and_nothing_is_lost(
        replicas: Replicas) -> None:
    a, b = replicas.start(), replicas.start()
    assert a.post("/v1/alerts", alert("only", gate="later")).status_code == 202
    wait_for(lambda: bool(b.runs()) and b.runs()[0]["status"] == "running", "the run")
    run_id = str(b.runs()[0]["run_id"])
    holder, other = (a, b) if owner_pid(replicas, run_id) == a.proc.pid else (b, a)  # type: ignore[union-attr]
    holder.kill9()  # mid-diagnosis: its step waits for the gate
    (replicas.root / "box" / "later").write_text("")
    wait_for(lambda: other.runs()[0]["status"] == "awaiting_approval",
             "the other replica to take the run over", timeout=90)
    with replicas.journal() as journal:
        types = [e.type for e in journal.events(run_id)]
    assert "run.interrupted" in types and "run.resumed" in types  # taken over, carried on
    assert replicas.read("SELECT count(*) FROM alerts WHERE outcome IS NULL") == [(0,)]


def test_an_approval_posted_to_one_replica_is_executed_by_another(
        replicas: Replicas) -> None:
    a = replicas.start()
    a.post("/v1/alerts", alert("busy", gate="never"))  # a's one worker waits on it
    wait_for(lambda: bool(a.runs()) and a.runs()[0]["status"] == "running", "a busy")
    b = replicas.start()
    a.post("/v1/alerts", alert("fixme"))
    wait_for(lambda: any(r["status"] == "awaiting_approval" for r in b.runs()), "a proposal")
    run_id = next(str(r["run_id"]) for r in b.runs() if r["status"] == "awaiting_approval")
    (replicas.root / "box" / "release-act").write_text("")
    assert a.post(f"/v1/runs/{run_id}/approvals", {"remedy": "fix"},
                  token="carol-token").status_code == 202
    wait_for(lambda: any(r["run_id"] == run_id and r["status"] == "completed"
                         for r in b.runs()), "the remedy to run")
    [(owner,)] = replicas.read(f"SELECT owner FROM remedy_attempts WHERE run_id='{run_id}'")
    assert int(owner.rsplit(":", 2)[1]) == b.proc.pid  # type: ignore[union-attr]


def test_two_replicas_never_change_one_target_at_once(replicas: Replicas) -> None:
    a, b = replicas.start(), replicas.start()
    for group in ("x", "y"):
        a.post("/v1/alerts", alert(group))
    wait_for(lambda: [r["status"] for r in a.runs()] == ["awaiting_approval"] * 2,
             "two proposals on the same box")
    for run in a.runs():
        assert b.post(f"/v1/runs/{run['run_id']}/approvals", {"remedy": "fix"},
                      token="carol-token").status_code == 202
    wait_for(lambda: (replicas.root / "box" / "actions.jsonl").exists(), "a remedy to start")
    (replicas.root / "box" / "release-act").write_text("")
    wait_for(lambda: any(r["status"] == "completed" for r in a.runs()), "a remedy to end")
    spans = []
    with replicas.journal() as journal:
        for run in a.runs():
            events = journal.events(str(run["run_id"]))
            started = [e.at for e in events if e.type == "remedy.started"]
            ended = [e.at for e in events if e.type == "remedy.finished"]
            if started:
                spans.append((datetime.fromisoformat(started[0]),
                              datetime.fromisoformat(ended[0]) if ended else datetime.max))
            else:  # it found the box busy, and says so
                assert any("remediated by run" in str(e.data.get("reason", ""))
                           for e in events if e.type == "remedy.skipped"), events
    spans.sort()
    assert spans and all(end <= start for (_, end), (start, _) in pairwise(spans))
