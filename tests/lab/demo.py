"""The README's main job: start the lab, induce an incident, let runbook diagnose it, then
approve the proposed remedy and resume, as an on-call engineer would.

    python -m tests.lab.demo [SCENARIO] [--no-remedy]

Scenarios: pool (default), locks, slow (PostgreSQL); api-down, bad-deploy, memory-leak
(the demo API service in Docker, on 127.0.0.1:18080). The lab's DSNs go to .lab/env (not
printed: they hold the lab's passwords); `source .lab/env` lets you run `runbook` against
the same lab afterwards.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.lab.api import container_dsn, deploy, fault, start_api, wait_exit
from tests.lab.faults import Faults, LabDatabase, prepare
from tests.lab.postgres import ensure_demo_postgres

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = str(ROOT / ".venv" / "bin" / "runbook")
API_NAME, API_PORT = "runbook-lab-api", 18080
API_URL = f"http://127.0.0.1:{API_PORT}"


@dataclass(frozen=True)
class Scenario:
    fault: str  # what is induced, in words
    playbook: str
    remedy: str  # the one the demo's on-call engineer approves
    args: tuple[str, ...]
    induce: Callable[[Faults, LabDatabase], None]


def _api(db: LabDatabase, flavor: str = "good", mem_limit: str = "256m") -> None:
    start_api(API_NAME, container_dsn(db.app), flavor=flavor, mem_limit=mem_limit,
              port=API_PORT)


def _idle_transactions(faults: Faults, db: LabDatabase) -> None:
    faults.idle_in_transaction(20)
    time.sleep(2.2)


def _lock_pileup(faults: Faults, db: LabDatabase) -> None:
    faults.lock_pileup(waiters=3)


def _runaway_query(faults: Faults, db: LabDatabase) -> None:
    faults.long_query(600)
    time.sleep(2.2)


def _crash(faults: Faults, db: LabDatabase) -> None:
    _api(db)
    fault(API_URL, crash=True)
    wait_exit(API_NAME)


def _bad_deploy(faults: Faults, db: LabDatabase) -> None:
    _api(db, "good")
    # runbook sees the good image run (as it would have on any earlier check) ...
    subprocess.run([RUNBOOK, "run", "bad-deploy", "-t", "lab-api", "--no-input", *SHORT_WATCH],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    deploy(API_NAME, "bad")  # ... then version 1.5.0 goes out
    for _ in range(5):  # and users hit it
        httpx.get(f"{API_URL}/api/accounts", timeout=5)
        time.sleep(0.2)


def _leak(faults: Faults, db: LabDatabase) -> None:
    _api(db, mem_limit="512m")
    fault(API_URL, leak_mb_per_s=4)


# The playbooks watch a fix for the seeds' 15 minutes; the demo watches it for 5 seconds.
SHORT_WATCH = ("-p", "watch_for=5s")

SCENARIOS = {
    "pool": Scenario("20 API sessions left idle inside open transactions (22 slots)",
                     "db-pool-exhausted", "end-idle-transactions",
                     ("-t", "db=lab-db", "-p", "idle_after=2s"), _idle_transactions),
    "locks": Scenario("a batch job holds a row lock, idle; 3 API updates queue behind it",
                      "db-slow-or-blocked-queries", "end-idle-blockers", ("-t", "db=lab-db"),
                      _lock_pileup),
    "slow": Scenario("a report runs a 10-minute query", "db-slow-or-blocked-queries",
                     "cancel-long-queries", ("-t", "db=lab-db", "-p", "long_after=2s"),
                     _runaway_query),
    "api-down": Scenario("the API process crashes (exit code 3)", "api-down", "start-api",
                         ("-t", "api=lab-api", "-t", "db=lab-db", "-p", "deploy_within=0s",
                          *SHORT_WATCH),
                         _crash),
    "bad-deploy": Scenario("version 1.5.0 is deployed; /api/accounts now fails",
                           "bad-deploy", "roll-back", ("-t", "lab-api", *SHORT_WATCH),
                           _bad_deploy),
    "memory-leak": Scenario("the API leaks 4 MB/s", "memory-leak", "rolling-restart",
                            ("-t", "lab-api", "-p", "window=10s", *SHORT_WATCH), _leak),
}


def banner(text: str) -> None:
    bold = "\033[1m" if sys.stdout.isatty() else ""
    print(f"\n{bold}== {text}{chr(27) + '[0m' if bold else ''}", flush=True)


def runbook(*args: str) -> subprocess.CompletedProcess[str]:
    print(f"$ runbook {shlex.join(args)}", flush=True)
    return subprocess.run([RUNBOOK, *args], text=True, stdout=subprocess.PIPE, check=False)


def write_env(db: LabDatabase) -> Path:
    env = ROOT / ".lab" / "env"
    env.parent.mkdir(exist_ok=True)
    env.write_text(f"export RUNBOOK_LAB_DSN={shlex.quote(db.ro)}\n"
                   f"export RUNBOOK_LAB_OPS_DSN={shlex.quote(db.ops)}\n"
                   # the lab's inventory is used only when named: here, from any directory
                   f"export RUNBOOK_INVENTORY={shlex.quote(str(ROOT / 'inventory'))}\n")
    env.chmod(0o600)
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", nargs="?", choices=list(SCENARIOS), default="pool")
    parser.add_argument("--no-remedy", action="store_true",
                        help="stop after the diagnosis: leave the remedy proposed")
    args = parser.parse_args()
    scenario = SCENARIOS[args.scenario]

    banner("Lab: PostgreSQL 15 in container runbook-lab-db (127.0.0.1:55432)")
    db = prepare(ensure_demo_postgres(max_connections=25))
    env = write_env(db)
    os.environ["RUNBOOK_LAB_DSN"], os.environ["RUNBOOK_LAB_OPS_DSN"] = db.ro, db.ops
    os.environ["RUNBOOK_INVENTORY"] = str(ROOT / "inventory")
    with Faults(db) as faults:
        banner(f"Incident: {scenario.fault}")
        scenario.induce(faults, db)
        banner(f"Diagnose: {scenario.playbook} (read-only; remedies are only proposed)")
        first = runbook("run", scenario.playbook, *scenario.args, "--no-input")
        print(first.stdout, end="")
        run_id = next((line.split()[2] for line in first.stdout.splitlines()
                       if line.startswith("  runbook resume ")), None)
        if args.no_remedy or run_id is None:
            print(f"\nexit code {first.returncode}; `source {env.relative_to(ROOT)}` to use "
                  "runbook against the lab yourself")
            return first.returncode
        banner(f"Approve: the on-call engineer approves {scenario.remedy}, recorded in the "
               "journal")
        print(runbook("approve", run_id, scenario.remedy, "--as", "demo-oncall").stdout, end="")
        banner("Resume: the remedy runs through the gate, then verify checks the fix")
        second = runbook("resume", run_id, "--no-input")
        print(second.stdout, end="")
    from runner.paths import home

    print(f"\nRun directory: {home() / 'runs' / run_id}/ (run.json, events.jsonl, report.md, "
          "evidence/)")
    print(f"`source {env.relative_to(ROOT)}` to use runbook against the lab yourself; "
          "`runbook history` lists the runs.")
    verified = "VERIFY" in second.stdout and "  failed " not in second.stdout.split("VERIFY")[1]
    return 0 if verified else 1


if __name__ == "__main__":
    sys.exit(main())
