"""The exceptions runbook raises, in one tree.

    RunbookError
    ├── UsageError            the command line names something that does not exist
    ├── PlaybookError         playbooks or inventory are invalid; `.problems` lists each
    ├── StepError             a step could not produce a result
    │   ├── TemporaryError    worth retrying: connection refused, timed out
    │   │   └── StepTimeout   the step's deadline passed
    │   └── PermanentError    retrying cannot help: bad SQL, permission denied
    ├── NotApproved           a mutating step was asked to run without a matching approval
    ├── JournalError          the journal does not hold what was asked for
    └── JournalUnavailable    the journal cannot be written: locked, disk full, unwritable
"""

from __future__ import annotations

from typing import NamedTuple


class RunbookError(Exception):
    """Base of every error runbook raises on purpose."""


class UsageError(RunbookError):
    """The caller asked for something that does not exist or does not fit."""


class Problem(NamedTuple):  # a NamedTuple, not a dataclass: the CLI imports this at start
    """One validation problem, located in its source file."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class PlaybookError(RunbookError):
    """A playbook or inventory failed validation; nothing ran."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class StepError(RunbookError):
    """A step could not produce a result."""


class TemporaryError(StepError):
    """A failure that may pass: the engine retries it if the step allows retries, after
    `delay` seconds when the backend knows how long to wait (a 429's Retry-After, a server
    that said when it will be back), else after its own back-off."""

    def __init__(self, *args: object, delay: float | None = None) -> None:
        super().__init__(*args)
        self.delay = delay


class StepTimeout(TemporaryError):
    """The step did not finish within its timeout."""


class PermanentError(StepError):
    """A failure that retrying cannot fix."""


class NotApproved(RunbookError):
    """A mutating step was asked to run without a recorded, matching approval."""


class JournalError(RunbookError):
    """The journal does not hold the run or record that was asked for."""


class JournalUnavailable(RunbookError):
    """The journal cannot be written now (locked by another process past the busy timeout,
    a full disk, an unwritable RUNBOOK_HOME). Nothing was half-written: the run stops, and
    `runbook resume` carries it on once the journal is writable again."""
