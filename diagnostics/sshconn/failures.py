"""What a failed connection says: paramiko and socket errors as temporary or permanent step
errors, each naming the host, with no secret in the message."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runner.errors import PermanentError, StepError, TemporaryError
from runner.redact import SECRETS

from .host import Endpoint
from .hostkeys import changed_key


@contextmanager
def translated_errors(endpoint: Endpoint, known_hosts: Path, timeout: float,
                       key_source: str) -> Iterator[None]:
    """paramiko and socket errors as temporary/permanent ones; no secret in a message."""
    import paramiko

    where = f"{endpoint.host} ({endpoint.user}@{endpoint.hostname}:{endpoint.port})"
    try:
        yield
    except StepError:
        raise
    except paramiko.BadHostKeyException as exc:
        raise PermanentError(changed_key(endpoint, known_hosts, exc.key,
                                          exc.expected_key)) from None
    except paramiko.AuthenticationException:
        raise PermanentError(f"{where}: authentication failed with {key_source}: is its "
                             f"public key in {endpoint.user}'s authorized_keys?") from None
    except paramiko.ssh_exception.NoValidConnectionsError as exc:
        codes = {e.errno for e in exc.errors.values()}
        said = "connection refused" if codes == {errno.ECONNREFUSED} else "no route to host"
        raise TemporaryError(f"{where}: {said}") from None
    except TimeoutError:
        raise TemporaryError(f"{where}: timed out (connect_timeout {timeout:g}s)") from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise TemporaryError(f"{where}: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return str(SECRETS.scrub(lines[0] if lines else type(exc).__name__))
