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
from runner.context import StepContext
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
            ServiceConnector().probe(target, StepContext.outside_a_run(5.0)):
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


@pytest.fixture
def unreachable_reader(tmp_path: Path) -> Any:
    """A read-only handle on an API server address where nothing listens: a request the
    guard lets through fails to connect; one it refuses never tries."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""
apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:{port}"}}}}]
users: [{{name: u, user: {{token: not-a-secret}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""")
    reader = KubernetesReader(_settings(kubeconfig=str(kubeconfig)), 2.0)
    try:
        yield reader
    finally:
        reader.close()


def test_every_layer_of_the_read_only_client_refuses_before_connecting(
        unreachable_reader: Any) -> None:
    import urllib3
    from kubernetes.stream import portforward, stream, ws_client

    api = unreachable_reader.api
    client, host = api.client, api.client.configuration.host
    deployment = f"{host}/apis/apps/v1/namespaces/web/deployments/web"
    attempts = [
        lambda: stream(api.core.connect_get_namespaced_pod_exec, "p", "web", command=["id"],
                       stdout=True, stderr=True, stdin=False, tty=False),
        lambda: portforward(api.core.connect_get_namespaced_pod_portforward, "p", "web",
                            ports="80"),
        lambda: ws_client.create_websocket(client.configuration, f"{host}/x/exec"),
        lambda: api.apps.patch_namespaced_deployment("web", "web", {"spec": {"replicas": 3}}),
        lambda: client.call_api("DELETE", f"{host}/api/v1/namespaces/web/pods/p"),
        lambda: client.rest_client.request("PATCH", deployment, body={}),
        lambda: client.rest_client.request("GET", f"{host}/api/v1/namespaces/web/pods/p/%65xec"),
        lambda: client.rest_client.pool_manager.request("PATCH", deployment),
        lambda: client.rest_client.pool_manager.connection_from_url(host).urlopen(
            "PATCH", "/apis/apps/v1/namespaces/web/deployments/web"),
    ]
    for attempt in attempts:
        with pytest.raises(Exception, match="Kubernetes handle is read-only"):
            attempt()
    # A read goes through every layer to the socket, where nothing answers.
    with pytest.raises(urllib3.exceptions.HTTPError):
        client.rest_client.request("GET", f"{host}/api/v1/namespaces/web/pods",
                                   _request_timeout=(1, 1))


def test_a_client_that_is_not_read_only_opens_websockets() -> None:
    from kubernetes import client
    from kubernetes.stream import ws_client

    from diagnostics.kubernetes import _guard_websockets

    _guard_websockets()
    # A plain configuration (what remedies use) is not refused: the connection is tried.
    with pytest.raises(Exception) as caught:
        ws_client.create_websocket(client.Configuration(), "ws://127.0.0.1:9/exec")
    assert "read-only" not in str(caught.value)
