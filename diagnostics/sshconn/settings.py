"""What the inventory says about SSH hosts, and the validated values ssh settings and step
params share: one-argv-element arguments, unit and process names, ProxyJump lists, and a
fan-out's error budget."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from runner.model import Duration

KIND = "ssh"


def _argument(value: str) -> str:
    """A path or name that becomes one argv element: never an option, never two lines."""
    if not value or value.startswith("-") or "\0" in value or "\n" in value:
        raise ValueError(f"{value!r} must be non-empty, one line, and not start with '-'")
    return value


Argument = Annotated[str, AfterValidator(_argument)]


# systemd units and process names (pgrep -x): letters, digits and @ . _ : + \ -
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.@:+\\][A-Za-z0-9_.@:+\\-]*$", max_length=255)]


_JUMP = re.compile(r"\[(?P<v6>[^]]+)\](?::(?P<p6>\d+))?|(?P<host>[^:\[\]\s]+)(?::(?P<port>\d+))?")


def parse_jump(spec: str) -> tuple[str | None, str, int | None]:
    """ProxyJump's `[user@]host[:port]` (an IPv6 address in brackets) as (user, host, port);
    ValueError when it is not one."""
    user, at, rest = spec.strip().rpartition("@")
    match = _JUMP.fullmatch(rest)
    if not match or rest.startswith("-") or (at and not user):
        raise ValueError(f"jump host {spec!r}: expected [user@]host[:port]")
    port = match["p6"] or match["port"]
    return user or None, match["v6"] or match["host"], int(port) if port else None


def _jump_hosts(value: str) -> str:
    if value.lower() != "none":
        for spec in value.split(","):
            parse_jump(spec)
    return value


# Bastions as ProxyJump lists them: `[user@]host[:port]`, comma-separated, or `none`.
JumpHosts = Annotated[str, AfterValidator(_jump_hosts)]


def parse_max_errors(value: Any) -> int | str:
    """A count (2, "2") or a percent of the hosts ("25%"); returns 2 or "25%"."""
    match = re.fullmatch(r"(\d+)(%?)", str(value).strip())
    if isinstance(value, bool) or not match or (match[2] and int(match[1]) > 100):
        raise ValueError('max_errors is a count (2) or a percent of the hosts ("25%")')
    return f"{int(match[1])}%" if match[2] else int(match[1])


def error_budget(max_errors: int | str, hosts: int) -> int:
    """How many hosts may fail before the rest are not started; a percent rounds down, as
    SSM's does (10% of 50 hosts: the sixth failure stops it)."""
    if isinstance(max_errors, str):
        return hosts * int(max_errors.rstrip("%")) // 100
    return max_errors


MaxErrors = Annotated[int | str, BeforeValidator(parse_max_errors)]


class SshSettings(BaseModel):
    """One host or a group; keys only from a file, an env var or the agent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: Argument | None = Field(None, description="a host name, address or ~/.ssh/config alias")
    hosts: list[Argument] | None = Field(None, min_length=1, description="a group of hosts")
    port: int | None = Field(None, ge=1, le=65535, description="default: ~/.ssh/config, else 22")
    user: str | None = Field(None, description="default: ~/.ssh/config's User, else yours")
    key_file: str | None = Field(None, description="path of the private key")
    key_env: str | None = Field(None, description="env var holding the private key text")
    passphrase_env: str | None = Field(None, description="env var holding the key's passphrase")
    known_hosts: str = "~/.ssh/known_hosts"
    ssh_config: str = Field("~/.ssh/config",
                            description="for aliases, port, user, IdentityFile, ProxyJump")
    jump: JumpHosts | None = Field(
        None, description="bastions to go through, as ssh's ProxyJump: [user@]host[:port], "
                    "comma-separated; default: ~/.ssh/config's ProxyJump; `none` for none")
    connect_timeout: Duration = 5.0
    command_timeout: Duration = Field(20.0, le=86400)
    max_output: int = Field(1 << 20, ge=1, description="bytes kept of stdout and of stderr")

    @field_validator("hosts")
    @classmethod
    def _distinct(cls, hosts: list[str] | None) -> list[str] | None:
        if hosts and len(set(hosts)) != len(hosts):
            raise ValueError("a host is listed twice")
        return hosts

    @model_validator(mode="after")
    def _one_of_each(self) -> SshSettings:
        if (self.host is None) == (self.hosts is None):
            raise ValueError("give either `host` or `hosts`")
        if self.key_file and self.key_env:
            raise ValueError("give either `key_file` or `key_env`, not both")
        return self

    @property
    def all_hosts(self) -> list[str]:
        return [self.host] if self.host else list(self.hosts or [])
