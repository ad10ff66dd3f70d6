"""Fan-out over a group: every ssh step works through a target's hosts, a few at once within
an error budget; a probe gets fixed commands on each host, a remedy (through the gate) any
argv."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runner.errors import PermanentError, StepError, TemporaryError
from runner.redact import SECRETS

from .commands import CommandFailed, FixedCommands
from .host import Host
from .hosts import Hosts
from .settings import MaxErrors, error_budget


class FanOut(BaseModel):
    """What every ssh step takes: how a group is worked through."""

    model_config = ConfigDict(extra="forbid")

    max_concurrency: int = Field(10, ge=1, le=100, description="hosts at once")
    max_errors: MaxErrors = Field("100%", description='failed hosts allowed: 2 or "25%"')


def run_argv(host: Host, argv: list[str]) -> dict[str, Any]:
    out = host.run(argv)
    result = asdict(out)
    if out.timed_out:
        raise CommandFailed(f"{host.name}: `{out.command}` did not finish within "
                            f"{host.limits.command_timeout:g}s: stopped", result)
    if out.exit_code != 0:
        raise CommandFailed(f"{host.name}: `{out.command}` exited {out.exit_code}: "
                            f"{out.first_error_line()}", result)
    return result


def fan_out(group: Hosts, params: FanOut, work: Callable[[Host], dict[str, Any]]
            ) -> dict[str, Any]:
    """`work` on each host of the group, at most `max_concurrency` at once; once more hosts
    failed than `max_errors` allows, the rest are not started (reported as not_run)."""
    hosts = group.settings.all_hosts
    budget = error_budget(params.max_errors, len(hosts))
    entries: dict[str, dict[str, Any]] = {}
    failures: list[StepError] = []
    lock = threading.Lock()

    def one(host: str) -> None:
        with lock:
            if len(failures) > budget or group.cancelled:
                return  # not started: reported as not_run
        try:
            with group.connect(host) as connected:
                entry: dict[str, Any] = {"ok": True, "result": work(connected)}
        except StepError as exc:
            entry = {"ok": False, "error": str(SECRETS.scrub(str(exc)))}
            if isinstance(exc, CommandFailed):
                entry["result"] = exc.result
            with lock:
                failures.append(exc)
        with lock:
            entries[host] = entry

    with ThreadPoolExecutor(min(params.max_concurrency, len(hosts)),
                            thread_name_prefix=f"ssh-{group.target}") as pool:
        list(pool.map(one, hosts))  # in order: with one at a time, the first hosts first
    ok = [h for h in hosts if entries.get(h, {}).get("ok")]
    result: dict[str, Any] = {
        "hosts": {h: entries[h] for h in hosts if h in entries},
        "ok_count": len(ok), "failed_count": len(failures),
        "not_run": [h for h in hosts if h not in entries]}
    if not ok:
        raise _none_succeeded(group.target, hosts, result, failures)
    if len(hosts) == 1:
        return {**entries[hosts[0]]["result"], **result}
    return result


def _none_succeeded(target: str, hosts: list[str], result: dict[str, Any],
                    failures: list[StepError]) -> StepError:
    if len(hosts) == 1 and failures:
        return failures[0]  # its own kind: a temporary one may be retried
    said = [e["error"] for e in result["hosts"].values()]  # each names its host
    if result["not_run"]:
        said.append(f"not run: {', '.join(result['not_run'])}")
    kind = TemporaryError if all(isinstance(f, TemporaryError) for f in failures) \
        else PermanentError
    return kind(f"{target}: no host succeeded ({'; '.join(said)})")


class SshProbe(Hosts):
    """What a probe gets: fixed commands on each host."""

    def each(self, params: FanOut, work: Callable[[FixedCommands], dict[str, Any]]
             ) -> dict[str, Any]:
        return fan_out(self, params, lambda host: work(FixedCommands(host)))

    def each_vouched(self, params: FanOut, argv: list[str]) -> dict[str, Any]:
        """The argv of `ssh.exec_read_only`, read-only on its playbook author's word."""
        return fan_out(self, params, lambda host: run_argv(host, argv))


class SshAction(Hosts):
    """What a remedy gets, only through the gate: any argv on each host."""

    def each(self, params: FanOut, work: Callable[[Host], dict[str, Any]]) -> dict[str, Any]:
        return fan_out(self, params, work)
