"""sync-failure against a real sync host (sshd + the sync-engine stand-in), the lab
PostgreSQL and an upstream API stand-in: induce the failures, diagnose them through the
CLI, approve the re-run, and see the sync succeed and verify pass."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.lab.api import container_dsn
from tests.lab.faults import LabDatabase
from tests.lab.sshd import USER, ClientKey, client_key, write_known_hosts
from tests.lab.sync import (
    SyncHost,
    Upstream,
    corrupt_state,
    old_log,
    prepare_sync_tables,
    record_run,
    reset_host,
    run_sync,
    start_sync_host,
    sync_runs,
)
from tests.scenarios.conftest import CLI
from tests.scenarios.helpers import findings, remedy

pytestmark = pytest.mark.lab

RERUNS = ("rerun-skip-errors", "rerun-reset", "rerun-force")


@dataclass
class SyncLab:
    db: LabDatabase
    upstream: Upstream
    host: SyncHost
    key: ClientKey


@pytest.fixture(scope="module")
def sync_lab(lab_db: LabDatabase, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[SyncLab]:
    """One sync host and one upstream API for the module."""
    from tests.lab.sshd import remove

    key = client_key(tmp_path_factory.mktemp("sync-key"))
    started_at = time.monotonic()
    try:
        prepare_sync_tables(lab_db)
        upstream = Upstream().start()
    except Exception as exc:
        pytest.fail(f"LAB MISSING: cannot prepare the sync lab ({exc}); run scripts/setup",
                    pytrace=False)
    try:
        host = start_sync_host(key, container_dsn(lab_db.app), upstream)
    except Exception as exc:
        upstream.stop()
        pytest.fail(f"LAB MISSING: cannot start the sync host ({exc}); run scripts/setup",
                    pytrace=False)
    print(f"\nsync host ready in {time.monotonic() - started_at:.2f} s")
    try:
        yield SyncLab(lab_db, upstream, host, key)
    finally:
        remove([host.name])
        upstream.stop()


@pytest.fixture
def sync(sync_lab: SyncLab, lab: LabDatabase, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> SyncLab:
    """A clean slate (no logs, no state, empty tables, a healthy API) and an inventory."""
    reset_host(sync_lab.host)
    prepare_sync_tables(sync_lab.db)
    upstream = sync_lab.upstream
    upstream.recover()
    upstream.expired.clear()
    upstream.invalid.clear()
    upstream.negative.clear()
    known_hosts = write_known_hosts(tmp_path / "known_hosts", [sync_lab.host.ssh])
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(f"""
targets:
  sync-host:
    kind: ssh
    host: {sync_lab.host.ip}
    user: {USER}
    key_file: {sync_lab.key.path}
    known_hosts: {known_hosts}
  sync-api:
    kind: http
    url: {upstream.url}
    timeout: 3s
  sync-db:
    kind: postgres
    dsn_env: RUNBOOK_LAB_DSN
