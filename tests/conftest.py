"""Fixtures shared by every test file.

Databases
    postgres_url        (session)  URL of the test server's `oms_test` database.
                                   From $OMS_TEST_POSTGRES_URL, else .ci/postgres.sh
                                   is run to start a local server. Never skips:
                                   if PostgreSQL is unavailable the test FAILS.
    fresh_postgres_url  (function) a brand-new empty database `oms_t_<hex>` on that
                                   server; dropped (WITH (FORCE)) afterwards.
    sqlite_url          (function) sqlite:/// file under the test's tmp_path.
    database_url        (function) parametrized: "sqlite" and "postgres" (the latter
                                   marked `postgres`), giving one of the two above.

Hygiene (autouse)
    After every test no pykka actor may still be registered, no pooled actor
    (actors.runtime) may still be alive on any pool, and no non-daemon
    thread other than the main thread may still be alive (2 s grace); otherwise
    the leaked actors are stopped and the test fails naming them. (A leaked
    thread fails only the test that leaked it, not every later test as well.)

All URLs are SQLAlchemy URLs (`postgresql+psycopg://...`, `sqlite:///...`).
"""
from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import psycopg
import pykka
import pytest
from psycopg import sql
from sqlalchemy.engine import URL, Engine, make_url

from actors import runtime
from actors.cpu_pin import process_pin
from persistence.database import create_engine_for
from persistence.migrate import upgrade

REPO_ROOT = Path(__file__).resolve().parent.parent
POSTGRES_SCRIPT = REPO_ROOT / ".ci" / "postgres.sh"
ENV_VAR = "OMS_TEST_POSTGRES_URL"
POSTGRES_SCRIPT_TIMEOUT_S = 600


# --------------------------------------------------------------------------- helpers


def _connect_kwargs(url: URL) -> dict:
    kwargs = {
        "host": url.host or "127.0.0.1",
        "port": url.port or 5432,
        "user": url.username,
        "dbname": url.database,
        "connect_timeout": 5,
    }
    if url.password is not None:
        kwargs["password"] = url.password
    return {k: v for k, v in kwargs.items() if v is not None}


def _admin_connect(url: URL) -> psycopg.Connection:
    return psycopg.connect(**_connect_kwargs(url), autocommit=True)


def _render(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _probe(url_str: str) -> str | None:
    """None if the database answers `SELECT 1`, else a description of the problem."""
    try:
        url = make_url(url_str)
    except Exception as exc:  # noqa: BLE001 - reported to the user
        return f"not a valid SQLAlchemy URL: {exc}"
    if not url.drivername.startswith("postgresql"):
        return f"not a PostgreSQL URL (driver {url.drivername!r})"
    try:
        with _admin_connect(url) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - reported to the user
        return f"cannot connect: {type(exc).__name__}: {exc}".strip()
    return None


# --------------------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """SQLAlchemy URL of the shared test database on the test PostgreSQL server."""
    url = os.environ.get(ENV_VAR)
    if url:
        problem = _probe(url)
        if problem:
            pytest.fail(
                f"PostgreSQL test server from ${ENV_VAR}={url!r} is unavailable: {problem}",
                pytrace=False,
            )
        return url

    # No URL given: start (or find) the local test server ourselves.
    try:
        proc = subprocess.run(
            ["bash", str(POSTGRES_SCRIPT)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=POSTGRES_SCRIPT_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(
            f"${ENV_VAR} is not set and running {POSTGRES_SCRIPT} failed: {exc}",
            pytrace=False,
        )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        pytest.fail(
            f"${ENV_VAR} is not set and {POSTGRES_SCRIPT} could not provide a PostgreSQL "
            f"server (exit {proc.returncode}).\n--- stdout ---\n{proc.stdout}"
            f"\n--- stderr ---\n{proc.stderr}",
            pytrace=False,
        )
    url = lines[-1].strip()
    problem = _probe(url)
    if problem:
        pytest.fail(
            f"{POSTGRES_SCRIPT} reported {url!r} but it is unavailable: {problem}\n"
            f"--- stderr ---\n{proc.stderr}",
            pytrace=False,
        )
    os.environ[ENV_VAR] = url  # subprocesses of the tests see the same server
    return url


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A brand-new, empty database on the test server; dropped after the test."""
    base = make_url(postgres_url)
    name = f"oms_t_{uuid.uuid4().hex}"
    with _admin_connect(base) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(
                sql.Identifier(name)
            )
        )
    try:
        yield _render(base.set(database=name))
    finally:
        with _admin_connect(base) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """SQLAlchemy URL of a SQLite database file in the test's tmp_path."""
    return f"sqlite:///{tmp_path / 'oms.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs twice: once on SQLite, once on a fresh PostgreSQL db."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def migrated_engine(database_url: str) -> Iterator[Engine]:
    """An engine on ``database_url`` (each database in turn), its schema at the newest
    revision; disposed of after the test."""
    engine = create_engine_for(database_url)
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- hygiene

THREAD_GRACE_S = 2.0

# Threads already blamed on an earlier test; not blamed again on every later one.
_reported_threads: set[threading.Thread] = set()


def _lingering_threads() -> list[threading.Thread]:
    main = threading.main_thread()
    return [
        t
        for t in threading.enumerate()
        if t is not main and not t.daemon and t.is_alive() and t not in _reported_threads
    ]


@pytest.fixture(autouse=True)
def _no_leaked_actors_or_threads() -> Iterator[None]:
    """Fail the test if it leaves pykka actors or non-daemon threads running."""
    yield

    problems: list[str] = []

    actors = pykka.ActorRegistry.get_all()
    if actors:
        names = sorted(
            f"{ref.actor_class.__module__}.{ref.actor_class.__qualname__}" for ref in actors
        )
        try:
            pykka.ActorRegistry.stop_all(block=True, timeout=THREAD_GRACE_S * 5)
        except Exception as exc:  # noqa: BLE001 - still report the leak
            problems.append(f"stopping the leaked actors failed: {exc!r}")
        problems.append(f"{len(names)} pykka actor(s) left running: {', '.join(names)}")

    pooled = runtime.live_actors()
    if pooled:
        names = sorted(f"{ref.actor_class.__module__}.{ref.actor_class.__qualname__}" for ref in pooled)
        for ref in pooled:
            try:
                ref.stop(block=True, timeout=THREAD_GRACE_S)
            except Exception as exc:  # noqa: BLE001 - still report the leak
                problems.append(f"stopping a leaked pooled actor failed: {exc!r}")
        problems.append(f"{len(names)} pooled actor(s) left running: {', '.join(names[:10])}")

    if process_pin.cpu is not None:  # an OMS with pin_to_cpu left running: the rest would share one CPU
        problems.append(f"the process is still pinned to CPU {process_pin.cpu} (an OMS with pin_to_cpu was not stopped)")
        while process_pin.cpu is not None:
            process_pin.release()

    deadline = time.monotonic() + THREAD_GRACE_S
    lingering = _lingering_threads()
    while lingering and time.monotonic() < deadline:
        lingering[0].join(timeout=max(0.0, deadline - time.monotonic()))
        lingering = _lingering_threads()
    if lingering:
        _reported_threads.update(lingering)
        problems.append(
            "non-daemon thread(s) still alive after "
            f"{THREAD_GRACE_S:g} s: {', '.join(sorted(t.name for t in lingering))}"
        )

    if problems:
        pytest.fail("test leaked resources:\n  " + "\n  ".join(problems), pytrace=False)
