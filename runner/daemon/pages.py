"""The run pages for people: HTML over the same journal the JSON API reads.

    GET  /runs[?status=]          recent runs, those awaiting approval first
    GET  /runs/{id}               one run (runner/runpage.py renders it)
    GET  /signin[?next=]          the approver's sign-in form
    POST /signin                  token -> a short-lived session cookie (sessions.py)
    POST /signout
    POST /runs/{id}/decide        Approve or Decline, from a signed-in approver's form

Reading needs no sign-in: the page shows no secret (everything through the redactor) and
changes nothing. A decision needs a live session, the session's CSRF token in the form, a
same-origin request, and then goes through the one approval path (`Daemon.approve`, which
calls `runner/approval.py` `record` with the daemon's policy) exactly as the JSON API's
approvals do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote

from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..errors import JournalError, UsageError
from ..runpage import Viewer, message_page, run_page, runs_page, sign_in_page
from ..vocabulary import RunStatus
from .sessions import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    Session,
    Sessions,
    approver_of,
    cross_site,
    same_token,
    secure_cookie,
)

if TYPE_CHECKING:
    from starlette.requests import Request

    from .alerts import Alert
    from .service import Daemon

FORM_LIMIT = 16_384  # bytes of a posted form: a token, a remedy id, a fingerprint
RUNS_SHOWN = 100
HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
           "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                      "img-src 'self' data:; form-action 'self'; "
                                      "frame-ancestors 'none'; base-uri 'none'",
           "X-Content-Type-Options": "nosniff",
           # same-origin, not no-referrer: with no-referrer a browser's POST says Origin: null
           "Referrer-Policy": "same-origin"}


def routes(daemon: Daemon) -> list[Route]:
    pages = Pages(daemon)
    return [Route("/runs", pages.runs, methods=["GET"]),
            Route("/runs/{run_id}", pages.run, methods=["GET"]),
            Route("/runs/{run_id}/decide", pages.decide, methods=["POST"]),
            Route("/signin", pages.sign_in_form, methods=["GET"]),
            Route("/signin", pages.sign_in, methods=["POST"]),
            Route("/signout", pages.sign_out, methods=["POST"])]


def html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers=HEADERS)


class Pages:
    def __init__(self, daemon: Daemon, sessions: Sessions | None = None) -> None:
        self.daemon = daemon
        self.sessions = sessions or Sessions()

    def session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(SESSION_COOKIE))

    def viewer(self, request: Request, next_url: str) -> Viewer:
        session = self.session(request)
        sign_in = f"/signin?next={quote(next_url, safe='/')}"
        if session is None:
            return Viewer(sign_in=sign_in)
        return Viewer(approver=session.approver, csrf=session.csrf, sign_in=sign_in)

    async def runs(self, request: Request) -> Response:
        status = request.query_params.get("status") or None
        if status is not None and status not in set(RunStatus):
            return html(runs_page([], status=status, statuses=list(RunStatus)), 400)
        rows = await run_in_threadpool(self.daemon.journal.runs, RUNS_SHOWN, status)
        return html(runs_page(rows, status=status, statuses=list(RunStatus)))

    async def run(self, request: Request, notice: str = "", code: int = 200) -> Response:
        run_id = request.path_params["run_id"]
        try:
            state = await run_in_threadpool(self.daemon.journal.state, run_id)
        except JournalError as exc:
            return html(message_page("No such run", str(exc)), 404)
        alerts = await run_in_threadpool(self.daemon.inbox.alerts_of, run_id)
        return html(run_page(state, viewer=self.viewer(request, f"/runs/{run_id}"),
                             links=alert_links(alerts), notice=notice, base="",
                             alerts=[a.model_dump(mode="json") for a in alerts]),
                    code)

    async def form(self, request: Request) -> dict[str, str] | None:
        """The posted urlencoded form (first value of each field); None when too big."""
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > FORM_LIMIT:
                return None
        fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return {key: values[0] for key, values in fields.items()}

    async def decide(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return await self.run(request, "Sign in as an approver first (no session, or it "
                                           "expired): nothing was recorded", 401)
        if cross_site(request.headers, request.url.netloc):
            return await self.run(request, "Refused: this form came from another site", 403)
        fields = await self.form(request)
        if fields is None or not same_token(fields.get("csrf"), session.csrf):
            return await self.run(request, "Refused: the form's CSRF token is missing or "
                                           "wrong; reload the page and try again", 403)
        decision = fields.get("decision", "")
        if decision not in {"approve", "decline"}:
            return await self.run(request, "Refused: the decision must be approve or "
                                           "decline", 400)
        run_id = request.path_params["run_id"]
        try:
            await run_in_threadpool(self.daemon.approve, run_id, fields.get("remedy", ""),
                                    decision, session.approver,
                                    fields.get("fingerprint") or None)
        except JournalError as exc:
            return await self.run(request, str(exc), 404)
        except PermissionError as exc:
            return await self.run(request, f"Refused: {exc}", 403)
        except UsageError as exc:
            return await self.run(request, f"Refused: {exc}", 409)
        return RedirectResponse(f"/runs/{quote(run_id)}", status_code=303, headers=HEADERS)

    async def sign_in_form(self, request: Request, notice: str = "",
                           code: int = 200) -> Response:
        from secrets import token_urlsafe

        csrf = token_urlsafe(32)
        page = sign_in_page(action="/signin", csrf=csrf, notice=notice,
                            next_url=_local(request.query_params.get("next")))
        response = html(page, code)
        response.set_cookie(SIGN_IN_COOKIE, csrf, max_age=600, path="/signin", httponly=True,
                            samesite="strict", secure=self._secure(request))
        return response

    async def sign_in(self, request: Request) -> Response:
        fields = await self.form(request)
        if fields is None or cross_site(request.headers, request.url.netloc) or not \
                same_token(fields.get("csrf"), request.cookies.get(SIGN_IN_COOKIE)):
            return await self.sign_in_form(request, "Refused: the form's CSRF token is "
                                                    "missing or wrong; try again", 403)
        approver = approver_of(fields.get("token", ""),
                               self.daemon.access.credentials.approvers)
        if approver is None:
            self.daemon.log_once("pages:sign-in", "refused a sign-in: not an approver's token")
            return await self.sign_in_form(request, "That is not an approver's token", 401)
        session_id, _ = self.sessions.open(approver)
        response = RedirectResponse(_local(fields.get("next")), status_code=303,
                                    headers=HEADERS)
        response.set_cookie(SESSION_COOKIE, session_id, max_age=int(self.sessions.ttl),
                            path="/", httponly=True, samesite="strict",
                            secure=self._secure(request))
        response.delete_cookie(SIGN_IN_COOKIE, path="/signin")
        return response

    async def sign_out(self, request: Request) -> Response:
        session = self.session(request)
        fields = await self.form(request)
        if session is not None and fields is not None \
                and same_token(fields.get("csrf"), session.csrf):
            self.sessions.close(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/runs", status_code=303, headers=HEADERS)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @staticmethod
    def _secure(request: Request) -> bool:
        return secure_cookie(request.url.scheme, request.client.host if request.client
                             else None)


def alert_links(alerts: list[Alert], most: int = 20) -> list[dict[str, str]]:
    """Back to the alert: its group in Alertmanager (externalURL) or Grafana, a silence,
    each alert's generatorURL; once each (http(s) only, checked at intake)."""
    found: dict[str, str] = {}
    for alert in alerts:
        sender = "Grafana" if alert.source == "grafana" else "Alertmanager"
        for text, url in ((f"Open in {sender}", alert.group_url),
                          (f"Silence {alert.name}", alert.silence_url),
                          (f"Source of {alert.name}", alert.generator_url)):
            if url and url not in found and len(found) < most:
                found[url] = text
    return [{"text": text, "url": url} for url, text in found.items()]


def _local(next_url: str | None) -> str:
    """Where to go after signing in: a run page or the list, never another site."""
    if next_url and next_url.startswith("/runs") and "//" not in next_url \
            and "\\" not in next_url:
        return next_url
    return "/runs"
