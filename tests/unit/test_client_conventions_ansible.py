"""The team's own Ansible: a target's `ansible_playbook` (or RUNBOOK_ANSIBLE_PLAYBOOK) is the
ansible-playbook that runs, not the one installed with runbook.

The "team's Ansible" here is a wrapper script that records its call, then execs the real
ansible-playbook of this venv; the playbook runs for real on localhost (connection: local).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from diagnostics import ansible
from diagnostics.ansible import AnsibleSettings, CheckParams
from runner.context import StepContext
from runner.errors import PermanentError
from runner.inventory import Target

REAL = Path(sys.executable).parent / "ansible-playbook"
PLAYBOOK = """\
- hosts: all
  connection: local
  gather_facts: false
  tasks:
    - name: say hello
      ansible.builtin.debug: {msg: hello}
"""


def _wrapper(where: Path, log: Path) -> Path:
    where.mkdir(parents=True)
    path = where / "team-ansible-playbook"
    path.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {log}\nexec {REAL} \"$@\"\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _target(tmp_path: Path, **fields: str) -> Target:
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir(exist_ok=True)
    (playbooks / "hello.yml").write_text(PLAYBOOK)
    known = tmp_path / "known_hosts"
    known.touch()
    settings = AnsibleSettings(playbook_dir=str(playbooks), hosts=["localhost"],
                               known_hosts=str(known), python_interpreter=sys.executable,
                               ssh_config=str(tmp_path / "no-ssh-config"), **fields)
    return Target("fleet", "ansible", settings)


def _check(target: Target, home: Path) -> dict[str, object]:
    with ansible.AnsibleConnector().probe(
            target, StepContext.outside_a_run(120, home=home)) as probe:
        return probe.check(CheckParams(playbook="hello.yml"))


def test_the_target_s_ansible_playbook_is_the_one_run(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    wrapper = _wrapper(tmp_path / "team" / "bin", log)
    result = _check(_target(tmp_path, ansible_playbook=str(wrapper)), tmp_path / "home")
    assert result["ok"] and result["status"] == "successful", result
    calls = log.read_text().splitlines()
    assert len(calls) == 1 and "--check --diff" in calls[0] and "hello.yml" in calls[0]


def test_the_environment_names_it_for_targets_that_do_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "calls.log"
    wrapper = _wrapper(tmp_path / "team" / "bin", log)
    # a command name, found on PATH
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RUNBOOK_ANSIBLE_PLAYBOOK", wrapper.name)
    assert _check(_target(tmp_path), tmp_path / "home")["ok"]
    assert len(log.read_text().splitlines()) == 1


def test_by_default_the_one_installed_with_runbook(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "calls.log"
    wrapper = _wrapper(tmp_path / "team" / "bin", log)
    # another ansible-playbook first on PATH is not taken
    (wrapper.parent / "ansible-playbook").symlink_to(wrapper)
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("RUNBOOK_ANSIBLE_PLAYBOOK", raising=False)
    assert _check(_target(tmp_path), tmp_path / "home")["ok"]
    assert not log.exists()


def test_one_that_is_not_there_is_said(tmp_path: Path) -> None:
    target = _target(tmp_path, ansible_playbook=str(tmp_path / "nowhere" / "ansible-playbook"))
    with pytest.raises(PermanentError, match=r"fleet: ansible_playbook '.*nowhere/ansible-"
                                             r"playbook': no executable file of that name$"):
        _check(target, tmp_path / "home")
    with pytest.raises(PermanentError, match="no executable file of that name on PATH"):
        _check(_target(tmp_path, ansible_playbook="no-such-ansible-here"), tmp_path / "home")


@pytest.mark.parametrize("value", ["bin/ansible-playbook", "", "./ansible-playbook"])
def test_a_relative_path_is_refused_in_the_inventory(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValidationError, match="absolute path"):
        _target(tmp_path, ansible_playbook=value)
