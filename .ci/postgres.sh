#!/usr/bin/env bash
# Make a PostgreSQL server available on 127.0.0.1 for the test suite.
#
# Idempotent: if something already answers on the port, only make sure the
# `oms` role and `oms_test` database exist. Otherwise install PostgreSQL from
# apt if no server binaries are present, initdb a throw-away cluster (trust auth
# on 127.0.0.1 only, fsync on), start it and create the role and database.
#
# The last line on stdout is the SQLAlchemy URL of the test database.
#
# Environment:
#   OMS_TEST_PG_PORT  port to listen on            (default 54329)
#   OMS_TEST_PG_DATA  cluster data directory       (default /tmp/oms-test-pg)
set -euo pipefail

PORT="${OMS_TEST_PG_PORT:-54329}"
DATADIR="${OMS_TEST_PG_DATA:-/tmp/oms-test-pg}"
HOST=127.0.0.1
ROLE=oms
DB=oms_test
URL="postgresql+psycopg://${ROLE}@${HOST}:${PORT}/${DB}"

log() { echo "postgres.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Serialise concurrent invocations (e.g. two pytest sessions starting at once).
# fd 9 must not leak into the server (it would hold the lock forever): every
# command that may leave a daemon behind is run with 9>&-.
LOCK="${DATADIR%/}.lock"
if command -v flock >/dev/null 2>&1 && { exec 9>>"$LOCK"; } 2>/dev/null; then
    flock -w 600 9 || log "timed out waiting for $LOCK; continuing"
fi

# Newest installed server version's bin dir, or empty.
find_pgbin() {
    local d best=""
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
        [ -x "$d/postgres" ] && best="$d"
    done
    echo "$best"
}

is_ready() {
    local isready=""
    if [ -n "${PGBIN:-}" ] && [ -x "$PGBIN/pg_isready" ]; then
        isready="$PGBIN/pg_isready"
    elif command -v pg_isready >/dev/null 2>&1; then
        isready="$(command -v pg_isready)"
    else
        isready="$(ls -d /usr/lib/postgresql/*/bin/pg_isready 2>/dev/null | sort -V | tail -n1 || true)"
    fi
    [ -n "$isready" ] || return 1
    "$isready" -q -h "$HOST" -p "$PORT" -t 3 >/dev/null 2>&1
}

# Run a command as the cluster owner: as root that is the `postgres` user
# (initdb/postgres refuse to run as root); otherwise ourselves.
as_owner() {
    if [ "$(id -u)" -ne 0 ]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- "$@"
    else
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
}

psql_admin() {
    # The cluster superuser is called `postgres` (initdb -U postgres); trust auth.
    "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PORT" -U postgres -d postgres "$@"
}

ensure_role_and_db() {
    # Already usable? Then nothing to do (works for servers we did not create, too).
    if "$PGBIN/psql" -X -q -h "$HOST" -p "$PORT" -U "$ROLE" -d "$DB" -tAc 'SELECT 1' >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '${ROLE}'")" != 1 ]; then
        psql_admin -c "CREATE ROLE ${ROLE} LOGIN SUPERUSER"
    fi
    if [ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '${DB}'")" != 1 ]; then
        psql_admin -c "CREATE DATABASE ${DB} OWNER ${ROLE}"
    fi
}

PGBIN="$(find_pgbin)"

if is_ready; then
    log "a server already answers on ${HOST}:${PORT}"
    if [ -n "$PGBIN" ]; then
        ensure_role_and_db || die "server on ${HOST}:${PORT} is up but ${ROLE}/${DB} is not usable"
    fi
    echo "$URL"
    exit 0
fi

# 1. Server binaries.
if [ -z "$PGBIN" ]; then
    [ "$(id -u)" -eq 0 ] || die "no PostgreSQL server binaries under /usr/lib/postgresql and not root; install the 'postgresql' package"
    command -v apt-get >/dev/null 2>&1 || die "no PostgreSQL server binaries and no apt-get"
    log "installing PostgreSQL with apt-get (the package may start its own cluster on 5432; we do not use it)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        postgresql >&2 9>&-
    PGBIN="$(find_pgbin)"
    [ -n "$PGBIN" ] || die "apt-get install postgresql did not provide /usr/lib/postgresql/*/bin/postgres"
    # Something (a service container, another job) may have appeared meanwhile.
    if is_ready; then
        ensure_role_and_db
        echo "$URL"
        exit 0
    fi
fi
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user to own the cluster"
fi

# 2. Cluster.
if [ ! -s "$DATADIR/PG_VERSION" ]; then
    log "initdb in $DATADIR"
    if [ -e "$DATADIR" ] && [ -n "$(ls -A "$DATADIR" 2>/dev/null)" ]; then
        die "$DATADIR exists, is not empty and is not a PostgreSQL cluster; remove it or set OMS_TEST_PG_DATA"
    fi
    mkdir -p "$DATADIR"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$DATADIR"
    fi
    chmod 700 "$DATADIR"
    as_owner "$PGBIN/initdb" -D "$DATADIR" -U postgres -A trust -E UTF8 \
        --locale=C.UTF-8 >"$DATADIR.initdb.log" 2>&1 \
        || as_owner "$PGBIN/initdb" -D "$DATADIR" -U postgres -A trust -E UTF8 --no-locale >"$DATADIR.initdb.log" 2>&1 \
        || { cat "$DATADIR.initdb.log" >&2; die "initdb failed"; }
    # Only TCP connections from 127.0.0.1, trusted. No unix socket at all.
    cat >"$DATADIR/pg_hba.conf" <<'EOF'
# TYPE  DATABASE  USER  ADDRESS        METHOD
host    all       all   127.0.0.1/32   trust
EOF
    cat >>"$DATADIR/postgresql.conf" <<EOF

# --- oms test cluster (.ci/postgres.sh) ---
listen_addresses = '127.0.0.1'
port = ${PORT}
unix_socket_directories = ''
# Durability stays on: the project's benchmarks measure real commit cost.
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 200
EOF
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$DATADIR/pg_hba.conf" "$DATADIR/postgresql.conf"
    fi
fi

# 3. Start. (pg_ctl copes with a stale postmaster.pid left by a crash.)
log "starting PostgreSQL ($PGBIN) on ${HOST}:${PORT}, data in $DATADIR"
if ! as_owner "$PGBIN/pg_ctl" -D "$DATADIR" -l "$DATADIR/server.log" -w -t 60 \
        -o "-p ${PORT} -c listen_addresses=${HOST}" start >&2 9>&-; then
    tail -n 30 "$DATADIR/server.log" >&2 || true
    die "pg_ctl start failed"
fi
is_ready || die "server started but pg_isready does not answer on ${HOST}:${PORT}"

# 4. Role and database.
ensure_role_and_db
log "ready"
echo "$URL"
