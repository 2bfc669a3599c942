"""The emulator's matching book: Kite's orders, trades and positions, simulated.

It knows Kite's vocabulary and nothing of the OMS (standard library only): orders are
kept with the fields Kite's order book shows (shared/kite-mocks/orders.json), each with
its history (order_info.json), and trades with the fields of trades.json.

Model (deliberately small, like the paper exchange's):
- An instrument exists once a price is set for it; its last price is the only price.
  Orders fill at the last price when it satisfies them (MARKET always; LIMIT at or
  better than the limit; SL and SL-M once triggered).
- ``set_liquidity`` caps how much of each order fills per matching event (a placement,
  a modification or a price change), which is how partial fills are produced.
- A request Kite would refuse outright raises ``KiteError`` (HTTP 400 InputException or
  OrderException). Checks Kite's risk system makes after taking the order (the circuit
  band, or ``reject_next``) leave the order REJECTED with a status message: it was
  accepted (it has an order id) and is rejected in the order book, as on Kite.
- AMO orders rest as "AMO REQ RECEIVED" and never match until ``open_amos`` (the book
  has no sessions of its own: a test says when the exchange opens), which sends them to
  the exchange (OPEN PENDING, then OPEN or TRIGGER PENDING) and matches them.

Thread safety: one lock guards everything; the book has no threads of its own.
"""
from __future__ import annotations

import os
import pickle
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Mapping

IST = timezone(timedelta(hours=5, minutes=30), "IST")

EXCHANGES = ("NSE", "BSE", "NFO", "BFO", "CDS", "BCD", "MCX")
SEGMENTS = {"NSE": 1, "NFO": 2, "CDS": 3, "BSE": 4, "BFO": 5, "BCD": 6, "MCX": 7}  # an instrument token's low byte
VARIETIES = ("regular", "amo")
PRODUCTS = ("CNC", "MIS", "NRML", "MTF")
ORDER_TYPES = ("MARKET", "LIMIT", "SL", "SL-M")
VALIDITIES = ("DAY", "IOC", "TTL")
_PRICED = ("LIMIT", "SL")
_STOPS = ("SL", "SL-M")
_UNPROTECTED = ("MARKET", "SL-M")  # need market_protection since 1 Apr 2026
_WORKING = ("OPEN", "TRIGGER PENDING", "AMO REQ RECEIVED")
MAX_MODIFICATIONS = 25
MAX_TAG_LENGTH = 20
_HUNDRED = Decimal(100)
_AVERAGE_PLACES = Decimal("0.01")


