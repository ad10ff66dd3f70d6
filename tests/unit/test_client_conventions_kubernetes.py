"""Kubernetes as kubectl reads it: a service that names no namespace works in its kubeconfig
context's namespace (the context it names, else the current one), not in `default`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from diagnostics.kubernetes import KubernetesReader
from diagnostics.kubernetes.client import context_namespace, default_namespace
from diagnostics.service import KubernetesService
from runner.errors import PermanentError

KUBECONFIG = """\
apiVersion: v1
kind: Config
current-context: shop-admin
clusters:
- name: lab
  cluster: {{server: "https://127.0.0.1:6443"}}
users:
- name: viewer
  user: {{token: "not-a-real-token"}}
contexts:
- name: shop-admin
  context: {{cluster: lab, user: viewer, namespace: {current}}}
- name: bare
  context: {{cluster: lab, user: viewer}}
"""


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.kube/config of the machine's
    path = tmp_path / "config"
    path.write_text(KUBECONFIG.format(current="shop"))
    return path


def _service(**fields: Any) -> KubernetesService:
    return KubernetesService(runtime="kubernetes", deployment="api", **fields)


def test_the_current_context_s_namespace_when_the_target_names_none(kubeconfig: Path) -> None:
    assert _service().namespace is None
    assert default_namespace(_service(kubeconfig=str(kubeconfig)), False) == "shop"
    # the reader probes work in (no request is sent to build it)
    reader = KubernetesReader(_service(kubeconfig=str(kubeconfig)), 5.0)
    try:
        assert reader.namespace == "shop"
    finally:
        reader.close()


def test_a_named_context_without_a_namespace_is_default(kubeconfig: Path) -> None:
    assert default_namespace(_service(kubeconfig=str(kubeconfig), context="bare"), False) \
        == "default"


def test_the_target_s_namespace_wins(kubeconfig: Path) -> None:
    assert default_namespace(_service(kubeconfig=str(kubeconfig), namespace="web"),
                             False) == "web"


def test_remedies_read_their_own_context(kubeconfig: Path, tmp_path: Path) -> None:
    ops = tmp_path / "ops"
    ops.write_text(KUBECONFIG.format(current="shop-ops"))
    service = _service(kubeconfig=str(kubeconfig), action_kubeconfig=str(ops))
    assert default_namespace(service, False) == "shop"
    assert default_namespace(service, True) == "shop-ops"


def test_kubeconfig_from_the_environment_merged_as_kubectl_merges(
        kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the first file sets the current context; the second defines it
    first = tmp_path / "first"
    first.write_text("apiVersion: v1\nkind: Config\ncurrent-context: other\n"
                     "clusters: []\nusers: []\ncontexts: []\n")
    second = tmp_path / "second"
    second.write_text(KUBECONFIG.format(current="shop").replace("name: bare", "name: other")
                      .replace("current-context: shop-admin\n", "")
                      .replace("context: {cluster: lab, user: viewer}\n",
                               "context: {cluster: lab, user: viewer, namespace: payments}\n"))
    monkeypatch.setenv("KUBECONFIG", f"{first}:{second}")
    assert context_namespace(f"{first}:{second}", None) == "payments"
    assert default_namespace(_service(), False) == "payments"


def test_in_a_pod_without_a_kubeconfig_its_own_namespace_else_default(
        kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    # the service account's file is not there on this machine: kubectl's own fallback
    assert default_namespace(_service(), False) == "default"


def test_an_unreadable_kubeconfig_is_said(tmp_path: Path, kubeconfig: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_text("apiVersion: v1\nkind: Config\ncontexts: []\n")
    with pytest.raises(PermanentError, match="cannot read the Kubernetes contexts"):
        default_namespace(_service(kubeconfig=str(broken)), False)
