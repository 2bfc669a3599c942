"""Start-up problems are a person's to fix: the launcher says what is wrong in a line
or two, naming the setting or the cause, and exits non-zero; no traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from actors import start_oms
from persistence import preflight
from persistence.account_lock import AccountInUse
from persistence.preflight import DatabaseUnavailable

ROOT = Path(__file__).resolve().parents[2]


def launch(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "run_oms.py"), *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, **env},
    )


@pytest.mark.parametrize(
    "url, words",
    [
        ("postgresql+psycopg://oms@127.0.0.1:1/nowhere", "Connection refused"),
        ("sqlite:////no/such/directory/oms.db", "does not exist"),
        ("mysql://somewhere/db", "unsupported database"),
        ("not a url", "is not a database URL"),
    ],
)
def test_a_database_that_cannot_be_used_is_named_in_one_line(url, words):
    done = launch("--serve", "--database-url", url)

    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) <= 2 and words in lines[-1], done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_setting_names_its_environment_variable():
    done = launch("--serve", OMS_CAPITAL="-5")

    assert done.returncode == 2
    assert "OMS_CAPITAL (capital)" in done.stderr and "Traceback" not in done.stderr


def test_start_oms_raises_the_same_clear_errors(tmp_path, sqlite_url):
    with pytest.raises(DatabaseUnavailable, match="does not exist"):
        start_oms(database_url=f"sqlite:///{tmp_path}/missing/oms.db")
    first = start_oms(database_url=sqlite_url)
    try:
        with pytest.raises(AccountInUse, match="account 'default'"):
            start_oms(database_url=sqlite_url)
    finally:
        first.stop()


def test_a_running_oms_shortens_the_gil_switch_interval_and_gives_it_back(tmp_path):
    found = sys.getswitchinterval()
    first = start_oms(database_url=f"sqlite:///{tmp_path / 'a.db'}", gil_switch_interval=0.0005)
    second = start_oms(database_url=f"sqlite:///{tmp_path / 'b.db'}", gil_switch_interval=0.001)
    try:
        assert sys.getswitchinterval() == pytest.approx(0.0005)
        first.stop()
        assert sys.getswitchinterval() == pytest.approx(0.0005)  # the other still runs
    finally:
        first.stop()
        second.stop()
    assert sys.getswitchinterval() == pytest.approx(found)
    kept = start_oms(database_url=f"sqlite:///{tmp_path / 'c.db'}", gil_switch_interval=0)
    try:
        assert sys.getswitchinterval() == pytest.approx(found)
    finally:
        kept.stop()


@pytest.mark.postgres
def test_a_postgresql_server_older_than_13_is_refused_by_name(fresh_postgres_url, monkeypatch):
    # The journal settles a COMMIT whose answer was lost with pg_current_xact_id and
    # pg_xact_status (PostgreSQL 13): an older server is named at start, not met at the
    # first write. (This server is new enough, so the bar is raised past it.)
    monkeypatch.setattr(preflight, "POSTGRES_MIN_VERSION", 99_0000)
    with pytest.raises(DatabaseUnavailable, match=r"PostgreSQL \d+ is too old; the OMS needs 13 or newer"):
        start_oms(database_url=fresh_postgres_url)
