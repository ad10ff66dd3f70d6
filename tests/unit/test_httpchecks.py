"""http.tls_certificate and http.dns against real TLS servers on 127.0.0.1, started here with
certificates made here (cryptography; the SHA-1 one by the openssl CLI, which cryptography
refuses to sign with)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from diagnostics import http, httpchecks
from runner.context import StepContext
from runner.errors import PermanentError, TemporaryError
from runner.inventory import Target
from runner.registry import Registry
from tests.support.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]

NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)
Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: Key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Ca:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name("runbook test CA")
        self.cert = (x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(NOW - DAY).not_valid_after(NOW + 365 * DAY)
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .sign(self.key, hashes.SHA256()))

    def leaf(self, *, days: float = 60, starts: float = -1, sans: tuple[str, ...] = (
             "127.0.0.1", "localhost"), key: Key | None = None, self_signed: bool = False,
             ) -> tuple[x509.Certificate, Key]:
        key = key or ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for san in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                names.append(x509.DNSName(san))
        subject = _name(sans[0] if sans else "leaf")
        builder = (x509.CertificateBuilder().subject_name(subject)
                   .issuer_name(subject if self_signed else self.name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(NOW + starts * DAY).not_valid_after(NOW + days * DAY))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
        return builder.sign(key if self_signed else self.key, hashes.SHA256()), key


class TlsServer:
    """Accepts TLS connections on 127.0.0.1 in a thread: handshake, then close."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.set_ciphers("ALL:@SECLEVEL=0")  # so it may serve the weak certificates
        context.load_cert_chain(cert_file, key_file)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handshakes = 0
        self.context = context
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                conn.settimeout(5)
                with self.context.wrap_socket(conn, server_side=True):
                    self.handshakes += 1
            except OSError:
                pass  # the client refused our certificate: its business
            finally:
                conn.close()

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (Linux)
        self.listener.close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def ca() -> Ca:
    return Ca()


@pytest.fixture
def ca_file(ca: Ca, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_bytes(_pem(ca.cert))
    return str(path)


ServeFn = Callable[..., TlsServer]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeFn]:
    servers: list[TlsServer] = []

    def start(cert: x509.Certificate | bytes, key: Key | bytes,
              *chain: x509.Certificate) -> TlsServer:
        cert_file, key_file = tmp_path / f"c{len(servers)}.pem", tmp_path / f"k{len(servers)}.pem"
        cert_pem = cert if isinstance(cert, bytes) else _pem(cert)
        cert_file.write_bytes(cert_pem + b"".join(_pem(c) for c in chain))
        key_file.write_bytes(key if isinstance(key, bytes) else _key_pem(key))
        servers.append(TlsServer(cert_file, key_file))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    http.register(reg)
    httpchecks.register(reg)
    return reg


def _run(registry: Registry, kind_name: str, url: str, **params: Any) -> dict[str, Any]:
    kind = registry.kind(kind_name)
    connector = registry.backend(kind.target_kind).connector
    target = Target("api", "http", http.HttpSettings(url=url, timeout="5s"))
    with connector.probe(target, StepContext.outside_a_run(kind.timeout)) as handle:
        return kind.func(handle, kind.params.model_validate(params))


def _tls(registry: Registry, server: TlsServer, host: str = "127.0.0.1",
         **params: Any) -> dict[str, Any]:
    return _run(registry, "http.tls_certificate", f"https://{host}:{server.port}/healthz",
                **params)


# TLS certificate


def test_kinds_are_registered_read_only_through_the_entry_point() -> None:
    registry = Registry.from_entry_points()
    for name in ("http.tls_certificate", "http.dns"):
        kind = registry.kind(name)
        assert kind.target_kind == "http" and not kind.mutating


