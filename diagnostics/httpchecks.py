"""An HTTP endpoint's TLS certificate and its name's DNS resolution: read-only `http.*` checks.

    http.tls_certificate   the certificate and chain the target's host:port presents: days
                           to expiry, host name match, issuer, chain verified, self-signed,
                           expired or not yet valid, weak key or signature
    http.dns               the addresses a name resolves to (system resolver), against the
                           expected ones; NXDOMAIN, no answer and timeout told apart

Each returns `ok`, `level` (ok, warning, critical) and a one-line `summary` that names the
cause, as the host checks do. A check that could not look (the port refuses, no TLS
handshake) raises: the step fails and the report leads with "not checked", never an
all-clear. A DNS failure is a finding (the check looked: the name does not resolve).

Both run on the http backend's read-only handle and only read: a TLS handshake, a lookup.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runner.errors import PermanentError, TemporaryError
from runner.model import Duration
from runner.registry import Registry, StepKind

from .grading import RANK, Level, worst
from .http import KIND, HttpProbe

if TYPE_CHECKING:
    from cryptography import x509

MIN_RSA_BITS = 2048  # NIST SP 800-131A; browsers refuse shorter RSA keys
MIN_EC_BITS = 224
WEAK_HASHES = frozenset({"md5", "sha1"})




def _target_host_port(http: HttpProbe, port: int | None) -> tuple[str, int, str]:
    """(host, port, scheme) of the target's URL; `port` overrides the URL's."""
    parts = urlsplit(http.base_url)
    host = parts.hostname
    if not host:
        raise PermanentError(f"{http.target or 'http'}: the target's URL names no host")
    scheme = parts.scheme.lower()
    return host, port or parts.port or (443 if scheme == "https" else 80), scheme


# DNS


ResolveClass = Literal["nxdomain", "no_answer", "timeout", "server_failure", "error"]


class ResolveFailure(Exception):
    def __init__(self, error_class: ResolveClass, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


_GAI_CLASSES: dict[int, tuple[ResolveClass, str]] = {
    socket.EAI_NONAME: ("nxdomain", "the name does not exist (NXDOMAIN)"),
    socket.EAI_AGAIN: ("timeout", "the resolver did not answer (temporary failure)"),
    socket.EAI_FAIL: ("server_failure", "the resolver failed (SERVFAIL or refused)"),
}
if hasattr(socket, "EAI_NODATA"):  # glibc: the name exists but has no address record
    _GAI_CLASSES[socket.EAI_NODATA] = ("no_answer", "the name exists but has no address")
if hasattr(socket, "EAI_ADDRFAMILY"):
    _GAI_CLASSES[socket.EAI_ADDRFAMILY] = ("no_answer", "no address of the asked family")


def resolve(name: str, deadline: float, port: int = 0) -> list[str]:
    """The addresses `name` resolves to (system resolver, sorted, unique), within `deadline`
    seconds. getaddrinfo takes no timeout, so it runs on a daemon thread that is abandoned
    when the deadline passes (it ends when the resolver gives up). Raises ResolveFailure."""
    outcome: list[Any] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            outcome.append(socket.getaddrinfo(name, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            outcome.append(exc)
        done.set()

    threading.Thread(target=lookup, name=f"resolve {name}", daemon=True).start()
    if not done.wait(max(deadline, 0.0)):
        raise ResolveFailure("timeout", f"no answer within {deadline:g}s")
    result = outcome[0]
    if isinstance(result, socket.gaierror):
        error_class, said = _GAI_CLASSES.get(result.errno or 0, ("error", str(result)))
        raise ResolveFailure(error_class, f"{said} [{result.strerror}]")
    if isinstance(result, OSError):
        raise ResolveFailure("error", str(result))
    addresses = {str(ipaddress.ip_address(info[4][0].partition("%")[0])) for info in result}
    return sorted(addresses, key=lambda a: (ipaddress.ip_address(a).version, a))


class DnsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=253,
                             description="the name to resolve; default: the target URL's host")
    expect: list[str] = Field(default_factory=list, max_length=64,
                              description="addresses the name must resolve to (all of them, "
                                          "and no others)")
    timeout: Duration = Field(5.0, gt=0, le=60, description="deadline of the lookup")

    @field_validator("expect")
    @classmethod
    def _addresses(cls, expect: list[str]) -> list[str]:
        return [str(ipaddress.ip_address(a.strip())) for a in expect]


def grade_dns(name: str, addresses: list[str], expect: list[str]) -> dict[str, Any]:
    missing = sorted(set(expect) - set(addresses))
    unexpected = sorted(set(addresses) - set(expect)) if expect else []
    found = ", ".join(addresses)
    level: Level = "ok"
    summary = f"{name} resolves to {found}"
    if expect and (missing or unexpected):
        # Some overlap is a warning (a record added or left behind); none is critical.
        level = "warning" if set(addresses) & set(expect) else "critical"
        summary = f"{name} resolves to {found}, expected {', '.join(expect)}"
        summary += f" (missing {', '.join(missing)})" if missing else ""
        summary += f" (unexpected {', '.join(unexpected)})" if unexpected else ""
    return {"ok": level == "ok", "level": level, "summary": summary, "name": name,
            "addresses": addresses, "expect": expect, "missing": missing,
            "unexpected": unexpected, "error_class": None, "error": None}


def dns(http: HttpProbe, params: DnsParams) -> dict[str, Any]:
    name = params.name or _target_host_port(http, None)[0]
    started = time.monotonic()
    try:
        addresses = resolve(name, params.timeout)
    except ResolveFailure as exc:
        return {"ok": False, "level": "critical",
                "summary": f"{name} does not resolve: {exc}", "name": name, "addresses": [],
                "expect": params.expect, "missing": params.expect, "unexpected": [],
                "error_class": exc.error_class, "error": str(exc),
                "elapsed_ms": round((time.monotonic() - started) * 1000, 1)}
    result = grade_dns(name, addresses, params.expect)
    return {**result, "elapsed_ms": round((time.monotonic() - started) * 1000, 1)}


# TLS


class TlsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    warning_days: int = Field(30, ge=0, le=3650, description="warn this many days before expiry")
    critical_days: int = Field(7, ge=0, le=3650, description="critical this many days before")
    ca_file: str | None = Field(None, description="PEM file of CAs to verify the chain "
                                                  "against; default: the system trust store")
    server_name: str | None = Field(None, max_length=253,
                                    description="name sent (SNI) and matched; default: the "
                                                "target URL's host")
    port: int | None = Field(None, ge=1, le=65535,
                             description="default: the URL's port (443 for https)")
    timeout: Duration = Field(10.0, gt=0, le=60,
                              description="deadline of the lookup, connect and handshakes")

    @model_validator(mode="after")
    def _ordered(self) -> TlsParams:
        if self.critical_days > self.warning_days:
            raise ValueError("critical_days must not exceed warning_days")
        return self


def _connect(host: str, port: int, deadline: float) -> socket.socket:
    try:
        addresses = resolve(host, deadline - time.monotonic(), port)
    except ResolveFailure as exc:
        raise TemporaryError(f"not checked: {host} does not resolve: {exc}") from None
    errors = []
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            return socket.create_connection((address, port), timeout=remaining)
        except OSError as exc:
            errors.append(f"{address}: {exc.strerror or exc}")
    raise TemporaryError(f"not checked: cannot connect to {host}:{port}: "
                         f"{'; '.join(errors) or 'deadline passed'}")


def _handshake(context: ssl.SSLContext, host: str, port: int, server_name: str,
               deadline: float) -> ssl.SSLSocket:
    raw = _connect(host, port, deadline)
    try:
        raw.settimeout(max(deadline - time.monotonic(), 0.001))
        sni = None if _is_ip(server_name) else server_name
        return context.wrap_socket(raw, server_hostname=sni)
    except BaseException:
        raw.close()
        raise


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _presented_chain(tls: ssl.SSLSocket) -> list[bytes]:
    """The certificates the server sent, leaf first (DER). Python 3.13 has the public
    `get_unverified_chain`; 3.10-3.12 have it on the private `_sslobj` only."""
    getter = getattr(tls, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
    chain = getter() if getter else None
    if chain:
        # 3.13 returns DER bytes; older versions `_ssl.Certificate`s (2: DER encoding)
        return [c if isinstance(c, bytes) else c.public_bytes(2) for c in chain]
    leaf = tls.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def fetch_certificates(host: str, port: int, server_name: str, ca_file: str | None,
                       timeout: float) -> tuple[list[bytes], str | None, str | None]:
    """(chain presented, leaf first; verify error or None when it verified; TLS version).

    Verification is a handshake of its own against the trust store; the chain is read with
    checks off and security level 0, so an expired, untrusted or weak certificate can still
    be read and described."""
    deadline = time.monotonic() + timeout
    try:
        verifying = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise PermanentError(f"ca_file {ca_file}: {exc.strerror or exc}") from None
    verifying.check_hostname = False  # matched below, to report it rather than fail on it
    verify_error: str | None = None
    try:
        with _handshake(verifying, host, port, server_name, deadline) as tls:
            return _presented_chain(tls), None, tls.version()
    except ssl.SSLCertVerificationError as exc:
        verify_error = exc.verify_message or str(exc)
    except ssl.SSLError as exc:  # e.g. the leaf's key is under the security level
        verify_error = exc.reason or str(exc)
    except TimeoutError:
        raise TemporaryError(f"not checked: the TLS handshake with {host}:{port} did not "
                             f"finish within {timeout:g}s") from None
    except OSError as exc:  # reset or closed mid-handshake
        raise TemporaryError(f"not checked: the TLS handshake with {host}:{port} failed: "
                             f"{exc.strerror or exc}") from None
    reading = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    reading.check_hostname = False
    reading.verify_mode = ssl.CERT_NONE
    reading.set_ciphers("ALL:@SECLEVEL=0")
    reading.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    try:
        with _handshake(reading, host, port, server_name, deadline) as tls:
            return _presented_chain(tls), verify_error, tls.version()
    except TimeoutError:
        raise TemporaryError(f"not checked: the TLS handshake with {host}:{port} did not "
                             f"finish within {timeout:g}s") from None
    except ssl.SSLError as exc:
        raise PermanentError(f"not checked: no TLS handshake with {host}:{port}: "
                             f"{exc.reason or exc}") from None
    except OSError as exc:
        raise TemporaryError(f"not checked: the TLS handshake with {host}:{port} failed: "
                             f"{exc.strerror or exc}") from None


def _names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of the subjectAltName extension."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return (san.get_values_for_type(x509.DNSName),
            [str(ip) for ip in san.get_values_for_type(x509.IPAddress)])


def _common_names(cert: x509.Certificate) -> list[str]:
    from cryptography.x509.oid import NameOID

    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def name_matches(name: str, dns_names: list[str], ips: list[str],
                 common_names: list[str]) -> bool:
    """RFC 6125: an IP must be a SAN IP address; a host name a SAN DNS name, a wildcard
    standing for exactly one left-most label; the CN counts only when there is no SAN."""
    if _is_ip(name):
        return str(ipaddress.ip_address(name)) in ips
    patterns = dns_names or ([] if ips else common_names)
    name = name.rstrip(".").lower()
    for pattern in (p.rstrip(".").lower() for p in patterns):
        if pattern == name:
            return True
        if pattern.startswith("*.") and "." in name:
            label, _, rest = name.partition(".")
            if label and rest == pattern[2:] and rest.count(".") >= 1:
                return True
    return False


def _key(cert: x509.Certificate) -> tuple[str, int | None]:
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}", key.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    return type(key).__name__.removeprefix("_").removesuffix("PublicKey"), None


def _hash(cert: x509.Certificate) -> str | None:
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return "unknown"
    return algorithm.name if algorithm else None  # None: Ed25519/Ed448, no separate hash


def _weakness(cert: x509.Certificate, self_signed: bool) -> list[str]:
    """Why clients would refuse this certificate's key or signature; none: empty."""
    weak = []
    key_type, bits = _key(cert)
    if bits is not None and key_type in ("RSA", "DSA") and bits < MIN_RSA_BITS:
        weak.append(f"{key_type}-{bits} key (under {MIN_RSA_BITS} bits)")
    if bits is not None and key_type.startswith("EC") and bits < MIN_EC_BITS:
        weak.append(f"{key_type} key of {bits} bits")
    digest = _hash(cert)
    if digest in WEAK_HASHES and not self_signed:  # a root's own signature is not checked
        weak.append(f"{digest.upper().replace('SHA', 'SHA-')} signature")
    return weak


