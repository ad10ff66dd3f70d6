"""The safety core that scripts/mutation mutates, and its report.

    python scripts/mutation_core.py names [MODULE...]   # mutmut's mutant-name globs
    python scripts/mutation_core.py restrict PYPROJECT MODULE...  # mutate only their files
    python scripts/mutation_core.py tests PYPROJECT TEST...  # run only these tests
    python scripts/mutation_core.py seed|pending [MODULE...]  # for scripts/mutation --update
    python scripts/mutation_core.py report [MODULE...]  # in .mutation/, after `mutmut run`

The core is named by function, not by file: in a backend only its read-only client is the
safety rule (the rest is diagnosis, tested against the lab). The report counts a mutant
killed when a test failed, timed out or the type checker refused it; survived when the
tests passed or no unit test reaches it. It exits 1 below TARGET.
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

TARGET = 0.90

# module -> qualified names (fnmatch globs) of its safety-core functions; ("*",) is all.
CORE: dict[str, tuple[str, ...]] = {
    "runner.gate": ("*",),
    "runner.approval": ("*",),
    "runner.policy": ("*",),
    "runner.redact": ("*",),
    # claim, leases, locks, attempts and the private file modes
    "runner.journal": ("owner_alive", "_process_start", "this_process", "_private_dir",
                       "_open_private", "Journal.mark_interrupted", "Journal._interrupt_if_dead",
                       "Journal.claim", "Journal.owner", "Journal.record_approval",
                       "Journal.approvals", "Journal._take_target", "Journal.lock_target",
                       "Journal.unlock_target", "Journal.target_lock", "Journal.start_remedy",
                       "Journal.attempt"),
    # timeouts (calls) and remedy scheduling (remedies: the deadline, the lock's release)
    "runner.engine": ("Engine._launch", "Engine._settle", "Engine._proposal", "Engine._remedy",
                      "Engine._run_remedy"),
    "runner.remedies": ("*",),
    "runner.calls": ("*",),
    "runner.daemon.matchers": ("*",),
    "runner.daemon.routing": ("*",),
    # dedup: an alert joins its group's open run, or resolves it
    "runner.daemon.inbox": ("Inbox._dispatch_one", "Inbox._resolve",
                            "Inbox.claim_resolved_notice"),
    "diagnostics.postgres_guard": ("*",),
    "diagnostics.request_guard": ("*",),
    # the read-only clients: where the request guard is installed
    "diagnostics.docker": ("_api",),
    "diagnostics.kubernetes": ("_guard_rest_client", "_read_only_pool", "_guard_websockets",
                               "_api_client"),
    "diagnostics.http": ("make_client", "_read_only_transports", "open_client", "HttpProbe.*"),
}

_MUTANT = re.compile(r"^(?P<func>.+)__mutmut_\d+$")


def selected(modules: list[str]) -> dict[str, tuple[str, ...]]:
    """The core, or the part of it in `modules` (paths like runner/gate.py, or dotted)."""
    if not modules:
        return CORE
    wanted = {m.removesuffix(".py").replace("/", ".") for m in modules}
    unknown = wanted - CORE.keys()
    if unknown:
        sys.exit(f"mutation: not in the safety core: {', '.join(sorted(unknown))} "
                 f"(the core: {', '.join(CORE)})")
    return {m: CORE[m] for m in CORE if m in wanted}


def qualified(module: str, mutant: str) -> str:
    """`runner.gate.xǁGateǁexecute__mutmut_3` -> `Gate.execute`."""
    match = _MUTANT.match(mutant.removeprefix(module + "."))
    assert match, mutant
    func = match["func"]
    return func.removeprefix("x_") if func.startswith("x_") else ".".join(func.split("ǁ")[1:])


def names(modules: list[str]) -> list[str]:
    """Globs of the mutants to run. Whole modules as `module.*`; functions by name."""
    globs = []
    for module, funcs in selected(modules).items():
        if funcs == ("*",):
            globs.append(f"{module}.*")
            continue
        for func in funcs:
            cls, _, name = func.rpartition(".")
            mangled = f"xǁ{cls}ǁ{name}" if cls else f"x_{name}"
            globs.append(f"{module}.{mangled}__mutmut_*")
    return globs


def restrict(pyproject: Path, modules: list[str]) -> None:
    """Point only_mutate at the files of `modules` alone: mutmut mutates every file listed
    there before it runs any mutant, and the big ones take minutes."""
    files = [f"{m.replace('.', '/')}.py" for m in selected(modules)]
    text = pyproject.read_text()
    new, count = re.subn(r"(?ms)^only_mutate = \[.*?^\]", f"only_mutate = {json.dumps(files)}",
                         text)
    assert count == 1, f"no only_mutate list in {pyproject}"
    pyproject.write_text(new)


def tests(pyproject: Path, paths: list[str]) -> None:
    """Run the mutants against `paths` alone (a quick look while writing tests; a mutant
    they miss may still die in the whole unit stage, which the real score uses)."""
    text = pyproject.read_text()
    new, count = re.subn(r"(?m)^pytest_add_cli_args_test_selection = .*$",
                         f"pytest_add_cli_args_test_selection = {json.dumps(paths)}", text)
    assert count == 1, f"no pytest_add_cli_args_test_selection in {pyproject}"
    pyproject.write_text(new)


KILLED = frozenset({"killed", "timeout", "caught by type check"})


def core_mutants(modules: list[str], unmatched: list[str] | None = None
                 ) -> Iterator[tuple[str, str, str, str]]:
    """(module, mutant, status, source path) of every mutant of the core in `modules`, as
    mutmut last recorded them (under mutants/); the core's names without a mutant go to
    `unmatched`."""
    from mutmut.stats import status_by_exit_code

    for module, funcs in selected(modules).items():
        meta = Path("mutants", *module.split(".")).with_suffix(".py.meta")
        if not meta.exists():
            if unmatched is not None:
                unmatched.append(f"{module} (no such module)")
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


def seed(modules: list[str]) -> list[str]:
    """A few mutants (the first of each function of the first module): what an --update
    runs first, so that mutmut brings its mutants and results up to date."""
    return [f"{next(iter(selected(modules)))}.*__mutmut_1"]


def pending(modules: list[str]) -> list[str]:
    """The core's mutants not known killed: changed since, or survivors."""
    return [mutant for _, mutant, status, _ in core_mutants(modules) if status not in KILLED]


