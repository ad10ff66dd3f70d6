"""The daemon: an ASGI app (Starlette on uvicorn) plus a dispatcher and worker threads.

    POST /v1/alerts/alertmanager   Alertmanager webhook (version 4)      -> 202 once stored
    POST /v1/alerts                generic JSON alert(s)                  -> 202 once stored
    GET  /v1/runs[?status=&limit=] runs, as `runbook report --format json` shows them
    GET  /v1/runs/{id}
    POST /v1/runs/{id}/approvals   {"remedy": ..., "decision": "approve"|"decline"},
                                   with an approver's bearer token
    GET  /healthz                  liveness only: {"status": "ok"}, nothing about runs
    GET  /metrics                  Prometheus metrics (a reader's token unless
                                   `metrics: {auth: none}`)

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

A request with more than `max_alerts` alerts gets a 413 and nothing of it is stored.

Runs started here never approve anything themselves: remedies wait for an approval over
HTTP (or `runbook approve`), after which the dispatcher queues the run's resume and a
worker carries it on through the same gate, under the same per-target lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ..errors import JournalError, UsageError
from ..journal import Approval, Journal, new_run_id
from ..policy import Policy
from ..registry import Registry
from ..state import RunState
from . import notify
from .alerts import Alert, PayloadError, TooManyAlerts, from_alertmanager, from_generic
from .config import DaemonConfig
from .inbox import Inbox, Signed, Work
from .logonce import LogOnce

log = logging.getLogger("runbook.daemon")

SIGNATURE_MAX_AGE = 300.0  # seconds a signed request stays acceptable
SIGNATURE_MAX_AHEAD = 60.0  # seconds a sender's clock may run ahead of ours
RUNS_LIMIT_MAX = 500


class Metrics:
    """The daemon's Prometheus metrics, in a registry of its own."""

    def __init__(self, inbox: Inbox) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.received = Counter("runbook_alerts_received_total", "alerts accepted",
                                ["source", "status"], registry=self.registry)
        self.dispatched = Counter("runbook_alerts_dispatched_total",
                                  "alerts routed: started, joined (deduplicated), resolved, "
                                  "unrouted, refused (a target outside the route's rule)",
                                  ["outcome"], registry=self.registry)
        self.refused = Counter("runbook_alerts_refused_total", "requests refused at intake, "
                               "by reason", ["reason"], registry=self.registry)
        self.fingerprint_mismatch = Counter(
            "runbook_alerts_fingerprint_mismatch_total",
            "alerts whose sent fingerprint differs from their labels' (the computed one is "
            "used)", registry=self.registry)
        self.work_failed = Counter("runbook_work_failed_total", "work items that raised",
                                   ["kind"], registry=self.registry)
        self.runs = Counter("runbook_runs_total", "engine passes by the status they ended in",
                            ["playbook", "status"], registry=self.registry)
        self.steps = Histogram("runbook_step_duration_seconds", "diagnostic step durations",
                               ["kind"], registry=self.registry,
                               buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300))
        self.notify_failed = Counter("runbook_notifications_failed_total",
                                     "notifications that failed after their retries",
                                     registry=self.registry)
        depth = Gauge("runbook_queue_depth", "queued runs waiting for a worker",
                      registry=self.registry)
        depth.set_function(inbox.queue_depth)
        pending = Gauge("runbook_alerts_undispatched", "stored alerts not yet routed",
                        registry=self.registry)
        pending.set_function(inbox.undispatched)

    def observe_run(self, state: RunState) -> None:
        self.runs.labels(state.playbook, state.status).inc()
        for step in state.steps.values():
            if step.duration_ms is not None:
                self.steps.labels(step.kind).observe(step.duration_ms / 1000)


