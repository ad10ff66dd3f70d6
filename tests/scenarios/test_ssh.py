"""The SSH backend against real sshd containers: every fixed probe, fan-out with an
unreachable host, host keys unknown and changed, shell injection through parameters,
ssh.exec gated through the CLI, output limits and command timeouts."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from diagnostics import ssh, sshconn
from runner.context import StepContext
from runner.errors import PermanentError, TemporaryError
from runner.inventory import Target
from runner.registry import Registry
from tests.lab.sshd import (
    USER,
    ClientKey,
    SshdHost,
    client_key,
    docker_exec,
    docker_logs,
    other_host_key,
    remove,
    start_sshd,
    start_sshd_behind,
    unused_bridge_ip,
    write_known_hosts,
)
from tests.scenarios.conftest import CLI
from tests.support.polling import wait_for

pytestmark = pytest.mark.lab

REGISTRY = Registry()
ssh.register(REGISTRY)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> ClientKey:
    return client_key(tmp_path_factory.mktemp("ssh-key"))


@pytest.fixture(scope="module")
def hosts(key: ClientKey) -> Iterator[list[SshdHost]]:
    """Two sshd hosts shared by this module's tests."""
    started_at = time.monotonic()
    try:
        started = start_sshd(2, key)
    except Exception as exc:
        pytest.fail(f"LAB MISSING: cannot start the lab sshd containers ({exc}); "
                    "run scripts/setup", pytrace=False)
    print(f"\n2 sshd containers ready in {time.monotonic() - started_at:.2f} s")
    try:
        yield started
    finally:
        remove([h.name for h in started])


@pytest.fixture
def known_hosts(tmp_path: Path, hosts: list[SshdHost]) -> Path:
    return write_known_hosts(tmp_path / "known_hosts", hosts)


def target(key: ClientKey, known_hosts: Path, *names: str, **fields: Any) -> Target:
    where: dict[str, Any] = {"host": names[0]} if len(names) == 1 else {"hosts": list(names)}
    settings = sshconn.SshSettings.model_validate({
        **where, "user": USER, "key_file": str(key.path), "known_hosts": str(known_hosts),
        "connect_timeout": "2s", **fields})
    return Target("lab-ssh", "ssh", settings)


def run(kind_name: str, on: Target, **params: Any) -> dict[str, Any]:
    """A step as the engine runs it: through the connector's handle for its kind."""
    kind = REGISTRY.kind(kind_name)
    connector = REGISTRY.backend("ssh").connector
    opened = connector.action if kind.mutating else connector.probe
    with opened(on, StepContext.outside_a_run(kind.timeout)) as handle:
        return kind.func(handle, kind.params.model_validate(params))


def exists(host: SshdHost, path: str) -> bool:
    return docker_exec(host, "test", "-e", path)[0] == 0


