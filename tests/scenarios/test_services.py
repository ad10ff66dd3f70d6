"""api-down, memory-leak and bad-deploy against a real service in real containers: induce
the fault, diagnose it, approve the remedy, and watch the service recover."""

from __future__ import annotations

import time

import docker
import httpx
import pytest

from runner.paths import home
from tests.lab.api import deploy, fault, wait_exit
from tests.scenarios.conftest import CLI
from tests.scenarios.helpers import (
    SHORT_WATCH,
    findings,
    idle_in_transaction_of,
    remedy,
    wait_idle_in_transaction,
)
from tests.scenarios.servicelab import ServiceLab
from tests.support.polling import wait_for

pytestmark = pytest.mark.lab

# Deploy detection is not what these scenarios are about: a container started seconds ago
# would otherwise count as a suspicious recent deploy.
NO_DEPLOY = ("--param", "deploy_within=0s")


def test_api_down_crashed_is_found_then_started_after_approval(
        cli: CLI, services: ServiceLab) -> None:
    api = services.start()
    fault(api.url, crash=True)
    assert wait_exit(api.name)["ExitCode"] == 3

    code, report = cli.json("run", "api-down", *SHORT_WATCH, *NO_DEPLOY, "--no-input")
    assert code == 1
    assert {"api-unreachable", "crashed"} <= findings(report)
    health = next(s for s in report["steps"] if s["id"] == "health")["result"]
    assert health["error_class"] in {"refused", "timeout"}
    logs = next(s for s in report["steps"] if s["id"] == "logs")["result"]
    assert "fatal" in logs["classes"]
    assert remedy(report, "start-api")["status"] == "proposed"
    assert services.container(api).status == "exited"  # proposed only

    code, report = cli.json("resume", report["run_id"], "--approve", "start-api=service.restart",
                            "--no-input")
    assert remedy(report, "start-api")["status"] == "succeeded"
    assert services.container(api).status == "running"
    assert {v["id"]: v["status"] for v in report["verify"]} == {
        "healthy": "passed", "endpoints_ok": "passed"}
    assert report["status"] == "completed"


def test_api_down_oom_killed_gets_more_memory_and_a_start(
        cli: CLI, services: ServiceLab) -> None:
    api = services.start(mem_limit="96m")
    fault(api.url, leak_mb_per_s=25)
    assert wait_exit(api.name)["OOMKilled"] is True

    _code, report = cli.json("run", "api-down", *SHORT_WATCH, *NO_DEPLOY, "--no-input",
                            "--approve", "raise-memory-limit=service.set_memory_limit",
                            "--approve", "start-api=service.restart")
    assert "oom-killed" in findings(report)
    raised = remedy(report, "raise-memory-limit")
    assert raised["args"]["limit"] == 192 * 1024 * 1024
    assert raised["status"] == "succeeded"
    container = services.container(api)
    assert container.attrs["HostConfig"]["Memory"] == 192 * 1024 * 1024
    assert container.status == "running"
    assert report["status"] == "completed"


def test_api_down_every_endpoint_failing_points_at_the_database(
        cli: CLI, services: ServiceLab) -> None:
    api = services.start()
    fault(api.url, hold_connections=True)  # the API's pool sits in open transactions
    pool = wait_for(lambda: idle_in_transaction_of(services.db, "journey_app", 5),
                    "the API's 5 pool connections idle in a transaction")
    wait_idle_in_transaction(services.db, pool, seconds=1)  # as long as idle_after
    code, report = cli.json("run", "api-down", *SHORT_WATCH, *NO_DEPLOY,
                            "--param", "idle_after=1s", "--no-input")
    assert code == 1
    assert "all-endpoints-fail" in findings(report)
    assert "api-unreachable" not in findings(report)
    proposed = remedy(report, "end-idle-transactions")
    assert proposed["status"] == "proposed"

    _code, report = cli.json("resume", report["run_id"],
                             "--approve", "end-idle-transactions=postgres.terminate_backends",
                            "--no-input")
    assert remedy(report, "end-idle-transactions")["result"]["count"] >= 5
    assert {v["id"]: v["status"] for v in report["verify"]}["endpoints_ok"] == "passed"


def test_api_down_one_failing_endpoint_points_at_the_code(
        cli: CLI, services: ServiceLab) -> None:
    api = services.start()
    fault(api.url, fail_endpoint="/api/balance-report")
    code, report = cli.json("run", "api-down", *SHORT_WATCH, *NO_DEPLOY, "--no-input")
    assert code == 1
    assert "one-endpoint-fails" in findings(report)
    assert "all-endpoints-fail" not in findings(report)
    assert not [r for r in report["remedies"] if r["status"] == "proposed"]


