"""Parsing alerts: fingerprints computed as Alertmanager computes them (whatever the sender
claims), batch caps checked before any validation, and malformed JSON always a 400."""

from __future__ import annotations

import json

import pytest

from runner.daemon.alerts import (
    PayloadError,
    TooManyAlerts,
    fingerprint,
    from_alertmanager,
    from_generic,
)


@pytest.mark.parametrize("labels, expected", [
    # prometheus/common model: LabelSet.Fingerprint(), FNV-1a 64 with 0xff separators
    ({}, "cbf29ce484222325"),
    ({"foo": "bar"}, "3fff2c2d7595e046"),
    ({"foo": "bar", "baz": "qux"}, "e4d83091cd448e77"),
    ({"baz": "qux", "foo": "bar"}, "e4d83091cd448e77"),  # order does not matter
])
def test_fingerprint_is_alertmanagers(labels: dict[str, str], expected: str) -> None:
    assert fingerprint(labels) == expected


def test_the_separator_keeps_names_and_values_apart() -> None:
    assert fingerprint({"ab": "c"}) != fingerprint({"a": "bc"})
    assert fingerprint({"a": "b", "c": "d"}) != fingerprint({"a": "bc", "": "d"})


def am(alerts: list[dict[str, object]]) -> bytes:
    return json.dumps({"version": "4", "groupKey": "g", "status": "firing", "receiver": "r",
                       "alerts": alerts}).encode()


def test_a_sent_fingerprint_is_never_used_only_remembered() -> None:
    [forged, honest] = from_alertmanager(am([
        {"status": "firing", "labels": {"foo": "bar"}, "fingerprint": "e4d83091cd448e77"},
        {"status": "firing", "labels": {"foo": "bar"}, "fingerprint": "3fff2c2d7595e046"}]))
    assert forged.fingerprint == honest.fingerprint == "3fff2c2d7595e046"
    assert forged.sent_fingerprint == "e4d83091cd448e77"
    assert honest.sent_fingerprint == ""
    [generic] = from_generic(json.dumps({"labels": {"foo": "bar"},
                                         "fingerprint": "x"}).encode())
    assert (generic.fingerprint, generic.sent_fingerprint) == ("3fff2c2d7595e046", "x")


def test_the_alert_cap_is_checked_before_validation() -> None:
    # 1001 alerts that are each invalid: the answer is the cap, not 1001 problems
    with pytest.raises(TooManyAlerts, match="1001 alerts in one request, at most 1000"):
        from_alertmanager(am([{"status": "burning"}] * 1001))
    with pytest.raises(TooManyAlerts, match="at most 3"):
        from_generic(json.dumps({"alerts": [{"labels": {"a": "b"}}] * 4}).encode(), 3)
    assert len(from_generic(json.dumps({"alerts": [{"labels": {"a": "b"}}] * 3}).encode(),
                            3)) == 3


@pytest.mark.parametrize("body, problem", [
    (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
    (b"{nope", "not JSON"),
    (b"\xff\xfe", "not JSON"),
])
def test_malformed_bodies_are_payload_errors(body: bytes, problem: str) -> None:
    for parse in (from_alertmanager, from_generic):
        with pytest.raises(PayloadError, match=problem):
            parse(body)
