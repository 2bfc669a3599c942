"""Positions and their arithmetic: average price on adds, realized P&L on reductions,
flips through zero, shorts. Decimal throughout; quantities are signed (short < 0)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from domain.enums import Exchange, Product, Side
from domain.money import average, natural

ZERO = Decimal(0)
PositionKey = tuple[Exchange, str, Product]


@dataclass(frozen=True, slots=True)
class Position:
    exchange: Exchange
    symbol: str
    product: Product
    quantity: int = 0
    average_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    charges: Decimal = ZERO
    last_price: Decimal | None = None
    updated_at: datetime | None = None
    opened_at: datetime | None = None
    """When the position last went from flat to open (or flipped through zero)."""
    closed_at: datetime | None = None
    """When it last went flat; None while it is open."""
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    """The protective prices of the latest order that opened or added to it."""

    @property
    def key(self) -> PositionKey:
        return (self.exchange, self.symbol, self.product)

    @property
    def is_flat(self) -> bool:
        return self.quantity == 0

    @property
    def unrealized_pnl(self) -> Decimal:
        """P&L of the open quantity at the last price (zero while no price is known)."""
        if self.quantity == 0 or self.last_price is None:
            return natural(ZERO)
        return natural((self.last_price - self.average_price) * self.quantity)

    @property
    def net_pnl(self) -> Decimal:
        """Realized plus unrealized P&L, net of every charge paid on this position."""
        return self.realized_pnl + self.unrealized_pnl - self.charges


@dataclass(frozen=True, slots=True)
class PositionChange:
    """What one fill did to a position."""

    before: Position
    after: Position
    realized_pnl: Decimal  # realized by this fill alone


def apply_fill(
    position: Position,
    side: Side,
    quantity: int,
    price: Decimal,
    charges: Decimal = ZERO,
    at: datetime | None = None,
    stop_loss: Decimal | None = None,
    take_profit: Decimal | None = None,
) -> PositionChange:
    """The position after one fill of ``quantity`` at ``price`` on ``side``.

    Adding (or opening) moves the average price to the quantity-weighted mean; reducing
    realizes (price - average) per unit in the position's direction and leaves the
    average alone; a fill larger than the position closes it and opens the rest the
    other way at the fill price.
    """
    if quantity <= 0:
        raise ValueError(f"fill quantity must be positive, got {quantity}")
    if price <= 0:
        raise ValueError(f"fill price must be positive, got {price}")
    held = position.quantity
    signed = side.sign * quantity
    realized = ZERO
    if held == 0 or (held > 0) == (signed > 0):
        new_quantity = held + signed
        new_average = average(position.average_price * abs(held) + price * quantity, abs(new_quantity))
    else:
        closing = min(quantity, abs(held))
        direction = 1 if held > 0 else -1
        realized = (price - position.average_price) * closing * direction
        new_quantity = held + signed
        if new_quantity == 0:
            new_average = ZERO
        elif (new_quantity > 0) == (held > 0):
            new_average = position.average_price
        else:
            new_average = price  # flipped through zero: the rest opened at this fill
    opened_at, closed_at = position.opened_at, position.closed_at
    protect = (position.stop_loss, position.take_profit)
    if new_quantity == 0:
        closed_at, protect = at or position.updated_at, (None, None)
    elif held == 0 or (held > 0) != (new_quantity > 0):
        opened_at, closed_at, protect = at or position.updated_at, None, (stop_loss, take_profit)
    elif abs(new_quantity) > abs(held) and (stop_loss is not None or take_profit is not None):
        protect = (stop_loss, take_profit)
    after = replace(
        position,
        opened_at=opened_at,
        closed_at=closed_at,
        stop_loss=protect[0],
        take_profit=protect[1],
        quantity=new_quantity,
        average_price=new_average,
        realized_pnl=natural(position.realized_pnl + realized),
        charges=natural(position.charges + charges),
        last_price=position.last_price if position.last_price is not None else price,
        updated_at=at or position.updated_at,
    )
    return PositionChange(position, after, realized)


def mark(position: Position, price: Decimal, at: datetime | None = None) -> Position:
    """The position valued at a new last price."""
    return replace(position, last_price=price, updated_at=at or position.updated_at)
