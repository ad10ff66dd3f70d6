"""known_hosts as OpenSSH reads it: `@cert-authority` and `@revoked` lines no longer make
paramiko drop the whole file, a revoked key is never accepted, and a host certificate is
accepted only when a CA line for the host signed it, for that host, now. Certificates are
made by this machine's ssh-keygen (OpenSSH's own), keys by `cryptography`."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import pytest

from diagnostics import knownhosts
from runner.errors import PermanentError

HOST_IP = "10.1.2.3"


def keygen(directory: Path, name: str) -> str:
    """A fresh Ed25519 key pair by ssh-keygen; returns the public line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name,
                    "-f", str(directory / name)], check=True)
    return " ".join((directory / f"{name}.pub").read_text().split()[:2])


def certify(directory: Path, ca: str, host: str, *options: str) -> Any:
    """`host`'s public key certified by `ca` (ssh-keygen -s); as paramiko loads a server's
    host key when the server presents that certificate."""
    import paramiko

    (directory / f"{host}-cert.pub").unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-s", str(directory / ca), "-I", "lab", *options,
                    str(directory / f"{host}.pub")], check=True, capture_output=True)
    blob = base64.b64decode((directory / f"{host}-cert.pub").read_text().split()[1])
    return paramiko.Ed25519Key(msg=paramiko.Message(blob))


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, str]:
    return {name: keygen(tmp_path, name) for name in ("ca", "other-ca", "host", "old")}


def write(tmp_path: Path, *lines: str) -> knownhosts.KnownHosts:
    path = tmp_path / "known_hosts"
    path.write_text("".join(f"{line}\n" for line in lines))
    return knownhosts.load(path)


def test_paramiko_alone_cannot_read_a_file_with_a_cert_authority_line(
        tmp_path: Path, keys: dict[str, str]) -> None:
    """The bug: every host of the file is lost, not only the CA line."""
    import paramiko

    path = tmp_path / "known_hosts"
    path.write_text(f"@cert-authority *.lab {keys['ca']}\n{HOST_IP} {keys['host']}\n")
    with pytest.raises(paramiko.hostkeys.InvalidHostKey):
        paramiko.HostKeys(str(path))


def test_every_kind_of_line_is_read(tmp_path: Path, keys: dict[str, str]) -> None:
    known = write(tmp_path, "# a comment", f"@cert-authority *.lab,10.1.* {keys['ca']}",
                  f"@revoked * {keys['old']}", f"{HOST_IP},db.lab {keys['host']}",
                  f"old.lab {keys['old']}", "garbage", f"@unknown x {keys['host']}",
                  "x.lab ssh-ed25519 not-base64!")
    assert [a.patterns for a in known.authorities] == [("*.lab", "10.1.*")]
    assert known.host_keys().lookup(HOST_IP) is not None
    assert known.host_keys().lookup("old.lab") is None  # revoked: not a key any more
    assert [s.split(":")[0] for s in known.skipped] == ["line 6", "line 7", "line 8"]


@pytest.mark.parametrize("patterns, name, covered", [
    ("*.lab", "db.lab", True),
    ("*.lab", "db.example", False),
    ("*.lab,!bad.lab", "bad.lab", False),
    ("*.lab,!bad.lab", "good.lab", True),
    ("10.1.?.3", HOST_IP, True),
    ("[10.1.2.3]:2222", "[10.1.2.3]:2222", True),
    ("10.1.2.3", "[10.1.2.3]:2222", False),  # another port is another host
    ("DB.LAB", "db.lab", True),
])
def test_a_cert_authority_covers_the_hosts_its_patterns_match(
        tmp_path: Path, keys: dict[str, str], patterns: str, name: str, covered: bool) -> None:
    known = write(tmp_path, f"@cert-authority {patterns} {keys['ca']}")
    assert bool(known.authorities_for(name)) is covered


def test_a_hashed_cert_authority_pattern_matches_its_host(
        tmp_path: Path, keys: dict[str, str]) -> None:
    import paramiko

    known = write(tmp_path, f"@cert-authority {paramiko.HostKeys.hash_host(HOST_IP)} "
                            f"{keys['ca']}")
    assert known.authorities_for(HOST_IP) and not known.authorities_for("10.1.2.4")


def test_a_certificate_from_the_ca_for_this_host_is_accepted(
        tmp_path: Path, keys: dict[str, str]) -> None:
    known = write(tmp_path, f"@cert-authority 10.1.* {keys['ca']}")
    cert = certify(tmp_path, "ca", "host", "-h", "-n", f"{HOST_IP},db.lab", "-V", "-5m:+1h")
    assert known.certificate_problem(cert, HOST_IP, HOST_IP) is None
    policy = knownhosts.CertificateOrReject(known, "db", HOST_IP)
    policy.missing_host_key(None, HOST_IP, cert)  # accepted: no exception


