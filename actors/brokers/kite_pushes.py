"""PushedUpdates: order updates Kite pushes (websocket order messages, postbacks), with
the trades behind them, delivered as they come.

A pushed update says an order's filled quantity, not which trades filled it; an order
becomes FILLED in the OMS only once its trades are in (by trade id), and polling alone
would bring them a poll later. So when a pushed update shows more filled than this
order's trades delivered so far, the order's trades are read (``order_trades``, one
call) and the new ones delivered first, then the update: a partial fill reaches the
positions as it happens, as it does by polling, where the trades also go first.

Pushed updates may come twice, late or never. Nothing here decides what is newer: the
order's tracker takes each state once and never moves an order backward, and takes
each trade once by its id (and the database refuses a trade id twice). The trade ids
this and the poller have delivered are shared only to save work.

The reads and the deliveries run on a thread of its own, so a slow read never holds up
the websocket or the postback listener.
"""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping, MutableSet, Sequence
from typing import Any

from actors.brokers import kite_parsing as parse
from domain.broker import BrokerEventSink, BrokerOrderUpdate, BrokerTrade

log = logging.getLogger("oms.kite.pushes")
_STOP = object()


class PushedUpdates:
    """A ``BrokerEventSink`` in front of ``sink``: owns the worker thread, its queue and,
    per order, the quantity its delivered trades add up to. ``read_trades(order_id)``
    answers Kite's trades of one order (``order_trades``)."""

    def __init__(
        self,
        sink: BrokerEventSink,
        read_trades: Callable[[str], Sequence[Mapping[str, Any]]],
        *,
        trade_ids: MutableSet[str] | None = None,
    ) -> None:
        self._sink = sink
        self._read_trades = read_trades
        self._trade_ids: MutableSet[str] = trade_ids if trade_ids is not None else set()
        self._traded: dict[str, int] = {}  # broker order id -> quantity of its trades delivered
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.delivered = 0  # updates handed on (for tests and logs)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kite-pushes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            if self._thread is not threading.current_thread():
                self._thread.join(15)
        self._thread = None

    # ------------------------------------------------------------------ BrokerEventSink

    def on_order_update(self, update: BrokerOrderUpdate) -> None:
        self._queue.put(update)

    def on_trade(self, trade: BrokerTrade) -> None:
        self._queue.put(trade)

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            try:
                if isinstance(item, BrokerTrade):
                    self._deliver_trade(item)
                else:
                    self._deliver_update(item)
            except Exception:  # one bad update must not stop the rest
                log.exception("a pushed update could not be delivered: %r", item)

    def _deliver_update(self, update: BrokerOrderUpdate) -> None:
        order_id = update.broker_order_id
        if update.filled_quantity > self._traded.get(order_id, 0):
            try:
                bodies = self._read_trades(order_id)
            except Exception as error:  # noqa: BLE001 - polling brings the trades later
                log.info("the trades of Kite order %s could not be read now (%s); polling brings them", order_id, error)
            else:
                traded = 0
                for body in bodies:
                    try:
                        fill = parse.trade(body, tag=update.tag)
                    except parse.KiteParseError as error:
                        log.warning("skipping a trade Kite reported: %s", error)
                        continue
                    traded += fill.quantity
                    self._deliver_trade(fill)
                # Kite's trade book can lag its order book: what is not there yet is
                # read again at the order's next update (or comes by polling).
                self._traded[order_id] = max(self._traded.get(order_id, 0), traded)
        self._sink.on_order_update(update)
        self.delivered += 1

    def _deliver_trade(self, trade: BrokerTrade) -> None:
        if trade.trade_id in self._trade_ids:
            return
        self._trade_ids.add(trade.trade_id)
        self._sink.on_trade(trade)