def fingerprint(key_line: str) -> str:
    digest = hashlib.sha256(base64.b64decode(key_line.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


# The fixed probes


def test_load(key: ClientKey, hosts: list[SshdHost], known_hosts: Path) -> None:
    result = run("ssh.load", target(key, known_hosts, hosts[0].ip))
    assert result["cpus"] >= 1
    assert result["load_per_core"] == round(result["load1"] / result["cpus"], 2)
    assert result["uptime_s"] > 0 and result["processes"] >= 1
    assert result["ok_count"] == 1 and result["hosts"][hosts[0].ip]["ok"] is True


def test_disk_usage_flags_mounts_over_the_threshold(
        key: ClientKey, hosts: list[SshdHost], known_hosts: Path) -> None:
    on = target(key, known_hosts, hosts[0].ip)
    root = next(m for m in run("ssh.disk_usage", on)["mounts"] if m["mount"] == "/")
    assert 0 <= root["used_pct"] <= 100 and root["avail_kb"] > 0
    flagged = run("ssh.disk_usage", on, threshold_pct=0)
    assert "/" in flagged["over_threshold"]
    assert run("ssh.disk_usage", on, threshold_pct=100)["over_threshold"] == []


def test_top_processes_finds_the_memory_hog(
        key: ClientKey, hosts: list[SshdHost], known_hosts: Path) -> None:
    docker_exec(hosts[0], "sh", "-c", "python3 -c 'x = bytearray(80_000_000); "
                "import time; time.sleep(30)' >/dev/null 2>&1 &")
    def hog_on_top() -> dict[str, Any] | None:
        result = run("ssh.top_processes", target(key, known_hosts, hosts[0].ip), count=3)
        return result if result["by_memory"][0]["rss_kb"] > 70_000 else None

    result = wait_for(hog_on_top, "the hog's 80 MB at the top of by_memory")
    hog = result["by_memory"][0]
    assert hog["command"].startswith("python3 -c") and hog["rss_kb"] > 70_000
    assert len(result["by_memory"]) == 3 and len(result["by_cpu"]) == 3
    assert result["processes"] >= 3
    docker_exec(hosts[0], "pkill", "-x", "python3")


def test_service_status_without_systemd(
        key: ClientKey, hosts: list[SshdHost], known_hosts: Path) -> None:
    on = target(key, known_hosts, hosts[0].ip)
    up = run("ssh.service_status", on, unit="ssh", process="sshd")
    assert up["via"] == "service" and up["unit_active"] is True
    assert up["process_running"] is True and up["active"] is True
    assert any(p["pid"] == 1 for p in up["processes"])  # sshd is the container's PID 1
    down = run("ssh.service_status", on, process="syncd")
    assert down["active"] is False and down["processes"] == []
    with pytest.raises(ValidationError):
        run("ssh.service_status", on, unit="ssh; touch /tmp/x")


SYNC_LOG = """\
2026-11-22 07:50:01,120 INFO sync started client=acme
2026-11-22 07:50:02,311 ERROR POST https://api.example.com/v2/orders status=401 Unauthorized
2026-11-22 07:50:03,002 WARN rate limited: 429 Too Many Requests, retry after 60s
2026-11-22 07:51:04,777 ERROR upstream call failed: connect ETIMEDOUT 10.0.0.7:443
2026-11-22 07:52:05,100 ERROR POST https://api.example.com/v2/orders status=401 Unauthorized
2026-11-22 07:53:06,000 INFO sync finished client=acme ok=120 failed=4
"""


def test_log_tail_classifies_errors(
        key: ClientKey, hosts: list[SshdHost], known_hosts: Path) -> None:
    docker_exec(hosts[0], "sh", "-c", f"mkdir -p /var/log/sync && cat > "
                f"/var/log/sync/sync-2026-11-22.log <<'EOF'\n{SYNC_LOG}EOF")
    on = target(key, known_hosts, hosts[0].ip)
    result = run("ssh.log_tail", on, path="/var/log/sync/sync-2026-11-22.log", lines=500)
    assert result["lines"] == 6
    assert result["classes"]["auth"]["count"] == 2
    assert result["classes"]["auth"]["first_seen"].startswith("2026-11-22T07:50:02")
    assert result["classes"]["auth"]["last_seen"].startswith("2026-11-22T07:52:05")
    assert result["classes"]["rate_limit"]["count"] == 1
    assert result["classes"]["timeout"]["count"] == 1
    assert result["top_class"] == "auth"
    assert result["excerpt"][-1].startswith("ERROR POST")

    grepped = run("ssh.log_tail", on, path="/var/log/sync/sync-2026-11-22.log",
                  pattern="unauthorized|etimedout")
    assert grepped["lines"] == 3 and set(grepped["classes"]) == {"auth", "timeout"}
    none = run("ssh.log_tail", on, path="/var/log/sync/sync-2026-11-22.log", pattern="nomatch")
    assert none["lines"] == 0
    with pytest.raises(PermanentError, match=r"cannot read /var/log/sync/missing\.log"):
        run("ssh.log_tail", on, path="/var/log/sync/missing.log", pattern="x")
    with pytest.raises(PermanentError, match="exited 1"):
        run("ssh.log_tail", on, path="/var/log/sync/missing.log")


def test_file_age_of_a_file_and_of_the_newest_match(
        key: ClientKey, hosts: list[SshdHost], known_hosts: Path) -> None:
    docker_exec(hosts[0], "sh", "-c", "mkdir -p /srv/sync && "
                "touch -d '-2 hours' /srv/sync/sync-1.log && "
                "touch -d '-10 minutes' /srv/sync/sync-2.log && touch /srv/sync/other.txt")
    on = target(key, known_hosts, hosts[0].ip)
    one = run("ssh.file_age", on, path="/srv/sync/sync-1.log")
    assert one["exists"] is True and 7190 <= one["age_s"] <= 7230
    newest = run("ssh.file_age", on, path="/srv/sync", glob="sync-*.log")
    assert newest["path"] == "/srv/sync/sync-2.log" and newest["matched"] == 2
    assert 590 <= newest["age_s"] <= 630
    assert run("ssh.file_age", on, path="/srv/sync/nothing")["exists"] is False
    assert run("ssh.file_age", on, path="/srv/sync", glob="*.gz")["exists"] is False


def test_a_file_name_with_a_newline_cannot_point_file_age_at_another_file(
        key: ClientKey, hosts: list[SshdHost], known_hosts: Path) -> None:
    """The attack: a name that, split on newlines, reads as a newer record for `.pgpass`
    (relative: the login's home), so that log_tail would then put the password into
    findings and evidence. A name cannot hold '/', but it needs none."""
    forged = "sync-\n9999999999.0 10 .pgpass\n1 1 x.log"
    script = ("import os, sys; os.makedirs('/home/runbook/nl-logs', exist_ok=True); "
              "open('/home/runbook/.pgpass', 'w').write('db:5432:*:app:hunter2-secret\\n'); "
              "os.chmod('/home/runbook/.pgpass', 0o600); "
              "open('/home/runbook/nl-logs/sync-1.log', 'w').write('ERROR 401 Unauthorized\\n'); "
              "os.utime('/home/runbook/nl-logs/sync-1.log', (1700000000, 1700000000)); "
              "open('/home/runbook/nl-logs/' + sys.argv[1], 'w').write('x\\n')")
    assert docker_exec(hosts[0], "python3", "-c", script, forged, user=USER)[0] == 0
    on = target(key, known_hosts, hosts[0].ip)
    newest = run("ssh.file_age", on, path="nl-logs", glob="sync-*.log")
    assert newest["path"] == "nl-logs/sync-1.log", newest
    assert newest["matched"] == 1 and newest["skipped_names"] == 1
    tail = run("ssh.log_tail", on, path=newest["path"])
    assert "hunter2" not in json.dumps([newest, tail])


def test_file_age_refuses_a_newest_file_that_resolves_outside_the_directory(
        key: ClientKey, hosts: list[SshdHost], known_hosts: Path) -> None:
    """find -type f never lists a symlink; a directory reached through one is still checked
    as a whole: the file's real parent must be the directory's real path."""
    docker_exec(hosts[0], "sh", "-c", "mkdir -p /srv/real && touch /srv/real/sync-1.log && "
                "ln -sfn /srv/real /srv/linked && ln -sf /etc/passwd /srv/real/sync-9.log")
    on = target(key, known_hosts, hosts[0].ip)
    newest = run("ssh.file_age", on, path="/srv/linked", glob="sync-*.log")
    assert newest["path"] == "/srv/linked/sync-1.log" and newest["matched"] == 1


# Fan-out


def test_group_with_an_unreachable_host_respects_max_errors(
        key: ClientKey, hosts: list[SshdHost], known_hosts: Path) -> None:
    gone = unused_bridge_ip()
    group = target(key, known_hosts, hosts[0].ip, gone, hosts[1].ip)

    stopped = run("ssh.load", group, max_errors=0, max_concurrency=1)
    assert stopped["ok_count"] == 1 and stopped["failed_count"] == 1
    assert stopped["not_run"] == [hosts[1].ip]
    assert stopped["hosts"][hosts[0].ip]["ok"] is True
    assert stopped["hosts"][gone]["ok"] is False
    assert gone in stopped["hosts"][gone]["error"]
    assert "load1" not in stopped  # a group's results are per host only

    tolerated = run("ssh.load", group, max_errors=1, max_concurrency=1)
    assert tolerated["ok_count"] == 2 and tolerated["not_run"] == []
    assert [h for h, e in tolerated["hosts"].items() if not e["ok"]] == [gone]

    percent = run("ssh.load", group, max_errors="34%", max_concurrency=1)  # 34% of 3: 1
    assert percent["ok_count"] == 2

    with pytest.raises(TemporaryError, match="no host succeeded"):
        run("ssh.load", target(key, known_hosts, gone, unused_bridge_ip(2)))


def test_connection_refused_is_temporary_and_a_wrong_key_permanent(
        tmp_path: Path, key: ClientKey, hosts: list[SshdHost], known_hosts: Path) -> None:
    with pytest.raises(TemporaryError, match="connection refused"):
        run("ssh.load", target(key, known_hosts, hosts[0].ip, port=2222))
    stranger = client_key(tmp_path, "stranger")
    with pytest.raises(PermanentError, match="authentication failed") as refused:
        run("ssh.load", target(stranger, known_hosts, hosts[0].ip))
    assert stranger.private_text.splitlines()[1] not in str(refused.value)


# Host keys


def test_unknown_host_key_is_refused_with_how_to_add_it(
        tmp_path: Path, key: ClientKey, hosts: list[SshdHost]) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(PermanentError) as refused:
        run("ssh.load", target(key, empty, hosts[0].ip))
    message = str(refused.value)
    assert "unknown host key" in message and "refusing to connect" in message
    assert f"ssh-ed25519 {fingerprint(hosts[0].host_key)}" in message
    assert f"ssh-keyscan -p 22 {hosts[0].ip} >> {empty}" in message
    assert empty.read_text() == ""  # nothing was added


def test_changed_host_key_is_refused_loudly(
        tmp_path: Path, key: ClientKey, hosts: list[SshdHost]) -> None:
    forged = other_host_key()
    known = write_known_hosts(tmp_path / "known_hosts", hosts, {hosts[0].ip: forged})
    with pytest.raises(PermanentError) as refused:
        run("ssh.load", target(key, known, hosts[0].ip))
    message = str(refused.value)
    assert "HOST KEY CHANGED" in message and "man-in-the-middle" in message
    assert fingerprint(hosts[0].host_key) in message and fingerprint(forged) in message
    # The other host of the file is still trusted.
    assert run("ssh.load", target(key, known, hosts[1].ip))["ok_count"] == 1


# Injection, quoting


INJECTIONS = ("x; touch /tmp/pwned", "$(touch /tmp/pwned)", "`touch /tmp/pwned`",
              "x' ; touch /tmp/pwned ; '", 'x" && touch /tmp/pwned && "', "x\\ ; touch /tmp/pwned")


def test_shell_injection_through_parameters_does_nothing(
        key: ClientKey, hosts: list[SshdHost], known_hosts: Path) -> None:
    on = target(key, known_hosts, hosts[0].ip)
    for attempt in INJECTIONS:
        with pytest.raises(PermanentError):
            run("ssh.log_tail", on, path=attempt)
        with pytest.raises(PermanentError):
            run("ssh.log_tail", on, path=attempt, pattern=attempt)
        run("ssh.log_tail", on, path="/etc/hostname", pattern=attempt)
        assert run("ssh.file_age", on, path=attempt)["exists"] is False
        run("ssh.file_age", on, path="/tmp", glob=attempt)
        echoed = run("ssh.exec_read_only", on, argv=["echo", attempt])
        assert echoed["stdout"] == attempt + "\n"
    assert not exists(hosts[0], "/tmp/pwned")
    with pytest.raises(ValidationError):  # would be read as an option
        run("ssh.log_tail", on, path="--help")


# ssh.exec: gated


PLAYBOOK = """\
name: ssh-marker
summary: a remedy that touches a marker file on the host
targets:
  box: {kind: ssh}
steps:
  - {id: load, run: ssh.load}
  - id: marker
    run: ssh.exec_read_only
    with: {argv: [ls, /tmp]}
findings:
  - id: loaded
    when: steps.load.cpus >= 1
    say: "{{ steps.load.cpus }} CPUs"
remedies:
  - id: touch-marker
    run: ssh.exec
    with: {argv: [touch, /tmp/remedied by runbook]}
"""


def test_ssh_exec_runs_only_after_approval(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: CLI, key: ClientKey,
        hosts: list[SshdHost], known_hosts: Path) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "ssh-marker.yaml").write_text(PLAYBOOK)
    (tmp_path / "inventory.yaml").write_text(json.dumps({"targets": {"lab-box": {
        "kind": "ssh", "host": hosts[1].ip, "user": USER, "key_file": str(key.path),
        "known_hosts": str(known_hosts)}}}))
    monkeypatch.setenv("RUNBOOK_PLAYBOOKS", str(tmp_path / "playbooks"))
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(tmp_path / "inventory.yaml"))
    marker = "/tmp/remedied by runbook"

    code, plan = cli("plan", "ssh-marker")
    assert code == 0, plan
    assert "read-only (marked by the playbook's author)  marker: ssh.exec_read_only" in plan
    assert "MUTATING   touch-marker=ssh.exec" in plan

    code, report = cli.json("run", "ssh-marker", "--no-input")
    assert report["status"] == "awaiting_approval", report
    remedy = next(r for r in report["remedies"] if r["id"] == "touch-marker")
    assert remedy["status"] == "proposed"
    assert not exists(hosts[1], marker)  # proposed only

    code, out = cli("approve", report["run_id"], "touch-marker", "--as", "tester")
    assert code == 0, out
    assert not exists(hosts[1], marker)
    code, report = cli.json("resume", report["run_id"], "--no-input")
    remedy = next(r for r in report["remedies"] if r["id"] == "touch-marker")
    assert remedy["status"] == "succeeded", remedy
    assert remedy["result"]["exit_code"] == 0
    assert remedy["result"]["command"] == "touch '/tmp/remedied by runbook'"
    assert exists(hosts[1], marker)


