"""The contract of a service runtime: what the runtime-neutral `service.*` steps call.

A runtime is a pair of classes. Its reader (what probes get) is a `ServiceReader`: reads
only, through a client that cannot change anything. Its operator (what remedies get,
through the gate) is a `ServiceRuntime`: the reads plus the actions. Results are dicts of
the same shape on every runtime (the keys `diagnostics.service` reads); a runtime may add
its own keys. `diagnostics.docker` and `diagnostics.kubernetes` implement both, with these
exact signatures (tests/unit/test_runtime.py compares them); a third runtime (Nomad,
systemd) is one more module that does too, and a branch in `diagnostics.service._reader`
and `_operator`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ServiceReader(Protocol):
    """Reads of one service: every replica of it, however the runtime runs them."""

    def identity(self) -> dict[str, str]:
        """What the service's name resolves to now ("runtime" and the ids an approval
        binds to: a service deleted and re-created under the same name differs)."""
        ...

    def status(self) -> dict[str, Any]:
        """How it runs: running, state, exit_code, oom_killed, restart_count, image,
        memory_limit, replicas, replicas_running, replica_states, ..."""
        ...

    def logs(self, tail: int, since: float | None = None) -> list[str]:
        """The last `tail` lines (of every replica, in time order), each starting with the
        runtime's timestamp; only those of the last `since` seconds when given."""
        ...

    def memory(self, window: float, interval: float) -> dict[str, Any]:
        """Memory sampled every `interval` seconds for `window`: samples [(seconds, bytes)],
        limit, limited, cpu_pct."""
        ...

    def processes(self) -> dict[str, Any]:
        """The processes inside, biggest first: count, processes [{pid, user, rss_kb, ...}]."""
        ...

    def deployment(self) -> dict[str, Any]:
        """The running image and when it came: image, image_id, deployed_at, age_s,
        previous_image."""
        ...

    def pin_rollback(self, image: str) -> dict[str, Any]:
        """The fields of service.rollback's arguments that pin a rollback to `image` as it
        is now (Docker: image_id; Kubernetes: the revision), so that the approver sees, and
        the rollback deploys, exactly that."""
        ...

    def cancel(self) -> None:
        """The step's deadline passed: fail a request in flight at once."""
        ...

    def close(self) -> None:
        ...


@runtime_checkable
class ServiceRuntime(ServiceReader, Protocol):
    """The reads, plus the actions a remedy takes; each returns what it did."""

    def restart(self, stop_timeout: float | None = None) -> dict[str, Any]:
        """Restart every replica, one at a time (`stop_timeout`: None for the service's own;
        Kubernetes: the pods' terminationGracePeriodSeconds applies)."""
        ...

    def start(self) -> dict[str, Any]:
        """Start the replicas that are not running: started, count."""
        ...

    def rollback(self, image: str, stop_timeout: float | None = None, *,
                 image_id: str | None = None,
                 pinned: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run `image` again: exactly `image_id` (Docker) or the revision `pinned`
        (Kubernetes) when pin_rollback pinned one; each runtime refuses the other's pin."""
        ...

    def scale(self, replicas: int) -> dict[str, Any]:
        ...

    def set_memory_limit(self, limit: int) -> dict[str, Any]:
        """Set the memory limit of every replica; refuses a limit that would lift it."""
        ...

    def interrupt(self) -> None:
        """The remedy's deadline passed: stop at the next point where the action can put
        things back (runner.calls), rather than be cut off half-way."""
        ...
