"""The order, and its life as one transition table.

An Order is an immutable value; every change returns a new Order together with the
OrderEvent that describes it, which is what the audit trail stores.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Mapping

from domain.enums import Exchange, OrderStatus, OrderType, Product, Side, Validity, Variety
from domain.errors import IllegalTransition
from domain.frozen import compact, freeze, thaw
from domain.money import average as average_of
from domain.order_request import OrderRequest
from domain.risk import ValidationResult

S = OrderStatus

# Every allowed (from, to). OPEN -> OPEN records partial fills and modifications.
# SUBMITTED -> FILLED/CANCELLED covers an acknowledgement that was lost or overtaken:
# the broker's later word settles the order without the OMS ever seeing OPEN.
TRANSITIONS: frozenset[tuple[OrderStatus | None, OrderStatus]] = frozenset(
    {
        (None, S.PENDING),
        (None, S.REJECTED),  # refused by a pre-trade check: stored, never sent
        (S.PENDING, S.SUBMITTED),
        (S.PENDING, S.REJECTED),
        (S.PENDING, S.FAILED),
        (S.PENDING, S.CANCELLED),
        (S.SUBMITTED, S.OPEN),
        (S.SUBMITTED, S.FILLED),
        (S.SUBMITTED, S.CANCELLED),
        (S.SUBMITTED, S.REJECTED),
        (S.SUBMITTED, S.FAILED),
        (S.OPEN, S.OPEN),
        (S.OPEN, S.FILLED),
        (S.OPEN, S.CANCELLED),
        (S.OPEN, S.REJECTED),
        (S.OPEN, S.FAILED),
    }
)

# How far along its life a status is; a broker update never moves an order back.
PROGRESS: Mapping[OrderStatus, int] = {
    S.PENDING: 0,
    S.SUBMITTED: 1,
    S.OPEN: 2,
    S.FILLED: 3,
    S.CANCELLED: 3,
    S.REJECTED: 3,
    S.FAILED: 3,
}


def can_transition(current: OrderStatus | None, target: OrderStatus) -> bool:
    return (current, target) in TRANSITIONS


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One row of the audit trail: a status change (or an in-place change such as a
    fill or a modification, where from_status == to_status)."""

    order_id: int
    at: datetime
    from_status: OrderStatus | None
    to_status: OrderStatus
    payload: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = field(default=None, compare=False)
    """Its ``order_events.id`` once stored (the cursor for reading the trail page by page)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "payload", freeze(self.payload))


@dataclass(frozen=True, slots=True)
class Order:
    order_id: int
    """``orders.id``: allocated by the database, unique across restarts and processes."""
    symbol: str
    exchange: Exchange
    side: Side
    quantity: int
    order_type: OrderType
    product: Product
    validity: Validity
    strategy_id: int
    status: OrderStatus
    created_at: datetime
    updated_at: datetime
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    tick_size: Decimal | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    filled_quantity: int = 0
    average_price: Decimal | None = None
    filled_value: Decimal = Decimal(0)
    """The exact sum of price x quantity over the fills; average_price derives from it."""
    broker_order_id: str | None = None
    validation_result: Mapping[str, Any] | None = None
    status_message: str | None = None
    modification_count: int = 0
    tag: str = ""
    """What the broker knows the order by (Kite's ``tag``): a per-database prefix and the id."""
    risk_amount: Decimal | None = None
    """(entry - stop) x quantity, when both prices are known at validation."""
    submitted_at: datetime | None = None
    filled_at: datetime | None = None
    error_message: str | None = None
    """Why the order FAILED (never reached, or was lost by, the broker)."""
    client_order_id: str | None = None
    """The client's own id for the order (``OrderRequest.client_order_id``), unique per account."""
    variety: Variety = Variety.REGULAR
    """Kite's variety the order is placed, modified and cancelled with (an enum member:
    shared, no object per order)."""

    def __post_init__(self) -> None:
        # Read-only all the way down, so no holder of this value can change another's.
        object.__setattr__(self, "metadata", freeze(self.metadata))
        if self.validation_result is not None:
            # Kept for every live order and read rarely: held as its JSON text.
            object.__setattr__(self, "validation_result", compact(self.validation_result))

    @classmethod
    def from_request(
        cls,
        order_id: int,
        request: OrderRequest,
        at: datetime,
        validation_result: Mapping[str, Any] | ValidationResult | None = None,
        tag: str = "",
    ) -> "Order":
        """A new order, not yet in any status: pass it to ``created`` or ``refused``.
        A request that leaves its exits to the strategy says so in the validation
        result (``"managed_exits": false``), which the order keeps for good."""
        unmanaged = not request.managed_exits and (request.stop_loss is not None or request.take_profit is not None)
        if isinstance(validation_result, ValidationResult):
            entry = validation_result.entry_price or request.entry_price
            validation_result = validation_result.as_document(**({"managed_exits": False} if unmanaged else {}))
        else:
            entry = _validated_entry(validation_result) or request.entry_price
            if unmanaged:
                validation_result = {**(validation_result or {}), "managed_exits": False}
        return cls(
            order_id=order_id,
            symbol=request.symbol,
            exchange=request.exchange,
            side=request.side,
            quantity=request.quantity,
            order_type=request.order_type,
            product=request.product,
            validity=request.validity,
            strategy_id=request.strategy_id,
            status=S.PENDING,
            created_at=at,
            updated_at=at,
            price=request.price,
            trigger_price=request.trigger_price,
            stop_loss=request.stop_loss,
            take_profit=request.take_profit,
            tick_size=request.tick_size,
            metadata=request.metadata,
            validation_result=validation_result,
            tag=tag,
            risk_amount=risk_amount(entry, request.stop_loss, request.quantity),
            client_order_id=request.client_order_id,
            variety=request.variety,
        )

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def remaining_quantity(self) -> int:
        return self.quantity - self.filled_quantity

    @property
    def position_key(self) -> tuple[Exchange, str, Product]:
        return (self.exchange, self.symbol, self.product)

    def to_request(self) -> OrderRequest:
        """The request this order stands for now (after any modifications)."""
        return OrderRequest(
            symbol=self.symbol,
            exchange=self.exchange,
            side=self.side,
            quantity=self.quantity,
            order_type=self.order_type,
            price=self.price,
            trigger_price=self.trigger_price,
            stop_loss=self.stop_loss,
            take_profit=self.take_profit,
            product=self.product,
            validity=self.validity,
            strategy_id=self.strategy_id,
            metadata=thaw(self.metadata),
            tick_size=self.tick_size,
            client_order_id=self.client_order_id,
            variety=self.variety,
        )


def risk_amount(entry: Decimal | None, stop_loss: Decimal | None, quantity: int) -> Decimal | None:
    """What the order loses if it fills at ``entry`` and exits at ``stop_loss``."""
    if entry is None or stop_loss is None:
        return None
    return abs(entry - stop_loss) * quantity


def _validated_entry(validation_result: Mapping[str, Any] | None) -> Decimal | None:
    """The entry price the pre-trade checks valued the order at (a MARKET order's is
    the last price then), if they recorded one."""
    text = (validation_result or {}).get("entry_price")
    return Decimal(text) if text else None


def created(order: Order) -> tuple[Order, OrderEvent]:
    """The first event of an accepted order: PENDING, written before the broker sees it."""
    event = OrderEvent(
        order.order_id,
        order.created_at,
        None,
        S.PENDING,
        # The document itself (kept as text, so it is not copied per event)
        {"validation_result": {} if order.validation_result is None else order.validation_result},
    )
    return replace(order, status=S.PENDING), event


def refused(order: Order, reason: str) -> tuple[Order, OrderEvent]:
    """The only event of an order a pre-trade check refused: REJECTED, never sent."""
    rejected = replace(order, status=S.REJECTED, status_message=reason)
    event = OrderEvent(
        order.order_id,
        order.created_at,
        None,
        S.REJECTED,
        {"reason": reason, "validation_result": order.validation_result or {}},
    )
    return rejected, event


def transition(
    order: Order,
    target: OrderStatus,
    at: datetime,
    payload: Mapping[str, Any] | None = None,
    **changes: Any,
) -> tuple[Order, OrderEvent]:
    """Move ``order`` to ``target`` (with field ``changes``) or raise IllegalTransition."""
    if not can_transition(order.status, target):
        raise IllegalTransition(
            f"order {order.order_id}: {getattr(order.status, 'value', order.status)} -> {target.value} is not allowed"
        )
    stamps: dict[str, Any] = {}
    if target is S.SUBMITTED and order.submitted_at is None:
        stamps["submitted_at"] = at
    elif target is S.FILLED and order.filled_at is None:
        stamps["filled_at"] = at
    elif target is S.FAILED and "error_message" not in changes:
        stamps["error_message"] = changes.get("status_message") or (payload or {}).get("reason")
    new = replace(order, status=target, updated_at=at, **{**stamps, **changes})
    event = OrderEvent(order.order_id, at, order.status, target, dict(payload or {}))
    return new, event


def annotate(
    order: Order, at: datetime, payload: Mapping[str, Any], **changes: Any
) -> tuple[Order, OrderEvent]:
    """A change that keeps the status (a broker id learnt late, an unsure outcome, a
    modification): recorded in the audit trail like any transition."""
    new = replace(order, updated_at=at, **changes)
    return new, OrderEvent(order.order_id, at, order.status, order.status, dict(payload))


def apply_fill(
    order: Order, quantity: int, price: Decimal, at: datetime, trade_id: str
) -> tuple[Order, OrderEvent]:
    """Add one fill. ``filled_quantity`` only grows, and never past ``quantity``.

    The order is FILLED once its fills cover the whole quantity; until then it is OPEN
    (a partial fill), except that a fill on a CANCELLED order (the broker filled part of it
    before the cancel took) is recorded without changing the status.
    """
    if quantity <= 0:
        raise ValueError(f"fill quantity must be positive, got {quantity}")
    if price <= 0:
        raise ValueError(f"fill price must be positive, got {price}")
    filled = order.filled_quantity + quantity
    if filled > order.quantity:
        raise IllegalTransition(
            f"order {order.order_id}: fill of {quantity} would make {filled} filled of {order.quantity}"
        )
    value = order.filled_value + price * quantity
    average = average_of(value, filled)
    if order.status is S.CANCELLED:
        target = S.CANCELLED
    else:
        target = S.FILLED if filled == order.quantity else S.OPEN
    payload = {"trade_id": trade_id, "quantity": quantity, "price": str(price), "filled_quantity": filled}
    if order.status is S.CANCELLED:
        new = replace(order, filled_quantity=filled, average_price=average, filled_value=value, updated_at=at)
        return new, OrderEvent(order.order_id, at, S.CANCELLED, S.CANCELLED, payload)
    return transition(order, target, at, payload, filled_quantity=filled, average_price=average, filled_value=value)


def is_progress(current: OrderStatus, reported: OrderStatus) -> bool:
    """Whether a reported status moves the order forward (late updates never go back)."""
    return PROGRESS[reported] > PROGRESS[current] or (
        current is S.OPEN and reported is S.OPEN
    )


@dataclass(frozen=True, slots=True)
class Modification:
    """New values for a working order; None keeps the current value."""

    quantity: int | None = None
    price: Decimal | None = None
    trigger_price: Decimal | None = None

    def changes(self) -> dict[str, Any]:
        """The fields it sets (those not None), by the order's field names."""
        return {k: v for k, v in (("quantity", self.quantity), ("price", self.price), ("trigger_price", self.trigger_price)) if v is not None}

    def as_payload(self) -> dict[str, Any]:
        return {k: str(v) for k, v in self.changes().items()}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> "Modification":
        """The modification ``as_payload`` wrote (an audit event's), read back exactly."""
        def money(name: str) -> Decimal | None:
            return None if payload.get(name) is None else Decimal(payload[name])

        quantity = payload.get("quantity")
        return cls(quantity=None if quantity is None else int(quantity), price=money("price"), trigger_price=money("trigger_price"))


def check_modification(order: Order, change: Modification) -> OrderRequest:
    """The request the order would become, or ValueError naming the field and rule.

    A modification may not take quantity below what is already filled, and the result
    must satisfy every rule a new request does (tick, price/trigger by type, exit sides).
    """
    if change.quantity is None and change.price is None and change.trigger_price is None:
        raise ValueError("modification: give at least one of new_quantity, new_price, new_trigger_price")
    if change.quantity is not None and change.quantity <= order.filled_quantity:
        raise ValueError(
            f"new_quantity: {change.quantity} must exceed the filled quantity {order.filled_quantity}"
        )
    current = order.to_request()
    return OrderRequest(
        **{
            **current.model_dump(),
            **({"quantity": change.quantity} if change.quantity is not None else {}),
            **({"price": change.price} if change.price is not None else {}),
            **({"trigger_price": change.trigger_price} if change.trigger_price is not None else {}),
        }
    )