class IntakeWriter:
    """Group commit: requests hand over their alerts; one thread stores everything waiting
    in a single transaction, then answers each request. Each 202 still follows its commit;
    the commit is shared, which is what makes intake fast under load."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.waiting: queue.Queue[tuple[list[Alert], Signed | None, Any, Any] | None] = (
            queue.Queue())
        self.thread = threading.Thread(target=self._run, name="intake-writer", daemon=True)

    async def store(self, alerts: list[Alert], signed: Signed | None = None) -> list[int] | None:
        """The alerts' ids once committed; None when `signed` was seen before (a replay)."""
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        self.waiting.put((alerts, signed, loop, answer))
        ids = await answer
        return None if ids is None else list(ids)

    def _run(self) -> None:
        while (first := self.waiting.get()) is not None:
            batch = [first]
            while len(batch) < 500:
                try:
                    more = self.waiting.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.waiting.put(None)  # stop after this batch
                    break
                batch.append(more)
            try:
                stored: list[Any] = self.inbox.store_batches(
                    [alerts for alerts, _, _, _ in batch], [signed for _, signed, _, _ in batch])
            except Exception as exc:
                log.exception("storing alerts failed")
                stored = [exc] * len(batch)
            for (_, _, loop, answer), ids in zip(batch, stored, strict=True):
                loop.call_soon_threadsafe(_settle, answer, ids)

    def stop(self) -> None:
        self.waiting.put(None)


def _settle(answer: Any, ids: Any) -> None:
    if answer.done():  # the request went away meanwhile
        return
    if isinstance(ids, Exception):
        answer.set_exception(ids)
    else:
        answer.set_result(ids)


