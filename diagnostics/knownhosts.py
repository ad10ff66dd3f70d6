"""known_hosts as OpenSSH reads it, for paramiko: plain host keys, `@revoked` keys and
`@cert-authority` lines.

paramiko's own `HostKeys.load` knows neither marker: a `@cert-authority` line throws away
the whole file (its parser takes the marker for a host name and the pattern for a key
type), and a `@revoked` line is skipped silently, so a revoked key listed again for a host
would still be accepted. Here:

* a key on a `@revoked` line is refused for every host (OpenSSH: for the hosts its patterns
  match; `*` is the usual pattern), whether the host presents it plainly, as the key of a
  host certificate, or as the CA that signed one; it is taken out of the plain keys;
* a `@cert-authority PATTERNS KEY` line makes a host certificate acceptable for a host its
  patterns match (`*`, `?`, `!negation`; `[host]:port` for a port other than 22) when the
  certificate is a host certificate, signed by that CA (the signature checked), valid now,
  and names the host among its principals (or names none, as OpenSSH allows);
* a host with a plain key on file is checked against that key, as before; only a host with
  none asks the server for a certificate first.

A line that cannot be read is skipped (OpenSSH does the same), and said in `skipped`.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import PermanentError

HOST_CERTIFICATE = 2  # the certificate type of a host certificate (1 is a user's)
CERT_SUFFIX = "-cert-v01@openssh.com"


@dataclass(frozen=True)
class Authority:
    patterns: tuple[str, ...]
    key: Any  # paramiko.PKey
    line: int


@dataclass
class KnownHosts:
    path: Path
    entries: list[tuple[list[str], Any]] = field(default_factory=list)  # names, PKey
    revoked: set[bytes] = field(default_factory=set)  # key blobs
    authorities: list[Authority] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "line N: why"

    def is_revoked(self, blob: bytes) -> bool:
        return blob in self.revoked

    def host_keys(self) -> Any:
        """The plain keys (none revoked) as paramiko's HostKeys."""
        import paramiko

        keys = paramiko.HostKeys()
        for names, key in self.entries:
            for host in names:
                keys.add(host, key.get_name(), key)
        return keys

    def has_plain_key(self, name: str) -> bool:
        return self.host_keys().lookup(name) is not None

    def authorities_for(self, name: str) -> list[Authority]:
        return [a for a in self.authorities if _matches(a.patterns, name)]

    def certificate_problem(self, key: Any, hostname: str, known_name: str) -> str | None:
        """None when `key` (as paramiko loaded the server's host key) carries a host
        certificate this file's CAs vouch for; else why not, in words."""
        blob = getattr(key, "public_blob", None)
        if blob is None or not blob.key_type.endswith(CERT_SUFFIX):
            return "not a certificate"
        authorities = self.authorities_for(known_name)
        if not authorities:
            return f"no @cert-authority line of {self.path} covers {known_name}"
        try:
            cert = _Certificate.parse(blob.key_blob)
        except (ValueError, IndexError, EOFError) as exc:
            return f"the certificate cannot be read ({exc})"
        if cert.kind != HOST_CERTIFICATE:
            return "it is a user certificate, not a host certificate"
        if self.is_revoked(cert.signature_key) or self.is_revoked(key.asbytes()):
            return f"its key or its CA is @revoked in {self.path}"
        if not any(a.key.asbytes() == cert.signature_key for a in authorities):
            return f"it is signed by a CA that no @cert-authority line for {known_name} names"
        now = int(time.time())
        if not cert.valid_after <= now < cert.valid_before:
            return "it is not valid now (expired, or not yet valid)"
        if cert.principals and hostname not in cert.principals:
            return (f"it names {', '.join(cert.principals[:5])}, not {hostname}")
        if not cert.signature_valid():
            return "its CA signature does not verify"
        return None


def load(path: Path) -> KnownHosts:
    """The file at `path` (absent: nothing known). OSError when it cannot be read."""
    known = KnownHosts(path)
    if not path.is_file():
        return known
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        marker = fields.pop(0) if fields[0].startswith("@") else ""
        if marker not in ("", "@revoked", "@cert-authority") or len(fields) < 3:
            known.skipped.append(f"line {number}: {marker or 'too few fields'} is not read")
            continue
        try:
            key = _key(fields[1], fields[2])
        except ValueError as exc:
            known.skipped.append(f"line {number}: {exc}")
            continue
        names = fields[0].split(",")
        if marker == "@revoked":
            known.revoked.add(key.asbytes())
        elif marker == "@cert-authority":
            known.authorities.append(Authority(tuple(names), key, number))
        else:
            known.entries.append((names, key))
    known.entries = [(n, k) for n, k in known.entries if not known.is_revoked(k.asbytes())]
    return known


