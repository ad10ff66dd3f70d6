"""The SSH backend's pure parts: argv quoting, fixed commands, max_errors, settings."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from diagnostics import ssh, sshconn
from runner.errors import PermanentError, PlaybookError
from runner.registry import Registry

HOSTILE = ["x; touch /tmp/pwned", "$(id)", "`id`", "a'b", 'a"b', "a b", "*", "~", "$HOME", "\\"]


@pytest.mark.parametrize("argv, line", [
    (["echo", "hello"], "echo hello"),
    (["touch", "/tmp/a file"], "touch '/tmp/a file'"),
    (["echo", "$(id)", "a;b"], "echo '$(id)' 'a;b'"),
    (["echo", "it's"], "echo 'it'\"'\"'s'"),
    (["printf", ""], "printf ''"),
])
def test_command_line_quotes_each_argument(argv: list[str], line: str) -> None:
    assert ssh.command_line(argv) == line


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_argument_stays_one_argument(value: str) -> None:
    line = ssh.command_line(["grep", "-e", value, "--", value])
    assert shlex.split(line) == ["grep", "-e", value, "--", value]
    for name, args in (("tail_grep", ("500", value, value)), ("newest", ("/srv", value)),
                       ("mtime", (value,)), ("pgrep", (value,))):
        argv = sshconn.FIXED[name](*args)
        assert shlex.split(ssh.command_line(argv)) == argv
        assert argv.count(value) == len([a for a in args if a == value])


def test_command_line_with_a_timeout_wraps_it_in_coreutils_timeout() -> None:
    line = ssh.command_line(["sleep", "30"], timeout=1.5)
    assert shlex.split(line) == ["timeout", "-k", "2", "1.500", "sleep", "30"]


def test_tail_grep_script_takes_its_parameters_as_positional_arguments() -> None:
    argv = sshconn.FIXED["tail_grep"]("500", "/var/log/x.log", "$(id)")
    assert argv[:3] == ["sh", "-c", sshconn._TAIL_GREP]
    assert argv[3:] == ["sh", "500", "/var/log/x.log", "$(id)"]
    assert "$(id)" not in sshconn._TAIL_GREP


def test_command_line_refuses_what_is_not_a_list_of_strings() -> None:
    with pytest.raises(PermanentError):
        ssh.command_line([])
    with pytest.raises(PermanentError):
        ssh.command_line(["echo", 1])  # type: ignore[list-item]


@pytest.mark.parametrize("value, parsed", [
    (0, 0), (2, 2), ("2", 2), (" 3 ", 3), ("25%", "25%"), ("0%", "0%"), ("100%", "100%"),
    ("007%", "7%"),
])
def test_max_errors_is_a_count_or_a_percent(value: Any, parsed: Any) -> None:
    assert ssh.parse_max_errors(value) == parsed
    assert ssh.FanOut(max_errors=value).max_errors == parsed


@pytest.mark.parametrize("value", [-1, "-1", "101%", "2.5", "25 %", "%", "", "many", True, None])
def test_max_errors_refuses_anything_else(value: Any) -> None:
    with pytest.raises(ValueError):
        ssh.parse_max_errors(value)
    with pytest.raises(ValidationError):
        ssh.FanOut(max_errors=value)


@pytest.mark.parametrize("max_errors, hosts, budget", [
    (0, 10, 0), (2, 10, 2), ("10%", 50, 5), ("40%", 10, 4), ("25%", 3, 0), ("34%", 3, 1),
    ("100%", 7, 7), ("0%", 7, 0),
])
def test_error_budget_rounds_a_percent_down_as_ssm_does(
        max_errors: int | str, hosts: int, budget: int) -> None:
    assert ssh.error_budget(max_errors, hosts) == budget


def test_defaults_probe_everything_but_stop_a_change_at_its_first_failure() -> None:
    assert ssh.FanOut().max_errors == "100%" and ssh.FanOut().max_concurrency == 10
    assert ssh.RemedyExecParams(argv=["true"]).max_errors == 0
    assert ssh.ExecParams(argv=["true"]).max_errors == "100%"


def test_settings_need_one_host_or_a_group() -> None:
    assert ssh.SshSettings(host="a").all_hosts == ["a"]
    assert ssh.SshSettings(hosts=["a", "b"]).all_hosts == ["a", "b"]
    settings = ssh.SshSettings(host="a")
    assert (settings.port, settings.max_output, settings.known_hosts) == (
        None, 1 << 20, "~/.ssh/known_hosts")
    for bad in ({}, {"host": "a", "hosts": ["b"]}, {"hosts": []}, {"hosts": ["a", "a"]},
                {"host": "-oProxyCommand=x"}, {"host": "a", "key_file": "k", "key_env": "K"},
                {"host": "a", "password": "x"}, {"host": "a", "port": 0}):
        with pytest.raises(ValidationError):
            ssh.SshSettings.model_validate(bad)


@pytest.mark.parametrize(("spec", "parsed"), [
    ("bastion", (None, "bastion", None)),
    ("ops@bastion.example.com:2200", ("ops", "bastion.example.com", 2200)),
    ("10.0.0.1:22", (None, "10.0.0.1", 22)),
    ("[2001:db8::1]:2222", (None, "2001:db8::1", 2222)),
    ("ops@[2001:db8::1]", ("ops", "2001:db8::1", None)),
])
def test_jump_specs_read_as_proxyjump_does(spec: str, parsed: tuple[Any, ...]) -> None:
    assert sshconn.parse_jump(spec) == parsed


@pytest.mark.parametrize("spec", ["ops@", "@host", "host:port", "a:b:c", "[::1", "a b",
                                  "-oProxyCommand=x"])
def test_a_bad_jump_spec_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="expected \\[user@\\]host\\[:port\\]"):
        sshconn.parse_jump(spec)


def test_jump_in_settings_is_a_comma_list_of_hosts_never_an_option() -> None:
    assert ssh.SshSettings(host="a", jump="b,ops@c:2200").jump == "b,ops@c:2200"
    assert ssh.SshSettings(host="a", jump="none").jump == "none"
    for bad in ("-J", "b,-oProxyCommand=x", "b c", "b,,c", ""):
        with pytest.raises(ValidationError):
            ssh.SshSettings(host="a", jump=bad)


def test_durations_in_settings() -> None:
    settings = ssh.SshSettings.model_validate({"host": "a", "connect_timeout": "500ms",
                                               "command_timeout": "2m"})
    assert (settings.connect_timeout, settings.command_timeout) == (0.5, 120.0)


def test_inventory_refuses_inline_keys(tmp_path: Path) -> None:
    from runner import inventory

    registry = Registry()
    ssh.register(registry)
    for field in ("private_key: '-----BEGIN OPENSSH PRIVATE KEY-----'", "password: hunter2",
                  "key: AAAA"):
        file = tmp_path / "inventory.yaml"
        file.write_text(f"targets:\n  box:\n    kind: ssh\n    host: h\n    {field}\n")
        with pytest.raises(PlaybookError):
            inventory.load([file], registry)


def test_path_and_name_parameters_cannot_be_options() -> None:
    with pytest.raises(ValidationError):
        ssh.LogTailParams(path="-n")
    with pytest.raises(ValidationError):
        ssh.FileAgeParams(path="/srv", glob="-delete")
    with pytest.raises(ValidationError):
        ssh.ServiceParams(unit="--all")
    with pytest.raises(ValidationError):
        ssh.ServiceParams(process="sync; reboot")
    with pytest.raises(ValidationError):
        ssh.ServiceParams()
    with pytest.raises(ValidationError):
        ssh.LogTailParams(path="/x", pattern="a\nb")
    with pytest.raises(ValidationError):
        ssh.ExecParams(argv=[])
    assert ssh.LogTailParams(path="/x", pattern="-v").pattern == "-v"  # after -e: a pattern


def test_parse_df() -> None:
    text = """Filesystem     1024-blocks      Used Available Capacity Mounted on
