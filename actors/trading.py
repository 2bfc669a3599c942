"""The messages a strategy trades with: the OMS's public, message-only interface.

A strategy that is a pykka actor sends commands to the supervisor (``oms.supervisor``)
with ``tell`` and hears every answer and event as a message to its own actor. Nothing
blocks and no future is involved::

    class Scalper(pykka.ThreadingActor):
        def on_start(self):
            self.oms.tell(Subscribe(self.actor_ref, strategy_id=7))
            self.oms.tell(PlaceOrder(request, reply_to=self.actor_ref, correlation_id="entry"))

        def on_receive(self, message):
            match message:
                case OrderAccepted(correlation_id="entry", result=result): ...
                case OrderRefused(reason=reason, failed_check=check): ...
                case OrderFilled(fill=fill): ...

Commands: PlaceOrder, CancelOrder, ModifyOrder, Subscribe.
Answers (to ``reply_to``, carrying the command's ``correlation_id``): OrderAccepted,
CancelAccepted, ModifyAccepted, or OrderRefused (the reason and the check that refused).
Events (to subscribers): OrderChanged after every committed change of an order, and
OrderFilled for every fill, after its position has moved.

The blocking handle (``actors.oms.OMS``) sends these same commands with a future in
``reply`` instead of ``reply_to``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pykka

from domain.errors import (
    OrderNotCancellable,
    OrderNotFound,
    OrderNotModifiable,
    OrderRejected,
    OrderSubmissionFailed,
)
from domain.fill import Fill
from domain.order import Order
from domain.order_request import OrderRequest
from domain.position import PositionChange
from domain.results import OrderResult

Reply = pykka.Future  # completed with a value or an exception, exactly once


# --- commands -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """Validate, record and send ``request``. Answered OrderAccepted once the broker
    has it (or once its outcome is known to be unknown: status SUBMITTED, settled by tag),
    else OrderRefused."""

    request: OrderRequest
    reply_to: pykka.ActorRef | None = field(default=None, compare=False)
    correlation_id: Any = None
    reply: Reply | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Cancel a working order. Answered CancelAccepted once the broker accepted the
    request (OrderChanged to CANCELLED follows), else OrderRefused."""

    order_id: int
    reply_to: pykka.ActorRef | None = field(default=None, compare=False)
    correlation_id: Any = None
    reply: Reply | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ModifyOrder:
    """Change a working order's price, quantity or trigger (None keeps it); re-checked
    for risk. Answered ModifyAccepted once the broker accepted it, else OrderRefused.
    Money takes Decimal, int, numeric text or float (read by its shortest repr)."""

    order_id: int
    new_price: Decimal | float | int | str | None = None
    new_quantity: int | None = None
    new_trigger_price: Decimal | float | int | str | None = None
    reply_to: pykka.ActorRef | None = field(default=None, compare=False)
    correlation_id: Any = None
    reply: Reply | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Send ``subscriber`` OrderChanged and OrderFilled for every order (or only the
    orders of ``strategy_id``)."""

    subscriber: pykka.ActorRef = field(compare=False)
    strategy_id: int | None = None


# --- answers ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class OrderAccepted:
    correlation_id: Any
    result: OrderResult


@dataclass(frozen=True, slots=True)
class CancelAccepted:
    correlation_id: Any
    order_id: int


@dataclass(frozen=True, slots=True)
class ModifyAccepted:
    correlation_id: Any
    order_id: int


@dataclass(frozen=True, slots=True)
class OrderRefused:
    """A place, cancel or modify that was not carried out. ``failed_check`` names the
    pre-trade check (``"risk_per_trade"``, ...), ``"broker"`` when the broker said no,
    or the kind of refusal (``"input"``, ``"not_cancellable"``, ``"not_modifiable"``,
    ``"not_found"``, ``"submission"``); ``error`` is the exception the blocking handle
    would have raised."""

    correlation_id: Any
    order_id: int | None
    reason: str
    failed_check: str
    error: Exception = field(compare=False)


# --- events -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class OrderChanged:
    """An order's committed state (sent after the change is in the database)."""

    order: Order


@dataclass(frozen=True, slots=True)
class OrderFilled:
    """One fill, committed and applied to its position. ``position`` is what the fill
    did to its position (before, after, and the P&L it realized); None when the position
    had been moved by it already (a fill replayed after a restart)."""

    order: Order
    fill: Fill
    position: PositionChange | None = None


# --- answering by message -----------------------------------------------------------------

class ActorReply:
    """Stands where a future would for a command sent with ``reply_to``: completing it
    tells the strategy's actor the answer as a message. Like a future, it answers once."""

    def __init__(self, to: pykka.ActorRef, command: PlaceOrder | CancelOrder | ModifyOrder) -> None:
        self._to = to
        self._command = command
        self._done = False

    def _tell(self, message: Any) -> None:
        if self._done:
            raise RuntimeError("already answered")
        self._done = True
        try:
            self._to.tell(message)
        except pykka.ActorDeadError:
            return  # the strategy stopped; nobody is left to hear it

    def set(self, value: Any = None) -> None:
        command = self._command
        if isinstance(command, PlaceOrder):
            self._tell(OrderAccepted(command.correlation_id, value))
        elif isinstance(command, CancelOrder):
            self._tell(CancelAccepted(command.correlation_id, command.order_id))
        else:
            self._tell(ModifyAccepted(command.correlation_id, command.order_id))

    def set_exception(self, exc_info: Any = None) -> None:
        error = exc_info[1] if isinstance(exc_info, tuple) else exc_info
        order_id = getattr(error, "order_id", getattr(self._command, "order_id", None))
        self._tell(OrderRefused(self._command.correlation_id, order_id, _reason(error), refusal_kind(error), error))


def _reason(error: BaseException) -> str:
    return str(getattr(error, "reason", None) or error)


def refusal_kind(error: BaseException) -> str:
    """The ``failed_check`` an OrderRefused carries for ``error``."""
    if isinstance(error, OrderRejected):
        return error.failed_check
    if isinstance(error, OrderNotCancellable):
        return "not_cancellable"
    if isinstance(error, OrderNotModifiable):
        return "not_modifiable"
    if isinstance(error, OrderNotFound):
        return "not_found"
    if isinstance(error, OrderSubmissionFailed):
        return "submission"
    if isinstance(error, ValueError):
        return "input"
    return type(error).__name__


def reply_of(command: PlaceOrder | CancelOrder | ModifyOrder) -> Any:
    """Where the answer to ``command`` goes: its future, or its sender's actor."""
    if command.reply is not None:
        return command.reply
    if command.reply_to is not None:
        return ActorReply(command.reply_to, command)
    return _Nobody()


class _Nobody:
    """A command told without a reply address: its answer is dropped on purpose."""

    def set(self, value: Any = None) -> None:
        """Nobody asked to hear the answer."""

    def set_exception(self, exc_info: Any = None) -> None:
        """Nobody asked to hear the refusal; the order's events still tell subscribers."""
