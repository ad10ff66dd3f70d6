"""Which tasks of an Ansible playbook run for real even under `--check`.

Check mode changes nothing, except in a task that opts out of it: `check_mode: false` (or
`no`) on the task, or on a block, role or play around it, or the old `always_run: true`.
`ansible.check` reads the playbook before running it and refuses such tasks unless its step
lists them by name in `allow_real_tasks`. The playbook is followed as far as it can be
without running anything: plays, blocks (block, rescue, always), pre_tasks, tasks,
post_tasks, handlers, roles (roles/NAME/tasks/main.yml or `tasks_from`, handlers, and their
meta dependencies), include/import of tasks, roles and playbooks named by a plain path, and
the `apply:` of an include. A `check_mode` whose
value is a template, and an include or role whose file cannot be found or is named by a
template, count as opting out: what they run cannot be known before the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_DEPTH = 20  # nested includes and roles before the rest is taken as unknown

_TASK_LISTS = ("pre_tasks", "tasks", "post_tasks", "handlers")
_BLOCK_LISTS = ("block", "rescue", "always")
_PREFIXES = ("ansible.builtin.", "ansible.legacy.")
_INCLUDE_TASKS = {"include_tasks", "import_tasks", "include"}
_INCLUDE_ROLE = {"include_role", "import_role"}
_INCLUDE_PLAYBOOK = {"import_playbook", "include_playbook"}
# Task keywords: the key that is none of these names the action (an unnamed task's name).
_KEYWORDS = {
    "name", "when", "tags", "vars", "register", "loop", "loop_control", "with_items",
    "become", "become_user", "become_method", "delegate_to", "delegate_facts", "run_once",
    "ignore_errors", "ignore_unreachable", "failed_when", "changed_when", "notify", "listen",
    "check_mode", "always_run", "diff", "environment", "args", "async", "poll", "retries",
    "until", "delay", "no_log", "any_errors_fatal", "throttle", "timeout", "module_defaults",
    "collections", "debugger", "connection", "remote_user", "port", "local_action", "action",
    "__line__"}


@dataclass(frozen=True)
class RealTask:
    """A task that runs for real in check mode, or one whose mode cannot be known."""

    name: str  # the task's name, else its action: what Ansible's events call it
    file: Path
    line: int
    why: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.name, "where": self.where, "why": self.why}


def real_tasks(playbook: Path, playbook_dir: Path) -> list[RealTask]:
    """Every task of `playbook` that opts out of check mode; `playbook_dir` is where its
    roles/ are looked for too. Raises ValueError when the playbook does not parse."""
    walk = _Walk(playbook_dir)
    walk.playbook(playbook, inherited=None, depth=0)
    return walk.found


def _opts_out(value: Any) -> tuple[bool | None, str | None]:
    """(runs for real?, why) for a `check_mode` value: None when it is not set."""
    if value is None:
        return None, None
    if isinstance(value, bool):
        return (not value), "check_mode: false" if not value else None
    text = str(value).strip().lower()
    if "{{" in text or "{%" in text:
        return True, f"check_mode: {value} (a template: may be false)"
    if text in ("no", "false", "off", "0", "n"):
        return True, f"check_mode: {value}"
    return False, None


def _action(task: dict[str, Any]) -> str:
    return next((str(k) for k in task if k not in _KEYWORDS), "task")


def _short(key: str) -> str:
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


class _Walk:
    def __init__(self, playbook_dir: Path) -> None:
        self.playbook_dir = playbook_dir
        self.found: list[RealTask] = []
        self._seen: set[tuple[Path, str | None]] = set()

    def _unknown(self, name: str, file: Path, line: int, why: str) -> None:
        self.found.append(RealTask(name, file, line, why))

    def playbook(self, path: Path, inherited: str | None, depth: int) -> None:
        plays = _load(path)
        if not isinstance(plays, list):
            raise ValueError(f"{path}: a playbook is a list of plays")
        for play in plays:
            if not isinstance(play, dict):
                continue
            line = int(play.get("__line__", 0))
            included = next((play[k] for k in play if _short(str(k)) in _INCLUDE_PLAYBOOK),
                            None)
            if included is not None:
                target = self._file(path.parent, included)
                if target is None or depth >= MAX_DEPTH:
                    self._unknown(str(play.get("name") or "import_playbook"), path, line,
                                  f"a playbook that cannot be read beforehand: {included}")
                else:
                    self.playbook(target, inherited, depth + 1)
                continue
            mode = self._mode(play, inherited)
            for role in play.get("roles") or []:
                self._role_entry(role, path, line, mode, depth)
            for section in _TASK_LISTS:
                self.tasks(play.get(section), path, mode, depth)

    def _mode(self, item: dict[str, Any], inherited: str | None) -> str | None:
        """The reason the item's tasks run for real (None: they honour check mode)."""
        real, why = _opts_out(item.get("check_mode"))
        if item.get("always_run") in (True, "yes", "true", "True"):
            return "always_run: true"
        if real is None:
            return inherited
        return why if real else None

    def tasks(self, tasks: Any, file: Path, inherited: str | None, depth: int) -> None:
        for task in tasks or []:
            if isinstance(task, dict):
                self.task(task, file, inherited, depth)

    def task(self, task: dict[str, Any], file: Path, inherited: str | None,
             depth: int) -> None:
        line = int(task.get("__line__", 0))
        mode = self._mode(task, inherited)
        if any(key in task for key in _BLOCK_LISTS):
            for key in _BLOCK_LISTS:
                self.tasks(task.get(key), file, mode, depth)
            return
        action = _action(task)
        name = str(task.get("name") or action)
        short = _short(action)
        argument = task.get(action)
        options = argument if isinstance(argument, dict) else {}
        # `apply:` sets keywords (check_mode among them) on every task it brings in.
        applied = options.get("apply")
        inner = self._mode(applied, mode) if isinstance(applied, dict) else mode
        if short in _INCLUDE_TASKS:
            wanted = options.get("file") if options else argument
            target = self._file(file.parent, wanted)
            if target is None or depth >= MAX_DEPTH:
                self._unknown(name, file, line, f"tasks that cannot be read beforehand: "
                                                f"{wanted}")
            else:
                self.tasks(_load(target), target, inner, depth + 1)
            return
        if short in _INCLUDE_ROLE:
            self._role(options.get("name"), file, line, name, inner, depth,
                       tasks_from=options.get("tasks_from") or "main")
            return
        if mode is not None:
            self.found.append(RealTask(name, file, line, mode))

    def _role_entry(self, role: Any, file: Path, line: int, inherited: str | None,
                    depth: int) -> None:
        if isinstance(role, dict):
            wanted = role.get("role") or role.get("name")
            mode = self._mode(role, inherited)
            self._role(wanted, file, int(role.get("__line__", line)), f"role {wanted}", mode,
                       depth)
        else:
            self._role(role, file, line, f"role {role}", inherited, depth)

    def _role(self, wanted: Any, file: Path, line: int, name: str, inherited: str | None,
              depth: int, tasks_from: Any = "main") -> None:
        directory = None
        if isinstance(wanted, str) and wanted and not _is_template(wanted):
            for base in (file.parent / "roles", self.playbook_dir / "roles", file.parent):
                if (base / wanted / "tasks").is_dir():
                    directory = base / wanted
                    break
        entry = _first(directory / "tasks", str(tasks_from)) \
            if directory is not None and not _is_template(tasks_from) else None
        if directory is None or entry is None or depth >= MAX_DEPTH:
            what = wanted if tasks_from == "main" else f"{wanted} (tasks_from {tasks_from})"
            self._unknown(name, file, line, f"a role that cannot be read beforehand: {what}")
            return
        key = (entry.resolve(), inherited)
        if key in self._seen:
            return
        self._seen.add(key)
        meta = _first(directory / "meta")
        loaded = _load(meta) if meta is not None else None
        if meta is not None and isinstance(loaded, dict):
            for dependency in loaded.get("dependencies") or []:
                self._role_entry(dependency, meta, 0, inherited, depth + 1)
        self.tasks(_load(entry), entry, inherited, depth + 1)
        handlers = _first(directory / "handlers")
        if handlers is not None:
            self.tasks(_load(handlers), handlers, inherited, depth + 1)

    def _file(self, base: Path, wanted: Any) -> Path | None:
        if not isinstance(wanted, str) or not wanted or _is_template(wanted):
            return None
        for candidate in (base / wanted, base.parent / wanted, self.playbook_dir / wanted):
            if candidate.is_file():
                return candidate
        return None


def _first(directory: Path, stem: str = "main") -> Path | None:
    """directory/stem.yml, .yaml or bare, whichever exists (none outside the directory)."""
    if "/" in stem or stem in ("", ".", ".."):
        return None
    return next((directory / n for n in (f"{stem}.yml", f"{stem}.yaml", stem)
                 if (directory / n).is_file()), None)


def _load(path: Path) -> Any:
    """The YAML of `path`, each mapping with its line as `__line__` (Ansible's tags such as
    !unsafe and !vault read as their plain values)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: Loader, node: Any) -> dict[str, Any]:
        value = {str(k): v for k, v in loader.construct_mapping(node, deep=True).items()}
        value["__line__"] = node.start_mark.line + 1
        return value

    def tagged(loader: Loader, suffix: str, node: Any) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return loader.construct_scalar(node)
        return None

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    Loader.add_multi_constructor("!", tagged)
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)  # a SafeLoader
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: {exc}") from None
