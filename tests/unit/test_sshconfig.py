"""An ssh config that asks to run a command on this machine is refused before paramiko looks
anything up in it: paramiko's lookup itself runs `Match exec` (through invoke)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from diagnostics import sshconfig, sshconn
from runner.context import StepContext
from runner.errors import PermanentError
from runner.inventory import Target


def open_probe(config: Path, host: str = "box") -> None:
    settings = sshconn.SshSettings.model_validate({"host": host, "ssh_config": str(config)})
    with sshconn.SshConnector().probe(Target("t", "ssh", settings), StepContext.outside_a_run(5)):
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


# Include and Match, as OpenSSH reads them (paramiko alone ignores Include)


def ssh_dir(home: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> Path:
    """~/.ssh under a test HOME, holding `files`; returns ~/.ssh/config."""
    monkeypatch.setenv("HOME", str(home))
    for relative, text in files.items():
        (home / ".ssh" / relative).parent.mkdir(parents=True, exist_ok=True)
        (home / ".ssh" / relative).write_text(text)
    return home / ".ssh" / "config"


def test_a_host_in_an_included_file_keeps_its_hostname_user_and_port(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = ssh_dir(tmp_path, monkeypatch, {
        "config": "Include config.d/*.conf\nHost *\n  User fallback\n",
        "config.d/10-db.conf": "Host db\n  HostName 10.0.0.5\n  User dba\n  Port 2222\n",
        "config.d/20-db.conf": "Host db\n  User second\n",  # later in glob order: loses
    })
    found = sshconfig.load("t", config).lookup("db")
    assert (found["hostname"], found["user"], found["port"]) == ("10.0.0.5", "dba", "2222")
    assert sshconfig.load("t", config).lookup("other")["user"] == "fallback"


def test_paramiko_alone_loses_the_included_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the expansion is for."""
    import paramiko

    config = ssh_dir(tmp_path, monkeypatch, {
        "config": "Include hosts\n", "hosts": "Host db\n  HostName 10.0.0.5\n"})
    assert paramiko.SSHConfig.from_path(str(config)).lookup("db")["hostname"] == "db"


def test_lines_after_an_include_stay_in_the_includers_block(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = ssh_dir(tmp_path, monkeypatch, {
        "config": "Host box\n  Include box.conf\n  Port 2200\n",
        "box.conf": "User boxer\nHost elsewhere\n  User e\n",
    })
    loaded = sshconfig.load("t", config)
    box, elsewhere = loaded.lookup("box"), loaded.lookup("elsewhere")
    assert (box["user"], box["port"]) == ("boxer", "2200")
    assert (elsewhere["user"], "port" in elsewhere) == ("e", False)


def test_a_relative_include_is_read_from_the_ssh_directory_not_beside_a_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ssh_dir(tmp_path / "home", monkeypatch, {"hosts": "Host db\n  HostName 10.0.0.5\n"})
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    (elsewhere / "hosts").write_text("Host db\n  HostName 10.9.9.9\n")  # OpenSSH skips it
    (elsewhere / "config").write_text("Include hosts\n")
    assert sshconfig.load("t", elsewhere / "config").lookup("db")["hostname"] == "10.0.0.5"


def test_an_included_file_that_runs_a_command_is_refused_with_its_file_and_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = ssh_dir(tmp_path, monkeypatch, {
        "config": "Include config.d/*\n",
        "config.d/a": "Host db\n  HostName 10.0.0.5\n\n  ProxyCommand nc %h %p\n"})
    with pytest.raises(PermanentError, match=r"config\.d/a:4: ProxyCommand"):
        sshconfig.load("t", config)


@pytest.mark.parametrize("text, host, user", [
    ("Match host db*\n  User m\nHost db1\n  HostName 10.0.0.1\n", "db1", "m"),
    ("Match host db*\n  User m\n", "web1", None),
    ("Match host !db1,db*\n  User m\n", "db1", None),
    ("Host db1\n  HostName 10.0.0.1\nMatch host 10.0.0.*\n  User by-address\n", "db1",
     "by-address"),  # Match host sees the HostName, as OpenSSH's does
    ("Host db1\n  HostName 10.0.0.1\nMatch originalhost db1\n  User by-name\n", "db1",
     "by-name"),
    ("Match all\n  User everyone\n", "x", "everyone"),
])
def test_match_host_works_as_in_openssh(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, host: str,
        user: str | None) -> None:
    config = ssh_dir(tmp_path, monkeypatch, {"config": text})
    assert sshconfig.load("t", config).lookup(host).get("user") == user
