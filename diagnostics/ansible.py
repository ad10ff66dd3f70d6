"""A team's existing Ansible playbooks, run with ansible-runner and ansible-core.

    targets:
      web-fleet:
        kind: ansible
        playbook_dir: /srv/ops/ansible          # where the team's playbooks live
        inventory: /srv/ops/ansible/hosts.ini   # an Ansible inventory file, or instead:
        hosts: [10.0.0.5, 10.0.0.6]             # hosts to generate an inventory for
        user: ops
        key_file: ~/.ssh/runbook_ed25519        # or key_env: VAR holding the key; else the agent
        known_hosts: ~/.ssh/known_hosts
        jump: ops@bastion                       # optional: one bastion (ssh -W through it)
        ansible_playbook: /opt/ops/bin/ansible-playbook  # optional: the team's own Ansible

Kinds: `ansible.check` runs a playbook with `--check --diff`: in check mode Ansible reports
what it would change and changes nothing, except in tasks that opt out of check mode
(`check_mode: false` on a task, block, role or play). Those are found before the run
(`diagnostics.ansiblecheck`) and refused unless the step lists each by name in
`allow_real_tasks`; `runbook plan` shows them; a change one of them made is reported as a
change (`changed: true`, `real_changes`), not as one that would happen. A callback enabled
for checks records each result's check mode as well: a task that ran outside it without
being foreseen is named in `unexpected_real_tasks` and the result is not ok. So the step is
read-only on the word of whoever chose that playbook, and `plan` and `show` display that
mark. `ansible.run` runs it for real (mutating: only as an approved remedy). Both take
`playbook` (a file inside playbook_dir), `limit`, `tags` and `extra_vars`.

What is enforced:
* The playbook is a file inside `playbook_dir`: an absolute path, `..` or a symlink that
  leads out of it is refused.
* `extra_vars` go to ansible-playbook in a file (`-e @env/extravars`: JSON's syntax, read
  as YAML), never pasted into a command line, and every string in them is tagged `!unsafe`,
  so Ansible never templates them: a value taken from a diagnosis cannot smuggle a
  `{{ lookup('pipe', ...) }}` in. `limit` and `tags` are single arguments that cannot be
  read as options.
* OpenSSH reads one config file, `ssh_config` (~/.ssh/config by default; with `-F`, not the
  system's), and not at all when it asks to run a local command (`Match exec`,
  `ProxyCommand`, ...: see `diagnostics.sshconfig`).
* Host keys are checked (ansible-runner turns checking off unless told otherwise): OpenSSH
  with StrictHostKeyChecking=yes against `known_hosts` alone; an unknown or changed key
  makes the host unreachable, it is never added. Through a `jump` host, the same options
  check the bastion's key too.
* The Python on the hosts is set (`python_interpreter`, /usr/bin/python3 by default):
  interpreter discovery is not trusted to find the right one.
* ansible-playbook gets a clean environment (PATH, HOME, locale and Ansible's own
  settings), not runbook's: the DSNs and keys in runbook's environment never reach it or
  the artifacts. A key from `key_env` is written to a 0600 file for the run and removed
  after; its text is registered as a secret. Known secrets are masked in the artifacts.
* The whole run has a timeout (ansible-runner's `timeout`: the step's `timeout:`, else the
  kind's, and never more than the target's); the engine's cancel stops ansible-playbook
  within about a second.

Every run gets a private data directory `RUNBOOK_HOME/ansible/<ident>/` (ident: UTC time,
check|run, random), with ansible-runner's artifacts in `artifacts/<ident>/`: `job_events/`
(one JSON file per event), `status`, `rc`, `stdout`, `stderr`, `command`. The result's
`artifacts` field names that directory, so a run's evidence file points at it.

Result: `status` (successful, failed, timeout, canceled), `rc`, `check_mode`, `hosts`
({host: {ok, changed, failed, unreachable, skipped, rescued, ignored}}), `changes` (tasks
that changed, or in check mode would change: [{host, task, action, diff, real}]),
`real_tasks` and `real_changes` (what ran and changed for real in check mode), `failed_tasks`
([{host, task, action, msg}]), `unreachable` ([{host, msg}]), `events` (a compact list:
[{event, host, task, status}]), counts, and `artifacts`. A check whose hosts fail or cannot
be reached is a result (the finding), not an error; a run that does not succeed fails the
remedy, its message naming what failed and where the artifacts are.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from runner.context import StepContext
from runner.errors import PermanentError, StepTimeout
from runner.model import Duration
from runner.redact import SECRETS
from runner.registry import Backend, Registry, StepKind, Target

from .ansiblecheck import RealTask, real_tasks
from .sshconfig import refuse_local_commands
from .sshconn import Argument, JumpHosts, parse_jump

KIND = "ansible"
MAX_EVENTS = 500  # compact events kept in a result; the artifacts hold them all
DIFF_CHARS = 2000
MESSAGE_CHARS = 500

# What ansible-playbook inherits of runbook's environment; everything else (DSNs, keys,
# tokens) stays out of its environment and of the `command` artifact that records it.
_INHERITED = ("HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
              "SSH_AUTH_SOCK", "ORIGINAL_STDOUT_CALLBACK")
_SETTINGS_PREFIXES = ("ANSIBLE_", "AWX_", "RUNNER_")
ANSIBLE_PLAYBOOK_ENV = "RUNBOOK_ANSIBLE_PLAYBOOK"  # the team's own, when targets name none


# Inventory


def _one_line(value: str) -> str:
    if not value.strip() or value.startswith("-") or "\0" in value or "\n" in value:
        raise ValueError(f"{value!r} must be non-empty, one line, and not start with '-'")
    return value


OneLine = Annotated[str, AfterValidator(_one_line)]
TagName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$", max_length=128)]


class AnsibleSettings(BaseModel):
    """Where the playbooks are and which hosts they run on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    playbook_dir: str = Field(description="the directory of the team's Ansible playbooks")
    inventory: str | None = Field(None, description="an Ansible inventory file (or `hosts`)")
    hosts: list[Argument] | None = Field(None, min_length=1,
                                         description="hosts to generate an inventory for")
    port: int | None = Field(None, ge=1, le=65535, description="SSH port of `hosts`")
    user: str | None = Field(None, description="remote user; default: the inventory's")
    key_file: str | None = Field(None, description="path of the private key")
    key_env: str | None = Field(None, description="env var holding the private key text")
    known_hosts: str = Field("~/.ssh/known_hosts", description="the only host keys trusted")
    ssh_config: str = Field("~/.ssh/config", description="the only ssh config OpenSSH reads "
                            "(not the system's); refused if it would run a local command")
    jump: JumpHosts | None = Field(
        None, description="one bastion to go through, [user@]host[:port]; its host key is "
                          "checked against known_hosts too")
    python_interpreter: str = Field("/usr/bin/python3", description="Python on the hosts")
    ansible_playbook: str | None = Field(
        None, description="the team's own ansible-playbook (its Ansible, its collections): "
        "an absolute path or a command on PATH; default: RUNBOOK_ANSIBLE_PLAYBOOK, else the "
        "one installed with runbook")
    connect_timeout: Duration = Field(10.0, gt=0, le=300)
    timeout: Duration = Field(600.0, gt=0, le=86400, description="a whole run")
    forks: int = Field(5, ge=1, le=100, description="hosts at once")

    @field_validator("hosts")
    @classmethod
    def _distinct(cls, hosts: list[str] | None) -> list[str] | None:
        if hosts and len(set(hosts)) != len(hosts):
            raise ValueError("a host is listed twice")
        return hosts

    @field_validator("ansible_playbook")
    @classmethod
    def _path_or_command(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "\0" in value or
                                  ("/" in value and not value.startswith(("/", "~")))):
            raise ValueError("give an absolute path (or ~/...) or a command name on PATH")
        return value

    @field_validator("python_interpreter")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/") or any(c.isspace() for c in value):
            raise ValueError("give the interpreter's absolute path, e.g. /usr/bin/python3")
        return value

    @model_validator(mode="after")
    def _one_of_each(self) -> AnsibleSettings:
        if (self.inventory is None) == (self.hosts is None):
            raise ValueError("give either `inventory` (a file) or `hosts`")
        if self.key_file and self.key_env:
            raise ValueError("give either `key_file` or `key_env`, not both")
        if self.jump and "," in self.jump:
            raise ValueError("one jump host for an Ansible target (the ssh backend takes "
                             "a chain)")
        return self