def test_valid_chain_for_60_days_is_ok(registry: Registry, ca: Ca, ca_file: str,
                                       serve: ServeFn) -> None:
    server = serve(*ca.leaf(days=60), ca.cert)
    result = _tls(registry, server, ca_file=ca_file)
    assert result["ok"] and result["level"] == "ok", result["summary"]
    assert result["days_left"] in (59, 60) and result["verified"] and result["hostname_match"]
    assert result["issuer"] == "CN=runbook test CA" and not result["self_signed"]
    assert len(result["chain"]) == 2 and result["chain"][1]["subject"] == "CN=runbook test CA"
    assert result["summary"].startswith("certificate for 127.0.0.1 valid for 59 more days")
    # The server counts its side of the handshake in its own thread, just after ours ends.
    wait_for(lambda: server.handshakes >= 1, "the server to count the handshake")
    # by host name too, matched against the SAN DNS name
    by_name = _tls(registry, server, host="localhost", ca_file=ca_file)
    assert by_name["ok"] and by_name["server_name"] == "localhost"


def test_expiry_thresholds(registry: Registry, ca: Ca, ca_file: str, serve: ServeFn) -> None:
    soon = _tls(registry, serve(*ca.leaf(days=5)), ca_file=ca_file)
    assert soon["level"] == "critical" and soon["days_left"] == 4
    assert "expires in 4 days" in soon["summary"] and "critical at 7" in soon["summary"]
    month = _tls(registry, serve(*ca.leaf(days=20)), ca_file=ca_file)
    assert month["level"] == "warning" and "warning at 30" in month["summary"]
    # thresholds are params
    relaxed = _tls(registry, serve(*ca.leaf(days=20)), ca_file=ca_file, warning_days=10,
                   critical_days=3)
    assert relaxed["ok"]


def test_expired_and_not_yet_valid(registry: Registry, ca: Ca, ca_file: str,
                                   serve: ServeFn) -> None:
    expired = _tls(registry, serve(*ca.leaf(starts=-30, days=-3)), ca_file=ca_file)
    assert expired["level"] == "critical" and expired["expired"] and expired["days_left"] < 0
    assert "expired 3 days ago" in expired["summary"]
    assert not expired["verified"] and "expired" in expired["verify_error"]
    future = _tls(registry, serve(*ca.leaf(starts=2, days=60)), ca_file=ca_file)
    assert future["level"] == "critical" and future["not_yet_valid"] and not future["expired"]
    assert "not valid until" in future["summary"]


def test_wrong_host_name(registry: Registry, ca: Ca, ca_file: str, serve: ServeFn) -> None:
    result = _tls(registry, serve(*ca.leaf(sans=("other.example", "*.other.example"))),
                  ca_file=ca_file)
    assert result["level"] == "critical" and not result["hostname_match"]
    assert result["verified"]  # the chain is fine: only the name is wrong
    assert "not valid for 127.0.0.1 (names: other.example, *.other.example)" in result["summary"]


def test_self_signed(registry: Registry, ca: Ca, serve: ServeFn, tmp_path: Path) -> None:
    result = _tls(registry, serve(*ca.leaf(self_signed=True)))
    assert result["level"] == "critical" and result["self_signed"] and not result["verified"]
    assert result["summary"] == "certificate for 127.0.0.1: self-signed, and not trusted"
    # trusted through ca_file (pinned), a self-signed certificate is fine
    cert, key = ca.leaf(self_signed=True)
    pinned = tmp_path / "pinned.pem"
    pinned.write_bytes(_pem(cert))
    trusted = _tls(registry, serve(cert, key), ca_file=str(pinned))
    assert trusted["ok"] and trusted["self_signed"] and trusted["verified"], trusted["summary"]


def test_untrusted_chain_without_ca_file(registry: Registry, ca: Ca, serve: ServeFn) -> None:
    result = _tls(registry, serve(*ca.leaf()))
    assert result["level"] == "critical" and not result["verified"]
    assert result["trust"] == "system trust store" and not result["self_signed"]
    assert "chain does not verify: unable to get local issuer certificate" in result["summary"]
    with_root = _tls(registry, serve(*ca.leaf(), ca.cert))  # the server sends its root too
    assert with_root["level"] == "critical" and len(with_root["chain"]) == 2
    assert ("chain does not verify: self-signed certificate in certificate chain"
            in with_root["summary"])