def deselect(pyproject: Path, tests: list[str]) -> None:
    """Leave `tests` out (a test failing for reasons of its own would stop mutmut before it
    starts); the report then says the score is not the whole unit stage's."""
    text = pyproject.read_text()
    extra = "".join(f', "--deselect", {json.dumps(t)}' for t in tests)
    new, count = re.subn(r"(?m)^(pytest_add_cli_args = \[.*)\]$", lambda m: m[1] + extra + "]",
                         text)
    assert count == 1, f"no pytest_add_cli_args in {pyproject}"
    pyproject.write_text(new)


def report(modules: list[str]) -> int:
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    total: Counter[str] = Counter()
    killed: Counter[str] = Counter()
    survivors: list[tuple[str, str, str]] = []
    unmatched: list[str] = []
    for module, mutant, status, path in core_mutants(modules, unmatched):
        total[module] += 1
        if status in KILLED:
            killed[module] += 1
        else:
            survivors.append((mutant, status, path))

    print(f"{'module':34} {'killed':>7} {'total':>6} {'score':>7}")
    for module in total:
        print(f"{module:34} {killed[module]:7} {total[module]:6} "
              f"{killed[module] / total[module]:7.1%}")
    all_killed, all_total = sum(killed.values()), sum(total.values())
    score = all_killed / all_total if all_total else 0.0
    print(f"{'safety core':34} {all_killed:7} {all_total:6} {score:7.1%}")
    if unmatched:
        print("\nno mutants for (renamed or gone? update CORE in scripts/mutation_core.py):")
        for name in unmatched:
            print(f"  {name}")
    if survivors:
        print(f"\nsurvivors ({len(survivors)}):")
    for mutant, status, path in survivors:
        print(f"\n{mutant}  [{status}]")
        diff = get_diff_for_mutant(mutant, path=path)
        for line in diff.splitlines():
            if line[:1] in "+-" and line[:3] not in ("---", "+++"):
                print(f"  {line}")
    print(f"\nmutation score {score:.1%} ({all_killed}/{all_total}); target {TARGET:.0%}")
    return 0 if score >= TARGET else 1


def _natural(name: str) -> tuple[str, int]:
    base, _, number = name.rpartition("_")
    return base, int(number) if number.isdigit() else 0


def main(argv: list[str]) -> int:
    command, *modules = argv or ["names"]
    if command == "names":
        print("\n".join(names(modules)))
        return 0
    if command == "report":
        return report(modules)
    if command == "restrict" and len(modules) > 1:
        restrict(Path(modules[0]), modules[1:])
        return 0
    if command in ("seed", "pending"):
        print("\n".join(seed(modules) if command == "seed" else pending(modules)))
        return 0
    if command == "tests" and len(modules) > 1:
        tests(Path(modules[0]), modules[1:])
        return 0
    if command == "deselect" and len(modules) > 1:
        deselect(Path(modules[0]), modules[1:])
        return 0
    sys.exit(f"usage: {Path(__file__).name} names|report [MODULE...] | "
             "restrict PYPROJECT MODULE... | tests PYPROJECT TEST...")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
