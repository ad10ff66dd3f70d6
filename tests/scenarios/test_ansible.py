"""The Ansible backend against a real sshd container: a team's playbook in check mode
(read-only: it says it would change, and changes nothing), then for real as an approved
remedy; hosts that cannot be reached (no answer, a changed host key) reported as
unreachable; a run stopped at its timeout. ansible-playbook takes seconds to start: these
tests run it five times."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from diagnostics import ansible
from runner.context import StepContext
from runner.errors import PermanentError, StepTimeout
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

PLAYBOOK_DIR = Path(__file__).resolve().parent.parent / "lab" / "ansible"
MARKER = "/tmp/runbook ansible marker"  # a space: it stays one path
# Shell and Jinja-looking text: extra_vars go as a JSON file, so it arrives as written.
CONTENT = "managed by runbook: it's $(id) `id` \"quoted\" {{ not_a_var }} ;"

REGISTRY = Registry()
ansible.register(REGISTRY)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> ClientKey:
    return client_key(tmp_path_factory.mktemp("ansible-key"))


@pytest.fixture(scope="module")
def host(key: ClientKey) -> Iterator[SshdHost]:
    try:
        started = start_sshd(1, key, prefix="rb-test-ansible")
    except Exception as exc:
        pytest.fail(f"LAB MISSING: cannot start the lab sshd container ({exc}); "
                    "run scripts/setup", pytrace=False)
    try:
        yield started[0]
    finally:
        remove([h.name for h in started])


def exists(host: SshdHost, path: str) -> bool:
    return docker_exec(host, "test", "-e", path)[0] == 0


PLAYBOOK = """\
name: ansible-marker
summary: the team's ensure-file playbook, checked, then applied once approved
params:
  path: {default: /tmp/marker}
  content: {default: "hello\\n"}
targets:
  fleet: {kind: ansible}
steps:
  - id: check
    run: ansible.check
    with:
      playbook: ensure-file.yml
      tags: [file]
      extra_vars: {path: "{{ params.path }}", content: "{{ params.content }}"}
findings:
  - id: drift
    when: steps.check.would_change
    say: >-
      {{ steps.check.changed_count }} task(s) would change:
      {{ steps.check.changes | map(attribute='task') | join(', ') }}
remedies:
  - id: apply
    when: steps.check.would_change
    run: ansible.run
    with:
      playbook: ensure-file.yml
      extra_vars: {path: "{{ params.path }}", content: "{{ params.content }}"}
verify:
  - id: converged
    run: ansible.check
    with:
      playbook: ensure-file.yml
      extra_vars: {path: "{{ params.path }}", content: "{{ params.content }}"}
    expect: result.ok and not result.would_change
    within: 1s