""")
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(inventory))
    return sync_lab


def step(report: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in report["steps"] if s["id"] == step_id)


def finding(report: dict[str, Any], finding_id: str) -> dict[str, Any]:
    return next(f for f in report["findings"] if f["id"] == finding_id)


def proposed(report: dict[str, Any]) -> set[str]:
    return {r["id"] for r in report["remedies"] if r["status"] == "proposed"}


def today_log() -> str:
    return f"logs/sync-{datetime.now(UTC):%Y-%m-%d}.log"


def test_429_401_mix_is_classified_and_the_rerun_runs_after_approval(
        cli: CLI, sync: SyncLab) -> None:
    db, upstream, host = sync.db, sync.upstream, sync.host
    for client in ("acme", "globex"):  # both synced fine three hours ago
        record_run(db, client, "success", timedelta(hours=3))
    old_log(host)  # yesterday's log, with a 401 of its own: not the newest file
    upstream.rate_limited = True
    for _ in range(2):  # each run: 3 attempts, each answered 429
        assert run_sync(host, "acme", "--force")[0] == 1
    upstream.recover()
    upstream.expire_token("globex")
    for _ in range(2):  # each run: one 401, not retried
        assert run_sync(host, "globex", "--force")[0] == 1
    assert upstream.answered[("/v2/orders", 429)] == 6
    assert upstream.answered[("/v2/orders", 401)] == 2

    code, report = cli.json("run", "sync-failure", "--param", "client=acme", "--no-input")
    assert code == 1, report
    assert step(report, "newest_log")["result"]["path"] == today_log()
    errors = step(report, "errors")["result"]
    assert errors["classes"]["rate_limit"]["count"] == 6
    assert errors["classes"]["auth"]["count"] == 2
    assert "timeout" not in errors["classes"]
    auth = errors["classes"]["auth"]
    assert auth["first_seen"] < auth["last_seen"]
    assert auth["first_seen"].startswith(f"{datetime.now(UTC):%Y-%m-%d}")
    assert "status=401 Unauthorized" in auth["sample"] and "globex" in auth["sample"]

    fired = findings(report)
    assert {"token-expired", "rate-limited", "client-stale"} <= fired
    assert not fired & {"network-timeouts", "validation-errors", "database-constraint",
                        "corrupt-state", "upstream-unhealthy", "client-token-refused"}
    token = finding(report, "token-expired")["message"]
    assert token.startswith("2 \N{MULTIPLICATION SIGN} 401 Unauthorized")
    assert "human task" in token and "proposes nothing automatic" in token
    throttled = finding(report, "rate-limited")["message"]
    assert throttled.startswith("6 \N{MULTIPLICATION SIGN} 429 Too Many Requests")
    assert "back off 60 s" in throttled
    assert step(report, "upstream")["result"]["ok"] is True
    last = step(report, "last_sync")["result"]
    assert last["failing"] is True and last["stale"] is True and last["last_status"] == "failed"

    # acme failed on throttling, which is over: a --force re-run of acme, nothing else.
    assert proposed(report) == {"rerun-force"}
    force = remedy(report, "rerun-force")
    assert force["args"]["argv"] == ["sync-engine", "run", "--client", "acme", "--force"]
    assert report["status"] == "awaiting_approval"

    # globex's token was refused: a human task, nothing is proposed for it.
    code, other = cli.json("run", "sync-failure", "--param", "client=globex", "--no-input")
    assert code == 1
    assert "client-token-refused" in findings(other)
    assert "human task" in finding(other, "client-token-refused")["message"]
    assert proposed(other) == set()
    assert {remedy(other, r)["status"] for r in RERUNS} == {"not_needed"}

    # Approve acme's re-run; it runs on the host and the last-sync time moves.
    before = sync_runs(db, "acme")
    assert sync_runs(db, "acme")[-1]["status"] == "failed"
    code, out = cli("approve", report["run_id"], "rerun-force", "--as", "oncall")
    assert code == 0, out
    assert sync_runs(db, "acme") == before  # approved, not yet run
    code, report = cli.json("resume", report["run_id"], "--no-input")
    force = remedy(report, "rerun-force")
    assert force["status"] == "succeeded", force
    assert force["result"]["exit_code"] == 0
    assert force["result"]["command"] == "sync-engine run --client acme --force"
    after = sync_runs(db, "acme")
    assert len(after) == len(before) + 1
    assert after[-1]["status"] == "success" and after[-1]["flags"] == "--force"
    assert after[-1]["records"] == 10
    assert {v["id"]: v["status"] for v in report["verify"]} == {"last_sync_moved": "passed"}
    assert report["status"] == "completed"


def _validation(lab: SyncLab, client: str) -> None:
    lab.upstream.send_invalid(client)
    assert run_sync(lab.host, client)[0] == 1


def _corrupt(lab: SyncLab, client: str) -> None:
    corrupt_state(lab.host, client)
    assert run_sync(lab.host, client)[0] == 1


def _timeout(lab: SyncLab, client: str) -> None:
    lab.upstream.delay = 1.5  # past the engine's 1 s request timeout
    assert run_sync(lab.host, client)[0] == 1
    lab.upstream.recover()  # the network is back


def _constraint(lab: SyncLab, client: str) -> None:
    lab.upstream.send_negative(client)
    assert run_sync(lab.host, client)[0] == 1


def _still_throttled(lab: SyncLab, client: str) -> None:
    lab.upstream.rate_limited = True
    assert run_sync(lab.host, client)[0] == 1


@pytest.mark.parametrize("induce, finding_id, rerun, records", [
    (_validation, "validation-errors", "rerun-skip-errors", 8),
    (_corrupt, "corrupt-state", "rerun-reset", 10),
    (_timeout, "network-timeouts", "rerun-force", 10),
    (_constraint, "database-constraint", None, 0),
    (_still_throttled, "rate-limited", None, 0),
], ids=["validation", "corrupt-state", "etimedout", "constraint", "still-429"])
def test_each_failure_gets_its_own_rerun_or_none(
        cli: CLI, sync: SyncLab, induce: Callable[[SyncLab, str], None], finding_id: str,
        rerun: str | None, records: int) -> None:
    client = "initech"
    induce(sync, client)
    approve = ("--approve", f"{rerun}=ssh.exec") if rerun else ()
    code, report = cli.json("run", "sync-failure", "--param", f"client={client}",
                            "--no-input", *approve)
    assert code == 1, report
    fired = findings(report)
    assert {finding_id, "client-stale"} <= fired
    assert "token-expired" not in fired
    if rerun is None:
        assert {remedy(report, r)["status"] for r in RERUNS} == {"not_needed"}
        assert sync_runs(sync.db, client)[-1]["status"] == "failed"
        if finding_id == "rate-limited":
            assert "upstream-unhealthy" in fired
            assert "still answers 429" in finding(report, "rate-limited")["message"]
        return
    done = remedy(report, rerun)
    assert done["status"] == "succeeded", done
    assert {r for r in RERUNS if remedy(report, r)["status"] == "not_needed"} == \
        set(RERUNS) - {rerun}
    flag = "--" + rerun.removeprefix("rerun-")
    assert done["args"]["argv"] == ["sync-engine", "run", "--client", client, flag]
    last = sync_runs(sync.db, client)[-1]
    assert last["status"] == "success" and last["flags"] == flag
    assert last["records"] == records
    assert {v["id"]: v["status"] for v in report["verify"]} == {"last_sync_moved": "passed"}
