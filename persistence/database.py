"""Engines for the two supported databases, set up for durability.

SQLite (a file) is the embedded default: WAL journal, ``synchronous=FULL`` (a commit is
on disk when it returns), foreign keys enforced, a busy timeout, and real transactions
(SQLAlchemy's ``BEGIN`` is sent to SQLite instead of the sqlite3 module's implicit one).
PostgreSQL through psycopg 3 is the production database.

URLs are never logged with their password; use ``safe_url`` to show one.
"""
from __future__ import annotations

import re
import sqlite3
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

SQLITE_BUSY_TIMEOUT_MS = 10_000
# libpq's: a server that cannot be reached (a partition, not a refusal) is an outage
# within seconds, not after the system's two-minute TCP timeout; a connection whose
# server went silent is found dead by keepalives instead of waiting for ever.
POSTGRES_CONNECT_DEFAULTS = {
    "connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
}

_PASSWORD_IN_URL = re.compile(r"(?P<head>://[^/:@]*:)(?P<password>[^@/]*)(?P<tail>@)")


def safe_url(url: str | URL) -> str:
    """``url`` with its password (if any) replaced by ``***``, safe to log or show."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError, TypeError):
        return _PASSWORD_IN_URL.sub(r"\g<head>***\g<tail>", str(url))


def _is_memory_sqlite(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or database.startswith("file::memory:") or (
        "mode=memory" in database or url.query.get("mode") == "memory"
    )


def create_engine_for(url: str | URL, **kwargs: Any) -> Engine:
    """An Engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``).

    Extra keyword arguments go to ``sqlalchemy.create_engine``.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, **kwargs)
    if backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        kwargs.setdefault("pool_pre_ping", True)
        connect_args = dict(kwargs.pop("connect_args", {}) or {})
        for name, value in POSTGRES_CONNECT_DEFAULTS.items():
            if name not in parsed.query:  # the URL's own word wins
                connect_args.setdefault(name, value)
        return create_engine(parsed, connect_args=connect_args, **kwargs)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)


def _sqlite_engine(url: URL, **kwargs: Any) -> Engine:
    connect_args = dict(kwargs.pop("connect_args", {}) or {})
    # One writer thread owns the connection, but it need not be the thread that made it.
    connect_args.setdefault("check_same_thread", False)
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
    memory = _is_memory_sqlite(url)
    if memory:
        # Every connection must see the same in-memory database.
        kwargs.setdefault("poolclass", StaticPool)
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Straight to the driver: SQLAlchemy's statement machinery costs several times
        # what the BEGIN does, once per transaction of the group commit. A BEGIN the
        # driver refuses is sent again through it, to be raised as SQLAlchemy raises it.
        try:
            connection.connection.dbapi_connection.execute("BEGIN")
        except sqlite3.Error:
            connection.exec_driver_sql("BEGIN")

    return engine
