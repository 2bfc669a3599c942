"""One order as the paper exchange holds it, what it reports of it (a Kite-like order
update), and the row its kept book stores for it (``persistence.paper_book``)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum

from domain.broker import BrokerOrderRequest, BrokerOrderUpdate
from domain.enums import Exchange, OrderType, Product, Side, Validity
from persistence.paper_book import PaperOrderRecord

__all__ = ["PaperOrder"]

Instrument = tuple[Exchange, str]


def _text(value: object) -> str:
    """A request's word as the book keeps it: an enum's value, anything else as text."""
    return str(value.value if isinstance(value, Enum) else value)


def _word(kind: type[Enum], text: str) -> object:
    """The enum a stored word names; a malformed request's word stays the text it was."""
    try:
        return kind(text)
    except ValueError:
        return text


@dataclass(slots=True)
class PaperOrder:
    """One order as the exchange holds it: the request it came with and where it stands
    (quantity and prices after modifications, status in Kite's words, its fill)."""

    broker_order_id: str
    arrival: int  # place in the book's arrival order (time priority)
    request: BrokerOrderRequest
    exchange: Exchange
    quantity: int
    price: Decimal | None
    trigger_price: Decimal | None
    status: str
    placed_at: datetime
    updated_at: datetime
    filled_quantity: int = 0
    filled_value: Decimal = Decimal(0)
    average_price: Decimal | None = None
    message: str | None = None

    @property
    def instrument(self) -> Instrument:
        return (self.exchange, self.request.symbol)

    @property
    def remaining(self) -> int:
        return self.quantity - self.filled_quantity

    def snapshot(self) -> BrokerOrderUpdate:
        return BrokerOrderUpdate(
            broker_order_id=self.broker_order_id,
            tag=self.request.tag,
            status=self.status,
            quantity=self.quantity,
            filled_quantity=self.filled_quantity,
            at=self.updated_at,
            average_price=self.average_price,
            price=self.price,
            trigger_price=self.trigger_price,
            message=self.message,
            exchange=str(getattr(self.exchange, "value", self.exchange)),
            symbol=str(self.request.symbol),
            product=str(getattr(self.request.product, "value", self.request.product)),
            side=str(getattr(self.request.side, "value", self.request.side)),
        )

    def record(self) -> PaperOrderRecord:
        """The order as the book stores it: as it now stands, the request's words as sent."""
        request = self.request
        return PaperOrderRecord(
            broker_order_id=self.broker_order_id,
            arrival=self.arrival,
            tag=str(request.tag),
            exchange=self.exchange.value,
            symbol=str(request.symbol),
            side=_text(request.side),
            order_type=_text(request.order_type),
            product=_text(request.product),
            validity=_text(request.validity),
            quantity=self.quantity,
            price=self.price,
            trigger_price=self.trigger_price,
            status=self.status,
            filled_quantity=self.filled_quantity,
            filled_value=self.filled_value,
            average_price=self.average_price,
            message=self.message,
            placed_at=self.placed_at,
            updated_at=self.updated_at,
        )

    @classmethod
    def from_record(cls, row: PaperOrderRecord) -> PaperOrder:
        # The request is rebuilt as the order stands: after placement only its tag,
        # instrument, side, type, product and validity are read, never its first prices.
        request = BrokerOrderRequest(
            tag=row.tag,
            exchange=Exchange(row.exchange),
            symbol=row.symbol,
            side=_word(Side, row.side),  # type: ignore[arg-type]
            quantity=row.quantity,
            order_type=_word(OrderType, row.order_type),  # type: ignore[arg-type]
            product=_word(Product, row.product),  # type: ignore[arg-type]
            validity=_word(Validity, row.validity),  # type: ignore[arg-type]
            price=row.price,
            trigger_price=row.trigger_price,
        )
        return cls(
            broker_order_id=row.broker_order_id,
            arrival=row.arrival,
            request=request,
            exchange=Exchange(row.exchange),
            quantity=row.quantity,
            price=row.price,
            trigger_price=row.trigger_price,
            status=row.status,
            placed_at=row.placed_at,
            updated_at=row.updated_at,
            filled_quantity=row.filled_quantity,
            filled_value=row.filled_value,
            average_price=row.average_price,
            message=row.message,
        )
