"""runbook computes an alert's fingerprint from its labels (it never trusts the sender's):
against a real Alertmanager, the computed fingerprint is the one Alertmanager sends, for
plain label sets and non-ASCII values, so grouping and resolution work as Alertmanager means."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.daemonkit import daemon_in_thread, write_world
from tests.lab.alerting import alertmanager
from tests.support.polling import wait_for

pytestmark = pytest.mark.lab

TOKEN = "fingerprint-intake-tok-3Qv"
CONFIG = """
auth: {{mode: bearer, token_env: FP_INTAKE_TOKEN}}
routes:
  - {{name: boxes, match: ['alertname="BoxDown"'], playbook: mem-incident, targets: {{box: box}}}}
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""

LABEL_SETS = [
    {"alertname": "BoxDown", "instance": "a"},
    {"alertname": "BoxDown", "instance": "b", "zone": "eu-west-1", "severity": "page"},
    {"alertname": "BoxDown", "instance": "c", "team": "données", "note": "日本 ü"},
    {"alertname": "BoxDown", "instance": "d", "a": "", "B": "upper", "_x": "1"},
]


def test_the_fingerprint_runbook_computes_is_alertmanagers(
        tmp_path: Path, runbook_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FP_INTAKE_TOKEN", TOKEN)
    config = write_world(tmp_path, CONFIG)
    with daemon_in_thread(config, runbook_home, TOKEN) as daemon, \
            alertmanager(tmp_path, daemon_url=daemon.url, token=TOKEN) as am:
        for labels in LABEL_SETS:
            am.fire(labels)

        def stored() -> list[dict[str, object]]:
            rows = daemon.daemon.journal.read("SELECT alert FROM alerts")
            alerts = [json.loads(row[0]) for row in rows]
            return alerts if len({a["fingerprint"] for a in alerts}) == len(LABEL_SETS) else []

        alerts = wait_for(stored, "every alert from Alertmanager", timeout=30)
        held = {a["fingerprint"] for a in am.alerts()}  # Alertmanager's own API says
    assert {a["fingerprint"] for a in alerts} == held
    assert all(a["sent_fingerprint"] == "" for a in alerts)  # no mismatch, not one
