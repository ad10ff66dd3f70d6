"""The HTTP backend against real HTTP(S) servers on loopback, started here."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from diagnostics import http
from runner.context import StepContext
from runner.errors import PermanentError
from runner.inventory import Target
from runner.redact import SECRETS
from runner.registry import Registry

ROOT = Path(__file__).resolve().parents[2]


class Server:
    """A ThreadingHTTPServer on 127.0.0.1 in a thread, with a few canned endpoints."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.release = threading.Event()  # set at shutdown: slow handlers stop sleeping
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers (lower)
        self.flaky_count = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: str | bytes,
                       content_type: str = "application/json") -> None:
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _any(self) -> None:
                with server.lock:
                    server.requests.append((self.command, self.path,
                                            {k.lower(): v for k, v in self.headers.items()}))
                path = self.path
                if path in ("/", "/health"):
                    self._reply(200, json.dumps({"status": "ok", "db": {"state": "up"},
                                                 "checks": [{"name": "db", "ok": True}]}))
                elif path == "/degraded":
                    self._reply(200, json.dumps({"status": "degraded", "db": {"state": "down"}}))
                elif path == "/text":
                    self._reply(200, "all systems go", "text/plain")
                elif path.startswith("/api/broken") or path == "/fail":
                    self._reply(503, json.dumps({"error": "db unavailable"}))
                elif path.startswith("/api/"):
                    self._reply(200, "{}")
                elif path == "/missing":
                    self._reply(404, "not here", "text/plain")
                elif path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "/health")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif path == "/slow":
                    server.release.wait(10)
                    self._reply(200, "{}")
                elif path == "/echo":
                    self._reply(200, json.dumps({"authorization":
                                                 self.headers.get("Authorization")}))
                elif path == "/hangup":
                    self.close_connection = True  # say nothing and go
                elif path == "/flaky":  # every 4th request fails, slowly
                    with server.lock:
                        server.flaky_count += 1
                        failing = server.flaky_count % 4 == 0
                    if failing:
                        time.sleep(0.2)
                        self._reply(500, "boom", "text/plain")
                    else:
                        self._reply(200, "{}")
                else:
                    self._reply(404, "unknown", "text/plain")

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _any

        class Quiet(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients that hang up (timeouts, refused TLS) are part of the tests

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def methods(self) -> list[str]:
        with self.lock:
            return [method for method, _, _ in self.requests]


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with http.make_client(timeout=2.0) as c:
        yield c


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl CLI is needed to make a test certificate (apt install openssl)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def tls_server(self_signed: tuple[Path, Path]) -> Iterator[Server]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, self_signed))
    srv = Server(tls=context)
    try:
        yield srv
    finally:
        srv.stop()


# check_health


def test_healthy_endpoint(server: Server, client: httpx.Client) -> None:
    result = http.check_health(client, server.url + "/health")
    assert result["ok"] is True
    assert result["status"] == 200 and result["error_class"] is None and result["error"] is None
    assert result["latency_ms"] >= 0
    assert '"status": "ok"' in result["body_excerpt"]
    assert set(result) == {"ok", "url", "status", "latency_ms", "error_class", "error",
                           "body_excerpt"}


def test_5xx_and_4xx_are_told_apart(server: Server, client: httpx.Client) -> None:
    failed = http.check_health(client, server.url + "/fail")
    assert (failed["ok"], failed["status"], failed["error_class"]) == (False, 503, "http_5xx")
    assert "503" in failed["error"] and "db unavailable" in failed["body_excerpt"]
    missing = http.check_health(client, server.url + "/missing")
    assert (missing["ok"], missing["status"], missing["error_class"]) == (False, 404, "http_4xx")


def test_expected_status(server: Server, client: httpx.Client) -> None:
    assert http.check_health(client, server.url + "/missing", expect_status=404)["ok"]
    wrong = http.check_health(client, server.url + "/health", expect_status=204)
    assert wrong["error_class"] == "unexpected_status" and "expected 204" in wrong["error"]