@pytest.mark.parametrize("options, file_lines, says", [
    (("-h", "-n", "db.lab"), ["@cert-authority 10.1.* {ca}"], "names db.lab, not 10.1.2.3"),
    (("-h", "-n", HOST_IP, "-V", "20200101:20200102"), ["@cert-authority 10.1.* {ca}"],
     "not valid now"),
    (("-h", "-n", HOST_IP, "-V", "+1d:+2d"), ["@cert-authority 10.1.* {ca}"], "not valid now"),
    (("-n", HOST_IP), ["@cert-authority 10.1.* {ca}"], "user certificate"),
    (("-h", "-n", HOST_IP), ["@cert-authority 10.1.* {other}"], "signed by a CA that no"),
    (("-h", "-n", HOST_IP), ["@cert-authority 10.9.* {ca}"], "no @cert-authority line"),
    (("-h", "-n", HOST_IP), ["@cert-authority 10.1.* {ca}", "@revoked * {ca}"], "@revoked"),
    (("-h", "-n", HOST_IP), ["@cert-authority 10.1.* {ca}", "@revoked * {host}"], "REVOKED"),
])
def test_a_certificate_is_refused_unless_all_holds(
        tmp_path: Path, keys: dict[str, str], options: tuple[str, ...],
        file_lines: list[str], says: str) -> None:
    known = write(tmp_path, *(line.format(ca=keys["ca"], other=keys["other-ca"],
                                          host=keys["host"]) for line in file_lines))
    cert = certify(tmp_path, "ca", "host", *options)
    with pytest.raises(PermanentError, match=says):
        knownhosts.CertificateOrReject(known, "db", HOST_IP).missing_host_key(None, HOST_IP,
                                                                                cert)


def test_a_forged_certificate_fails_its_signature(tmp_path: Path, keys: dict[str, str]) -> None:
    """The attacker's edit: a certificate for another host, its principal rewritten."""
    import paramiko

    known = write(tmp_path, f"@cert-authority 10.1.* {keys['ca']}")
    genuine = certify(tmp_path, "ca", "host", "-h", "-n", "10.1.2.9")
    forged = genuine.public_blob.key_blob.replace(b"10.1.2.9", HOST_IP.encode())
    cert = paramiko.Ed25519Key(msg=paramiko.Message(forged))
    assert known.certificate_problem(cert, HOST_IP, HOST_IP) == \
        "its CA signature does not verify"


def test_a_revoked_plain_key_is_refused_even_when_listed_for_the_host(
        tmp_path: Path, keys: dict[str, str]) -> None:
    import paramiko

    known = write(tmp_path, f"{HOST_IP} {keys['old']}", f"@revoked * {keys['old']}")
    old = paramiko.PKey.from_type_string(
        "ssh-ed25519", base64.b64decode(keys["old"].split()[1]))
    assert known.host_keys().lookup(HOST_IP) is None
    with pytest.raises(PermanentError, match="REVOKED host key"):
        knownhosts.CertificateOrReject(known, "db", HOST_IP).missing_host_key(None, HOST_IP,
                                                                                old)


def test_an_unknown_plain_key_is_rejected_as_before(
        tmp_path: Path, keys: dict[str, str]) -> None:
    import paramiko

    known = write(tmp_path, f"@cert-authority * {keys['ca']}")
    host = paramiko.PKey.from_type_string(
        "ssh-ed25519", base64.b64decode(keys["host"].split()[1]))
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        knownhosts.CertificateOrReject(known, "db", HOST_IP).missing_host_key(None, HOST_IP,
                                                                                host)


def test_certificates_are_asked_for_only_where_a_ca_covers_a_host_without_a_plain_key(
        tmp_path: Path, keys: dict[str, str]) -> None:
    known = write(tmp_path, f"@cert-authority 10.1.* {keys['ca']}", f"10.1.2.4 {keys['host']}")
    assert knownhosts.transport_factory(known, HOST_IP) is not None
    assert knownhosts.transport_factory(known, "10.1.2.4") is None  # its plain key decides
    assert knownhosts.transport_factory(known, "10.9.9.9") is None


def test_hashed_host_names_are_read_as_before(tmp_path: Path, keys: dict[str, str]) -> None:
    import paramiko

    known = write(tmp_path, f"{paramiko.HostKeys.hash_host(HOST_IP)} {keys['host']}",
                  f"[{HOST_IP}]:2222 {keys['old']}")
    assert known.host_keys().lookup(HOST_IP) is not None
    assert known.host_keys().lookup(f"[{HOST_IP}]:2222") is not None
    assert known.host_keys().lookup("10.1.2.4") is None
