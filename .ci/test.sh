#!/usr/bin/env bash
# Install the project with its test extras, bring up the test PostgreSQL server,
# run the whole pytest suite, and stop the server again if this script started it.
# Extra arguments are passed to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PORT="${OMS_TEST_PG_PORT:-54329}"

# --- Python -------------------------------------------------------------------
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if command -v python >/dev/null 2>&1; then PY=python; else PY=python3; fi
fi
# A distribution's system Python (Debian 12: PEP 668 "externally managed") will
# not let pip install into it; use a project venv then.
if "$PY" - <<'PYEOF'
import os, sys, sysconfig
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(0 if (managed and sys.prefix == sys.base_prefix) else 1)
PYEOF
then
    if [ ! -x .venv/bin/python ]; then
        echo "test.sh: $PY is externally managed; creating .venv" >&2
        if ! "$PY" -m venv .venv; then
            rm -rf .venv
            if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
                DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
                "$PY" -m venv .venv
            else
                echo "test.sh: cannot create a venv (install python3-venv)" >&2
                exit 1
            fi
        fi
    fi
    PY="$PWD/.venv/bin/python"
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
"$PY" -m pip install -q -e '.[test]'

# --- PostgreSQL ---------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

STARTED_PG=0
if ! port_open; then
    STARTED_PG=1
fi
stop_pg() {
    if [ "$STARTED_PG" = 1 ]; then
        bash .ci/postgres-stop.sh || echo "test.sh: warning: stopping PostgreSQL failed" >&2
    fi
}
trap stop_pg EXIT

PG_URL="$(bash .ci/postgres.sh | tail -n 1)"
[ -n "$PG_URL" ] || { echo "test.sh: .ci/postgres.sh printed no URL" >&2; exit 1; }
export OMS_TEST_POSTGRES_URL="$PG_URL"
echo "test.sh: OMS_TEST_POSTGRES_URL=$OMS_TEST_POSTGRES_URL" >&2

# --- Programs the tests drive: headless Chromium (the status page), curl (the API) ---
for program in chromium curl; do
    command -v "$program" >/dev/null 2>&1 && continue
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: installing Debian's $program for the tests" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$program" >/dev/null 2>&1 || {
            DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$program" >&2
        }
    else
        echo "test.sh: $program is missing and cannot be installed here (apt-get install $program)" >&2
        exit 1
    fi
done

# --- Static checks -------------------------------------------------------------
# The same rules everywhere; mypy strict on the pure domain layer.
"$PY" -m ruff check --isolated --select E4,E7,E9,F,I,B --ignore B905,B019 --line-length 130 .
"$PY" -m mypy --strict domain

# --- Tests --------------------------------------------------------------------
set +e
# Two workers, one test file each at a time: most tests wait on actors, brokers and
# databases, so two halve the wall time on a 2-core machine (OMS_TEST_WORKERS=0: serial).
WORKERS="${OMS_TEST_WORKERS:-2}"
XDIST=()
if [ "$WORKERS" != 0 ]; then XDIST=(-n "$WORKERS" --dist loadfile); fi
"$PY" -m pytest "${XDIST[@]}" --cov=actors --cov=domain --cov=persistence --cov=strategies --cov=emulator --cov=observability --cov=api --cov=run_oms --cov=cli --cov-report=term:skip-covered \
    --cov-fail-under=90 "$@"
rc=$?
set -e

if [ "$rc" -eq 5 ]; then
    echo "test.sh: FAILURE: pytest collected no tests (exit code 5)" >&2
    exit 1
fi
exit "$rc"
