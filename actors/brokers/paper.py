"""A simulated exchange behind the ``Broker`` interface: the paper broker.

It is the far side of the broker gateway: it keeps an order book, fills orders against
prices it is told (``set_price``), and reports what happens through the connected
``BrokerEventSink`` exactly as a real broker's order updates and trades would arrive.
Used by the demo, the benchmarks and most tests.

Model (deliberately small):
- An instrument exists once a price has been set for it; its last price is the only
  price. Orders fill at the last price when it satisfies them (MARKET always; LIMIT when
  the last price is at or better than the limit; SL/SL-M once triggered).
- ``set_liquidity`` caps how much of each order fills per matching event, which is how
  partial fills are produced. A matching event is a placement, a modification or a
  ``set_price`` of the order's instrument.
- Rejections a real exchange would make (unknown instrument, price outside the circuit
  band, malformed order) raise ``BrokerRejected`` and leave the order in the book as
  REJECTED, so ``orders()`` and ``find_by_tag`` show it.
- Statuses are Kite's: OPEN, TRIGGER PENDING, COMPLETE, CANCELLED, REJECTED.

Memory: given a book store (``persistence.paper_book``), the exchange loads its book
(orders, trades, last prices, id counters) when it is made and commits each operation's
changes before it answers or reports them, like a broker that never forgets an order it
acknowledged; so after an OMS restart its answers are still authoritative. Without one
it keeps everything in memory only (unit tests). Liquidity caps and injected faults are
test controls and are never kept.

Thread safety: one lock guards everything; the exchange has no threads of its own.
Events are delivered while the lock is held, at the end of the operation that caused
them (after its changes are committed), so their order is the order things happened; a
sink must therefore only enqueue (it must not call back into the exchange, which is
detected and refused rather than dead-locking). Money is Decimal throughout.
"""
from __future__ import annotations

import logging
import re
import secrets
import threading
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Callable, Iterator, Literal

from actors.brokers.paper_order import Instrument, PaperOrder
from actors.brokers.paper_writer import BookChanges, BookWriter
from domain.broker import (
    BrokerAmbiguous,
    BrokerEventSink,
    BrokerOrderRequest,
    BrokerOrderUpdate,
    BrokerPosition,
    BrokerRejected,
    BrokerTrade,
    BrokerUnavailable,
)
from domain.enums import Exchange, OrderType, Product, Side, Validity, Variety
from domain.money import average, parse_money, to_decimal
from domain.position import Position, apply_fill
from persistence.paper_book import (
    PaperBook,
    PaperBookStore,
    PaperCounters,
    PaperPriceRecord,
    PaperTradeRecord,
)

__all__ = ["PaperExchange"]

log = logging.getLogger(__name__)

# Kite's statuses, as the paper exchange reports them.
OPEN = "OPEN"
TRIGGER_PENDING = "TRIGGER PENDING"
COMPLETE = "COMPLETE"
CANCELLED = "CANCELLED"
REJECTED = "REJECTED"
_WORKING = frozenset({OPEN, TRIGGER_PENDING})

_STOP_TYPES = frozenset({OrderType.SL, OrderType.SL_M})
_PRICED_TYPES = frozenset({OrderType.LIMIT, OrderType.SL})
_HUNDRED = Decimal(100)
_CENTS = Decimal("0.01")
_PREFIX_RE = re.compile(r"[0-9]{1,9}")
_ID_DIGITS = 18  # prefix + one kind digit + zero-padded counter
# What the book's columns hold: Kite's quantity limit, a symbol as long as the OMS's,
# a broker order id as long as the OMS keeps.
MAX_QUANTITY = 2_147_483_647
MAX_SYMBOL = 40
MAX_ORDER_ID = 50
# Counters are reserved this many ids ahead in the kept book, so most operations need not
# write them; a restart goes on above the reserve (ids may skip, never repeat).
COUNTER_BLOCK = 1000

FaultKind = Literal["rejected", "unavailable", "ambiguous"]
_Instrument = Instrument


