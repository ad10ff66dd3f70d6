"""HTTP endpoints: health checks, endpoint sweeps and error-rate sampling (httpx).

The check functions are plain functions of a client (an `httpx.Client`, or the probe
handle below), so other backends reuse them for a service's health URL:

    check_health(client, url, expect_status=..., expect_body=..., expect_json=...)
    sweep(client, urls)                 several URLs at once: all fail, or only some?
    error_rate(client, url, requests=20, window=5.0)

A failed check is the finding, not an error: they return `ok: false` with an
`error_class` that tells the failures apart:

    refused            nothing listens on the port (connection refused)
    timeout            connect or read timed out
    tls                certificate or handshake failure
    dns                the host name does not resolve
    network            any other connection failure (host or network unreachable, proxy)
    protocol           the server closed the connection or sent something not HTTP
    http_5xx           a 5xx status
    http_4xx           a 4xx status
    unexpected_status  any other status than expected (a 3xx: redirects are not followed)
    unexpected_body    expect_body missing from the body, or an expect_json field differs

`open_client()` gives other backends the same read-only handle for a service's health URL.
Only a misconfiguration raises (PermanentError: a URL that does not parse, a scheme other
than http/https, a URL outside the target's origin).

Probes get an `HttpProbe`: GET and HEAD only (checked by the handle, and again by the
client's transport, whatever is called on the client), to the target's origin only (its
headers may carry a token), with connect/read/write/pool timeouts from the target's
`timeout`, redirects not followed, and TLS verified unless the target says `verify_tls:
false` (every result of the http.* kinds then says `verify_tls: false`). The backend has
no mutating kind.

Inventory fields: `url` (base URL), `headers_env` (an env var holding `Header: value`
lines, e.g. an Authorization token; every value is masked wherever it would appear),
`verify_tls`, `timeout`.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runner.context import StepContext
from runner.errors import PermanentError
from runner.model import Duration
from runner.redact import SECRETS
from runner.registry import Backend, Registry, StepKind, Target

from .request_guard import check_http_request

if TYPE_CHECKING:
    import httpx

KIND = "http"
USER_AGENT = "runbook-probe"
READ_METHODS = frozenset({"GET", "HEAD"})
MAX_BODY = 1024 * 1024  # read at most this much of a body: a health check is not a download
EXCERPT_CHARS = 300


class HttpReader(Protocol):
    """What the check functions need of a client: `httpx.Client` and `HttpProbe` both fit."""

    def stream(self, method: str, url: str, /) -> AbstractContextManager[httpx.Response]: ...


class HttpSettings(BaseModel):
    """How to reach an HTTP service; secrets (headers) only by reference."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="base URL, e.g. https://api.example.com or .../healthz")
    headers_env: str | None = Field(None, description="env var holding `Header: value` lines")
    verify_tls: bool = Field(True, description="verify the server's certificate")
    timeout: Duration = Field(5.0, description="connect, read, write and pool timeout")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value, re.IGNORECASE):
            raise ValueError("the URL must start with http:// or https:// and name a host")
        if re.match(r"^https?://[^/@\s]*:[^/@\s]*@", value, re.IGNORECASE):
            raise ValueError("the URL holds a password: put credentials in an env var and "
                             "name it with headers_env")
        return value


# Clients and the probe handle


def make_client(*, timeout: float = 5.0, verify_tls: bool = True,
                headers: Mapping[str, str] | None = None,
                follow_redirects: bool = False) -> httpx.Client:
    """A client with every protocol-level timeout set (connect, read, write, pool).

    httpx's read timeout bounds each socket read, not the whole body; the engine's step
    deadline (and `HttpProbe.cancel`) bounds the rest.
    """
    import httpx

    client = httpx.Client(timeout=httpx.Timeout(timeout), verify=verify_tls,
                          follow_redirects=follow_redirects,
                          headers={"User-Agent": USER_AGENT, **(headers or {})})
    _read_only_transports(client)
    return client


