"""ssh.failed_units against a real systemd: the lab's sshd-systemd host runs systemd as PID 1
(no --privileged; tests/lab/sshd.py systemd_run_options), with sshd as ssh.service. The
fault is real: a unit whose program is /bin/false is started and fails. A freshly booted
host has no failed unit. The plain sshd host (no systemd) reads "not checked":
test_host_checks.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.sshd import (
    USER,
    ClientKey,
    SshdHost,
    client_key,
    docker_exec,
    remove,
    start_sshd,
    systemd_run_options,
    wait_until_booted,
    write_known_hosts,
)
from tests.scenarios.conftest import CLI
from tests.scenarios.test_host_checks import check, target
from tests.support.polling import wait_for

pytestmark = pytest.mark.lab

BROKEN = "lab-broken.service"


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> ClientKey:
    return client_key(tmp_path_factory.mktemp("units-key"))


@pytest.fixture
def host(key: ClientKey) -> Iterator[SshdHost]:
    """A fresh sshd-systemd host, booted: every unit it starts at boot has started."""
    try:
        [started] = start_sshd(1, key, prefix="rb-test-units", image_name="sshd-systemd",
                               **systemd_run_options())
    except Exception as exc:
        pytest.fail(f"LAB MISSING: cannot start the lab sshd-systemd container ({exc}); "
                    "run scripts/setup", pytrace=False)
    try:
        assert wait_until_booted(started) == "running"  # nothing failed at boot
        yield started
    finally:
        remove([started.name])


def fail_a_unit(host: SshdHost) -> None:
    code, out = docker_exec(host, "systemctl", "start", BROKEN)
    assert code == 0, out  # a simple service: started, then its program exits 1
    wait_for(lambda: docker_exec(host, "systemctl", "is-failed", BROKEN)[1].strip() == "failed",
             f"{BROKEN} to fail")


def test_failed_units_reads_ok_on_a_booted_systemd_host(
        key: ClientKey, host: SshdHost, tmp_path: Path) -> None:
    result = check(target(key, tmp_path, host), "failed_units")
    assert result["ok"] and result["level"] == "ok"
    assert result["failed"] == 0 and result["units"] == []
    assert result["summary"] == "no failed systemd units"


def test_failed_units_names_the_unit_that_failed(
        key: ClientKey, host: SshdHost, tmp_path: Path) -> None:
    on = target(key, tmp_path, host)
    fail_a_unit(host)
    result = check(on, "failed_units")
    assert result["units"] == [{"unit": BROKEN, "load": "loaded", "active": "failed",
                                "sub": "failed",
                                "description": "A lab service whose program always fails"}]
    assert result["failed"] == 1 and result["level"] == "critical" and not result["ok"]
    assert result["summary"] == (f"1 failed systemd unit: {BROKEN} (failed); "
                                 "`journalctl -u UNIT` says why")
    # the thresholds are the check's params: one failed unit is a warning under critical=2
    assert check(on, "failed_units", failed_warning=1, failed_critical=2)["level"] == "warning"


def test_host_health_on_a_systemd_host_reports_the_failed_unit_and_checks_everything(
        key: ClientKey, host: SshdHost, tmp_path: Path, cli: CLI,
        monkeypatch: pytest.MonkeyPatch) -> None:
    fail_a_unit(host)
    known = write_known_hosts(tmp_path / "known_hosts", [host])
    (tmp_path / "inventory.yaml").write_text(json.dumps({"targets": {"box": {
        "kind": "ssh", "host": host.ip, "user": USER, "key_file": str(key.path),
        "known_hosts": str(known)}}}))
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(tmp_path / "inventory.yaml"))
    # The load average a container reads is the whole machine's, busy with other tests.
    code, run = cli.json("run", "host-health", "--target", "host=box",
                         "--param", "max_load_per_core=1000")
    steps = {s["id"]: s for s in run["steps"]}
    assert [i for i, s in steps.items() if s["status"] != "ok"] == []  # every check looked
    fired = {f["id"]: f for f in run["findings"] if f["status"] == "fired"}
    assert fired["failed-units"]["severity"] == "P1"
    assert fired["failed-units"]["message"].startswith(f"1 failed systemd unit: {BROKEN}")
    # The clock is read with timedatectl here (no chrony): the kernel's sync state, which
    # the container shares with this machine, so it may or may not be synchronised.
    clock = check(target(key, tmp_path, host), "clock")
    assert clock["source"] == "timedatectl" and clock["ntp_enabled"] is False
    assert set(fired) == {"failed-units"} | (set() if clock["synchronised"] else {"clock"})
    assert code == 1