def _is_quantity(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_QUANTITY


def _fmt(value: Decimal) -> str:
    """A price as people write it: at least two decimals, more only when needed."""
    normalized = value.normalize()
    if normalized.as_tuple().exponent >= -2:  # type: ignore[operator]
        return str(value.quantize(_CENTS))
    return str(normalized)


@dataclass(frozen=True, slots=True)
class _PlaceFault:
    kind: FaultKind
    reason: str


class PaperExchange:
    """A simulated exchange implementing ``domain.broker.Broker``.

    ``clock`` returns the current time (timezone-aware UTC); the exchange never reads the
    system clock. ``band_percent`` is the circuit band around the last price inside which
    LIMIT prices and SL triggers must lie. ``id_prefix`` (1-9 digits) fixes the leading
    digits of order and trade ids, for reproducible tests; left as None a random 9-digit
    prefix is drawn per book (per instance without one). ``book``: where the book is
    kept (see the module's docstring); once made, the exchange owns it and closes it
    in ``release_book``. A kept book's prefix and counters go on where they stopped, so
    ids never repeat across restarts; an ``id_prefix`` other than the book's is refused.

    Owns the book: every order it was sent (rejected ones too), every trade, the last
    price of each instrument and the id counters; and, in memory only, the liquidity
    caps and the faults queued by tests.
    """

    # The book is the exchange's own and never forgets (kept in its tables when it has a
    # store): an order it does not have, it never took.
    lookups_are_authoritative = True

    def __init__(
        self,
        clock: Callable[[], datetime],
        band_percent: Decimal = Decimal("20"),
        id_prefix: str | None = None,
        book: PaperBookStore | None = None,
    ) -> None:
        band = to_decimal(band_percent, "band_percent")
        if not (0 < band <= _HUNDRED):
            raise ValueError(f"band_percent must be in (0, 100], got {band}")
        if id_prefix is not None and (not isinstance(id_prefix, str) or not _PREFIX_RE.fullmatch(id_prefix)):
            raise ValueError(f"id_prefix must be 1 to 9 ASCII digits, got {id_prefix!r}")
        self._clock = clock
        self._band = band

        self._lock = threading.Lock()
        self._owner: int | None = None  # thread holding the lock, to refuse re-entry
        self._sink: BrokerEventSink | None = None

        self._prices: dict[_Instrument, Decimal] = {}
        self._liquidity: dict[_Instrument, int] = {}
        self._orders: dict[str, PaperOrder] = {}  # every order, in arrival order
        self._working: dict[_Instrument, dict[str, PaperOrder]] = {}  # open/trigger pending
        self._by_tag: dict[str, str] = {}  # tag -> latest broker order id with it
        self._trades: list[BrokerTrade] = []
        self._trade_ids: set[str] = set()
        self._trades_by_order: dict[str, list[BrokerTrade]] = {}
        self._last_arrival = 0
        self._order_seq = 0  # the last counters used ...
        self._trade_seq = 0
        self._order_reserve = 0  # ... and, with a kept book, how far they are written ahead
        self._trade_reserve = 0
        self._place_faults: deque[_PlaceFault] = deque()
        self._cancel_faults: deque[str] = deque()

        # One operation's effects, until its end: what it changed (to be written) and
        # what it has to report (delivered once the changes are written).
        self._changes = BookChanges()
        self._touched: dict[str, PaperOrder] = {}  # orders changed, written as they end up
        self._counters_moved = False
        self._outbox: list[BrokerOrderUpdate | BrokerTrade] = []
        self._writer: BookWriter | None = None
        self._released = False
        # Where an instrument's first price comes from when an order for it finds none
        # (Kite's live prices, ``kite_prices``): called with (exchange, symbol) before the
        # order is taken, outside the lock; it sets the price (set_price) if it can.
        self.price_source: Callable[[str, str], object] | None = None

        if book is None:
            self._set_prefix(id_prefix or self._random_prefix())
            return
        kept = book.load()
        self._restore(kept)
        if kept.counters is not None:
            if id_prefix is not None and id_prefix != kept.counters.id_prefix:
                raise ValueError(
                    f"id_prefix {id_prefix!r} differs from the kept book's {kept.counters.id_prefix!r}"
                )
            self._set_prefix(kept.counters.id_prefix)
        else:
            # A new book: its prefix is written before any id made with it is handed out.
            self._set_prefix(id_prefix or self._random_prefix())
            book.save(counters=self._counters())
        self._writer = BookWriter(book)

    # ------------------------------------------------------------------ connection

    def connect(self, sink: BrokerEventSink) -> None:
        """Deliver later updates and trades to ``sink`` (events before this are dropped)."""
        with self._locked():
            self._sink = sink

    def close(self) -> None:
        """Forget the sink; the book and prices are kept."""
        with self._locked():
            self._sink = None

    def release_book(self) -> None:
        """Write what is not yet written and close the kept book (its OMS stopped).
        The exchange still answers reads from memory, but refuses every change: a later
        exchange for the account owns the book now. Idempotent; a no-op in memory."""
        with self._locked():
            if self._writer is None or self._released:
                return
            self._released = True
            self._writer.close()

    # ------------------------------------------------------------------ market

    def set_price(
        self, symbol: str, price: Decimal, exchange: str | Exchange = "NSE"
    ) -> None:
        """Set the last traded price of an instrument, then match its working orders."""
        if not isinstance(symbol, str) or not 0 < len(symbol) <= MAX_SYMBOL:
            raise ValueError(f"symbol must be text of 1 to {MAX_SYMBOL} characters, got {symbol!r}")
        instrument = (Exchange(exchange), symbol)
        last = parse_money(to_decimal(price, "price"), "price")  # exact, and as the book keeps it
        if last <= 0:
            raise ValueError(f"price must be positive, got {last}")
        with self._changing():
            self._prices[instrument] = last
            book = self._working.get(instrument)
            if not book and self._writer is None:
                return  # nothing to match and nothing to keep: the clock is not asked
            now = self._now()
            if self._writer is not None:
                venue = instrument[0].value
                self._changes.prices[(venue, symbol)] = PaperPriceRecord(venue, symbol, last, now)
            for order in list(book.values()) if book else ():  # arrival order is time priority
                if order.status in _WORKING:
                    self._match(order, last, now)

    def price(self, symbol: str, exchange: str | Exchange = "NSE") -> Decimal | None:
        """The last price of an instrument, or None if none was ever set."""
        instrument = (Exchange(exchange), symbol)
        with self._locked():
            return self._prices.get(instrument)

    def set_liquidity(
        self, symbol: str, quantity: int | None, exchange: str | Exchange = "NSE"
    ) -> None:
        """Cap the units of each order that fill per matching event (None: no cap)."""
        instrument = (Exchange(exchange), symbol)
        if quantity is not None and (
            isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0
        ):
            raise ValueError(f"liquidity must be a non-negative int or None, got {quantity!r}")
        with self._locked():
            if quantity is None:
                self._liquidity.pop(instrument, None)
            else:
                self._liquidity[instrument] = quantity

    # ------------------------------------------------------------------ faults

    def fail_next_place(
        self, kind: FaultKind, reason: str = "injected fault"
    ) -> None:
        """Make the next ``place`` fail (each call queues one failure).

        - "rejected": raises BrokerRejected(reason) without a broker order id and books
          nothing, like Kite refusing a request before the exchange sees it.
        - "unavailable": raises BrokerUnavailable(reason); nothing is placed.
        - "ambiguous": the order IS placed (events are emitted as usual), but the call
          raises BrokerAmbiguous(reason), like a timeout after the broker accepted it.
        """
        if kind not in ("rejected", "unavailable", "ambiguous"):
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._locked():
            self._place_faults.append(_PlaceFault(kind, reason))

    def fail_next_cancel(self, reason: str = "cancel refused (injected fault)") -> None:
        """Make the next ``cancel`` raise BrokerRejected(reason) and change nothing."""
        with self._locked():
            self._cancel_faults.append(reason)

    # ------------------------------------------------------------------ Broker

    def place(self, request: BrokerOrderRequest) -> str:
        if self.price_source is not None:
            self._price_first(request)
        with self._changing():
            fault = self._place_faults.popleft() if self._place_faults else None
            if fault is not None and fault.kind == "unavailable":
                raise BrokerUnavailable(fault.reason)
            if fault is not None and fault.kind == "rejected":
                raise BrokerRejected(fault.reason)

            now = self._now()
            order_id = self._next_order_id()
            reason, exchange, price, trigger = self._check_request(request)
            order = PaperOrder(
                broker_order_id=order_id,
                arrival=self._next_arrival(),
                request=request,
                exchange=exchange if exchange is not None else Exchange.NSE,
                quantity=request.quantity if _is_quantity(request.quantity) else 0,
                price=price,
                trigger_price=trigger,
                status=REJECTED,
                placed_at=now,
                updated_at=now,
            )
            self._orders[order_id] = order
            self._by_tag[request.tag] = order_id

            if reason is not None:
                order.message = reason
                self._emit_update(order, now)
                if fault is not None:  # ambiguous: the caller never hears the verdict
                    raise BrokerAmbiguous(fault.reason)
                raise BrokerRejected(reason, order_id)

            order.status = TRIGGER_PENDING if request.order_type in _STOP_TYPES else OPEN
            self._emit_update(order, now)
            self._working.setdefault(order.instrument, {})[order_id] = order
            self._match(order, self._prices[order.instrument], now)
            if fault is not None:
                raise BrokerAmbiguous(fault.reason)
            return order_id

    def _price_first(self, request: BrokerOrderRequest) -> None:
        """Ask the price source for an instrument the exchange has no price of yet."""
        try:
            exchange = Exchange(request.exchange)
        except ValueError:
            return  # refused for its exchange below
        if self.price(request.symbol, exchange) is not None or self.price_source is None:
            return
        try:
            self.price_source(exchange.value, request.symbol)
        except Exception:  # unpriced, the order is refused below ("instrument ... not found")
            log.exception("no first price for %s:%s", exchange.value, request.symbol)

    def modify(
        self,
        broker_order_id: str,
        quantity: int | None = None,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
        variety: Variety = Variety.REGULAR,
    ) -> None:
        """Change a working order; confirmed by an update (status OPEN, or TRIGGER
        PENDING while a stop order is untriggered) carrying the new values, after which
        the order is matched again (a new price may cross at once)."""
        with self._changing():
            order = self._get(broker_order_id)
            if order.status not in _WORKING:
                raise BrokerRejected(
                    f"order {broker_order_id} is {order.status} and cannot be modified",
                    broker_order_id,
                )
            order_type = order.request.order_type
            new_quantity = order.quantity
            if quantity is not None:
                if isinstance(quantity, bool) or not isinstance(quantity, int):
                    raise BrokerRejected(f"quantity {quantity!r} is not a whole number", broker_order_id)
                if quantity <= order.filled_quantity:
                    raise BrokerRejected(
                        f"quantity {quantity} must exceed the filled quantity "
                        f"{order.filled_quantity}",
                        broker_order_id,
                    )
                new_quantity = quantity
            new_price = order.price
            if price is not None:
                if order_type not in _PRICED_TYPES:
                    raise BrokerRejected(
                        f"a {order_type.value} order has no price to modify", broker_order_id
                    )
                new_price = self._money(price, "price", broker_order_id)
            new_trigger = order.trigger_price
            if trigger_price is not None:
                if order_type not in _STOP_TYPES:
                    raise BrokerRejected(
                        f"a {order_type.value} order has no trigger price", broker_order_id
                    )
                new_trigger = self._money(trigger_price, "trigger price", broker_order_id)
            reason = self._stop_consistency(order.request.side, order_type, new_price, new_trigger)
            last = self._prices.get(order.instrument)
            if reason is None and last is not None:
                reason = self._band_check(order.instrument, last, new_price, new_trigger)
            if reason is not None:
                raise BrokerRejected(reason, broker_order_id)

            now = self._now()
            order.quantity = new_quantity
            order.price = new_price
            order.trigger_price = new_trigger
            order.message = None
            self._emit_update(order, now)
            if last is not None:
                self._match(order, last, now)

    def cancel(self, broker_order_id: str, variety: Variety = Variety.REGULAR) -> None:
        with self._changing():
            if self._cancel_faults:
                raise BrokerRejected(self._cancel_faults.popleft(), broker_order_id)
            order = self._get(broker_order_id)
            if order.status not in _WORKING:
                raise BrokerRejected(
                    f"order {broker_order_id} is {order.status} and cannot be cancelled",
                    broker_order_id,
                )
            self._close(order, CANCELLED, None, self._now())

    def find_by_tag(self, tag: str) -> BrokerOrderUpdate | None:
        """The latest order placed with ``tag`` (rejected ones included), or None."""
        with self._locked():
            order_id = self._by_tag.get(tag)
            return None if order_id is None else self._orders[order_id].snapshot()

    def orders(self) -> list[BrokerOrderUpdate]:
        """Every order received (rejected and adopted ones included), in arrival order."""
        with self._locked():
            return [order.snapshot() for order in self._orders.values()]

    def trades(self, broker_order_id: str | None = None) -> list[BrokerTrade]:
        """Every trade in execution order, or those of one order."""
        with self._locked():
            if broker_order_id is None:
                return list(self._trades)
            return list(self._trades_by_order.get(broker_order_id, ()))

    def positions(self) -> list[BrokerPosition]:
        """Net positions from every trade in the book, by (exchange, symbol, product),
        with the average price of the open quantity; flat ones are left out."""
        with self._locked():
            trades = list(self._trades)
        held: dict[tuple[Exchange, str, Product], Position] = {}
        for trade in trades:
            key = (trade.exchange, trade.symbol, trade.product)
            before = held.get(key) or Position(*key)
            held[key] = apply_fill(before, trade.side, trade.quantity, trade.price).after
        return [
            BrokerPosition(p.exchange, p.symbol, p.product, p.quantity, p.average_price)
            for p in held.values() if p.quantity != 0
        ]

    # ------------------------------------------------------------------ recovery

    def adopt(
        self,
        request: BrokerOrderRequest,
        broker_order_id: str,
        filled_quantity: int,
        average_price: Decimal | None,
    ) -> None:
        """Put a working order placed elsewhere into the book (kept like any other),
        silently: nothing is emitted and nothing is matched until the next ``set_price``
        of its instrument. Earlier trades of the order are not recreated; only its
        cumulative fill is. A stop order with no fills comes back TRIGGER PENDING,
        anything else OPEN. (The OMS no longer needs it after a restart: a kept book
        has every order already.)"""
        if not isinstance(broker_order_id, str) or not 0 < len(broker_order_id) <= MAX_ORDER_ID:
            raise ValueError(f"broker_order_id must be a string of 1 to {MAX_ORDER_ID} characters")
        exchange = Exchange(request.exchange)
        if isinstance(filled_quantity, bool) or not isinstance(filled_quantity, int):
            raise ValueError(f"filled_quantity must be an int, got {filled_quantity!r}")
        if not 0 <= filled_quantity < request.quantity:
            raise ValueError(
                f"filled_quantity {filled_quantity} must be in [0, {request.quantity}) "
                "for a working order"
            )
        if filled_quantity > 0 and average_price is None:
            raise ValueError("average_price is required when filled_quantity > 0")
        avg = None if filled_quantity == 0 or average_price is None else self._exact(
            average_price, "average_price"
        )
        price = None if request.price is None else self._exact(request.price, "price")
        trigger = None if request.trigger_price is None else self._exact(request.trigger_price, "trigger_price")
        if not _is_quantity(request.quantity):
            raise ValueError(f"quantity must be a whole number up to {MAX_QUANTITY}, got {request.quantity!r}")
        with self._changing():
            if broker_order_id in self._orders:
                raise ValueError(f"order {broker_order_id} is already in the book")
            stop_pending = request.order_type in _STOP_TYPES and filled_quantity == 0
            now = self._now()
            order = PaperOrder(
                broker_order_id=broker_order_id,
                arrival=self._next_arrival(),
                request=request,
                exchange=exchange,
                quantity=request.quantity,
                price=price,
                trigger_price=trigger,
                status=TRIGGER_PENDING if stop_pending else OPEN,
                placed_at=now,
                updated_at=now,
                filled_quantity=filled_quantity,
                filled_value=(avg * filled_quantity) if avg is not None else Decimal(0),
                average_price=avg,
            )
            self._orders[broker_order_id] = order
            self._by_tag[request.tag] = broker_order_id
            self._working.setdefault(order.instrument, {})[broker_order_id] = order
            self._touched[broker_order_id] = order  # silent, yet kept

    # ------------------------------------------------------------------ internals

    @contextmanager
    def _locked(self) -> Iterator[None]:
        me = threading.get_ident()
        if self._owner == me:
            raise RuntimeError(
                "PaperExchange called from inside its own event delivery; "
                "an event sink must only enqueue"
            )
        with self._lock:
            self._owner = me
            try:
                yield
            finally:
                self._owner = None

    @contextmanager
    def _changing(self) -> Iterator[None]:
        """One operation that may change the book: under the lock, its changes are
        written (one transaction) and only then its events delivered, whether it ends
        normally or by raising (a rejection is booked and reported too)."""
        with self._locked():
            if self._released:
                raise RuntimeError(
                    "this paper exchange's book was released when its OMS stopped; "
                    "the exchange of the OMS started since owns it"
                )
            try:
                yield
            finally:
                self._write()
                self._deliver()

    def _write(self) -> None:
        changes, self._changes = self._changes, BookChanges()
        touched, self._touched = self._touched, {}
        moved, self._counters_moved = self._counters_moved, False
        if self._writer is None:
            return
        for order_id, order in touched.items():
            changes.orders[order_id] = order.record()
        if moved:
            changes.counters = self._counters()
        self._writer.write(changes)  # held for later if the database cannot take it now

    def _deliver(self) -> None:
        events, self._outbox = self._outbox, []
        sink = self._sink
        if sink is None:
            return
        for event in events:
            try:
                if isinstance(event, BrokerTrade):
                    sink.on_trade(event)
                else:
                    sink.on_order_update(event)
            except Exception:  # the book stays consistent; the sink's bug is reported
                log.exception("paper exchange: event sink failed on %r", event)

    # ------------------------------------------------------------------ the kept book

    def _restore(self, kept: PaperBook) -> None:
        """Take the book back as it was written: orders in arrival order (so working ones
        keep their time priority), trades in execution order, last prices."""
        for row in kept.orders:
            order = PaperOrder.from_record(row)
            self._orders[order.broker_order_id] = order
            self._by_tag[order.request.tag] = order.broker_order_id  # the latest with the tag
            if order.status in _WORKING:
                self._working.setdefault(order.instrument, {})[order.broker_order_id] = order
            self._last_arrival = max(self._last_arrival, order.arrival)
        for row in kept.trades:
            order = self._orders[row.broker_order_id]
            trade = self._trade_of(order, row.trade_id, row.quantity, row.price, row.executed_at)
            self._trades.append(trade)
            self._trade_ids.add(trade.trade_id)
            self._trades_by_order.setdefault(order.broker_order_id, []).append(trade)
        for row in kept.prices:
            self._prices[(Exchange(row.exchange), row.symbol)] = row.price
        if kept.counters is not None:  # on above everything reserved before
            self._order_seq = self._order_reserve = kept.counters.order_seq
            self._trade_seq = self._trade_reserve = kept.counters.trade_seq

    def _set_prefix(self, prefix: str) -> None:
        self._prefix = prefix
        self._counter_width = _ID_DIGITS - 1 - len(prefix)

    @staticmethod
    def _random_prefix() -> str:
        return str(10**8 + secrets.randbelow(9 * 10**8))

    def _counters(self) -> PaperCounters:
        return PaperCounters(self._prefix, self._order_reserve, self._trade_reserve)

    def _next_arrival(self) -> int:
        self._last_arrival += 1
        return self._last_arrival

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError(f"the clock must return timezone-aware datetimes, got {now!r}")
        return now

    def _next_order_id(self) -> str:
        while True:
            self._order_seq += 1
            if self._order_seq > self._order_reserve:
                # Written with the change that uses it: no id is handed out unreserved.
                self._order_reserve = self._order_seq + COUNTER_BLOCK - 1
                self._counters_moved = True
            order_id = f"{self._prefix}1{self._order_seq:0{self._counter_width}d}"
            if order_id not in self._orders:  # an adopted order may hold it
                return order_id

    def _next_trade_id(self) -> str:
        while True:
            self._trade_seq += 1
            if self._trade_seq > self._trade_reserve:
                self._trade_reserve = self._trade_seq + COUNTER_BLOCK - 1
                self._counters_moved = True
            trade_id = f"{self._prefix}2{self._trade_seq:0{self._counter_width}d}"
            if trade_id not in self._trade_ids:  # a trade kept from before 0004 may hold it
                return trade_id

    def _get(self, broker_order_id: str) -> PaperOrder:
        order = self._orders.get(broker_order_id)
        if order is None:
            raise BrokerRejected(f"order {broker_order_id} not found", broker_order_id)
        return order

    @staticmethod
    def _exact(value: object, field: str) -> Decimal:
        """A Decimal the book's NUMERIC(20, 8) columns hold exactly (floats refused)."""
        return parse_money(to_decimal(value, field), field)

    @classmethod
    def _money(cls, value: object, field: str, broker_order_id: str | None) -> Decimal:
        try:
            amount = cls._exact(value, field)
        except ValueError as exc:
            raise BrokerRejected(str(exc), broker_order_id) from None
        if amount <= 0:
            raise BrokerRejected(f"{field} must be positive, got {_fmt(amount)}", broker_order_id)
        return amount

    def _check_request(
        self, request: BrokerOrderRequest
    ) -> tuple[str | None, Exchange | None, Decimal | None, Decimal | None]:
        """(rejection reason or None, exchange, price, trigger price) of a new order."""
        try:
            exchange = Exchange(request.exchange)
        except ValueError:
            return f"exchange {request.exchange!r} not supported", None, None, None
        quantity = request.quantity
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
            return f"quantity must be a positive whole number, got {quantity!r}", exchange, None, None
        if quantity > MAX_QUANTITY:
            return f"quantity must be at most {MAX_QUANTITY}, got {quantity}", exchange, None, None
        if request.variety is not Variety.REGULAR:
            return (
                f"variety: {getattr(request.variety, 'value', request.variety)!r} is not taken by the paper exchange, "
                "which has no after-market session (only 'regular')"
            ), exchange, None, None
        try:
            order_type = OrderType(request.order_type)
            Side(request.side)
            Validity(request.validity)
        except ValueError as exc:
            return str(exc), exchange, None, None
        price: Decimal | None = None
        trigger: Decimal | None = None
        try:
            if order_type in _PRICED_TYPES:
                if request.price is None:
                    return f"a {order_type.value} order needs a price", exchange, None, None
                price = self._money(request.price, "price", None)
            if order_type in _STOP_TYPES:
                if request.trigger_price is None:
                    return f"a {order_type.value} order needs a trigger price", exchange, price, None
                trigger = self._money(request.trigger_price, "trigger price", None)
        except BrokerRejected as exc:
            return exc.reason, exchange, price, trigger
        instrument = (exchange, request.symbol)
        last = self._prices.get(instrument)
        if last is None:
            return f"instrument {exchange.value}:{request.symbol} not found", exchange, price, trigger
        reason = self._stop_consistency(request.side, order_type, price, trigger)
        if reason is None:
            reason = self._band_check(instrument, last, price, trigger)
        return reason, exchange, price, trigger

    @staticmethod
    def _stop_consistency(
        side: Side, order_type: OrderType, price: Decimal | None, trigger: Decimal | None
    ) -> str | None:
        if order_type is not OrderType.SL or price is None or trigger is None:
            return None
        if side is Side.BUY and trigger > price:
            return (
                f"trigger price {_fmt(trigger)} is above the limit price {_fmt(price)} "
                "of a stop-loss buy"
            )
        if side is Side.SELL and trigger < price:
            return (
                f"trigger price {_fmt(trigger)} is below the limit price {_fmt(price)} "
                "of a stop-loss sell"
            )
        return None

    def _band_check(
        self,
        instrument: _Instrument,
        last: Decimal,
        price: Decimal | None,
        trigger: Decimal | None,
    ) -> str | None:
        low = last * (_HUNDRED - self._band) / _HUNDRED
        high = last * (_HUNDRED + self._band) / _HUNDRED
        for label, value in (("price", price), ("trigger price", trigger)):
            if value is not None and not low <= value <= high:
                return (
                    f"{label} {_fmt(value)} outside the circuit band {_fmt(low)}-{_fmt(high)} "
                    f"for {instrument[0].value}:{instrument[1]}"
                )
        return None

    def _match(self, order: PaperOrder, last: Decimal, now: datetime) -> None:
        """One matching event for one working order at the last price."""
        request = order.request
        buy = request.side is Side.BUY
        triggered_now = False
        if order.status == TRIGGER_PENDING:
            assert order.trigger_price is not None
            if not (last >= order.trigger_price if buy else last <= order.trigger_price):
                return
            order.status = OPEN
            triggered_now = True

        executed = False
        if request.order_type in _PRICED_TYPES:
            assert order.price is not None
            crosses = last <= order.price if buy else last >= order.price
        else:  # MARKET, or SL-M once triggered
            crosses = True
        if crosses:
            cap = self._liquidity.get(order.instrument)
            quantity = order.remaining if cap is None else min(order.remaining, cap)
            if quantity > 0:
                self._execute(order, quantity, last, now)
                executed = True

        if order.status == OPEN and request.validity is Validity.IOC and order.remaining > 0:
            self._close(order, CANCELLED, "IOC order: unfilled quantity cancelled", now)
        elif triggered_now and not executed:
            self._emit_update(order, now)  # TRIGGER PENDING -> OPEN, resting as a limit

    @staticmethod
    def _trade_of(order: PaperOrder, trade_id: str, quantity: int, price: Decimal, at: datetime) -> BrokerTrade:
        request = order.request
        return BrokerTrade(
            trade_id=trade_id,
            broker_order_id=order.broker_order_id,
            tag=request.tag,
            exchange=order.exchange,
            symbol=request.symbol,
            product=request.product,
            side=Side(request.side),
            quantity=quantity,
            price=price,
            at=at,
        )

    def _execute(self, order: PaperOrder, quantity: int, price: Decimal, now: datetime) -> None:
        trade = self._trade_of(order, self._next_trade_id(), quantity, price, now)
        self._trades.append(trade)
        self._trade_ids.add(trade.trade_id)
        self._trades_by_order.setdefault(order.broker_order_id, []).append(trade)
        if self._writer is not None:
            self._changes.trades.append(PaperTradeRecord(
                trade.trade_id, trade.broker_order_id, len(self._trades), quantity, price, now,
            ))
        order.filled_quantity += quantity
        order.filled_value += price * quantity
        order.average_price = average(order.filled_value, order.filled_quantity)
        self._emit_trade(trade)
        if order.remaining == 0:
            self._close(order, COMPLETE, None, now)
        else:
            order.status = OPEN
            self._emit_update(order, now)

    def _close(self, order: PaperOrder, status: str, message: str | None, now: datetime) -> None:
        order.status = status
        order.message = message
        book = self._working.get(order.instrument)
        if book is not None:
            book.pop(order.broker_order_id, None)
            if not book:
                del self._working[order.instrument]
        self._emit_update(order, now)

    # Every change of an order is reported by an update, so that is where it is marked
    # for writing too; events wait in the outbox until the operation's changes are written.

    def _emit_update(self, order: PaperOrder, now: datetime) -> None:
        order.updated_at = now
        self._touched[order.broker_order_id] = order
        if self._sink is not None:
            self._outbox.append(order.snapshot())

    def _emit_trade(self, trade: BrokerTrade) -> None:
        if self._sink is not None:
            self._outbox.append(trade)
