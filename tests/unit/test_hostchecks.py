"""The host checks' parsers and grading, on the text the real commands print."""

from __future__ import annotations

import shlex

import pytest
from pydantic import ValidationError

from diagnostics import hostchecks as hc
from diagnostics import sshconn
from runner.registry import Registry

DF_I = """\
Filesystem       Inodes  IUsed    IFree IUse% Mounted on
overlay        16777216 469441 16307775    3% /
tmpfs               200    190       10   95% /small
proc                  0      0        0     - /proc
tmpfs               100     85       15   85% /mnt/with space
"""


def test_inode_rows_and_levels() -> None:
    rows = hc.parse_df_inodes(DF_I)
    assert [r["mount"] for r in rows] == ["/", "/small", "/mnt/with space"]  # /proc: no inodes
    graded = hc.grade_inodes(rows, hc.InodeParams())
    assert graded["level"] == "critical" and graded["over_threshold"] == ["/small",
                                                                          "/mnt/with space"]
    assert graded["summary"].startswith("/small has used 95% of its inodes (190/200, 10 free)")
    assert "No space left on device" in graded["summary"]
    assert hc.grade_inodes(rows, hc.InodeParams(used_pct_critical=96))["level"] == "warning"
    healthy = hc.grade_inodes(rows[:1], hc.InodeParams())
    assert healthy["ok"] and healthy["summary"] == "inodes ok: fullest / at 2.8%"


def test_thresholds_must_be_in_order() -> None:
    with pytest.raises(ValidationError, match="used_pct_warning must come before"):
        hc.InodeParams(used_pct_warning=95, used_pct_critical=90)
    with pytest.raises(ValidationError, match="available_pct_warning must come before"):
        hc.MemoryParams(available_pct_warning=3, available_pct_critical=5)
    with pytest.raises(ValidationError):
        hc.InodeParams(used_pct_warning=101)


def test_fd_usage_system_wide_and_per_process() -> None:
    assert hc.parse_file_nr("2365\t0\t2466170\n") == (2365, 2466170)
    procs = hc.parse_fd_counts("24 5 20000 sh\n700 190 200 python3 -c x\n9 3 unlimited a\n"
                               "junk line\n11 4 - unreadable limits\n")
    assert [p["pid"] for p in procs] == [700, 24, 11, 9]  # nearest its limit, then most fds
    assert procs[0] == {"pid": 700, "fds": 190, "limit": 200, "pct_of_limit": 95.0,
                        "command": "python3 -c x"}
    graded = hc.grade_fds(2365, 2466170, procs, hc.FdParams())
    assert graded["level"] == "critical" and graded["over_threshold"][0]["pid"] == 700
    assert "pid 700 (python3 -c x) holds 190 fds, 95% of its limit 200" in graded["summary"]
    system = hc.grade_fds(900, 1000, procs[1:], hc.FdParams())
    assert system["level"] == "critical" and "900 of 1000 file handles" in system["summary"]
    healthy = hc.grade_fds(10, 1000, procs[1:], hc.FdParams(),
                           hc.parse_process_total("processes 40\n24 5 20000 sh\n"))
    assert healthy["ok"] and healthy["processes_total"] == 40
    assert healthy["summary"].endswith("; per process: 3 of 40 processes readable")
    assert hc.parse_process_total("24 5 20000 sh\n") is None


MEMINFO = "MemTotal:  1000000 kB\nMemFree: 10 kB\nMemAvailable:  40000 kB\n" \
          "SwapTotal: 1000 kB\nSwapFree: 100 kB\nHugePages_Total: 0\n"


