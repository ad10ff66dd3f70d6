"""An ssh config that asks to run a command on this machine is refused before paramiko looks
anything up in it: paramiko's lookup itself runs `Match exec` (through invoke)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from diagnostics import sshconfig, sshconn
from runner.errors import PermanentError
from runner.inventory import Target


def open_probe(config: Path, host: str = "box") -> None:
    settings = sshconn.SshSettings.model_validate({"host": host, "ssh_config": str(config)})
    with sshconn.SshConnector().probe(Target("t", "ssh", settings), 5):
        pass


def test_paramiko_alone_would_run_match_exec(tmp_path: Path) -> None:
    """The attack is real: what the guard stands in front of. (In a child process: invoke
    reads stdin, which pytest holds.)"""
    ran = tmp_path / "ran"
    config = tmp_path / "ssh_config"
    config.write_text(f'Match exec "touch {ran}"\n  User x\n')
    lookup = f"import paramiko; paramiko.SSHConfig.from_path({str(config)!r}).lookup('box')"
    subprocess.run([sys.executable, "-c", lookup], stdin=subprocess.DEVNULL, check=True,
                   capture_output=True)
    assert ran.exists()


# (the config's text, files beside it) - {ran} is the file the command would create.
ASKING = {
    "match exec": ('Host box\n  HostName 10.0.0.1\nMatch exec "touch {ran}"\n  User x\n', {}),
    "match !exec after host": ('Match host box !exec "touch {ran}"\n  Port 2\n', {}),
    "match = exec, upper case": ('MATCH = EXEC "touch {ran}"\n', {}),
    "through Include": ("Include extra.conf\nHost box\n  User x\n",
                        {"extra.conf": 'Match exec "touch {ran}"\n'}),
    "through a nested Include glob": ("Include conf.d/*.conf\n",
                                      {"conf.d/a.conf": "Include ../deeper\n",
                                       "deeper": 'Match all exec "touch {ran}"\n'}),
    "proxycommand": ("Host box\n  ProxyCommand sh -c 'touch {ran}'\n", {}),
    "knownhostscommand": ("Host *\n  KnownHostsCommand /usr/bin/touch {ran}\n", {}),
    "localcommand permitted elsewhere": ("Include permit\nHost box\n  LocalCommand touch {ran}\n",
                                         {"permit": "PermitLocalCommand yes\n"}),
}


@pytest.mark.parametrize("name", ASKING)
def test_a_config_that_runs_a_local_command_is_refused_and_nothing_runs(
        tmp_path: Path, name: str) -> None:
    text, others = ASKING[name]
    ran = tmp_path / "ran"
    config = tmp_path / "ssh_config"
    config.write_text(text.format(ran=ran))
    for relative, content in others.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(content.format(ran=ran))
    with pytest.raises(PermanentError, match=r"refusing the ssh config .* asks to run a "
                                             r"command on this machine \(.*:\d+: "):
        open_probe(config)
    assert not ran.exists()


@pytest.mark.parametrize("text", [
    "Host box\n  HostName 10.0.0.1\n  ProxyJump bastion\n",
    "Host box\n  ProxyCommand none\n",
    "Match host exec\n  User x\n",  # a host named "exec"
    "Host box\n  LocalCommand echo hi\n",  # inert without PermitLocalCommand
    "Host box\n  PermitLocalCommand no\n  LocalCommand echo hi\n",
])
def test_a_config_that_runs_nothing_locally_is_read(tmp_path: Path, text: str) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(text)
    assert sshconfig.local_commands(config) == []
    open_probe(config)


def test_each_directive_is_named_with_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "extra").write_text("# comment\n\nMatch exec true\n")
    config = tmp_path / "ssh_config"
    config.write_text("Include extra\nHost a\n  ProxyCommand nc %h %p\n")
    assert [str(found) for found in sshconfig.local_commands(config)] == [
        f"{tmp_path / 'extra'}:3: Match exec", f"{config}:3: ProxyCommand"]


def test_an_include_loop_ends(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Include ssh_config\nHost a\n  User x\n")
    assert sshconfig.local_commands(config) == []
