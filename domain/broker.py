"""The broker as the OMS sees it: one interface for Kite and the paper exchange.

A call either succeeds, is refused for good (BrokerRejected), certainly did not reach
the broker (BrokerUnavailable), or has an unknown outcome (BrokerAmbiguous: a timeout
is not a rejection; the order may exist and is found again by its tag). Updates and
trades arrive later and asynchronously through the BrokerEventSink.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol, Sequence

from domain.enums import Exchange, OrderType, Product, Side, Validity, Variety


class BrokerError(Exception):
    """Base of the broker outcomes other than success."""


class BrokerRejected(BrokerError):
    """The broker refused the request; nothing was placed or changed."""

    def __init__(self, reason: str, broker_order_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.broker_order_id = broker_order_id


class BrokerUnavailable(BrokerError):
    """The request certainly never reached the broker (connection refused, token expired)."""


class BrokerAmbiguous(BrokerError):
    """The request may or may not have taken effect (a timeout after sending)."""


@dataclass(frozen=True, slots=True)
class BrokerOrderRequest:
    """What the broker is asked to place; ``tag`` is our own order id."""

    tag: str
    exchange: Exchange
    symbol: str
    side: Side
    quantity: int
    order_type: OrderType
    product: Product
    validity: Validity
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    variety: Variety = Variety.REGULAR


@dataclass(frozen=True, slots=True)
class BrokerOrderUpdate:
    """The broker's view of one order; ``status`` is in Kite's vocabulary."""

    broker_order_id: str
    tag: str | None
    status: str
    quantity: int
    filled_quantity: int
    at: datetime
    average_price: Decimal | None = None
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    message: str | None = None
    # What the order is for, in the broker's words, where the broker says (order books
    # do; a postback does too): reconciliation reads them, the trackers do not.
    exchange: str | None = field(default=None, compare=False)
    symbol: str | None = field(default=None, compare=False)
    product: str | None = field(default=None, compare=False)
    side: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class BrokerTrade:
    """One execution, keyed by the broker's trade id."""

    trade_id: str
    broker_order_id: str
    tag: str | None
    exchange: Exchange
    symbol: str
    product: Product
    side: Side
    quantity: int
    price: Decimal
    at: datetime


@dataclass(frozen=True, slots=True)
class BrokerPosition:
    """One net position as the broker reports it (quantity signed, short < 0)."""

    exchange: Exchange
    symbol: str
    product: Product
    quantity: int
    average_price: Decimal = Decimal(0)

    @property
    def key(self) -> tuple[Exchange, str, Product]:
        return (self.exchange, self.symbol, self.product)


class BrokerEventSink(Protocol):
    """Where a broker delivers what happens after a call returns."""

    def on_order_update(self, update: BrokerOrderUpdate) -> None: ...

    def on_trade(self, trade: BrokerTrade) -> None: ...


class Broker(Protocol):
    """Calls are made from one thread (the broker gateway's) and may block on I/O.

    ``lookups_are_authoritative``: whether find_by_tag returning None proves the broker
    never took the order (true only for a broker whose reads never lag).
    ``delivery_moves_to_holdings`` (optional, false if absent): whether a delivery (CNC)
    position leaves ``positions()`` for the account's holdings after its day, as at Kite.
    """

    lookups_are_authoritative: bool

    def connect(self, sink: BrokerEventSink) -> None:
        """Start delivering updates and trades to ``sink``."""

    def place(self, request: BrokerOrderRequest) -> str:
        """Place an order; return the broker's order id."""

    def modify(
        self,
        broker_order_id: str,
        quantity: int | None = None,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
        variety: Variety = Variety.REGULAR,
    ) -> None:
        """Change a working order (placed with ``variety``); the change is confirmed by an update."""

    def cancel(self, broker_order_id: str, variety: Variety = Variety.REGULAR) -> None:
        """Ask to cancel; the cancellation is confirmed by an update."""

    def find_by_tag(self, tag: str) -> BrokerOrderUpdate | None:
        """The order placed with ``tag`` today, or None if the broker has none."""

    def orders(self) -> Sequence[BrokerOrderUpdate]:
        """Every order the broker holds for the day."""

    def trades(self, broker_order_id: str | None = None) -> Sequence[BrokerTrade]:
        """Every trade of the day, or those of one order."""

    def positions(self) -> Sequence[BrokerPosition]:
        """The account's net positions (flat ones may be left out)."""

    def close(self) -> None:
        """Stop delivering events and release connections."""
