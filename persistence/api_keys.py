"""The HTTP API's keys as rows of ``api_keys``: created, listed, revoked and found by
their hash. Speaks tables only: what a key may do is decided in ``api.keys``."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from persistence.migrate import engine_for
from persistence.schema import DEFAULT_ACCOUNT, api_keys


@dataclass(frozen=True, slots=True)
class StoredKey:
    """One key as stored: never the key itself, only its hash."""

    name: str
    key_hash: str
    strategies: tuple[int, ...] | None
    """The strategy ids the key may see and act for; None for every strategy."""
    read_only: bool
    created_at: datetime
    revoked_at: datetime | None


class KeyNameTaken(ValueError):
    """A key of this name exists in this account already (revoked keys keep their name)."""


class ApiKeyStore:
    """The account's rows of ``api_keys``, on an engine of its own. Thread-safe (each
    call takes a pooled connection for one transaction)."""

    def __init__(self, engine: Engine, account: str = DEFAULT_ACCOUNT) -> None:
        self._engine = engine
        self.account = account

    @classmethod
    def open(cls, url: str, account: str = DEFAULT_ACCOUNT, migrate: bool = True) -> "ApiKeyStore":
        return cls(engine_for(url, migrate), account)

    def close(self) -> None:
        self._engine.dispose()

    def add(self, name: str, key_hash: str, strategies: tuple[int, ...] | None, read_only: bool, at: datetime) -> StoredKey:
        row = dict(
            account=self.account, name=name, key_hash=key_hash, read_only=read_only, created_at=at,
            strategies=None if strategies is None else list(strategies),
        )
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(api_keys).values(**row))
        except IntegrityError:
            if self.find_by_name(name) is not None:
                raise KeyNameTaken(f"an API key named {name!r} exists already (revoked keys keep their name)") from None
            raise
        return StoredKey(name, key_hash, strategies, read_only, at, None)

    def revoke(self, name: str, at: datetime) -> bool:
        """Revoke the key; False when no live key has this name."""
        statement = (
            update(api_keys)
            .where(api_keys.c.account == self.account, api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        with self._engine.begin() as conn:
            return conn.execute(statement).rowcount == 1

    def find_by_hash(self, key_hash: str) -> StoredKey | None:
        statement = select(api_keys).where(api_keys.c.account == self.account, api_keys.c.key_hash == key_hash)
        return self._one(statement)

    def find_by_name(self, name: str) -> StoredKey | None:
        return self._one(select(api_keys).where(api_keys.c.account == self.account, api_keys.c.name == name))

    def all(self) -> list[StoredKey]:
        statement = select(api_keys).where(api_keys.c.account == self.account).order_by(api_keys.c.id)
        with self._engine.connect() as conn:
            return [_key(row) for row in conn.execute(statement).mappings()]

    def _one(self, statement) -> StoredKey | None:
        with self._engine.connect() as conn:
            row = conn.execute(statement).mappings().first()
        return None if row is None else _key(row)


def _key(row) -> StoredKey:
    strategies = row["strategies"]
    return StoredKey(
        name=row["name"], key_hash=row["key_hash"],
        strategies=None if strategies is None else tuple(int(s) for s in strategies),
        read_only=bool(row["read_only"]), created_at=row["created_at"], revoked_at=row["revoked_at"],
    )