def test_bad_deploy_is_rolled_back_to_the_image_runbook_saw_before(
        cli: CLI, services: ServiceLab) -> None:
    api = services.start("good")
    # runbook sees the good image
    code, report = cli.json("run", "bad-deploy", *SHORT_WATCH, "--no-input")
    assert code == 0, report["findings"]
    deploy(api.name, "bad")
    time.sleep(1.1)
    for _ in range(3):  # users hit the broken endpoint: the first errors follow the deploy
        httpx.get(f"{api.url}/api/accounts", timeout=5)

    code, report = cli.json("run", "bad-deploy", *SHORT_WATCH, "--no-input")
    assert code == 1
    assert "errors-since-deploy" in findings(report)
    proposed = remedy(report, "roll-back")
    assert proposed["args"]["to_image"] == api.image
    good_id = docker.from_env().images.get(api.image).id
    assert proposed["args"]["image_id"] == good_id  # the tag, pinned when proposed

    code, report = cli.json("resume", report["run_id"], "--approve", "roll-back=service.rollback",
                            "--no-input")
    assert remedy(report, "roll-back")["status"] == "succeeded"
    assert services.container(api).attrs["Image"] == good_id  # deployed by that id
    assert {v["id"]: v["status"] for v in report["verify"]} == {
        "healthy": "passed", "error_rate_low": "passed"}


def test_memory_leak_trend_restart_and_scale_out(cli: CLI, services: ServiceLab) -> None:
    api = services.start(mem_limit="512m")
    fault(api.url, leak_mb_per_s=4)
    code, report = cli.json("run", "memory-leak", *SHORT_WATCH, "--param", "window=6s",
                            "--no-input",
                            "--approve", "rolling-restart=service.restart")
    assert code == 1
    assert "memory-growing" in findings(report)
    memory = next(s for s in report["steps"] if s["id"] == "memory")["result"]
    assert memory["growth_bytes_per_min"] > 60 * 1024 * 1024  # about 240 MiB/min induced
    assert memory["seconds_to_limit"] > 0
    assert remedy(report, "rolling-restart")["status"] == "succeeded"
    assert remedy(report, "scale-out")["status"] == "proposed"
    assert report["status"] == "awaiting_approval"

    _code, report = cli.json("resume", report["run_id"], "--approve", "scale-out=service.scale",
                             "--no-input")
    assert remedy(report, "scale-out")["result"]["replicas"] == 2
    import docker

    clones = docker.from_env().containers.list(filters={"label": f"runbook.replica-of={api.name}"})
    assert len(clones) == 1 and clones[0].status == "running"


def test_diagnostics_cannot_change_a_container(services: ServiceLab) -> None:
    from diagnostics.docker import DockerReader
    from diagnostics.service import DockerService
    from runner.errors import PermanentError

    api = services.start()
    reader = DockerReader(DockerService(runtime="docker", container=api.name), 10, home=home())
    assert reader.status()["running"] is True
    api_client = reader._api  # past the reader's methods, to the client itself
    for attempt in (lambda: api_client.stop(api.name), lambda: api_client.restart(api.name),
                    lambda: api_client.kill(api.name),
                    lambda: api_client.update_container(api.name, mem_limit="64m"),
                    lambda: api_client.remove_container(api.name, force=True)):
        with pytest.raises(PermanentError, match="read-only"):
            attempt()
    container = services.container(api)
    assert container.status == "running"
    assert container.attrs["HostConfig"]["Memory"] == 256 * 1024 * 1024


def test_db_pool_hoarded_by_the_api_is_released_by_restarting_it(
        cli: CLI, services: ServiceLab) -> None:
    from concurrent.futures import ThreadPoolExecutor

    api = services.start(pool_size=21)
    fault(api.url, slow_ms=1500)  # 21 concurrent requests make its pool open 21 sessions
    with ThreadPoolExecutor(21) as pool:
        list(pool.map(lambda _: httpx.get(f"{api.url}/api/accounts", timeout=10), range(21)))
    fault(api.url, reset=True)

    code, report = cli.json("run", "db-pool-exhausted", "-t", "db=test-db", "-t", "api=test-api",
                            "--no-input")
    assert code == 1
    assert "pool-saturated" in findings(report)
    assert remedy(report, "end-idle-transactions")["status"] == "not_needed"
    assert remedy(report, "restart-api")["status"] == "proposed"

    code, report = cli.json("resume", report["run_id"], "--approve", "restart-api=service.restart",
                            "--no-input")
    assert remedy(report, "restart-api")["status"] == "succeeded"
    assert {v["id"]: v["status"] for v in report["verify"]}["pool_has_room"] == "passed"