def _is_self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    from cryptography.exceptions import InvalidSignature

    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError):  # not its own issuer, or a key it can't check
        return False
    return True


def _describe(cert: x509.Certificate) -> dict[str, Any]:
    key_type, bits = _key(cert)
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "key": f"{key_type} {bits}" if bits else key_type,
            "signature_hash": _hash(cert)}


def grade_certificate(chain_der: list[bytes], server_name: str, verify_error: str | None,
                      params: TlsParams, now: datetime | None = None) -> dict[str, Any]:
    """Grade the presented chain (leaf first): each problem with its level, the worst first
    in the summary."""
    from cryptography import x509

    now = now or datetime.now(UTC)
    chain = [x509.load_der_x509_certificate(der) for der in chain_der]
    leaf = chain[0]
    self_signed = _is_self_signed(leaf)
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    seconds_left = (not_after - now).total_seconds()
    days_left = int(seconds_left / 86400)  # whole days, toward zero: "expired 3 days ago"
    expired, not_yet_valid = now > not_after, now < not_before
    dns_names, ips = _names(leaf)
    matched = name_matches(server_name, dns_names, ips, _common_names(leaf))
    weak = _weakness(leaf, self_signed)
    for index, cert in enumerate(chain[1:], 1):  # intermediates the server sent
        if not _is_self_signed(cert):
            weak += [f"chain certificate {index}: {w}" for w in _weakness(cert, False)]

    problems: list[tuple[Level, str]] = []
    if expired:
        problems.append(("critical", f"expired {-days_left} days ago "
                                     f"({not_after:%Y-%m-%d %H:%M} UTC)"))
    elif not_yet_valid:
        problems.append(("critical", f"not valid until {not_before:%Y-%m-%d %H:%M} UTC"))
    elif days_left <= params.critical_days:
        problems.append(("critical", f"expires in {days_left} days "
                                     f"({not_after:%Y-%m-%d}), critical at "
                                     f"{params.critical_days}"))
    elif days_left <= params.warning_days:
        problems.append(("warning", f"expires in {days_left} days ({not_after:%Y-%m-%d}), "
                                    f"warning at {params.warning_days}"))
    if not matched:
        names = ", ".join(dns_names + ips) or ", ".join(_common_names(leaf)) or "none"
        problems.append(("critical", f"not valid for {server_name} (names: {names})"))
    if self_signed and verify_error:  # one trusted through ca_file (pinned) is fine
        problems.append(("critical", "self-signed, and not trusted"))
    elif verify_error:
        problems.append(("critical", f"chain does not verify: {verify_error}"))
    problems += [("critical", f"weak {w}") for w in weak]  # clients refuse these

    level = worst([lvl for lvl, _ in problems])
    issuer = leaf.issuer.rfc4514_string()
    if problems:
        ordered = sorted(problems, key=lambda p: -RANK[p[0]])
        summary = f"certificate for {server_name}: " + "; ".join(t for _, t in ordered)
    else:
        summary = (f"certificate for {server_name} valid for {days_left} more days, "
                   f"issued by {issuer}")
    return {"ok": level == "ok", "level": level, "summary": summary,
            "problems": [text for _, text in problems],
            "days_left": days_left, "expired": expired, "not_yet_valid": not_yet_valid,
            "hostname_match": matched, "dns_names": dns_names, "ip_addresses": ips,
            "verified": verify_error is None, "verify_error": verify_error,
            "self_signed": self_signed, "weak": weak, **_describe(leaf),
            "chain": [_describe(cert) for cert in chain]}