/dev/vda1        264212084 240000000  24212084      91% /
/dev/vdb1          1000000    100000    900000      10% /mnt/my data
"""
    parsed = ssh.parse_df(text, 90)
    assert [m["mount"] for m in parsed["mounts"]] == ["/", "/mnt/my data"]
    assert parsed["over_threshold"] == ["/"] and parsed["max_used_pct"] == 91
    assert parsed["mounts"][1]["avail_kb"] == 900000


def test_registration() -> None:
    registry = Registry()
    ssh.register(registry)
    kinds = {k.name: k for k in registry if k.target_kind == "ssh"}
    assert set(kinds) == {"ssh.top_processes", "ssh.disk_usage", "ssh.load",
                          "ssh.service_status", "ssh.log_tail", "ssh.file_age",
                          "ssh.exec_read_only", "ssh.exec"}
    assert [n for n, k in kinds.items() if k.mutating] == ["ssh.exec"]
    assert [n for n, k in kinds.items() if k.read_only_by_author] == ["ssh.exec_read_only"]
    assert all(issubclass(k.params, ssh.FanOut) for k in kinds.values())
    explain = kinds["ssh.exec"].explain
    assert explain is not None
    assert explain(ssh.RemedyExecParams(argv=["sync", "--force", "a b"])).startswith(
        "run `sync --force 'a b'`")


def test_probe_handles_run_only_fixed_commands() -> None:
    class NoHost:
        name = "h"

        def run(self, argv: list[str]) -> Any:
            raise AssertionError("nothing may run")

    fixed = ssh.FixedCommands(NoHost())  # type: ignore[arg-type]
    with pytest.raises(PermanentError, match="not one of the fixed commands"):
        fixed.run_fixed("rm", "-rf", "/")
    with pytest.raises(PermanentError, match="must be strings"):
        fixed.run_fixed("tail", 500, "/x")  # type: ignore[arg-type]
    assert not hasattr(fixed, "run")


FORGED = "sync-\n9999999999.0 10 .pgpass\n1 1 x.log"  # a name, one file


def test_newest_rows_take_a_newline_in_a_name_as_part_of_the_name_and_skip_it() -> None:
    stdout = (f"1700000000.5 120 sync-1.log\0"
              f"1700000100.0 7 {FORGED}\0"
              "1700000050.0 9 sync-2.log\0")
    rows, skipped = ssh.newest_rows(stdout, "logs", "sync-*.log")
    assert rows == [(1700000000.5, 120, "logs/sync-1.log"), (1700000050.0, 9, "logs/sync-2.log")]
    assert skipped == 1


@pytest.mark.parametrize("name", ["..", ".", "a/../../etc/passwd.log", "-rf.log", "other.txt",
                                  "", "sync-1.log\n"])
def test_newest_rows_skip_a_name_that_is_not_a_plain_match_in_the_directory(name: str) -> None:
    rows, skipped = ssh.newest_rows(f"1700000000.0 1 {name}\0", "/srv/sync", "*.log")
    assert (rows, skipped) == ([], 1)