OPTIONS_PLAYBOOK = """\
name: ssh-options
summary: a param put into an argv by a template
params:
  word: {type: string, default: hello}
targets:
  box: {kind: ssh}
steps:
  - id: said
    run: ssh.exec_read_only
    with: {argv: [/bin/echo, "{{ params.word }}"]}
  - id: said_as_option
    run: ssh.exec_read_only
    allow_options: true
    with: {argv: [/bin/echo, "{{ params.word }}"]}
remedies:
  - id: touch-it
    run: ssh.exec
    with: {argv: [touch, "{{ params.word }}"]}
"""


def test_a_templated_argv_value_starting_with_a_dash_is_refused_unless_allowed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: CLI, key: ClientKey,
        hosts: list[SshdHost], known_hosts: Path) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "ssh-options.yaml").write_text(OPTIONS_PLAYBOOK)
    (tmp_path / "inventory.yaml").write_text(json.dumps({"targets": {"lab-box": {
        "kind": "ssh", "host": hosts[0].ip, "user": USER, "key_file": str(key.path),
        "known_hosts": str(known_hosts)}}}))
    monkeypatch.setenv("RUNBOOK_PLAYBOOKS", str(tmp_path / "playbooks"))
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(tmp_path / "inventory.yaml"))

    _code, report = cli.json("run", "ssh-options", "-p", "word=--version", "--no-input",
                             "--approve", "touch-it=ssh.exec")
    steps = {s["id"]: s for s in report["steps"]}
    [touch] = report["remedies"]
    assert touch["status"] == "skipped" and "renders to '--version'" in json.dumps(touch)
    assert steps["said"]["status"] == "failed"
    assert "argv[1]: '{{ params.word }}' renders to '--version', which starts with '-'" \
        in steps["said"]["error"]
    assert steps["said_as_option"]["status"] == "ok"  # the step said so: echo's option
    assert "GNU coreutils" in steps["said_as_option"]["result"]["stdout"]

    _code, report = cli.json("run", "ssh-options", "-p", "word=/tmp/plain", "--no-input",
                             "--approve", "touch-it=ssh.exec")
    assert {s["id"]: s["result"]["stdout"] for s in report["steps"]} == {
        "said": "/tmp/plain\n", "said_as_option": "/tmp/plain\n"}
    assert report["remedies"][0]["status"] == "succeeded", report["remedies"]
    assert exists(hosts[0], "/tmp/plain")


