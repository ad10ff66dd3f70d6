"""Keep secrets out of reports, logs, notifications and the journal.

Two kinds of masking, both applied by `SECRETS.scrub` to everything runbook writes or prints:

* registered secrets: backends register every secret they resolve (a DSN's password, a
  token). A secret is masked only as a whole token, where it is not part of a longer word
  or dotted/hyphenated identifier: a weak password `service` is masked in "login service
  failed" but not in `service.restart`, so masking never corrupts a playbook's own words.
  Secrets registered during a run belong to that run's scope (`SECRETS.scope()`, a context
  variable, so concurrent runs in one daemon never mask each other's data); secrets
  registered outside any scope belong to the whole process.
* secret shapes, masked whoever registered them: URL and conninfo passwords, Authorization
  headers, `password: ...`/`api_key=...`/`"token": "..."` pairs, SQL `PASSWORD '...'`,
  well-known token formats (GitHub, Slack, OpenAI, AWS, GitLab, JWT) and private key blocks.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import threading
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, TextIO

MASK = "***"
MIN_SECRET_CHARS = 4  # shorter values would mask noise everywhere

# A key that names a secret: password, db_password, PGPASSWORD, api_key, X-Api-Key,
# AWS_SECRET_ACCESS_KEY, client_secret, auth_token, private_key, credentials...
_KEY_WORDS = (r"password|passwd|passphrase|pwd|secret|token|api[_-]?key|access[_-]?key|"
              r"private[_-]?key|credentials?|auth[_-]?key")
_SECRET_KEY = re.compile(_KEY_WORDS, re.IGNORECASE)
# a quoted value (its closing quote may be cut off) or a bare one
_VALUE = r"""(?P<q>["'])?(?P<secret>(?(q)(?:\\.|(?!(?P=q)).)*|[^\s,;&"'}]+))(?(q)(?P=q)?)"""


def _shape(pattern: str, flags: int = re.IGNORECASE) -> re.Pattern[str]:
    return re.compile(pattern, flags)


# Each shape has a `head` kept as is and a `secret` group that is masked. Data from systems
# is hostile too: every repetition that could fail far from where it started is bounded
# (or anchored to the start of a run), so that masking stays linear in the text.
_SHAPES = (
    # -----BEGIN RSA PRIVATE KEY----- ... -----END RSA PRIVATE KEY----- (or cut off)
    _shape(r"(?P<head>-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----)(?P<secret>.*?)"
           r"(?=-----END [A-Z0-9 ]{0,40}PRIVATE KEY-----|\Z)", re.DOTALL),
    # scheme://user:password@host, the password possibly holding '@' itself
    _shape(r"(?P<head>\b[a-z][a-z0-9+.-]{0,30}://[^:/@\s]{0,256}:)(?P<secret>\S{1,512}?)"
           r"(?=@[^@\s/]{0,256}(?:[/\s]|\Z))"),
    # Authorization: Bearer|Basic|Token ..., and a bare "Bearer <token>"
    _shape(r"(?P<head>\b(?:proxy-)?authorization[\"']?[ \t]{0,8}[:=][ \t]{0,8}[\"']?"
           r"(?:(?:bearer|basic|token|digest|negotiate|apikey|ntlm)[ \t]{1,8})?)"
           r"(?P<secret>[^\s,;\"']+)"),
    _shape(r"(?P<head>\bbearer[ \t]{1,8})(?P<secret>[A-Za-z0-9._~+/-]{8,}=*)"),
    # SQL: CREATE/ALTER ROLE ... [ENCRYPTED] PASSWORD '...', MySQL IDENTIFIED BY '...';
    # the query text may be cut off (track_activity_query_size) before the closing quote
    _shape(r"(?P<head>\b(?:password|identified\s{1,8}by)\s{1,8})"
           r"(?P<secret>'(?:[^']|'')*(?:'|\Z)|\$(?P<tag>\w{0,40})\$.*?(?:\$(?P=tag)\$|\Z))",
           re.IGNORECASE | re.DOTALL),
    # --password VALUE on a command line (ps output)
    _shape(rf"(?P<head>(?<![\w-])--?[\w-]{{0,40}}(?:{_KEY_WORDS})[\w-]{{0,40}}[ \t]{{1,8}})"
           r"(?P<secret>[^\s-]\S*)"),
    # key=value, key: value, "key": "value" (JSON), key = 'value' (conninfo), X-Api-Key: v;
    # the match starts at the key word: what precedes it (db_, AWS_) is kept anyway
    _shape(rf"(?P<head>(?:{_KEY_WORDS})[\w.-]{{0,40}}[\"']?[ \t]{{0,8}}[:=][ \t]{{0,8}})" + _VALUE),
    # well-known token formats
    _shape(r"(?P<head>\b(?:gh[pousr]_|github_pat_|glpat-|xox[abposr]-|xapp-|"
           r"sk-(?:proj-|live-|test-)?|[sr]k_(?:live|test)_|AIza))"
           r"(?P<secret>[A-Za-z0-9_-]{16,})", 0),
    _shape(r"(?P<head>\b)(?P<secret>(?:AKIA|ASIA)[A-Z0-9]{16})\b", 0),
    _shape(r"(?P<head>(?<![A-Za-z0-9_-]))"
           r"(?P<secret>eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+)", 0),
    _shape(r"(?P<head>hooks\.slack\.com/services/)(?P<secret>[A-Za-z0-9/_-]+)"),
    # libpq's conninfo/URI parse errors quote a fragment of the string, maybe of its password
    _shape(r'(?P<head>(?:missing "=" after|invalid connection option|invalid URI query '
           r'parameter:|invalid percent-encoded token:|unexpected spaces found in|'
           r'unexpected character) ")(?P<secret>[^"]{0,1024})(?=")'),
)


def _masked(match: re.Match[str]) -> str:
    groups = match.groupdict()
    quote = groups.get("q") or ""
    return str(groups["head"]) + quote + MASK + quote


def mask_shapes(text: str) -> str:
    """`text` with every secret shape masked (no registration needed)."""
    for pattern in _SHAPES:
        text = pattern.sub(_masked, text)
    return text


@lru_cache(maxsize=64)
def _whole_tokens(secrets: frozenset[str]) -> re.Pattern[str] | None:
    """One pattern matching any of `secrets` where it is a whole token: not preceded or
    followed by a word character, nor joined to one by '.' or '-' (an identifier)."""
    if not secrets:
        return None
    alternatives = "|".join(re.escape(s) for s in sorted(secrets, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?<!\w[.-])(?:{alternatives})(?!\w)(?![.-]\w)")


class Redactor:
    def __init__(self) -> None:
        self._process: set[str] = set()  # registered outside any run
        self._seen: set[str] = set()  # every secret ever registered: log lines mask them all
        self._lock = threading.Lock()
        self._scope: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar(
            f"runbook-secrets-{id(self)}", default=None)

    def register(self, secret: str | None) -> None:
        """Mask this value, as a whole token, in the current run (or process) from now on."""
        if not secret or len(secret) < MIN_SECRET_CHARS:
            return
        scope = self._scope.get()
        with self._lock:
            (self._process if scope is None else scope).add(secret)
            self._seen.add(secret)

    @contextmanager
    def scope(self) -> Iterator[None]:
        """Secrets registered inside belong to this run only; a scope opened inside another
        joins it. Threads see it when started in a copy of this context."""
        if self._scope.get() is not None:
            yield
            return
        token = self._scope.set(set())
        try:
            yield
        finally:
            self._scope.reset(token)

    def _current(self) -> frozenset[str]:
        scope = self._scope.get()
        with self._lock:
            return frozenset(self._process if scope is None else self._process | scope)

    def scrub(self, value: Any, *, keep: Collection[str] = ()) -> Any:
        """A copy of `value` (str, list, dict, scalars) with every secret masked. In a
        dict, the values of `keep` keys (structural fields) are left exactly as they are."""
        return self._scrub(value, _whole_tokens(self._current()), keep)

    def scrub_output(self, value: Any) -> Any:
        """For what is never read back (log lines, notifications, terminal output): every
        secret this process ever registered, in any run, is masked."""
        with self._lock:
            everything = frozenset(self._seen)
        return self._scrub(value, _whole_tokens(everything), ())

    def _scrub(self, value: Any, tokens: re.Pattern[str] | None, keep: Collection[str]) -> Any:
        if isinstance(value, str):
            if tokens is not None:
                value = tokens.sub(MASK, value)
            return mask_shapes(value)
        if isinstance(value, dict):
            scrubbed: dict[Any, Any] = {}
            for key, item in value.items():
                if key in keep:
                    scrubbed[key] = item
                elif isinstance(key, str) and isinstance(item, str) and item \
                        and len(key) <= 100 and _SECRET_KEY.search(key):
                    scrubbed[self._scrub(key, tokens, ())] = MASK  # {"password": "..."}
                else:
                    scrubbed[self._scrub(key, tokens, ())] = self._scrub(item, tokens, ())
            return scrubbed
        if isinstance(value, list | tuple):
            return [self._scrub(item, tokens, ()) for item in value]
        return value


SECRETS = Redactor()


class ScrubbingStream:
    """A text stream (stdout, stderr) whose every write passes through SECRETS.scrub_output;
    everything else (isatty, fileno, encoding, flush) is the wrapped stream's."""

    def __init__(self, stream: TextIO) -> None:
        self.wrapped = stream

    def write(self, text: str) -> int:
        self.wrapped.write(str(SECRETS.scrub_output(text)))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def scrub_stdio() -> None:
    """From now on, whatever this process prints (tracebacks included) is scrubbed."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, ScrubbingStream):
            setattr(sys, name, ScrubbingStream(stream))


class ScrubbingFormatter(logging.Formatter):
    """A log formatter whose every line, traceback included, passes through SECRETS."""

    def format(self, record: logging.LogRecord) -> str:
        return str(SECRETS.scrub_output(super().format(record)))
