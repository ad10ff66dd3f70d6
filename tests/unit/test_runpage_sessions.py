"""Sign-in, sessions and CSRF of the run pages (runner/daemon/sessions.py, pages.py): the
session logic alone, then a real daemon on loopback (real HTTP, the `mem` backend): an
approver signs in, approves from the page's form through the one approval path and the
remedy runs; a forged cookie, a missing or wrong CSRF token, a cross-site POST and a token
that is not an approver's are refused, and nothing is recorded for them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runner.daemon import pages
from runner.daemon.sessions import (
    SESSION_COOKIE,
    Sessions,
    approver_of,
    cross_site,
    same_token,
    secure_cookie,
)
from tests.daemonkit import RunningDaemon, daemon_in_thread, write_world

CONFIG = """
auth: {{mode: bearer, token_env: PAGES_INTAKE_TOKEN}}
approvers:
  alice: {{token_env: PAGES_ALICE_TOKEN}}
routes:
  - name: mem
    match: ['alertname="BoxTooHigh"']
    playbook: mem-incident
    targets: {{box: box}}
    params: {{value: "{{{{ labels.level }}}}"}}
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""


def alert(level: int) -> dict[str, object]:
    """An Alertmanager version 4 webhook body with one firing alert."""
    return {"version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "runbook",
            "externalURL": "http://127.0.0.1:9093",
            "alerts": [{"status": "firing", "labels": {"alertname": "BoxTooHigh",
                                                       "level": str(level)},
                        "annotations": {"summary": "box too high"},
                        "startsAt": "2026-11-22T07:00:00Z",
                        "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=box"}]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_is_random_server_side_and_expires() -> None:
    clock = Clock()
    sessions = Sessions(ttl=60, clock=clock)
    sid, session = sessions.open("alice")
    other, _ = sessions.open("alice")
    assert sid != other and len(sid) >= 40 and "alice" not in sid
    assert sessions.get(sid) == session and session.approver == "alice"
    assert sessions.get(sid + "x") is None and sessions.get("") is None
    assert sessions.get(None) is None
    clock.now += 59
    assert sessions.get(sid) is not None
    clock.now += 1
    assert sessions.get(sid) is None  # expired at the TTL
    sessions.close(other)
    assert sessions.get(other) is None


def test_csrf_tokens_and_approver_tokens_compare_exactly() -> None:
    assert same_token("abc", "abc")
    assert not same_token("abc", "abd") and not same_token("", "") and not same_token(None, "x")
    approvers: dict[str | None, str] = {"tok-a": "alice", "tok-b": "bob"}
    assert approver_of("tok-b", approvers) == "bob"
    assert approver_of("tok-", approvers) is None and approver_of("", {"": "x"}) is None


@pytest.mark.parametrize("scheme, host, secure", [
    ("http", "127.0.0.1", False), ("http", "::1", False), ("https", "127.0.0.1", True),
    ("http", "10.0.0.5", True), ("http", None, True), ("http", "not-an-ip", True)])
def test_the_cookie_is_secure_except_plain_http_on_loopback(scheme: str, host: str | None,
                                                            secure: bool) -> None:
    assert secure_cookie(scheme, host) is secure


@pytest.mark.parametrize("headers, refused", [
    ({}, False), ({"sec-fetch-site": "same-origin"}, False), ({"sec-fetch-site": "none"}, False),
    ({"sec-fetch-site": "cross-site"}, True), ({"sec-fetch-site": "same-site"}, True),
    ({"origin": "http://127.0.0.1:9095"}, False), ({"origin": "http://evil.example"}, True),
    ({"origin": "null"}, True)])
def test_cross_site_posts_are_recognised(headers: dict[str, str], refused: bool) -> None:
    assert cross_site(headers, "127.0.0.1:9095") is refused


@pytest.mark.parametrize("given, kept", [("/runs/abc", "/runs/abc"), ("//evil.example", "/runs"),
                                         ("https://evil.example/runs", "/runs"),
                                         ("/runs//evil", "/runs"), (None, "/runs")])
def test_after_sign_in_only_a_local_page(given: str | None, kept: str) -> None:
    assert pages._local(given) == kept


# A real daemon


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           runbook_home: Path) -> Iterator[RunningDaemon]:
    monkeypatch.setenv("PAGES_INTAKE_TOKEN", "intake-tok-123")
    monkeypatch.setenv("PAGES_ALICE_TOKEN", "alice-tok-1")
    with daemon_in_thread(write_world(tmp_path, CONFIG), runbook_home, "intake-tok-123") as d:
        yield d