def _proxy_command(jump: str, ssh_args: list[str], key: str | None, timeout: float) -> str:
    """ssh -W through the bastion, with the same host key checking and key: OpenSSH's own
    ProxyJump would start that ssh without the options given on the command line."""
    user, host, port = parse_jump(jump)
    argv = ["ssh", *ssh_args, "-o", f"ConnectTimeout={max(1, int(timeout))}",
            *(["-i", key] if key else []), *(["-p", str(port)] if port else []),
            *(["-l", user] if user else []), "-W", "%h:%p", "--", host]
    return shlex.join(argv)


# Params


class PlaybookParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    playbook: str = Field(description="a playbook file inside the target's playbook_dir")
    limit: OneLine | None = Field(None, description="Ansible's --limit host pattern")
    tags: list[TagName] = Field(default_factory=list, description="run only these tags")
    extra_vars: dict[str, Any] = Field(default_factory=dict,
                                       description="variables, in a file, never templated")

    @field_validator("playbook")
    @classmethod
    def _relative(cls, value: str) -> str:
        path = Path(value)
        if not value or path.is_absolute() or ".." in path.parts or "\0" in value:
            raise ValueError("name a playbook file inside playbook_dir (no absolute path, "
                             "no '..')")
        return value

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_list(cls, value: Any) -> Any:
        if isinstance(value, str):  # "a,b" as Ansible writes them
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

    @field_validator("extra_vars")
    @classmethod
    def _json(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"extra_vars must be JSON: {exc}") from None
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not a valid Ansible variable name")
        return value


