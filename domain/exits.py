"""OMS-managed protective exits: the rules that size them.

An entry order that carries a ``stop_loss`` and/or a ``take_profit`` (and did not opt out)
is protected once it fills, even in part, by an OCO pair of exit orders ("legs") on the
other side: an SL-M at the stop and a LIMIT at the target. Each leg covers what the entry
has filled less what its legs have already filled; when one leg fills, the other shrinks
by as much, and a leg with nothing left to cover is cancelled. No leg ever covers more
than the position holds in the entry's direction: when a strategy closes the position
itself, the legs go.

``plan_exits`` compares the legs that exist with the legs that should, for every entry in
one instrument, and answers the steps that close the gap. It is pure: the Protector actor
supplies the orders and the position, and carries the steps out.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from domain.enums import OrderType, Side
from domain.order import Order
from domain.order_request import OrderRequest

STOP_LOSS = "stop_loss"
TAKE_PROFIT = "take_profit"
ROLES = (STOP_LOSS, TAKE_PROFIT)
# The guide's tradeExecuted event reads the exit's reason from its metadata.
EXIT_REASONS = {STOP_LOSS: "stop_loss", TAKE_PROFIT: "target"}
OPT_OUT_KEY = "managed_exits"


def exit_of(order: Order) -> int | None:
    """The entry an exit order protects, or None for any other order."""
    return exit_of_metadata(order.metadata)


def exit_of_metadata(metadata: Mapping[str, Any] | None) -> int | None:
    entry = metadata.get("exit_of") if metadata else None
    return entry if isinstance(entry, int) and not isinstance(entry, bool) else None


def is_protected_entry(order: Order) -> bool:
    """An entry the OMS protects: it names a stop or a target, is not itself an exit,
    and its strategy did not opt out."""
    if order.stop_loss is None and order.take_profit is None:
        return False
    if exit_of(order) is not None:
        return False
    result = order.validation_result or {}
    return result.get(OPT_OUT_KEY, True) is not False


def exit_request(entry: Order, role: str, quantity: int) -> OrderRequest:
    """The leg ``role`` of ``entry``'s pair, for ``quantity``."""
    metadata: dict[str, Any] = {"exit_of": entry.order_id, "exit_role": role, "exit_reason": EXIT_REASONS[role]}
    common: dict[str, Any] = dict(
        symbol=entry.symbol, exchange=entry.exchange, product=entry.product, validity=entry.validity,
        side=Side.SELL if entry.side is Side.BUY else Side.BUY, quantity=quantity,
        strategy_id=entry.strategy_id, metadata=metadata, tick_size=entry.tick_size,
    )
    if role == STOP_LOSS:
        return OrderRequest(order_type=OrderType.SL_M, trigger_price=entry.stop_loss, **common)
    return OrderRequest(order_type=OrderType.LIMIT, price=entry.take_profit, **common)


@dataclass(frozen=True, slots=True)
class Place:
    entry: Order
    role: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Resize:
    leg: Order
    role: str
    quantity: int  # the leg's new total quantity (its fills included)


@dataclass(frozen=True, slots=True)
class Cancel:
    leg: Order
    role: str


Step = Place | Resize | Cancel


def role_of(leg: Order) -> str | None:
    role = leg.metadata.get("exit_role") if leg.metadata else None
    return role if role in ROLES else None


def plan_exits(entries: Sequence[Order], legs: Iterable[Order], position_quantity: int) -> list[Step]:
    """The steps that bring ``legs`` (every exit order of ``entries``, finished ones
    too) to what ``entries`` (protected entries of one instrument, oldest first) need,
    given the instrument's signed position. The position is shared out oldest entry
    first, long entries taking the long side and short ones the short side."""
    by_entry: dict[int, list[Order]] = {}
    for leg in legs:
        entry_id = exit_of(leg)
        if entry_id is not None:
            by_entry.setdefault(entry_id, []).append(leg)
    available = {Side.BUY: max(0, position_quantity), Side.SELL: max(0, -position_quantity)}
    steps: list[Step] = []
    for entry in entries:
        own = by_entry.get(entry.order_id, [])
        exited = sum(leg.filled_quantity for leg in own)
        cover = min(max(0, entry.filled_quantity - exited), available[entry.side])
        available[entry.side] -= cover
        for role in ROLES:
            if (entry.stop_loss if role == STOP_LOSS else entry.take_profit) is None:
                continue
            live = [leg for leg in own if role_of(leg) == role and not leg.is_terminal]
            for extra in live[1:]:  # one working leg per role; a second is never right
                steps.append(Cancel(extra, role))
            if not live:
                if cover > 0:
                    steps.append(Place(entry, role, cover))
                continue
            leg = live[0]
            if cover == 0:
                steps.append(Cancel(leg, role))
            elif leg.quantity - leg.filled_quantity != cover:
                steps.append(Resize(leg, role, leg.filled_quantity + cover))
    return steps
