"""Validator: pre-trade risk checks against running totals."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

from actors.base import OMSActor, dispatch, handles, tell_quietly
from actors.messages import (
    Checked,
    CheckModification,
    CheckOrder,
    GetRiskState,
    MarkPrice,
    OrderClosed,
    OrderWorking,
    PositionChanged,
    RestoreRisk,
)
from domain.enums import Exchange, Product, Side
from domain.exits import exit_of_metadata
from domain.instruments import InstrumentBook
from domain.order import Order
from domain.position import Position
from domain.risk import Account, CheckResult, Exposure, RiskLimits, ValidationResult, validate_order

ZERO = Decimal(0)
PositionKey = tuple[Exchange, str, Product]


@dataclass(frozen=True, slots=True)
class Reservation:
    """What one working order holds back: its side and remaining quantity in an
    instrument, and the margin blocked for that remaining quantity."""

    key: PositionKey
    side: Side
    quantity: int
    remaining: int
    margin: Decimal  # for the whole order quantity
    group: int | None = None  # an OCO pair's legs (the entry they protect) close one quantity

    @property
    def blocked(self) -> Decimal:
        return self.margin * self.remaining / self.quantity


@dataclass(frozen=True, slots=True)
class RiskState:
    open_orders: int
    reserved_margin: Decimal
    position_margin: Decimal
    realized_pnl: Decimal
    charges: Decimal
    available: Decimal


@dataclass
class _Working:
    buy: int = 0
    sell: int = 0


@dispatch
class Validator(OMSActor):
    """Owns the risk limits (and reads the broker's instrument master) and the running risk state: working orders' reservations,
    working quantity per instrument, positions' quantities and margin, realized P&L and
    charges, and last prices.

    Takes CheckOrder (asked, or told with a reply_to that gets a Checked message) and
    CheckModification (asked); each answers a ValidationResult and, when it passes,
    reserves at once so that two orders cannot both take the last rupee;
    OrderWorking, OrderClosed, PositionChanged, MarkPrice, RestoreRisk, GetRiskState.
    Every total is updated incrementally; nothing is recomputed from all orders.
    """

    heals = True
    asked = (CheckModification, GetRiskState, RestoreRisk)

    def __init__(
        self, limits: RiskLimits, supervisor=None, reload: Callable[[], RestoreRisk] | None = None,
        instruments: Callable[[], InstrumentBook] | None = None,
    ) -> None:
        super().__init__()
        self.supervisor = supervisor
        self._limits = limits
        self._reload = reload
        # The broker's instrument master as it stands (a new day's is swapped in whole);
        # None: the broker has none (paper), and no instrument check runs.
        self._instruments = instruments
        self._reset()

    def _reset(self) -> None:
        self._reservations: dict[int, Reservation] = {}
        self._groups: dict[int, set[int]] = {}  # an OCO pair's entry -> its legs' order ids
        self._working: dict[PositionKey, _Working] = {}
        self._positions: dict[PositionKey, Position] = {}
        self._prices: dict[tuple[Exchange, str], Decimal] = {}
        self._reserved = ZERO
        self._position_margin = ZERO
        self._realized = ZERO
        self._charges = ZERO

    def restart(self) -> None:
        """Forget every running total and rebuild them from the live orders and the
        positions (``reload`` reads them from the database and the keeper); last prices
        are kept, they are the market's, not derived."""
        if self._reload is None:
            raise RuntimeError("the validator has no way to reload its state")
        restored = self._reload()
        prices = dict(self._prices)
        self._reset()
        self._prices = prices
        self._restore(restored)

    def give_up(self, message: Any, error: Exception) -> None:
        if isinstance(message, CheckOrder) and message.reply_to is not None:
            # The order is refused, not lost: the supervisor records the refusal.
            check = CheckResult("validator", False, f"the pre-trade checks could not run: {error}")
            result = ValidationResult(False, (check,), None, ZERO, False)
            tell_quietly(message.reply_to, Checked(message.order_id, message.request, result, message.reply))
            return
        super().give_up(message, error)

    # --- checks ---------------------------------------------------------------

    def _book(self) -> InstrumentBook | None:
        return self._instruments() if self._instruments is not None else None

    def _account(self) -> Account:
        return Account(
            realized_pnl=self._realized,
            charges=self._charges,
            position_margin=self._position_margin,
            reserved_margin=self._reserved,
            open_orders=len(self._reservations),
        )

    def _exposure(self, key: PositionKey) -> Exposure:
        working = self._working.get(key, _Working())
        buy, sell = working.buy, working.sell
        # The OMS's own exit legs follow the position (the Protector shrinks them as it
        # shrinks, whoever shrinks it), so they never make an order look like it opens
        # one: a strategy may still close its position itself, and a pair's second leg
        # closes the same quantity as the first.
        for legs in self._groups.values():
            for order_id in legs:
                leg = self._reservations.get(order_id)
                if leg is None or leg.key != key:
                    continue
                if leg.side is Side.BUY:
                    buy -= leg.remaining
                else:
                    sell -= leg.remaining
        position = self._positions.get(key)
        return Exposure(position.quantity if position else 0, buy, sell)

    @handles(CheckOrder)
    def _check(self, message: CheckOrder) -> ValidationResult:
        request = message.request
        key = (request.exchange, request.symbol, request.product)
        group = exit_of_metadata(request.metadata)
        result = validate_order(
            request,
            self._prices.get((request.exchange, request.symbol)),
            self._exposure(key),
            self._account(),
            self._limits,
            self._book(),
        )
        if message.reduce_only is not None and not result.reduces_position:
            refused = CheckResult(
                "trading_state", False,
                f"trading is REDUCE_ONLY ({message.reduce_only}): only orders that shrink a position are accepted",
            )
            result = ValidationResult(False, (refused, *result.checks), result.entry_price, result.required_margin, False)
        if result.passed:
            self._reserve(
                message.order_id,
                Reservation(key, request.side, request.quantity, request.quantity, result.required_margin, group),
            )
        if message.reply_to is not None:
            tell_quietly(message.reply_to, Checked(message.order_id, request, result, message.reply))
        return result

    @handles(CheckModification)
    def _check_modification(self, message: CheckModification) -> ValidationResult:
        """Check the order as it would be after the change, as if it were new; the
        order's own reservation is set aside while checking and replaced if it passes."""
        own = self._release(message.order_id)
        if own is None:
            # The order closed while the modification was on its way: re-reserving for
            # it now would hold margin for an order that no longer exists.
            gone = CheckResult("order_working", False, f"order {message.order_id} is no longer working")
            return ValidationResult(False, (gone,), None, ZERO, False)
        request = message.request
        key = (request.exchange, request.symbol, request.product)
        account = self._account()
        group = exit_of_metadata(request.metadata)
        result = validate_order(
            request,
            self._prices.get((request.exchange, request.symbol)),
            self._exposure(key),
            account,
            self._limits,
            self._book(),
        )
        if result.passed:
            remaining = request.quantity - message.filled_quantity
            self._reserve(
                message.order_id,
                Reservation(key, request.side, request.quantity, remaining, result.required_margin, group),
            )
        elif own is not None:
            self._reserve(message.order_id, own)
        return result

    # --- running state ----------------------------------------------------------

    def _reserve(self, order_id: int, reservation: Reservation) -> None:
        self._release(order_id)
        self._reservations[order_id] = reservation
        if reservation.group is not None:
            self._groups.setdefault(reservation.group, set()).add(order_id)
        self._reserved += reservation.blocked
        working = self._working.setdefault(reservation.key, _Working())
        if reservation.side is Side.BUY:
            working.buy += reservation.remaining
        else:
            working.sell += reservation.remaining

    def _release(self, order_id: int) -> Reservation | None:
        reservation = self._reservations.pop(order_id, None)
        if reservation is None:
            return None
        if reservation.group is not None:
            siblings = self._groups.get(reservation.group, set())
            siblings.discard(order_id)
            if not siblings:
                self._groups.pop(reservation.group, None)
        self._reserved -= reservation.blocked
        working = self._working[reservation.key]
        if reservation.side is Side.BUY:
            working.buy -= reservation.remaining
        else:
            working.sell -= reservation.remaining
        return reservation

    @handles(OrderWorking)
    def _order_working(self, message: OrderWorking) -> None:
        order = message.order
        if order.is_terminal:
            self._release(order.order_id)
            return
        current = self._reservations.get(order.order_id)
        if current is None:
            return  # closed already: a late update changes nothing
        # Recomputed from the order as it stands (after a fill, a modification or a
        # refused one), so the reservation never keeps a price the order does not have.
        self._reserve(order.order_id, self._reservation_for(order, reducing=current.margin == 0))

    @handles(OrderClosed)
    def _order_closed(self, message: OrderClosed) -> None:
        self._release(message.order_id)

    def _margin(self, position: Position) -> Decimal:
        return abs(position.quantity) * position.average_price / self._limits.leverage_for(position.product)

    @handles(PositionChanged)
    def _position_changed(self, message: PositionChanged) -> None:
        before, after = message.before, message.after
        self._position_margin += self._margin(after) - self._margin(before)
        self._realized += after.realized_pnl - before.realized_pnl
        self._charges += after.charges - before.charges
        self._positions[after.key] = after

    @handles(MarkPrice)
    def _mark(self, message: MarkPrice) -> None:
        self._prices[(message.exchange, message.symbol)] = message.price

    @handles(RestoreRisk)
    def _restore(self, message: RestoreRisk) -> None:
        for position in message.positions:
            self._position_changed(PositionChanged(Position(position.exchange, position.symbol, position.product), position, None))
            if position.last_price is not None:
                self._prices.setdefault((position.exchange, position.symbol), position.last_price)
        for order in message.orders:
            self._restore_order(order)

    def _reservation_for(self, order: Order, reducing: bool) -> Reservation:
        price = order.price or order.trigger_price or self._prices.get((order.exchange, order.symbol)) or ZERO
        margin = ZERO if reducing else price * order.quantity / self._limits.leverage_for(order.product)
        return Reservation(
            order.position_key, order.side, order.quantity, order.remaining_quantity, margin, exit_of_metadata(order.metadata),
        )

    def _restore_order(self, order: Order) -> None:
        reducing = bool(order.validation_result and order.validation_result.get("reduces_position"))
        self._reserve(order.order_id, self._reservation_for(order, reducing))

    @handles(GetRiskState)
    def _state(self, message: GetRiskState) -> RiskState:
        account = self._account()
        return RiskState(
            open_orders=account.open_orders,
            reserved_margin=self._reserved,
            position_margin=self._position_margin,
            realized_pnl=self._realized,
            charges=self._charges,
            available=account.available(self._limits.capital),
        )
