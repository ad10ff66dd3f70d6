"""The alert daemon's intake, measured from outside: `runbook daemon` as a real subprocess
on loopback, bearer auth, its journal in a fresh RUNBOOK_HOME, the `mem` backend
(RUNBOOK_BACKENDS) and a one-step playbook, so runs cost next to nothing.

    .venv/bin/python -m benchmarks.intake [throughput] [storm] [whatif]
        [--client wrk|python] [--duration S] [--connections N,N] [--profile]
        [--variants as-is,group-commit,...]

throughput  single-alert Alertmanager webhooks (version 4) for --duration seconds per
            connection count; alerts/s persisted = rows in the journal's `alerts` table
            after the run / the load's wall time; p50/p99 accept latency (time to the 202).
storm       10,000 single-alert webhooks over 100 group keys, as fast as they are taken:
            must make exactly 100 runs; reports when all were stored, dispatched (routed:
            started or joined) and when the 100 runs had finished.
--client    wrk (Debian's `wrk`, C and epoll, a Lua script makes the POST bodies: it
            measures the daemon, not the client; the default when installed) or python
            (keep-alive HTTP/1.1 on asyncio streams, no HTTP library; it needs a good part
            of a core of its own on this 2-core machine, so it understates the daemon). The
            storm always uses the python client: it sends an exact count.
--profile   also run py-spy (pip install py-spy; on PATH or PY_SPY) on the daemon during a
            throughput run and print where its time goes, by thread and function.
whatif      throughput (wrk, 16 connections) of the daemon with one change patched in, in
            its own process (`--whatif-daemon`): the evidence for what would reach the goal.
            The patches reach into runner/daemon's internals: when those change, update or
            drop them.

Not a test: the machine is noisy; the figures go to benchmarks/README.md with the command.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-intake-token-0123456789"
PATH = "/v1/alerts/alertmanager"
GROUPS = 100

PLAYBOOK = """
name: bench-noop
summary: one no-op step; the benchmark measures the daemon, not a backend
severity: P3
targets:
  box: {kind: mem}
steps:
  - {id: look, run: mem.sleep, with: {value: 1}}
findings:
  - {id: seen, when: steps.look.value > 0, say: "value is {{ steps.look.value }}"}
"""

CONFIG = """
listen: {{host: 127.0.0.1}}
auth: {{mode: bearer, token_env: BENCH_INTAKE_TOKEN}}
max_concurrent_runs: 4
dedup_window: 1h
routes:
  - name: bench
    match: ['alertname="BenchAlert"']
    playbook: bench-noop
    targets: {{box: box}}
    group_by: [group]
playbooks: [{root}/playbooks]
inventory: [{root}/inventory.yaml]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def webhook(group: int, instance: int) -> bytes:
    """One Alertmanager version 4 webhook with one firing alert."""
    labels = {"alertname": "BenchAlert", "group": f"g{group:02d}", "instance": f"i{instance}"}
    return json.dumps({
        "version": "4", "groupKey": f'{{}}:{{group="g{group:02d}"}}', "status": "firing",
        "receiver": "runbook", "groupLabels": {"group": f"g{group:02d}"},
        "commonLabels": labels, "commonAnnotations": {"summary": "benchmark alert"},
        "externalURL": "http://alertmanager:9093", "truncatedAlerts": 0,
        "alerts": [{"status": "firing", "labels": labels,
                    "annotations": {"summary": "benchmark alert"},
                    "startsAt": "2026-11-22T07:00:00.000Z", "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus:9090/graph", "fingerprint": ""}],
    }, separators=(",", ":")).encode()


# The daemon under test


