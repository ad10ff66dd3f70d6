"""The safety core that scripts/mutation mutates, the tests it runs them against, and the
report.

    python scripts/mutation_core.py groups [MODULE...]          # the groups to run
    python scripts/mutation_core.py setup PYPROJECT GROUP [MODULE...]  # its files and tests
    python scripts/mutation_core.py names|seed|pending GROUP [MODULE...]  # mutant names
    python scripts/mutation_core.py deselect PYPROJECT TEST...  # leave tests out
    python scripts/mutation_core.py keep PREVIOUS PYPROJECT     # the last run's settings
    python scripts/mutation_core.py report [MODULE...]          # in .mutation/, afterwards

The core is named by function, not by file: in a backend only its read-only client is the
safety rule (the rest is diagnosis, tested against the lab). It comes in groups, each run
in its own copy of the tree (.mutation/GROUP/) against the unit tests of its modules: a
subset of the unit stage, so a mutant they kill the unit stage kills too (the score is a
lower bound), and a survivor costs seconds instead of the whole stage. The report counts a
mutant killed when a test failed, timed out or crashed, or the type checker refused it;
survived when the tests passed or none reaches it; a mutant that only changes the case of
SQL text is left out as equivalent, and listed. It exits 1 below TARGET.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TARGET = 0.90


@dataclass(frozen=True)
class Group:
    # module -> qualified names (fnmatch globs) of its safety-core functions; ("*",) is all
    modules: dict[str, tuple[str, ...]]
    tests: tuple[str, ...]


GROUPS: dict[str, Group] = {
    "approval": Group({
        "runner.gate": ("*",),
        "runner.approval": ("*",),
        "runner.policy": ("*",),
        # where approvals are kept
        "runner.journal": ("Journal.record_approval", "Journal.approvals"),
    }, ("tests/unit/test_gate.py", "tests/unit/test_gate_mutants.py",
        "tests/unit/test_approval.py", "tests/unit/test_approval_mutants.py",
        "tests/unit/test_policy.py")),
    "redaction": Group({
        "runner.redact": ("*",),
    }, ("tests/unit/test_redact.py", "tests/unit/test_redact_mutants.py")),
    # claim, leases, locks, attempts and the private file modes
    "journal": Group({
        "runner.journal": ("owner_alive", "_process_start", "this_process", "_private_dir",
                           "_open_private", "Journal.mark_interrupted",
                           "Journal._interrupt_if_dead", "Journal.claim", "Journal.owner",
                           "Journal._take_target", "Journal.lock_target",
                           "Journal.unlock_target", "Journal.target_lock",
                           "Journal.start_remedy", "Journal.attempt"),
    }, ("tests/unit/test_journal.py", "tests/unit/test_journal_mutants.py")),
    # timeouts (calls) and remedy scheduling (remedies: the deadline, the lock's release)
    "execution": Group({
        "runner.engine": ("Engine._proposal", "Engine._remedy", "Engine._run_remedy"),
        "runner.remedies": ("*",),
        "runner.calls": ("*",),
    }, ("tests/unit/test_engine.py", "tests/unit/test_engine_mutants.py",
        "tests/unit/test_gate.py", "tests/unit/test_approval.py", "tests/unit/test_options.py",
        "tests/unit/test_remedies.py", "tests/unit/test_remedies_mutants.py",
        "tests/unit/test_calls.py")),
    # matchers, routes and dedup: an alert joins its group's open run, or resolves it
    "routing": Group({
        "runner.daemon.matchers": ("*",),
        "runner.daemon.routing": ("*",),
        "runner.daemon.inbox": ("Inbox._dispatch_one", "Inbox._resolve",
                                "Inbox.claim_resolved_notice"),
    }, ("tests/unit/test_routing.py", "tests/unit/test_routing_matchers.py",
        "tests/unit/test_routing_mutants.py")),
    "guards": Group({
        "diagnostics.postgres_guard": ("*",),
        "diagnostics.request_guard": ("*",),
    }, ("tests/unit/test_postgres_guard.py", "tests/unit/test_postgres_guard_mutants.py",
        "tests/unit/test_request_guard.py", "tests/unit/test_request_guard_mutants.py")),
    # the read-only clients: where the request guard is installed
    "clients": Group({
        "diagnostics.kubernetes.client": ("_guard_rest_client", "_read_only_pool",
                                          "_api_client"),
        # _guard_websockets is left out: it patches the kubernetes library once per
        # process, before mutmut forks, so no mutant of it ever runs (the unit test of
        # websockets and the lab's test_kubernetes_safety.py prove it)
        "diagnostics.http": ("make_client", "_read_only_transports", "open_client",
                             "HttpProbe.*"),
    }, ("tests/unit/test_http.py", "tests/unit/test_http_mutants.py",
        "tests/unit/test_kubernetes_client.py")),
}
CORE = {module: funcs for group in GROUPS.values() for module, funcs in group.modules.items()}

_MUTANT = re.compile(r"^(?P<func>.+)__mutmut_\d+$")


def selected(modules: list[str], group: str | None = None) -> dict[str, tuple[str, ...]]:
    """The core (of `group`), or the part of it in `modules` (runner/gate.py, or dotted)."""
    core = GROUPS[group].modules if group else CORE
    if not modules:
        return core
    wanted = {m.removesuffix(".py").replace("/", ".") for m in modules}
    unknown = wanted - CORE.keys()
    if unknown:
        sys.exit(f"mutation: not in the safety core: {', '.join(sorted(unknown))} "
                 f"(the core: {', '.join(CORE)})")
    return {m: core[m] for m in core if m in wanted}


def groups(modules: list[str]) -> list[str]:
    return [name for name in GROUPS if selected(modules, name)]


def qualified(module: str, mutant: str) -> str:
    """`runner.gate.xǁGateǁexecute__mutmut_3` -> `Gate.execute`."""
    match = _MUTANT.match(mutant.removeprefix(module + "."))
    assert match, mutant
    func = match["func"]
    return func.removeprefix("x_") if func.startswith("x_") else ".".join(func.split("ǁ")[1:])


def names(group: str, modules: list[str]) -> list[str]:
    """Globs of the mutants to run. Whole modules as `module.*`; functions by name."""
    globs = []
    for module, funcs in selected(modules, group).items():
        if funcs == ("*",):
            globs.append(f"{module}.*")
            continue
        for func in funcs:
            cls, _, name = func.rpartition(".")
            mangled = f"xǁ{cls}ǁ{name}" if cls else f"x_{name}"
            globs.append(f"{module}.{mangled}__mutmut_*")
    return globs


def setup(pyproject: Path, group: str, modules: list[str]) -> None:
    """Point a copy's mutmut config at the group: only_mutate its files (mutmut mutates
    every file listed before it runs any mutant, and the big ones take minutes), and its
    tests, or MUTATION_TESTS (a quick look while writing tests)."""
    files = [f"{m.replace('.', '/')}.py" for m in selected(modules, group)]
    tests = os.environ.get("MUTATION_TESTS", "").split() or list(GROUPS[group].tests)
    text = pyproject.read_text()
    text, files_set = re.subn(r"(?ms)^only_mutate = \[.*?^\]",
                              f"only_mutate = {json.dumps(files)}", text)
    text, tests_set = re.subn(r"(?m)^pytest_add_cli_args_test_selection = .*$",
                              f"pytest_add_cli_args_test_selection = {json.dumps(tests)}", text)
    assert files_set == tests_set == 1, f"no [tool.mutmut] to set up in {pyproject}"
    pyproject.write_text(text)


def keep(previous: Path, pyproject: Path) -> None:
    """Put `previous`'s [tool.mutmut] table (the last run's settings) into `pyproject`."""
    table = re.compile(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[)")
    found = table.search(previous.read_text())
    assert found, f"no [tool.mutmut] in {previous}"
    new, count = table.subn(lambda _: found[0], pyproject.read_text())
    assert count == 1, f"no [tool.mutmut] in {pyproject}"
    pyproject.write_text(new)


def deselect(pyproject: Path, tests: list[str]) -> None:
    """Leave `tests` out (a test failing for reasons of its own would stop mutmut before it
    starts); scripts/mutation then says the score is not the unit stage's."""
    text = pyproject.read_text()
    extra = "".join(f', "--deselect", {json.dumps(t)}' for t in tests)
    new, count = re.subn(r"(?m)^(pytest_add_cli_args = \[.*)\]$", lambda m: m[1] + extra + "]",
                         text)
    assert count == 1, f"no pytest_add_cli_args in {pyproject}"
    pyproject.write_text(new)