def _read_only_transports(client: httpx.Client) -> None:
    """Wrap every transport the client may pick (its own, and each proxy mount it made from
    the environment): whatever method of the client is called, only GET and HEAD leave.
    httpx offers no public way to wrap the transports it builds itself, hence the private
    attributes; tests/unit/test_http.py proves both paths."""
    import httpx

    class ReadOnlyTransport(httpx.BaseTransport):
        def __init__(self, inner: httpx.BaseTransport) -> None:
            self.inner = inner

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            check_http_request(request.method)
            return self.inner.handle_request(request)

        def close(self) -> None:
            self.inner.close()

    client._transport = ReadOnlyTransport(client._transport)
    client._mounts = {pattern: ReadOnlyTransport(transport) if transport else None
                      for pattern, transport in client._mounts.items()}


def open_client(*, timeout: float = 5.0, verify_tls: bool = True,
                headers: Mapping[str, str] | None = None, base_url: str = "",
                target: str = "") -> HttpProbe:
    """A read-only handle on a fresh client: what other backends give their probes for a
    service's health URL. Close it (or `cancel()` it) when done."""
    return HttpProbe(make_client(timeout=timeout, verify_tls=verify_tls, headers=headers),
                     base_url, verify_tls=verify_tls, target=target)


def join_url(base: str, path: str) -> str:
    """`base` + `path`, with exactly one slash between; an empty path is the base itself.

    (httpx's own base_url appends a slash, so `.../healthz` would become `.../healthz/`.)
    """
    if not path:
        return base
    if not base:
        return path
    return base.rstrip("/") + "/" + path.lstrip("/")


def _origin(url: str) -> tuple[str, str]:
    match = re.match(r"^([a-z][a-z0-9+.-]*)://([^/?#]*)", url, re.IGNORECASE)
    if not match:
        return "", ""
    scheme, netloc = match.group(1).lower(), match.group(2).rpartition("@")[2].lower()
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    if default and not re.search(r":\d+$", netloc):
        netloc += default
    return scheme, netloc


class HttpProbe:
    """What a probe gets: GET and HEAD to its target's origin, nothing else.

    Relative URLs are joined to the target's base URL; an absolute URL must have the same
    origin, so the target's headers (a token, perhaps) never go anywhere else.
    """

    def __init__(self, client: httpx.Client, base_url: str = "", *, verify_tls: bool = True,
                 target: str = "") -> None:
        self._client = client
        self.base_url, self.verify_tls, self.target = base_url, verify_tls, target

    def url(self, path: str = "") -> str:
        """The absolute URL of `path` (relative to the base URL, or absolute and same-origin)."""
        if "://" not in path:
            return join_url(self.base_url, path)
        if self.base_url and _origin(path) != _origin(self.base_url):
            raise PermanentError(f"{self.target or 'http'}: {SECRETS.scrub(path)} is outside "
                                 f"the target's origin {self.base_url}")
        return path

    def _method(self, method: str) -> str:
        method = method.upper()
        if method not in READ_METHODS:
            raise PermanentError(f"{self.target or 'http'}: a probe may only read "
                                 f"(GET, HEAD), not {method}")
        return method

    @contextmanager
    def stream(self, method: str, url: str = "", /) -> Iterator[httpx.Response]:
        with self._client.stream(self._method(method), self.url(url)) as response:
            yield response

    def request(self, method: str, url: str = "") -> httpx.Response:
        return self._client.request(self._method(method), self.url(url))

    def get(self, url: str = "") -> httpx.Response:
        return self.request("GET", url)

    def head(self, url: str = "") -> httpx.Response:
        return self.request("HEAD", url)

    def cancel(self) -> None:
        """Close the client (called from another thread when a step times out)."""
        self._client.close()

    def close(self) -> None:
        self._client.close()


# The checks