def _key(kind: str, text: str) -> Any:
    import paramiko

    try:
        return paramiko.PKey.from_type_string(kind, base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"the {kind} key is not base64 ({exc})") from None
    except paramiko.SSHException as exc:
        raise ValueError(f"key type {kind} is not supported ({exc})") from None


def _matches(patterns: tuple[str, ...], name: str) -> bool:
    """OpenSSH's host pattern list: any positive pattern matches and no negated one does;
    a hashed pattern (`|1|salt|hash`) matches its host."""
    import paramiko

    name = name.lower()
    matched = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if pattern.startswith("|1|"):
            hit = paramiko.HostKeys.hash_host(name, pattern) == pattern
        else:
            hit = _wildcard(pattern).fullmatch(name) is not None
        if hit and negated:
            return False
        matched = matched or hit
    return matched


def _wildcard(pattern: str) -> re.Pattern[str]:
    """OpenSSH's match_pattern: `*` and `?` only (so `[host]:port` is literal)."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.compile("".join(parts), re.DOTALL)


@dataclass(frozen=True)
class _Certificate:
    """The fields of an OpenSSH certificate (PROTOCOL.certkeys) that decide its validity."""

    kind: int
    principals: list[str]
    valid_after: int
    valid_before: int
    signature_key: bytes
    signed: bytes  # everything the CA signed
    signature: bytes

    @classmethod
    def parse(cls, blob: bytes) -> _Certificate:
        import paramiko

        msg = paramiko.Message(blob)
        cert_type = msg.get_text()
        msg.get_string()  # nonce
        plain = cert_type.removesuffix(CERT_SUFFIX)
        if plain == "ssh-ed25519":
            msg.get_string()
        elif plain.startswith("ecdsa-sha2-"):
            msg.get_string(), msg.get_string()  # curve, point
        elif plain in ("ssh-rsa", "rsa-sha2-256", "rsa-sha2-512"):
            msg.get_mpint(), msg.get_mpint()  # e, n
        else:
            raise ValueError(f"certificate type {cert_type} is not supported")
        msg.get_int64()  # serial
        kind = msg.get_int()
        msg.get_string()  # key id
        principals_blob = paramiko.Message(msg.get_binary())
        valid_after, valid_before = msg.get_int64(), msg.get_int64()
        msg.get_string(), msg.get_string(), msg.get_string()  # options, extensions, reserved
        signature_key = msg.get_binary()
        signed = blob[:msg.packet.tell()]
        signature = msg.get_binary()
        principals = []
        while principals_blob.get_remainder():
            principals.append(principals_blob.get_text())
        return cls(kind, principals, valid_after, valid_before, signature_key, signed,
                   signature)

    def signature_valid(self) -> bool:
        import paramiko

        ca_type = paramiko.Message(self.signature_key).get_text()
        try:
            ca = paramiko.PKey.from_type_string(ca_type, self.signature_key)
            return bool(ca.verify_ssh_sig(self.signed, paramiko.Message(self.signature)))
        except (paramiko.SSHException, ValueError):
            return False


class CertificateOrReject:
    """paramiko's missing-host-key policy for a host with no plain key on file: a host
    certificate the file's CAs vouch for is accepted; a revoked key is refused, saying so;
    anything else is rejected as RejectPolicy would."""

    def __init__(self, known: KnownHosts, host: str, hostname: str) -> None:
        self.known, self.host, self.hostname = known, host, hostname

    def missing_host_key(self, client: Any, known_name: str, key: Any) -> None:
        import paramiko

        if self.known.is_revoked(key.asbytes()):
            raise PermanentError(
                f"{self.host}: REVOKED host key: {known_name} presents {key.get_name()} "
                f"{key.fingerprint}, which {self.known.path} lists as @revoked; refusing to "
                "connect")
        if getattr(key, "public_blob", None) is not None:
            problem = self.known.certificate_problem(key, self.hostname, known_name)
            if problem is None:
                return
            raise PermanentError(f"{self.host}: host certificate of {known_name} refused: "
                                 f"{problem}; refusing to connect")
        raise paramiko.SSHException(f"Server {known_name!r} not found in known_hosts")


def transport_factory(known: KnownHosts, known_name: str) -> Callable[..., Any] | None:
    """For a host a CA covers and no plain key does: a Transport that asks the server for
    its host certificate first (paramiko asks for plain keys first, and a server offers
    both). None otherwise: paramiko's default."""
    if not known.authorities_for(known_name) or known.has_plain_key(known_name):
        return None
    import paramiko

    def factory(sock: Any, **options: Any) -> Any:
        transport = paramiko.Transport(sock, **options)
        security = transport.get_security_options()
        plain = [k for k in security.key_types if not k.endswith(CERT_SUFFIX)]
        certificates = [f"{k}{CERT_SUFFIX}" for k in plain
                        if f"{k}{CERT_SUFFIX}" in paramiko.Transport._key_info]
        security.key_types = [*certificates, *plain]
        return transport

    return factory
