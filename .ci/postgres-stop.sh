#!/usr/bin/env bash
# Stop the test PostgreSQL server started by .ci/postgres.sh (idempotent).
# The data directory is kept; delete it yourself for a completely fresh start.
set -euo pipefail

DATADIR="${OMS_TEST_PG_DATA:-/tmp/oms-test-pg}"

if [ ! -s "$DATADIR/PG_VERSION" ]; then
    echo "postgres-stop.sh: no cluster in $DATADIR; nothing to stop" >&2
    exit 0
fi

PGBIN=""
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
    [ -x "$d/pg_ctl" ] && PGBIN="$d"
done
# Prefer the binaries matching the cluster's major version.
if [ -x "/usr/lib/postgresql/$(cat "$DATADIR/PG_VERSION")/bin/pg_ctl" ]; then
    PGBIN="/usr/lib/postgresql/$(cat "$DATADIR/PG_VERSION")/bin"
fi
[ -n "$PGBIN" ] || { echo "postgres-stop.sh: pg_ctl not found" >&2; exit 1; }

as_owner() {
    if [ "$(id -u)" -ne 0 ]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- "$@"
    else
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
}

if as_owner "$PGBIN/pg_ctl" -D "$DATADIR" status >/dev/null 2>&1; then
    as_owner "$PGBIN/pg_ctl" -D "$DATADIR" -m fast -w -t 60 stop >&2
    echo "postgres-stop.sh: stopped server in $DATADIR" >&2
else
    echo "postgres-stop.sh: server in $DATADIR is not running" >&2
fi
