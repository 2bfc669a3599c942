"""API keys: how a key is made, what is kept of it (its SHA-256 hash, never the key),
and what a key may do (its strategies; reading only, or trading too)."""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from persistence.api_keys import ApiKeyStore, StoredKey

KEY_PREFIX = "oms_"
# 32 random bytes (256 bits), URL-safe base64: a key cannot be guessed, so its hash can
# be looked up directly (no salt, no slow hash: those defend low-entropy passwords).
KEY_BYTES = 32
KEY_PATTERN = re.compile(r"^oms_[A-Za-z0-9_-]{43}$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request comes from: a live key's name and what it may do."""

    name: str
    strategies: frozenset[int] | None
    """The strategy ids it may see and act for; None for every strategy."""
    read_only: bool

    def sees(self, strategy_id: int) -> bool:
        return self.strategies is None or strategy_id in self.strategies

    @property
    def restricted(self) -> bool:
        return self.strategies is not None


class ApiKeys:
    """Creates, lists, revokes and checks the account's keys."""

    def __init__(self, store: ApiKeyStore) -> None:
        self._store = store

    def create(self, name: str, strategies: Iterable[int] | None = None, read_only: bool = False) -> tuple[StoredKey, str]:
        """A new key: what is stored, and the key itself (shown once; never stored)."""
        if not NAME_PATTERN.fullmatch(name):
            raise ValueError(f"name: {name!r} is not a key name (1-64 characters of A-Z, a-z, 0-9, '.', '_', '-')")
        allowed = None
        if strategies is not None:
            allowed = tuple(sorted(set(strategies)))
            if not allowed or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in allowed):
                raise ValueError("strategies: non-negative strategy ids, at least one (or none given for every strategy)")
        secret = new_secret()
        stored = self._store.add(name, key_hash(secret), allowed, read_only, datetime.now(timezone.utc))
        return stored, secret

    def revoke(self, name: str) -> bool:
        return self._store.revoke(name, datetime.now(timezone.utc))

    def list(self) -> list[StoredKey]:
        return self._store.all()

    def caller(self, presented: str) -> Caller | None:
        """The caller a presented key stands for; None when it is no live key of this
        account (malformed, unknown or revoked: the caller is told no more than that)."""
        if not KEY_PATTERN.fullmatch(presented):
            return None
        stored = self._store.find_by_hash(key_hash(presented))
        if stored is None or stored.revoked_at is not None:
            return None
        strategies = None if stored.strategies is None else frozenset(stored.strategies)
        return Caller(stored.name, strategies, stored.read_only)
