"""ssh.clock against real chrony in the lab's sshd-chrony host (tests/lab/sshd-clock.sh),
each clock state made for real inside the container, with all NTP traffic on its loopback:
a host whose only NTP server never answers (not synchronised), a host synchronised over NTP
to a second chronyd, and one whose NTP server runs 3 s ahead under libfaketime (its clock
is 3 s slow). chronyd runs with -x: it measures, it never touches the machine's clock.
The plain sshd host (no chrony, no systemd) reads "not checked": test_host_checks.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.sshd import (
    USER,
    ClientKey,
    SshdHost,
    client_key,
    remove,
    start_clock,
    start_sshd,
    write_known_hosts,
)
from tests.scenarios.conftest import CLI
from tests.scenarios.test_host_checks import check, target

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> ClientKey:
    return client_key(tmp_path_factory.mktemp("clock-key"))


@pytest.fixture
def host(key: ClientKey) -> Iterator[SshdHost]:
    """A fresh sshd-chrony host, chrony not yet started: each test sets its clock state."""
    try:
        [started] = start_sshd(1, key, prefix="rb-test-clock", image_name="sshd-chrony")
    except Exception as exc:
        pytest.fail(f"LAB MISSING: cannot start the lab sshd-chrony container ({exc}); "
                    "run scripts/setup", pytrace=False)
    try:
        yield started
    finally:
        remove([started.name])


def test_clock_finds_a_host_whose_ntp_server_never_answers(
        key: ClientKey, host: SshdHost, tmp_path: Path) -> None:
    start_clock(host, "unsynchronised")
    result = check(target(key, tmp_path, host), "clock")
    assert result["synchronised"] is False and result["leap_status"] == "Not synchronised"
    assert result["level"] == "critical" and not result["ok"]
    assert result["source"] == "chronyc tracking"
    assert result["summary"].startswith("clock not synchronised (chronyc tracking): NTP is "
                                        "off or cannot reach a server")


def test_clock_reads_ok_on_a_host_synchronised_over_ntp(
        key: ClientKey, host: SshdHost, tmp_path: Path) -> None:
    start_clock(host, "synchronised")
    result = check(target(key, tmp_path, host), "clock")
    assert result["synchronised"] is True and result["leap_status"] == "Normal"
    assert result["reference"] == "7F000001 (127.0.0.1)"  # the chronyd on its loopback
    assert result["level"] == "ok" and result["ok"], result["summary"]
    assert result["summary"] == (f"clock synchronised (chronyc tracking), offset "
                                 f"{result['offset_ms']:g} ms")


def test_clock_measures_a_host_three_seconds_slow_of_its_ntp_server(
        key: ClientKey, host: SshdHost, tmp_path: Path) -> None:
    start_clock(host, "offset", "3")
    on = target(key, tmp_path, host)
    result = check(on, "clock")
    assert result["synchronised"] is True  # it hears its server; its clock is wrong
    # slow: chronyc says "3.0000x seconds slow"; loopback delay under load adds at most ms
    assert -3050 < result["offset_ms"] < -2950
    assert result["level"] == "critical"
    assert result["summary"] == f"clock {result['offset_ms']:g} ms off NTP time (chronyc tracking)"
    # the thresholds are the check's params: 3 s is only a warning under a 5 s critical
    assert check(on, "clock", offset_ms_critical=5000)["level"] == "warning"


def run_host_health(key: ClientKey, host: SshdHost, tmp_path: Path, cli: CLI,
                    monkeypatch: pytest.MonkeyPatch) -> tuple[int, dict[str, Any]]:
    known = write_known_hosts(tmp_path / "known_hosts", [host])
    (tmp_path / "inventory.yaml").write_text(json.dumps({"targets": {"box": {
        "kind": "ssh", "host": host.ip, "user": USER, "key_file": str(key.path),
        "known_hosts": str(known)}}}))
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(tmp_path / "inventory.yaml"))
    # The load average a container reads is the whole machine's, busy with other tests.
    return cli.json("run", "host-health", "--target", "host=box",
                    "--param", "max_load_per_core=1000")


def test_host_health_reports_the_unsynchronised_clock(
        key: ClientKey, host: SshdHost, tmp_path: Path, cli: CLI,
        monkeypatch: pytest.MonkeyPatch) -> None:
    start_clock(host, "unsynchronised")
    code, run = run_host_health(key, host, tmp_path, cli, monkeypatch)
    findings = run["findings"]
    fired = {f["id"]: f for f in findings if f["status"] == "fired"}
    assert set(fired) == {"clock"}, findings
    assert fired["clock"]["severity"] == "P1"
    assert fired["clock"]["message"].startswith("clock not synchronised (chronyc tracking)")
    steps = run["steps"]
    assert {s["id"] for s in steps if s["status"] != "ok"} == {"failed_units"}  # no systemd
    assert code == 1  # a finding fired (the report still lists what it could not check)


def test_host_health_on_a_synchronised_host_checks_the_clock_and_finds_nothing(
        key: ClientKey, host: SshdHost, tmp_path: Path, cli: CLI,
        monkeypatch: pytest.MonkeyPatch) -> None:
    start_clock(host, "synchronised")
    code, run = run_host_health(key, host, tmp_path, cli, monkeypatch)
    findings = run["findings"]
    assert [f for f in findings if f["status"] == "fired"] == []
    steps = run["steps"]
    assert {s["id"] for s in steps if s["status"] != "ok"} == {"failed_units"}
    assert code == 3  # the clock was checked and is fine; failed units still could not be