def check_health(client: HttpReader, url: str, *, expect_status: int | None = None,
                 expect_body: str | None = None,
                 expect_json: dict[str, Any] | None = None) -> dict[str, Any]:
    """One GET of `url`; never raises for a failed check (see the module docstring).

    Default expectation: any 2xx. `expect_json` maps field paths to values: {"status": "ok"},
    {"db.state": "up"} (dots go into objects, numbers into lists); nested objects in the
    expectation are read as paths too. Result: {ok, url, status, latency_ms, error_class,
    error, body_excerpt}.
    """
    import httpx

    result: dict[str, Any] = {"ok": False, "url": SECRETS.scrub(url), "status": None,
                              "latency_ms": None, "error_class": None, "error": None,
                              "body_excerpt": None}
    started = time.perf_counter()
    try:
        with client.stream("GET", url) as response:
            body, truncated = _read_capped(response)
            status, reason = response.status_code, response.reason_phrase
            encoding = response.encoding or "utf-8"
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise PermanentError(f"cannot request {SECRETS.scrub(url)}: {_message(exc)}") from None
    except httpx.HTTPError as exc:
        result.update(latency_ms=_ms_since(started), error_class=_failure_class(exc),
                      error=_message(exc))
        return result
    text = body.decode(encoding, errors="replace")
    result.update(status=status, latency_ms=_ms_since(started),
                  body_excerpt=SECRETS.scrub(" ".join(text[:EXCERPT_CHARS].split())))
    error_class, error = _check_status(status, reason, expect_status)
    if error_class is None:
        error_class, error = _check_body(text, truncated, expect_body, expect_json)
    result.update(ok=error_class is None, error_class=error_class,
                  error=None if error is None else SECRETS.scrub(error))
    return result


def sweep(client: HttpReader, urls: list[str], *, max_concurrency: int = 8) -> dict[str, Any]:
    """check_health on each URL at once (threads); results in the order of `urls`.

    `all_fail` (every endpoint down: a shared dependency, the database?) versus `some_fail`
    (one endpoint down: that endpoint's code) is how the runbooks branch.
    """
    if urls:
        with ThreadPoolExecutor(max_workers=max(1, min(max_concurrency, len(urls))),
                                thread_name_prefix="http-sweep") as pool:
            results = list(pool.map(lambda url: check_health(client, url), urls))
    else:
        results = []
    failing = [r["url"] for r in results if not r["ok"]]
    total, failed = len(results), len(failing)
    return {"total": total, "ok": total - failed, "failed": failed,
            "all_fail": total > 0 and failed == total, "some_fail": 0 < failed < total,
            "failing": failing, "results": results}


def error_rate(client: HttpReader, url: str, *, requests: int = 20, window: float = 5.0,
               max_concurrency: int = 8) -> dict[str, Any]:
    """`requests` GETs started evenly over `window` seconds (request i at i * window/requests).

    They run on up to `max_concurrency` threads, so a slow or timing-out answer does not push
    the others out of the window. Latency percentiles are over the requests that got an
    answer (any status); a connection refused in 1 ms is not a fast response.
    """
    interval = window / requests if requests else 0.0
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, min(max_concurrency, requests)),
                            thread_name_prefix="http-error-rate") as pool:
        futures, sent = [], []
        for i in range(requests):
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent.append(round(time.monotonic() - start, 3))
            futures.append(pool.submit(check_health, client, url))
        results = [f.result() for f in futures]
    by_class: dict[str, int] = {}
    for r in results:
        if r["error_class"]:
            by_class[r["error_class"]] = by_class.get(r["error_class"], 0) + 1
    answered = sorted(r["latency_ms"] for r in results if r["status"] is not None)
    errors = sum(by_class.values())
    return {"url": SECRETS.scrub(url), "requests": requests, "window_s": window,
            "ok": requests - errors, "errors": errors,
            "error_pct": round(100.0 * errors / requests, 1) if requests else 0.0,
            "http_5xx": by_class.get("http_5xx", 0),
            "by_class": dict(sorted(by_class.items(), key=lambda kv: -kv[1])),
            "p50_ms": _percentile(answered, 50), "p95_ms": _percentile(answered, 95),
            "max_ms": answered[-1] if answered else None,
            # each request's latency when it was sent, and its error class if any: the chart
            "points": [[t, r["latency_ms"] if r["status"] is not None else None,
                        r["error_class"]] for t, r in zip(sent, results, strict=True)],
            "unit": "ms"}


