"""The README's main job: start the lab, induce an incident, let runbook diagnose it, then
approve the proposed remedy and resume, as an on-call engineer would.

    python -m tests.lab.demo [pool|locks|slow] [--no-remedy]

The lab's DSNs go to .lab/env (not printed: they hold the lab's passwords), so that
`source .lab/env` lets you run `runbook` against the same lab afterwards.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from tests.lab.faults import Faults, LabDatabase, prepare
from tests.lab.postgres import ensure_demo_postgres

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = str(ROOT / ".venv" / "bin" / "runbook")

SCENARIOS = {
    # name: (playbook, remedy to approve, params, what the fault is)
    "pool": ("db-pool-exhausted", "end-idle-transactions", ["idle_after=2s"],
             "20 API sessions left idle inside open transactions (22 slots)"),
    "locks": ("db-slow-or-blocked-queries", "end-idle-blockers", [],
              "a batch job holds a row lock, idle; 3 API updates queue behind it"),
    "slow": ("db-slow-or-blocked-queries", "cancel-long-queries", ["long_after=2s"],
             "a report runs a 10-minute query"),
}


def banner(text: str) -> None:
    bold = "\033[1m" if sys.stdout.isatty() else ""
    reset = "\033[0m" if bold else ""
    print(f"\n{bold}== {text}{reset}", flush=True)


def runbook(*args: str) -> subprocess.CompletedProcess[str]:
    print(f"$ runbook {shlex.join(args)}", flush=True)
    return subprocess.run([RUNBOOK, *args], text=True, stdout=subprocess.PIPE, check=False)


def induce(faults: Faults, scenario: str) -> None:
    if scenario == "pool":
        faults.idle_in_transaction(20)
    elif scenario == "locks":
        faults.lock_pileup(waiters=3)
    else:
        faults.long_query(600)
    time.sleep(2.2)  # older than the thresholds the demo passes


def write_env(db: LabDatabase) -> Path:
    env = ROOT / ".lab" / "env"
    env.parent.mkdir(exist_ok=True)
    env.write_text(f"export RUNBOOK_LAB_DSN={shlex.quote(db.ro)}\n"
                   f"export RUNBOOK_LAB_OPS_DSN={shlex.quote(db.ops)}\n")
    env.chmod(0o600)
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", nargs="?", choices=sorted(SCENARIOS), default="pool")
    parser.add_argument("--no-remedy", action="store_true",
                        help="stop after the diagnosis: leave the remedy proposed")
    args = parser.parse_args()
    playbook, remedy, params, fault = SCENARIOS[args.scenario]

    banner("Lab: PostgreSQL 15 in container runbook-lab-db (127.0.0.1:55432)")
    db = prepare(ensure_demo_postgres(max_connections=25))
    env = write_env(db)
    os.environ["RUNBOOK_LAB_DSN"], os.environ["RUNBOOK_LAB_OPS_DSN"] = db.ro, db.ops
    with Faults(db) as faults:
        banner(f"Incident: {fault}")
        induce(faults, args.scenario)
        banner(f"Diagnose: {playbook} (read-only; remedies are only proposed)")
        param_args = [a for p in params for a in ("--param", p)]
        first = runbook("run", playbook, "--target", "db=lab-db", *param_args, "--no-input")
        print(first.stdout, end="")
        run_id = next((line.split()[2] for line in first.stdout.splitlines()
                       if line.startswith("  runbook resume ")), None)
        if args.no_remedy or run_id is None:
            print(f"\nexit code {first.returncode}; `source {env.relative_to(ROOT)}` to use "
                  "runbook against the lab yourself")
            return first.returncode
        banner(f"Approve: the on-call engineer approves {remedy}, recorded in the journal")
        print(runbook("approve", run_id, remedy, "--as", "demo-oncall").stdout, end="")
        banner("Resume: the remedy runs through the gate, then verify checks the fix")
        second = runbook("resume", run_id, "--no-input")
        print(second.stdout, end="")
    from runner.paths import home

    print(f"\nRun directory: {home() / 'runs' / run_id}/ (run.json, events.jsonl, report.md, "
          "evidence/)")
    print(f"`source {env.relative_to(ROOT)}` to use runbook against the lab yourself; "
          "`runbook history` lists the runs.")
    return 0 if second.returncode in (0, 1) and "-> completed" in second.stdout else 1


if __name__ == "__main__":
    sys.exit(main())