class Daemon:
    """Dispatcher and workers around one journal; the HTTP app is built on top."""

    def __init__(self, config: DaemonConfig, journal: Journal, registry: Registry,
                 clock: Callable[[], float] = time.time) -> None:
        self.config, self.journal, self.registry = config, journal, registry
        self.inbox = Inbox(journal, config, clock)
        self.log_once = LogOnce(log)
        self.writer = IntakeWriter(self.inbox)
        self.metrics = Metrics(self.inbox)
        self.notifier = notify.Notifier(list(config.notify), journal)
        self.stopping = threading.Event()
        self.new_alerts = threading.Event()
        self.new_work = threading.Event()
        self.threads: list[threading.Thread] = []
        self.sender_token = _env_secret(config.auth.token_env or config.auth.secret_env)
        self.approvers = {_env_secret(a.token_env): name for name, a in config.approvers.items()}
        self.metrics_token = _env_secret(config.metrics.token_env)

    # Lifecycle

    def start(self) -> None:
        interrupted = self.journal.mark_interrupted()
        requeued = self.inbox.requeue_running()
        if interrupted or requeued:
            log.warning("recovered after a stop: %d run(s) interrupted, %d work item(s) "
                        "requeued", len(interrupted), requeued)
        self.writer.thread.start()
        self.threads = [threading.Thread(target=self._dispatch_loop, name="dispatcher",
                                         daemon=True)]
        self.threads += [threading.Thread(target=self._work_loop, name=f"worker-{i}",
                                          daemon=True)
                         for i in range(self.config.max_concurrent_runs)]
        for thread in self.threads:
            thread.start()

    def stop(self, grace: float = 30.0) -> None:
        """Stop claiming work; let running runs finish within the grace period. A run still
        going after it stays `running` and shows as interrupted, resumable, on restart."""
        self.stopping.set()
        self.writer.stop()
        self.new_alerts.set()
        self.new_work.set()
        for thread in self.threads:
            thread.join(timeout=grace)

    # Dispatcher

    def _dispatch_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                handled = self.dispatch_once()
            except Exception as exc:  # keep the loop alive; the alerts stay stored and retried
                self.log_once(f"dispatch:{type(exc).__name__}", f"dispatch failed: {exc}",
                              level=logging.ERROR, exc_info=True)
                handled = 0
            if not handled:
                self.new_alerts.wait(0.5)
                self.new_alerts.clear()

    def dispatch_once(self) -> int:
        dispatched = self.inbox.dispatch()
        for item in dispatched:
            self.metrics.dispatched.labels(item.outcome).inc()
            if item.reason:
                self.log_once(item.reason_class, f"alert {item.alert.name} {item.outcome}: "
                                                 f"{item.reason}")
            if item.closes and item.run_id:
                self._say_resolved(item.run_id)
        resumes = self.inbox.queue_approved_resumes()
        if any(d.outcome == "started" for d in dispatched) or resumes:
            self.new_work.set()
        return len(dispatched) + len(resumes)

    def _say_resolved(self, run_id: str) -> None:
        """RESOLVED, once, after the run's own messages (the dispatcher and the worker both
        ask; whichever comes second, when the run is finished and all alerts resolved, wins)."""
        if not self.inbox.claim_resolved_notice(run_id):
            return
        alerts = self.inbox.alerts_of(run_id)
        self.journal.append(run_id, "alert.resolved", {"alerts": len(alerts)})
        self._notify(run_id, notify.resolved(self.journal.state(run_id), alerts))

    # Workers

    def _work_loop(self) -> None:
        while not self.stopping.is_set():
            item = self.inbox.claim()
            if item is None:
                self.new_work.wait(0.5)
                self.new_work.clear()
                continue
            try:
                state = self.run(item)
                self.inbox.finish(item.id)
                self._say_resolved(state.run_id)  # its alerts may have resolved meanwhile
            except Exception as exc:
                self.metrics.work_failed.labels(item.kind).inc()
                self.log_once(f"work:{item.kind}:{item.playbook}:{type(exc).__name__}",
                              f"work {item.id} ({item.kind} {item.playbook}) failed: {exc}",
                              level=logging.ERROR, exc_info=True)
                self.inbox.finish(item.id, error=str(exc)[:2000])

    def run(self, item: Work) -> RunState:
        from ..redact import SECRETS

        with SECRETS.scope():  # one run's secrets never mask another concurrent run's data
            return self._run_in_scope(item)

    def _run_in_scope(self, item: Work) -> RunState:
        from dataclasses import replace

        from ..engine import Engine
        from ..gate import Gate

        gate = Gate(self.journal, self.registry, approver="daemon", prompter=None,
                    policy=self.policy())
        engine = Engine(self.registry, self.journal, gate)
        inventory = self._inventory()
        run_id = item.run_id
        resuming = item.kind == "resume" or (run_id is not None and self._exists(run_id))
        if resuming and run_id is not None:
            from ..plan import replan

            plan = replan(self.journal.get_run(run_id).source, inventory, self.registry)
            state = engine.resume(plan, run_id, by="daemon")
            message = notify.update(state)
        else:
            from ..catalog import resolve
            from ..loader import load
            from ..plan import make_plan, provenance

            loaded = load(resolve(item.playbook, self._playbook_dirs()), self.registry)
            plan = make_plan(loaded, inventory, self.registry, item.targets, item.params)
            plan = replace(plan, provenance=provenance(self._inventory_paths(), plan,
                                                       self.policy().to_json()))
            run_id = new_run_id()
            self.inbox.set_run(item.id, run_id)
            state = engine.start(plan, run_id, trigger=f"alert route {item.route}",
                                 requested_by=f"alert:{item.route}")
            message = notify.incident(state, self.inbox.alerts_of(run_id))
        self.metrics.observe_run(state)
        self._notify(run_id, message)
        return state

    def _notify(self, run_id: str, message: dict[str, Any]) -> None:
        self.metrics.notify_failed.inc(self.notifier.send(run_id, message))

    def _exists(self, run_id: str) -> bool:
        try:
            self.journal.get_run(run_id)
        except JournalError:
            return False
        return True

    def _inventory(self) -> Any:
        from .. import inventory

        return inventory.load(self._inventory_paths(), self.registry)

    def _inventory_paths(self) -> list[Path]:
        from ..paths import inventory_paths

        return [Path(p) for p in self.config.inventory] or inventory_paths()

    def _playbook_dirs(self) -> list[Path]:
        from ..paths import playbook_dirs

        return [Path(p) for p in self.config.playbooks] or playbook_dirs()

    # Approvals

    def approve(self, run_id: str, remedy_id: str, decision: str, approver: str,
                fingerprint: str | None = None) -> Approval:
        """Through the one approval path (runner.approval), as `runbook approve` is;
        `fingerprint`, when given, must be the proposal's now."""
        from ..approval import APPROVED, DECLINED, ApprovalRefused, record

        try:
            approval = record(self.journal, run_id, remedy_id,
                              decision=APPROVED if decision == "approve" else DECLINED,
                              by=approver, how=f"HTTP POST /v1/runs/{run_id}/approvals",
                              policy=self.policy(), fingerprint=fingerprint)
        except ApprovalRefused as exc:
            if exc.forbidden:
                raise PermissionError(str(exc)) from None
            raise
        self.new_alerts.set()  # the dispatcher queues the resume
        return approval

    def policy(self) -> Policy:
        """The daemon's approval settings and the policy file, the stricter of both."""
        from ..policy import load

        configured = Policy(self.config.approval_ttl, self.config.four_eyes,
                            source="the daemon's config")
        return configured.stricter(load(None, self._inventory_paths()))


