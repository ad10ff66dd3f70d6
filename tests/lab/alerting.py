"""Real alerting peers for the daemon's tests: Debian's `prometheus-alertmanager` and
`prometheus` (scripts/setup installs both), each started as a process of its own on free
loopback ports, with its configuration and storage in a folder the caller owns.

    with alertmanager(tmp, daemon_url=daemon.url, token=TOKEN) as am:
        am.fire({"alertname": "PostgresPoolExhausted", "instance": "lab-db"})
        with prometheus(tmp, alertmanager=am, scrape={"lab-api": ["127.0.0.1:1"]},
                        rules=RULES) as prom:
            ...

The context managers always stop their process (SIGTERM, then SIGKILL) and, when the
block fails, attach the end of the process's log to the exception (and print the whole
log to stderr), so a failing test shows what Alertmanager or Prometheus said. A missing
binary is an error (`PeerMissing`), never a reason to skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.support.polling import wait_for

ALERTMANAGER_BIN = Path(os.environ.get("RUNBOOK_ALERTMANAGER_BIN",
                                       "/usr/bin/prometheus-alertmanager"))
PROMETHEUS_BIN = Path(os.environ.get("RUNBOOK_PROMETHEUS_BIN", "/usr/bin/prometheus"))
LOG_TAIL = 60  # lines of a peer's log attached to a failure
WEBHOOK_PATH = "/v1/alerts/alertmanager"  # the daemon's Alertmanager intake


class PeerMissing(RuntimeError):
    """An alerting peer's binary is not installed: scripts/setup installs it."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_binary(path: Path, package: str) -> Path:
    """`path`, or PeerMissing when it is not an executable file."""
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise PeerMissing(f"ALERTING PEER MISSING: {path} is not installed (Debian package "
                          f"{package}); run scripts/setup")
    return path


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Peer:
    """A running peer process: its URL, its log, and a way to wait on either."""

    name: str
    url: str
    workdir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(self.url + path, params=params, timeout=5)

    def wait_ready(self, timeout: float = 30) -> None:
        """Until `/-/ready` answers 200; fails at once if the process died."""
        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode} "
                                   "before it was ready")
            with contextlib.suppress(httpx.HTTPError):
                return self.get("/-/ready").status_code == 200
            return False

        wait_for(ready, f"{self.name} to be ready at {self.url}", timeout, every=0.1)

    def wait_log(self, *fragments: str, timeout: float = 30) -> list[str]:
        """The log lines that hold every fragment, once there is one."""
        return wait_for(lambda: [line for line in self.log().splitlines()
                                 if all(f in line for f in fragments)],
                        f"{self.name} to log {fragments!r}", timeout)

    def stop(self, grace: float = 10) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def _running(name: str, argv: list[str], workdir: Path, port: int) -> Iterator[Peer]:
    """Start `argv`, wait until it is ready, yield it; always stop it, and on a failure
    attach its log to the exception."""
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    peer = Peer(name, f"http://127.0.0.1:{port}", workdir, log_path, process)
    try:
        peer.wait_ready()
        yield peer
    except BaseException as exc:
        text = peer.log()
        tail = "\n".join(text.splitlines()[-LOG_TAIL:])
        exc.add_note(f"--- {name} log, last {LOG_TAIL} lines ({log_path}) ---\n{tail}")
        print(f"--- {name} log ({log_path}) ---\n{text}", file=sys.stderr)
        raise
    finally:
        peer.stop()


# Alertmanager


def alert(labels: Mapping[str, str], annotations: Mapping[str, str] | None = None,
          starts_at: datetime | None = None, ends_at: datetime | None = None,
          generator_url: str = "http://runbook.test/alert") -> dict[str, Any]:
    """One alert as Alertmanager's API v2 (`POST /api/v2/alerts`) takes it. Without an
    end, Alertmanager keeps it firing for its resolve_timeout."""
    body: dict[str, Any] = {"labels": dict(labels), "annotations": dict(annotations or {}),
                            "startsAt": _utc(starts_at or datetime.now(UTC)),
                            "generatorURL": generator_url}
    if ends_at is not None:
        body["endsAt"] = _utc(ends_at)
    return body


@dataclass
class Alertmanager(Peer):
    config_path: Path | None = None

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """POST /api/v2/alerts, as Prometheus does."""
        answer = httpx.post(self.url + "/api/v2/alerts", json=list(alerts), timeout=5)
        assert answer.status_code == 200, f"Alertmanager said {answer.status_code}: {answer.text}"

    def fire(self, labels: Mapping[str, str], annotations: Mapping[str, str] | None = None,
             since: timedelta = timedelta(minutes=1)) -> dict[str, Any]:
        """Post a firing alert that started `since` ago; returns it, for `resolve`."""
        body = alert(labels, annotations, starts_at=datetime.now(UTC) - since)
        self.post_alerts([body])
        return body

    def resolve(self, fired: Mapping[str, Any]) -> None:
        """Post the same alert again with an end in the past: Alertmanager resolves it."""
        self.post_alerts([{**fired, "endsAt": _utc(datetime.now(UTC) - timedelta(seconds=1))}])

    def alerts(self, **filters: Any) -> list[dict[str, Any]]:
        """GET /api/v2/alerts: what Alertmanager holds now."""
        answer = self.get("/api/v2/alerts", **filters)
        answer.raise_for_status()
        return list(answer.json())

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(self.get("/metrics").text, name, labels)


