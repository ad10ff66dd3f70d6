"""The journal: claiming runs, target locks, the one attempt of a remedy, private files, and
a journal that cannot be written. Other owners are real processes the test starts and
stops; the journal is a real SQLite file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runner.errors import JournalError
from runner.journal import AlreadyAttempted, Journal, TargetBusy, new_run_id, this_process
from runner.state import AWAITING, INTERRUPTED, RUNNING
from tests.support.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]


def waiting_run(journal: Journal) -> str:
    """A run that no process drives: it waits for an approval."""
    run_id = new_run_id() + os.urandom(2).hex()
    journal.create_run(run_id, "pb", "P3", {})
    journal.append(run_id, "run.finished", {"status": AWAITING})
    return run_id


@contextmanager
def other_process(home: Path, code: str) -> Iterator[subprocess.Popen[str]]:
    """Another runbook process that does `code` with `journal` open, says so, and lives
    until the test lets it go (closes its stdin)."""
    script = ("import sys\nfrom pathlib import Path\nfrom runner.journal import Journal\n"
              f"journal = Journal(Path({str(home)!r}))\n{code}\n"
              "print('ready', flush=True)\nsys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def let_go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


# Claiming a run


def claim_race(home: Path, run_id: str, contenders: int) -> tuple[list[int], list[str]]:
    """`contenders` threads, each with its own connection, claim the run at once."""
    journals = [Journal(home) for _ in range(contenders)]
    barrier = threading.Barrier(contenders)
    won: list[int] = []
    refused: list[str] = []

    def contend(i: int) -> None:
        barrier.wait()
        try:
            journals[i].claim(run_id, f"thread {i}")
            won.append(i)
        except JournalError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for journal in journals:
        journal.close()
    return won, refused


def test_claim_raced_by_threads_has_exactly_one_winner(runbook_home: Path) -> None:
    journal = Journal(runbook_home)
    for _trial in range(20):
        run_id = waiting_run(journal)
        won, refused = claim_race(runbook_home, run_id, 8)
        assert len(won) == 1, won
        assert len(refused) == 7
        assert all("being driven by another process" in r for r in refused)
        assert journal.get_run(run_id).status == RUNNING
        assert journal.owner(run_id) == this_process()
        assert [e.type for e in journal.events(run_id)].count("run.resumed") == 1


def test_claim_refuses_a_live_owner_and_takes_over_from_a_dead_one(runbook_home: Path) -> None:
    journal = Journal(runbook_home)
    run_id = waiting_run(journal)
    with other_process(runbook_home, f"journal.claim({run_id!r}, 'the other')") as holder:
        with pytest.raises(JournalError, match="being driven by another process"):
            journal.claim(run_id, "me")
        assert journal.get_run(run_id).status == RUNNING  # it is alive: not interrupted
        let_go(holder)
    resumed = journal.claim(run_id, "me")
    assert resumed.type == "run.resumed"
    types = [e.type for e in journal.events(run_id)]
    assert types[-2:] == ["run.interrupted", "run.resumed"]
    assert journal.owner(run_id) == this_process()


def test_claim_refuses_this_very_process_driving_the_run(runbook_home: Path) -> None:
    journal = Journal(runbook_home)
    run_id = waiting_run(journal)
    journal.claim(run_id, "first")
    with pytest.raises(JournalError, match="being driven"):
        journal.claim(run_id, "second")


def test_a_dead_owners_run_shows_interrupted(runbook_home: Path) -> None:
    journal = Journal(runbook_home)
    run_id = waiting_run(journal)
    with other_process(runbook_home, f"journal.claim({run_id!r}, 'the other')") as holder:
        assert journal.mark_interrupted() == []
        let_go(holder)
    assert journal.mark_interrupted() == [run_id]
    assert journal.get_run(run_id).status == INTERRUPTED


# The per-target lock


def test_a_target_lock_is_held_by_one_run_and_one_process(runbook_home: Path) -> None:
    journal = Journal(runbook_home)
    run_id, other_run = waiting_run(journal), waiting_run(journal)
    with other_process(runbook_home, f"journal.lock_target('db', {run_id!r})") as holder:
        with pytest.raises(TargetBusy, match=f"remediated by run {run_id}"):
            journal.lock_target("db", run_id)  # the same run from another process
        with pytest.raises(TargetBusy):
            journal.lock_target("db", other_run)
        journal.unlock_target("db", run_id)  # not this process's lock: it stays
        assert journal.target_lock("db") is not None
        let_go(holder)
    # Its process is gone: the lock is stale, broken, and said so on the run that held it.
    journal.lock_target("db", other_run)
    assert journal.target_lock("db") == (other_run, this_process())
    broken = [e for e in journal.events(run_id) if e.type == "lock.broken"]
    assert len(broken) == 1 and other_run in broken[0].data["reason"]


def test_a_released_lock_lets_the_next_run_in(runbook_home: Path) -> None:
    journal = Journal(runbook_home)
    first, second = waiting_run(journal), waiting_run(journal)
    journal.lock_target("db", first)
    with pytest.raises(TargetBusy):
        journal.lock_target("db", second)
    journal.unlock_target("db", second)  # another run's release does not free it
    assert journal.target_lock("db") == (first, this_process())
    journal.unlock_target("db", first)
    assert journal.target_lock("db") is None
    journal.lock_target("db", second)
    assert journal.target_lock("db") == (second, this_process())


# The one attempt of a remedy


def test_a_remedy_starts_once_ever(runbook_home: Path) -> None:
    journal = Journal(runbook_home)
    run_id = waiting_run(journal)
    journal.claim(run_id, "me")
    started = journal.start_remedy(run_id, "fix", "f" * 64, "db")
    assert started.type == "remedy.started"
    assert journal.target_lock("db") == (run_id, this_process())
    journal.unlock_target("db", run_id)
    with pytest.raises(AlreadyAttempted, match="never runs twice"):
        journal.start_remedy(run_id, "fix", "f" * 64, "db")
    # The refused attempt left nothing behind: no lock, no second event.
    assert journal.target_lock("db") is None
    assert [e.type for e in journal.events(run_id)].count("remedy.started") == 1
    attempt = journal.attempt(run_id, "fix")
    assert attempt is not None and attempt.owner == this_process()


def test_only_the_process_driving_a_run_starts_its_remedies(runbook_home: Path) -> None:
    journal = Journal(runbook_home)
    run_id = waiting_run(journal)
    with pytest.raises(JournalError, match="not driven by this process"):
        journal.start_remedy(run_id, "fix", "f" * 64, "db")
    with other_process(runbook_home, f"journal.claim({run_id!r}, 'the other')"), \
            pytest.raises(JournalError, match="not driven by this process"):
        journal.start_remedy(run_id, "fix", "f" * 64, "db")
    assert journal.attempt(run_id, "fix") is None
    assert journal.target_lock("db") is None


# Private state


def modes(home: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(home.stat().st_mode)}
    for path in home.rglob("*"):
        found[str(path.relative_to(home))] = stat.S_IMODE(path.stat().st_mode)
    return found


def test_home_run_directories_and_files_are_private_whatever_the_umask(
        tmp_path: Path, runbook_home: Path) -> None:
    runbook_home.mkdir(mode=0o755)
    os.chmod(runbook_home, 0o755)  # as an older runbook left it
    box = tmp_path / "box"
    (tmp_path / "pb").mkdir()
    (tmp_path / "pb" / "private.yaml").write_text(
        "name: private\nsummary: s\ntargets:\n  box: {kind: mem}\n"
        "steps:\n  - {id: a, run: mem.sleep, with: {value: 1}}\n"
        "remedies:\n  - {id: fix, run: mem.act, with: {items: [1]}}\n")
    (tmp_path / "inv.yaml").write_text(f"targets:\n  box: {{kind: mem, path: {box}}}\n")
    # umask 0 would make every file 0666 and directory 0777; the modes are read while the
    # journal is still open, so its -wal and -shm files exist.
    script = f"""
