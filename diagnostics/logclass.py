"""Error classification of log lines, shared by the service backends (Docker, Kubernetes).

    classify(lines) -> {lines, error_lines, classes: {name: {count, first_seen, last_seen,
                        sample}}, first_error_at, last_error_at, top_class}

Each line may start with an RFC 3339 / ISO-8601 timestamp (Docker's `timestamps=True`
prefix, `2026-11-22T07:53:32.123456789Z `, possibly followed by the application's own); the
first one is taken as the line's time. Each error is put in the first class whose pattern
matches, most specific first (`CLASSES`). A line that matches none is not an error.

A multi-line error counts once: the indented lines under an error line (stack frames, Node's
`    at ...`, Java's `Caused by:`) and a Python traceback under it or on its own belong to
that error. A traceback ends with its exception line (`KeyError: 'x'`), which can make the
error more specific: `ERROR Exception in ASGI application` + a traceback ending in
`psycopg.OperationalError: ...` is a db_connection error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class LogClass:
    name: str
    pattern: re.Pattern[str]
    summary: str


# Where an HTTP status sits in an access line: after the quoted request line (nginx, Apache,
# uvicorn, gunicorn) or as a status=/status_code=/"status": field (logfmt, JSON logs).
_STATUS = (r'(?:"(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|CONNECT|TRACE) [^"]*"\s+'
           r'|\b(?:status|status_code|statusCode|code)"?\s*[=:]\s*"?)')

_ACCESS_STATUS = re.compile(_STATUS + r"\d{3}\b", re.IGNORECASE)

# Database client ports: a refused connection to one of these is a database problem.
_DB_PORT = r"(?:5432|6432|3306|1433|1521|27017|6379)"

# Most specific first; the first match wins. Patterns are case-insensitive unless marked
# (?-i:...): level words are matched in capitals so prose like "no error" stays quiet.
CLASSES: tuple[LogClass, ...] = tuple(LogClass(name, re.compile(pattern, re.IGNORECASE), text)
                                      for name, pattern, text in (
    ("oom",
     r"out of memory|OutOfMemory|\bMemoryError\b|\bKilled process \d+|\bOOMKilled\b"
     r"|\boom[-_ ]?kill|cannot allocate memory|memory allocation of \d+ bytes failed"
     r"|Reached heap limit",
     "out of memory: MemoryError, OutOfMemoryError, the kernel's OOM killer, OOMKilled"),
    ("db_pool",
     r"QueuePool limit|\bpool (?:is )?exhausted|connection pool exhausted"
     r"|timed? ?out waiting for (?:a |an available |idle )?connection"
     r"|(?:could not|couldn't|unable to) (?:acquire|obtain|get) (?:a )?connection"
     r"|Connection is not available, request timed out"
     r"|timeout exceeded when trying to connect",
     "the application's connection pool is exhausted: SQLAlchemy QueuePool, psycopg_pool, "
     "HikariCP, node-postgres"),
    ("db_connection",
     r"too many clients|too many connections|remaining connection slots are reserved"
     r"|could not connect to (?:the )?server|connection to server at .{0,80} failed"
     r"|\bOperationalError\b|the database system is (?:starting up|shutting down|in recovery)"
     r"|\bdatabase\b.{0,40}\bunavailable\b"
     rf"|(?:connection refused|ECONNREFUSED).{{0,80}}[:\s]{_DB_PORT}\b"
     rf"|\bport {_DB_PORT}\b.{{0,20}}(?:failed|refused)",
     "the database refuses or drops connections: server full, unreachable, not ready"),
    ("constraint",
     r"violates (?:check|unique|foreign key|not-null|exclusion) constraint"
     r"|\bconstraint (?:violation|fail(?:ed|s))\b|\bdatabase constraint\b|\bIntegrityError\b"
     r"|duplicate key value|Duplicate entry .{0,80} for key",
     "a database constraint refused the data: check, unique, foreign key, not-null"),
    ("timeout",
     r"\bETIMEDOUT\b|\btimed out\b|deadline exceeded|\bDeadlineExceeded\b"
     r"|\b\w*Timeout(?:Error|Exception)\b|\b(?:Read|Connect|Write|Socket)Timeout\b",
     "something did not answer in time (not a pool wait: that is db_pool)"),
    ("connection_refused",
     r"\bECONNREFUSED\b|connection refused",
     "a connection to a dependency was refused (not a database port: that is db_connection)"),
    ("auth",
     rf"{_STATUS}401\b|\b401 Unauthorized\b|\bUnauthorized\b|\btoken (?:has )?expired"
     r"|\bjwt expired\b|\bExpiredSignature|\binvalid (?:token|credentials)\b"
     r"|authentication failed",
     "authentication failures: 401s, expired or invalid tokens, bad passwords"),
    ("rate_limit",
     rf"{_STATUS}429\b|too many requests|rate.?limit(?:ed| exceeded)",
     "throttled: 429s, rate limits"),
    ("validation",
     rf"(?<!\bno )(?<!\b0 )\bvalidation (?:error|failed|failure)|(?-i:\bValidationError\b)"
     rf"|{_STATUS}422\b|\bUnprocessable Entity\b",
     "input the application rejects: validation errors, 422s"),
    ("corrupt_state",
     r"\b(?:state|checkpoint|cursor)(?: file)?\b.{0,60}\b(?:is|was) (?:corrupt(?:ed)?|unreadable)\b"
     r"|\bcorrupt(?:ed)? (?:sync )?(?:state|checkpoint|cursor)\b",
     "a saved state, checkpoint or cursor that cannot be read"),
    ("http_5xx",
     rf"{_STATUS}5\d\d\b",
     "a 5xx status in an access line"),
    ("exception",
     r"Traceback \(most recent call last\)|(?-i:\b\w*(?:Exception|Error)\b)"
     r"|(?-i:\bpanic:)|\bpanicked at\b|\bunhandled (?:exception|rejection)\b"
     r"|UnhandledPromiseRejection",
     "an exception or panic: Traceback, KeyError..., Error:, panic:"),
    ("fatal",
     r"(?-i:\b(?:FATAL|CRITICAL|CRIT|EMERG|ALERT)\b)|\blevel\"?\s*[=:]\s*\"?(?:fatal|critical)\b"
     r"|\[(?:fatal|crit|critical|emerg|alert)\]",
     "FATAL / CRITICAL log level"),
    ("error",
     r"(?-i:\b(?:ERROR|ERR)\b)|\blevel\"?\s*[=:]\s*\"?(?:error|err)\b|\[error\]"
     r"|\bseverity\"?\s*[=:]\s*\"?error\b|^error:",
     "ERROR log level"),
))

_RANK = {c.name: i for i, c in enumerate(CLASSES)}

# A leading timestamp: Docker's RFC 3339 prefix, or an application's "2026-11-22 07:53:32,123"
# (optionally in brackets, optionally with a zone). Only the first one is taken and stripped.
_TIMESTAMP = re.compile(
    r"^\[?(?P<ts>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?"
    r"(?:\s?(?:Z|[+-]\d{2}:?\d{2}))?)\]?(?: |$)")
_TRACEBACK = "Traceback (most recent call last)"
_CHAINED = ("During handling of the above exception", "The above exception was the direct cause")
SAMPLE_CHARS = 300


def split_timestamp(line: str) -> tuple[datetime | None, str]:
    """(the line's leading timestamp or None, the rest of the line)."""
    line = line.rstrip("\r\n")
    match = _TIMESTAMP.match(line)
    if not match:
        return None, line
    return _parse_time(match.group("ts")), line[match.end():]


def _parse_time(text: str) -> datetime | None:
    text = text.replace(",", ".").replace(" Z", "Z")
    text = re.sub(r"\s(?=[+-]\d{2}:?\d{2}$)", "", text)
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)  # Docker gives nanoseconds
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    # Aware times in UTC, so that their ISO strings compare in time order.
    return moment.astimezone(UTC) if moment.tzinfo else moment


