"""Helpers for tests of the HTTP API: a real OMS (paper broker) with its real server on
127.0.0.1 (a free port), keys made as ``oms keys create`` makes them, the real client."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import httpx

from actors import start_oms
from actors.oms import OMS
from api.client import OMSClient
from api.keys import ApiKeys
from api.service import ApiService
from persistence.api_keys import ApiKeyStore

# Generous by default: only the rate-limit test wants to meet the limit.
ROOMY = dict(api_requests_per_second="1000", api_burst=1000)


@dataclass
class Served:
    oms: OMS
    api: ApiService
    database_url: str

    @property
    def url(self) -> str:
        return self.api.url

    def key(self, name: str, strategies: list[int] | None = None, read_only: bool = False) -> str:
        store = ApiKeyStore.open(self.database_url, self.oms.settings.account, migrate=False)
        try:
            return ApiKeys(store).create(name, strategies, read_only)[1]
        finally:
            store.close()

    def revoke(self, name: str) -> None:
        store = ApiKeyStore.open(self.database_url, self.oms.settings.account, migrate=False)
        try:
            assert ApiKeys(store).revoke(name)
        finally:
            store.close()

    def client(self, key: str) -> OMSClient:
        return OMSClient(self.url, key)

    def http(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=30)


@contextmanager
def served(database_url: str, **overrides) -> Iterator[Served]:
    """A running OMS and its API; both stopped afterwards, the API first."""
    oms = start_oms(database_url=database_url, **{**ROOMY, **overrides})
    try:
        with ApiService(oms, port=0) as api:
            yield Served(oms, api, database_url)
    finally:
        oms.stop()


def count(database_url: str, table: str) -> int:
    from tests.oms_helpers import rows

    return rows(database_url, f"SELECT count(*) AS n FROM {table}")[0]["n"]