def waiting_run(daemon: RunningDaemon) -> str:
    daemon.post("/v1/alerts/alertmanager", alert(7))
    [run] = daemon.wait_run(lambda runs: bool(runs) and runs[0]["status"] == "awaiting_approval")
    return str(run["run_id"])


def sign_in(browser: httpx.Client, token: str, next_url: str) -> httpx.Response:
    form = browser.get(f"/signin?next={next_url}")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    return browser.post("/signin", data={"csrf": csrf.group(1), "token": token,
                                         "next": next_url})


def page_csrf(page: str) -> str:
    found = re.search(r'<form class="decide"[^>]*><input type="hidden" name="csrf" '
                      r'value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


def approvals(daemon: RunningDaemon, run_id: str) -> list[object]:
    return list(daemon.daemon.journal.approvals(run_id, "fix"))


def test_read_only_without_signing_in(daemon: RunningDaemon) -> None:
    run_id = waiting_run(daemon)
    page = httpx.get(f"{daemon.url}/runs/{run_id}")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "value is 7" in page.text and 'class="decide"' not in page.text
    assert f'href="/signin?next=/runs/{run_id}"' in page.text
    assert 'href="http://127.0.0.1:9090/graph?g0.expr=box"' in page.text  # the alert's source
    assert page.headers["x-frame-options"] == "DENY" and "no-store" in page.headers[
        "cache-control"]
    listing = httpx.get(f"{daemon.url}/runs?status=awaiting_approval")
    assert f'href="/runs/{run_id}"' in listing.text
    assert httpx.get(f"{daemon.url}/runs?status=bogus").status_code == 400
    assert httpx.get(f"{daemon.url}/runs/nope").status_code == 404


def test_an_approver_signs_in_and_approves_and_the_remedy_runs(daemon: RunningDaemon) -> None:
    run_id = waiting_run(daemon)
    with httpx.Client(base_url=daemon.url, timeout=10) as browser:
        signed = sign_in(browser, "alice-tok-1", f"/runs/{run_id}")
        assert signed.status_code == 303 and signed.headers["location"] == f"/runs/{run_id}"
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "Secure" not in cookie  # plain http on loopback: a Secure cookie is dropped
        assert "alice" not in cookie.split(";")[0]
        page = browser.get(f"/runs/{run_id}").text
        assert "signed in as <b>alice</b>" in page
        decided = browser.post(f"/runs/{run_id}/decide", data={
            "csrf": page_csrf(page), "remedy": "fix", "decision": "approve",
            "fingerprint": re.findall(r'name="fingerprint" value="([0-9a-f]+)"', page)[0]})
        assert decided.status_code == 303
    [approval] = daemon.daemon.journal.approvals(run_id, "fix")
    assert approval.by == "alice" and approval.decision == "approved"
    [run] = daemon.wait_run(lambda runs: runs[0]["status"] == "completed")
    assert run["remedies"][0]["status"] == "succeeded"


def test_forged_cookie_missing_csrf_and_cross_site_posts_are_refused(
        daemon: RunningDaemon) -> None:
    run_id = waiting_run(daemon)
    decision = {"remedy": "fix", "decision": "approve"}
    forged = httpx.post(f"{daemon.url}/runs/{run_id}/decide", data={**decision, "csrf": "x"},
                        cookies={SESSION_COOKIE: "forged-session-id"})
    assert forged.status_code == 401
    with httpx.Client(base_url=daemon.url, timeout=10) as browser:
        assert sign_in(browser, "alice-tok-1", "/runs").status_code == 303
        csrf = page_csrf(browser.get(f"/runs/{run_id}").text)
        assert browser.post(f"/runs/{run_id}/decide", data=decision).status_code == 403
        assert browser.post(f"/runs/{run_id}/decide",
                            data={**decision, "csrf": csrf + "x"}).status_code == 403
        cross = browser.post(f"/runs/{run_id}/decide", data={**decision, "csrf": csrf},
                             headers={"origin": "http://evil.example",
                                      "sec-fetch-site": "cross-site"})
        assert cross.status_code == 403 and "another site" in cross.text
    assert approvals(daemon, run_id) == []


def test_a_token_that_is_not_an_approvers_cannot_sign_in(daemon: RunningDaemon) -> None:
    with httpx.Client(base_url=daemon.url, timeout=10) as browser:
        refused = sign_in(browser, "intake-tok-123", "/runs")  # the sender's, not an approver's
        assert refused.status_code == 401 and SESSION_COOKIE not in refused.headers.get(
            "set-cookie", "")
        # without the sign-in form's own token (a cross-site sign-in): refused too
        no_csrf = browser.post("/signin", data={"token": "alice-tok-1", "next": "/runs"})
        assert no_csrf.status_code == 403