# A crash (mutmut says "segfault": the test process died) is a failed test run too.
# SQL in this code base is written in capitals: a line of it has one of these words.
_SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|FROM|WHERE|VALUES|AND|OR|SET|ORDER BY|"
                  r"GROUP BY|JOIN|INTO|LIMIT)\b")


def sql_case_only(diff: list[str]) -> bool:
    """Whether a mutant only changes the case of SQL text outside its quoted literals:
    equivalent, since SQLite reads keywords and names without regard to case."""
    removed = [line[1:] for line in diff if line.startswith("-")]
    added = [line[1:] for line in diff if line.startswith("+")]
    return (bool(removed) and len(removed) == len(added)
            and all(a != b and a.lower() == b.lower() and _SQL.search(a)
                    and re.findall(r"'[^']*'", a) == re.findall(r"'[^']*'", b)
                    for a, b in zip(removed, added, strict=True)))


KILLED = frozenset({"killed", "timeout", "caught by type check", "segfault"})


def core_mutants(group: str, modules: list[str], unmatched: list[str] | None = None
                 ) -> Iterator[tuple[str, str, str, str]]:
    """(module, mutant, status, source path) of every mutant of the group's core in
    `modules`, as mutmut last recorded them (under mutants/ of the current directory, the
    group's copy); the core's names without a mutant go to `unmatched`."""
    from mutmut.stats import status_by_exit_code

    for module, funcs in selected(modules, group).items():
        meta = Path("mutants", *module.split(".")).with_suffix(".py.meta")
        if not meta.exists():
            if unmatched is not None:
                unmatched.append(f"{module} (no results)")
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        path = str(meta.with_suffix("").relative_to("mutants"))
        seen = set()
        for mutant, code in sorted(codes.items(), key=lambda kv: _natural(kv[0])):
            func = qualified(module, mutant)
            pattern = next((f for f in funcs if fnmatch.fnmatchcase(func, f)), None)
            if pattern is not None:
                seen.add(pattern)
                yield module, mutant, status_by_exit_code[code], path
        if unmatched is not None:
            unmatched += [f"{module}.{f}" for f in funcs if f not in seen]


