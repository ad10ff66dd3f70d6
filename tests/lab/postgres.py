"""PostgreSQL from the lab image: throwaway containers for tests, a long-lived one for the demo."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from typing import TYPE_CHECKING
from urllib.parse import quote

from tests.lab.images import require_image

if TYPE_CHECKING:
    from testcontainers.community.postgres import PostgresContainer

# No Ryuk image exists here: fixtures remove their containers themselves.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

# Lab-only credentials.
USER = "runbook"
PASSWORD = "lab-pw-5Rz8q"  # distinctive: the redactor masks it wherever it appears
DB = "runbook"


def postgres_container(max_connections: int = 20) -> PostgresContainer:
    """A PostgresContainer on the lab image, not started yet: use it as a context manager."""
    # testcontainers.postgres is a deprecated alias (a DeprecationWarning, an error in pytest).
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(
        require_image("postgres"), username=USER, password=PASSWORD, dbname=DB, driver=None
    )
    return container.with_command(["-c", f"max_connections={max_connections}"])


def ensure_demo_postgres(
    name: str = "runbook-lab-db",
    port: int = 55432,
    password: str = PASSWORD,
    max_connections: int = 20,
    timeout: float = 60,
) -> str:
    """Start (or reuse) a named long-lived PostgreSQL container; return its DSN.

    A running container made from the same image with the same settings is reused; any
    other container of that name is replaced.
    """
    import docker
    import psycopg

    client = docker.from_env()
    image = require_image("postgres")
    # The label records what the container was made from, so that a change replaces it.
    config = f"{image} {port} {max_connections} {hashlib.sha256(password.encode()).hexdigest()}"
    try:
        container = client.containers.get(name)
    except docker.errors.NotFound:
        container = None
    if container is not None and container.labels.get("runbook-lab.config") != config:
        container.remove(force=True)
        container = None
    if container is None:
        container = client.containers.run(
            image,
            ["-c", f"max_connections={max_connections}"],
            name=name,
            detach=True,
            environment={"POSTGRES_USER": USER, "POSTGRES_PASSWORD": password, "POSTGRES_DB": DB},
            ports={"5432/tcp": ("127.0.0.1", port)},
            labels={"runbook-lab.config": config},
        )
    elif container.status != "running":
        container.start()

    dsn = f"postgresql://{USER}:{quote(password, safe='')}@127.0.0.1:{port}/{DB}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(dsn, connect_timeout=2).close()
            return dsn
        except psycopg.OperationalError as e:
            container.reload()
            if container.status == "exited" or time.monotonic() > deadline:
                logs = container.logs(tail=20).decode(errors="replace")
                raise RuntimeError(
                    f"demo PostgreSQL {name} is not accepting connections "
                    f"({container.status}): {e}\n{logs}"
                ) from e
            time.sleep(0.3)


def stop_demo_postgres(name: str = "runbook-lab-db") -> None:
    """Remove the demo container (and its data); nothing happens if it does not exist."""
    import docker

    with contextlib.suppress(docker.errors.NotFound):
        docker.from_env().containers.get(name).remove(force=True)