def classify_message(message: str) -> str | None:
    """The class of one log message (timestamp already stripped), or None."""
    for log_class in CLASSES:
        if log_class.pattern.search(message):
            return log_class.name
    return None


def is_error(line: str) -> bool:
    """Whether this one line, on its own, reads as an error."""
    return classify_message(split_timestamp(line)[1]) is not None


@dataclass
class _Error:
    name: str
    at: datetime | None
    sample: str
    access_line: bool = False  # an access line's status: a traceback is never its own
    lines_below: int = 0  # continuation lines taken so far
    in_traceback: bool = False  # inside a Python traceback, before its exception line
    after_traceback: bool = False  # past its exception line
    chained: bool = False  # "During handling of the above exception": another one follows

    def refine(self, exception_line: str) -> None:
        """A traceback's exception line may say more than the line that logged it."""
        found = classify_message(exception_line) or "exception"
        if _RANK[found] < _RANK[self.name]:
            self.name = found
        if self.sample.startswith(_TRACEBACK):
            self.sample = exception_line.strip()
        else:
            self.sample = f"{self.sample} … {exception_line.strip()}"


def _continues(error: _Error, message: str) -> bool:
    """Whether `message` belongs to the error above it rather than starting a new error."""
    if message.startswith(_TRACEBACK):
        # The traceback of the line just above (logger.exception), or the next one in a
        # chain; a traceback after a finished one, or under an access line, is a new error.
        if error.chained or not (error.lines_below or error.access_line or error.in_traceback):
            error.in_traceback, error.after_traceback, error.chained = True, False, False
            return True
        return False
    if not message.strip():
        return error.in_traceback or error.after_traceback
    if message.startswith(_CHAINED):
        error.chained = error.after_traceback
        return error.chained
    if message[0].isspace() or message.startswith("Caused by:"):
        return True
    if error.in_traceback:  # the first unindented line after the frames: the exception
        error.in_traceback, error.after_traceback = False, True
        error.refine(message)
        return True
    return False


def classify(lines: Iterable[str]) -> dict[str, Any]:
    """Count errors by class, with first/last seen and a sample line for each."""
    errors: list[_Error] = []
    current: _Error | None = None
    total = 0
    for line in lines:
        total += 1
        at, message = split_timestamp(line)
        if current is not None and _continues(current, message):
            current.lines_below += 1
            continue
        current = None
        name = classify_message(message)
        if name is not None:
            current = _Error(name, at, message.strip(),
                             access_line=bool(_ACCESS_STATUS.search(message)),
                             in_traceback=message.startswith(_TRACEBACK))
            errors.append(current)

    classes: dict[str, dict[str, Any]] = {}
    for error in errors:
        entry = classes.setdefault(error.name, {"count": 0, "first_seen": None,
                                                "last_seen": None,
                                                "sample": error.sample[:SAMPLE_CHARS]})
        entry["count"] += 1
        if error.at is not None:  # logs are in time order: first and last as they come
            entry["first_seen"] = entry["first_seen"] or error.at.isoformat()
            entry["last_seen"] = error.at.isoformat()
    ordered = dict(sorted(classes.items(), key=lambda kv: (-kv[1]["count"], _RANK[kv[0]])))
    stamped = [e.at for e in errors if e.at is not None]
    return {"lines": total, "error_lines": len(errors), "classes": ordered,
            "first_error_at": stamped[0].isoformat() if stamped else None,
            "last_error_at": stamped[-1].isoformat() if stamped else None,
            "top_class": next(iter(ordered), None)}
