"""Keep secrets out of reports, logs and the journal.

Backends register every secret they resolve (a DSN's password, a token) with `SECRETS`;
everything runbook writes or prints passes through `SECRETS.scrub`, which also masks
passwords in URLs and libpq conninfo strings it was never told about.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

MASK = "***"
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]+)(?=@)",
                           re.IGNORECASE)
# password=..., PGPASSWORD=... (no \b: PGPASSWORD has none before "password")
_KV_PASSWORD = re.compile(r"(?P<head>(?:password|passwd|token|secret)\s*=\s*)"
                          r"(?P<secret>'(?:[^'\\]|\\.)*'|[^\s,;]+)", re.IGNORECASE)
# "password": "..." in JSON
_JSON_PASSWORD = re.compile(r'(?P<head>"(?:password|passwd|token|secret)"\s*:\s*)'
                            r'(?P<secret>"(?:[^"\\]|\\.)*")', re.IGNORECASE)


class Redactor:
    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def register(self, secret: str | None) -> None:
        """Mask this value wherever it appears from now on (short values would mask noise)."""
        if secret and len(secret) >= 4:
            with self._lock:
                self._secrets.add(secret)

    def scrub(self, value: Any) -> Any:
        """A copy of `value` (str, list, dict, scalars) with every secret masked."""
        if isinstance(value, str):
            return self._scrub_text(value)
        if isinstance(value, dict):
            return {self.scrub(k): self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(item) for item in value]
        return value

    def _scrub_text(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern in (_URL_PASSWORD, _KV_PASSWORD, _JSON_PASSWORD):
            text = pattern.sub(lambda m: m.group("head") + MASK, text)
        return text


SECRETS = Redactor()


class ScrubbingFormatter(logging.Formatter):
    """A log formatter whose every line, traceback included, passes through SECRETS."""

    def format(self, record: logging.LogRecord) -> str:
        return str(SECRETS.scrub(super().format(record)))