@dataclass
class Daemon:
    root: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.root / 'home' / 'journal.sqlite3'}?mode=ro",
                               uri=True, timeout=30)

    def count(self, sql: str) -> int:
        with contextlib.closing(self.db()) as db:
            return int(db.execute(sql).fetchone()[0])

    def cpu_seconds(self) -> float:
        """user + system CPU time of the daemon process so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def daemon(launcher: tuple[str, ...] = (sys.executable, "-m", "runner"),
           extra_env: dict[str, str] | None = None) -> Iterator[Daemon]:
    """`runbook daemon` (or `launcher daemon ...`, for experiments) on a free port."""
    with tempfile.TemporaryDirectory(prefix="runbook-bench-") as tmp:
        root = Path(tmp)
        (root / "playbooks").mkdir()
        (root / "playbooks" / "bench-noop.yaml").write_text(PLAYBOOK)
        (root / "box").mkdir()
        (root / "inventory.yaml").write_text(
            f"targets:\n  box: {{kind: mem, path: {root / 'box'}}}\n")
        config = root / "daemon.yaml"
        config.write_text(textwrap.dedent(CONFIG).format(root=root))
        port = free_port()
        env = {**os.environ, "RUNBOOK_HOME": str(root / "home"), "BENCH_INTAKE_TOKEN": TOKEN,
               "RUNBOOK_BACKENDS": "tests.support.membackend:register", **(extra_env or {})}
        log = open(root / "daemon.log", "wb")  # noqa: SIM115 - closed below
        process = subprocess.Popen([*launcher, "daemon", "--config", str(config), "--port",
                                    str(port)], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        running = Daemon(root, port, process)
        try:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(running.url + "/healthz", timeout=1).status_code == 200:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the daemon did not start:\n"
                                       + (root / "daemon.log").read_text())
                time.sleep(0.05)
            yield running
        finally:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


# Load generators


@dataclass
class Load:
    client: str
    connections: int
    requests: int  # answered
    non_202: int
    seconds: float  # wall time of the load
    p50_ms: float
    p99_ms: float


WRK_SCRIPT = """
-- written by benchmarks/intake.py: single-alert Alertmanager webhooks over 100 group keys
local bodies = {}
local n = 0
local template = %s
init = function(args)
  for g = 0, 99 do
    bodies[g] = string.gsub(template, "GROUP", string.format("g%%02d", g))
  end
end
request = function()
  n = n + 1
  local body = string.gsub(bodies[n %% 100], "INSTANCE", tostring(n))
  return wrk.format("POST", "%s", {["Content-Type"] = "application/json",
                                   ["Authorization"] = "Bearer %s"}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "status": %%d, ' ..
    '"connect": %%d, "read": %%d, "write": %%d, "timeout": %%d, "p50": %%d, "p99": %%d}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_load(url: str, connections: int, duration: float, workdir: Path) -> Load:
    """wrk, one thread (the daemon has the other core), for `duration` seconds."""
    template = webhook(0, 0).decode().replace("g00", "GROUP").replace('"i0"', '"iINSTANCE"')
    script = workdir / "intake.lua"
    script.write_text(WRK_SCRIPT % (json.dumps(template), PATH, TOKEN))
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout",
                          "10s", "-s", str(script), url], capture_output=True, text=True,
                         check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("WRKJSON "))
    got = json.loads(line.removeprefix("WRKJSON "))
    errors = sum(got[k] for k in ("connect", "read", "write", "timeout"))
    return Load("wrk", connections, got["requests"], got["status"] + errors,
                got["duration_us"] / 1e6, got["p50"] / 1000, got["p99"] / 1000)


async def _python_load(port: int, connections: int, bodies: Iterator[bytes],
                       until: float | None) -> tuple[list[float], int, float]:
    """Keep-alive HTTP/1.1 over asyncio streams, `connections` at once, until `bodies` or
    the time runs out. Returns the latencies, the count of non-202 answers, the wall time."""
    latencies: list[float] = []
    bad = 0
    head = (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer "
            f"{TOKEN}\r\nContent-Type: application/json\r\nContent-Length: ").encode()

    async def connection() -> None:
        nonlocal bad
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while until is None or time.perf_counter() < until:
                body = next(bodies, None)
                if body is None:
                    return
                started = time.perf_counter()
                writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                if b" 202 " not in status_line:
                    bad += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return latencies, bad, time.perf_counter() - started


