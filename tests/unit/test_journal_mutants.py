"""Journal cases mutation testing found untested (scripts/mutation runner/journal.py):
claiming a waiting run, the re-check that keeps a run a live process claimed meanwhile, a
run taking its own lock again, and what the lock-broken, resumed and started events and
the refusals say. The main tests are test_journal.py; its real other processes are reused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner.errors import JournalError
from runner.journal import Approval, Journal, now, owner_alive, this_process
from runner.state import RUNNING
from tests.unit.test_journal import let_go, modes, other_process, waiting_run


def test_claiming_a_waiting_run_journals_its_resumption_and_nothing_else(
        runbook_home: Path) -> None:
    journal = Journal(runbook_home)
    run_id = waiting_run(journal)
    resumed = journal.claim(run_id)
    assert resumed.data == {"status": RUNNING, "by": ""}
    assert [e.type for e in journal.events(run_id)] == ["run.finished", "run.resumed"]
    assert journal.owner(run_id) == this_process()


def test_claiming_an_unknown_run_names_it_and_the_journal(runbook_home: Path) -> None:
    journal = Journal(runbook_home)
    with pytest.raises(JournalError) as refused:
        journal.claim("20260101-000000-none", "me")
    assert str(refused.value) == (f"no run '20260101-000000-none' in the journal at "
                                  f"{runbook_home}")
    assert journal.owner("20260101-000000-none") is None


def test_the_recheck_inside_the_transaction_keeps_a_live_owners_run(runbook_home: Path) -> None:
    """mark_interrupted picks its candidates first and re-reads each in the transaction
    that would interrupt it: a run that a live process claimed in between stands."""
    journal = Journal(runbook_home)
    run_id = waiting_run(journal)
    journal.claim(run_id, "me")
    with journal.transaction() as db:
        assert journal._interrupt_if_dead(db, run_id) is False
    assert journal.get_run(run_id).status == RUNNING
    assert "run.interrupted" not in [e.type for e in journal.events(run_id)]


def test_a_run_takes_its_own_lock_again(runbook_home: Path) -> None:
    journal = Journal(runbook_home)
    run_id = waiting_run(journal)
    journal.lock_target("db", run_id)
    journal.lock_target("db", run_id)  # the same run in the same process: no TargetBusy
    assert journal.target_lock("db") == (run_id, this_process())
    assert "lock.broken" not in [e.type for e in journal.events(run_id)]


def test_a_broken_lock_says_which_target_whose_process_and_who_took_it(
        runbook_home: Path) -> None:
    journal = Journal(runbook_home)
    run_id, other_run = waiting_run(journal), waiting_run(journal)
    with other_process(runbook_home, f"journal.lock_target('db', {run_id!r})") as holder:
        held = journal.target_lock("db")
        assert held is not None and held[0] == run_id
        let_go(holder)
    journal.lock_target("db", other_run)
    [broken] = [e.data for e in journal.events(run_id) if e.type == "lock.broken"]
    assert broken == {"target": "db", "owner": held[1],
                      "reason": f"its process is gone; run {other_run} took the lock"}


def test_a_remedy_start_is_journaled_with_what_and_where(runbook_home: Path) -> None:
    journal = Journal(runbook_home)
    run_id = waiting_run(journal)
    journal.claim(run_id, "me")
    started = journal.start_remedy(run_id, "fix", "f" * 64, "db")
    assert started.data == {"remedy": "fix", "fingerprint": "f" * 64, "target": "db"}


def test_starting_a_remedy_of_an_unknown_or_waiting_run_says_why(runbook_home: Path) -> None:
    journal = Journal(runbook_home)
    with pytest.raises(JournalError) as unknown:
        journal.start_remedy("20260101-000000-none", "fix", "f" * 64, "db")
    assert str(unknown.value) == ("run 20260101-000000-none is not driven by this process "
                                  "(no such run)")
    run_id = waiting_run(journal)
    with pytest.raises(JournalError) as waiting:
        journal.start_remedy(run_id, "fix", "f" * 64, "db")
    assert str(waiting.value) == f"run {run_id} is not driven by this process (None)"


def test_every_file_and_folder_is_private_even_with_umask_zero(runbook_home: Path) -> None:
    """In this process, so that a mutant of the journal's own modes is seen (test_journal.py
    checks the same through a whole `runbook run` in a child process)."""
    old = os.umask(0)
    try:
        journal = Journal(runbook_home)
        run_id = waiting_run(journal)
        journal.write_file(run_id, "evidence/a.json", {"a": 1})
        found = modes(runbook_home)
    finally:
        os.umask(old)
    assert any(name.endswith("a.json") for name in found)
    for name, mode in found.items():
        is_dir = (runbook_home / name).is_dir()
        assert mode == (0o700 if is_dir else 0o600), f"{name}: {oct(mode)}"


def test_an_owner_is_alive_unless_it_is_this_machines_and_gone() -> None:
    assert owner_alive(this_process())
    assert not owner_alive(None) and not owner_alive("")
    assert owner_alive("another-host:1:123")  # it will mark its own runs
    host = this_process().rsplit(":", 2)[0]
    assert not owner_alive(f"{host}:{os.getpid()}:not-its-start-time")


def test_a_run_whose_process_died_is_journaled_interrupted_with_why(runbook_home: Path) -> None:
    journal = Journal(runbook_home)
    run_id = waiting_run(journal)
    with other_process(runbook_home, f"journal.claim({run_id!r}, 'the other')") as holder:
        let_go(holder)
    assert journal.mark_interrupted() == [run_id]
    [interrupted] = [e.data for e in journal.events(run_id) if e.type == "run.interrupted"]
    assert interrupted == {"status": "interrupted", "reason": "the process running it stopped"}


def test_an_approval_is_journaled_with_everything_it_binds_to(runbook_home: Path) -> None:
    journal = Journal(runbook_home)
    run_id = waiting_run(journal)
    journal.record_approval(Approval(run_id, "fix", "f" * 64, "approved", "alice",
                                     "runbook approve", now()))
    [event] = [e.data for e in journal.events(run_id) if e.type == "approval"]
    assert event == {"remedy": "fix", "decision": "approved", "by": "alice",
                     "how": "runbook approve", "fingerprint": "f" * 64}
