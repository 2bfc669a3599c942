"""Before anything starts: can the database be reached, opened and brought up to date?

Start-up problems are a person's to fix (a typo in a URL, a server that is down, a
read-only directory), so they are told in one line that names the setting or the cause,
not as a traceback from inside an actor. The traceback is still logged, at DEBUG.
"""
from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from persistence.database import create_engine_for, safe_url
from persistence.migrate import upgrade

log = logging.getLogger("oms.preflight")
URL_FORMS = "sqlite:///path/to/oms.db or postgresql+psycopg://user@host:5432/dbname"


class DatabaseUnavailable(RuntimeError):
    """The database named by the settings cannot be used; the message says why."""


def prepare_database(url: str) -> None:
    """Connect to ``url`` and migrate it to the newest schema, or raise
    DatabaseUnavailable with a one-line reason."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUnavailable(f"database_url: {url!r} is not a database URL (use {URL_FORMS})") from None
    shown = safe_url(parsed)
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise DatabaseUnavailable(f"database_url: {shown}: unsupported database {backend!r} (use {URL_FORMS})")
    if backend == "sqlite":
        _check_sqlite_directory(parsed.database, shown)
    try:
        engine = create_engine_for(parsed)
    except SQLAlchemyError as error:
        log.debug("creating the engine for %s failed", shown, exc_info=True)
        raise DatabaseUnavailable(f"database_url: {shown}: {_first_line(error)}") from None
    try:
        if backend == "postgresql":
            _check_postgres_version(engine, shown)
        upgrade(engine)
    except DBAPIError as error:
        log.debug("opening %s failed", shown, exc_info=True)
        raise DatabaseUnavailable(f"database: cannot use {shown}: {_driver_reason(error)}") from None
    finally:
        engine.dispose()


# pg_current_xact_id and pg_xact_status, which settle a COMMIT whose answer was lost.
POSTGRES_MIN_VERSION = 130000


def _check_postgres_version(engine, shown: str) -> None:
    with engine.connect() as conn:
        version = int(conn.exec_driver_sql("SHOW server_version_num").scalar())
    if version < POSTGRES_MIN_VERSION:
        raise DatabaseUnavailable(
            f"database: cannot use {shown}: PostgreSQL {version // 10000} is too old; the OMS needs 13 or newer"
        )


def _check_sqlite_directory(database: str | None, shown: str) -> None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    folder = Path(database).expanduser().resolve().parent
    if not folder.is_dir():
        raise DatabaseUnavailable(f"database: cannot use {shown}: the directory {folder} does not exist")
    probe = folder / f".oms-write-check-{id(folder)}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise DatabaseUnavailable(
            f"database: cannot use {shown}: the directory {folder} is not writable ({error.strerror})"
        ) from None


def _driver_reason(error: DBAPIError) -> str:
    """The driver's own words, without SQLAlchemy's wrapping and background links."""
    original = getattr(error, "orig", None)
    text = _first_line(original) if original is not None else _first_line(error)
    for noise in ("connection failed: ",):
        text = text.replace(noise, "")
    return text


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