def test_log_tail_takes_a_literal_as_text_never_as_a_regex(
        key: ClientKey, hosts: list[SshdHost], known_hosts: Path) -> None:
    lines = ["ERROR 500 client=acme.x failed", "ERROR 500 client=acmeZx failed",
             "ERROR 500 client=acme.x2 failed", "ERROR 500 client=.* failed",
             "ERROR 500 client=other failed"]
    docker_exec(hosts[0], "sh", "-c", "printf '%s\\n' \"$@\" > /tmp/literal.log", "sh", *lines)
    on = target(key, known_hosts, hosts[0].ip)
    named = run("ssh.log_tail", on, path="/tmp/literal.log", pattern="client={literal}( |$)",
                literal="acme.x")
    assert named["lines"] == 1 and named["pattern"] == r"client=acme\.x( |$)"
    star = run("ssh.log_tail", on, path="/tmp/literal.log", literal=".*")
    assert star["lines"] == 1 and star["excerpt"] == ["ERROR 500 client=.* failed"]
    every = run("ssh.log_tail", on, path="/tmp/literal.log", pattern="client=[^ ]+( |$)",
                literal="")
    assert every["lines"] == 5


def test_output_past_max_output_is_cut_and_flagged(
        key: ClientKey, hosts: list[SshdHost], known_hosts: Path) -> None:
    on = target(key, known_hosts, hosts[0].ip, max_output=1000)
    result = run("ssh.exec_read_only", on, argv=["seq", "1", "200000"])
    assert result["truncated"] is True and len(result["stdout"]) == 1000
    assert result["stdout"].startswith("1\n2\n3\n")
    assert result["exit_code"] == 0  # read to the end, kept only the start
    small = run("ssh.exec_read_only", on, argv=["seq", "1", "3"])
    assert small["truncated"] is False and small["stdout"] == "1\n2\n3\n"


