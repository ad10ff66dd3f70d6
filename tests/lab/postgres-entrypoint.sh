#!/bin/bash
# Entrypoint of the lab PostgreSQL image. Honours POSTGRES_USER / POSTGRES_PASSWORD /
# POSTGRES_DB like the official image (testcontainers' PostgresContainer relies on them),
# then execs postgres as PID 1 so that `docker stop` signals reach it. Extra container
# arguments (e.g. `-c max_connections=20`) are passed on to postgres.
set -euo pipefail

: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

# Accept the official image's `postgres -c ...` form as well.
if [ "${1:-}" = postgres ]; then shift; fi

# As root: prepare the directories, then run this script again as the postgres user.
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /run/postgresql
    chown postgres:postgres "$PGDATA" /run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    # Local (socket) connections trusted, TCP ones need the password (scram).
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    printf '%s\n' "host all all 0.0.0.0/0 scram-sha-256" "host all all ::/0 scram-sha-256" \
        >>"$PGDATA/pg_hba.conf"
    # Loaded for every container; tests CREATE EXTENSION where they want it.
    echo "shared_preload_libraries = 'pg_stat_statements'" >>"$PGDATA/postgresql.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        # Single-user mode: no server listens yet, so a readiness probe cannot succeed
        # before the database exists. exit_on_error turns an SQL error into a failed exit.
        echo "CREATE DATABASE \"${POSTGRES_DB//\"/\"\"}\"" |
            postgres --single -D "$PGDATA" -c exit_on_error=on postgres >/dev/null
    fi
fi

exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
