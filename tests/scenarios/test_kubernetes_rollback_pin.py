"""An approved Kubernetes rollback acts on exactly the revision the approver saw, on the lab
cluster: the rollback pins its target revision (ReplicaSet uid, revision, pod-template-hash,
template digest) when proposed. The attacks: after the approval, point the old ReplicaSet's
template at another image, or delete it; the resumed rollback is refused, saying what
changed, and the Deployment is left as it was. An untouched approval still rolls back, to
that very ReplicaSet."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.lab import kube
from tests.lab.api import container_dsn
from tests.lab.faults import LabDatabase
from tests.lab.images import require_image
from tests.scenarios.conftest import CLI
from tests.scenarios.helpers import remedy

pytestmark = pytest.mark.lab

PLAYBOOK = """
name: k8s-rollback
summary: roll a service back to a named image
severity: P2
params:
  image: {type: string}
targets:
  svc: {kind: service}
steps:
  - {id: status, run: service.status}
findings:
  - {id: running, when: steps.status.running, say: "{{ steps.status.image }}"}
remedies:
  - {id: roll-back, run: service.rollback, with: {to_image: "{{ params.image }}"}}
"""


@dataclass
class Rolled:
    """A Deployment at revision 2 (the bad image) with revision 1 (good) to return to."""

    api: kube.ApiDeployment
    good_rs: Any
    bad_image: str
    playbooks: Path
    inventory: Path

    def run(self, cli: CLI) -> tuple[str, dict[str, Any]]:
        _code, report = cli.json("run", "k8s-rollback", "--playbooks", str(self.playbooks),
                                "--inventory", str(self.inventory), "-p",
                                f"image={self.api.image}", "--no-input")
        assert report["status"] == "awaiting_approval", report
        return str(report["run_id"]), report

    def workload(self) -> dict[str, Any]:
        """What a refused rollback must leave alone."""
        d = kube.deployment(self.api)
        return {"uid": d.metadata.uid, "generation": d.metadata.generation,
                "image": d.spec.template.spec.containers[0].image,
                "revision": d.metadata.annotations["deployment.kubernetes.io/revision"],
                "pods": sorted(p.metadata.name for p in kube.pods(self.api))}


@pytest.fixture
def rolled(k8s: kube.Cluster, lab: LabDatabase, tmp_path: Path) -> Iterator[Rolled]:
    namespace = kube.create_namespace()
    try:
        api = kube.deploy_api(namespace, "api", db_dsn=container_dsn(lab.app), flavor="good")
        good_rs = kube.replica_sets(api)[1]
        bad_image = kube.set_image(api, "bad")  # revision 2
        playbooks = tmp_path / "playbooks"
        playbooks.mkdir()
        (playbooks / "k8s-rollback.yaml").write_text(PLAYBOOK)
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(f"""
targets:
  svc:
    kind: service
    runtime: kubernetes
    kubeconfig: {k8s.kubeconfig}
    namespace: {namespace}
    deployment: api
""")
        yield Rolled(api, good_rs, bad_image, playbooks, inventory)
    finally:
        kube.delete_namespace(namespace)


def test_the_proposal_pins_the_revision_and_an_untouched_approval_rolls_back_to_it(
        rolled: Rolled, cli: CLI) -> None:
    run_id, report = rolled.run(cli)
    proposal = remedy(report, "roll-back")
    good = rolled.good_rs.metadata
    args = proposal["args"]
    assert (args["to_image"], args["revision"], args["revision_uid"], args["template_hash"]) == (
        rolled.api.image, 1, good.uid, good.labels["pod-template-hash"])
    assert len(args["template_sha256"]) == 64
    assert args["pod_image_id"] is None  # revision 1 is scaled to zero: no pod to ask
    assert f"uid {good.uid}" in proposal["explain"]  # shown to the approver
    assert cli("approve", run_id, "roll-back", "--as", "alice")[0] == 0

    _code, report = cli.json("resume", run_id, "--no-input")

    rolled_back = remedy(report, "roll-back")
    assert rolled_back["status"] == "succeeded", rolled_back
    result = rolled_back["result"]
    assert (result["replicaset_uid"], result["to_revision"]) == (good.uid, 1)
    assert result["image_ids"]  # what the new pods of that ReplicaSet report
    assert kube.deployment(rolled.api).spec.template.spec.containers[0].image == rolled.api.image
    assert {p.metadata.labels["pod-template-hash"] for p in kube.pods(rolled.api)} == {
        good.labels["pod-template-hash"]}
    assert kube.replica_sets(rolled.api)[3].metadata.uid == good.uid


@pytest.mark.parametrize("tamper", ["patch-image", "patch-env", "delete"])
def test_a_revision_changed_behind_the_approval_is_refused(
        rolled: Rolled, cli: CLI, tamper: str) -> None:
    run_id, _report = rolled.run(cli)
    assert cli("approve", run_id, "roll-back", "--as", "alice")[0] == 0
    good = rolled.good_rs.metadata
    apps = kube.apps()
    if tamper == "patch-image":  # the old ReplicaSet's template now runs another image
        # (neither the current one, or the controller adopts it as the Deployment's own)
        other = require_image("api-base")
        apps.patch_namespaced_replica_set(good.name, rolled.api.namespace, {"spec": {
            "template": {"spec": {"containers": [{"name": "api", "image": other}]}}}})
        expected = f"its template's image {rolled.api.image} -> {other}"
    elif tamper == "patch-env":  # same image, same pod-template-hash label: another pod
        apps.patch_namespaced_replica_set(good.name, rolled.api.namespace, {"spec": {
            "template": {"spec": {"containers": [{"name": "api", "env": [
                {"name": "EXTRA", "value": "set after the approval"}]}]}}}})
        assert kube.replica_sets(rolled.api)[1].metadata.labels["pod-template-hash"] == \
            good.labels["pod-template-hash"]
        expected = "its pod template changed (sha256 "
    else:
        apps.delete_namespaced_replica_set(good.name, rolled.api.namespace)
        kube.wait(lambda: 1 not in kube.replica_sets(rolled.api), 30, "the ReplicaSet gone")
        expected = f"revision 1 (uid {good.uid}) no longer exists"
    before = rolled.workload()

    _code, report = cli.json("resume", run_id, "--no-input")

    refused = remedy(report, "roll-back")
    assert refused["status"] == "failed", refused
    assert "approval void: the revision of deployment/api approved for the rollback " \
           f"(revision 1, uid {good.uid}" in refused["error"]
    assert expected in refused["error"]
    assert rolled.workload() == before  # nothing was changed
    assert before["image"] == rolled.bad_image
