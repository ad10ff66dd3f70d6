"""Browser sessions of approvers on the run pages: an approver's token, posted once, is
exchanged for a short-lived session; each session carries its own CSRF token.

A session id is 32 random bytes known only to this process (kept in memory, never in the
journal): a forged or altered cookie names no session, and a restart signs everyone out.
Nothing about the approver is in the cookie. The CSRF token is bound to the session and
checked on every POST in constant time; the sign-in form, posted before any session exists,
uses a double-submit token (a random cookie that must equal the form's field), so a
cross-site page cannot sign a browser in to an account of the attacker's choosing.

The cookie is HttpOnly, SameSite=Strict, Path=/, and Secure unless the page was reached
over plain http on a loopback address (a browser drops a Secure cookie sent over http, and
on loopback nothing on the network sees it).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

SESSION_COOKIE = "runbook_session"
SIGN_IN_COOKIE = "runbook_signin"  # the sign-in form's double-submit CSRF token
SESSION_TTL = 900.0  # seconds; an approver signs in again after 15 minutes
MAX_SESSIONS = 1000  # more live sessions drop the oldest (a flood of sign-ins stays bounded)


@dataclass(frozen=True)
class Session:
    approver: str
    csrf: str
    expires: float


class Sessions:
    """The live sessions of one daemon process."""

    def __init__(self, ttl: float = SESSION_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, approver: str) -> tuple[str, Session]:
        """A new session for `approver`: its id (the cookie's value) and the session."""
        session_id = secrets.token_urlsafe(32)
        session = Session(approver, secrets.token_urlsafe(32), self.clock() + self.ttl)
        with self._lock:
            self._expire()
            while len(self._sessions) >= MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[session_id] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session this cookie names, or None (unknown, forged or expired)."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires <= self.clock():
                del self._sessions[session_id]
                return None
            return session

    def close(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def _expire(self) -> None:
        now = self.clock()
        for key in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[key]


def same_token(given: str | None, expected: str | None) -> bool:
    """Two CSRF tokens match (both present, compared in constant time)."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def approver_of(token: str, approvers: Mapping[str | None, str]) -> str | None:
    """The approver whose token this is; every token compared, so the time taken says
    nothing about which one matched."""
    found = None
    for known, name in approvers.items():
        if known and hmac.compare_digest(token.encode(), known.encode()):
            found = name
    return found if token else None


def secure_cookie(scheme: str, client_host: str | None) -> bool:
    """Whether the cookie must be Secure: always, except plain http from loopback."""
    if scheme == "https":
        return True
    try:
        return not (client_host and ipaddress.ip_address(client_host).is_loopback)
    except ValueError:
        return True


def cross_site(headers: Mapping[str, str], host: str) -> bool:
    """A POST a browser marks as coming from another site (Sec-Fetch-Site) or another
    origin (Origin): refused before its CSRF token is even read."""
    site = headers.get("sec-fetch-site")
    if site and site not in {"same-origin", "none"}:
        return True
    origin = headers.get("origin")
    if origin and origin != "null":
        return origin.split("://", 1)[-1] != host
    return origin == "null"