def test_rsa_1024_key_is_weak(registry: Registry, ca: Ca, ca_file: str,
                              serve: ServeFn) -> None:
    result = _tls(registry, serve(*ca.leaf(key=rsa.generate_private_key(65537, 1024))),
                  ca_file=ca_file)
    assert result["level"] == "critical" and result["key"] == "RSA 1024"
    assert result["weak"] == ["RSA-1024 key (under 2048 bits)"]
    strong = _tls(registry, serve(*ca.leaf(key=rsa.generate_private_key(65537, 2048))),
                  ca_file=ca_file)
    assert strong["ok"] and strong["key"] == "RSA 2048" and strong["weak"] == []


def test_sha1_signature_is_weak(registry: Registry, ca: Ca, serve: ServeFn,
                                tmp_path: Path) -> None:
    ca_key, ca_cert, csr = tmp_path / "ca.key", tmp_path / "ca.crt", tmp_path / "leaf.csr"
    ca_key.write_bytes(_key_pem(ca.key))
    ca_cert.write_bytes(_pem(ca.cert))
    leaf_key = rsa.generate_private_key(65537, 2048)
    csr.write_bytes(x509.CertificateSigningRequestBuilder().subject_name(_name("127.0.0.1"))
                    .sign(leaf_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    ext = tmp_path / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    leaf_pem = subprocess.run(
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "60", "-sha1", "-extfile", str(ext)],
        check=True, capture_output=True, cwd=tmp_path).stdout
    result = _tls(registry, serve(leaf_pem, _key_pem(leaf_key)), ca_file=str(ca_cert))
    assert result["signature_hash"] == "sha1" and result["weak"] == ["SHA-1 signature"]
    assert result["level"] == "critical" and "weak SHA-1 signature" in result["summary"]


def test_cannot_look_is_an_error_not_a_finding(registry: Registry) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    with pytest.raises(TemporaryError, match="not checked: cannot connect"):
        _run(registry, "http.tls_certificate", f"https://127.0.0.1:{port}")
    # a port that speaks no TLS: the peer closes at once
    silent = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def close_each() -> None:
        while not done.is_set():
            try:
                conn, _ = silent.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            conn.close()

    threading.Thread(target=close_each, daemon=True).start()
    try:
        with pytest.raises((TemporaryError, PermanentError), match="not checked"):
            _run(registry, "http.tls_certificate", f"https://127.0.0.1:{silent.getsockname()[1]}")
    finally:
        done.set()
        silent.close()
    # a port that accepts and never answers the handshake: the deadline ends it
    mute = socket.create_server(("127.0.0.1", 0))
    try:
        with pytest.raises(TemporaryError, match=r"did not finish within 0\.5s"):
            _run(registry, "http.tls_certificate", f"https://127.0.0.1:{mute.getsockname()[1]}",
                 timeout="0.5s")
    finally:
        mute.close()
    with pytest.raises(PermanentError, match=r"ca_file /nonexistent\.pem"):
        _run(registry, "http.tls_certificate", "https://127.0.0.1:1", ca_file="/nonexistent.pem")
    with pytest.raises(PermanentError, match="plain http"):
        _run(registry, "http.tls_certificate", "http://127.0.0.1:8080")


def test_params_are_validated() -> None:
    with pytest.raises(ValidationError, match="critical_days"):
        httpchecks.TlsParams(warning_days=5, critical_days=10)
    with pytest.raises(ValidationError):
        httpchecks.DnsParams(expect=["not-an-address"])


def test_name_matching_rules() -> None:
    match = httpchecks.name_matches
    assert match("api.example.com", ["*.example.com"], [], [])
    assert not match("a.b.example.com", ["*.example.com"], [], [])
    assert not match("example.com", ["*.example.com"], [], [])
    assert match("host", [], [], ["host"])  # CN only when there is no SAN
    assert not match("host", ["other"], [], ["host"])
    assert match("::1", [], ["::1"], []) and not match("127.0.0.1", ["127.0.0.1"], [], [])


# DNS


def test_localhost_resolves_to_loopback(registry: Registry) -> None:
    result = _run(registry, "http.dns", "http://localhost:8080/", expect=["127.0.0.1"])
    assert result["name"] == "localhost" and "127.0.0.1" in result["addresses"]
    assert result["error_class"] is None
    # ::1 may also be listed (it depends on /etc/hosts): that is `unexpected`, a warning
    assert result["level"] == ("ok" if result["addresses"] == ["127.0.0.1"] else "warning")
    plain = _run(registry, "http.dns", "http://localhost:8080/")
    assert plain["ok"] and plain["summary"].startswith("localhost resolves to 127.0.0.1")


def test_expected_addresses_missing_is_critical(registry: Registry) -> None:
    result = _run(registry, "http.dns", "http://127.0.0.1/", name="localhost",
                  expect=["192.0.2.7"])
    assert result["level"] == "critical" and result["missing"] == ["192.0.2.7"]
    assert "expected 192.0.2.7 (missing 192.0.2.7)" in result["summary"]


def test_failure_classes_from_a_real_resolver_in_a_namespace_of_our_own(
        tmp_path: Path) -> None:
    """glibc's resolver against a DNS stand-in (tests/support/dnsstub.py) in a network and
    mount namespace of the test's own: no query leaves the machine."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions attempts:1 timeout:1\n")
    script = (f"ip link set lo up && mount --bind {resolv} /etc/resolv.conf && exec "
              f"{sys.executable} -m tests.support.dnsstub --record known.runbook.test=192.0.2.10"
              " --servfail broken.runbook.test --"
              " known.runbook.test missing.runbook.test broken.runbook.test")
    done = subprocess.run(["unshare", "-n", "-m", "--", "sh", "-c", script], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    known, missing, broken = (json.loads(line) for line in done.stdout.splitlines())
    assert known["ok"] and known["addresses"] == ["192.0.2.10"]
    assert missing["error_class"] == "nxdomain" and missing["level"] == "critical"
    assert missing["summary"].startswith("missing.runbook.test does not resolve: ")
    # glibc reports a SERVFAIL as a temporary failure (EAI_AGAIN), as it does a timeout
    assert broken["error_class"] == "timeout" and not broken["ok"]


def test_grade_dns_partial_overlap_is_a_warning() -> None:
    graded = httpchecks.grade_dns("db", ["10.0.0.1", "10.0.0.2"], ["10.0.0.1"])
    assert graded["level"] == "warning" and graded["unexpected"] == ["10.0.0.2"]
    assert httpchecks.grade_dns("db", ["10.0.0.1"], ["10.0.0.1"])["ok"]


# The triage playbook


class HttpsHealthServer:
    """A real HTTPS server on 127.0.0.1 answering every GET with 200."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_endpoint_health_playbook_leads_with_the_certificate(
        ca: Ca, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from runner.cli import main

    cert, key = ca.leaf(days=5)  # expiring, and from a CA the system does not trust
    (tmp_path / "c.pem").write_bytes(_pem(cert))
    (tmp_path / "k.pem").write_bytes(_key_pem(key))
    server = HttpsHealthServer(tmp_path / "c.pem", tmp_path / "k.pem")
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(f"targets:\n  shop:\n    kind: http\n    url: https://localhost:"
                         f"{server.port}\n    verify_tls: false\n")
    try:
        code = main(["run", "endpoint-health", "--inventory", str(inventory), "-t",
                     "endpoint=shop", "--no-input",
                     "-o", "json"])
    finally:
        server.close()
    out = capsys.readouterr().out
    report = json.loads(out)
    fired = {f["id"]: f for f in report["findings"]}
    assert set(fired) == {"certificate"}, out  # health answered, localhost resolved
    assert fired["certificate"]["severity"] == "P1"
    assert "expires in 4 days" in fired["certificate"]["message"]
    assert "chain does not verify" in fired["certificate"]["message"]
    assert code == 1, out
    assert {s["id"]: s["status"] for s in report["steps"]} == {
        "health": "ok", "tls": "ok", "dns": "ok"} and not report["not_checked"]