def test_meminfo_cgroup_and_oom_log() -> None:
    info = hc.parse_meminfo(MEMINFO)
    assert info["MemAvailable"] == 40000 and info["HugePages_Total"] == 0
    v1 = hc.parse_cgroup_memory("== memory.limit_in_bytes\n67108864\n== memory.usage_in_bytes\n"
                                "2555904\n== memory.oom_control\noom_kill_disable 0\n"
                                "under_oom 0\noom_kill 2\n")
    assert v1 == {"limit": 67108864, "usage": 2555904, "oom_kills": 2}
    v2 = hc.parse_cgroup_memory("== memory.max\nmax\n== memory.current\n100\n"
                                "== memory.events\nlow 0\noom 3\noom_kill 1\n")
    assert v2 == {"limit": None, "usage": 100, "oom_kills": 1}
    unlimited = hc.parse_cgroup_memory("== memory.limit_in_bytes\n9223372036854771712\n")
    assert unlimited["limit"] is None and unlimited["oom_kills"] is None
    assert hc.parse_oom_log("unreadable\n") == (None, [])
    assert hc.parse_oom_log("source dmesg\n[1.0] Out of memory: Killed process 42 (java)\n") \
        == ("dmesg", ["[1.0] Out of memory: Killed process 42 (java)"])
    graded = hc.grade_memory(info, v1, None, [], hc.MemoryParams())
    assert graded["level"] == "critical"  # 4% available
    assert graded["summary"].startswith("the OOM killer killed 2 processes (per the memory "
                                        "cgroup (limit 64 MB))")
    assert "only 4% of memory available" in graded["summary"]
    assert "90% of swap in use" in graded["summary"]


def test_an_unreadable_kernel_log_is_not_checked_never_none() -> None:
    info = hc.parse_meminfo("MemTotal: 1000 kB\nMemAvailable: 900 kB\nSwapTotal: 0 kB\n")
    nothing = {"limit": None, "usage": None, "oom_kills": None}
    graded = hc.grade_memory(info, nothing, None, [], hc.MemoryParams())
    assert graded["ok"] and graded["oom_kills"] is None
    assert graded["oom_log"].startswith("not checked")
    assert "kernel log not checked" in graded["summary"]
    read = hc.grade_memory(info, nothing, "dmesg", [], hc.MemoryParams())
    assert read["oom_kills"] == 0 and read["oom_log"] == "dmesg"
    killed = hc.grade_memory(info, nothing, "journalctl -k",
                             ["kernel: Out of memory: Killed process 7 (x)"], hc.MemoryParams())
    assert killed["level"] == "warning" and "killed 1 process (per the kernel log)" in \
        killed["summary"]


PS = """\
      1       0 Ss   sshd
     60       1 S    python3
     61      60 Z    python3
     62      60 Z    python3
     70       1 S    bash
     71      70 Zs   defunct-child
"""


def test_zombies_grouped_by_parent() -> None:
    found = hc.parse_zombies(PS)
    assert [z["pid"] for z in found] == [61, 62, 71]
    assert found[0] == {"pid": 61, "command": "python3", "ppid": 60, "parent": "python3"}
    graded = hc.grade_zombies(found, hc.ZombieParams(zombies_warning=3))
    assert graded["level"] == "warning" and graded["by_parent"][0] == {
        "ppid": 60, "command": "python3", "zombies": 2}
    assert graded["summary"].startswith("3 zombie processes (2 of pid 60 (python3), 1 of pid "
                                        "70 (bash)): the parent does not reap")
    assert hc.grade_zombies(found, hc.ZombieParams())["level"] == "ok"  # under 5
    assert hc.grade_zombies([], hc.ZombieParams())["summary"] == "no zombie processes"


def test_failed_units() -> None:
    text = "nginx.service loaded failed failed A high performance web server\n" \
           "backup.timer  loaded failed failed\n"
    units = hc.parse_failed_units(text)
    assert units[0]["unit"] == "nginx.service" and units[1]["description"] == ""
    graded = hc.grade_failed_units(units, hc.FailedUnitsParams())
    assert graded["level"] == "critical"
    assert graded["summary"].startswith("2 failed systemd units: nginx.service (failed)")
    assert hc.grade_failed_units([], hc.FailedUnitsParams())["ok"]
    as_json = hc.parse_failed_units_json(
        '[{"unit":"nginx.service","load":"loaded","active":"failed","sub":"failed",'
        '"description":"A high performance web server"}]')
    assert as_json == [units[0]]
    assert hc.parse_failed_units_json("[]") == []


TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 495307 1
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 600001 1
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 600002 1
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A \
00000000:00000000 00:00000000 00000000     0        0 495308 1
   1: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A \
00000000:00000000 00:00000000 00000000     0        0 0 1
"""

LS_FD = """\
/proc/1/fd:
total 0
lrwx------ 1 root root 64 Dec  2 02:54 3 -> socket:[495307]
/proc/77/fd:
lr-x------ 1 runbook runbook 64 Dec  2 02:55 0 -> /dev/null
lrwx------ 1 runbook runbook 64 Dec  2 02:55 3 -> socket:[600001]
"""


def test_listening_ports_missing_and_unexpected() -> None:
    listening = hc.parse_proc_net_tcp(TCP)
    assert [(s["address"], s["port"], s["inode"]) for s in listening] == [
        ("0.0.0.0", 22, 495307), ("::", 22, 495308), ("::1", 80, 0),
        ("127.0.0.1", 8080, 600001)]
    owners = hc.parse_socket_links(LS_FD)
    assert owners == {495307: 1, 600001: 77}
    hc.name_owners(listening, owners, {1: "sshd", 77: "python3"})
    assert (listening[3]["pid"], listening[3]["command"]) == (77, "python3")
    assert listening[2]["pid"] is None  # inode 0: no process to name
    graded = hc.grade_ports(listening, hc.PortParams(expected=[22, 5432], allowed=[80]))
    assert graded["missing"] == [5432] and graded["unexpected"] == [8080]
    assert graded["level"] == "critical"
    assert "nothing listens on expected port(s) 5432" in graded["summary"]
    assert "unexpected listener(s) on 127.0.0.1:8080 (pid 77 python3)" in graded["summary"]
    quiet = hc.grade_ports(listening, hc.PortParams(expected=[22], unexpected_level="ok"))
    assert quiet["ok"] and quiet["unexpected"] == [80, 8080]
    with pytest.raises(ValidationError):
        hc.PortParams(expected=[70000])


CHRONY = """\
Reference ID    : 0A000001 (10.0.0.1)
Stratum         : 3
System time     : 0.250000000 seconds slow of NTP time
Leap status     : Normal
"""


def test_clock_from_chrony_and_timedatectl() -> None:
    tracking = hc.parse_chrony_tracking(CHRONY)
    assert tracking["offset_s"] == -0.25 and tracking["synchronised"]
    graded = hc.grade_clock("chronyc tracking", True, tracking["offset_s"], hc.ClockParams(), {})
    assert graded["level"] == "warning" and "clock -250 ms off NTP time" in graded["summary"]
    lost = hc.parse_chrony_tracking(CHRONY.replace("Normal", "Not synchronised"))
    assert not lost["synchronised"]
    props = hc.parse_timedatectl("NTP=yes\nNTPSynchronized=no\nTimezone=UTC\n")
    graded = hc.grade_clock("timedatectl", props["NTPSynchronized"] == "yes", None,
                            hc.ClockParams(), {})
    assert graded["level"] == "critical" and "clock not synchronised" in graded["summary"]


def test_commands_are_fixed_argv_lists_in_the_ssh_table() -> None:
    for name, build in hc.HOST_COMMANDS.items():
        assert sshconn.FIXED[name] is build
        argv = build()
        assert shlex.split(sshconn.command_line(argv)) == argv
    registry = Registry()
    hc.register(registry)
    kinds = [f"ssh.{name}" for name, *_ in hc.KINDS]
    assert all(not registry.kind(k).mutating for k in kinds) and len(kinds) == 7
