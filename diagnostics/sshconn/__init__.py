"""Reaching hosts over SSH (paramiko), one concept per module:

- `settings`: what the inventory says (SshSettings) and the validated values settings and
  step params share (arguments, names, ProxyJump lists, error budgets);
- `commands`: the command line sshd is handed, the fixed commands a probe may run, results;
- `host`: one connection to one host running an argv within the target's limits;
- `keys`: the private key an inventory names; `hostkeys`: known_hosts and what an unknown
  or changed host key says; `failures`: connection errors as step errors;
- `hosts`: a target's hosts, routed through jump hosts, every hop's host key verified;
- `fanout`: the fan-out over a group, and the probe's and the remedy's handles;
- `connector`: the connector the registry serves ssh targets with.

See `diagnostics.ssh` for what is enforced and the step kinds built on this. The names below
are re-exported so that `diagnostics.sshconn.X` keeps working for its users.
"""

from __future__ import annotations

from .commands import (
    _TAIL_GREP,
    _UNIT_PROPERTIES,
    FIXED,
    KILL_GRACE,
    CommandFailed,
    CommandResult,
    FixedCommands,
    Limits,
    command_line,
)
from .connector import SshConnector
from .fanout import FanOut, SshAction, SshProbe, fan_out, run_argv
from .host import Endpoint, Host
from .hosts import MAX_JUMPS, Hosts
from .settings import (
    KIND,
    Argument,
    JumpHosts,
    MaxErrors,
    Name,
    SshSettings,
    error_budget,
    parse_jump,
    parse_max_errors,
)

__all__ = [
    "FIXED", "KILL_GRACE", "KIND", "MAX_JUMPS", "_TAIL_GREP", "_UNIT_PROPERTIES", "Argument",
    "CommandFailed", "CommandResult", "Endpoint", "FanOut", "FixedCommands", "Host", "Hosts",
    "JumpHosts", "Limits", "MaxErrors", "Name", "SshAction", "SshConnector", "SshProbe",
    "SshSettings", "command_line", "error_budget", "fan_out", "parse_jump", "parse_max_errors",
    "run_argv",
]