import json, os, stat, sys
from pathlib import Path
os.umask(0)
from runner.cli import main
code = main(["run", "private", "--no-input", "--approve", "fix=mem.act", "--format", "json"])
home = Path({str(runbook_home)!r})
found = {{str(p.relative_to(home)): stat.S_IMODE(p.stat().st_mode) for p in home.rglob("*")}}
print(json.dumps({{"code": code, "modes": found}}), file=sys.stderr)
"""
    env = {**os.environ, "RUNBOOK_PLAYBOOKS": str(tmp_path / "pb"),
           "RUNBOOK_INVENTORY": str(tmp_path / "inv.yaml"),
           "RUNBOOK_BACKENDS": "tests.support.membackend:register"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=120)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    found = report["modes"]
    assert report["code"] == 0, done.stderr
    names = {Path(name).name for name in found}
    assert {"journal.sqlite3", "journal.sqlite3-wal", "journal.sqlite3-shm", "events.jsonl",
            "run.json", "report.md", "a.json", "remedy-fix.json"} <= names
    for name, mode in found.items():
        kind = "dir" if (runbook_home / name).is_dir() else "file"
        assert mode == (0o700 if kind == "dir" else 0o600), f"{kind} {name}: {oct(mode)}"
    assert stat.S_IMODE(runbook_home.stat().st_mode) == 0o700


# A journal that cannot be written: locked, full, or nowhere to write


HELD = """
name: held
summary: a step that waits for a file, so the test can act while the run is under way
targets:
  box: {kind: mem}