def test_redirects_are_not_followed(server: Server, client: httpx.Client) -> None:
    result = http.check_health(client, server.url + "/moved")
    assert (result["status"], result["error_class"]) == (302, "unexpected_status")
    assert server.methods() == ["GET"]  # the Location was not fetched


def test_expected_body(server: Server, client: httpx.Client) -> None:
    assert http.check_health(client, server.url + "/text", expect_body="systems go")["ok"]
    result = http.check_health(client, server.url + "/text", expect_body="healthy")
    assert (result["ok"], result["status"], result["error_class"]) == (
        False, 200, "unexpected_body")
    assert "'healthy'" in result["error"]


@pytest.mark.parametrize("expect", [
    {"status": "ok"}, {"db.state": "up"}, {"db": {"state": "up"}},
    {"status": "ok", "checks.0.ok": True},
])
def test_expected_json_matches(server: Server, client: httpx.Client,
                               expect: dict[str, Any]) -> None:
    assert http.check_health(client, server.url + "/health", expect_json=expect)["ok"]


@pytest.mark.parametrize(("path", "expect", "says"), [
    ("/degraded", {"status": "ok"}, "status is 'degraded', expected 'ok'"),
    ("/degraded", {"db.state": "up"}, "db.state is 'down', expected 'up'"),
    ("/health", {"db.version": "15"}, "db.version is missing"),
    ("/text", {"status": "ok"}, "not JSON"),
])
def test_expected_json_mismatch(server: Server, client: httpx.Client, path: str,
                                expect: dict[str, Any], says: str) -> None:
    result = http.check_health(client, server.url + path, expect_json=expect)
    assert (result["ok"], result["status"], result["error_class"]) == (
        False, 200, "unexpected_body")
    assert says in result["error"]


def test_connection_refused(client: httpx.Client, closed_port: int) -> None:
    result = http.check_health(client, f"http://127.0.0.1:{closed_port}/health")
    assert (result["ok"], result["status"], result["error_class"]) == (False, None, "refused")
    assert result["body_excerpt"] is None and result["error"]


def test_read_timeout_takes_the_timeout_not_the_sleep(server: Server) -> None:
    with http.make_client(timeout=0.5) as quick:
        started = time.monotonic()
        result = http.check_health(quick, server.url + "/slow")  # the handler sleeps 10s
        took = time.monotonic() - started
    assert (result["ok"], result["status"], result["error_class"]) == (False, None, "timeout")
    assert 0.4 <= took < 5, took
    assert 400 <= result["latency_ms"] < 5000


def test_server_hanging_up_is_a_protocol_failure(server: Server, client: httpx.Client) -> None:
    result = http.check_health(client, server.url + "/hangup")
    assert (result["ok"], result["error_class"]) == (False, "protocol")


def test_self_signed_certificate_is_a_tls_failure(tls_server: Server) -> None:
    with http.make_client(timeout=2.0) as verifying:
        result = http.check_health(verifying, tls_server.url + "/health")
    assert (result["ok"], result["status"], result["error_class"]) == (False, None, "tls")
    assert "certificate" in result["error"].lower()
    with http.make_client(timeout=2.0, verify_tls=False) as trusting:
        assert http.check_health(trusting, tls_server.url + "/health")["ok"]


