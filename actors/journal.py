"""Journal: the one writer of the database."""
from __future__ import annotations

import logging

from actors.base import OMSActor, dispatch, fail, handles
from actors.messages import (
    Load,
    RecordFill,
    RecordNewOrder,
    RecordPosition,
    RecordRefusal,
    RecordTransition,
)
from persistence.store import Store

log = logging.getLogger("oms.journal")

# The reads other actors may ask for, by Store method name.
READS = frozenset(
    {
        "load_order",
        "load_orders",
        "load_live_orders",
        "load_positions",
        "load_fills",
        "load_unapplied_fills",
        "trade_ids",
        "load_events",
        "count_orders_by_status",
    }
)


@dispatch
class Journal(OMSActor):
    """Owns the database session (a Store on one long-lived connection).

    Takes RecordNewOrder, RecordTransition, RecordFill, RecordPosition (asked: the
    answer comes after the commit), RecordRefusal (told: it fails the strategy's reply
    after the commit) and Load (reads). Nobody else writes the database.
    """

    def __init__(self, database_url: str) -> None:
        super().__init__()
        self._url = database_url
        self._store: Store | None = None

    def on_start(self) -> None:
        self._store = Store.open(self._url)

    def on_stop(self) -> None:
        if self._store is not None:
            self._store.close()

    @property
    def store(self) -> Store:
        assert self._store is not None, "journal not started"
        return self._store

    @handles(RecordNewOrder)
    def _new_order(self, message: RecordNewOrder) -> None:
        self.store.record_new_order(message.order, message.event)

    @handles(RecordRefusal)
    def _refusal(self, message: RecordRefusal) -> None:
        try:
            self.store.record_new_order(message.order, message.event)
        except Exception:
            # The refusal stands even if it cannot be stored: nothing reaches the broker.
            log.exception("could not store refused order %s", message.order.order_id)
        fail(message.reply, message.error)

    @handles(RecordTransition)
    def _transition(self, message: RecordTransition) -> None:
        self.store.record_transition(message.order, message.event)

    @handles(RecordFill)
    def _fill(self, message: RecordFill) -> bool:
        return self.store.record_fill(message.fill, message.order, message.event)

    @handles(RecordPosition)
    def _position(self, message: RecordPosition) -> None:
        self.store.record_position(message.position, message.applied_trade_id)

    @handles(Load)
    def _load(self, message: Load):
        if message.what not in READS:
            raise ValueError(f"journal has no read named {message.what!r}")
        return getattr(self.store, message.what)(*message.args)
