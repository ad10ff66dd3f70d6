"""A streaming standby of a lab PostgreSQL: a second container of the same image, cloned
from the primary with pg_basebackup through a physical replication slot.

The primary learns to accept replication connections (a pg_hba line and a reload); the
standby is reached on its bridge address, as the lab's other containers are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg.conninfo import make_conninfo

from tests.lab.faults import PASSWORDS, LabDatabase
from tests.lab.postgres import DB, PASSWORD, USER
from tests.support.polling import wait_for

SLOT = "lab_standby"
_DATA = "/var/lib/postgresql/data"


def _address(container: Any) -> str:
    container.reload()
    return str(container.attrs["NetworkSettings"]["IPAddress"])


@contextlib.contextmanager
def standby_of(primary: Any, primary_db: LabDatabase,
               settings: tuple[str, ...] = ()) -> Iterator[LabDatabase]:
    """A hot standby streaming from `primary` (a started testcontainers PostgresContainer);
    yields its DSNs (same roles and passwords: it is a copy) and removes it after."""
    import docker

    wrapped = primary.get_wrapped_container()
    code, output = wrapped.exec_run(["bash", "-c", "echo 'host replication all 0.0.0.0/0 "
                                     f"scram-sha-256' >> {_DATA}/pg_hba.conf"])
    assert code == 0, output
    with psycopg.connect(primary_db.admin, autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
    options = " ".join(f"-c {s}" for s in settings)
    script = (f"pg_basebackup -h {_address(wrapped)} -U {USER} -D {_DATA} -R -X stream "
              f"-C -S {SLOT} --checkpoint=fast && exec postgres -D {_DATA} "
              f"-c listen_addresses='*' -k /tmp -c hot_standby=on {options}")
    standby = docker.from_env().containers.run(
        wrapped.image.id, entrypoint=["bash", "-c", script], user="postgres",
        environment={"PGPASSWORD": PASSWORD}, detach=True)
    try:
        host = _address(standby)
        admin = f"postgresql://{USER}:{quote(PASSWORD, safe='')}@{host}:5432/{DB}"

        def ready() -> bool:
            standby.reload()
            if standby.status == "exited":
                raise RuntimeError(f"the standby exited: {standby.logs(tail=20).decode()}")
            try:
                with psycopg.connect(admin, connect_timeout=2) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                    return bool(row and row[0])
            except psycopg.OperationalError:
                return False

        wait_for(ready, "the standby to accept connections in recovery", timeout=90)
        with psycopg.connect(primary_db.admin) as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM pg_stat_replication WHERE "
                                          "state = 'streaming'").fetchone() == (1,),
                     "the primary to see the standby streaming")

        def as_role(role: str) -> str:
            return make_conninfo(admin, user=role, password=PASSWORDS[role])

        yield LabDatabase(admin, as_role("journey_app"), as_role("runbook_ro"),
                          as_role("runbook_ops"))
    finally:
        standby.remove(force=True)
        with psycopg.connect(primary_db.admin, autocommit=True) as conn:
            wait_for(lambda: conn.execute(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s AND active",
                (SLOT,)).fetchone() == (0,), "the standby's slot to be released")
            conn.execute("SELECT pg_drop_replication_slot(%s)", (SLOT,))
