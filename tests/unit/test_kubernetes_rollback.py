"""A Kubernetes rollback pinned to the revision the approver saw, without a cluster: what is
pinned, what voids it, what the approver reads. (Against the real cluster:
tests/scenarios/test_kubernetes_rollback_pin.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from diagnostics.kubernetes import rollback as pinning
from diagnostics.service import RollbackParams, _explain_rollback
from runner.errors import NotApproved, PermanentError
from runner.gate import fingerprint

GOOD, BAD = "runbook-lab/api:good", "runbook-lab/api:bad"


def _template(image: str, command: str = "serve") -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "api"}},
            "spec": {"containers": [{"name": "api", "image": image, "command": [command]}]}}


def _revision(number: int, image: str, *, uid: str, hash_: str, current: bool = False,
              template: dict[str, Any] | None = None) -> dict[str, Any]:
    template = template or _template(image)
    return {"revision": number, "name": f"api-{hash_}", "uid": uid, "hash": hash_,
            "sha256": pinning.template_sha256(template), "image": image, "current": current,
            "pods": ("pod-template-hash", hash_), "template": template}


REVISIONS = [_revision(1, GOOD, uid="uid-1", hash_="aaa"),
             _revision(2, BAD, uid="uid-2", hash_="bbb", current=True)]


def _pinned(image_id: str | None = None) -> dict[str, Any]:
    return pinning.pin(pinning.target_revision(REVISIONS, GOOD, "deployment/api"), image_id)


def test_the_pin_names_the_revision_its_replica_set_and_template() -> None:
    assert _pinned("docker://sha256:1") == {
        "revision": 1, "revision_uid": "uid-1", "template_hash": "aaa",
        "template_sha256": pinning.template_sha256(_template(GOOD)),
        "pod_image_id": "docker://sha256:1"}


def test_the_target_is_the_latest_earlier_revision_running_the_image() -> None:
    revisions = [_revision(1, GOOD, uid="uid-1", hash_="aaa"),
                 _revision(2, GOOD, uid="uid-2", hash_="bbb", template=_template(GOOD, "x")),
                 _revision(3, BAD, uid="uid-3", hash_="ccc", current=True)]
    assert pinning.target_revision(revisions, GOOD, "deployment/api")["uid"] == "uid-2"
    with pytest.raises(PermanentError, match=r"no earlier revision of deployment/api ran "
                                             r"other:1 \(revisions 1: runbook-lab/api:good"):
        pinning.target_revision(revisions, "other:1", "deployment/api")
    with pytest.raises(PermanentError, match="no earlier revision"):  # current: not earlier
        pinning.target_revision(revisions, BAD, "deployment/api")


def test_the_untouched_revision_passes() -> None:
    assert pinning.changes(_pinned(), GOOD, REVISIONS[0]) == []
    # Rolled to and away again: a new number, the same ReplicaSet and template.
    renumbered = {**REVISIONS[0], "revision": 4}
    assert pinning.changes(_pinned(), GOOD, renumbered) == []


def test_a_deleted_replica_set_voids_the_approval() -> None:
    assert pinning.changes(_pinned(), GOOD, None) == ["revision 1 (uid uid-1) no longer exists"]


def test_a_patched_template_image_voids_the_approval() -> None:
    patched = _template(BAD)
    found = {**REVISIONS[0], "image": BAD, "sha256": pinning.template_sha256(patched)}
    what = pinning.changes(_pinned(), GOOD, found)
    assert what[0] == f"its template's image {GOOD} -> {BAD}"
    assert what[1].startswith("its pod template changed (sha256 ")


def test_any_other_template_change_voids_it_though_the_hash_label_stays() -> None:
    # The pod-template-hash label is not recomputed when a ReplicaSet's template is edited.
    edited = _template(GOOD, command="sh")
    found = {**REVISIONS[0], "sha256": pinning.template_sha256(edited)}
    assert [w.split(" (")[0] for w in pinning.changes(_pinned(), GOOD, found)] == [
        "its pod template changed"]


def test_a_replica_set_of_another_uid_or_hash_is_named() -> None:
    other = {**REVISIONS[0], "uid": "uid-9", "hash": "zzz"}
    assert pinning.changes(_pinned(), GOOD, other) == ["uid uid-1 -> uid-9",
                                                       "pod-template-hash aaa -> zzz"]


def test_the_refusal_is_not_approved_and_says_what_changed() -> None:
    error = pinning.refuse("deployment/api", _pinned(), ["revision 1 (uid uid-1) no longer "
                                                         "exists"])
    assert isinstance(error, NotApproved)
    assert str(error).startswith("approval void: the revision of deployment/api approved for "
                                 "the rollback (revision 1, uid uid-1, pod-template-hash aaa) "
                                 "changed since: revision 1 (uid uid-1) no longer exists.")


def test_image_ids_compared_only_when_one_was_pinned() -> None:
    assert pinning.image_id_changes(None, ["docker://sha256:2"]) == []
    assert pinning.image_id_changes("docker://sha256:1", ["docker://sha256:1"]) == []
    assert pinning.image_id_changes("docker://sha256:1", ["docker://sha256:1",
                                                          "docker://sha256:2"]) == [
        "image ID docker://sha256:1 -> docker://sha256:2"]


def test_the_pod_image_id_is_the_containers_own() -> None:
    pods = [{"status": {"containerStatuses": [{"name": "sidecar", "imageID": "docker://s"}]}},
            {"status": {"containerStatuses": [{"name": "api", "imageID": "docker://a"}]}}]
    assert pinning.pod_image_id(pods, "api") == "docker://a"
    assert pinning.pod_image_id(pods[:1], "api") is None


def test_the_approver_sees_the_pins_and_the_fingerprint_covers_them() -> None:
    params = RollbackParams(to_image=GOOD, **_pinned("docker://sha256:1"))
    shown = _explain_rollback(params)
    assert shown == (f"re-create the service from image {GOOD} (revision 1, uid uid-1, "
                     "pod-template-hash aaa, image ID docker://sha256:1, pinned now)")
    args = params.model_dump(mode="json")
    base = fingerprint("service.rollback", "api", {}, args)
    for field, other in [("revision_uid", "uid-9"), ("template_hash", "zzz"),
                         ("template_sha256", "0" * 64), ("revision", 4),
                         ("pod_image_id", "docker://sha256:2")]:
        assert fingerprint("service.rollback", "api", {}, {**args, field: other}) != base
    assert params.pins() == _pinned("docker://sha256:1")
    assert not pinning.is_pinned(RollbackParams(to_image=GOOD).pins())


def _approved(revisions: list[dict[str, Any]], pinned: dict[str, Any],
              image_ids: list[str] | None = None) -> dict[str, Any]:
    return pinning.approved_revision(revisions, pinned, GOOD, "deployment/api",
                                     lambda revision: image_ids or [])


def test_the_operator_gets_the_pinned_revision_found_by_uid() -> None:
    # Rolled to and away since: revision 1 is now 3, and another revision runs GOOD later.
    renumbered = [_revision(2, BAD, uid="uid-2", hash_="bbb"),
                  {**REVISIONS[0], "revision": 3},
                  _revision(4, GOOD, uid="uid-4", hash_="ddd", template=_template(GOOD, "x")),
                  _revision(5, BAD, uid="uid-5", hash_="eee", current=True)]
    assert _approved(renumbered, _pinned())["uid"] == "uid-1"


@pytest.mark.parametrize(("revisions", "image_ids", "said"), [
    ([REVISIONS[1]], None, "revision 1 (uid uid-1) no longer exists"),
    ([{**REVISIONS[0], "image": BAD}, REVISIONS[1]], None, f"its template's image {GOOD} -> "),
    ([{**REVISIONS[0], "sha256": "f" * 64}, REVISIONS[1]], None, "its pod template changed"),
    ([{**REVISIONS[0], "hash": "zzz"}, REVISIONS[1]], None, "pod-template-hash aaa -> zzz"),
    (REVISIONS, ["docker://sha256:2"], "image ID docker://sha256:1 -> docker://sha256:2"),
])
def test_the_operator_refuses_a_revision_changed_since(
        revisions: list[dict[str, Any]], image_ids: list[str] | None, said: str) -> None:
    with pytest.raises(NotApproved, match="approval void") as refused:
        _approved(revisions, _pinned("docker://sha256:1"), image_ids)
    assert said in str(refused.value)


def test_pods_reporting_the_pinned_image_id_pass() -> None:
    assert _approved(REVISIONS, _pinned("docker://sha256:1"),
                     ["docker://sha256:1"])["uid"] == "uid-1"
