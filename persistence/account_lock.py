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


def lock_holder(url: str, account: str) -> str | None:
    """Who holds the account's lock now, without taking it: ``"pid N"`` for the OMS
    process running it, or None when no OMS runs for (database, account).

    A probe must never take the lock, even for an instant: an OMS starting in that
    instant would be refused. So PostgreSQL is asked through ``pg_locks``, and for
    SQLite the pid the holder wrote is checked to be alive and to still hold the
    ``flock`` (``/proc/locks``, Linux), which a reused pid does not."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        key = _lock_key(account) & 0xFFFF_FFFF_FFFF_FFFF  # pg_locks shows the halves unsigned
        engine = create_engine_for(url, pool_size=1, max_overflow=0)
        try:
            with engine.connect() as conn:
                pid = conn.execute(text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1"
                ), {"high": key >> 32, "low": key & 0xFFFF_FFFF}).scalar()
        finally:
            engine.dispose()
        return None if pid is None else f"PostgreSQL backend pid {pid}"
    if backend == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database).resolve()
        lock_path = path.with_name(f"{path.name}.{_safe(account)}.lock")
        try:
            written = lock_path.read_text().strip()
            inode = lock_path.stat().st_ino
        except OSError:
            return None
        if not written.isdigit():
            return None
        try:
            held = Path("/proc/locks").read_text()
        except OSError:
            held = None
        if held is not None:
            # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF": pid, then dev:inode.
            for line in held.splitlines():
                fields = line.split()
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[4] == written \
                        and fields[5].rsplit(":", 1)[-1] == str(inode):
                    return f"pid {written}"
            return None
        try:
            os.kill(int(written), 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return f"pid {written} (another user's)"  # alive, only not ours to signal
        return f"pid {written}"
    return None
