"""`--server URL`: approve, decline, history and report through a daemon's HTTP API, so
nobody logs in to a daemon's host (and any replica answers: they share one journal).

The token comes from RUNBOOK_TOKEN: an approver's token to approve or decline (the daemon
knows who it belongs to, so `--as` does not apply), or any reader's token for history and
report. A report is folded from the run's journal events, so it reads exactly as
`runbook report` reads on the daemon's host.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..state import RunState

SERVER_ENV, TOKEN_ENV = "RUNBOOK_SERVER", "RUNBOOK_TOKEN"
TIMEOUT = 30.0


def server_of(args: argparse.Namespace) -> str | None:
    """The daemon's URL from --server or RUNBOOK_SERVER; None: work on the local journal."""
    url = getattr(args, "server", None) or os.environ.get(SERVER_ENV)
    if url and not url.startswith(("http://", "https://")):
        from ..errors import UsageError

        raise UsageError(f"--server {url!r}: expected an http:// or https:// URL")
    return url.rstrip("/") if url else None


def call(server: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One request to the daemon's API; its JSON answer, or a UsageError saying why not."""
    from ..errors import JournalError, UsageError

    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise UsageError(f"--server needs a token in {TOKEN_ENV} (an approver's to approve)")
    request = urllib.request.Request(
        server + path, method=method, data=json.dumps(body).encode() if body else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                 "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        detail = _detail(exc)
        if exc.code == 404:
            raise JournalError(f"{server}: {detail}") from None
        raise UsageError(f"{server} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UsageError(f"cannot reach {server}: {reason}") from None


def state(server: str, run_id: str) -> RunState:
    """The run as its journal events fold, fetched from the daemon."""
    from ..state import Event, RunState

    answer = call(server, "GET", f"/v1/runs/{urllib.parse.quote(run_id, safe='')}/events")
    return RunState.fold(run_id, [Event(e["seq"], run_id, e["at"], e["type"], e["data"])
                                  for e in answer["events"]])


def runs(server: str, limit: int, status: str | None) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"limit": limit, **({"status": status} if status else {})})
    return list(call(server, "GET", f"/v1/runs?{query}")["runs"])


def decide(server: str, run_id: str, remedy: str, *, decline: bool,
           fingerprint: str | None) -> dict[str, Any]:
    body = {"remedy": remedy, "decision": "decline" if decline else "approve",
            **({"fingerprint": fingerprint} if fingerprint else {})}
    path = f"/v1/runs/{urllib.parse.quote(run_id, safe='')}/approvals"
    return dict(call(server, "POST", path, body))


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        data = json.loads(exc.read() or b"{}")
    except ValueError:
        return exc.reason or "no detail"
    return str(data.get("error") or data)[:500]
