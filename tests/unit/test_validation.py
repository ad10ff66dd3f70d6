"""Loading and validating playbooks and inventories: every problem, at its file:line:col."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import diagnostics.postgres
from runner import inventory, loader
from runner.errors import PlaybookError, Problem
from runner.registry import Registry, default_registry
from tests.support import membackend

ROOT = Path(__file__).resolve().parents[2]

HEAD = """\
name: pb
summary: test
targets:
  db: {kind: postgres}
  box: {kind: mem}
"""


@pytest.fixture(scope="module")
def registry() -> Registry:
    registry = Registry()
    membackend.register(registry)
    diagnostics.postgres.register(registry)
    return registry


def playbook(body: str, head: str = HEAD) -> str:
    return head + textwrap.dedent(body)


def problems_of(text: str, registry: Registry) -> list[Problem]:
    with pytest.raises(PlaybookError) as caught:
        loader.parse(text, "pb.yaml", registry)
    return caught.value.problems


def at(text: str, needle: str) -> tuple[int, int]:
    """1-based (line, col) of the last occurrence of `needle` in `text`."""
    index = text.rindex(needle)
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


# One mistake each: (playbook body, where the problem must point, part of the message).
MISTAKES = {
    "unknown kind, did you mean": ("""
        steps:
          - id: usage
            run: postgres.conection_usage
        """, "postgres.conection_usage",
        "unknown step kind 'postgres.conection_usage' (did you mean postgres.connection_usage"),
    "unknown target role": ("""
        steps:
          - id: a
            run: postgres.ping
            target: dbx
        """, "dbx", "unknown target role 'dbx' (did you mean 'db'"),
    "unknown parameter, did you mean": ("""
        steps:
          - id: a
            run: postgres.connection_usage
            with: {limt: 37}
        """, "37", "postgres.connection_usage has no parameter 'limt' (did you mean 'limit'?)"),
    "needs an undefined step": ("""
        steps:
          - id: usage
            run: postgres.connection_usage
          - id: b
            run: postgres.ping
            needs: [usag]
        """, "usag]", "needs unknown step 'usag' (did you mean 'usage'?)"),
    "steps.nope in a step's with": ("""
        steps:
          - id: a
            run: mem.sleep
            with: {value: "{{ steps.nope.x }}"}
        """, '"{{ steps.nope.x }}"', "refers to unknown step steps.nope"),
    "steps.nope in a finding's when": ("""
        findings:
          - id: f
            when: steps.nope.count > 0
            say: hello
        """, "steps.nope.count > 0", "refers to unknown step steps.nope"),
    "steps.nope in a finding's say": ("""
        findings:
          - id: f
            when: "true"
            say: "{{ steps.nope.y }} found"
        """, '"{{ steps.nope.y }} found"', "refers to unknown step steps.nope"),
    "steps.nope in a remedy's with": ("""
        remedies:
          - id: r
            run: postgres.terminate_backends
            with: {backends: "{{ steps.nope.backends }}"}
        """, '"{{ steps.nope.backends }}"', "refers to unknown step steps.nope"),
    "params.nope in a remedy's when": ("""
        remedies:
          - id: r
            run: postgres.cancel_backends
            when: params.nope > 1
            with: {backends: []}
        """, "params.nope > 1", "refers to unknown param params.nope"),
    "unknown finding in a remedy's when": ("""
        findings:
          - {id: pool-full, when: "true", say: full}
        remedies:
          - id: r
            run: mem.act
            when: findings['pool-ful']
        """, "findings['pool-ful']",
        "refers to unknown finding findings['pool-ful'] (did you mean 'pool-full'?)"),
    "a finding in a step's when": ("""
        steps:
          - id: a
            run: mem.sleep
            when: findings['pool-full']
        findings:
          - {id: pool-full, when: "true", say: full}
        """, "findings['pool-full']\n", "findings are concluded after the steps, so only "
        "remedies and verify can use them"),
    "mutating kind under steps": ("""
        steps:
          - id: a
            run: mem.act
        """, "mem.act", "mem.act changes things: it can only be a remedy"),
    "mutating kind under verify": ("""
        verify:
          - run: postgres.terminate_backends
            with: {backends: []}
        """, "postgres.terminate_backends", "never under 'verify:'"),
    "read-only kind under remedies": ("""
        remedies:
          - id: r
            run: postgres.ping
        """, "postgres.ping", "postgres.ping is read-only: put it under 'steps:'"),
    "duplicate step id": ("""
        steps:
          - id: a
            run: postgres.ping
          - id: a
            run: postgres.connection_usage
        """, "a\n", "duplicate id 'a' in steps"),
    "duplicate finding id": ("""
        findings:
          - {id: f, when: "true", say: x}
          - {id: f, when: "false", say: y}
        """, "f, when: \"false\"", "duplicate id 'f' in findings"),
    "duplicate remedy id": ("""
        remedies:
          - {id: r, run: mem.act}
          - {id: r, run: mem.act, with: {items: [1]}}
        """, "r, run: mem.act, with", "duplicate id 'r' in remedies"),
    "bad duration": ("""
        steps:
          - id: a
            run: postgres.ping
            timeout: 5x
        """, "5x", "bad duration '5x'"),
    "unknown top-level field": ("""
        stepz: []
        """, "[]", "unknown field 'stepz'"),
    "unknown step field": ("""
        steps:
          - id: a
            run: postgres.ping
            retry: 3
        """, "3", "unknown field 'retry'"),
    "step without run": ("""
        steps:
          - id: a
            target: db
        """, "id: a", "missing field 'run'"),
    "finding without say": ("""
        findings:
          - id: f
            when: "true"
        """, "id: f", "missing field 'say'"),
    "expression syntax error": ("""
        steps:
          - id: a
            run: postgres.ping
            when: steps.a.x >
        """, "steps.a.x >", "expression 'steps.a.x >'"),
    "template syntax error": ("""
        findings:
          - id: f
            when: "true"
            say: "{{ oops"
        """, '"{{ oops"', "template '{{ oops'"),
    "needs cycle": ("""
        steps:
          - id: a
            run: postgres.ping
            needs: [b]
          - id: b
            run: postgres.ping
            needs: [a]
        """, "[a]", "cycle: a -> b -> a"),
    "postgres step on a mem role": ("""
        steps:
          - id: a
            run: postgres.ping
            target: box
        """, "box\n", "postgres.ping needs a 'postgres' target, but role 'box' is 'mem'"),
    "literal parameter of the wrong type": ("""
        steps:
          - id: a
            run: postgres.connection_usage
            with: {limit: lots}
        """, "lots", "limit: Input should be a valid integer"),
    "bad param default": ("""
        params:
          n: {type: int, default: many}
        """, "many", "param 'n': invalid literal for int()"),
    "missing required parameter": ("""
        remedies:
          - id: r
            run: postgres.cancel_backends
        """, "id: r", "postgres.cancel_backends needs parameter 'backends'"),
}


@pytest.mark.parametrize(("body", "needle", "fragment"), MISTAKES.values(), ids=MISTAKES.keys())
def test_each_mistake_is_reported_where_it_is(
        registry: Registry, body: str, needle: str, fragment: str) -> None:
    text = playbook(body)
    problems = problems_of(text, registry)
    assert len(problems) == 1, problems
    (problem,) = problems
    assert (problem.line, problem.col) == at(text, needle), problem
    assert fragment in problem.message
    assert str(problem) == f"pb.yaml:{problem.line}:{problem.col}: {problem.message}"


def test_a_missing_top_level_field_is_reported(registry: Registry) -> None:
    (problem,) = problems_of("name: pb\nsteps: []\n", registry)
    assert "missing field 'summary'" in problem.message
    assert (problem.line, problem.col) == (1, 1)


def test_the_name_must_match_the_file_name(registry: Registry) -> None:
    text = playbook("", head=HEAD.replace("name: pb", "name: other"))
    (problem,) = problems_of(text, registry)
    assert (problem.line, problem.col) == at(text, "other")
    assert "differs from the file name 'pb'" in problem.message


def test_a_yaml_syntax_error_points_at_the_bad_line(registry: Registry) -> None:
    text = playbook("""
        steps:
          - id: a
           run: postgres.ping
        """)
    (problem,) = problems_of(text, registry)
    assert (problem.line, problem.col) == at(text, "run: postgres.ping")
    assert problem.message.startswith("YAML syntax:")


def test_a_duplicate_mapping_key_is_refused(registry: Registry) -> None:
    text = playbook("""
        steps:
          - id: a
            run: postgres.ping
            run: postgres.connection_usage
        """)
    (problem,) = problems_of(text, registry)
    assert (problem.line, problem.col) == at(text, "run: postgres.connection_usage")
    assert problem.message == "duplicate key 'run'"


def test_a_templated_parameter_is_checked_at_run_time_not_load_time(registry: Registry) -> None:
    loaded = loader.parse(playbook("""
        params:
          n: {type: int, default: 3}
        steps:
          - id: a
            run: postgres.connection_usage
            with: {limit: "{{ params.n }}"}
        """), "pb.yaml", registry)
    assert loaded.playbook.steps[0].with_ == {"limit": "{{ params.n }}"}


def test_a_step_needs_a_target_when_two_roles_could_serve_it(registry: Registry) -> None:
    text = """\
