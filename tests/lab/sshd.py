"""Lab sshd hosts in real containers (image recipe `sshd`), and what a test needs to reach them.

    key = client_key(tmp_path)
    with sshd_hosts(3, key) as hosts:            # always removed afterwards
        write_known_hosts(tmp_path / "known_hosts", hosts)
        hosts[0].ip, hosts[0].host_key           # bridge IP (port 22), "ssh-ed25519 AAAA..."
        docker_exec(hosts[0], "test", "-e", "/tmp/x")

Each container is on the default bridge; the `runbook` user's authorized_keys is the test's
client key (AUTHORIZED_KEYS). The host keys were made when the image was built, so all
containers of one image share them; a test records the one it reads from a container.
"""

from __future__ import annotations

import ipaddress
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.lab.images import require_image

USER = "runbook"
LABEL = "runbook.lab"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"


@dataclass(frozen=True)
class ClientKey:
    path: Path  # the private key, OpenSSH format, mode 600
    private_text: str
    public_line: str  # "ssh-ed25519 AAAA... comment", for authorized_keys


@dataclass(frozen=True)
class SshdHost:
    name: str
    ip: str
    host_key: str  # "ssh-ed25519 AAAA...", as known_hosts records it
    port: int = 22


def client_key(directory: Path, name: str = "id_ed25519") -> ClientKey:
    """A fresh Ed25519 key pair for one test (cryptography, which paramiko depends on)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    path = directory / name
    path.write_text(private)
    path.chmod(0o600)
    return ClientKey(path, private, f"{public} runbook-test")


def other_host_key() -> str:
    """An Ed25519 public key no lab host has: what a changed host key looks like."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def _docker() -> Any:
    import docker

    return docker.from_env()


def docker_exec(host: SshdHost, *argv: str, user: str = "root") -> tuple[int, str]:
    """Run argv in the host's container, as root by default: (exit code, output)."""
    code, output = _docker().containers.get(host.name).exec_run(list(argv), user=user)
    return code, output.decode(errors="replace")


def start_sshd(count: int, key: ClientKey, prefix: str = "rb-test-sshd",
               image_name: str = "sshd", **run_options: Any) -> list[SshdHost]:
    """Start `count` containers and wait until each answers with an SSH banner.
    `run_options` go to docker's containers.run: e.g. mem_limit="64m",
    tmpfs={"/small": "size=1m,nr_inodes=200"}, for a host with a fault to induce.
    `image_name` is a lab recipe built on `sshd` (e.g. "sshd-chrony")."""
    image = require_image(image_name)
    client = _docker()
    names = [f"{prefix}-{uuid.uuid4().hex[:6]}-{i}" for i in range(count)]
    hosts: list[SshdHost] = []
    try:
        for name in names:
            client.containers.run(image, name=name, detach=True, labels={LABEL: "sshd"},
                                  environment={"AUTHORIZED_KEYS": key.public_line},
                                  **run_options)
        for name in names:
            hosts.append(wait_for_sshd(client, name))
    except BaseException:
        remove(names)
        raise
    return hosts


def start_clock(host: SshdHost, *mode: str) -> None:
    """Start chrony on an `sshd-chrony` host in a real clock state (tests/lab/sshd-clock.sh):
    ("unsynchronised",), ("synchronised",) or ("offset", "SECONDS"). Returns once
    `chronyc tracking` shows it; a RuntimeError says what it read otherwise."""
    code, out = docker_exec(host, "lab-clock", *mode)
    if code:
        raise RuntimeError(f"{host.name}: lab-clock {' '.join(mode)} failed: {out}")


def systemd_run_options() -> dict[str, Any]:
    """What start_sshd needs for the `sshd-systemd` image, without --privileged: /run and
    /run/lock as tmpfs (systemd cannot mount them itself), and a writable cgroup tree for
    systemd to track its units in. On cgroup v1 that is only the name=systemd hierarchy
    (no controllers in it), bind-mounted rw; on a unified (v2) host, the tree with the host's
    cgroup namespace (the usual recipe; this machine is v1, so that branch is untried)."""
    tmpfs = {"/run": "", "/run/lock": ""}
    if Path("/sys/fs/cgroup/systemd").is_dir():
        hierarchy = "/sys/fs/cgroup/systemd"
        return {"tmpfs": tmpfs, "volumes": {hierarchy: {"bind": hierarchy, "mode": "rw"}}}
    return {"tmpfs": tmpfs, "cgroupns": "host",
            "volumes": {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}}}


def wait_until_booted(host: SshdHost) -> str:
    """Wait for systemd to finish starting its units; its state ("running", or "degraded"
    when a unit failed). A RuntimeError if it reads anything else."""
    _, out = docker_exec(host, "systemctl", "is-system-running", "--wait")
    state = out.strip()
    if state not in ("running", "degraded"):
        raise RuntimeError(f"{host.name}: systemd did not boot: is-system-running says {out!r}")
    return state


def docker_logs(host: SshdHost) -> str:
    """The container's output: sshd logs each login there ("Accepted publickey for ...")."""
    logs: bytes = _docker().containers.get(host.name).logs()
    return logs.decode(errors="replace")


