"""Who may call the daemon: senders of alerts, readers of runs, approvers, scrapers of
/metrics. It reads request headers only, so it knows nothing of the web framework.

Intake authentication (`auth.mode`):

    bearer  Authorization: Bearer <token>
    hmac    X-Runbook-Timestamp: <unix seconds, now>
            X-Runbook-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>
            A timestamp more than 5 minutes old or 1 minute ahead is refused, and so is a
            signature already accepted (kept in the journal, so across restarts too):
            a captured request cannot be replayed. A sender signs, in Python:
                ts = str(int(time.time()))
                sig = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    none    loopback only
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import UsageError
from .config import DaemonConfig
from .inbox import Signed

SIGNATURE_MAX_AGE = 300.0  # seconds a signed request stays acceptable
SIGNATURE_MAX_AHEAD = 60.0  # seconds a sender's clock may run ahead of ours


class Unauthorized(Exception):
    """Why a sender was refused (said in the 401: it names no secret)."""


@dataclass(frozen=True)
class Credentials:
    """The daemon's secrets, read from the environment once, at start."""

    sender: str | None  # the intake's bearer token or HMAC secret
    approvers: dict[str | None, str]  # bearer token -> the approver's name
    metrics: str | None  # a scrape token of its own, if configured

    @classmethod
    def from_env(cls, config: DaemonConfig) -> Credentials:
        """Raises UsageError when a variable the config names is not set."""
        return cls(sender=_env_secret(config.auth.token_env or config.auth.secret_env),
                   approvers={_env_secret(a.token_env): name
                              for name, a in config.approvers.items()},
                   metrics=_env_secret(config.metrics.token_env))


def _env_secret(name: str | None) -> str | None:
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise UsageError(f"{name} is not set: the daemon needs it")
    from ..redact import SECRETS

    SECRETS.register(value)
    return value


def bearer(headers: Mapping[str, str]) -> str:
    header = headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


class Access:
    """The daemon's checks of who is calling, one per kind of caller."""

    def __init__(self, config: DaemonConfig, credentials: Credentials) -> None:
        self.config, self.credentials = config, credentials

    def sender(self, headers: Mapping[str, str], body: bytes, now: float) -> Signed | None:
        """None when the sender is authenticated (and the request unsigned); the signature
        to remember for a signed request; raises Unauthorized."""
        mode, secret = self.config.auth.mode, self.credentials.sender or ""
        if mode == "none":
            return None
        if mode == "bearer":
            if not hmac.compare_digest(bearer(headers).encode(), secret.encode()):
                raise Unauthorized("a valid bearer token is required")
            return None
        stamp = headers.get("x-runbook-timestamp", "")
        if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
            raise Unauthorized("X-Runbook-Timestamp (unix seconds) is required")
        age = now - int(stamp)
        if age > SIGNATURE_MAX_AGE or age < -SIGNATURE_MAX_AHEAD:
            raise Unauthorized(f"X-Runbook-Timestamp is {age:+.0f} s from the daemon's clock:"
                               f" at most {SIGNATURE_MAX_AGE:.0f} s old and "
                               f"{SIGNATURE_MAX_AHEAD:.0f} s ahead are accepted")
        digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        expected = "sha256=" + digest.hexdigest()
        signature = headers.get("x-runbook-signature", "")
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise Unauthorized("X-Runbook-Signature: sha256=HMAC(secret, timestamp.body) "
                               "is required")
        return Signed(expected, int(stamp) + SIGNATURE_MAX_AGE)

    def reader(self, headers: Mapping[str, str]) -> bool:
        """May read runs: the sender's bearer token or an approver's."""
        if self.config.auth.mode == "none":
            return True
        known = [self.credentials.sender] if self.config.auth.mode == "bearer" else []
        return _token_in(headers, [*known, *self.credentials.approvers])

    def scraper(self, headers: Mapping[str, str]) -> bool:
        """May read /metrics: anyone under `metrics: {auth: none}`, else the scrape token,
        else whoever may read runs."""
        if self.config.metrics.auth == "none":
            return True
        if self.credentials.metrics:
            return _token_in(headers, [self.credentials.metrics])
        return self.reader(headers)

    def approver(self, headers: Mapping[str, str]) -> str | None:
        """The name of the approver whose bearer token this is."""
        return self.credentials.approvers.get(bearer(headers))


def _token_in(headers: Mapping[str, str], tokens: list[str | None]) -> bool:
    token = bearer(headers).encode()
    # every candidate compared, so the time taken says nothing about which one matched
    return sum(hmac.compare_digest(token, t.encode()) for t in tokens if t) > 0