def python_load(port: int, connections: int, bodies: Iterator[bytes],
                duration: float | None = None) -> Load:
    until = time.perf_counter() + duration if duration else None
    latencies, bad, seconds = asyncio.run(_python_load(port, connections, bodies, until))
    latencies.sort()
    return Load("python", connections, len(latencies), bad, seconds,
                percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000)


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p / 100))] if values else 0.0


def endless_bodies() -> Iterator[bytes]:
    n = 0
    while True:
        yield webhook(n % GROUPS, n)
        n += 1


# The measurements


def wait_until(check: Any, timeout: float = 300) -> float:
    """Seconds until check() was true (polling every 20 ms)."""
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout:
            raise TimeoutError("gave up waiting")
        time.sleep(0.02)
    return time.perf_counter() - started


def throughput(client: str, connections: list[int], duration: float, profile: bool) -> None:
    for count in connections:
        with daemon() as d, tempfile.TemporaryDirectory() as tmp:
            spy = start_profile(d, duration, Path(tmp)) if profile else None
            cpu_before = d.cpu_seconds()
            if client == "wrk":
                load = wrk_load(d.url, count, duration, Path(tmp))
            else:
                load = python_load(d.port, count, endless_bodies(), duration)
            cpu = d.cpu_seconds() - cpu_before
            stored = d.count("SELECT count(*) FROM alerts")
            lag = wait_until(lambda: d.count(
                "SELECT count(*) FROM alerts WHERE outcome IS NULL") == 0)
            runs = d.count("SELECT count(*) FROM runs")
            print(f"throughput [{load.client}, {count} connections, {load.seconds:.1f} s]: "
                  f"{stored / load.seconds:,.0f} alerts/s persisted ({stored:,} rows; "
                  f"{load.requests:,} answered, {load.non_202} not 202); accept latency "
                  f"p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms; daemon CPU "
                  f"{cpu / load.seconds:.0%} of one core ({cpu * 1e6 / max(stored, 1):.0f} "
                  f"us/alert); dispatch caught up {lag:.1f} s after the load; {runs} runs")
            if spy is not None:
                report_profile(spy, Path(tmp))


def storm(total: int = 10_000, connections: int = 64) -> None:
    with daemon() as d:
        bodies = [webhook(n % GROUPS, n) for n in range(total)]
        started = time.perf_counter()
        load = python_load(d.port, connections, iter(bodies))
        assert load.requests == total and load.non_202 == 0, load
        stored_s = time.perf_counter() - started
        assert d.count("SELECT count(*) FROM alerts") == total
        wait_until(lambda: d.count("SELECT count(*) FROM alerts WHERE outcome IS NULL") == 0)
        dispatched_s = time.perf_counter() - started
        wait_until(lambda: d.count("SELECT count(*) FROM work WHERE status IN "
                                   "('queued', 'running')") == 0
                   and d.count("SELECT count(*) FROM runs WHERE status = 'running'") == 0)
        finished_s = time.perf_counter() - started
        with contextlib.closing(d.db()) as db:
            outcomes = dict(db.execute("SELECT outcome, count(*) FROM alerts GROUP BY outcome"))
            runs = dict(db.execute("SELECT status, count(*) FROM runs GROUP BY status"))
            per_group = db.execute("SELECT count(DISTINCT group_key), count(*) FROM work "
                                   "WHERE kind = 'run'").fetchone()
        assert outcomes == {"started": GROUPS, "joined": total - GROUPS}, outcomes
        assert sum(runs.values()) == GROUPS and per_group == (GROUPS, GROUPS), (runs, per_group)
        print(f"storm [{load.client}, {connections} connections]: {total:,} alerts over "
              f"{GROUPS} group keys -> {sum(runs.values())} runs ({runs}), one per group; all "
              f"stored after {stored_s:.1f} s ({total / stored_s:,.0f} alerts/s, accept p50 "
              f"{load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms), all dispatched after "
              f"{dispatched_s:.1f} s, all runs finished after {finished_s:.1f} s")


# Profiling (py-spy)


