"""SSH as OpenSSH reads it, against real sshd containers: a host certificate (made by this
machine's ssh-keygen, served through sshd's HostCertificate) is accepted through a
known_hosts `@cert-authority` line alone, and refused from another CA; a key on a
`@revoked` line is refused whether listed plainly or certified; a host defined in an
`Include`d file of ~/.ssh/config, with its user from a `Match host` block, is reached."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diagnostics import ssh, sshconn
from runner.context import StepContext
from runner.errors import PermanentError
from runner.inventory import Target
from runner.registry import Registry
from tests.lab.sshd import (
    USER,
    ClientKey,
    SshdHost,
    client_key,
    docker_logs,
    install_host_certificate,
    remove,
    start_sshd,
)

pytestmark = pytest.mark.lab

REGISTRY = Registry()
ssh.register(REGISTRY)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ssh-openssh")


def keygen(directory: Path, name: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name,
                    "-f", str(directory / name)], check=True)
    return " ".join((directory / f"{name}.pub").read_text().split()[:2])


@pytest.fixture(scope="module")
def cas(workdir: Path) -> dict[str, str]:
    """Two CAs: `ca` signs the lab host's certificate, `other` signs nothing here."""
    return {name: keygen(workdir, name) for name in ("ca", "other")}


@pytest.fixture(scope="module")
def key(workdir: Path) -> ClientKey:
    return client_key(workdir)


@pytest.fixture(scope="module")
def hosts(key: ClientKey, workdir: Path, cas: dict[str, str]) -> Iterator[list[SshdHost]]:
    """Two sshd hosts: the first serves a host certificate from `ca` naming its address,
    the second none."""
    try:
        started = start_sshd(2, key, prefix="rb-test-sshd-cert")
    except Exception as exc:
        pytest.fail(f"LAB MISSING: cannot start the lab sshd containers ({exc}); "
                    "run scripts/setup", pytrace=False)
    try:
        certified = started[0]
        (workdir / "host.pub").write_text(certified.host_key + "\n")
        subprocess.run(["ssh-keygen", "-q", "-s", str(workdir / "ca"), "-I", "lab-host", "-h",
                        "-n", certified.ip, "-V", "-5m:+1h", str(workdir / "host.pub")],
                       check=True, capture_output=True)
        install_host_certificate(certified, (workdir / "host-cert.pub").read_text())
        yield started
    finally:
        remove([h.name for h in started])


def target(key: ClientKey, known_hosts: Path, host: str, **fields: Any) -> Target:
    settings = sshconn.SshSettings.model_validate({
        "host": host, "user": USER, "key_file": str(key.path), "known_hosts": str(known_hosts),
        "connect_timeout": "5s", **fields})
    return Target("lab-ssh", "ssh", settings)


def load(on: Target) -> dict[str, Any]:
    kind = REGISTRY.kind("ssh.load")
    with REGISTRY.backend("ssh").connector.probe(on,
            StepContext.outside_a_run(kind.timeout)) as handle:
        return kind.func(handle, kind.params.model_validate({}))


def known_hosts(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def test_a_certified_host_is_reached_through_its_cert_authority_alone(
        tmp_path: Path, key: ClientKey, hosts: list[SshdHost], cas: dict[str, str]) -> None:
    certified, plain = hosts
    subnet = ".".join(certified.ip.split(".")[:2]) + ".*"
    # a file paramiko alone could not read at all: the CA line, a revoked other key, and
    # a line nobody can read (skipped, and said when it matters)
    known = known_hosts(tmp_path, "# lab", f"@cert-authority {subnet} {cas['ca']}",
                        f"@revoked * {cas['other']}", "garbage")
    on = target(key, known, certified.ip)
    assert load(on)["ok_count"] == 1
    assert "Accepted publickey for runbook" in docker_logs(certified)
    identity = sshconn.SshConnector().identity(on, 5)
    assert "cert-authority ssh-ed25519 SHA256:" in identity[f"host {certified.ip}"]
    # the same file does not vouch for a host that has no certificate
    with pytest.raises(PermanentError, match=r"unknown host key.*\(1 line\(s\) of .* could "
                                             r"not be read: line 4: too few fields"):
        load(target(key, known, plain.ip))


def test_a_certificate_from_another_ca_is_refused(
        tmp_path: Path, key: ClientKey, hosts: list[SshdHost], cas: dict[str, str]) -> None:
    known = known_hosts(tmp_path, f"@cert-authority * {cas['other']}")
    with pytest.raises(PermanentError, match=r"host certificate of .* refused: it is signed "
                                             r"by a CA that no @cert-authority line"):
        load(target(key, known, hosts[0].ip))


def test_a_revoked_host_key_is_refused_certified_or_listed(
        tmp_path: Path, key: ClientKey, hosts: list[SshdHost], cas: dict[str, str]) -> None:
    certified, plain = hosts
    revoked = f"@revoked * {certified.host_key}"  # the image's key: both hosts present it
    known = known_hosts(tmp_path, f"@cert-authority * {cas['ca']}", revoked)
    with pytest.raises(PermanentError, match="REVOKED host key"):  # certified or not
        load(target(key, known, certified.ip))
    listed = known_hosts(tmp_path, f"{plain.ip} {plain.host_key}", revoked)
    with pytest.raises(PermanentError, match="REVOKED host key"):
        load(target(key, listed, plain.ip))
    with pytest.raises(PermanentError, match="its key or its CA is @revoked"):
        load(target(key, known_hosts(tmp_path, f"@cert-authority * {cas['ca']}",
                                     f"@revoked * {cas['ca']}"), certified.ip))


def test_a_host_from_an_included_config_with_its_user_from_match_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: ClientKey,
        hosts: list[SshdHost]) -> None:
    plain = hosts[1]
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh" / "conf.d").mkdir(parents=True)
    (tmp_path / ".ssh" / "config").write_text(
        "Include conf.d/*.conf\n"
        f"Match host {'.'.join(plain.ip.split('.')[:2])}.*\n  User {USER}\n"
        "Host *\n  User nobody-here\n  Port 2\n")
    (tmp_path / ".ssh" / "conf.d" / "lab.conf").write_text(
        f"Host lab-box\n  HostName {plain.ip}\n  Port 22\n")
    known = known_hosts(tmp_path, f"{plain.ip} {plain.host_key}")
    settings = sshconn.SshSettings.model_validate({
        "host": "lab-box", "key_file": str(key.path), "known_hosts": str(known),
        "connect_timeout": "5s"})  # no user, no port: the config's
    on = Target("lab-ssh", "ssh", settings)
    assert load(on)["ok_count"] == 1
    assert sshconn.SshConnector().identity(on, 5)["host lab-box"].startswith(
        f"{USER}@{plain.ip}:22 ")