@pytest.mark.timeout(60)  # a client that waited for the remote `sleep 300` fails here
def test_a_command_past_command_timeout_is_stopped(
        key: ClientKey, hosts: list[SshdHost], known_hosts: Path) -> None:
    on = target(key, known_hosts, hosts[0].ip, command_timeout="1.5s")
    with pytest.raises(sshconn.CommandFailed, match=r"did not finish within 1\.5s") as failed:
        run("ssh.exec", on, argv=["sleep", "300"])
    assert failed.value.result["timed_out"] is True
    wait_for(lambda: docker_exec(hosts[0], "pgrep", "-x", "sleep")[0] == 1,
             "the remote command to be gone")


# Keys from the environment, ~/.ssh/config, inventory


def test_key_from_env_and_host_alias_from_ssh_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: ClientKey,
        hosts: list[SshdHost], known_hosts: Path) -> None:
    from runner import inventory

    monkeypatch.setenv("LAB_SSH_KEY", key.private_text)
    config = tmp_path / "ssh_config"
    config.write_text(f"Host labbox\n  HostName {hosts[0].ip}\n  User {USER}\n"
                      f"  IdentityFile {key.path}\n")
    file = tmp_path / "inventory.yaml"
    file.write_text(f"""
targets:
  by-env:
    kind: ssh
    host: {hosts[0].ip}
    user: {USER}
    key_env: LAB_SSH_KEY
    known_hosts: {known_hosts}
  by-alias:
    kind: ssh
    host: labbox
    ssh_config: {config}
    known_hosts: {known_hosts}
""")
    targets = inventory.load([file], REGISTRY)
    by_env = run("ssh.exec_read_only", targets.get("by-env"), argv=["id", "-un"])
    assert by_env["stdout"] == f"{USER}\n"
    by_alias = run("ssh.exec_read_only", targets.get("by-alias"), argv=["id", "-un"])
    assert by_alias["stdout"] == f"{USER}\n" and list(by_alias["hosts"]) == ["labbox"]