class CheckParams(PlaybookParams):
    allow_real_tasks: list[str] = Field(
        default_factory=list, description="tasks that run for real even in check mode "
        "(check_mode: false), by name, that this check may run: any other is refused")


# Running a playbook


# ansible-runner's events do not say whether a task ran in check mode: this callback, enabled
# for checks only, records it for every task result (a task's check_mode, inherited from its
# block and play: True under --check unless the playbook opted it out).
CHECK_MODE_CALLBACK = "runbook_check_mode"
_CHECK_MODE_PLUGIN = """\
import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "runbook_check_mode"
    CALLBACK_NEEDS_ENABLED = True

    def v2_runner_on_ok(self, result):
        task = result._task
        line = {"task_path": task.get_path(), "task": task.get_name(),
                "host": result._host.get_name(), "check_mode": task.check_mode,
                "changed": bool(result._result.get("changed"))}
        with open(os.environ["RUNBOOK_CHECK_MODE_LOG"], "a", encoding="utf-8") as out:
            out.write(json.dumps(line, default=str) + "\\n")
"""


class _Playbooks:
    """Runs the target's playbooks; `cancel()` (from the engine's thread) stops a run."""

    def __init__(self, target: Target, ctx: StepContext) -> None:
        settings = target.settings
        assert isinstance(settings, AnsibleSettings)
        self.target, self.settings = target.name, settings
        # The step's own `timeout:` (ctx), capped by the target's.
        self.timeout = max(1, int(min(settings.timeout, ctx.timeout)))
        self.home = ctx.home
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    def playbook_path(self, name: str) -> Path:
        directory = Path(self.settings.playbook_dir).expanduser().resolve()
        if not directory.is_dir():
            raise PermanentError(f"{self.target}: playbook_dir {directory} is not a directory")
        path = (directory / name).resolve()
        if not path.is_relative_to(directory):
            raise PermanentError(f"{self.target}: playbook {name!r} leads out of {directory}")
        if not path.is_file():
            raise PermanentError(f"{self.target}: no playbook {name!r} in {directory}")
        return path

    def _known_hosts(self) -> Path:
        path = Path(self.settings.known_hosts).expanduser()
        if not path.is_file():
            raise PermanentError(f"{self.target}: known_hosts {path} does not exist: no host "
                                 "key could be checked")
        return path

    @contextmanager
    def _key_file(self) -> Iterator[str | None]:
        """The private key's path for the run: key_file, or key_env's text in a 0600 file
        removed afterwards; None: the SSH agent (or the inventory's own settings)."""
        settings = self.settings
        if settings.key_file:
            path = Path(settings.key_file).expanduser()
            if not path.is_file():
                raise PermanentError(f"{self.target}: key_file {path} does not exist")
            yield str(path)
            return
        if not settings.key_env:
            yield None
            return
        text = os.environ.get(settings.key_env, "")
        if not text.strip():
            raise PermanentError(f"{settings.key_env} is not set: it holds {self.target}'s "
                                 "private key")
        SECRETS.register(text.strip())
        for line in text.splitlines():
            if not line.startswith("-----"):
                SECRETS.register(line.strip())
        fd, name = tempfile.mkstemp(prefix="runbook-ansible-key-")  # mode 0600
        try:
            with os.fdopen(fd, "w") as out:
                out.write(text if text.endswith("\n") else text + "\n")
            yield name
        finally:
            Path(name).unlink(missing_ok=True)

    def _inventory(self, private: Path) -> str:
        settings = self.settings
        if settings.inventory is not None:
            path = Path(settings.inventory).expanduser()
            if not path.exists():
                raise PermanentError(f"{self.target}: inventory {path} does not exist")
            return str(path.resolve())
        variables: dict[str, Any] = {"ansible_python_interpreter": settings.python_interpreter}
        if settings.user:
            variables["ansible_user"] = settings.user
        if settings.port:
            variables["ansible_port"] = settings.port
        inventory = {"all": {"hosts": {host: {} for host in settings.hosts or []},
                             "vars": variables}}
        path = private / "inventory" / "hosts.json"
        path.parent.mkdir(mode=0o700)
        path.write_text(json.dumps(inventory, indent=2) + "\n")
        return str(path)

    def _ssh_config(self) -> str:
        """The one config file OpenSSH reads (-F: not /etc/ssh's either), after making sure
        it runs no local command (Match exec, ProxyCommand, ...): none, /dev/null."""
        path = Path(self.settings.ssh_config).expanduser()
        if not path.is_file():
            return os.devnull
        refuse_local_commands(self.target, path)
        return str(path)

    def _environment(self, private: Path, key: str | None, known_hosts: Path) -> dict[str, str]:
        settings = self.settings
        ssh_args = ["-F", self._ssh_config(),
                    "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "BatchMode=yes",
                    "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
                    "-o", "GlobalKnownHostsFile=/dev/null"]
        if settings.jump and settings.jump.lower() != "none":
            ssh_args += ["-o", "ProxyCommand=" + _proxy_command(settings.jump, ssh_args, key,
                                                                settings.connect_timeout)]
        env = {
            # The ansible-playbook asked for, else the one installed beside this Python, not
            # another one on PATH.
            "PATH": os.pathsep.join([*self._chosen_ansible(private), sysconfig.get_path("scripts"),
                                     os.environ.get("PATH", "")]),
            "LANG": os.environ.get("LANG") or "C.UTF-8",
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_SSH_ARGS": shlex.join(ssh_args),
            "ANSIBLE_TIMEOUT": str(max(1, int(settings.connect_timeout))),
            # Hosts of an inventory file that name no interpreter get this one too.
            "ANSIBLE_PYTHON_INTERPRETER": settings.python_interpreter,
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_LOCAL_TEMP": str(private / "tmp"),
            "ANSIBLE_NOCOLOR": "True",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
        }
        if settings.user:
            env["ANSIBLE_REMOTE_USER"] = settings.user
        if key:
            env["ANSIBLE_PRIVATE_KEY_FILE"] = key
        return env

    def _chosen_ansible(self, private: Path) -> list[str]:
        """PATH's first entries for the ansible-playbook asked for (the target's
        `ansible_playbook`, else RUNBOOK_ANSIBLE_PLAYBOOK): a link of that name to it in the
        run's private bin/ (ansible-runner runs `ansible-playbook` found on PATH), then its
        own directory (its ansible-galaxy, ansible-config). None asked for: none."""
        chosen = self.settings.ansible_playbook or os.environ.get(ANSIBLE_PLAYBOOK_ENV)
        if not chosen:
            return []
        found = shutil.which(os.path.expanduser(chosen))
        if found is None:
            where = "" if "/" in chosen else " on PATH"
            raise PermanentError(f"{self.target}: ansible_playbook {chosen!r}: no executable "
                                 f"file of that name{where}")
        program = Path(found).absolute()
        links = private / "bin"
        links.mkdir(mode=0o700)
        (links / "ansible-playbook").symlink_to(program)
        return [str(links), str(program.parent)]

    def real_tasks(self, playbook: Path) -> list[RealTask]:
        """The playbook's tasks that run for real in check mode (see ansiblecheck)."""
        directory = Path(self.settings.playbook_dir).expanduser().resolve()
        try:
            return real_tasks(playbook, directory)
        except ValueError as exc:
            raise PermanentError(f"{self.target}: cannot read the playbook to see which "
                                 f"tasks run for real: {exc}") from None

    def run(self, params: PlaybookParams, *, check: bool,
            real: Sequence[RealTask] = ()) -> dict[str, Any]:
        import ansible_runner

        playbook = self.playbook_path(params.playbook)
        known_hosts = self._known_hosts()
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        ident = f"{stamp}-{'check' if check else 'run'}-{os.urandom(3).hex()}"
        private = self.home / "ansible" / ident
        private.mkdir(parents=True, mode=0o700)
        collector = _Events(real)
        started = time.monotonic()
        if params.extra_vars:
            (private / "env").mkdir(mode=0o700)
            (private / "env" / "extravars").write_text(unsafe_yaml(params.extra_vars) + "\n")
        check_log = private / "check_mode.jsonl"
        with self._key_file() as key:
            envvars = self._environment(private, key, known_hosts)
            envvars[RUN_MARKER] = ident  # every process of this run inherits it
            if check:
                plugins = private / "callback_plugins"
                plugins.mkdir(mode=0o700)
                (plugins / f"{CHECK_MODE_CALLBACK}.py").write_text(_CHECK_MODE_PLUGIN)
                envvars.update(ANSIBLE_CALLBACK_PLUGINS=str(plugins),
                               ANSIBLE_CALLBACKS_ENABLED=CHECK_MODE_CALLBACK,
                               RUNBOOK_CHECK_MODE_LOG=str(check_log))
            runner = ansible_runner.interface.init_runner(
                private_data_dir=str(private), ident=ident, project_dir=str(playbook.parent),
                playbook=str(playbook), inventory=self._inventory(private),
                limit=params.limit, tags=",".join(params.tags) or None,
                cmdline="--check --diff" if check else None,
                forks=self.settings.forks, timeout=self.timeout, quiet=True,
                envvars=envvars, settings={"pexpect_timeout": 1, "suppress_ansible_output": True},
                event_handler=collector.add, cancel_callback=self._cancelled.is_set)
            # ansible-runner appended its own callback directory to ours: keep both.
            plugins_path = runner.config.env.get("ANSIBLE_CALLBACK_PLUGINS")
            runner.config.env = _clean_environment(runner.config.env, envvars)
            if plugins_path:
                runner.config.env["ANSIBLE_CALLBACK_PLUGINS"] = plugins_path
            try:
                status, rc = runner.run()
            finally:
                _stop_leftovers(ident)
        artifacts = Path(runner.config.artifact_dir)
        _scrub_artifacts(artifacts)
        if check:
            collector.ran_for_real(_outside_check_mode(check_log))
        result = collector.summary(check)
        result["real_tasks"] = [task.as_dict() for task in real]
        result.update(status=status, rc=rc, check_mode=check, playbook=params.playbook,
                      limit=params.limit, tags=params.tags, artifacts=str(artifacts),
                      duration_ms=round((time.monotonic() - started) * 1000, 1))
        result["ok"] = status == "successful" and not result["failed_tasks"] \
            and not result["unreachable"] and not result["unexpected_real_tasks"]
        where = f"{self.target}: {params.playbook}"
        if status == "timeout" or self._cancelled.is_set():
            raise StepTimeout(f"{where}: ansible-playbook did not finish within "
                              f"{self.timeout}s; stopped (artifacts: {artifacts})")
        if collector.stats is None:  # it never ran a play: a syntax error, a bad option ...
            raise PermanentError(f"{where}: ansible-playbook exited {rc}: "
                                 f"{_last_error(artifacts)} (artifacts: {artifacts})")
        return result


