"""Finding, before running, the tasks of an Ansible playbook that run for real under
--check: every way a playbook can opt a task out, and what cannot be known beforehand."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from diagnostics.ansiblecheck import real_tasks

LAB = Path(__file__).resolve().parents[1] / "lab" / "ansible"


def found(tmp_path: Path, playbook: str, **files: str) -> list[tuple[str, str]]:
    """(task, why) for `playbook`, with other files beside it (roles__r__tasks__main_yml:
    roles/r/tasks/main.yml)."""
    for name, text in files.items():
        path = tmp_path / name.replace("__", "/").replace("_yml", ".yml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (tmp_path / "site.yml").write_text(textwrap.dedent(playbook))
    return [(t.name, t.why) for t in real_tasks(tmp_path / "site.yml", tmp_path)]


def test_the_lab_playbooks() -> None:
    real = real_tasks(LAB / "real-in-check.yml", LAB)
    assert [(t.name, t.where) for t in real] == [
        ("Stamp from a role", f"{LAB / 'roles/stamp/tasks/main.yml'}:2"),
        ("Record the run", f"{LAB / 'real-in-check.yml'}:12"),
        ("Touch from a block", f"{LAB / 'real-in-check.yml'}:22"),
        ("Touch from an include", f"{LAB / 'real-in-check-tasks.yml'}:2")]
    assert real_tasks(LAB / "ensure-file.yml", LAB) == []


@pytest.mark.parametrize("value", ["false", "no", "False", "'no'", "off", "'false'"])
def test_check_mode_false_in_any_spelling(tmp_path: Path, value: str) -> None:
    [(name, why)] = found(tmp_path, f"""
        - hosts: all
          tasks:
            - name: t
              command: "true"
              check_mode: {value}
        """)
    assert name == "t" and why in ("check_mode: false", f"check_mode: {value.strip(chr(39))}")


def test_play_level_opt_out_reaches_every_task_but_an_explicit_true(tmp_path: Path) -> None:
    assert found(tmp_path, """
        - hosts: all
          check_mode: false
          pre_tasks:
            - {name: early, command: "true"}
          tasks:
            - {name: forced check, command: "true", check_mode: true}
            - ansible.builtin.command: "true"
          handlers:
            - {name: handler, command: "true"}
        """) == [("early", "check_mode: false"), ("ansible.builtin.command", "check_mode: false"),
                 ("handler", "check_mode: false")]


def test_a_templated_check_mode_and_always_run_count(tmp_path: Path) -> None:
    assert found(tmp_path, """
        - hosts: all
          tasks:
            - {name: templated, command: "true", check_mode: "{{ really }}"}
            - {name: old style, command: "true", always_run: true}
            - {name: honest, command: "true"}
        """) == [("templated", "check_mode: {{ really }} (a template: may be false)"),
                 ("old style", "always_run: true")]


def test_nested_blocks_rescue_and_always_inherit(tmp_path: Path) -> None:
    assert [name for name, _ in found(tmp_path, """
        - hosts: all
          tasks:
            - check_mode: false
              block:
                - block:
                    - {name: inner, command: "true"}
              rescue:
                - {name: rescuer, command: "true"}
              always:
                - {name: finally, command: "true", check_mode: true}
        """)] == ["inner", "rescuer"]


def test_includes_roles_and_imported_playbooks_are_followed(tmp_path: Path) -> None:
    assert found(
        tmp_path, """
        - import_playbook: other.yml
        - hosts: all
          roles:
            - {role: outer, check_mode: false}
          tasks:
            - import_tasks: more.yml
            - include_role: {name: plain}
        """,
        other_yml="- hosts: all\n  tasks:\n    - {name: imported, command: x, check_mode: no}\n",
        more_yml="- {name: from more, command: x, check_mode: false}\n",
        roles__outer__tasks__main_yml="- {name: outer task, command: x}\n",
        roles__outer__meta__main_yml="dependencies: [dep]\n",
        roles__dep__tasks__main_yml="- {name: dep task, command: x}\n",
        roles__plain__tasks__main_yml="- {name: plain task, command: x}\n",
    ) == [("imported", "check_mode: false"), ("dep task", "check_mode: false"),
          ("outer task", "check_mode: false"), ("from more", "check_mode: false")]


def test_an_include_apply_and_a_role_tasks_from_are_followed(tmp_path: Path) -> None:
    assert found(
        tmp_path, """
        - hosts: all
          tasks:
            - include_tasks: {file: more.yml, apply: {check_mode: false}}
            - include_role: {name: r, tasks_from: other}
            - include_role: {name: r, tasks_from: "{{ which }}"}
        """,
        more_yml="- {name: applied, command: x}\n",
        roles__r__tasks__main_yml="- {name: main task, command: x}\n",
        roles__r__tasks__other_yml="- {name: other task, command: x, check_mode: false}\n",
    ) == [("applied", "check_mode: false"), ("other task", "check_mode: false"),
          ("include_role", "a role that cannot be read beforehand: r (tasks_from {{ which }})")]


def test_what_cannot_be_read_beforehand_counts_as_running_for_real(tmp_path: Path) -> None:
    assert found(tmp_path, """
        - hosts: all
          tasks:
            - {name: dynamic, include_tasks: "{{ which }}.yml"}
            - {name: missing, import_tasks: nowhere.yml}
            - {name: some role, include_role: {name: "{{ role }}"}}
        """) == [("dynamic", "tasks that cannot be read beforehand: {{ which }}.yml"),
                 ("missing", "tasks that cannot be read beforehand: nowhere.yml"),
                 ("some role", "a role that cannot be read beforehand: {{ role }}")]


def test_vault_and_unsafe_tags_do_not_stop_the_reading(tmp_path: Path) -> None:
    assert found(tmp_path, """
        - hosts: all
          vars:
            secret: !vault |
              $ANSIBLE_VAULT;1.1;AES256
              6162
            raw: !unsafe "{{ x }}"
          tasks:
            - {name: t, command: "true", check_mode: false}
        """) == [("t", "check_mode: false")]


def test_a_playbook_that_does_not_parse_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "site.yml").write_text("- hosts: [unclosed\n")
    with pytest.raises(ValueError, match=r"site\.yml"):
        real_tasks(tmp_path / "site.yml", tmp_path)