def _percentile(ordered: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending list (p95 of 20 values is the 19th)."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil without float surprises
    return ordered[int(rank) - 1]


def _read_capped(response: httpx.Response) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            return b"".join(chunks)[:MAX_BODY], True
    return b"".join(chunks), False


def _check_status(status: int, reason: str,
                  expected: int | None) -> tuple[str | None, str | None]:
    if (status == expected) if expected is not None else 200 <= status < 300:
        return None, None
    want = f" (expected {expected})" if expected is not None else ""
    error = f"HTTP {status} {reason}".rstrip() + want
    if 500 <= status < 600:
        return "http_5xx", error
    if 400 <= status < 500:
        return "http_4xx", error
    return "unexpected_status", error


def _check_body(text: str, truncated: bool, expect_body: str | None,
                expect_json: dict[str, Any] | None) -> tuple[str | None, str | None]:
    if expect_body is not None and expect_body not in text:
        cut = " (in the first 1 MiB)" if truncated else ""
        return "unexpected_body", f"the body does not contain {expect_body!r}{cut}"
    if expect_json:
        try:
            document = json.loads(text)
        except ValueError:
            cut = ": cut at 1 MiB" if truncated else ""
            return "unexpected_body", f"the body is not JSON{cut}"
        for path, want in _flatten(expect_json).items():
            found, value = _lookup(document, path)
            if not found:
                return "unexpected_body", f"JSON field {path} is missing (expected {want!r})"
            if value != want:
                return "unexpected_body", f"JSON field {path} is {value!r}, expected {want!r}"
    return None, None


def _flatten(expect: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in expect.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def _lookup(document: Any, path: str) -> tuple[bool, Any]:
    value = document
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what caused it (httpx -> httpcore -> ssl/socket), without loops."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


_DNS_TEXT = re.compile(r"name or service not known|nodename nor servname|name resolution"
                       r"|no address associated|getaddrinfo failed", re.IGNORECASE)


def _failure_class(exc: httpx.HTTPError) -> str:
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        for cause in _causes(exc):
            if isinstance(cause, ssl.SSLError):
                return "tls"
            if isinstance(cause, socket.gaierror):
                return "dns"
            if isinstance(cause, ConnectionRefusedError):
                return "refused"
        text = str(exc)  # the cause chain is gone in some paths; the message remains
        if re.search(r"\b(SSL|TLS|certificate)\b", text, re.IGNORECASE):
            return "tls"
        if _DNS_TEXT.search(text):
            return "dns"
        if re.search(r"connection refused", text, re.IGNORECASE):
            return "refused"
        return "network"
    if isinstance(exc, httpx.ProtocolError | httpx.ReadError | httpx.WriteError
                  | httpx.CloseError | httpx.DecodingError):
        return "protocol"
    if isinstance(exc, httpx.TooManyRedirects):
        return "unexpected_status"
    return "network"  # ProxyError and any other transport failure


def _message(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return str(SECRETS.scrub(text))


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


# The connector


_HEADER_LINE = re.compile(r"^(?P<name>[A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*:\s*(?P<value>.*)$")


def headers_from_env(env_var: str, target: str = "") -> dict[str, str]:
    """`Header: value` lines from an env var; every value is registered as a secret."""
    raw = os.environ.get(env_var)
    if raw is None:
        raise PermanentError(f"{env_var} is not set: it holds the headers of {target or 'http'}")
    headers: dict[str, str] = {}
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        match = _HEADER_LINE.match(line.strip())
        if not match:  # the line may hold a secret: say where, not what
            raise PermanentError(f"{env_var} line {number} is not `Header: value`")
        value = match.group("value").strip()
        SECRETS.register(value)
        SECRETS.register(value.split()[-1] if value else None)  # the token after "Bearer"
        headers[match.group("name")] = value
    return headers


class HttpConnector:
    def prepare(self) -> None:
        import httpx  # noqa: F401 - imported once, before any step's clock starts

    @contextmanager
    def _probe(self, target: Target, timeout: float) -> Iterator[HttpProbe]:
        settings = target.settings
        assert isinstance(settings, HttpSettings)
        headers = (headers_from_env(settings.headers_env, target.name)
                   if settings.headers_env else {})
        handle = open_client(timeout=min(settings.timeout, timeout),
                             verify_tls=settings.verify_tls, headers=headers,
                             base_url=settings.url, target=target.name)
        try:
            yield handle
        finally:
            handle.close()

    def probe(self, target: Target, ctx: StepContext) -> AbstractContextManager[HttpProbe]:
        return self._probe(target, ctx.timeout)

    def identity(self, target: Target, timeout: float) -> dict[str, str]:
        """The URL the target names (it holds no password: the settings refuse one)."""
        settings = target.settings
        assert isinstance(settings, HttpSettings)
        return {"url": settings.url}

    def action(self, target: Target, ctx: StepContext) -> AbstractContextManager[Any]:
        raise PermanentError(f"{target.name}: the http backend only reads; it has no "
                             "mutating steps")


# The step kinds


def _relative(path: str) -> str:
    if "://" in path or path.startswith("//"):
        raise ValueError("give a path relative to the target's URL, not a URL")
    return path


class HealthParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field("", description="relative to the target's URL; empty: the URL itself")
    expect_status: int | None = Field(None, ge=100, le=599, description="default: any 2xx")
    expect_body: str | None = Field(None, description="a substring the body must contain")
    expect_json: dict[str, Any] | None = Field(
        None, description='field path -> value, e.g. {"status": "ok", "db.state": "up"}')

    _path = field_validator("path")(_relative)


class SweepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paths: list[str] = Field(min_length=1, max_length=100,
                             description="paths relative to the target's URL")
    max_concurrency: int = Field(8, ge=1, le=32)

    @field_validator("paths")
    @classmethod
    def _paths(cls, paths: list[str]) -> list[str]:
        return [_relative(p) for p in paths]


class ErrorRateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field("", description="relative to the target's URL")
    requests: int = Field(20, ge=1, le=500)
    window: Duration = Field(5.0, gt=0, le=120, description="spread the requests over this")

    _path = field_validator("path")(_relative)


def health(http: HttpProbe, params: HealthParams) -> dict[str, Any]:
    result = check_health(http, http.url(params.path), expect_status=params.expect_status,
                          expect_body=params.expect_body, expect_json=params.expect_json)
    return {**result, "verify_tls": http.verify_tls}


def endpoint_sweep(http: HttpProbe, params: SweepParams) -> dict[str, Any]:
    result = sweep(http, [http.url(p) for p in params.paths],
                   max_concurrency=params.max_concurrency)
    return {**result, "verify_tls": http.verify_tls}


def sampled_error_rate(http: HttpProbe, params: ErrorRateParams) -> dict[str, Any]:
    result = error_rate(http, http.url(params.path), requests=params.requests,
                        window=params.window)
    return {**result, "verify_tls": http.verify_tls}


_CHECK_RESULT = {
    "ok": "true when the status (default any 2xx) and body matched",
    "status": "HTTP status, null when none came back", "latency_ms": "time to the whole body",
    "error_class": "refused, timeout, tls, dns, network, protocol, http_5xx, http_4xx, "
                   "unexpected_status, unexpected_body; null when ok",
    "error": "what went wrong", "body_excerpt": "the body's first 300 characters",
    "verify_tls": "false when the target turned certificate checks off",
}


def register(registry: Registry) -> None:
    registry.add_backend(Backend(KIND, HttpConnector(), HttpSettings,
                                 "HTTP(S) endpoints, read-only (httpx)"))
    registry.add(StepKind(
        "http.health", KIND, health, HealthParams, False,
        "GET one URL: status, latency, expected body or JSON fields", _CHECK_RESULT))
    registry.add(StepKind(
        "http.sweep", KIND, endpoint_sweep, SweepParams, False,
        "health-check several paths at once: do all fail, or only some?",
        {"total / ok / failed": "counts", "all_fail": "every path failed",
         "some_fail": "some but not all failed", "failing": "the failing URLs",
         "results": "one health result per path, in order"}, timeout=60.0))
    registry.add(StepKind(
        "http.error_rate", KIND, sampled_error_rate, ErrorRateParams, False,
        "N GETs spread over a window: error share and latency percentiles",
        {"errors / error_pct": "failed requests and their share",
         "http_5xx": "of which 5xx", "by_class": "error_class -> count",
         "p50_ms / p95_ms / max_ms": "latency of answered requests"}, timeout=180.0))