def tls_certificate(http: HttpProbe, params: TlsParams) -> dict[str, Any]:
    host, port, scheme = _target_host_port(http, params.port)
    if scheme != "https" and params.port is None:
        raise PermanentError(f"{http.target or 'http'}: the target's URL is plain http: no "
                             "TLS to check (give port: to check another port)")
    server_name = params.server_name or host
    chain, verify_error, version = fetch_certificates(host, port, server_name, params.ca_file,
                                                      params.timeout)
    if not chain:
        raise PermanentError(f"not checked: {host}:{port} presented no certificate")
    result = grade_certificate(chain, server_name, verify_error, params)
    return {**result, "host": host, "port": port, "server_name": server_name,
            "tls_version": version, "trust": params.ca_file or "system trust store"}


_GRADED = {"ok": "true when level is ok", "level": "ok, warning or critical",
           "summary": "one line naming each cause, the worst first"}


def register(registry: Registry) -> None:
    registry.add(StepKind(
        "http.tls_certificate", KIND, tls_certificate, TlsParams, False,
        "the certificate the target's host:port presents: expiry, name match, chain, "
        "self-signed, weak key or signature",
        {**_GRADED, "days_left": "whole days until notAfter (negative: expired)",
         "problems": "each cause, as in the summary",
         "hostname_match": "the leaf is valid for server_name (SAN; CN only without SAN)",
         "verified": "the chain verifies against ca_file or the system trust store",
         "verify_error": "why it does not verify", "self_signed": "the leaf signs itself",
         "expired / not_yet_valid": "outside the validity period",
         "weak": "RSA/DSA under 2048 bits, EC under 224, MD5 or SHA-1 signature",
         "subject / issuer / not_before / not_after / key / signature_hash": "of the leaf",
         "dns_names / ip_addresses": "the leaf's subjectAltName",
         "chain": "each certificate presented, leaf first", "tls_version": "negotiated"},
        timeout=30.0))
    registry.add(StepKind(
        "http.dns", KIND, dns, DnsParams, False,
        "resolve a name (default: the target's host) with the system resolver, "
        "against expected addresses",
        {**_GRADED, "name": "the name resolved", "addresses": "what it resolves to",
         "missing / unexpected": "against expect",
         "error_class": "nxdomain, no_answer, timeout, server_failure, error; null when "
                        "it resolved", "error": "what the resolver said",
         "elapsed_ms": "time the lookup took"}, timeout=30.0))