# Jump hosts (ProxyJump)


@pytest.fixture
def behind(key: ClientKey, hosts: list[SshdHost]) -> Iterator[SshdHost]:
    """An sshd only hosts[0] reaches: 127.0.0.1:2222 inside hosts[0]'s network namespace."""
    host = start_sshd_behind(hosts[0], key)
    try:
        yield host
    finally:
        remove([host.name])


def accepted_from(host: SshdHost) -> list[str]:
    """The addresses sshd says it accepted a key from."""
    return [line.split(" from ")[1].split()[0] for line in docker_logs(host).splitlines()
            if "Accepted publickey" in line]


def test_a_host_behind_a_jump_host_is_reached_through_it(
        tmp_path: Path, key: ClientKey, hosts: list[SshdHost], behind: SshdHost) -> None:
    bastion = hosts[0]
    known = write_known_hosts(tmp_path / "known_hosts", [bastion, behind])
    direct = target(key, known, behind.ip, port=behind.port)
    with pytest.raises(TemporaryError, match="connection refused"):  # not from here
        run("ssh.load", direct)

    jumped = target(key, known, behind.ip, port=behind.port, jump=f"{USER}@{bastion.ip}:22")
    assert run("ssh.exec_read_only", jumped, argv=["id", "-un"])["stdout"] == f"{USER}\n"
    assert accepted_from(behind) == ["127.0.0.1"]  # the bastion's end of the tunnel

    # The same route from ~/.ssh/config: an alias with ProxyJump naming another alias.
    config = tmp_path / "ssh_config"
    config.write_text(f"Host inner\n  HostName 127.0.0.1\n  Port {behind.port}\n"
                      f"  ProxyJump bastion\n"
                      f"Host bastion\n  HostName {bastion.ip}\n  User {USER}\n")
    by_config = target(key, known, "inner", ssh_config=str(config))
    assert run("ssh.load", by_config)["hosts"]["inner"]["ok"] is True
    assert accepted_from(behind) == ["127.0.0.1", "127.0.0.1"]
    # `jump: none` in the inventory overrides the config's ProxyJump: straight there, refused.
    with pytest.raises(TemporaryError, match="connection refused"):
        run("ssh.load", target(key, known, "inner", ssh_config=str(config), jump="none"))


