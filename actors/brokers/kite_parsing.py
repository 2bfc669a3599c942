"""Kite's bodies read into the OMS's values: the one place Kite's numbers and times
are converted.

The official client parses JSON with floats and turns some timestamps (19-character
strings) into naive datetimes. Every amount passes through ``kite_money``, which reads
a float once by its shortest repr (Decimal(repr(x)): 420.65 becomes Decimal("420.65"),
never the binary fraction the float holds), and every time through ``kite_time``, which
reads Kite's Asia/Kolkata wall time and returns aware UTC. Pure functions: no I/O
(beyond a warning for an order that cannot be read).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from domain.broker import BrokerOrderUpdate, BrokerTrade
from domain.enums import Exchange, Product, Side
from domain.kite_status import map_kite_status

log = logging.getLogger("oms.kite")
IST = timezone(timedelta(hours=5, minutes=30), "IST")
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class KiteParseError(ValueError):
    """A Kite body the OMS cannot read (a missing field, an unknown status, ...)."""


# --------------------------------------------------------------------------- scalars


def kite_money(value: Any, field: str = "amount") -> Decimal | None:
    """An amount from Kite as an exact Decimal (None stays None)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise KiteParseError(f"{field}: {value!r} is not an amount")
    try:
        if isinstance(value, float):
            number = Decimal(repr(value))
        elif isinstance(value, (int, Decimal)):
            number = Decimal(value)
        else:
            number = Decimal(str(value).strip())
    except InvalidOperation:
        raise KiteParseError(f"{field}: {value!r} is not an amount") from None
    if not number.is_finite():
        raise KiteParseError(f"{field}: {value!r} is not an amount")
    return number


def _price(value: Any, field: str) -> Decimal | None:
    """A price where Kite writes 0 for "none" (a MARKET order's price, no trigger)."""
    number = kite_money(value, field)
    return None if number is None or number == 0 else number


