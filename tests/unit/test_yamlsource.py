"""YAML sources: positions for file:line:col, and bounds an attacker's document cannot pass
(alias bombs, recursive aliases, deep nesting, huge text) in playbooks, inventories,
policies and daemon configs alike."""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner import yamlsource
from runner.errors import PlaybookError

ROOT = Path(__file__).resolve().parents[2]

# The classic "billion laughs": 9 levels of 10 aliases each, 10**9 strings once expanded.
BOMB = "\n".join(["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"] + [
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 10)}]"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)]) + "\n"


def test_the_bomb_is_small_and_refused_at_the_line_where_it_explodes() -> None:
    assert len(BOMB.encode()) < 600
    doc, problems = yamlsource.parse(BOMB, "bomb.yaml")
    assert doc.data is None
    [problem] = problems
    assert (problem.file, problem.line) == ("bomb.yaml", 5)  # e: 10**5 strings and lists
    assert "more than 100000 values" in problem.message


def test_a_document_just_within_the_bound_is_built() -> None:
    # 4 levels: d expands to 10**4 strings in 1111 lists
    text = "\n".join(BOMB.splitlines()[:4]) + "\n"
    doc, problems = yamlsource.parse(text, "ok.yaml")
    assert problems == []
    assert len(doc.data["d"]) == 10 and doc.data["d"][9][9][9] == ["lol"] * 10


def test_merge_keys_count_toward_the_bound() -> None:
    lines = ["m0: &m0 {" + ", ".join(f"k{i}: v" for i in range(10)) + "}"]
    lines += [f"m{n}: &m{n} {{<<: [{', '.join([f'*m{n - 1}'] * 10)}]}}" for n in range(1, 9)]
    doc, problems = yamlsource.parse("\n".join(lines) + "\n", "merge.yaml")
    assert doc.data is None
    assert [p.line for p in problems] and "more than 100000 values" in problems[0].message


def test_a_recursive_alias_is_refused() -> None:
    doc, problems = yamlsource.parse("a: 1\nb: &b [x, *b]\n", "loop.yaml")
    assert doc.data is None
    assert [(p.line, p.message) for p in problems] == [
        (2, "YAML: an alias refers to a node that contains it: refused")]


def test_nesting_is_bounded() -> None:
    text = "x: " + "[" * (yamlsource.MAX_DEPTH + 1) + "]" * (yamlsource.MAX_DEPTH + 1) + "\n"
    _, problems = yamlsource.parse(text, "deep.yaml")
    assert problems and f"nested more than {yamlsource.MAX_DEPTH} deep" in problems[0].message
    text = "x: " + "[" * 50 + "]" * 50 + "\n"
    assert yamlsource.parse(text, "fine.yaml")[1] == []


def test_huge_text_is_refused_before_parsing() -> None:
    _, problems = yamlsource.parse("#" * (yamlsource.MAX_CHARS + 1), "huge.yaml")
    assert [p.message for p in problems] == [
        f"larger than {yamlsource.MAX_CHARS} characters: refused"]


def _playbook(path: Path) -> Any:
    from runner.loader import load
    from runner.registry import default_registry

    return load(path, default_registry())


def _inventory(path: Path) -> Any:
    from runner import inventory
    from runner.registry import default_registry

    return inventory.load([path], default_registry())


def _daemon_config(path: Path) -> Any:
    from runner.daemon.config import load

    return load(path)


def _policy(path: Path) -> Any:
    from runner import policy

    return policy.read(path)


@pytest.mark.parametrize("read", [_playbook, _inventory, _daemon_config, _policy])
def test_every_yaml_runbook_reads_refuses_the_bomb_with_file_and_line(
        tmp_path: Path, read: Callable[[Path], Any]) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    with pytest.raises(PlaybookError) as caught:
        read(path)
    assert [(p.file, p.line) for p in caught.value.problems] == [(str(path), 5)]


def _limit_memory() -> None:
    # Should the bound ever break, fail with MemoryError instead of eating the machine.
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_runbook_validate_refuses_the_bomb_in_bounded_memory(tmp_path: Path) -> None:
    """The reported attack: `runbook validate` on a 518-byte document grew past 3 GB."""
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "bomb.yaml").write_text(BOMB)
    (tmp_path / "inventory.yaml").write_text("targets: {}\n")
    measure = ("import resource, sys\nfrom runner.cli import main\n"
               "code = main(['validate', '--playbooks', sys.argv[1], '--inventory', sys.argv[2]])\n"
               "print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    run = subprocess.run([sys.executable, "-c", measure, str(books),
                          str(tmp_path / "inventory.yaml")], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, preexec_fn=_limit_memory, check=False)
    code, peak_kib = map(int, run.stdout.split())
    assert code == 2, run.stderr
    assert f"{books / 'bomb.yaml'}:5:" in run.stderr
    assert peak_kib < 200 * 1024  # KiB on Linux: under 200 MB


def test_runbook_list_survives_a_bomb_in_a_playbooks_summary(tmp_path: Path) -> None:
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "bomb.yaml").write_text(BOMB + "summary: *i\n")
    run = subprocess.run([sys.executable, "-m", "runner", "list", "--playbooks", str(books)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         preexec_fn=_limit_memory, check=False)
    assert run.returncode == 0, run.stderr
    assert "bomb" in run.stdout and "does not parse" in run.stdout