class KiteError(Exception):
    """A refusal in Kite's words: the HTTP status, ``error_type`` and message to send."""

    def __init__(self, message: str, error_type: str = "InputException", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.status = status


def kite_time(moment: datetime) -> str:
    """Kite's timestamp: Asia/Kolkata wall time, to the second, no zone."""
    return moment.astimezone(IST).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(slots=True)
class Instrument:
    token: int
    exchange: str
    symbol: str
    last_price: Decimal
    tick_size: Decimal = Decimal("0.01")
    lot_size: int = 1
    liquidity: int | None = None  # units per order per matching event; None: no cap

    @property
    def key(self) -> str:
        return f"{self.exchange}:{self.symbol}"


@dataclass(slots=True)
class _Order:
    order_id: str
    variety: str
    exchange: str
    symbol: str
    token: int
    side: str
    order_type: str
    product: str
    validity: str
    quantity: int
    price: Decimal
    trigger_price: Decimal
    market_protection: Decimal
    tag: str | None
    placed_at: datetime
    status: str = "PUT ORDER REQ RECEIVED"
    status_message: str | None = None
    updated_at: datetime | None = None
    exchange_order_id: str | None = None
    filled_quantity: int = 0
    filled_value: Decimal = Decimal(0)
    cancelled_quantity: int = 0
    modifications: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.quantity - self.filled_quantity - self.cancelled_quantity

    def as_kite(self) -> dict[str, Any]:
        """The order as Kite's order book shows it (the keys of orders.json)."""
        average = (
            (self.filled_value / self.filled_quantity).quantize(_AVERAGE_PLACES)
            if self.filled_quantity else Decimal(0)
        )
        at_exchange = self.exchange_order_id is not None
        return {
            "placed_by": "EM0001",
            "order_id": self.order_id,
            "exchange_order_id": self.exchange_order_id,
            "parent_order_id": None,
            "status": self.status,
            "status_message": self.status_message,
            "status_message_raw": self.status_message,
            "order_timestamp": kite_time(self.placed_at),
            "exchange_update_timestamp": kite_time(self.updated_at or self.placed_at) if at_exchange else None,
            "exchange_timestamp": kite_time(self.placed_at) if at_exchange else None,
            "variety": self.variety,
            "modified": self.modifications > 0,
            "exchange": self.exchange,
            "tradingsymbol": self.symbol,
            "instrument_token": self.token,
            "order_type": self.order_type,
            "transaction_type": self.side,
            "validity": self.validity,
            "validity_ttl": 0,
            "product": self.product,
            "quantity": self.quantity,
            "disclosed_quantity": 0,
            "price": self.price,
            "trigger_price": self.trigger_price,
            "average_price": average,
            "filled_quantity": self.filled_quantity,
            "pending_quantity": max(self.remaining, 0) if self.status in _WORKING else 0,
            "cancelled_quantity": self.cancelled_quantity,
            "market_protection": self.market_protection,
            "meta": {},
            "tag": self.tag,
            "tags": [self.tag] if self.tag else [],
            "guid": f"em-{self.order_id}",
        }


class KiteBook:
    """A simulated Kite account: instruments, the order book, trades and positions.

    ``clock`` returns the current time (timezone-aware); the book never reads the
    system clock itself. ``band_percent`` is the circuit band around the last price
    inside which limit prices and triggers must lie.
    """

    def __init__(
        self,
        clock: Callable[[], datetime] | None = None,
        band_percent: Decimal | int | str = 20,
        cash: Decimal | int | str = 1_000_000,
        require_market_protection: bool = True,
    ) -> None:
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._band = Decimal(band_percent)
        self._cash = Decimal(cash)
        self.require_market_protection = require_market_protection
        self._lock = threading.RLock()
        self._instruments: dict[str, Instrument] = {}
        self._orders: dict[str, _Order] = {}  # in arrival order
        self._trades: list[dict[str, Any]] = []
        self._rejections: deque[str] = deque()
        # Ids are 19 digits like Kite's newest; a random lead keeps them apart across
        # emulator runs (an OMS restarted against a new emulator never sees old ids).
        self._id_lead = str(10**8 + secrets.randbelow(9 * 10**8))
        self._order_seq = 0
        self._trade_seq = 0
        # Kite's instrument tokens carry the segment in their low byte (the ticker reads
        # the price's unit from it): exchange token << 8 | segment.
        self._next_token = 1_001
        # Told each order as Kite shows it whenever it changes (the emulator's postbacks);
        # called under the book's lock, so it must only hand the order on.
        self.observer: Callable[[dict[str, Any]], None] | None = None
        # Told (token, last price) whenever a price is set (the emulator's websocket
        # ticks); called under the book's lock, so it must only hand the price on.
        self.price_observer: Callable[[int, Decimal], None] | None = None

    # ------------------------------------------------------------------ across a restart

    _KEPT = ("_instruments", "_orders", "_trades", "_rejections", "_id_lead", "_order_seq", "_trade_seq", "_next_token", "_cash", "_band")

    def save(self, path: str | Path) -> None:
        """Write the whole book (instruments, every order with its history, trades, the
        id counters) to ``path``, replacing it whole, for ``load`` after a restart. The
        emulator's own file, read only by the emulator: pickle keeps every value exact."""
        target = Path(path)
        with self._lock:
            state = pickle.dumps({name: getattr(self, name) for name in self._KEPT})
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(state)
        os.replace(partial, target)  # never half a book

    def load(self, path: str | Path) -> None:
        """Take the book ``save`` wrote to ``path`` (Kite keeps its day across a restart
        of ours: the same orders, trades and ids)."""
        state = pickle.loads(Path(path).read_bytes())
        with self._lock:
            for name in self._KEPT:
                setattr(self, name, state[name])

    # ------------------------------------------------------------------ market

    def set_price(
        self, symbol: str, price: Decimal | int | str, exchange: str = "NSE",
        tick_size: Decimal | str | None = None, lot_size: int | None = None,
    ) -> None:
        """Set an instrument's last price (creating the instrument), then match its orders."""
        last = _decimal(price, "price")
        if last <= 0:
            raise ValueError(f"price must be positive, got {last}")
        with self._lock:
            instrument = self._instrument_or_new(exchange, symbol, last)
            instrument.last_price = last
            if tick_size is not None:
                instrument.tick_size = _decimal(tick_size, "tick_size")
            if lot_size is not None:
                instrument.lot_size = lot_size
            if self.price_observer is not None:
                self.price_observer(instrument.token, last)
            for order in list(self._orders.values()):
                if order.token == instrument.token and order.status in ("OPEN", "TRIGGER PENDING"):
                    self._match(order, instrument)

    def set_liquidity(self, symbol: str, quantity: int | None, exchange: str = "NSE") -> None:
        """Cap the units of each order that fill per matching event (None: no cap)."""
        with self._lock:
            instrument = self._instruments.get(f"{exchange}:{symbol}")
            if instrument is None:
                raise ValueError(f"no instrument {exchange}:{symbol}; set its price first")
            instrument.liquidity = quantity

    def open_amos(self) -> list[str]:
        """The exchange opens: every AMO resting as AMO REQ RECEIVED goes to it, as at
        Kite at the session's start, and is matched at the last price. Answers their ids."""
        with self._lock:
            now = self._clock()
            opened = []
            for order in list(self._orders.values()):
                if order.variety != "amo" or order.status != "AMO REQ RECEIVED":
                    continue
                self._set(order, "OPEN PENDING", now)
                order.exchange_order_id = self._order_id()
                instrument = self._instruments[f"{order.exchange}:{order.symbol}"]
                triggered = order.order_type not in _STOPS or self._triggered(order, instrument)
                self._set(order, "OPEN" if triggered else "TRIGGER PENDING", now)
                self._match(order, instrument)
                opened.append(order.order_id)
            return opened

    def reject_next(self, reason: str = "RMS:Margin Exceeds, Required:0, Available:0") -> None:
        """The next order placed is accepted, then rejected by the risk system with ``reason``."""
        with self._lock:
            self._rejections.append(reason)

    def instruments(self) -> list[Instrument]:
        with self._lock:
            return list(self._instruments.values())

    def price_of(self, token: int) -> Decimal | None:
        """The last price of the instrument with ``token``, or None."""
        with self._lock:
            return next((i.last_price for i in self._instruments.values() if i.token == token), None)

    def ltp(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {
                key: {"instrument_token": i.token, "last_price": i.last_price}
                for key in keys
                if (i := self._instruments.get(key)) is not None
            }

    # ------------------------------------------------------------------ orders

    def place(self, variety: str, form: Mapping[str, str]) -> str:
        """Take an order (the form fields of POST /orders/{variety}); return its id."""
        with self._lock:
            now = self._clock()
            order = self._new_order(variety, form, now)
            self._orders[order.order_id] = order
            self._record(order, now)  # PUT ORDER REQ RECEIVED
            self._set(order, "VALIDATION PENDING", now)
            instrument = self._instruments[f"{order.exchange}:{order.symbol}"]
            reason = self._rejections.popleft() if self._rejections else self._band_check(order.price, order.trigger_price, instrument)
            if reason is not None:
                self._set(order, "REJECTED", now, reason)
                return order.order_id
            if variety == "amo":
                self._set(order, "AMO REQ RECEIVED", now)
                return order.order_id
            self._set(order, "OPEN PENDING", now)
            order.exchange_order_id = self._order_id()
            self._set(order, "TRIGGER PENDING" if order.order_type in _STOPS else "OPEN", now)
            self._match(order, instrument)
            return order.order_id

    def modify(self, variety: str, order_id: str, form: Mapping[str, str]) -> str:
        with self._lock:
            order = self._get(order_id)
            if order.variety != variety:
                raise KiteError(f"Order {order_id} is not a {variety} order.")
            if order.status not in _WORKING:
                raise KiteError(f"Order cannot be modified as it is {order.status}.", "OrderException")
            if order.modifications >= MAX_MODIFICATIONS:
                raise KiteError("Maximum allowed order modifications exceeded.", "NetworkException")
            quantity = order.quantity
            if form.get("quantity"):
                quantity = _quantity(form["quantity"])
                if quantity <= order.filled_quantity:
                    raise KiteError("Quantity should be greater than the filled quantity.")
            order_type = form.get("order_type") or order.order_type
            if order_type not in ORDER_TYPES:
                raise KiteError("Invalid `order_type`.")
            price = _money(form["price"], "price") if form.get("price") else order.price
            trigger = _money(form["trigger_price"], "trigger_price") if form.get("trigger_price") else order.trigger_price
            instrument = self._instruments[f"{order.exchange}:{order.symbol}"]
            self._check_prices(order_type, order.side, price, trigger, instrument)
            reason = self._band_check(price if order_type in _PRICED else Decimal(0), trigger if order_type in _STOPS else Decimal(0), instrument)
            if reason is not None:
                raise KiteError(reason, "OrderException")
            now = self._clock()
            self._set(order, "MODIFY VALIDATION PENDING", now)
            self._set(order, "MODIFY PENDING", now)
            order.quantity, order.order_type, order.price, order.trigger_price = quantity, order_type, price, trigger
            order.modifications += 1
            self._set(order, "MODIFIED", now)
            if order.variety == "amo":
                self._set(order, "AMO REQ RECEIVED", now)
            else:
                triggered = order.order_type not in _STOPS or self._triggered(order, instrument)
                self._set(order, "OPEN" if triggered else "TRIGGER PENDING", now)
                self._match(order, instrument)
            return order.order_id

    def cancel(self, variety: str, order_id: str) -> str:
        with self._lock:
            order = self._get(order_id)
            if order.variety != variety:
                raise KiteError(f"Order {order_id} is not a {variety} order.")
            if order.status not in _WORKING:
                raise KiteError(f"Order cannot be cancelled as it is {order.status}.", "OrderException")
            now = self._clock()
            order.cancelled_quantity = order.remaining
            if order.variety == "amo":
                self._set(order, "CANCELLED AMO", now)
            else:
                self._set(order, "CANCEL PENDING", now)
                self._set(order, "CANCELLED", now)
            return order.order_id

    # ------------------------------------------------------------------ reads

    def orders(self, placed_before: datetime | None = None) -> list[dict[str, Any]]:
        """The day's orders as Kite lists them; ``placed_before`` hides younger ones."""
        with self._lock:
            return [o.as_kite() for o in self._visible(placed_before)]

    def history(self, order_id: str, placed_before: datetime | None = None) -> list[dict[str, Any]]:
        with self._lock:
            order = self._orders.get(order_id)
            if order is None or (placed_before is not None and order.placed_at > placed_before):
                raise KiteError("Couldn't find that `order_id`.")
            return [dict(entry) for entry in order.history]

    def trades(self, order_id: str | None = None, placed_before: datetime | None = None) -> list[dict[str, Any]]:
        with self._lock:
            shown = {o.order_id for o in self._visible(placed_before)}
            if order_id is not None and order_id not in shown:
                raise KiteError("Couldn't find that `order_id`.")
            return [dict(t) for t in self._trades if t["order_id"] in shown and order_id in (None, t["order_id"])]

    def orders_tagged(self, tag: str) -> list[dict[str, Any]]:
        """Every order carrying ``tag`` (tests check that nothing was placed twice)."""
        with self._lock:
            return [o.as_kite() for o in self._orders.values() if o.tag == tag]

    def positions(self) -> dict[str, list[dict[str, Any]]]:
        """Net and day positions from the day's trades (no overnight holdings here)."""
        with self._lock:
            sums: dict[tuple[str, str, str], dict[str, Any]] = {}
            for trade in self._trades:
                key = (trade["exchange"], trade["tradingsymbol"], trade["product"])
                row = sums.setdefault(key, {"token": trade["instrument_token"], "bq": 0, "bv": Decimal(0), "sq": 0, "sv": Decimal(0)})
                value = trade["average_price"] * trade["quantity"]
                if trade["transaction_type"] == "BUY":
                    row["bq"] += trade["quantity"]
                    row["bv"] += value
                else:
                    row["sq"] += trade["quantity"]
                    row["sv"] += value
            rows = [self._position(key, row) for key, row in sums.items()]
            return {"net": rows, "day": [dict(r) for r in rows]}

    def margins(self) -> dict[str, Any]:
        """Equity and commodity margins shaped like margins.json; debits are the day's
        net buying, a rough stand-in for Kite's margin arithmetic."""
        with self._lock:
            spent = sum((t["average_price"] * t["quantity"] * (1 if t["transaction_type"] == "BUY" else -1) for t in self._trades), Decimal(0))
        debits = max(spent, Decimal(0))
        return {
            "equity": _segment(self._cash, debits),
            "commodity": _segment(Decimal(0), Decimal(0)),
        }

    # ------------------------------------------------------------------ internals

    def _visible(self, placed_before: datetime | None) -> list[_Order]:
        return [o for o in self._orders.values() if placed_before is None or o.placed_at <= placed_before]

    def _instrument_or_new(self, exchange: str, symbol: str, price: Decimal) -> Instrument:
        key = f"{exchange}:{symbol}"
        instrument = self._instruments.get(key)
        if instrument is None:
            if exchange not in EXCHANGES:
                raise ValueError(f"unknown exchange {exchange!r}")
            instrument = Instrument(self._next_token << 8 | SEGMENTS[exchange], exchange, symbol, price)
            self._next_token += 1
            self._instruments[key] = instrument
        return instrument

    def _order_id(self) -> str:
        self._order_seq += 1
        return f"{self._id_lead}{self._order_seq:010d}"

    def _get(self, order_id: str) -> _Order:
        order = self._orders.get(order_id)
        if order is None:
            raise KiteError("Couldn't find that `order_id`.")
        return order

    def _new_order(self, variety: str, form: Mapping[str, str], now: datetime) -> _Order:
        if variety not in VARIETIES:
            raise KiteError(f"Invalid variety `{variety}` (the emulator takes regular and amo).")
        for required in ("exchange", "tradingsymbol", "transaction_type", "quantity", "product", "order_type"):
            if not form.get(required):
                raise KiteError(f"Missing `{required}`.")
        exchange, symbol = form["exchange"], form["tradingsymbol"]
        if exchange not in EXCHANGES:
            raise KiteError("Invalid `exchange`.")
        side, order_type, product = form["transaction_type"], form["order_type"], form["product"]
        validity = form.get("validity") or "DAY"
        if side not in ("BUY", "SELL"):
            raise KiteError("Invalid `transaction_type`.")
        if order_type not in ORDER_TYPES:
            raise KiteError("Invalid `order_type`.")
        if product not in PRODUCTS:
            raise KiteError("Invalid `product`.")
        if validity not in VALIDITIES:
            raise KiteError("Invalid `validity`.")
        quantity = _quantity(form["quantity"])
        tag = form.get("tag") or None
        if tag is not None and len(tag) > MAX_TAG_LENGTH:
            raise KiteError(f"Invalid `tag`: at most {MAX_TAG_LENGTH} characters.")
        instrument = self._instruments.get(f"{exchange}:{symbol}")
        if instrument is None:
            raise KiteError("Invalid `tradingsymbol`.")
        if quantity % instrument.lot_size:
            raise KiteError(f"Quantity should be a multiple of the lot size {instrument.lot_size}.")
        protection = _decimal(form.get("market_protection") or "0", "market_protection")
        if order_type in _UNPROTECTED and self.require_market_protection and protection == 0:
            raise KiteError("Market orders without market protection are not allowed. Set market_protection to -1 or a percentage.")
        price = _money(form["price"], "price") if form.get("price") else Decimal(0)
        trigger = _money(form["trigger_price"], "trigger_price") if form.get("trigger_price") else Decimal(0)
        self._check_prices(order_type, side, price, trigger, instrument)
        return _Order(
            order_id=self._order_id(), variety=variety, exchange=exchange, symbol=symbol, token=instrument.token,
            side=side, order_type=order_type, product=product, validity=validity, quantity=quantity,
            price=price if order_type in _PRICED else Decimal(0),
            trigger_price=trigger if order_type in _STOPS else Decimal(0),
            market_protection=protection, tag=tag, placed_at=now,
        )

    @staticmethod
    def _check_prices(order_type: str, side: str, price: Decimal, trigger: Decimal, instrument: Instrument) -> None:
        if order_type in _PRICED and price <= 0:
            raise KiteError(f"A {order_type} order needs a `price`.")
        if order_type in _STOPS and trigger <= 0:
            raise KiteError(f"A {order_type} order needs a `trigger_price`.")
        for name, value in (("price", price), ("trigger_price", trigger)):
            if value and value % instrument.tick_size:
                raise KiteError(f"Tick size for this script is {instrument.tick_size}. Kindly enter {name} in the multiple of tick size for this script.")
        if order_type == "SL" and ((side == "BUY" and trigger > price) or (side == "SELL" and trigger < price)):
            raise KiteError("Trigger price for stoploss buy orders should be lower than the order price (sell: higher).")

    def _band_check(self, price: Decimal, trigger: Decimal, instrument: Instrument) -> str | None:
        low = instrument.last_price * (_HUNDRED - self._band) / _HUNDRED
        high = instrument.last_price * (_HUNDRED + self._band) / _HUNDRED
        for value in (price, trigger):
            if value and not low <= value <= high:
                return "RMS:Rule: Check circuit limit including square off order exceeds"
        return None

    def _set(self, order: _Order, status: str, now: datetime, message: str | None = None) -> None:
        order.status = status
        order.status_message = message
        order.updated_at = now
        self._record(order, now)

    def _record(self, order: _Order, now: datetime) -> None:
        order.updated_at = now
        order.history.append(order.as_kite())
        if self.observer is not None:
            self.observer(dict(order.history[-1]))

    @staticmethod
    def _triggered(order: _Order, instrument: Instrument) -> bool:
        last = instrument.last_price
        return last >= order.trigger_price if order.side == "BUY" else last <= order.trigger_price

    def _match(self, order: _Order, instrument: Instrument) -> None:
        """One matching event for one working order at the last price."""
        now = self._clock()
        last = instrument.last_price
        if order.status == "TRIGGER PENDING":
            if not self._triggered(order, instrument):
                return
            self._set(order, "OPEN", now)
        if order.order_type in _PRICED:
            crosses = last <= order.price if order.side == "BUY" else last >= order.price
        else:
            crosses = True
        if crosses:
            cap = instrument.liquidity
            quantity = order.remaining if cap is None else min(order.remaining, cap)
            if quantity > 0:
                self._fill(order, quantity, last, now)
        if order.status == "OPEN" and order.validity == "IOC" and order.remaining > 0:
            order.cancelled_quantity = order.remaining
            self._set(order, "CANCELLED", now, "IOC order cancelled: no more quantity at the price")

    def _fill(self, order: _Order, quantity: int, price: Decimal, now: datetime) -> None:
        self._trade_seq += 1
        self._trades.append({
            "trade_id": f"{self._id_lead[:4]}{self._trade_seq:08d}",
            "order_id": order.order_id,
            "exchange": order.exchange,
            "tradingsymbol": order.symbol,
            "instrument_token": order.token,
            "product": order.product,
            "average_price": price,
            "quantity": quantity,
            "exchange_order_id": order.exchange_order_id,
            "transaction_type": order.side,
            "fill_timestamp": kite_time(now),
            "order_timestamp": kite_time(order.placed_at)[11:],
            "exchange_timestamp": kite_time(now),
        })
        order.filled_quantity += quantity
        order.filled_value += price * quantity
        self._set(order, "COMPLETE" if order.remaining == 0 else "OPEN", now)

    def _position(self, key: tuple[str, str, str], row: dict[str, Any]) -> dict[str, Any]:
        exchange, symbol, product = key
        last = self._instruments[f"{exchange}:{symbol}"].last_price
        bq, bv, sq, sv = row["bq"], row["bv"], row["sq"], row["sv"]
        quantity = bq - sq
        buy_price = (bv / bq).quantize(_AVERAGE_PLACES) if bq else Decimal(0)
        sell_price = (sv / sq).quantize(_AVERAGE_PLACES) if sq else Decimal(0)
        value = sv - bv
        pnl = value + quantity * last
        return {
            "tradingsymbol": symbol, "exchange": exchange, "instrument_token": row["token"], "product": product,
            "quantity": quantity, "overnight_quantity": 0, "multiplier": 1,
            "average_price": buy_price if quantity > 0 else sell_price if quantity < 0 else Decimal(0),
            "close_price": 0, "last_price": last, "value": value, "pnl": pnl, "m2m": pnl,
            "unrealised": pnl, "realised": 0,
            "buy_quantity": bq, "buy_price": buy_price, "buy_value": bv, "buy_m2m": bv,
            "sell_quantity": sq, "sell_price": sell_price, "sell_value": sv, "sell_m2m": sv,
            "day_buy_quantity": bq, "day_buy_price": buy_price, "day_buy_value": bv,
            "day_sell_quantity": sq, "day_sell_price": sell_price, "day_sell_value": sv,
        }


def _segment(cash: Decimal, debits: Decimal) -> dict[str, Any]:
    net = cash - debits
    return {
        "enabled": True,
        "net": net,
        "available": {
            "adhoc_margin": 0, "cash": cash, "opening_balance": cash, "live_balance": net,
            "collateral": 0, "intraday_payin": 0,
        },
        "utilised": {
            "debits": debits, "exposure": 0, "m2m_realised": 0, "m2m_unrealised": 0, "option_premium": 0,
            "payout": 0, "span": 0, "holding_sales": 0, "turnover": 0, "liquid_collateral": 0,
            "stock_collateral": 0, "delivery": 0,
        },
    }


def _decimal(value: object, name: str) -> Decimal:
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{name}: {value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{name}: {value!r} is not a number")
    return number


def _money(text: str, name: str) -> Decimal:
    try:
        value = _decimal(text, name)
    except ValueError:
        raise KiteError(f"Invalid `{name}`.") from None
    if value < 0:
        raise KiteError(f"Invalid `{name}`.")
    return value


def _quantity(text: str) -> int:
    try:
        quantity = int(text)
    except ValueError:
        raise KiteError("Invalid `quantity`.") from None
    if quantity <= 0:
        raise KiteError("Invalid `quantity`.")
    return quantity