def test_a_jump_host_with_an_unknown_key_is_refused(
        tmp_path: Path, key: ClientKey, hosts: list[SshdHost], behind: SshdHost) -> None:
    known = write_known_hosts(tmp_path / "known_hosts", [behind])  # not the bastion's key
    jumped = target(key, known, behind.ip, port=behind.port, jump=hosts[0].ip)
    with pytest.raises(PermanentError, match=f"jump host {hosts[0].ip}: unknown host key"):
        run("ssh.load", jumped)
    assert accepted_from(behind) == []


def test_a_proxy_command_is_refused_not_bypassed(
        tmp_path: Path, key: ClientKey, hosts: list[SshdHost], known_hosts: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(f"Host viaproxy\n  HostName {hosts[0].ip}\n"
                      "  ProxyCommand nc -X connect -x proxy:3128 %h %p\n")
    with pytest.raises(PermanentError, match=f"{config}:3: ProxyCommand"):
        run("ssh.load", target(key, known_hosts, "viaproxy", ssh_config=str(config)))


def test_match_exec_in_an_included_ssh_config_is_refused_and_never_runs(
        tmp_path: Path, key: ClientKey, hosts: list[SshdHost], known_hosts: Path) -> None:
    """paramiko's config lookup would run it (through invoke) before connecting."""
    ran = tmp_path / "ran"
    (tmp_path / "extra.conf").write_text(f'Match exec "touch {ran}"\n  User {USER}\n')
    config = tmp_path / "ssh_config"
    config.write_text(f"Host labbox\n  HostName {hosts[0].ip}\nInclude extra.conf\n")
    before = docker_logs(hosts[0]).count("Accepted publickey")
    with pytest.raises(PermanentError, match=r"refusing the ssh config .*extra.conf:1: "
                                             r"Match exec"):
        run("ssh.load", target(key, known_hosts, "labbox", ssh_config=str(config)))
    assert not ran.exists()
    assert docker_logs(hosts[0]).count("Accepted publickey") == before  # never connected