def start_sshd_behind(bastion: SshdHost, key: ClientKey, port: int = 2222,
                      timeout: float = 20.0) -> SshdHost:
    """An sshd that only `bastion` can reach: it shares the bastion's network namespace and
    listens on 127.0.0.1:`port` there, so from this machine it is reachable only through
    the bastion (a jump host). Remove it with remove([host.name])."""
    image = require_image("sshd")
    client = _docker()
    name = f"rb-test-sshd-behind-{uuid.uuid4().hex[:6]}"
    container = client.containers.run(
        image, ["-o", f"ListenAddress=127.0.0.1:{port}"], name=name, detach=True,
        labels={LABEL: "sshd"}, network_mode=f"container:{bastion.name}",
        environment={"AUTHORIZED_KEYS": key.public_line})
    deadline = time.monotonic() + timeout
    try:
        while b"Server listening on 127.0.0.1 port" not in container.logs():
            container.reload()
            if container.status == "exited" or time.monotonic() > deadline:
                raise RuntimeError(f"sshd container {name} did not start listening: "
                                   f"{container.logs().decode(errors='replace')}")
            time.sleep(0.1)
        code, out = container.exec_run(["cat", HOST_KEY])
        if code:
            raise RuntimeError(f"{name}: cannot read {HOST_KEY}: {out.decode()}")
    except BaseException:
        remove([name])
        raise
    return SshdHost(name, "127.0.0.1", " ".join(out.decode().split()[:2]), port)


def wait_for_sshd(client: Any, name: str, timeout: float = 20.0) -> SshdHost:
    """The started container `name` as an SshdHost, once it answers with an SSH banner."""
    deadline = time.monotonic() + timeout
    while True:
        container = client.containers.get(name)
        ip = container.attrs["NetworkSettings"]["IPAddress"]
        if container.status == "exited":
            raise RuntimeError(f"sshd container {name} exited: {container.logs().decode()}")
        if ip and _banner(ip):
            code, out = container.exec_run(["cat", HOST_KEY])
            if code:
                raise RuntimeError(f"{name}: cannot read {HOST_KEY}: {out.decode()}")
            return SshdHost(name, ip, " ".join(out.decode().split()[:2]))
        if time.monotonic() > deadline:
            raise RuntimeError(f"sshd container {name} did not answer within {timeout:g}s")
        time.sleep(0.1)


def _banner(ip: str, port: int = 22) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=1.0) as sock:
            return sock.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def remove(names: Sequence[str]) -> None:
    import docker

    client = _docker()
    for name in names:
        with suppress(docker.errors.NotFound):
            client.containers.get(name).remove(force=True)


@contextmanager
def sshd_hosts(count: int, key: ClientKey) -> Iterator[list[SshdHost]]:
    """`count` running sshd hosts, removed whatever happens."""
    hosts = start_sshd(count, key)
    try:
        yield hosts
    finally:
        remove([h.name for h in hosts])


def write_known_hosts(path: Path, hosts: Sequence[SshdHost],
                      keys: dict[str, str] | None = None) -> Path:
    """A known_hosts file for `hosts`; `keys` (ip -> key line) replaces some hosts' keys."""
    keys = keys or {}
    lines = [f"{h.ip if h.port == 22 else f'[{h.ip}]:{h.port}'} {keys.get(h.ip, h.host_key)}"
             for h in hosts]
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def unused_bridge_ip(nth: int = 1) -> str:
    """An address on the default bridge that no container has: connections to it fail.
    Docker hands out addresses from the bottom of the subnet; these are the top ones."""
    network = _docker().networks.get("bridge")
    subnet = ipaddress.ip_network(network.attrs["IPAM"]["Config"][0]["Subnet"])
    return str(subnet.broadcast_address - nth)


HOST_CERTIFICATE = "/etc/ssh/ssh_host_ed25519_key-cert.pub"


def install_host_certificate(host: SshdHost, certificate: str, timeout: float = 20.0) -> None:
    """Serve `certificate` (ssh-keygen -s CA -h, of the host's Ed25519 key) as the host's
    HostCertificate: written into the container, then sshd re-reads its config on SIGHUP
    (it re-executes itself; PID 1 stays). Returns once it listens again."""
    import io
    import tarfile

    container = _docker().containers.get(host.name)
    listening = b"Server listening on 0.0.0.0 port"
    before = container.logs().count(listening)
    data = certificate.encode()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo(HOST_CERTIFICATE.rsplit("/", 1)[1])
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    container.put_archive("/etc/ssh", archive.getvalue())
    code, out = container.exec_run(["sh", "-c", f"echo 'HostCertificate {HOST_CERTIFICATE}' "
                                    ">/etc/ssh/sshd_config.d/cert.conf && kill -HUP 1"])
    if code:
        raise RuntimeError(f"{host.name}: cannot install the host certificate: {out.decode()}")
    deadline = time.monotonic() + timeout
    while container.logs().count(listening) <= before or not _banner(host.ip, host.port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{host.name}: sshd did not listen again after SIGHUP: "
                               f"{container.logs().decode(errors='replace')[-500:]}")
        time.sleep(0.1)
