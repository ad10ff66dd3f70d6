"""Severity from impact against the real lab API: a crashed API (a complete outage) is P0,
one failing endpoint is P1, each with the rule that set it; and the crash taken to the end
(approved start, verify) gives a post-incident draft whose every cited SHA-256 matches."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from runner.paths import home
from tests.lab.api import fault, wait_exit
from tests.scenarios.conftest import CLI
from tests.scenarios.helpers import SHORT_WATCH, findings
from tests.scenarios.servicelab import ServiceLab

pytestmark = pytest.mark.lab

NO_DEPLOY = ("--param", "deploy_within=0s")  # a container started seconds ago is no deploy


def cites(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, dict):
        return list(document.get("cites", [])) + [
            c for k, v in document.items() if k != "cites" for c in cites(v)]
    if isinstance(document, list):
        return [c for item in document for c in cites(item)]
    return []


def test_an_outage_is_p0_and_its_postmortem_cites_real_evidence(
        cli: CLI, services: ServiceLab) -> None:
    api = services.start()
    fault(api.url, crash=True)
    assert wait_exit(api.name)["ExitCode"] == 3

    code, report = cli.json("run", "api-down", *SHORT_WATCH, *NO_DEPLOY, "--no-input")
    assert code == 1 and "api-unreachable" in findings(report)
    assert report["severity"] == "P0"
    assert report["severity_why"] == ("complete outage, the API does not answer or all its "
                                      "endpoints fail")
    run_id = report["run_id"]
    code, said = cli("note", run_id, "status page updated", "--as", "bob")
    assert code == 0, said
    _code, report = cli.json("resume", run_id, "--approve", "start-api=service.restart",
                             "--no-input")
    assert report["status"] == "completed" and report["severity"] == "P0"

    code, draft = cli.json("postmortem", run_id)
    assert code == 0
    assert draft["severity"]["level"] == "P0"
    milestones = draft["milestones"]
    assert all(milestones[m] for m in ("detected", "diagnosed", "acknowledged", "mitigated",
                                       "resolved"))
    assert 0 <= milestones["tta_s"] <= milestones["ttm_s"] <= milestones["ttr_s"]
    checked = cites(draft)
    assert any(c["file"] == f"runs/{run_id}/evidence/health.json" for c in checked)
    for cite in checked:
        data = (home() / cite["file"]).read_bytes()
        if "line" in cite:
            data = data.splitlines()[cite["line"] - 1]
        assert hashlib.sha256(data).hexdigest() == cite["sha256"], cite


def test_one_failing_endpoint_is_p1(cli: CLI, services: ServiceLab) -> None:
    api = services.start()
    fault(api.url, fail_endpoint="/api/balance-report")
    code, report = cli.json("run", "api-down", *SHORT_WATCH, *NO_DEPLOY, "--no-input")
    assert code == 1 and "one-endpoint-fails" in findings(report)
    assert "api-unreachable" not in findings(report)
    assert (report["severity"], report["severity_why"]) == (
        "P1", "key endpoints failing, or the API answers slower than 5 s")