steps:
  - {id: wait, run: mem.wait_for, with: {file: release-step, value: 1}}
  - {id: big, run: mem.sleep, needs: [wait], with: {pad: %d}}
"""


@pytest.fixture
def world(tmp_path: Path) -> dict[str, str]:
    """Environment for `runbook` processes: the `mem` backend and a playbook `held`."""
    box = tmp_path / "box"
    box.mkdir()
    (tmp_path / "pb").mkdir()
    (tmp_path / "pb" / "held.yaml").write_text(HELD % 0)
    (tmp_path / "pb" / "big.yaml").write_text(
        (HELD % 200_000).replace("name: held", "name: big"))
    (tmp_path / "inv.yaml").write_text(f"targets:\n  box: {{kind: mem, path: {box}}}\n")
    return {**os.environ, "RUNBOOK_PLAYBOOKS": str(tmp_path / "pb"),
            "RUNBOOK_INVENTORY": str(tmp_path / "inv.yaml"),
            "RUNBOOK_BACKENDS": "tests.support.membackend:register",
            "RUNBOOK_JOURNAL_BUSY_TIMEOUT": "0.5"}


def runbook(env: dict[str, str], *args: str, limit: int | None = None,
            ) -> subprocess.Popen[str]:
    """A `runbook` process; `limit` caps the size of any file it writes (RLIMIT_FSIZE)."""
    cap = (f"import resource; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
           if limit else "")
    script = f"{cap}import sys\nfrom runner.cli import main\nsys.exit(main({list(args)!r}))\n"
    return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def wait_for_event(home: Path, type_: str) -> str:
    def run_with_event() -> str | None:
        if not (home / "journal.sqlite3").exists():
            return None
        with Journal(home) as journal:
            return next((run.id for run in journal.runs()
                         if any(e.type == type_ for e in journal.events(run.id))), None)

    found = wait_for(run_with_event, f"a {type_} event")
    assert found is not None
    return found


def assert_whole(home: Path, run_id: str) -> None:
    """Nothing half-written: events.jsonl is exactly the journal's events, whole lines, and
    no temporary file is left in the run directory."""
    run_dir = home / "runs" / run_id
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    with Journal(home) as journal:
        stored = [e.seq for e in journal.events(run_id)]
    assert [json.loads(line)["seq"] for line in lines] == stored
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]
    for written in ("run.json", "evidence/wait.json"):
        if (run_dir / written).exists():
            json.loads((run_dir / written).read_text())


def test_a_journal_locked_past_the_busy_timeout_stops_the_run_clearly_and_resumably(
        world: dict[str, str], runbook_home: Path) -> None:
    proc = runbook(world, "run", "held", "--no-input")
    run_id = wait_for_event(runbook_home, "step.started")
    db = runbook_home / "journal.sqlite3"
    locker = ("import sqlite3, sys\n"
              f"db = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
              "db.execute('BEGIN EXCLUSIVE')\nprint('ready', flush=True)\nsys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", locker], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        (Path(world["RUNBOOK_INVENTORY"]).parent / "box" / "release-step").touch()
        code, _, err = finish(proc)
        assert code == 4, err
        [line] = err.strip().splitlines()[-1:]
        assert "Traceback" not in err
        assert line.startswith("runbook: journal unavailable: the journal ")
        assert "locked by another process (waited 0.5s" in line
        assert f"runbook resume {run_id}" in line
    finally:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()
    assert_whole(runbook_home, run_id)
    code, out, err = finish(runbook(world, "resume", run_id, "--no-input", "--format", "json"))
    assert code == 0, err
    resumed = json.loads(out)
    assert resumed["status"] == "completed"
    assert {s["id"]: s["status"] for s in resumed["steps"]} == {"wait": "ok", "big": "ok"}
    assert_whole(runbook_home, run_id)


def test_a_full_disk_stops_the_run_with_nothing_half_written_and_it_resumes(
        world: dict[str, str], runbook_home: Path) -> None:
    (Path(world["RUNBOOK_INVENTORY"]).parent / "box" / "release-step").touch()
    # Files may not grow past 190 kB in this process: the step's 200 kB result cannot be
    # journaled, as on a disk that filled up (below that, the journal's schema and the
    # run's first events fit).
    code, _, err = finish(runbook(world, "run", "big", "--no-input", limit=190_000))
    assert code == 4, err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("runbook: journal unavailable: cannot write ")
    assert "file size limit reached" in line
    with Journal(runbook_home) as journal:
        [run] = journal.runs()
        events = [e.type for e in journal.events(run.id)]
    # `wait` finished; `big` started and its end could not be journaled; the process is
    # gone, so the run reads as interrupted.
    assert events[-3:] == ["step.finished", "step.started", "run.interrupted"]
    assert_whole(runbook_home, run.id)
    code, out, err = finish(runbook(world, "resume", run.id, "--no-input", "--format", "json"))
    assert code == 0, err
    resumed = json.loads(out)
    assert resumed["status"] == "completed"
    assert len(resumed["steps"][1]["result"]["pad"]) == 200_000
    assert_whole(runbook_home, run.id)


def test_an_unwritable_home_is_a_clear_error_not_a_traceback(
        world: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    env = {**world, "RUNBOOK_HOME": str(tmp_path / "a-file" / "home")}
    for args in (("history",), ("run", "held", "--no-input")):
        code, _, err = finish(runbook(env, *args))
        assert code == 4, err
        assert err.strip().splitlines() == [
            f"runbook: journal unavailable: cannot write {tmp_path / 'a-file' / 'home'}: "
            "Not a directory"]


def test_each_commit_reaches_the_disk_before_it_returns(tmp_path: Path) -> None:
    """synchronous=FULL (2), not NORMAL (1): in WAL mode, NORMAL survives a crash of the
    process but may lose the last commits on power loss, such as a claimed remedy attempt."""
    with Journal(tmp_path / "home") as journal:
        assert journal._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert journal._db.execute("PRAGMA synchronous").fetchone() == (2,)
