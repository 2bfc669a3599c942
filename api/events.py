"""The event stream: order, trade and position events, and the guide's ``tradeExecuted``,
numbered in the order the OMS published them and kept in a bounded buffer for clients
that reconnect.

An ``EventListener`` (a pykka actor, subscribed to the supervisor like any strategy)
hears OrderChanged after every committed change of an order and OrderFilled after every
fill has moved its position; it turns them into events in the ``EventHub``. Event ids
are ``<stream>-<n>``: ``stream`` names this run of the service, ``n`` counts from 1. A
client that reconnects with the last id it saw gets every later event still in the
buffer; when some are no longer there (the buffer moved on, or the OMS restarted, which
starts a new stream), it is first sent a ``gap`` event, and the durable trail (``GET
/orders``, ``/orders/{id}/events``, ``/trades``) has everything the stream had.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

import pykka

from actors.trading import OrderChanged, OrderFilled
from api.wire import plain
from domain.position import PositionKey

log = logging.getLogger("oms.api")

EXIT_REASON_KEY = "exit_reason"  # set by the managed exits and the kill switch (domain.exits)
DEFAULT_EXIT_REASON = "strategy"


@dataclass(frozen=True, slots=True)
class StreamEvent:
    seq: int
    type: str
    strategy_id: int
    data: dict[str, Any]


class EventHub:
    """The numbered events of this run, the latest ``capacity`` of them kept. Written by
    the listener's thread, read by the service's event loop."""

    def __init__(self, capacity: int) -> None:
        self.stream = secrets.token_hex(4)
        self._events: deque[StreamEvent] = deque(maxlen=capacity)
        self._next = 1
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def event_id(self, event: StreamEvent) -> str:
        return f"{self.stream}-{event.seq}"

    def as_json(self, event: StreamEvent) -> dict[str, Any]:
        return {"id": self.event_id(event), "type": event.type, "strategy_id": event.strategy_id, "data": event.data}

    def publish(self, type_: str, strategy_id: int, data: dict[str, Any]) -> None:
        with self._lock:
            self._events.append(StreamEvent(self._next, type_, strategy_id, data))
            self._next += 1
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop has closed: its client is gone
                continue

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._next - 1

    def resume_point(self, last_event_id: str | None) -> tuple[int, bool]:
        """Where a client resumes: the sequence number after which it hears events, and
        whether events it should have heard are gone (a gap)."""
        with self._lock:
            latest = self._next - 1
            oldest = self._events[0].seq if self._events else self._next
        if not last_event_id:
            return latest, False  # a new client hears what happens from now on
        stream, _, number = last_event_id.rpartition("-")
        if stream != self.stream or not number.isdigit():
            return oldest - 1, True  # another run's id (or none of ours): all we have, after a gap
        seq = int(number)
        if seq > latest:
            return latest, False
        if seq < oldest - 1:
            return oldest - 1, True
        return seq, False

    def after(self, seq: int, limit: int = 1000) -> list[StreamEvent]:
        with self._lock:
            return [e for e in self._events if e.seq > seq][:limit]

    async def wait_beyond(self, seq: int, timeout: float) -> None:
        """Return once an event after ``seq`` exists, or after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        waiter = (loop, asyncio.Event())
        with self._lock:
            if self._next - 1 > seq:
                return
            self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter[1].wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(waiter)


def matches(event: StreamEvent, strategies: Iterable[int] | None) -> bool:
    return strategies is None or event.strategy_id in strategies


class EventListener(pykka.ThreadingActor):
    """Owns the running P&L of each position's current round trip (from the fills it has
    heard), to tell ``tradeExecuted`` when a position closes. Takes OrderChanged and
    OrderFilled from the supervisor; publishes to the hub."""

    def __init__(self, hub: EventHub) -> None:
        super().__init__()
        self._hub = hub
        self._trips: dict[PositionKey, Decimal] = {}

    def on_receive(self, message: Any) -> None:
        try:
            if isinstance(message, OrderChanged):
                order = message.order
                self._hub.publish("order", order.strategy_id, {"order": plain(order)})
            elif isinstance(message, OrderFilled):
                self._filled(message)
        except Exception:  # one event that cannot be told must not end the stream for all
            log.exception("stream event for %r could not be published", type(message).__name__)

    def _filled(self, message: OrderFilled) -> None:
        order, fill, change = message.order, message.fill, message.position
        strategy = order.strategy_id
        self._hub.publish("trade", strategy, {"trade": plain(fill), "order_id": order.order_id})
        if change is None:  # a replayed fill: the position had moved already
            return
        before, after = change.before, change.after
        self._hub.publish("position", strategy, {"position": plain(after), "realized_pnl": str(change.realized_pnl)})
        key = after.key
        trip = self._trips.get(key, Decimal(0)) + change.realized_pnl
        opened = before.quantity == 0
        closed = before.quantity != 0 and (after.quantity == 0 or (after.quantity > 0) != (before.quantity > 0))
        if opened:
            trip = Decimal(0)
        if closed:
            reason = order.metadata.get(EXIT_REASON_KEY) or DEFAULT_EXIT_REASON
            self._hub.publish("tradeExecuted", strategy, {
                "pnl": str(trip), "symbol": after.symbol, "time": fill.at.isoformat(), "exitReason": str(reason),
                "exchange": after.exchange.value, "product": after.product.value, "order_id": order.order_id,
            })
            trip = Decimal(0)
        self._trips[key] = trip
