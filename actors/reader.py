"""Reader: answers queries from the database on its own connection."""
from __future__ import annotations

import logging
from typing import Any

from actors.base import OMSActor, answer, dispatch, fail, handles
from actors.messages import MAX_PAGE, GetEvents, GetFills, GetOrders, LoadOrder, LoadOrderByClientId
from domain.order import Order
from persistence.schema import DEFAULT_ACCOUNT
from persistence.store import Store

log = logging.getLogger("oms.reader")


def _page(message: GetOrders | GetFills | GetEvents) -> tuple[int, int]:
    limit, after_id = message.limit, message.after_id
    for name, value in (("limit", limit), ("after_id", after_id)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}: must be an int, got {type(value).__name__}")
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit: {limit} is outside 1..{MAX_PAGE}; read further pages with after_id")
    if after_id < 0:
        raise ValueError(f"after_id: {after_id} must not be negative")
    return after_id, limit


@dispatch
class Reader(OMSActor):
    """Owns a read-only Store on its own connection (never the Journal's), so a large
    read never holds up an order being written or placed.

    Takes GetOrders, GetFills and GetEvents (answered through the message's ``reply``
    future, one bounded page each) and LoadOrder (asked). Reads only its account's rows.
    Everything a caller was told about is committed before it was told, so a reader
    sees it.
    """

    def __init__(self, database_url: str, account: str = DEFAULT_ACCOUNT, supervisor=None) -> None:
        super().__init__()
        self.supervisor = supervisor
        self._url = database_url
        self._account = account
        self._store: Store | None = None

    heals = True
    asked = (LoadOrder, LoadOrderByClientId)

    def on_start(self) -> None:
        self._store = Store.open(self._url, migrate=False, account=self._account)

    def restart(self) -> None:
        """A fresh connection."""
        if self._store is not None:
            self._store.close()
        self._store = Store.open(self._url, migrate=False, account=self._account)

    def on_stop(self) -> None:
        if self._store is not None:
            self._store.close()

    @property
    def store(self) -> Store:
        assert self._store is not None, "reader not started"
        return self._store

    def _serve(self, message: GetOrders | GetFills | GetEvents, read: Any) -> None:
        try:
            after_id, limit = _page(message)
            result = read(after_id, limit)
        except Exception as error:  # a bad page or a database away: the caller hears it
            log.debug("read %r failed", message, exc_info=True)
            fail(message.reply, error)
            return
        answer(message.reply, result)

    @handles(GetOrders)
    def _orders(self, message: GetOrders) -> None:
        self._serve(message, lambda after, limit: self.store.load_orders(
            message.statuses, message.strategy_id, after, limit, newest_first=message.newest_first))

    @handles(GetFills)
    def _fills(self, message: GetFills) -> None:
        self._serve(message, lambda after, limit: self.store.load_fills(message.order_id, after, limit))

    @handles(GetEvents)
    def _events(self, message: GetEvents) -> None:
        self._serve(message, lambda after, limit: self.store.load_events(message.order_id, after, limit))

    @handles(LoadOrder)
    def _load(self, message: LoadOrder) -> Order | None:
        return self.store.load_order(message.order_id)

    @handles(LoadOrderByClientId)
    def _load_by_client_id(self, message: LoadOrderByClientId) -> Order | None:
        return self.store.load_order_by_client_id(message.client_order_id)
