"""Alert received -> INCIDENT ALERT delivered, over lab incidents of `db-pool-exhausted`,
beside the physical floor: the sum of the playbook's probe times in the same run.

    .venv/bin/python -m benchmarks.alert_latency [--incidents N]

A real daemon (uvicorn in a thread, the installed backends) routes each alert to
db-pool-exhausted on a throwaway lab PostgreSQL where 20 sessions sit idle in a transaction;
its notifier posts to the local Slack stand-in (tests/slackhook.py). Latency is measured
from just before the alert's POST to the moment the stand-in has the INCIDENT ALERT (polled
every 2 ms). Between incidents the idle sessions are ended and made again. Not a test: the
machine is noisy; the figures go to benchmarks/README.md with the command.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from runner.registry import default_registry
from tests.daemonkit import daemon_in_thread
from tests.lab.faults import Faults, prepare
from tests.lab.postgres import postgres_container
from tests.slackhook import slack_stand_in

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """
auth: {{mode: bearer, token_env: BENCH_INTAKE}}
routes:
  - name: pool
    match: ['alertname="DbPoolExhausted"']
    playbook: db-pool-exhausted
    targets: {{db: lab-db}}
    params: {{idle_after: 1s}}
    group_by: [incident]
notify:
  - {{kind: slack, url_env: BENCH_SLACK, retries: 0}}
playbooks: [{playbooks}]
inventory: [{inventory}]
"""


def _has(count: int, runs: list[dict[str, Any]]) -> bool:
    return len(runs) == count and runs[0]["status"] != "running"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=20)
    args = parser.parse_args()
    latencies: list[float] = []
    floors: list[float] = []
    with postgres_container(max_connections=40) as pg, slack_stand_in() as slack, \
            tempfile.TemporaryDirectory(prefix="runbook-bench-") as scratch:
        db = prepare(pg.get_connection_url(driver=None))
        os.environ.update({"RUNBOOK_LAB_DSN": db.ro, "RUNBOOK_LAB_OPS_DSN": db.ops,
                           "BENCH_INTAKE": "bench-tok", "BENCH_SLACK": slack.url})
        config = Path(scratch) / "daemon.yaml"
        config.write_text(CONFIG.format(playbooks=ROOT / "playbooks",
                                        inventory=ROOT / "inventory" / "lab.yaml"))
        with daemon_in_thread(config, Path(scratch) / "home", "bench-tok",
                              registry=default_registry()) as daemon:
            for n in range(args.incidents):
                with Faults(db) as faults:
                    faults.idle_in_transaction(20)
                    time.sleep(1.2)  # past idle_after
                    seen = len(slack.got)
                    posted = time.monotonic()
                    answer = daemon.post("/v1/alerts", {"labels": {
                        "alertname": "DbPoolExhausted", "incident": str(n)}})
                    assert answer.status_code == 202, answer.text
                    while not any("INCIDENT ALERT" in str(m) for m in slack.got[seen:]):
                        assert time.monotonic() - posted < 60, "no INCIDENT ALERT in 60 s"
                        time.sleep(0.002)
                    latencies.append(time.monotonic() - posted)
                    run: dict[str, Any] = daemon.wait_run(partial(_has, n + 1))[0]
                    floors.append(sum(s["duration_ms"] or 0 for s in run["steps"]) / 1000)
    gap = [lat - floor for lat, floor in zip(latencies, floors, strict=True)]
    print(f"{args.incidents} incidents of db-pool-exhausted (lab PostgreSQL, Slack stand-in)")
    for name, values in (("alert -> INCIDENT ALERT", latencies),
                         ("sum of probe times (floor)", floors),
                         ("latency - floor", gap)):
        print(f"{name:<28} p50 {statistics.median(values) * 1000:7.0f} ms   "
              f"p95 {percentile(values, 0.95) * 1000:7.0f} ms")


if __name__ == "__main__":
    main()
