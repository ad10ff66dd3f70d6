"""`runbook init [DIR]`: an inventory and a playbooks folder with commented examples, to
start from. Nothing that exists is overwritten."""

from __future__ import annotations

import argparse
from pathlib import Path

from .exits import EXIT_OK

INVENTORY = """\
# Your targets: what a playbook's roles bind to (`runbook plan PLAYBOOK -t ROLE=NAME`).
# runbook finds this folder as ./inventory, else $XDG_CONFIG_HOME/runbook/inventory
# (~/.config/runbook/inventory), else /etc/runbook/inventory; or name it with
# --inventory or RUNBOOK_INVENTORY. Secrets never go here: settings ending in _env name
# the environment variable that holds them (`runbook validate` says which are not set).
targets:
  app-db:
    kind: postgres
    description: the application's database
    dsn_env: APP_DB_DSN              # a read-only role (pg_monitor) for diagnostics
    # action_dsn_env: APP_DB_OPS_DSN # a role allowed to signal backends, for remedies

  # app-api:
  #   kind: service
  #   runtime: docker                # or kubernetes, systemd over ssh: see the README
  #   container: app-api
  #   health_url: http://127.0.0.1:8080/health

  # status-page:
  #   kind: http
  #   url: https://status.example.com
  #   headers_env: STATUS_PAGE_HEADERS  # "Authorization: Bearer ..." lines
"""

PLAYBOOK = """\
# A playbook of your own: `runbook validate playbooks/` checks it, `runbook plan
# app-db-health --playbooks playbooks` shows what it would do. Steps are read-only and run
# at once; remedies are MUTATING and run only after a recorded approval.
# `runbook kinds` lists the step kinds; `runbook schema` gives editors a JSON Schema.
name: app-db-health
summary: Is the application's database up, and how full is its connection pool?
severity: P3
targets:
  db: {kind: postgres}               # a role; the inventory (or --target) binds it
steps:
  - id: ping
    run: postgres.ping
  - id: usage
    run: postgres.connection_usage
findings:
  - id: pool-nearly-full
    when: steps.usage.used_pct > 80
    say: "{{ steps.usage.used }} of {{ steps.usage.max }} connections in use"
# remedies:                          # each one waits for `runbook approve` (or --approve);
#   - id: ...                        # `runbook show db-pool-exhausted` shows a shipped one
#     run: postgres.terminate_backends
"""


def cmd_init(args: argparse.Namespace) -> int:
    from ..errors import UsageError

    root: Path = args.dir
    files = {root / "inventory" / "targets.yaml": INVENTORY,
             root / "playbooks" / "app-db-health.yaml": PLAYBOOK}
    existing = [str(path) for path in files if path.exists()]
    if existing:
        raise UsageError(f"{', '.join(existing)} already exists; nothing was written")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"created {path}")
    print(f"next: runbook validate {root / 'playbooks'} --inventory {root / 'inventory'}")
    return EXIT_OK