def kite_time(value: Any) -> datetime | None:
    """Kite's timestamp (Asia/Kolkata wall time, as text or a naive datetime) in UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.strptime(value.strip(), _TIME_FORMAT)
        except ValueError:
            raise KiteParseError(f"timestamp {value!r} is not YYYY-MM-DD HH:MM:SS") from None
    if not isinstance(value, datetime):
        raise KiteParseError(f"timestamp {value!r} is not a time")
    if value.tzinfo is None:
        value = value.replace(tzinfo=IST)
    return value.astimezone(timezone.utc)


def _int(data: Mapping[str, Any], field: str) -> int:
    value = data.get(field)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise KiteParseError(f"{field}: {value!r} is not a whole number")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        raise KiteParseError(f"{field}: {value!r} is not a whole number") from None
    if number != number.to_integral_value():
        raise KiteParseError(f"{field}: {value!r} is not a whole number")
    return int(number)


def _text(data: Mapping[str, Any], field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value:
        raise KiteParseError(f"{field}: missing from {_brief(data)}")
    return value


def _brief(data: Mapping[str, Any]) -> str:
    return f"order {data.get('order_id')!r}" if "order_id" in data else "the body"


# --------------------------------------------------------------------------- orders and trades


def order_tags(data: Mapping[str, Any]) -> frozenset[str]:
    """Every tag an order carries: ``tag`` and the ``tags`` list (which may hold
    system tags such as "mktp" too)."""
    tags = set(data.get("tags") or ())
    if data.get("tag"):
        tags.add(data["tag"])
    return frozenset(t for t in tags if isinstance(t, str))


def order_update(data: Mapping[str, Any], *, now: datetime) -> BrokerOrderUpdate:
    """One order of orders(), order_history() or a postback, as the OMS's update.

    The status stays in Kite's words (the tracker maps it with domain.kite_status); an
    unknown one is refused here, so a new Kite status is noticed rather than guessed.
    ``at`` is the latest time Kite gives for the order, else ``now``.
    """
    status = _text(data, "status").strip().upper()
    try:
        map_kite_status(status)
    except ValueError as error:
        raise KiteParseError(f"{_brief(data)}: {error}") from None
    at = (
        kite_time(data.get("exchange_update_timestamp"))
        or kite_time(data.get("exchange_timestamp"))
        or kite_time(data.get("order_timestamp"))
        or now
    )
    filled = _int(data, "filled_quantity")
    return BrokerOrderUpdate(
        broker_order_id=str(_text(data, "order_id")),
        tag=data.get("tag") or None,
        status=status,
        quantity=_int(data, "quantity"),
        filled_quantity=filled,
        at=at,
        average_price=_price(data.get("average_price"), "average_price") if filled else None,
        price=_price(data.get("price"), "price"),
        trigger_price=_price(data.get("trigger_price"), "trigger_price"),
        message=data.get("status_message") or None,
        exchange=data.get("exchange") or None,
        symbol=data.get("tradingsymbol") or None,
        product=data.get("product") or None,
        side=data.get("transaction_type") or None,
    )


def readable_orders(bodies: Iterable[Mapping[str, Any]], *, now: datetime) -> list[BrokerOrderUpdate]:
    """The orders of an order book that can be read; one that cannot (a status Kite
    added since, say) is logged and left out, so it never hides the others."""
    updates = []
    for body in bodies:
        try:
            updates.append(order_update(body, now=now))
        except KiteParseError as error:
            log.warning("skipping an order Kite reported: %s", error)
    return updates


def trade(data: Mapping[str, Any], *, tag: str | None = None) -> BrokerTrade:
    """One trade of trades() or order_trades(). Kite's trade price is its
    ``average_price``; its trades carry no tag, so the caller passes the order's."""
    try:
        exchange = Exchange(_text(data, "exchange"))
        product = Product(_text(data, "product"))
        side = Side(_text(data, "transaction_type"))
    except ValueError as error:
        raise KiteParseError(f"trade {data.get('trade_id')!r}: {error}") from None
    at = kite_time(data.get("fill_timestamp")) or kite_time(data.get("exchange_timestamp"))
    if at is None:
        raise KiteParseError(f"trade {data.get('trade_id')!r}: no fill_timestamp")
    price = kite_money(data.get("average_price"), "average_price")
    if price is None or price <= 0:
        raise KiteParseError(f"trade {data.get('trade_id')!r}: no price")
    return BrokerTrade(
        trade_id=str(_text(data, "trade_id")),
        broker_order_id=str(_text(data, "order_id")),
        tag=tag,
        exchange=exchange,
        symbol=_text(data, "tradingsymbol"),
        product=product,
        side=side,
        quantity=_int(data, "quantity"),
        price=price,
        at=at,
    )


# --------------------------------------------------------------------------- postbacks


def postback_checksum(order_id: str, order_timestamp: str, api_secret: str) -> str:
    """Kite's postback checksum: hex SHA-256 of order_id + order_timestamp + api_secret."""
    return hashlib.sha256(f"{order_id}{order_timestamp}{api_secret}".encode()).hexdigest()


def postback(body: Mapping[str, Any], *, now: datetime, api_secret: str | None = None) -> BrokerOrderUpdate:
    """A postback's order as an update. With ``api_secret`` its checksum is checked
    first and a mismatch refused: anyone can post to a public URL."""
    if api_secret is not None:
        expected = postback_checksum(str(body.get("order_id")), str(body.get("order_timestamp")), api_secret)
        if not hmac.compare_digest(str(body.get("checksum", "")), expected):
            raise KiteParseError(f"postback for order {body.get('order_id')!r}: checksum does not match")
    return order_update(body, now=now)


# --------------------------------------------------------------------------- account


@dataclass(frozen=True, slots=True)
class KitePosition:
    """One row of positions(); product stays Kite's (it also reports CO, MTF, ...)."""

    exchange: str
    symbol: str
    product: str
    quantity: int
    overnight_quantity: int
    average_price: Decimal
    last_price: Decimal
    pnl: Decimal
    realised: Decimal
    unrealised: Decimal
    buy_quantity: int
    buy_value: Decimal
    sell_quantity: int
    sell_value: Decimal
    multiplier: Decimal


def positions(data: Mapping[str, Any]) -> dict[str, tuple[KitePosition, ...]]:
    """positions() as {"net": (...), "day": (...)}."""
    return {book: tuple(_position(row) for row in data.get(book) or ()) for book in ("net", "day")}


