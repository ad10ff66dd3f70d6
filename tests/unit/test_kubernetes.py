"""The Kubernetes runtime without a cluster: probes never fall back to default credentials
when remedies have their own, and `plan` says so. (Against the real cluster:
tests/scenarios/test_kubernetes.py and test_kubernetes_safety.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from diagnostics.kubernetes import KubernetesReader
from diagnostics.service import KubernetesService, ServiceConnector, ServiceSettings
from runner.cli import main
from runner.errors import PermanentError
from runner.inventory import Target


def _settings(**fields: Any) -> KubernetesService:
    return KubernetesService(runtime="kubernetes", namespace="web", deployment="web", **fields)


def test_probes_refuse_to_run_with_only_action_credentials(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A readable default kubeconfig that would work: the probe must not fall back to it.
    broad = tmp_path / "admin.kubeconfig"
    broad.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    monkeypatch.setenv("KUBECONFIG", str(broad))
    settings = _settings(action_kubeconfig=str(tmp_path / "ops.kubeconfig"))
    with pytest.raises(PermanentError, match="probes refuse to run: action_kubeconfig is set "
                                             "but kubeconfig is not"):
        KubernetesReader(settings, 5.0)
    target = Target("web", "service", ServiceSettings(settings))
    with pytest.raises(PermanentError, match="probes refuse to run"), \
            ServiceConnector().probe(target, 5.0):
        pass


@pytest.mark.parametrize("fields", [
    {}, {"kubeconfig": "/etc/runbook/read.kubeconfig"},
    {"kubeconfig": "/etc/runbook/read.kubeconfig", "action_kubeconfig": "/etc/ops.kubeconfig"},
])
def test_no_warning_when_probes_have_their_own_or_share_the_credentials(
        fields: dict[str, str]) -> None:
    target = Target("web", "service", ServiceSettings(_settings(**fields)))
    assert ServiceConnector().warnings(target) == []


def test_plan_says_probes_would_refuse(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("""
targets:
  web:
    kind: service
    runtime: kubernetes
    namespace: web
    deployment: web
    action_kubeconfig: /etc/runbook/ops.kubeconfig
""")
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(inventory))
    assert main(["plan", "api-down", "--target", "api=web"]) == 0
    assert main(["validate"]) == 0
    out = capsys.readouterr().out
    assert out.count("WARNING web: probes refuse to run: action_kubeconfig is set") == 2
