"""Validator: pre-trade risk checks against running totals."""
from __future__ import annotations

import logging
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable

import pykka

from actors.base import OMSActor, dispatch, fail, handles, tell_quietly
from actors.messages import (
    Checked,
    CheckModification,
    CheckOrder,
    DailyLossLimitHit,
    GetRiskState,
    MarkPrice,
    OrderClosed,
    OrderWorking,
    PositionChanged,
    RecordDayBaseline,
    RestoreRisk,
)
from domain.enums import Exchange, Product, Side
from domain.errors import OrderSubmissionFailed
from domain.exits import exit_of_metadata
from domain.instruments import InstrumentBook
from domain.market_hours import MarketCalendar, ist_date
from domain.order import Order
from domain.order_request import OrderRequest
from domain.position import Position
from domain.risk import (
    Account,
    CheckResult,
    DayPnl,
    Exposure,
    Flow,
    RiskLimits,
    ValidationResult,
    daily_loss_reached,
    duplicate_key,
    reduces_position_as_checked,
    validate_order,
)

log = logging.getLogger("oms.validator")
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
    price: Decimal = ZERO  # what the order is valued at, for the gross exposure
    group: int | None = None  # an OMS exit leg: the entry it protects

    @property
    def blocked(self) -> Decimal:
        return self.margin * self.remaining / self.quantity

    @property
    def exposure(self) -> Decimal:
        # An order that only shrinks a position (no margin) adds no exposure.
        return ZERO if self.margin == 0 else self.price * self.remaining


