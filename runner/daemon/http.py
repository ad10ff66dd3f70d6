"""The daemon's HTTP API (Starlette on uvicorn): routes, request parsing and answers. Who
may call is decided in `auth.py`; what happens to the alerts, in `service.py`.

    POST /v1/alerts/alertmanager   Alertmanager webhook (version 4)      -> 202 once stored
    POST /v1/alerts/grafana        Grafana webhook (version 1; also taken above)
    POST /v1/alerts                generic JSON alert(s)                  -> 202 once stored
    GET  /v1/runs[?status=&limit=] runs, as `runbook report --format json` shows them
    GET  /v1/runs/{id}
    POST /v1/runs/{id}/approvals   {"remedy": ..., "decision": "approve"|"decline"},
                                   with an approver's bearer token
    POST /v1/slack/interactions    Slack's signed button clicks (slackapp.py)
    GET  /healthz                  ready: {"status": "ok"} once the journal answers a
                                   query, else 503; `?live`: the process answers
                                   (liveness). Nothing about runs either way
    GET  /metrics                  Prometheus metrics (a reader's token unless
                                   `metrics: {auth: none}`)
    GET  /runs, /runs/{id}         the HTML run pages, and their sign-in (pages.py)

A request with more than `max_alerts` alerts gets a 413 and nothing of it is stored.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..errors import JournalError, JournalUnavailable, UsageError
from . import pages
from .alerts import (
    Alert,
    PayloadError,
    TooManyAlerts,
    from_alertmanager,
    from_generic,
    from_grafana,
)
from .auth import Unauthorized
from .service import Daemon
from .slackapp import Refused

RUNS_LIMIT_MAX = 500

Endpoint = Callable[[Request], Awaitable[Response]]


def build_app(daemon: Daemon) -> Starlette:
    api = Api(daemon)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        daemon.start()
        yield
        await run_in_threadpool(daemon.stop)

    return Starlette(routes=[
        Route("/v1/alerts/alertmanager", api.intake(from_alertmanager), methods=["POST"]),
        Route("/v1/alerts/grafana", api.intake(from_grafana), methods=["POST"]),
        Route("/v1/alerts", api.intake(from_generic), methods=["POST"]),
        Route("/v1/runs", api.runs, methods=["GET"]),
        Route("/v1/runs/{run_id}", api.run, methods=["GET"]),
        Route("/v1/runs/{run_id}/events", api.events, methods=["GET"]),
        Route("/v1/runs/{run_id}/approvals", api.approvals, methods=["POST"]),
        Route("/v1/slack/interactions", api.slack_interactions, methods=["POST"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        *pages.routes(daemon),  # the HTML run pages for people (pages.py)
    ], lifespan=lifespan)


def problem(status: int, error: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, **extra}, status_code=status)


class Api:
    """The endpoints, over one daemon."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon, self.config, self.access = daemon, daemon.config, daemon.access

    async def body_of(self, request: Request) -> bytes | Response:
        limit = self.config.body_limit
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return problem(413, f"body larger than {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return problem(413, f"body larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def intake(self, parse: Callable[[bytes, int], list[Alert]]) -> Endpoint:
        daemon, refused = self.daemon, self.daemon.metrics.refused

        async def endpoint(request: Request) -> Response:
            body = await self.body_of(request)
            if isinstance(body, Response):
                refused.labels("body_limit").inc()
                return body
            try:
                signed = self.access.sender(request.headers, body, daemon.inbox.clock())
            except Unauthorized as exc:
                refused.labels("unauthorized").inc()
                return problem(401, f"unauthorized: {exc}")
            try:
                alerts = parse(body, self.config.max_alerts)
            except TooManyAlerts as exc:
                refused.labels("max_alerts").inc()
                daemon.log_once("intake:max_alerts", f"refused a request: {exc}")
                return problem(413, "too many alerts", problems=exc.problems)
            except PayloadError as exc:
                refused.labels("invalid").inc()
                return problem(400, "invalid payload", problems=exc.problems)
            ids = await daemon.writer.store(alerts, signed)  # committed before the 202
            if ids is None:
                refused.labels("replayed").inc()
                daemon.log_once("intake:replayed", "refused a replayed signed request (its "
                                                   "signature was accepted before)")
                return problem(401, "unauthorized: this signature was already used (a "
                                    "replay); sign each request with a fresh timestamp")
            self._note_fingerprint_mismatches(alerts)
            for alert in alerts:
                daemon.metrics.received.labels(alert.source, alert.status).inc()
            daemon.new_alerts.set()
            return JSONResponse({"accepted": len(ids), "ids": ids}, status_code=202)
        return endpoint

    def _note_fingerprint_mismatches(self, alerts: list[Alert]) -> None:
        mismatched = [a for a in alerts if a.sent_fingerprint]
        if mismatched:
            self.daemon.metrics.fingerprint_mismatch.inc(len(mismatched))
            first = mismatched[0]
            self.daemon.log_once("intake:fingerprint", f"{len(mismatched)} alert(s) sent a "
                                 "fingerprint that does not match their labels; runbook uses "
                                 f"the labels' (first: sent {first.sent_fingerprint[:40]!r}, "
                                 f"computed {first.fingerprint})")

    async def runs(self, request: Request) -> Response:
        if not self.access.reader(request.headers):
            return problem(401, "unauthorized")
        text = request.query_params.get("limit", "50")
        if not (text.isascii() and text.isdigit() and len(text) < 8) or int(text) < 1:
            return problem(400, f"limit must be a whole number from 1 (at most "
                                f"{RUNS_LIMIT_MAX} are returned), not {text[:20]!r}")
        limit = min(int(text), RUNS_LIMIT_MAX)
        journal = self.daemon.journal
        rows = await run_in_threadpool(journal.runs, limit, request.query_params.get("status"))
        states = [await run_in_threadpool(journal.state, row.id) for row in rows]
        return JSONResponse({"runs": [s.to_json() for s in states]})

    async def run(self, request: Request) -> Response:
        if not self.access.reader(request.headers):
            return problem(401, "unauthorized")
        try:
            state = await run_in_threadpool(self.daemon.journal.state,
                                            request.path_params["run_id"])
        except JournalError as exc:
            return problem(404, str(exc))
        return JSONResponse(state.to_json())

    async def events(self, request: Request) -> Response:
        """The run's journal events (scrubbed when written): `runbook report --server`
        folds them into the same report as on the daemon's host."""
        if not self.access.reader(request.headers):
            return problem(401, "unauthorized")
        journal, run_id = self.daemon.journal, request.path_params["run_id"]
        try:
            await run_in_threadpool(journal.get_run, run_id)
        except JournalError as exc:
            return problem(404, str(exc))
        events = await run_in_threadpool(journal.events, run_id)
        return JSONResponse({"events": [{"seq": e.seq, "at": e.at, "type": e.type,
                                         "data": e.data} for e in events]})

    async def approvals(self, request: Request) -> Response:
        approver = self.access.approver(request.headers)
        if approver is None:
            return problem(401, "unauthorized: an approver's bearer token is required")
        body = await self.body_of(request)
        if isinstance(body, Response):
            return body
        try:
            data = json.loads(body)
            remedy, decision = str(data["remedy"]), str(data.get("decision", "approve"))
            if decision not in {"approve", "decline"}:
                raise ValueError("decision must be approve or decline")
            seen = data.get("fingerprint")  # optional: the proposal the approver looked at
            if seen is not None and not isinstance(seen, str):
                raise TypeError("fingerprint must be a string")
        except RecursionError:
            return problem(400, "invalid approval: JSON nested too deeply")
        except (ValueError, KeyError, TypeError) as exc:
            return problem(400, 'invalid approval: want {"remedy": ID, "decision": '
                                f'"approve"|"decline"}} ({exc})')
        try:
            approval = await run_in_threadpool(self.daemon.approve,
                                               request.path_params["run_id"], remedy,
                                               decision, approver, seen)
        except JournalError as exc:
            return problem(404, str(exc))
        except UsageError as exc:
            return problem(409, str(exc))
        except PermissionError as exc:
            return problem(403, str(exc))
        return JSONResponse({"run_id": approval.run_id, "remedy": approval.remedy,
                             "decision": approval.decision, "by": approval.by,
                             "at": approval.at}, status_code=202)

    async def slack_interactions(self, request: Request) -> Response:
        """A button pressed in Slack: signed by Slack, then decided; Slack hears the outcome
        after the 200 (it wants one within 3 seconds)."""
        slack = self.daemon.slack
        if slack is None:
            return problem(404, "no slack_app in the daemon config")
        body = await self.body_of(request)
        if isinstance(body, Response):
            return body
        try:
            await run_in_threadpool(slack.authenticate, request.headers, body,
                                    self.daemon.inbox.clock())
        except Refused as exc:
            self.daemon.metrics.refused.labels("slack_signature").inc()
            return problem(401, f"unauthorized: {exc}")
        try:
            then = await run_in_threadpool(slack.handle, body)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as exc:
            return problem(400, f"not a runbook button press: {type(exc).__name__}")
        return Response(status_code=200, background=BackgroundTask(then))

    async def healthz(self, request: Request) -> Response:
        # Unauthenticated: says whether it can serve and nothing else (no playbooks, kinds,
        # counts, nor why the journal fails: that goes to the log). A replica whose journal
        # does not answer must get no alerts (readiness); `?live` leaves the journal out, so
        # that an outage of the shared database does not restart every replica (liveness).
        if "live" not in request.query_params:
            try:
                await run_in_threadpool(self.daemon.journal.read, "SELECT 1")
            except JournalUnavailable as exc:
                self.daemon.log_once("healthz:journal", f"not ready: {exc}")
                return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics(self, request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if not self.access.scraper(request.headers):
            return problem(401, "unauthorized: /metrics needs a token (or metrics: "
                                "{auth: none} in the daemon config)")
        return PlainTextResponse(generate_latest(self.daemon.metrics.registry),
                                 media_type=CONTENT_TYPE_LATEST)