def _env_secret(name: str | None) -> str | None:
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise UsageError(f"{name} is not set: the daemon needs it")
    from ..redact import SECRETS

    SECRETS.register(value)
    return value


# The HTTP app


def build_app(daemon: Daemon) -> Any:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    config = daemon.config

    def problem(status: int, error: str, **extra: Any) -> JSONResponse:
        return JSONResponse({"error": error, **extra}, status_code=status)

    async def body_of(request: Request) -> bytes | Response:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > config.body_limit:
            return problem(413, f"body larger than {config.body_limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > config.body_limit:
                return problem(413, f"body larger than {config.body_limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def bearer(request: Request) -> str:
        header = request.headers.get("authorization", "")
        return header[7:].strip() if header.lower().startswith("bearer ") else ""

    class Unauthorized(Exception):
        """Why a sender was refused (said in the 401: it names no secret)."""

    def sender_check(request: Request, body: bytes) -> Signed | None:
        """None when the sender is authenticated (and the request unsigned); the signature
        to remember for a signed request; raises Unauthorized."""
        mode, secret = config.auth.mode, daemon.sender_token or ""
        if mode == "none":
            return None
        if mode == "bearer":
            if not hmac.compare_digest(bearer(request).encode(), secret.encode()):
                raise Unauthorized("a valid bearer token is required")
            return None
        stamp = request.headers.get("x-runbook-timestamp", "")
        if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
            raise Unauthorized("X-Runbook-Timestamp (unix seconds) is required")
        age = daemon.inbox.clock() - int(stamp)
        if age > SIGNATURE_MAX_AGE or age < -SIGNATURE_MAX_AHEAD:
            raise Unauthorized(f"X-Runbook-Timestamp is {age:+.0f} s from the daemon's clock:"
                               f" at most {SIGNATURE_MAX_AGE:.0f} s old and "
                               f"{SIGNATURE_MAX_AHEAD:.0f} s ahead are accepted")
        digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        expected = "sha256=" + digest.hexdigest()
        signature = request.headers.get("x-runbook-signature", "")
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise Unauthorized("X-Runbook-Signature: sha256=HMAC(secret, timestamp.body) "
                               "is required")
        return Signed(expected, int(stamp) + SIGNATURE_MAX_AGE)

    def token_in(request: Request, tokens: list[str | None]) -> bool:
        token = bearer(request).encode()
        # every candidate compared, so the time taken says nothing about which one matched
        return sum(hmac.compare_digest(token, t.encode()) for t in tokens if t) > 0

    def reader_ok(request: Request) -> bool:
        if config.auth.mode == "none":
            return True
        known = [daemon.sender_token] if config.auth.mode == "bearer" else []
        return token_in(request, [*known, *daemon.approvers])

    def metrics_ok(request: Request) -> bool:
        if config.metrics.auth == "none":
            return True
        if daemon.metrics_token:
            return token_in(request, [daemon.metrics_token])
        return reader_ok(request)

    def intake(parse: Callable[[bytes, int], list[Alert]]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            body = await body_of(request)
            if isinstance(body, Response):
                daemon.metrics.refused.labels("body_limit").inc()
                return body
            try:
                signed = sender_check(request, body)
            except Unauthorized as exc:
                daemon.metrics.refused.labels("unauthorized").inc()
                return problem(401, f"unauthorized: {exc}")
            try:
                alerts = parse(body, config.max_alerts)
            except TooManyAlerts as exc:
                daemon.metrics.refused.labels("max_alerts").inc()
                daemon.log_once("intake:max_alerts", f"refused a request: {exc}")
                return problem(413, "too many alerts", problems=exc.problems)
            except PayloadError as exc:
                daemon.metrics.refused.labels("invalid").inc()
                return problem(400, "invalid payload", problems=exc.problems)
            ids = await daemon.writer.store(alerts, signed)  # committed before the 202
            if ids is None:
                daemon.metrics.refused.labels("replayed").inc()
                daemon.log_once("intake:replayed", "refused a replayed signed request (its "
                                                   "signature was accepted before)")
                return problem(401, "unauthorized: this signature was already used (a "
                                    "replay); sign each request with a fresh timestamp")
            mismatched = [a for a in alerts if a.sent_fingerprint]
            if mismatched:
                daemon.metrics.fingerprint_mismatch.inc(len(mismatched))
                first = mismatched[0]
                daemon.log_once("intake:fingerprint", f"{len(mismatched)} alert(s) sent a "
                                "fingerprint that does not match their labels; runbook uses "
                                f"the labels' (first: sent {first.sent_fingerprint[:40]!r}, "
                                f"computed {first.fingerprint})")
            for alert in alerts:
                daemon.metrics.received.labels(alert.source, alert.status).inc()
            daemon.new_alerts.set()
            return JSONResponse({"accepted": len(ids), "ids": ids}, status_code=202)
        return endpoint

    async def runs(request: Request) -> Response:
        if not reader_ok(request):
            return problem(401, "unauthorized")
        text = request.query_params.get("limit", "50")
        if not (text.isascii() and text.isdigit() and len(text) < 8) or int(text) < 1:
            return problem(400, f"limit must be a whole number from 1 (at most "
                                f"{RUNS_LIMIT_MAX} are returned), not {text[:20]!r}")
        limit = min(int(text), RUNS_LIMIT_MAX)
        rows = await run_in_threadpool(daemon.journal.runs, limit,
                                       request.query_params.get("status"))
        states = [await run_in_threadpool(daemon.journal.state, row.id) for row in rows]
        return JSONResponse({"runs": [s.to_json() for s in states]})

    async def run(request: Request) -> Response:
        if not reader_ok(request):
            return problem(401, "unauthorized")
        try:
            state = await run_in_threadpool(daemon.journal.state, request.path_params["run_id"])
        except JournalError as exc:
            return problem(404, str(exc))
        return JSONResponse(state.to_json())

    async def approvals(request: Request) -> Response:
        approver = daemon.approvers.get(bearer(request))
        if approver is None:
            return problem(401, "unauthorized: an approver's bearer token is required")
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        import json

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
            approval = await run_in_threadpool(daemon.approve, request.path_params["run_id"],
                                               remedy, decision, approver, seen)
        except JournalError as exc:
            return problem(404, str(exc))
        except UsageError as exc:
            return problem(409, str(exc))
        except PermissionError as exc:
            return problem(403, str(exc))
        return JSONResponse({"run_id": approval.run_id, "remedy": approval.remedy,
                             "decision": approval.decision, "by": approval.by,
                             "at": approval.at}, status_code=202)

    async def healthz(request: Request) -> Response:
        # unauthenticated: says it is alive and nothing else (no playbooks, kinds, counts)
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if not metrics_ok(request):
            return problem(401, "unauthorized: /metrics needs a token (or metrics: "
                                "{auth: none} in the daemon config)")
        return PlainTextResponse(generate_latest(daemon.metrics.registry),
                                 media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        daemon.start()
        yield
        await run_in_threadpool(daemon.stop)

    return Starlette(routes=[
        Route("/v1/alerts/alertmanager", intake(from_alertmanager), methods=["POST"]),
        Route("/v1/alerts", intake(from_generic), methods=["POST"]),
        Route("/v1/runs", runs, methods=["GET"]),
        Route("/v1/runs/{run_id}", run, methods=["GET"]),
        Route("/v1/runs/{run_id}/approvals", approvals, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ], lifespan=lifespan)


def serve(config_path: Path, host: str | None = None, port: int | None = None) -> int:
    """`runbook daemon`: run until SIGTERM/SIGINT, then shut down gracefully."""
    import uvicorn

    from ..paths import home
    from ..registry import default_registry
    from .config import load, warnings

    config = load(config_path)
    from ..redact import ScrubbingFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(ScrubbingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    for warning in warnings(config):
        log.warning("config %s: %s", config_path, warning)
    daemon = Daemon(config, Journal(home()), default_registry())
    server = uvicorn.Server(uvicorn.Config(
        build_app(daemon), host=host or config.listen.host, port=port or config.listen.port,
        log_level="warning", access_log=False, timeout_graceful_shutdown=30))
    log.info("runbook daemon on http://%s:%s, journal %s", server.config.host,
             server.config.port, home())
    server.run()
    return 0


def check(config_path: Path) -> int:
    """`runbook daemon --check`: validate the config (an invalid one raises, with
    file:line), print what is unsafe in a valid one, and exit; 0 whenever it loads."""
    from .config import load, warnings

    config = load(config_path)
    found = warnings(config)
    for warning in found:
        print(f"warning: {warning}")
    print(f"{config_path}: valid, {len(config.routes)} route(s), {len(found)} warning(s)")
    return 0
