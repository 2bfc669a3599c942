"""Run the Alembic migrations from code: no alembic.ini is needed.

    upgrade(engine_or_url)      # alembic upgrade head; a no-op when already at head
    current_revision(engine)    # the revision the database is at, or None if unmigrated

The connection is handed to Alembic through ``config.attributes["connection"]``, so
the migration runs on the caller's engine (or connection) and in its transaction.
Concurrent upgrades from several processes take turns (an advisory lock on PostgreSQL,
a file lock beside an SQLite file).
"""
from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import URL, Connection, Engine

from persistence.database import create_engine_for

# Alembic keeps the migration in progress in module-level state, so two migrations in
# one process (OMSs for two databases starting together) must not overlap.
_IN_PROCESS = threading.Lock()
MIGRATION_LOCK_KEY = 0x6B6974656F6D73  # "kiteoms"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config built in code, pointing at ``persistence/migrations``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest revision the migration scripts know."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def engine_for(url: str, migrate: bool = True) -> Engine:
    """A new engine for ``url``; with ``migrate``, the schema brought to the newest
    revision first (and the engine disposed of if that fails)."""
    engine = create_engine_for(url)
    try:
        if migrate:
            upgrade(engine)
        return engine
    except BaseException:
        engine.dispose()
        raise


def upgrade(engine_or_url: Engine | Connection | str | URL, revision: str = "head") -> None:
    """Bring the database's schema up to ``revision`` (default: head), in one transaction
    where the database allows it. Running it again is a no-op."""
    if isinstance(engine_or_url, Connection):
        with _IN_PROCESS:
            command.upgrade(alembic_config(engine_or_url), revision)
        if engine_or_url.in_transaction():
            engine_or_url.commit()
        return
    owned = not isinstance(engine_or_url, Engine)
    engine = create_engine_for(engine_or_url) if owned else engine_or_url
    try:
        with _IN_PROCESS, _sqlite_file_lock(engine), engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # OMS processes for several accounts may start together on one database:
                # one migrates, the others wait and then find nothing left to do.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            command.upgrade(alembic_config(connection), revision)
    finally:
        if owned:
            engine.dispose()


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """Migrations of one SQLite file take turns (several OMS processes, one per account,
    may start together); PostgreSQL uses an advisory lock instead."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    path = Path(database).resolve()
    with open(path.with_name(path.name + ".migrate.lock"), "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def current_revision(engine: Engine | Connection) -> str | None:
    """The revision stamped in the database (None before the first migration)."""
    if isinstance(engine, Connection):
        return MigrationContext.configure(engine).get_current_revision()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