def start_profile(d: Daemon, duration: float, tmp: Path) -> subprocess.Popen[bytes]:
    spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if not spy:
        raise SystemExit("--profile needs py-spy: pip install py-spy (or set PY_SPY)")
    return subprocess.Popen([spy, "record", "--pid", str(d.process.pid), "--duration",
                             str(int(duration)), "--rate", "250", "--format", "raw",
                             "--threads", "--gil", "--nonblocking", "--output",
                             str(tmp / "profile.txt")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def report_profile(spy: subprocess.Popen[bytes], tmp: Path, top: int = 12) -> None:
    """Where the daemon's GIL-holding samples went: by thread, then per busy thread the
    frames that hold most of its samples (inclusive; frames every sample of the thread
    shares are left out), then the functions with the most samples of their own."""
    spy.wait(timeout=120)
    threads: collections.Counter[str] = collections.Counter()
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(
        collections.Counter)
    own: collections.Counter[str] = collections.Counter()
    for line in (tmp / "profile.txt").read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0].split(": ", 1)[-1]  # "thread (1234): MainThread"
        threads[thread] += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames[1:]):
            inclusive[thread][frame] += int(count)
    total = sum(threads.values())
    print(f"profile: {total} samples holding the GIL; by thread: " + ", ".join(
        f"{name} {n / total:.0%}" for name, n in threads.most_common(6)))
    for thread, samples in threads.most_common(3):
        print(f"  {thread}:")
        telling = [(f, n) for f, n in inclusive[thread].most_common() if n < 0.9 * samples]
        for frame, count in telling[:top]:
            print(f"    {count / total:6.1%}  {frame}")
    print("  own time:")
    for frame, count in own.most_common(top):
        print(f"    {count / total:6.1%}  {frame}")
    keep = Path(tempfile.gettempdir()) / "runbook-intake-profile.txt"
    shutil.copy(tmp / "profile.txt", keep)
    print(f"  (raw stacks, py-spy's collapsed format: {keep})")


# What-if experiments: the daemon with one change, patched in its own process


WHATIF = {
    "as-is": "the daemon as it is",
    "group-commit": "intake: one writer thread stores every waiting request's alerts in one "
                    "transaction and wakes them with one callback (instead of one threadpool "
                    "hop and one transaction per request)",
    "batch-dispatch": "dispatcher: one transaction per batch of alerts, and the approvals "
                      "scan (a write transaction) only when the approvals table grew",
    "httptools-uvloop": "uvicorn with httptools and uvloop (what uvicorn[standard] installs; "
                        "from RUNBOOK_BENCH_UVEXT, default /tmp/uvext: pip install --target "
                        "/tmp/uvext httptools uvloop)",
    "no-dispatch": "reference only: the dispatcher does nothing (intake alone)",
}


def whatif(variants: list[str], connections: int, duration: float) -> None:
    for variant in variants:
        with daemon(launcher=(sys.executable, "-m", "benchmarks.intake", "--whatif-daemon"),
                    extra_env={"RUNBOOK_BENCH_WHATIF": variant}) as d, \
                tempfile.TemporaryDirectory() as tmp:
            cpu_before = d.cpu_seconds()
            load = wrk_load(d.url, connections, duration, Path(tmp))
            cpu = d.cpu_seconds() - cpu_before
            stored = d.count("SELECT count(*) FROM alerts")
            print(f"whatif {variant:45s} {stored / load.seconds:6,.0f} alerts/s, p50 "
                  f"{load.p50_ms:5.1f} ms, p99 {load.p99_ms:6.1f} ms, "
                  f"{cpu * 1e6 / max(stored, 1):5.0f} us CPU/alert")


