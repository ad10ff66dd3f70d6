"""The host checks against real sshd containers, each fault induced for real inside one:
inodes of a small tmpfs used up, a process holding nearly all of its descriptors, a real
OOM kill in the container's memory cgroup, zombies of a parent that never reaps, a listener
stopped and a stray one started; no systemd and no NTP client read as not checked (hosts
with them: test_host_clock_faults.py, test_host_units_faults.py); a healthy host raises
nothing; the host-health playbook finds three faults at once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diagnostics import hostchecks, ssh, sshconn
from runner.context import StepContext
from runner.errors import PermanentError
from runner.inventory import Target
from runner.registry import Registry
from tests.lab.sshd import (
    USER,
    ClientKey,
    SshdHost,
    client_key,
    docker_exec,
    remove,
    start_sshd,
    write_known_hosts,
)
from tests.scenarios.conftest import CLI
from tests.support.polling import wait_for

pytestmark = pytest.mark.lab

REGISTRY = Registry()
ssh.register(REGISTRY)
hostchecks.register(REGISTRY)

SMALL = "/small"  # a tmpfs with 200 inodes in every host of these tests
MEMORY_LIMIT = "128m"
FAULTABLE = {"tmpfs": {SMALL: "size=1m,nr_inodes=200"}, "mem_limit": MEMORY_LIMIT,
             "memswap_limit": MEMORY_LIMIT}


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> ClientKey:
    return client_key(tmp_path_factory.mktemp("hostcheck-key"))


@pytest.fixture
def host(key: ClientKey) -> Iterator[SshdHost]:
    """A fresh host for each test: a fault one test induces never reaches another."""
    started_at = time.monotonic()
    try:
        [started] = start_sshd(1, key, prefix="rb-test-hostcheck", **FAULTABLE)
    except Exception as exc:
        pytest.fail(f"LAB MISSING: cannot start the lab sshd container ({exc}); "
                    "run scripts/setup", pytrace=False)
    print(f"\nsshd container ready in {time.monotonic() - started_at:.2f} s")
    try:
        yield started
    finally:
        remove([started.name])


def target(key: ClientKey, tmp_path: Path, *hosts: SshdHost) -> Target:
    known = write_known_hosts(tmp_path / "known_hosts", hosts)
    where: dict[str, Any] = {"host": hosts[0].ip} if len(hosts) == 1 else {
        "hosts": [h.ip for h in hosts]}
    settings = sshconn.SshSettings.model_validate({
        **where, "user": USER, "key_file": str(key.path), "known_hosts": str(known),
        "connect_timeout": "5s"})
    return Target("lab-host", "ssh", settings)


def check(on: Target, name: str, **params: Any) -> dict[str, Any]:
    """A check as the engine runs it: through the connector's read-only handle."""
    kind = REGISTRY.kind(f"ssh.{name}")
    with REGISTRY.backend("ssh").connector.probe(on,
            StepContext.outside_a_run(kind.timeout)) as handle:
        return kind.func(handle, kind.params.model_validate(params))


def background(host: SshdHost, script: str, ready: str) -> int:
    """Start a python script as the login user, detached; its pid once it wrote `ready`."""
    code, out = docker_exec(host, "sh", "-c", f"python3 -c '{script}' >/dev/null 2>&1 & "
                            "echo $!", user=USER)
    assert code == 0, out
    wait_for(lambda: docker_exec(host, "test", "-e", ready)[0] == 0, f"{ready} on {host.name}")
    return int(out.strip())


# The faults


def fill_inodes(host: SshdHost, files: int) -> None:
    code, out = docker_exec(host, "sh", "-c", f"i=0; while [ $i -lt {files} ]; do "
                            f": > {SMALL}/f$i || exit 1; i=$((i + 1)); done")
    assert code == 0, out


def test_inode_usage_finds_the_filesystem_out_of_inodes(
        key: ClientKey, host: SshdHost, tmp_path: Path) -> None:
    on = target(key, tmp_path, host)
    assert SMALL not in check(on, "inode_usage")["over_threshold"]
    fill_inodes(host, 190)  # with the root directory's: 191 of 200
    result = check(on, "inode_usage")
    small = next(f for f in result["filesystems"] if f["mount"] == SMALL)
    assert small["inodes"] == 200 and small["used"] == 191 and small["level"] == "critical"
    assert result["level"] == "critical" and result["over_threshold"] == [SMALL]
    assert result["summary"].startswith(f"{SMALL} has used 95.5% of its inodes (191/200")
    # the blocks are nearly all free: it is inodes, not space, that ran out
    assert docker_exec(host, "sh", "-c", f"for i in 1 2 3 4 5 6 7 8 9 10; do : > "
                       f"{SMALL}/more$i || exit 1; done")[0] != 0