"""


@pytest.mark.lab
def test_check_changes_nothing_and_the_approved_run_applies_the_playbook(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: CLI, runbook_home: Path,
        key: ClientKey, host: SshdHost) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "ansible-marker.yaml").write_text(PLAYBOOK)
    known_hosts = write_known_hosts(tmp_path / "known_hosts", [host])
    monkeypatch.setenv("LAB_ANSIBLE_KEY", key.private_text)
    (tmp_path / "inventory.yaml").write_text(json.dumps({"targets": {"lab-fleet": {
        "kind": "ansible", "playbook_dir": str(PLAYBOOK_DIR), "hosts": [host.ip],
        "user": USER, "key_env": "LAB_ANSIBLE_KEY", "known_hosts": str(known_hosts),
        "connect_timeout": "5s"}}}))
    monkeypatch.setenv("RUNBOOK_PLAYBOOKS", str(tmp_path / "playbooks"))
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(tmp_path / "inventory.yaml"))
    params = ("--param", f"path={MARKER}", "--param", f"content={CONTENT}")
    temp_keys = set(Path("/tmp").glob("runbook-ansible-key-*"))

    code, plan = cli("plan", "ansible-marker", *params)
    assert code == 0, plan
    assert "read-only (marked by the playbook's author)  check: ansible.check" in plan
    assert "MUTATING   apply=ansible.run" in plan

    started = time.monotonic()
    code, report = cli.json("run", "ansible-marker", *params, "--no-input")
    print(f"\ncheck-mode run: {time.monotonic() - started:.1f} s")
    check = next(s for s in report["steps"] if s["id"] == "check")
    assert code == 1, check
    assert check["status"] == "ok", check
    result = check["result"]
    assert result["check_mode"] is True and result["status"] == "successful"
    assert result["rc"] == 0 and result["ok"] is True
    assert result["would_change"] is True and result["changed"] is False
    assert result["hosts"] == {host.ip: {"ok": 1, "changed": 1, "failed": 0, "unreachable": 0,
                                         "skipped": 0, "rescued": 0, "ignored": 0}}
    [change] = result["changes"]
    assert change["task"] == "Write the file" and change["action"] == "ansible.builtin.copy"
    assert "+managed by runbook" in change["diff"]
    assert {"event": "runner_on_ok", "host": host.ip, "task": "Write the file",
            "status": "changed"} in result["events"]
    assert not exists(host, MARKER)  # check mode wrote nothing
    drift = next(f for f in report["findings"] if f["id"] == "drift")
    assert drift["message"] == "1 task(s) would change: Write the file"
    assert report["status"] == "awaiting_approval"

    # The artifacts: ansible-runner's layout, under RUNBOOK_HOME/ansible/, named by the
    # step's evidence.
    artifacts = Path(result["artifacts"])
    assert artifacts.is_relative_to(runbook_home / "ansible")
    assert (artifacts / "status").read_text() == "successful"
    assert (artifacts / "rc").read_text() == "0"
    assert "Write the file" in (artifacts / "stdout").read_text()
    assert list((artifacts / "job_events").glob("*.json"))
    evidence = runbook_home / "runs" / report["run_id"] / "evidence" / "check.json"
    assert json.loads(evidence.read_text())["result"]["artifacts"] == str(artifacts)
    command = json.loads((artifacts / "command").read_text())
    assert "--check" in command["command"] and "LAB_ANSIBLE_KEY" not in command["env"]
    assert command["env"]["ANSIBLE_HOST_KEY_CHECKING"] == "True"

    code, out = cli("approve", report["run_id"], "apply", "--as", "tester")
    assert code == 0, out
    assert not exists(host, MARKER)
    started = time.monotonic()
    code, report = cli.json("resume", report["run_id"], "--no-input")
    print(f"apply + verify: {time.monotonic() - started:.1f} s")
    apply = next(r for r in report["remedies"] if r["id"] == "apply")
    assert apply["status"] == "succeeded", apply
    assert apply["result"]["changed"] is True and apply["result"]["check_mode"] is False
    assert docker_exec(host, "cat", MARKER) == (0, CONTENT)
    assert {v["id"]: v["status"] for v in report["verify"]} == {"converged": "passed"}
    assert report["status"] == "completed"

    # The key from the environment went to a temporary file, since removed, and nowhere else.
    assert set(Path("/tmp").glob("runbook-ansible-key-*")) == temp_keys
    secret_line = key.private_text.splitlines()[1]
    for file in runbook_home.rglob("*"):
        if file.is_file():
            assert secret_line not in file.read_text(errors="replace"), file


def fleet(tmp_path: Path, key: ClientKey, known_hosts: Path, *hosts: str) -> Target:
    settings = ansible.AnsibleSettings.model_validate({
        "playbook_dir": str(PLAYBOOK_DIR), "hosts": list(hosts), "user": USER,
        "key_file": str(key.path), "known_hosts": str(known_hosts), "connect_timeout": "3s"})
    return Target("lab-fleet", "ansible", settings)


def check(on: Target, **params: Any) -> dict[str, Any]:
    kind = REGISTRY.kind("ansible.check")
    with REGISTRY.backend("ansible").connector.probe(on,
            StepContext.outside_a_run(kind.timeout)) as handle:
        return kind.func(handle, kind.params.model_validate(params))


@pytest.mark.lab
def test_hosts_not_reached_are_reported_unreachable(
        tmp_path: Path, key: ClientKey, host: SshdHost) -> None:
    """One host does not answer; the other presents a key known_hosts does not record."""
    gone = unused_bridge_ip()
    forged = write_known_hosts(tmp_path / "known_hosts", [host], {host.ip: other_host_key()})
    result = check(fleet(tmp_path, key, forged, host.ip, gone), playbook="ensure-file.yml",
                   extra_vars={"path": MARKER + ".2"})
    assert result["ok"] is False and result["rc"] == 4
    assert result["unreachable_hosts"] == sorted([host.ip, gone])
    assert result["hosts"][gone]["unreachable"] == 1
    why = {u["host"]: u["msg"] for u in result["unreachable"]}
    assert "Host key verification failed" in why[host.ip]
    assert gone in why[gone] and "timed out" in why[gone]
    assert result["changes"] == [] and result["failed_tasks"] == []
    assert not exists(host, MARKER + ".2")


@pytest.mark.lab
def test_a_run_past_its_timeout_is_stopped(
        tmp_path: Path, runbook_home: Path, key: ClientKey, host: SshdHost) -> None:
    known_hosts = write_known_hosts(tmp_path / "known_hosts", [host])
    settings = ansible.AnsibleSettings.model_validate({
        "playbook_dir": str(PLAYBOOK_DIR), "hosts": [host.ip], "user": USER,
        "key_file": str(key.path), "known_hosts": str(known_hosts), "timeout": "3s"})
    kind = REGISTRY.kind("ansible.run")
    started = time.monotonic()
    with pytest.raises(StepTimeout, match="did not finish within 3s"), \
            REGISTRY.backend("ansible").connector.action(
                Target("lab-fleet", "ansible", settings),
                        StepContext.outside_a_run(kind.timeout)) as handle:
        kind.func(handle, kind.params.model_validate({"playbook": "sleep.yml"}))
    assert time.monotonic() - started < 10
    [status] = runbook_home.glob("ansible/*/artifacts/*/status")
    assert status.read_text() == "timeout"


@pytest.mark.lab
def test_a_host_behind_a_jump_host_is_reached_through_it(
        tmp_path: Path, key: ClientKey, host: SshdHost) -> None:
    """The host listens on 127.0.0.1:2222 inside the bastion's network namespace: only the
    bastion reaches it. Both host keys are checked against the one known_hosts file."""
    behind = start_sshd_behind(host, key)
    try:
        known_hosts = write_known_hosts(tmp_path / "known_hosts", [host, behind])
        settings = ansible.AnsibleSettings.model_validate({
            "playbook_dir": str(PLAYBOOK_DIR), "hosts": [behind.ip], "port": behind.port,
            "user": USER, "key_file": str(key.path), "known_hosts": str(known_hosts),
            "jump": f"{USER}@{host.ip}", "connect_timeout": "5s"})
        result = check(Target("lab-fleet", "ansible", settings), playbook="ensure-file.yml",
                       extra_vars={"path": MARKER + ".3"})
        assert result["ok"] is True, result
        assert result["would_change"] is True and result["unreachable"] == []
        logins = docker_logs(behind).count("Accepted publickey for runbook from 127.0.0.1")
        assert logins >= 1  # from the bastion's end of the tunnel

        # The bastion's key unknown: refused there, and the host is reported unreachable.
        write_known_hosts(known_hosts, [behind])
        result = check(Target("lab-fleet", "ansible", settings), playbook="ensure-file.yml",
                       extra_vars={"path": MARKER + ".3"})
        assert result["ok"] is False and result["unreachable_hosts"] == [behind.ip]
        assert docker_logs(behind).count("Accepted publickey") == logins  # none more
    finally:
        remove([behind.name])


# Tasks that opt out of check mode (real-in-check.yml: a task, a block, an include, a role)
REAL = ["Stamp from a role", "Record the run", "Touch from a block", "Touch from an include"]
REAL_MARKER = "/tmp/runbook-real-in-check"
REAL_FILES = [REAL_MARKER + s for s in ("", ".block", ".include", ".role")]


@pytest.mark.lab
def test_check_refuses_tasks_that_run_for_real_unless_the_step_lists_them(
        tmp_path: Path, key: ClientKey, host: SshdHost) -> None:
    on = fleet(tmp_path, key, write_known_hosts(tmp_path / "known_hosts", [host]), host.ip)
    with pytest.raises(PermanentError, match=r"4 task\(s\) would run for real even in "
                                             r"check mode") as refused:
        check(on, playbook="real-in-check.yml")
    for name in REAL:
        assert repr(name) in str(refused.value)
    with pytest.raises(PermanentError, match=r"1 task\(s\) would run .*'Touch from an include'"):
        check(on, playbook="real-in-check.yml", allow_real_tasks=REAL[:3])
    assert not any(exists(host, path) for path in REAL_FILES)  # refused before running

    result = check(on, playbook="real-in-check.yml", allow_real_tasks=REAL)
    assert result["ok"] is True and result["check_mode"] is True
    assert all(exists(host, path) for path in REAL_FILES)  # they did run for real
    assert not exists(host, REAL_MARKER + ".conf")  # the others honoured check mode
    assert result["changed"] is True  # what happened is reported as having happened
    assert sorted(c["task"] for c in result["real_changes"]) == sorted(REAL)
    assert result["would_change"] is True
    assert [c["task"] for c in result["changes"] if not c["real"]] == ["Would write the config"]
    assert sorted(t["task"] for t in result["real_tasks"]) == sorted(REAL)
    assert result["unexpected_real_tasks"] == []  # the events agree with the reading


@pytest.mark.lab
def test_events_say_what_ran_outside_check_mode_even_when_the_reading_missed_it(
        tmp_path: Path, key: ClientKey, host: SshdHost) -> None:
    """The second line: the check-mode callback records each result's check mode, so a
    task the static reading did not foresee (here: none was read) is still caught."""
    settings = fleet(tmp_path, key, write_known_hosts(tmp_path / "known_hosts", [host]),
                     host.ip).settings
    probe = ansible.AnsibleProbe(Target("lab-fleet", "ansible", settings),
                                 StepContext.outside_a_run(120))
    docker_exec(host, "sh", "-c", f"rm -f {' '.join(REAL_FILES)}")
    result = probe.run(ansible.PlaybookParams(playbook="real-in-check.yml"), check=True)
    assert result["ok"] is False and result["changed"] is True
    assert sorted(t["where"].rsplit("/", 1)[1] for t in result["unexpected_real_tasks"]) == [
        "main.yml:2", "real-in-check-tasks.yml:2", "real-in-check.yml:12",
        "real-in-check.yml:22"]
    assert [c["task"] for c in result["changes"] if not c["real"]] == ["Would write the config"]


CHECKS_PLAYBOOK = """\
name: ansible-checks
summary: a check whose playbook has tasks that run for real, and a slow one
targets:
  fleet: {kind: ansible}