def test_unresolvable_name_is_a_dns_failure(client: httpx.Client,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_name(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)  # no resolver needed
    result = http.check_health(client, "http://api.nowhere.invalid/health")
    assert (result["ok"], result["error_class"]) == (False, "dns")


def test_a_bad_url_is_a_misconfiguration_not_a_finding(client: httpx.Client) -> None:
    with pytest.raises(PermanentError):
        http.check_health(client, "ftp://127.0.0.1/health")


# sweep


def test_sweep_one_endpoint_fails(server: Server, client: httpx.Client) -> None:
    urls = [server.url + p for p in ("/api/orders", "/api/users", "/api/broken", "/health")]
    result = http.sweep(client, urls)
    assert (result["total"], result["ok"], result["failed"]) == (4, 3, 1)
    assert (result["all_fail"], result["some_fail"]) == (False, True)
    assert result["failing"] == [server.url + "/api/broken"]
    assert [r["url"] for r in result["results"]] == urls  # in the order given


def test_sweep_all_endpoints_fail(server: Server, client: httpx.Client,
                                  closed_port: int) -> None:
    urls = [server.url + "/api/broken/a", server.url + "/api/broken/b",
            f"http://127.0.0.1:{closed_port}/api/c"]
    result = http.sweep(client, urls, max_concurrency=2)
    assert (result["all_fail"], result["some_fail"], result["failed"]) == (True, False, 3)
    assert [r["error_class"] for r in result["results"]] == ["http_5xx", "http_5xx", "refused"]


def test_sweep_all_ok_and_empty(server: Server, client: httpx.Client) -> None:
    result = http.sweep(client, [server.url + "/api/a", server.url + "/api/b"])
    assert (result["all_fail"], result["some_fail"], result["failing"]) == (False, False, [])
    empty = http.sweep(client, [])
    assert (empty["total"], empty["all_fail"], empty["some_fail"]) == (0, False, False)


# error_rate


def test_error_rate_against_a_server_failing_every_4th_request(server: Server,
                                                                client: httpx.Client) -> None:
    started = time.monotonic()
    result = http.error_rate(client, server.url + "/flaky", requests=8, window=0.4)
    took = time.monotonic() - started
    assert (result["requests"], result["ok"], result["errors"]) == (8, 6, 2)
    assert result["error_pct"] == 25.0
    assert result["http_5xx"] == 2 and result["by_class"] == {"http_5xx": 2}
    # The failures take 200 ms, the rest are immediate: the median is fast, the tail is not.
    assert result["p50_ms"] < 150
    assert 190 <= result["p95_ms"] <= result["max_ms"]
    assert took >= 0.35  # spread over the window, not fired at once
    assert server.methods() == ["GET"] * 8


def test_error_rate_counts_transport_failures_by_class(client: httpx.Client,
                                                       closed_port: int) -> None:
    result = http.error_rate(client, f"http://127.0.0.1:{closed_port}/", requests=4, window=0.1)
    assert (result["errors"], result["error_pct"], result["http_5xx"]) == (4, 100.0, 0)
    assert result["by_class"] == {"refused": 4}
    assert result["p50_ms"] is None and result["max_ms"] is None  # nothing answered


# The read-only handle


def test_probe_handle_only_reads(server: Server) -> None:
    handle = http.open_client(timeout=2.0, base_url=server.url, target="api")
    try:
        assert not any(hasattr(handle, name) for name in ("post", "put", "patch", "delete"))
        for method in ("POST", "PUT", "DELETE", "PATCH", "post"):
            with pytest.raises(PermanentError, match="only read"):
                handle.request(method, "/api/x")
            with pytest.raises(PermanentError, match="only read"), handle.stream(method, "/"):
                pass
        assert handle.get("/health").status_code == 200
        assert handle.head("/health").status_code == 200
        assert server.methods() == ["GET", "HEAD"]  # nothing else reached the server
    finally:
        handle.close()


def test_the_client_under_the_handle_only_reads_however_it_is_called(server: Server) -> None:
    from diagnostics.request_guard import ReadOnlyRefusal

    handle = http.open_client(timeout=2.0, base_url=server.url, target="api")
    raw = handle._client  # past the handle: what a bug or an attacker would reach for
    url = server.url + "/api/x"
    bypasses = [
        lambda: raw.post(url, json={"stop": True}),
        lambda: raw.request("POST", url),
        lambda: raw.request("delete", url),
        lambda: raw.put(url),
        lambda: raw.patch(url),
        lambda: raw.send(raw.build_request("POST", url)),
        lambda: raw.stream("POST", url).__enter__(),
        lambda: raw.request("OPTIONS", url),
        lambda: raw._transport_for_url(httpx.URL(url)).handle_request(
            httpx.Request("POST", url)),
    ]
    try:
        for attempt in bypasses:
            with pytest.raises(ReadOnlyRefusal, match="HTTP handle is read-only"):
                attempt()
        assert raw.get(url).status_code == 200  # reads still go
        assert server.methods() == ["GET"]  # nothing else reached the server
    finally:
        handle.close()


def test_a_proxy_from_the_environment_gets_the_read_only_transport_too(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    from diagnostics.request_guard import ReadOnlyRefusal

    # The loopback server stands in for a proxy: httpx mounts a transport for it.
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.setenv("NO_PROXY", "")
    with http.make_client(timeout=2.0) as client:
        target = "http://192.0.2.1/api/x"  # TEST-NET: reached only through the proxy
        assert client._transport_for_url(httpx.URL(target)) is not client._transport
        with pytest.raises(ReadOnlyRefusal):
            client.post(target)
        client.get(target)  # the proxy (our server) answers the GET
    assert server.methods() == ["GET"]


def test_probe_handle_stays_on_its_origin(server: Server, closed_port: int) -> None:
    handle = http.open_client(timeout=2.0, base_url=server.url + "/base")
    try:
        assert handle.url("") == server.url + "/base"
        assert handle.url("health") == handle.url("/health") == server.url + "/base/health"
        with pytest.raises(PermanentError, match="outside"):
            handle.get(f"http://127.0.0.1:{closed_port}/steal")
        assert handle.get(server.url + "/health").status_code == 200  # same origin is fine
    finally:
        handle.close()


def test_cancel_closes_the_client(server: Server) -> None:
    handle = http.open_client(timeout=2.0, base_url=server.url)
    handle.cancel()
    with pytest.raises(RuntimeError, match="closed"):
        handle.get("/health")


def test_check_functions_accept_the_handle(server: Server) -> None:
    handle = http.open_client(timeout=2.0, base_url=server.url)
    try:
        assert http.check_health(handle, handle.url("/health"))["ok"]
        assert http.sweep(handle, [handle.url("/api/a"), handle.url("/fail")])["some_fail"]
    finally:
        handle.close()


# The backend through a registry


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    http.register(reg)
    return reg


def _target(**settings: Any) -> Target:
    return Target("api", "http", http.HttpSettings(**settings))


def _run(registry: Registry, kind_name: str, target: Target,
         params: dict[str, Any]) -> dict[str, Any]:
    kind = registry.kind(kind_name)
    connector = registry.backend(kind.target_kind).connector
    with connector.probe(target, StepContext.outside_a_run(kind.timeout)) as handle:
        assert isinstance(handle, http.HttpProbe)
        return kind.func(handle, kind.params.model_validate(params))


def test_kinds_are_read_only_and_the_backend_has_no_action(registry: Registry) -> None:
    names = [k.name for k in registry if k.target_kind == "http"]
    assert names == ["http.error_rate", "http.health", "http.sweep"]
    assert not any(registry.kind(name).mutating for name in names)
    connector = registry.backend("http").connector
    with pytest.raises(PermanentError, match="only reads"):
        connector.action(_target(url="http://127.0.0.1:1"), StepContext.outside_a_run(5.0))
    prepare = getattr(connector, "prepare", None)
    assert callable(prepare)
    prepare()


def test_health_kind(registry: Registry, server: Server) -> None:
    target = _target(url=server.url, timeout="2s")
    ok = _run(registry, "http.health", target, {"path": "/health",
                                                "expect_json": {"db.state": "up"}})
    assert ok["ok"] and ok["verify_tls"] is True and ok["url"] == server.url + "/health"
    bad = _run(registry, "http.health", target, {"path": "degraded",
                                                 "expect_json": {"status": "ok"}})
    assert bad["error_class"] == "unexpected_body"
    # The target's URL may be the health URL itself: an empty path means exactly it.
    itself = _run(registry, "http.health", _target(url=server.url + "/text"), {})
    assert itself["ok"] and itself["url"] == server.url + "/text"


def test_sweep_and_error_rate_kinds(registry: Registry, server: Server) -> None:
    target = _target(url=server.url + "/api")
    swept = _run(registry, "http.sweep", target, {"paths": ["orders", "users", "broken"]})
    assert (swept["some_fail"], swept["failing"]) == (True, [server.url + "/api/broken"])
    rate = _run(registry, "http.error_rate", _target(url=server.url),
                {"path": "/flaky", "requests": 4, "window": "200ms"})
    assert (rate["errors"], rate["error_pct"], rate["verify_tls"]) == (1, 25.0, True)


def test_target_timeout_bounds_the_kinds(registry: Registry, server: Server) -> None:
    started = time.monotonic()
    result = _run(registry, "http.health", _target(url=server.url, timeout=0.5),
                  {"path": "/slow"})
    assert result["error_class"] == "timeout" and time.monotonic() - started < 5


def test_unverified_tls_says_so(registry: Registry, tls_server: Server) -> None:
    checked = _run(registry, "http.health", _target(url=tls_server.url), {})
    assert (checked["error_class"], checked["verify_tls"]) == ("tls", True)
    trusted = _run(registry, "http.health", _target(url=tls_server.url, verify_tls=False), {})
    assert (trusted["ok"], trusted["verify_tls"]) == (True, False)


def test_headers_env_is_sent_and_masked(registry: Registry, server: Server,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    token = "tok-8f14e45fceea167a5a36dedd4bea2543"
    monkeypatch.setenv("API_PROBE_HEADERS", f"Authorization: Bearer {token}\n\nX-Team: oncall\n")
    result = _run(registry, "http.health", _target(url=server.url, headers_env="API_PROBE_HEADERS"),
                  {"path": "/echo"})
    _, _, headers = server.requests[-1]
    assert headers["authorization"] == f"Bearer {token}" and headers["x-team"] == "oncall"
    assert headers["user-agent"] == http.USER_AGENT
    assert result["ok"] and token not in json.dumps(result)  # echoed back, but masked
    assert "***" in result["body_excerpt"]
    assert token not in SECRETS.scrub(f"sent {token} and Bearer {token}")


def test_headers_env_problems_are_permanent(registry: Registry, server: Server,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("API_PROBE_HEADERS", raising=False)
    target = _target(url=server.url, headers_env="API_PROBE_HEADERS")
    with pytest.raises(PermanentError, match="API_PROBE_HEADERS is not set"):
        _run(registry, "http.health", target, {})
    monkeypatch.setenv("API_PROBE_HEADERS", "Authorization Bearer hunter2-secret")
    with pytest.raises(PermanentError, match="line 1") as caught:
        _run(registry, "http.health", target, {})
    assert "hunter2" not in str(caught.value)  # says where, not what
    assert server.requests == []


@pytest.mark.parametrize("settings", [
    {"url": "api.example.com"},
    {"url": "https://user:pw@api.example.com"},
    {"url": "https://api.example.com", "verify": False},
    {"url": "https://api.example.com", "timeout": "soon"},
])
def test_settings_are_strict(settings: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        http.HttpSettings(**settings)


def test_settings_parse_durations() -> None:
    assert http.HttpSettings(url="https://api.example.com", timeout="2s").timeout == 2.0


@pytest.mark.parametrize(("kind", "params"), [
    ("http.health", {"path": "http://elsewhere.example/"}),
    ("http.health", {"expect_status": 700}),
    ("http.health", {"method": "POST"}),
    ("http.sweep", {"paths": []}),
    ("http.sweep", {"paths": ["//elsewhere.example/x"]}),
    ("http.error_rate", {"requests": 0}),
])
def test_params_are_validated(registry: Registry, kind: str, params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        registry.kind(kind).params.model_validate(params)


def test_importing_the_backend_does_not_import_httpx() -> None:
    code = ("import sys, diagnostics.http, diagnostics.logclass, diagnostics.trend; "
            "sys.exit('httpx' in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)