FD_HOG = ("import os, resource, time; "
          "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)); "
          "held = [os.open(\"/dev/null\", os.O_RDONLY) for _ in range(246)]; "
          "open(\"/tmp/fds-held\", \"w\").close(); time.sleep(3600)")


def test_fd_usage_finds_the_process_near_its_descriptor_limit(
        key: ClientKey, host: SshdHost, tmp_path: Path) -> None:
    on = target(key, tmp_path, host)
    before = check(on, "fd_usage")
    assert before["ok"] and before["processes_read"] < before["processes_total"]
    assert "processes readable" in before["summary"]  # sshd's, root's, are not the user's
    pid = background(host, FD_HOG, "/tmp/fds-held")
    result = check(on, "fd_usage")
    [hog] = result["over_threshold"]
    assert hog["pid"] == pid and hog["limit"] == 256 and hog["fds"] >= 249  # + stdio: 97%
    assert hog["level"] == "critical" and result["level"] == "critical"
    assert result["summary"].startswith(f"pid {pid} (python3) holds {hog['fds']} fds")
    assert "EMFILE" in result["summary"]
    assert result["top"][0]["pid"] == pid
    assert result["allocated"] > 0 and result["max"] > result["allocated"]


def test_memory_reports_a_real_oom_kill_and_an_unreadable_kernel_log(
        key: ClientKey, host: SshdHost, tmp_path: Path) -> None:
    on = target(key, tmp_path, host)
    before = check(on, "memory")
    assert before["ok"] and before["oom_kills"] == 0
    assert before["cgroup_limit"] == 128 * 2**20
    # dmesg is refused in an unprivileged container; there is no journal and no kern.log
    assert before["oom_log"].startswith("not checked")
    assert "kernel log not checked" in before["summary"]
    code, _ = docker_exec(host, "python3", "-c", "x = b'x' * 400_000_000", user=USER)
    assert code == 137  # SIGKILL: the kernel's OOM killer
    result = check(on, "memory")
    assert result["oom_kills"] == 1 and result["level"] == "warning"
    assert result["summary"].startswith("the OOM killer killed 1 process (per the memory "
                                        "cgroup (limit 128 MB))")


ZOMBIE_MAKER = ("import os, time\n"
                "for _ in range(6):\n"
                "    if os.fork() == 0:\n"
                "        os._exit(0)\n"
                "open(\"/tmp/zombies-made\", \"w\").close()\n"
                "time.sleep(3600)\n")


def test_zombies_names_the_parent_that_does_not_reap(
        key: ClientKey, host: SshdHost, tmp_path: Path) -> None:
    on = target(key, tmp_path, host)
    assert check(on, "zombies")["zombies"] == 0
    parent = background(host, ZOMBIE_MAKER, "/tmp/zombies-made")
    result = wait_for(lambda: (r := check(on, "zombies"))["zombies"] == 6 and r,
                      "six zombies")  # a child may still be exiting
    assert result["level"] == "warning"
    assert result["by_parent"] == [{"ppid": parent, "command": "python3", "zombies": 6}]
    assert result["summary"].startswith(f"6 zombie processes (6 of pid {parent} (python3)): "
                                        "the parent does not reap")


LISTENER = ("import socket, sys, time; s = socket.socket(); "
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
            "s.bind((\"0.0.0.0\", int(sys.argv[1]))); s.listen(); "
            "open(\"/tmp/listening-\" + sys.argv[1], \"w\").close(); time.sleep(3600)")


def listen(host: SshdHost, port: int) -> int:
    code, out = docker_exec(host, "sh", "-c", f"python3 -c '{LISTENER}' {port} >/dev/null "
                            "2>&1 & echo $!", user=USER)
    assert code == 0, out
    wait_for(lambda: docker_exec(host, "test", "-e", f"/tmp/listening-{port}")[0] == 0,
             f"a listener on {port}")
    return int(out.strip())


def test_listening_ports_finds_the_stopped_and_the_stray_listener(
        key: ClientKey, host: SshdHost, tmp_path: Path) -> None:
    on = target(key, tmp_path, host)
    service = listen(host, 8080)
    healthy = check(on, "listening_ports", expected=[22, 8080])
    assert healthy["ok"] and healthy["ports"] == [22, 8080]
    docker_exec(host, "kill", str(service))
    stray = listen(host, 9999)
    result = wait_for(lambda: (r := check(on, "listening_ports", expected=[22, 8080]))
                      ["missing"] and r, "8080 to stop listening")
    assert result["missing"] == [8080] and result["unexpected"] == [9999]
    assert result["level"] == "critical"
    assert "nothing listens on expected port(s) 8080" in result["summary"]
    assert f"unexpected listener(s) on 0.0.0.0:9999 (pid {stray} python3)" in result["summary"]


