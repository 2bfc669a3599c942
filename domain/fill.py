"""A fill: one trade at the broker against one of our orders, keyed by the broker's
trade id so that it is never counted twice."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from domain.charges import Charges
from domain.enums import Exchange, Product, Side


@dataclass(frozen=True, slots=True)
class Fill:
    trade_id: str
    """The broker's trade id (``trades.broker_trade_id``)."""
    order_id: int
    broker_order_id: str | None
    exchange: Exchange
    symbol: str
    product: Product
    side: Side
    quantity: int
    price: Decimal
    at: datetime
    charges: Charges
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    """The protective prices of the order that traded, carried to its position."""
    id: int | None = field(default=None, compare=False)
    """Its ``trades.id`` once stored (the cursor for reading fills page by page)."""

    @property
    def value(self) -> Decimal:
        return self.price * self.quantity

    @property
    def position_key(self) -> tuple[Exchange, str, Product]:
        return (self.exchange, self.symbol, self.product)
