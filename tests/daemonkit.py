"""A real daemon on loopback (uvicorn in a thread) around the `mem` test backend, and a
real HTTP receiver standing in for Slack: it records what it got and answers as told."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from tests.support.loopback import QuietHandler, serving
from tests.support.polling import wait_for

if TYPE_CHECKING:
    from runner.registry import Registry

PLAYBOOK = """
name: mem-incident
summary: a test incident on the mem backend
severity: P2
targets:
  box: {kind: mem}
params:
  value: {type: int, default: 1}
steps:
  - {id: look, run: mem.sleep, with: {value: "{{ params.value }}"}}
findings:
  - {id: high, when: steps.look.value > 0, say: "value is {{ steps.look.value }}"}
remedies:
  - {id: fix, run: mem.act, with: {items: ["{{ params.value }}"]}}
verify:
  - {id: fine, run: mem.sleep, within: 1s}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Receiver:
    """A local stand-in for Slack's incoming webhook."""

    status: int = 200
    got: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def wait_for(self, check: Callable[[list[dict[str, Any]]], bool], timeout: float = 20) -> None:
        wait_for(lambda: check(self.got), lambda: f"the message; receiver got only {self.got}",
                 timeout)


@contextmanager
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            rec.got.append(json.loads(body))
            self.send_response(rec.status)
            self.end_headers()

    with serving(Handler) as base:
        rec.url = f"{base}/hook"
        yield rec


def write_world(root: Path, config: str) -> Path:
    """Playbooks, inventory and a daemon config under `root`; returns the config path."""
    (root / "playbooks").mkdir(parents=True, exist_ok=True)
    (root / "playbooks" / "mem-incident.yaml").write_text(PLAYBOOK)
    (root / "box").mkdir(exist_ok=True)
    (root / "inventory.yaml").write_text(
        f"targets:\n  box: {{kind: mem, path: {root / 'box'}}}\n")
    path = root / "daemon.yaml"
    path.write_text(textwrap.dedent(config).format(root=root))
    return path


@dataclass
class RunningDaemon:
    url: str
    token: str
    daemon: Any = None

    def _headers(self, token: str | None) -> dict[str, str]:
        token = self.token if token is None else token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def post(self, path: str, payload: Any, token: str | None = None) -> httpx.Response:
        return httpx.post(self.url + path, json=payload, headers=self._headers(token), timeout=10)

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        return httpx.get(self.url + path, headers=self._headers(token), timeout=10)

    def wait_run(self, check: Callable[[list[dict[str, Any]]], bool],
                 timeout: float = 20) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []

        def matching() -> tuple[list[dict[str, Any]]] | None:
            seen[:] = self.get("/v1/runs").json()["runs"]
            return (list(seen),) if check(seen) else None

        [runs] = wait_for(matching, lambda: f"the runs to match; runs are {seen}", timeout,
                          every=0.1)
        return runs


@contextmanager
def daemon_in_thread(config_path: Path, home: Path, token: str,
                     registry: Registry | None = None,
                     clock: Callable[[], float] | None = None) -> Iterator[RunningDaemon]:
    """The daemon on a free loopback port; its steps come from `registry` (default: the
    `mem` test backend only; `runner.registry.default_registry()` for the real ones);
    `clock` (unix time) is what it reads as now (default: the real one)."""
    import uvicorn

    from runner.daemon.config import load
    from runner.daemon.http import build_app
    from runner.daemon.service import Daemon
    from runner.journal import Journal
    from tests.enginekit import mem_registry

    config = load(config_path)
    daemon = Daemon(config, Journal(home), registry if registry is not None else mem_registry(),
                    **({"clock": clock} if clock is not None else {}))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(daemon), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "the daemon to start", timeout=10, every=0.02)
    try:
        yield RunningDaemon(f"http://127.0.0.1:{port}", token, daemon)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class DaemonProcess:
    """`runbook daemon` as a real process (so a test can kill -9 it) on loopback, over the
    mem backend; `env` adds the config's secrets."""

    def __init__(self, config: Path, home: Path, token: str, env: dict[str, str]) -> None:
        self.config, self.home, self.port = config, home, free_port()
        self.token, self.env = token, env
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "RUNBOOK_HOME": str(self.home), **self.env,
               "RUNBOOK_BACKENDS": "tests.support.membackend:register"}
        self.proc = subprocess.Popen([sys.executable, "-m", "runner", "daemon", "--config",
                                      str(self.config), "--port", str(self.port)],
                                     cwd=Path(__file__).resolve().parents[1], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._up, "the daemon to answer")

    def _up(self) -> bool:
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)

    def post(self, path: str, payload: object, token: str | None = None) -> httpx.Response:
        return httpx.post(self.url + path, json=payload, timeout=10,
                          headers={"Authorization": f"Bearer {token or self.token}"})

    def runs(self) -> list[dict[str, object]]:
        answer = httpx.get(self.url + "/v1/runs", headers={"Authorization": f"Bearer {self.token}"})
        return list(answer.json()["runs"])
