"""One running OMS per account and database.

Two OMS processes trading one broker account from one database would each believe it
owns every order: both would re-send, cancel and reconcile the same orders. So the OMS
holds a lock for its (database, account) while it runs, and a second one refuses to
start. PostgreSQL: a session-level advisory lock, held by a connection kept open for
the OMS's life (the server frees it if the process dies). SQLite: an exclusive ``flock``
on a file beside the database (the kernel frees it if the process dies).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from persistence.database import create_engine_for, safe_url


class AccountInUse(RuntimeError):
    """Another OMS already runs for this account on this database."""


def _lock_key(account: str) -> int:
    """A stable signed 64-bit advisory-lock key for the account."""
    digest = hashlib.sha256(f"kite-oms:{account}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class AccountLock:
    """Held from ``acquire`` until ``release``; ``release`` is idempotent."""

    def __init__(self, url: str, account: str) -> None:
        self.url = url
        self.account = account
        self._engine: Any = None
        self._connection: Any = None
        self._file: IO[str] | None = None

    def _refusal(self) -> AccountInUse:
        return AccountInUse(
            f"another OMS is already running for account {self.account!r} on {safe_url(self.url)}; "
            "stop it first, or start this one with another account (OMS_ACCOUNT)"
        )

    def acquire(self) -> "AccountLock":
        parsed = make_url(self.url)
        backend = parsed.get_backend_name()
        if backend == "postgresql":
            self._engine = create_engine_for(self.url, pool_size=1, max_overflow=0)
            self._connection = self._engine.connect()
            got = self._connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": _lock_key(self.account)}).scalar()
            self._connection.commit()
            if not got:
                self.release()
                raise self._refusal()
        elif backend == "sqlite" and parsed.database and parsed.database != ":memory:" and "mode=memory" not in str(parsed):
            path = Path(parsed.database).resolve()
            lock_path = path.with_name(f"{path.name}.{_safe(self.account)}.lock")
            handle = open(lock_path, "a+")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise self._refusal() from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            self._file = handle
        return self

    def ensure_held(self) -> str | None:
        """After the database came back: a PostgreSQL lock dies with its connection, so
        take it again. None when held; otherwise why it could not be (another OMS took
        the account meanwhile), for the caller to stop trading on."""
        if self._connection is None:
            return None  # SQLite's file lock (or none) does not depend on a connection
        with suppress(Exception):
            self._connection.execute(text("SELECT 1")).scalar()
            return None  # the session, and so the lock, lived through it
        with suppress(Exception):
            self._connection.close()
        try:
            self._connection = self._engine.connect()
            got = self._connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": _lock_key(self.account)}).scalar()
            self._connection.commit()
        except Exception as error:  # still unreachable: the next DatabaseUp tries again
            return f"could not take the account lock again: {error}"
        if not got:
            return f"another OMS took account {self.account!r} while the database was away"
        return None

    def release(self) -> None:
        if self._connection is not None:
            with suppress(Exception):  # a dead connection has released the lock already
                self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _lock_key(self.account)})
                self._connection.commit()
            with suppress(Exception):
                self._connection.close()
            self._connection = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self._file is not None:
            with suppress(OSError):
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _safe(account: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in account)
