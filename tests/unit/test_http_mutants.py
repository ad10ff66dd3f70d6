"""HTTP read-only client cases mutation testing found untested (scripts/mutation
diagnostics/http.py): what a client checks and does by default (TLS verified, no redirects
followed, a 5 s timeout), what `get()` and `head()` ask for, and what a refused method says
without a target name. A real HTTP server on loopback; the main tests are test_http.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from diagnostics.http import HttpProbe, make_client, open_client
from runner.errors import PermanentError


@pytest.fixture
def server() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append((self.command, self.path))
            self.send_response(302 if self.path == "/moved" else 200)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = _answer

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_client_verifies_tls_follows_no_redirect_and_waits_5_s_by_default() -> None:
    with make_client() as client:
        assert client.follow_redirects is False
        assert client.timeout == httpx.Timeout(5.0)
    probe = open_client()
    try:
        assert (probe.verify_tls, probe.base_url, probe.target) == (True, "", "")
        assert probe._client.timeout == httpx.Timeout(5.0)
        assert probe._client.follow_redirects is False
    finally:
        probe.close()
    bare = HttpProbe(make_client())
    assert (bare.verify_tls, bare.base_url, bare.target) == (True, "", "")
    bare.close()


def test_open_client_passes_its_target_and_base_url(server: tuple[str, Any]) -> None:
    url, _ = server
    probe = open_client(base_url=url + "/app", target="api")
    try:
        assert (probe.target, probe.base_url) == ("api", url + "/app")
        with pytest.raises(PermanentError, match=r"^api: a probe may only read"):
            probe.request("POST")
    finally:
        probe.close()


def test_get_and_head_ask_for_the_base_url_itself_with_their_method(
        server: tuple[str, list[tuple[str, str]]]) -> None:
    url, seen = server
    probe = open_client(base_url=url + "/status")
    try:
        assert probe.get().status_code == 200
        assert probe.head().status_code == 200
        assert probe.get(url + "/moved").status_code == 302  # not followed
    finally:
        probe.close()
    assert seen == [("GET", "/status"), ("HEAD", "/status"), ("GET", "/moved")]


def test_a_refused_method_without_a_target_name_says_http() -> None:
    probe = HttpProbe(make_client())
    try:
        with pytest.raises(PermanentError) as refused:
            probe.request("delete")
        assert str(refused.value) == "http: a probe may only read (GET, HEAD), not DELETE"
    finally:
        probe.close()