def seed(group: str, modules: list[str]) -> list[str]:
    """A few mutants (the first of each function of the group's first module): what an
    --update runs first, so that mutmut brings its mutants and results up to date."""
    return [f"{next(iter(selected(modules, group)))}.*__mutmut_1"]


def pending(group: str, modules: list[str]) -> list[str]:
    """The group's mutants not known killed: changed since, or survivors."""
    return [mutant for _, mutant, status, _ in core_mutants(group, modules)
            if status not in KILLED]


def report(modules: list[str]) -> int:
    """Per module and in all: killed/total/score; then every survivor with its diff. Run in
    .mutation/, over the groups' copies."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    total: Counter[str] = Counter()
    killed: Counter[str] = Counter()
    survivors: list[tuple[str, str, str]] = []
    equivalent: list[str] = []
    unmatched: list[str] = []
    top = Path.cwd()
    for group in groups(modules):
        if not (top / group).is_dir():
            unmatched.append(f"group {group} (not run)")
            continue
        os.chdir(top / group)
        for module, mutant, status, path in core_mutants(group, modules, unmatched):
            if status in KILLED:
                total[module] += 1
                killed[module] += 1
                continue
            lines = [line for line in get_diff_for_mutant(mutant, path=path).splitlines()
                     if line[:1] in "+-" and line[:3] not in ("---", "+++")]
            if sql_case_only(lines):
                equivalent.append(mutant)
                continue
            total[module] += 1
            survivors.append((mutant, status, "\n".join(f"  {line}" for line in lines)))
    os.chdir(top)

    print(f"{'module':34} {'killed':>7} {'total':>6} {'score':>7}")
    for module in total:
        print(f"{module:34} {killed[module]:7} {total[module]:6} "
              f"{killed[module] / total[module]:7.1%}")
    all_killed, all_total = sum(killed.values()), sum(total.values())
    score = all_killed / all_total if all_total else 0.0
    print(f"{'safety core':34} {all_killed:7} {all_total:6} {score:7.1%}")
    if equivalent:
        print(f"\nleft out as equivalent, the case of SQL text changed ({len(equivalent)}; "
              "SQLite reads keywords and names without regard to case):")
        for mutant in equivalent:
            print(f"  {mutant}")
    if unmatched:
        print("\nno mutants for (renamed or gone? update GROUPS in scripts/mutation_core.py):")
        for name in unmatched:
            print(f"  {name}")
    if survivors:
        print(f"\nsurvivors ({len(survivors)}):")
    for mutant, status, diff in survivors:
        print(f"\n{mutant}  [{status}]\n{diff}")
    print(f"\nmutation score {score:.1%} ({all_killed}/{all_total}); target {TARGET:.0%}")
    return 0 if score >= TARGET else 1


def _natural(name: str) -> tuple[str, int]:
    base, _, number = name.rpartition("_")
    return base, int(number) if number.isdigit() else 0


def main(argv: list[str]) -> int:
    command, *args = argv or ["groups"]
    if command == "groups":
        print("\n".join(groups(args)))
    elif command == "setup" and len(args) >= 2:
        setup(Path(args[0]), args[1], args[2:])
    elif command == "keep" and len(args) == 2:
        keep(Path(args[0]), Path(args[1]))
    elif command == "deselect" and len(args) >= 2:
        deselect(Path(args[0]), args[1:])
    elif command in ("names", "seed", "pending") and args:
        listing = {"names": names, "seed": seed, "pending": pending}[command]
        print("\n".join(listing(args[0], args[1:])))
    elif command == "report":
        return report(args)
    else:
        sys.exit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