@dataclass(frozen=True, slots=True)
class RiskState:
    open_orders: int
    reserved_margin: Decimal
    position_margin: Decimal
    realized_pnl: Decimal
    charges: Decimal
    available: Decimal
    gross_exposure: Decimal = ZERO
    day: DayPnl = DayPnl()
    orders_today: int = 0


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
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        calendar: MarketCalendar | None = None,
        journal: pykka.ActorRef | None = None,
    ) -> None:
        super().__init__()
        self.supervisor = supervisor
        self._journal = journal  # keeps each day's starting totals, so a restart keeps the day's P&L
        self._limits = limits
        self._reload = reload
        self._clock = clock
        self._calendar = calendar or MarketCalendar()
        # The broker's instrument master as it stands (a new day's is swapped in whole);
        # None: the broker has none (paper), and no instrument check runs.
        self._instruments = instruments
        self._reset()
        # The order flow and the day: kept across an in-place restart, because they are
        # not derived from the orders and positions a restart reloads.
        # Times of the orders accepted in the last second and in the last minute, overall
        # (key None) and per strategy: two windows, so each count is a len(), never a scan.
        self._windows: dict[int | None, tuple[deque[datetime], deque[datetime]]] = {}
        self._last_same: OrderedDict[tuple[Any, ...], datetime] = OrderedDict()
        self._circuits: dict[tuple[Exchange, str], tuple[Decimal, Decimal]] = {}
        self._day: date | None = None
        self._day_base = (ZERO, ZERO, ZERO)  # realized, unrealized, charges when the day began
        self._orders_today = 0
        self._loss_reported = False

    def _reset(self) -> None:
        self._reservations: dict[int, Reservation] = {}
        self._working: dict[PositionKey, _Working] = {}
        self._positions: dict[PositionKey, Position] = {}
        self._prices: dict[tuple[Exchange, str], Decimal] = {}
        self._reserved = ZERO
        self._position_margin = ZERO
        self._realized = ZERO
        self._charges = ZERO
        self._unrealized = ZERO
        self._position_gross = ZERO
        self._working_gross = ZERO
        self._valued: dict[PositionKey, tuple[Decimal, Decimal]] = {}  # key -> (gross, unrealized)

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
        position = self._positions.get(key)
        return Exposure(position.quantity if position else 0, working.buy, working.sell)

    # --- the day and the order flow ---------------------------------------------------

    def _roll_day(self, now: datetime) -> None:
        """A new trading day (Asia/Kolkata) starts the day's P&L and trade count afresh."""
        today = ist_date(now)
        if today != self._day:
            self._day = today
            self._day_base = (self._realized, self._unrealized, self._charges)
            if self._journal is not None:
                # The first run of the day keeps its totals; a later start reads them back,
                # so a loss made before a restart still counts toward the limit.
                try:
                    self._day_base = self._journal.ask(RecordDayBaseline(today, *self._day_base, now), timeout=5.0)
                except Exception as error:
                    log.error("the day's starting totals could not be kept or read (%r): the day's P&L counts from now", error)
            self._orders_today = 0
            self._loss_reported = False

    def _day_pnl(self) -> DayPnl:
        realized, unrealized, charges = self._day_base
        return DayPnl(self._realized - realized, self._unrealized - unrealized, self._charges - charges)

    def _prune(self, now: datetime) -> None:
        second_ago, minute_ago = now - timedelta(seconds=1), now - timedelta(minutes=1)
        for key, (second, minute) in list(self._windows.items()):
            while second and second[0] <= second_ago:
                second.popleft()
            while minute and minute[0] <= minute_ago:
                minute.popleft()
            if not minute:
                del self._windows[key]
        window = self._limits.duplicate_window_seconds
        oldest = now - timedelta(microseconds=int((window or 0) * 1_000_000))  # Decimal seconds, exactly
        while self._last_same and next(iter(self._last_same.values())) <= oldest:
            self._last_same.popitem(last=False)

    def _flow(self, request: OrderRequest, now: datetime, new_order: bool) -> Flow:
        """The running figures for the checks; a modification is no new order, so the
        rate, the duplicate window and the day's count do not apply to it."""
        self._roll_day(now)
        self._prune(now)
        empty: tuple[deque[datetime], deque[datetime]] = (deque(), deque())
        overall = self._windows.get(None, empty) if new_order else empty
        own = self._windows.get(request.strategy_id, empty) if new_order else empty
        return Flow(
            now=now,
            orders_last_second=len(overall[0]),
            orders_last_minute=len(overall[1]),
            strategy_orders_last_second=len(own[0]),
            strategy_orders_last_minute=len(own[1]),
            duplicate_at=self._last_same.get(duplicate_key(request)) if new_order else None,
            gross_exposure=self._position_gross + self._working_gross,
            day=self._day_pnl(),
            orders_today=self._orders_today if new_order else 0,
            circuit=self._circuits.get((request.exchange, request.symbol)),
            calendar=self._calendar,
        )

    def _accepted_order(self, request: OrderRequest, now: datetime) -> None:
        for key in (None, request.strategy_id):
            second, minute = self._windows.setdefault(key, (deque(), deque()))
            second.append(now)
            minute.append(now)
        key = duplicate_key(request)
        self._last_same.pop(key, None)
        self._last_same[key] = now
        self._orders_today += 1

    def _watch_daily_loss(self) -> None:
        """Once a day, when the day's net loss reaches the limit, ask the supervisor to
        move trading to the configured state (an audited change there)."""
        if self._loss_reported or self._day is None or not daily_loss_reached(self._day_pnl(), self._limits):
            return
        limit = self._limits.daily_loss_limit
        assert limit is not None
        day = self._day_pnl()
        self._loss_reported = True
        reason = f"daily loss limit: {day.words()} reached the limit of -{limit:.2f}"
        if self.supervisor is not None:
            tell_quietly(self.supervisor, DailyLossLimitHit(day, limit, self._limits.daily_loss_action, reason))

    # --- checks (continued) ---------------------------------------------------------

    @handles(CheckOrder)
    def _check(self, message: CheckOrder) -> ValidationResult:
        request = message.request
        key = (request.exchange, request.symbol, request.product)
        group = exit_of_metadata(request.metadata)
        now = self._clock()
        result = validate_order(
            request,
            self._prices.get((request.exchange, request.symbol)),
            self._exposure(key),
            self._account(),
            self._limits,
            self._book(),
            self._flow(request, now, new_order=True),
        )
        if message.reduce_only is not None and not result.reduces_position:
            refused = CheckResult(
                "trading_state", False,
                f"trading is REDUCE_ONLY ({message.reduce_only}): only orders that shrink a position are accepted",
            )
            result = ValidationResult(False, (refused, *result.checks), result.entry_price, result.required_margin, False)
        if result.passed:
            self._accepted_order(request, now)
            self._reserve(
                message.order_id,
                Reservation(key, request.side, request.quantity, request.quantity, result.required_margin,
                            result.entry_price or ZERO, group),
            )
        self._watch_daily_loss()
        if message.reply_to is not None and not tell_quietly(
            message.reply_to, Checked(message.order_id, request, result, message.reply),
        ):
            # The supervisor stopped while the order was being checked: nothing will send
            # it, and its caller hears so now rather than at its timeout.
            self._release(message.order_id)
            if message.reply is not None:
                fail(message.reply, OrderSubmissionFailed(f"order {message.order_id} not sent: the OMS stopped first"))
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
            self._flow(request, self._clock(), new_order=False),
        )
        if result.passed:
            remaining = request.quantity - message.filled_quantity
            self._reserve(
                message.order_id,
                Reservation(key, request.side, request.quantity, remaining, result.required_margin,
                            result.entry_price or ZERO, group),
            )
        elif own is not None:
            self._reserve(message.order_id, own)
        return result

    # --- running state ----------------------------------------------------------

    def _reserve(self, order_id: int, reservation: Reservation) -> None:
        self._release(order_id)
        self._reservations[order_id] = reservation
        self._reserved += reservation.blocked
        self._working_gross += reservation.exposure
        if reservation.group is not None:
            # The OMS's own exit legs follow the position (the Protector shrinks them as
            # it shrinks, whoever shrinks it), so they are not working quantity that makes
            # an order look like it opens one: a strategy may still close its position
            # itself, and a pair's second leg closes the same quantity as the first.
            return
        working = self._working.setdefault(reservation.key, _Working())
        if reservation.side is Side.BUY:
            working.buy += reservation.remaining
        else:
            working.sell += reservation.remaining

    def _release(self, order_id: int) -> Reservation | None:
        reservation = self._reservations.pop(order_id, None)
        if reservation is None:
            return None
        self._reserved -= reservation.blocked
        self._working_gross -= reservation.exposure
        if reservation.group is not None:
            return reservation  # never counted as working quantity (see _reserve)
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
    def _position_changed(self, message: PositionChanged, restoring: bool = False) -> None:
        if not restoring:
            # Before the change: a fill that comes first on a new day counts to that day.
            self._roll_day(self._clock())
        before, after = message.before, message.after
        self._position_margin += self._margin(after) - self._margin(before)
        self._realized += after.realized_pnl - before.realized_pnl
        self._charges += after.charges - before.charges
        self._positions[after.key] = after
        self._revalue(after.key)
        if not restoring:
            self._watch_daily_loss()

    def _revalue(self, key: PositionKey) -> None:
        """The position's gross value and unrealized P&L at the last price known here,
        kept as running totals (net P&L per position: realized + this - charges)."""
        position = self._positions.get(key)
        gross = unrealized = ZERO
        if position is not None and position.quantity:
            price = self._prices.get((position.exchange, position.symbol)) or position.last_price or position.average_price
            gross = abs(position.quantity) * price
            unrealized = (price - position.average_price) * position.quantity
        old_gross, old_unrealized = self._valued.pop(key, (ZERO, ZERO))
        if gross or unrealized:
            self._valued[key] = (gross, unrealized)
        self._position_gross += gross - old_gross
        self._unrealized += unrealized - old_unrealized

    @handles(MarkPrice)
    def _mark(self, message: MarkPrice) -> None:
        self._roll_day(self._clock())
        self._prices[(message.exchange, message.symbol)] = message.price
        if message.lower_circuit is not None and message.upper_circuit is not None:
            self._circuits[(message.exchange, message.symbol)] = (message.lower_circuit, message.upper_circuit)
        for product in Product:
            if (message.exchange, message.symbol, product) in self._positions:
                self._revalue((message.exchange, message.symbol, product))
        self._watch_daily_loss()

    @handles(RestoreRisk)
    def _restore(self, message: RestoreRisk) -> None:
        for position in message.positions:
            self._position_changed(
                PositionChanged(Position(position.exchange, position.symbol, position.product), position, None), restoring=True,
            )
            if position.last_price is not None:
                self._prices.setdefault((position.exchange, position.symbol), position.last_price)
        for order in message.orders:
            self._restore_order(order)
        if self._day is None:
            # The day's P&L counts from the totals kept when the day began (by an earlier
            # run, if the OMS restarted during the day).
            self._roll_day(self._clock())

    def _reservation_for(self, order: Order, reducing: bool) -> Reservation:
        price = order.price or order.trigger_price or self._prices.get((order.exchange, order.symbol)) or ZERO
        margin = ZERO if reducing else price * order.quantity / self._limits.leverage_for(order.product)
        return Reservation(
            order.position_key, order.side, order.quantity, order.remaining_quantity, margin, price,
            exit_of_metadata(order.metadata),
        )

    def _restore_order(self, order: Order) -> None:
        reducing = reduces_position_as_checked(order.validation_result)
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
            gross_exposure=self._position_gross + self._working_gross,
            day=self._day_pnl(),
            orders_today=self._orders_today,
        )