def _patched_daemon(argv: list[str]) -> int:
    """`runbook daemon` with the RUNBOOK_BENCH_WHATIF changes (comma-separated) applied."""
    import queue
    import threading

    variants = set(os.environ.get("RUNBOOK_BENCH_WHATIF", "").split("+"))
    if "httptools-uvloop" in variants:
        sys.path.insert(0, os.environ.get("RUNBOOK_BENCH_UVEXT", "/tmp/uvext"))
        import httptools  # type: ignore[import-not-found]  # noqa: F401
        import uvloop  # type: ignore[import-not-found]  # noqa: F401
    from runner.daemon import inbox, service
    from runner.daemon.alerts import Alert

    if "no-dispatch" in variants:
        service.Daemon._dispatch_loop = lambda self: self.stopping.wait()  # type: ignore[method-assign]
    if "batch-dispatch" in variants:
        def dispatch(self: inbox.Inbox, limit: int = 500) -> list[inbox.Dispatched]:
            pending = self.journal.read("SELECT id, alert FROM alerts WHERE outcome IS NULL "
                                        "ORDER BY id LIMIT ?", (limit,))
            with self.journal.transaction() as db:
                return [self._dispatch_one(db, alert_id, Alert.model_validate_json(body))
                        for alert_id, body in pending]

        scan = inbox.Inbox.queue_approved_resumes
        seen = [-1]

        def resumes(self: inbox.Inbox) -> list[str]:
            last = self.journal.read("SELECT coalesce(max(id), 0) FROM approvals")[0][0]
            if last == seen[0]:
                return []
            seen[0] = last
            return scan(self)

        inbox.Inbox.dispatch = dispatch  # type: ignore[method-assign]
        inbox.Inbox.queue_approved_resumes = resumes  # type: ignore[method-assign]
    if "group-commit" in variants:
        import starlette.concurrency

        hop = starlette.concurrency.run_in_threadpool
        waiting: queue.SimpleQueue[tuple[Any, list[Alert], asyncio.Future[list[int]]]] = (
            queue.SimpleQueue())

        def writer() -> None:
            while True:
                batch = [waiting.get()]
                with contextlib.suppress(queue.Empty):
                    while True:
                        batch.append(waiting.get_nowait())
                store, loop = batch[0][0], batch[0][2].get_loop()
                try:
                    ids = store([a for _, alerts, _ in batch for a in alerts])
                except Exception as exc:  # every waiting request fails with it
                    loop.call_soon_threadsafe(
                        lambda b=batch, e=exc: [f.set_exception(e) for _, _, f in b])
                    continue

                def wake(b: list[Any] = batch, ids: list[int] = ids) -> None:
                    at = 0
                    for _, alerts, future in b:
                        future.set_result(ids[at:at + len(alerts)])
                        at += len(alerts)

                loop.call_soon_threadsafe(wake)

        threading.Thread(target=writer, name="intake-writer", daemon=True).start()

        async def run_in_threadpool(func: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(func, "__name__", "") != "store":
                return await hop(func, *args, **kwargs)
            future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
            waiting.put((func, args[0], future))
            return await future

        starlette.concurrency.run_in_threadpool = run_in_threadpool
    from runner.cli import main as runbook

    return runbook(argv)


def main() -> None:
    if sys.argv[1:2] == ["--whatif-daemon"]:
        sys.exit(_patched_daemon(sys.argv[2:]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", nargs="*", metavar="throughput|storm|whatif",
                        help="default: throughput storm")
    parser.add_argument("--variants", default="as-is,group-commit,batch-dispatch,"
                        "group-commit+batch-dispatch,httptools-uvloop,"
                        "httptools-uvloop+group-commit+batch-dispatch",
                        help="whatif: '+' combines changes: " + "; ".join(
                            f"{k}: {v}" for k, v in WHATIF.items()))
    parser.add_argument("--client", choices=["wrk", "python"],
                        default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", default="1,16,64")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.client == "python" and not shutil.which("wrk"):
        print("intake: wrk is not installed (apt-get install wrk): using the python client, "
              "which shares the 2 cores with the daemon", file=sys.stderr)
    for what in args.what or ["throughput", "storm"]:
        if what not in {"throughput", "storm", "whatif"}:
            parser.error(f"unknown benchmark {what!r}")
        if what == "whatif":
            whatif(args.variants.split(","), 16,
                   args.duration)
        elif what == "throughput":
            throughput(args.client, [int(c) for c in args.connections.split(",")],
                       args.duration, args.profile)
        else:
            storm()


if __name__ == "__main__":
    main()