def alertmanager_config(webhook_url: str, token: str, *, group_by: Sequence[str],
                        group_wait: str, group_interval: str, repeat_interval: str,
                        resolve_timeout: str = "5m", max_alerts: int = 0) -> dict[str, Any]:
    """One route to one webhook receiver that authenticates with a bearer token."""
    return {
        "global": {"resolve_timeout": resolve_timeout},
        "route": {"receiver": "runbook", "group_by": list(group_by),
                  "group_wait": group_wait, "group_interval": group_interval,
                  "repeat_interval": repeat_interval},
        "receivers": [{"name": "runbook", "webhook_configs": [{
            "url": webhook_url, "send_resolved": True, "max_alerts": max_alerts,
            "http_config": {"authorization": {"type": "Bearer", "credentials": token}},
        }]}],
    }


@contextlib.contextmanager
def alertmanager(workdir: Path, *, daemon_url: str, token: str, path: str = WEBHOOK_PATH,
                 group_by: Sequence[str] = ("alertname", "instance"), group_wait: str = "1s",
                 group_interval: str = "1s", repeat_interval: str = "5s",
                 max_alerts: int = 0) -> Iterator[Alertmanager]:
    """A real Alertmanager whose one receiver is a webhook to `daemon_url` + `path` with
    `Authorization: Bearer <token>`; short group timings, so tests see notifications in
    about a second. JSON is YAML, so the config is written as JSON."""
    binary = require_binary(ALERTMANAGER_BIN, "prometheus-alertmanager")
    webhook_url = daemon_url.rstrip("/") + path
    home = workdir / "alertmanager"
    (home / "data").mkdir(parents=True, exist_ok=True)
    config = home / "alertmanager.yml"
    config.write_text(json.dumps(alertmanager_config(
        webhook_url, token, group_by=group_by, group_wait=group_wait,
        group_interval=group_interval, repeat_interval=repeat_interval,
        max_alerts=max_alerts), indent=2))
    port = free_port()
    argv = [str(binary), f"--config.file={config}", f"--storage.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
            f"--web.external-url=http://127.0.0.1:{port}", "--log.level=debug"]
    with _running("alertmanager", argv, home, port) as peer:
        yield Alertmanager(peer.name, peer.url, peer.workdir, peer.log_path, peer.process,
                           config)


# Prometheus


@dataclass
class Prometheus(Peer):
    def alerts(self) -> list[dict[str, Any]]:
        """GET /api/v1/alerts: the rules' active alerts (pending or firing)."""
        answer = self.get("/api/v1/alerts")
        answer.raise_for_status()
        return list(answer.json()["data"]["alerts"])

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query", query=expr)
        answer.raise_for_status()
        return list(answer.json()["data"]["result"])

    def targets(self) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/targets")
        answer.raise_for_status()
        return list(answer.json()["data"]["activeTargets"])


@contextlib.contextmanager
def prometheus(workdir: Path, *, alertmanager: Peer, scrape: Mapping[str, Sequence[str]],
               rules: str, interval: str = "1s") -> Iterator[Prometheus]:
    """A real Prometheus: one scrape job per `scrape` entry (job name -> host:port
    targets), the alert rules in `rules` (a rule file's YAML text), scrape and evaluation
    every `interval`, and `alertmanager` as the one place its alerts go."""
    binary = require_binary(PROMETHEUS_BIN, "prometheus")
    home = workdir / "prometheus"
    (home / "data").mkdir(parents=True, exist_ok=True)
    (home / "rules.yml").write_text(rules)
    config = home / "prometheus.yml"
    config.write_text(json.dumps({
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "scrape_timeout": interval},
        "rule_files": [str(home / "rules.yml")],
        "alerting": {"alertmanagers": [{"api_version": "v2", "static_configs": [
            {"targets": [alertmanager.url.removeprefix("http://")]}]}]},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}
                           for job, targets in scrape.items()],
    }, indent=2))
    port = free_port()
    argv = [str(binary), f"--config.file={config}", f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url=http://127.0.0.1:{port}",
            # Prometheus sends a firing alert again only this often (default 1m).
            f"--rules.alert.resend-delay={interval}", "--log.level=debug"]
    with _running("prometheus", argv, home, port) as peer:
        yield Prometheus(peer.name, peer.url, peer.workdir, peer.log_path, peer.process)


# Metrics, as a Prometheus client would read them


def metric_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in (labels or {}).items()):
                total += sample.value
    return total