def _outside_check_mode(log: Path) -> list[dict[str, Any]]:
    """The task results the check-mode callback saw run outside check mode."""
    try:
        lines = log.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    records = [json.loads(line) for line in lines if line.strip()]
    return [r for r in records if r.get("check_mode") is not True]


def unsafe_yaml(value: Any) -> str:
    """`value` as YAML (JSON's syntax) with every string tagged `!unsafe`: Ansible then
    never templates it. Extra vars are trusted by default, so a value that came from a
    diagnosis (a log line holding `{{ lookup('pipe', ...) }}`) would otherwise run on this
    machine when the playbook uses it."""
    if isinstance(value, str):
        return "!unsafe " + json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {unsafe_yaml(v)}"
                               for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(unsafe_yaml(v) for v in value) + "]"
    return json.dumps(value)


RUN_MARKER = "RUNBOOK_ANSIBLE_RUN"


def _stop_leftovers(ident: str) -> list[int]:
    """Kill whatever process of run `ident` is still alive once ansible-runner returned.

    On a timeout or cancel ansible-runner kills ansible-playbook's process group, but a
    worker in a session of its own survives it (seen: `pause` workers of a stopped check
    still alive an hour later). Every process of the run carries RUN_MARKER=ident in its
    environment, which no other process has."""
    needle = b"\0" + f"{RUN_MARKER}={ident}".encode() + b"\0"
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = b"\0" + (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if needle in environ:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
    return killed


def _clean_environment(env: dict[str, str], ours: dict[str, str]) -> dict[str, str]:
    """ansible-runner starts from a copy of os.environ: keep only what ansible-playbook
    needs, Ansible's and ansible-runner's settings, and ours (which win)."""
    kept = {k: v for k, v in env.items()
            if k in _INHERITED or k.startswith(_SETTINGS_PREFIXES)}
    return {**kept, **ours}


def _scrub_artifacts(directory: Path) -> None:
    """Mask known secrets in the text artifacts (stdout, stderr, command, events)."""
    files = [directory / name for name in ("stdout", "stderr", "command")]
    files += sorted((directory / "job_events").glob("*.json"))
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        scrubbed = SECRETS.scrub(text)
        if scrubbed != text:
            file.write_text(scrubbed, encoding="utf-8")


def _last_error(artifacts: Path) -> str:
    lines: list[str] = []
    for name in ("stdout", "stderr"):
        try:
            lines += (artifacts / name).read_text(errors="replace").splitlines()
        except OSError:
            continue
    said = [ln.strip() for ln in lines if ln.strip()]
    errors = [ln for ln in said if ln.startswith(("ERROR", "[ERROR]"))]
    return str(SECRETS.scrub((errors or said or ["no output"])[-1][:MESSAGE_CHARS]))


# Events


_STATUS = {"runner_on_ok": "ok", "runner_on_failed": "failed", "runner_on_skipped": "skipped",
           "runner_on_unreachable": "unreachable", "runner_item_on_ok": "ok",
           "runner_item_on_failed": "failed", "runner_item_on_skipped": "skipped",
           "runner_on_async_failed": "failed", "runner_on_async_ok": "ok"}


class _Events:
    """Collects ansible-runner's events as they come (its event_handler)."""

    def __init__(self, real: Sequence[RealTask] = ()) -> None:
        # Tasks known to run for real in check mode: by where they are (Ansible's
        # task_path, "file:line"), else by name.
        self._real_at = {(str(t.file.resolve()), t.line) for t in real}
        self._real_names = {t.name for t in real}
        self.events: list[dict[str, Any]] = []
        self.dropped = 0
        self.changes: list[dict[str, Any]] = []
        self.failed: list[dict[str, Any]] = []
        self.unreachable: list[dict[str, Any]] = []
        self.stats: dict[str, Any] | None = None
        self.unexpected: list[dict[str, Any]] = []  # ran outside check mode, not foreseen
        self._lock = threading.Lock()

    def add(self, event: dict[str, Any]) -> bool:
        name = str(event.get("event", ""))
        data = event.get("event_data") or {}
        with self._lock:
            if name == "playbook_on_stats":
                self.stats = data
            status = _STATUS.get(name)
            if status is None:
                return True  # kept in the artifacts all the same
            res = data.get("res") or {}
            if status == "ok" and res.get("changed"):
                status = "changed"
            if status == "failed" and data.get("ignore_errors"):
                status = "ignored"
            compact = {"event": name, "host": data.get("host"), "task": data.get("task"),
                       "status": status}
            if len(self.events) < MAX_EVENTS:
                self.events.append(compact)
            else:
                self.dropped += 1
            where = {"host": data.get("host"), "task": data.get("task"),
                     "action": data.get("task_action")}
            if name == "runner_on_ok" and status == "changed":
                self.changes.append({**where, "diff": _diff(res.get("diff")),
                                     "real": self._is_real(data),
                                     "task_path": data.get("task_path")})
            elif name == "runner_on_failed" and status == "failed":
                self.failed.append({**where, "msg": _message(res)})
            elif name == "runner_on_unreachable":
                self.unreachable.append({"host": data.get("host"), "msg": _message(res)})
        return True

    def ran_for_real(self, records: list[dict[str, Any]]) -> None:
        """What the check-mode callback saw run outside check mode: a change it made is a
        real one, and a task not known beforehand to opt out is named as unexpected."""
        with self._lock:
            for record in records:
                key = (record.get("host"), record.get("task_path"))
                for change in self.changes:
                    if (change["host"], change["task_path"]) == key:
                        change["real"] = True
                known = self._is_real({"task_path": record.get("task_path"),
                                       "task": record.get("task")})
                task = {"host": record.get("host"), "task": record.get("task"),
                        "where": record.get("task_path"), "changed": record.get("changed")}
                if not known and task not in self.unexpected:
                    self.unexpected.append(task)

    def _is_real(self, data: dict[str, Any]) -> bool:
        file, _, line = str(data.get("task_path") or "").rpartition(":")
        if file and line.isdigit():
            return (str(Path(file).resolve()), int(line)) in self._real_at
        return data.get("task") in self._real_names

    def summary(self, check: bool) -> dict[str, Any]:
        stats = self.stats or {}
        columns = {"ok": "ok", "changed": "changed", "failed": "failures",
                   "unreachable": "dark", "skipped": "skipped", "rescued": "rescued",
                   "ignored": "ignored"}
        names = sorted({h for key in columns.values() for h in stats.get(key) or {}}
                       | {h for h in (stats.get("processed") or {})})
        hosts = {h: {col: int((stats.get(key) or {}).get(h, 0)) for col, key in columns.items()}
                 for h in names}
        return {
            "hosts": hosts,
            "changes": self.changes,
            "changed_count": len(self.changes),
            # In check mode a change by a task that opted out of it happened all the same.
            "would_change": check and any(not c["real"] for c in self.changes),
            "changed": any(c["real"] or not check for c in self.changes),
            "real_changes": [c for c in self.changes if c["real"] or not check],
            "unexpected_real_tasks": self.unexpected,
            "failed_tasks": self.failed,
            "failed_hosts": sorted(h for h, s in hosts.items() if s["failed"]),
            "unreachable": self.unreachable,
            "unreachable_hosts": sorted(h for h, s in hosts.items() if s["unreachable"]),
            "events": self.events,
            "events_dropped": self.dropped,
        }


def _message(res: dict[str, Any]) -> str:
    parts = [str(res.get(key) or "").strip() for key in ("msg", "stderr", "module_stderr")]
    text = " ".join(next((p for p in parts if p), "").split())
    if len(text) > MESSAGE_CHARS:  # ssh's verdict comes last, after its banner
        text = f"{text[:MESSAGE_CHARS // 2]} … {text[-MESSAGE_CHARS // 2:]}"
    return str(SECRETS.scrub(text))


def _diff(diff: Any) -> str | None:
    """Ansible's diff ({before, after, before_header, after_header}, or a list of them) as
    unified-diff text, cut at DIFF_CHARS."""
    import difflib

    if not diff:
        return None
    parts: list[str] = []
    for item in diff if isinstance(diff, list) else [diff]:
        if not isinstance(item, dict):
            continue
        if "prepared" in item:
            parts.append(str(item["prepared"]))
            continue
        before, after = item.get("before"), item.get("after")
        if isinstance(before, str) and isinstance(after, str):
            parts.extend(difflib.unified_diff(
                before.splitlines(keepends=True), after.splitlines(keepends=True),
                str(item.get("before_header", "before")), str(item.get("after_header", "after"))))
        elif before is not None or after is not None:
            parts.append(f"{item.get('before_header', 'before')}: {before!r} -> {after!r}\n")
    text = "".join(parts)
    return str(SECRETS.scrub(text[:DIFF_CHARS])) if text else None


# Handles and the connector


class AnsibleProbe(_Playbooks):
    """What a probe gets: playbooks in check mode only."""

    def check(self, params: CheckParams) -> dict[str, Any]:
        """The playbook with --check, after making sure that every task that would run for
        real anyway is one the step allows by name."""
        real = self.real_tasks(self.playbook_path(params.playbook))
        refused = [task for task in real if task.name not in params.allow_real_tasks]
        if refused:
            listed = "; ".join(f"{t.name!r} ({t.where}: {t.why})" for t in refused)
            raise PermanentError(
                f"{self.target}: {params.playbook}: {len(refused)} task(s) would run for real "
                f"even in check mode: {listed}. ansible.check refuses them; a step that "
                "means it lists each by name in allow_real_tasks")
        return self.run(params, check=True, real=real)


class AnsibleAction(_Playbooks):
    """What a remedy gets, only through the gate: playbooks run for real."""

    def apply(self, params: PlaybookParams) -> dict[str, Any]:
        return self.run(params, check=False)


class AnsibleConnector:
    def prepare(self) -> None:
        from runner.extras import client_of

        with client_of("ansible", "the ansible backend"):
            import ansible_runner  # noqa: F401 - imported before the steps' clocks start

    def extras(self, target: Target) -> list[str]:
        return ["ansible"]  # ansible-runner, and ansible-core (runner.extras)

    def plan_notes(self, target: Target, kind: str, given: dict[str, Any]) -> list[str]:
        """For `runbook plan`: the tasks of an ansible.check's playbook that run for real
        even in check mode, and whether the step allows each."""
        if kind != "ansible.check" or not isinstance(given.get("playbook"), str):
            return []
        allowed = given.get("allow_real_tasks") or []
        probe = AnsibleProbe(target, StepContext.outside_a_run(1.0))
        try:
            real = probe.real_tasks(probe.playbook_path(given["playbook"]))
        except PermanentError as exc:
            return [f"cannot tell which tasks run for real: {exc}"]
        return [f"RUNS FOR REAL even in check mode: {t.name!r} ({t.where}: {t.why}); "
                + ("allowed by allow_real_tasks" if t.name in allowed
                   else "refused: not in allow_real_tasks") for t in real]

    @contextmanager
    def probe(self, target: Target, ctx: StepContext) -> Iterator[AnsibleProbe]:
        handle = AnsibleProbe(target, ctx)
        try:
            yield handle
        finally:
            handle.cancel()

    def identity(self, target: Target, timeout: float) -> dict[str, str]:
        """The playbook directory and inventory, by path and content hash: an approval of
        `ansible.run` binds to the playbooks (roles included) and hosts as they were shown."""
        settings = target.settings
        assert isinstance(settings, AnsibleSettings)
        playbooks = Path(settings.playbook_dir).expanduser().resolve()
        identity = {"playbook_dir": str(playbooks), "playbook_dir_sha256": _tree_hash(playbooks)}
        if settings.inventory:
            inventory = Path(settings.inventory).expanduser().resolve()
            identity["inventory"] = str(inventory)
            identity["inventory_sha256"] = _tree_hash(inventory)
        else:
            identity["hosts"] = ",".join(settings.hosts or [])
        return identity

    @contextmanager
    def action(self, target: Target, ctx: StepContext) -> Iterator[AnsibleAction]:
        handle = AnsibleAction(target, ctx)
        try:
            yield handle
        finally:
            handle.cancel()


def _tree_hash(root: Path) -> str:
    """SHA-256 over a file, or over every file under a folder (relative names and contents,
    in order; dot-folders such as .git left out)."""
    import hashlib

    digest = hashlib.sha256()
    if root.is_file():
        digest.update(root.read_bytes())
        return digest.hexdigest()
    if not root.is_dir():
        return "missing"
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


# The step kinds


def check_playbook(probe: AnsibleProbe, params: CheckParams) -> dict[str, Any]:
    return probe.check(params)


def run_playbook(action: AnsibleAction, params: PlaybookParams) -> dict[str, Any]:
    result = action.apply(params)
    if result["ok"]:
        return result
    said = [f"{f['host']}: {f['task']}: {f['msg']}" for f in result["failed_tasks"][:5]]
    said += [f"{u['host']}: unreachable: {u['msg']}" for u in result["unreachable"][:5]]
    raise PermanentError(f"{params.playbook}: {result['status']} (rc {result['rc']}): "
                         f"{'; '.join(said) or 'see the artifacts'} "
                         f"(artifacts: {result['artifacts']})")


def _explain(params: PlaybookParams) -> str:
    scope = f" on {params.limit}" if params.limit else ""
    tags = f", tags {','.join(params.tags)}" if params.tags else ""
    extra = f", extra_vars {sorted(params.extra_vars)}" if params.extra_vars else ""
    return f"run the Ansible playbook {params.playbook} for real{scope}{tags}{extra}"


_RESULT = {
    "ok": "the run succeeded, no task failed, every host was reached",
    "status / rc": "ansible-runner's status (successful, failed, timeout) and exit code",
    "hosts": "{host: {ok, changed, failed, unreachable, skipped, rescued, ignored}}",
    "changes": "[{host, task, action, diff}] changed (in check mode: would change)",
    "changed_count / would_change / changed": "how many; check mode; changed for real "
    "(a real run, or in check mode a task that opted out of it)",
    "real_tasks": "[{task, where, why}] tasks that run for real even in check mode",
    "real_changes": "[{host, task, action, diff}] what really changed",
    "unexpected_real_tasks": "[{host, task, where, changed}] ran outside check mode though "
    "not foreseen (then ok is false)",
    "failed_tasks": "[{host, task, action, msg}]", "unreachable": "[{host, msg}]",
    "failed_hosts / unreachable_hosts": "host names",
    "events": "[{event, host, task, status}], at most 500", "artifacts": "ansible-runner's "
    "artifact directory: job_events/, status, rc, stdout",
}


def register(registry: Registry) -> None:
    registry.add_backend(Backend(KIND, AnsibleConnector(), AnsibleSettings,
                                 "existing Ansible playbooks (ansible-runner, ansible-core)"))
    registry.add(StepKind(
        "ansible.check", KIND, check_playbook, CheckParams, False,
        "run an Ansible playbook in check mode (--check --diff): what it would change",
        _RESULT, timeout=300.0,
        # Check mode changes nothing, but a task marked `check_mode: false` runs for real.
        read_only_by_author=True))
    registry.add(StepKind(
        "ansible.run", KIND, run_playbook, PlaybookParams, True,
        "run an Ansible playbook for real", _RESULT, timeout=900.0, explain=_explain))