steps:
  - id: real
    run: ansible.check
    with: {playbook: real-in-check.yml, allow_real_tasks: [Record the run]}
  - id: slow
    run: ansible.check
    timeout: 3s
    with: {playbook: slow-check.yml}
"""


@pytest.mark.lab
def test_plan_shows_the_tasks_that_run_for_real_and_a_check_stops_at_its_step_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: CLI, key: ClientKey,
        host: SshdHost) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "ansible-checks.yaml").write_text(CHECKS_PLAYBOOK)
    known_hosts = write_known_hosts(tmp_path / "known_hosts", [host])
    (tmp_path / "inventory.yaml").write_text(json.dumps({"targets": {"lab-fleet": {
        "kind": "ansible", "playbook_dir": str(PLAYBOOK_DIR), "hosts": [host.ip],
        "user": USER, "key_file": str(key.path), "known_hosts": str(known_hosts)}}}))
    monkeypatch.setenv("RUNBOOK_PLAYBOOKS", str(tmp_path / "playbooks"))
    monkeypatch.setenv("RUNBOOK_INVENTORY", str(tmp_path / "inventory.yaml"))

    code, plan = cli("plan", "ansible-checks")
    assert code == 0, plan
    assert ("RUNS FOR REAL even in check mode: 'Record the run' "
            f"({PLAYBOOK_DIR / 'real-in-check.yml'}:12: check_mode: false); allowed by "
            "allow_real_tasks") in plan
    assert "'Touch from a block' (" in plan and "refused: not in allow_real_tasks" in plan

    _code, report = cli.json("run", "ansible-checks", "--no-input")
    steps = {s["id"]: s for s in report["steps"]}
    assert steps["real"]["status"] == "failed"
    assert "3 task(s) would run for real" in steps["real"]["error"]
    assert steps["slow"]["status"] == "timeout", steps["slow"]  # not the kind's 300 s
    # and nothing of the stopped check lives on: not ansible-playbook, nor a worker of it
    wait_for(lambda: not _processes_mentioning(str(tmp_path)),
             "the stopped check's processes to end", timeout=30)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:  # ended meanwhile
            continue
    return found


@pytest.mark.lab
def test_openssh_reads_only_the_target_ssh_config_and_never_one_that_runs_a_command(
        tmp_path: Path, key: ClientKey, host: SshdHost) -> None:
    known_hosts = write_known_hosts(tmp_path / "known_hosts", [host])
    config = tmp_path / "ssh_config"
    config.write_text(f"Host lab-alias\n  HostName {host.ip}\n")
    settings = {"playbook_dir": str(PLAYBOOK_DIR), "hosts": ["lab-alias"], "user": USER,
                "key_file": str(key.path), "known_hosts": str(known_hosts),
                "ssh_config": str(config), "connect_timeout": "5s"}
    known_hosts.write_text(known_hosts.read_text().replace(host.ip, f"{host.ip},lab-alias"))
    on = Target("lab-fleet", "ansible", ansible.AnsibleSettings.model_validate(settings))
    result = check(on, playbook="ensure-file.yml", extra_vars={"path": MARKER + ".4"})
    assert result["ok"] is True, result  # the alias came from that file

    ran = tmp_path / "ran"
    config.write_text(config.read_text() + f'Match exec "touch {ran}"\n')
    with pytest.raises(PermanentError, match=r"ssh_config:3: Match exec"):
        check(on, playbook="ensure-file.yml", extra_vars={"path": MARKER + ".4"})
    assert not ran.exists()


def test_one_jump_host_for_an_ansible_target() -> None:
    base = {"playbook_dir": str(PLAYBOOK_DIR), "hosts": ["a"]}
    assert ansible.AnsibleSettings.model_validate({**base, "jump": "ops@b:2200"}).jump
    for bad in ("b,c", "-oProxyCommand=x", "b c"):
        with pytest.raises(ValidationError):
            ansible.AnsibleSettings.model_validate({**base, "jump": bad})


# Without the lab: what is refused before ansible-playbook starts.


@pytest.mark.parametrize("name", ["/etc/ansible/site.yml", "../escape.yml", "a/../../b.yml", ""])
def test_a_playbook_path_outside_playbook_dir_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="inside playbook_dir"):
        ansible.PlaybookParams.model_validate({"playbook": name})


def test_a_symlink_out_of_playbook_dir_is_refused(tmp_path: Path) -> None:
    books = tmp_path / "books"
    books.mkdir()
    (tmp_path / "elsewhere.yml").write_text("- hosts: all\n")
    (books / "sneaky.yml").symlink_to(tmp_path / "elsewhere.yml")
    (books / "fine.yml").write_text("- hosts: all\n")
    settings = ansible.AnsibleSettings.model_validate({
        "playbook_dir": str(books), "inventory": str(tmp_path / "hosts.ini")})
    handle = ansible.AnsibleProbe(Target("t", "ansible", settings), StepContext.outside_a_run(10))
    with pytest.raises(PermanentError, match="leads out of"):
        handle.playbook_path("sneaky.yml")
    with pytest.raises(PermanentError, match="no playbook"):
        handle.playbook_path("missing.yml")
    assert handle.playbook_path("fine.yml") == (books / "fine.yml").resolve()


@pytest.mark.parametrize("fields, message", [
    ({}, "either `inventory`"),
    ({"inventory": "hosts.ini", "hosts": ["a"]}, "either `inventory`"),
    ({"hosts": ["a"], "key_file": "k", "key_env": "K"}, "not both"),
    ({"hosts": ["-oProxyCommand=x"]}, "not start with '-'"),
    ({"hosts": ["a"], "python_interpreter": "python3"}, "absolute path"),
])
def test_settings_are_validated(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ansible.AnsibleSettings.model_validate({"playbook_dir": "/srv", **fields})


@pytest.mark.parametrize("params", [
    {"playbook": "x.yml", "limit": "--become"},
    {"playbook": "x.yml", "tags": ["a b"]},
    {"playbook": "x.yml", "extra_vars": {"not a name": 1}},
])
def test_params_that_could_become_options_or_bad_vars_are_refused(
        params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ansible.PlaybookParams.model_validate(params)


def test_extra_vars_file_tags_every_string_unsafe() -> None:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!unsafe",
                           lambda loader, node: ("UNSAFE", loader.construct_scalar(node)))
    text = ansible.unsafe_yaml({"path": "/tmp/x", "n": 3, "on": True, "none": None,
                                "nested": {"k": ["{{ lookup('pipe', 'id') }}", 1.5]}})
    assert yaml.load(text, Loader=Loader) == {
        "path": ("UNSAFE", "/tmp/x"), "n": 3, "on": True, "none": None,
        "nested": {"k": [("UNSAFE", "{{ lookup('pipe', 'id') }}"), 1.5]}}


class _FailingRun(ansible.AnsibleAction):
    def apply(self, params: ansible.PlaybookParams) -> dict[str, Any]:
        return {"ok": False, "status": "failed", "rc": 2, "artifacts": "/runs/x",
                "failed_tasks": [{"host": "web-1", "task": "Restart", "msg": "boom"}],
                "unreachable": [{"host": "web-2", "msg": "no route"}]}


def test_a_real_run_that_fails_fails_the_remedy_and_says_where_to_look(tmp_path: Path) -> None:
    settings = ansible.AnsibleSettings.model_validate({
        "playbook_dir": str(tmp_path), "inventory": str(tmp_path / "hosts.ini")})
    action = _FailingRun(Target("t", "ansible", settings), StepContext.outside_a_run(10))
    with pytest.raises(PermanentError) as failed:
        ansible.run_playbook(action, ansible.PlaybookParams(playbook="site.yml"))
    message = str(failed.value)
    assert "web-1: Restart: boom" in message and "web-2: unreachable: no route" in message
    assert "(artifacts: /runs/x)" in message