def test_no_systemd_and_no_ntp_client_are_not_checked_never_all_clear(
        key: ClientKey, host: SshdHost, tmp_path: Path) -> None:
    on = target(key, tmp_path, host)
    with pytest.raises(PermanentError, match="not checked: no systemd"):
        check(on, "failed_units")
    with pytest.raises(PermanentError, match="not checked: neither chronyc tracking nor "
                                              "timedatectl"):
        check(on, "clock")


def test_a_healthy_host_raises_nothing(key: ClientKey, host: SshdHost, tmp_path: Path) -> None:
    on = target(key, tmp_path, host)
    results = {name: check(on, name) for name in
               ("inode_usage", "fd_usage", "memory", "zombies")}
    results["listening_ports"] = check(on, "listening_ports", expected=[22])
    assert {name: r["summary"] for name, r in results.items() if not r["ok"]} == {}
    assert all(r["level"] == "ok" for r in results.values())


def test_on_a_group_the_worst_host_leads(key: ClientKey, host: SshdHost, tmp_path: Path
                                         ) -> None:
    [healthy] = start_sshd(1, key, prefix="rb-test-hostcheck")
    try:
        fill_inodes(host, 190)
        result = check(target(key, tmp_path, healthy, host), "inode_usage")
    finally:
        remove([healthy.name])
    assert result["level"] == "critical" and result["ok_count"] == 2
    assert result["summary"].startswith(f"{host.ip}: {SMALL} has used 95.5% of its inodes")
    assert healthy.ip not in result["summary"]
    assert result["hosts"][healthy.ip]["result"]["ok"]


# The triage playbook


def test_host_health_finds_three_faults_ranked_by_severity(
        key: ClientKey, host: SshdHost, tmp_path: Path, cli: CLI,
        monkeypatch: pytest.MonkeyPatch) -> None:
    known = write_known_hosts(tmp_path / "known_hosts", [host])
    (tmp_path / "inventory.yaml").write_text(json.dumps({"targets": {"box": {
        "kind": "ssh", "host": host.ip, "user": USER, "key_file": str(key.path),
        "known_hosts": str(known)}}}))
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(tmp_path / "inventory.yaml"))
    fill_inodes(host, 190)
    background(host, FD_HOG, "/tmp/fds-held")
    background(host, ZOMBIE_MAKER, "/tmp/zombies-made")
    listen(host, 9999)
    code, run = cli.json("run", "host-health", "--target", "host=box",
                         "--param", "expected_ports=22,8080")
    fired = [f for f in run["findings"] if f["status"] == "fired"]
    ids = [f["id"] for f in fired]
    assert {"inodes", "fds", "ports", "zombies-warning"} <= set(ids), run["findings"]
    ranks = [f["severity"] for f in fired]
    assert ranks == sorted(ranks)  # the most severe first
    said = " ".join(f["message"] for f in fired)
    assert f"{SMALL} has used 95.5% of its inodes" in said and "port(s) 8080" in said
    # no systemd, no NTP client: those steps failed, so the run says it could not check all
    not_checked = {s["id"] for s in run["steps"] if s["status"] != "ok"}
    assert not_checked == {"failed_units", "clock"}
    assert code != 0  # findings fired, and two checks could not look: never "all clear"


def test_host_health_on_a_healthy_host_finds_nothing_but_says_what_it_could_not_check(
        key: ClientKey, host: SshdHost, tmp_path: Path, cli: CLI,
        monkeypatch: pytest.MonkeyPatch) -> None:
    known = write_known_hosts(tmp_path / "known_hosts", [host])
    (tmp_path / "inventory.yaml").write_text(json.dumps({"targets": {"box": {
        "kind": "ssh", "host": host.ip, "user": USER, "key_file": str(key.path),
        "known_hosts": str(known)}}}))
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(tmp_path / "inventory.yaml"))
    # The load average a container reads is the whole machine's, busy with other tests.
    code, run = cli.json("run", "host-health", "--target", "host=box",
                         "--param", "max_load_per_core=1000")
    assert [f for f in run["findings"] if f["status"] == "fired"] == []
    failed = {s["id"]: s for s in run["steps"] if s["status"] != "ok"}
    assert set(failed) == {"failed_units", "clock"}
    assert "not checked: no systemd" in json.dumps(failed["failed_units"])
    assert code == 3  # could not diagnose everything: not 0
