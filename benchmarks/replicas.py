"""Intake and dispatch with 1, 2 and 3 daemon replicas on a PostgreSQL journal, beside one
daemon on SQLite: ratios from one run.

    .venv/bin/python -m benchmarks.replicas [--alerts N] [--groups G] [--senders S]

Each daemon is `runbook daemon` as a real process on loopback (the `mem` backend, a
one-step playbook, 2 workers each); the journal's PostgreSQL is the lab image in a
throwaway container (a fresh database per configuration). S sender threads post N
single-alert webhooks over G group keys, spread round-robin over the replicas. Reported:
alerts stored per second (every 202 follows its COMMIT), and the time until every alert was
dispatched and every run (one per group, asserted) had finished. Not a test: the machine is
noisy; the figures go to benchmarks/README.md with the command.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.conninfo import make_conninfo

from runner.journal import Journal
from tests.daemonkit import DaemonProcess, write_world
from tests.support.polling import wait_for

TOKEN = "bench-intake"
CONFIG = """
auth: {{mode: bearer, token_env: BENCH_TOKEN}}
max_concurrent_runs: 2
JOURNAL
routes:
  - name: mem
    match: ['alertname="Bench"']
    playbook: mem-incident
    targets: {{box: box}}
    group_by: [group]
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""


@contextmanager
def postgres() -> Iterator[str]:
    from tests.lab.postgres import postgres_container

    with postgres_container(max_connections=50) as container:
        yield container.get_connection_url(driver=None)


def fresh(admin: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}".encode())
    return make_conninfo(admin, dbname=name)


def measure(replicas: int, dsn: str | None, alerts: int, groups: int,
            senders: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="runbook-bench-") as scratch:
        root = Path(scratch)
        journal_line = "journal: {{dsn_env: BENCH_DSN}}" if dsn else ""
        config = write_world(root, CONFIG.replace("JOURNAL", journal_line))
        env = {"BENCH_TOKEN": TOKEN, **({"BENCH_DSN": dsn} if dsn else {})}
        daemons = [DaemonProcess(config, root / (f"home-{i}" if dsn else "home"), TOKEN, env)
                   for i in range(replicas)]
        for daemon in daemons:
            daemon.start()
        try:
            reader = Journal(daemons[0].home, dsn=dsn or "")
            started = time.monotonic()
            _send(daemons, alerts, groups, senders)
            stored = time.monotonic() - started
            wait_for(lambda: reader.read("SELECT count(*) FROM alerts WHERE outcome IS NULL")
                     [0][0] == 0, "every alert dispatched", timeout=600, every=0.05)
            dispatched = time.monotonic() - started
            wait_for(lambda: reader.read("SELECT count(*) FROM runs WHERE status NOT IN "
                                         "('running')")[0][0] == groups,
                     "every run finished", timeout=600, every=0.05)
            finished = time.monotonic() - started
            runs = reader.read("SELECT count(*) FROM runs")[0][0]
            assert runs == groups, f"{runs} runs for {groups} groups"
            reader.close()
        finally:
            for daemon in daemons:
                daemon.stop()
    return {"replicas": replicas, "journal": "postgresql" if dsn else "sqlite",
            "alerts_per_s": alerts / stored, "dispatched_s": dispatched,
            "finished_s": finished}


def _send(daemons: list[DaemonProcess], alerts: int, groups: int, senders: int) -> None:
    def sender(index: int) -> None:
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            for n in range(index, alerts, senders):
                daemon = daemons[n % len(daemons)]
                answer = http.post(daemon.url + "/v1/alerts", json={
                    "labels": {"alertname": "Bench", "group": f"g{n % groups}"}})
                assert answer.status_code == 202, answer.text

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1500)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--senders", type=int, default=6)
    args = parser.parse_args()
    results = [measure(1, None, args.alerts, args.groups, args.senders)]
    with postgres() as admin:
        for replicas in (1, 2, 3):
            results.append(measure(replicas, fresh(admin), args.alerts, args.groups,
                                   args.senders))
    base = results[0]
    print(f"{args.alerts} alerts over {args.groups} groups, {args.senders} senders")
    print("journal     replicas  stored alerts/s (ratio)  dispatched s  runs finished s "
          "(ratio)")
    for r in results:
        print(f"{r['journal']:<11} {r['replicas']:>8}  {r['alerts_per_s']:>9.0f} "
              f"({r['alerts_per_s'] / base['alerts_per_s']:.2f}x)  {r['dispatched_s']:>12.2f}"
              f"  {r['finished_s']:>15.2f} ({r['finished_s'] / base['finished_s']:.2f}x)")


if __name__ == "__main__":
    main()
