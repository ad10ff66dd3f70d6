"""The approval policy: several combine into the strictest, and a run keeps it."""

from __future__ import annotations

from runner.policy import Policy


def test_the_stricter_of_two_policies_takes_the_shorter_ttl_and_four_eyes_from_either() -> None:
    loose = Policy(ttl=3600, four_eyes=False, source="a")
    strict = Policy(ttl=60, four_eyes=True, source="b")
    both = loose.stricter(strict)
    assert (both.ttl, both.four_eyes, both.source) == (60, True, "a and b")
    assert Policy().stricter(Policy(ttl=5)).ttl == 5
    assert Policy(ttl=5).stricter(Policy()).ttl == 5
    assert Policy().stricter(Policy()).ttl is None


def test_a_person_must_be_allowed_by_every_policy_combined() -> None:
    team = Policy(approvers=({"*": ("alice", "bob", "carol")},))
    change_board = Policy(approvers=({"bad-deploy/roll-back": ("bob", "dave")},))
    both = team.stricter(change_board)
    assert both.allowed("bad-deploy", "roll-back") == ("bob",)
    assert both.allowed("api-down", "start-api") == ("alice", "bob", "carol")
    assert Policy().allowed("api-down", "start-api") is None  # anyone


def test_the_most_specific_key_applies() -> None:
    policy = Policy(approvers=({"*": ("alice",), "api-down": ("bob",),
                                "api-down/start-api": ("carol",)},))
    assert policy.allowed("api-down", "start-api") == ("carol",)
    assert policy.allowed("api-down", "roll-back") == ("bob",)
    assert policy.allowed("bad-deploy", "roll-back") == ("alice",)


def test_a_policy_survives_the_journal() -> None:
    policy = Policy(ttl=90, four_eyes=True, approvers=({"*": ("alice",)},), source="p.yaml")
    assert Policy.from_json(policy.to_json()) == policy
    assert Policy.from_json(None) == Policy()
    assert policy.rules() != Policy(ttl=90, four_eyes=True, source="p.yaml").rules()