name: pb
summary: test
targets:
  primary: {kind: postgres}
  replica: {kind: postgres}
steps:
  - id: a
    run: postgres.ping
"""
    (problem,) = problems_of(text, registry)
    assert (problem.line, problem.col) == at(text, "id: a")
    assert "roles primary, replica are all 'postgres'" in problem.message


def test_every_problem_is_reported_at_once_sorted_by_line(registry: Registry) -> None:
    text = playbook("""
        params:
          n: {type: int, default: many}
        remedies:
          - id: r
            run: postgres.ping
        findings:
          - {id: f, when: "steps.nope.x > 1", say: x}
        steps:
          - id: a
            run: postgres.conection_usage
          - id: a
            run: mem.act
            needs: [zz]
        """)
    with pytest.raises(PlaybookError) as caught:
        loader.parse(text, "pb.yaml", registry)
    error = caught.value
    assert [p.message.split(":")[0].split(" (")[0] for p in error.problems] == [
        "param 'n'",
        "postgres.ping is read-only",
        "refers to unknown step steps.nope",
        "unknown step kind 'postgres.conection_usage'",
        "duplicate id 'a' in steps",
        "mem.act changes things",
        "needs unknown step 'zz'",
    ]
    lines = [p.line for p in error.problems]
    assert lines == sorted(lines)
    assert lines[0] == at(text, "many")[0] and lines[-1] == at(text, "zz")[0]
    assert str(error).splitlines() == [str(p) for p in error.problems]


def test_shape_and_meaning_problems_are_reported_together(registry: Registry) -> None:
    """A malformed step does not hide the meaning problems of the others."""
    text = playbook("""
        steps:
          - id: a
            run: postgres.conection_usage
          - id: b
            run: postgres.ping
            timeout: 5x
        """)
    messages = [p.message for p in problems_of(text, registry)]
    assert any("bad duration" in m for m in messages)
    assert any("unknown step kind" in m for m in messages)


@pytest.mark.parametrize("field", ["needs: [a]", 'with: {value: "{{ steps.a.value }}"}'])
def test_a_step_cannot_depend_on_itself(registry: Registry, field: str) -> None:
    """A step that depends on itself is refused before anything runs."""
    text = playbook(f"""
        steps:
          - id: a
            run: mem.sleep
            {field}
        """)
    (problem,) = problems_of(text, registry)
    assert problem.line in {at(text, "id: a")[0], at(text, field)[0]}


# The shipped files


@pytest.mark.parametrize("path", sorted((ROOT / "playbooks").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_playbooks_load(path: Path) -> None:
    loaded = loader.load(path, default_registry())
    assert loaded.playbook.name == path.stem
    assert loaded.playbook.steps and (loaded.playbook.remedies or path.stem in TRIAGE)


# Triage playbooks only diagnose: each finding says what would fix it, for a person.
TRIAGE = {"postgres-health", "host-health", "container-triage", "k8s-workload-triage",
          "endpoint-health"}


def test_both_shipped_playbooks_are_there() -> None:
    names = {p.stem for p in (ROOT / "playbooks").glob("*.yaml")}
    assert {"db-pool-exhausted", "db-slow-or-blocked-queries"} <= names


def test_the_lab_inventory_loads() -> None:
    inv = inventory.load([ROOT / "inventory" / "lab.yaml"], default_registry())
    target = inv.get("lab-db")
    assert target.kind == "postgres"
    assert target.settings.dsn_env == "RUNBOOK_LAB_DSN"  # type: ignore[attr-defined]


# Inventories

INVENTORY_MISTAKES = {
    "inline password": ("password: hunter22", "hunter22", "'password_env: VAR'"),
    "password in a URL dsn": ("dsn: postgresql://app:hunter22@db/app", "postgresql://",
                              "name it with dsn_env"),
    "password in a conninfo dsn": ("dsn: host=db password=hunter22 dbname=app", "host=db",
                                   "name it with dsn_env"),
}


@pytest.mark.parametrize(("line", "needle", "fragment"), INVENTORY_MISTAKES.values(),
                         ids=INVENTORY_MISTAKES.keys())
def test_an_inventory_with_an_inline_secret_is_refused(
        tmp_path: Path, registry: Registry, line: str, needle: str, fragment: str) -> None:
    text = f"targets:\n  app-db:\n    kind: postgres\n    {line}\n"
    path = tmp_path / "inv.yaml"
    path.write_text(text)
    with pytest.raises(PlaybookError) as caught:
        inventory.load([path], registry)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.col) == (str(path), *at(text, needle))
    assert fragment in problem.message
    assert "hunter22" not in str(caught.value)


def test_an_inventory_target_of_unknown_kind_is_refused(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text("targets:\n  app-db:\n    kind: postgress\n    dsn_env: APP_DSN\n")
    with pytest.raises(PlaybookError) as caught:
        inventory.load([path], registry)
    (problem,) = caught.value.problems
    assert (problem.line, problem.col) == (3, 11)
    assert "no installed backend serves kind 'postgress'" in problem.message
