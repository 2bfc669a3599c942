"""Order updates from Kite by polling: the order book and the trade book, read on a
background thread and delivered to the broker's sink as they change.

``OrderPoller`` owns the thread and what it has already delivered: the last state of
each order (an unchanged order is not sent again) and the trade ids (each trade is sent
once). Each round reads orders, then trades, and delivers the new trades before the
changed orders, as the paper exchange does (a COMPLETE order's fills are in by then).
The first round after connect delivers the whole day, so fills missed while the OMS
was down or disconnected are caught up.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, MutableSet, Sequence
from datetime import datetime
from typing import Any

from actors.brokers import kite_parsing as parse
from domain.broker import BrokerEventSink, BrokerOrderUpdate, BrokerTrade

log = logging.getLogger("oms.kite.poller")


def _state(update: BrokerOrderUpdate) -> tuple:
    # What makes an order "changed": everything but the timestamp.
    return (update.status, update.quantity, update.filled_quantity, update.average_price, update.price,
            update.trigger_price, update.message)


class OrderPoller:
    """Polls ``read_orders`` and ``read_trades`` every ``interval`` seconds (longer,
    doubling up to ``max_interval``, while reads fail) and delivers to ``sink``."""

    def __init__(
        self,
        read_orders: Callable[[], Sequence[Mapping[str, Any]]],
        read_trades: Callable[[], Sequence[Mapping[str, Any]]],
        sink: BrokerEventSink,
        *,
        interval: float,
        clock: Callable[[], datetime],
        max_interval: float = 30.0,
        paused: Callable[[], bool] = lambda: False,
        stopping: threading.Event | None = None,
        trade_ids: MutableSet[str] | None = None,
    ) -> None:
        self._read_orders = read_orders
        self._read_trades = read_trades
        self._sink = sink
        self._interval = interval
        self._max_interval = max(max_interval, interval)
        self._clock = clock
        self._paused = paused
        self._seen: dict[str, tuple] = {}  # broker order id -> last state delivered
        self._tags: dict[str, str | None] = {}  # broker order id -> its tag
        # Shared with the pushed updates' deliverer (kite_pushes), so a trade one
        # delivered the other does not deliver again (the tracker would ignore it).
        self._trade_ids: MutableSet[str] = trade_ids if trade_ids is not None else set()
        self._stop = stopping or threading.Event()
        self._soon = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kite-poller")
        self._thread.start()

    def poll_soon(self) -> None:
        """Poll now rather than at the next interval (the websocket reconnected: what
        it missed meanwhile is read at once)."""
        self._soon.set()

    def stop(self) -> None:
        self._stop.set()
        self._soon.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(30)
        self._thread = None

    def _run(self) -> None:
        wait = self._interval
        while not self._stop.is_set():
            if self._paused():
                # Only a flag is read here, so look often: polling resumes as soon as
                # a fresh token is set.
                self._stop.wait(self._interval)
                continue
            self._soon.clear()
            try:
                self.poll_once()
            except Exception as error:  # the broker is flaky: keep polling, slower
                level = logging.DEBUG if self._failing else logging.WARNING
                log.log(level, "polling Kite failed: %s", error)
                self._failing = True
                wait = min(wait * 2, self._max_interval)
            else:
                if self._failing:
                    log.warning("polling Kite works again")
                self._failing = False
                wait = self._interval
            self._soon.wait(wait)

    def poll_once(self) -> None:
        """One round: read both books, deliver what is new."""
        now = self._clock()
        orders = self._read_orders()
        trades = self._read_trades()
        updates = [u for u in parse.readable_orders(orders, now=now) if self._seen.get(u.broker_order_id) != _state(u)]
        self._tags.update((u.broker_order_id, u.tag) for u in updates)
        for body in trades:
            trade_id = str(body.get("trade_id"))
            order_id = str(body.get("order_id"))
            if trade_id in self._trade_ids:
                continue
            if order_id not in self._tags:
                continue  # its order is not in the order book yet (reads lag): next round, with its tag
            try:
                fill = parse.trade(body, tag=self._tags[order_id])
            except parse.KiteParseError as error:
                log.warning("skipping a trade Kite reported: %s", error)
                self._trade_ids.add(trade_id)  # unreadable now, unreadable next round
                continue
            self._deliver_trade(fill)
        for update in updates:
            self._sink.on_order_update(update)
            self._seen[update.broker_order_id] = _state(update)

    def _deliver_trade(self, fill: BrokerTrade) -> None:
        self._sink.on_trade(fill)
        self._trade_ids.add(fill.trade_id)