def _position(row: Mapping[str, Any]) -> KitePosition:
    def money(field: str) -> Decimal:
        return kite_money(row.get(field, 0), field) or Decimal(0)

    return KitePosition(
        exchange=_text(row, "exchange"), symbol=_text(row, "tradingsymbol"), product=_text(row, "product"),
        quantity=_int(row, "quantity"), overnight_quantity=_int(row, "overnight_quantity"),
        average_price=money("average_price"), last_price=money("last_price"), pnl=money("pnl"),
        realised=money("realised"), unrealised=money("unrealised"),
        buy_quantity=_int(row, "buy_quantity"), buy_value=money("buy_value"),
        sell_quantity=_int(row, "sell_quantity"), sell_value=money("sell_value"),
        multiplier=money("multiplier"),
    )


@dataclass(frozen=True, slots=True)
class SegmentMargins:
    """One segment of margins(): what is free to trade and what is used."""

    enabled: bool
    net: Decimal
    cash: Decimal
    opening_balance: Decimal
    live_balance: Decimal
    collateral: Decimal
    debits: Decimal
    exposure: Decimal
    span: Decimal
    option_premium: Decimal


def margins(data: Mapping[str, Any]) -> dict[str, SegmentMargins]:
    """margins() (every segment) or margins(segment) (one), by segment name."""
    if "available" in data:  # one segment's body
        return {"segment": segment_margins(data)}
    return {name: segment_margins(body) for name, body in data.items() if isinstance(body, Mapping)}


def segment_margins(data: Mapping[str, Any]) -> SegmentMargins:
    available, utilised = data.get("available") or {}, data.get("utilised") or {}

    def money(part: Mapping[str, Any], field: str) -> Decimal:
        return kite_money(part.get(field, 0), field) or Decimal(0)

    return SegmentMargins(
        enabled=bool(data.get("enabled")), net=money(data, "net"), cash=money(available, "cash"),
        opening_balance=money(available, "opening_balance"), live_balance=money(available, "live_balance"),
        collateral=money(available, "collateral"), debits=money(utilised, "debits"),
        exposure=money(utilised, "exposure"), span=money(utilised, "span"),
        option_premium=money(utilised, "option_premium"),
    )


def last_prices(data: Mapping[str, Any]) -> dict[str, Decimal]:
    """ltp() as {"NSE:INFY": Decimal(...)}."""
    return {key: kite_money(body.get("last_price"), key) for key, body in data.items()}  # type: ignore[misc]


def last_prices_with_tokens(data: Mapping[str, Any]) -> dict[str, tuple[int, Decimal]]:
    """ltp() as {"NSE:INFY": (instrument token, Decimal(...))}: the token the ticker
    streams the instrument under, and its last price. Entries without both are left out."""
    read: dict[str, tuple[int, Decimal]] = {}
    for key, body in data.items():
        token, price = body.get("instrument_token"), kite_money(body.get("last_price"), key)
        if isinstance(token, int) and price is not None and price > 0:
            read[key] = (token, price)
    return read


@dataclass(frozen=True, slots=True)
class KiteInstrument:
    """One row of the instrument master."""

    instrument_token: int
    exchange: str
    symbol: str
    name: str
    instrument_type: str
    segment: str
    tick_size: Decimal
    lot_size: int
    strike: Decimal
    expiry: date | None
    last_price: Decimal


def instrument(row: Mapping[str, Any]) -> KiteInstrument:
    """One row of instruments() (the client has turned its numbers into floats)."""
    expiry = row.get("expiry")
    if isinstance(expiry, str):
        expiry = date.fromisoformat(expiry) if expiry else None
    return KiteInstrument(
        instrument_token=_int(row, "instrument_token"), exchange=_text(row, "exchange"),
        symbol=_text(row, "tradingsymbol"), name=str(row.get("name") or ""),
        instrument_type=str(row.get("instrument_type") or ""), segment=str(row.get("segment") or ""),
        tick_size=kite_money(row.get("tick_size"), "tick_size") or Decimal(0), lot_size=_int(row, "lot_size"),
        strike=kite_money(row.get("strike") or 0, "strike") or Decimal(0), expiry=expiry,
        last_price=kite_money(row.get("last_price") or 0, "last_price") or Decimal(0),
    )
