"""Pre-trade risk checks: pure functions of the request, the account and the limits.

Every check runs on every order so that the stored ``validation_result`` shows each
one's outcome and numbers; the first failure in CHECK_ORDER is the reason given.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import Decimal
from typing import Any, Mapping

from domain.enums import Exchange, OrderType, Product, Side, Variety
from domain.frozen import FrozenDocument, compact, document_of, use_preset
from domain.instruments import InstrumentBook, is_derivative
from domain.market_hours import MarketCalendar
from domain.order_request import MAX_METADATA_BYTES, OrderRequest, metadata_size
from domain.square_off import past_square_off
from domain.ticks import is_on_tick

ZERO = Decimal(0)
HUNDRED = Decimal(100)
PositionKey = tuple[Exchange, str, Product]


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def _percent(value: Decimal) -> str:
    return f"{value.normalize():f}"


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """The configurable limits. ``None`` switches a limit off."""

    capital: Decimal
    risk_per_trade_percent: Decimal = Decimal(2)
    require_stop_loss: bool = True
    max_order_value: Decimal | None = None
    max_position_value: Decimal | None = None
    max_open_orders: int | None = 100
    max_order_quantity: int | None = None
    max_metadata_bytes: int | None = MAX_METADATA_BYTES
    leverage: Mapping[Product, Decimal] = field(
        default_factory=lambda: {Product.CNC: Decimal(1), Product.MIS: Decimal(5), Product.NRML: Decimal(1)}
    )
    # Stop-loss and take-profit at most this % away from the entry.
    max_stop_distance_percent: Decimal | None = None
    # F&O freeze quantities by underlying (the instrument master's ``name``, e.g. NIFTY)
    # or by trading symbol: the exchange refuses a larger order.
    freeze_quantities: Mapping[str, int] = field(default_factory=dict)
    # Sum of |quantity| x price over every position and working order.
    max_gross_exposure: Decimal | None = None
    max_orders_per_second: int | None = None
    max_orders_per_minute: int | None = None
    max_strategy_orders_per_second: int | None = None
    max_strategy_orders_per_minute: int | None = None
    # Seconds within which the same order from the same strategy is a duplicate.
    duplicate_window_seconds: Decimal | None = None
    # A limit price or trigger at most this % from the last price (fat finger).
    price_collar_percent: Decimal | None = None
    enforce_market_hours: bool = False
    # With the clock rules on: the time of day (IST) after which MIS orders that do not
    # shrink a position are refused on NSE/BSE/NFO/BFO (the OMS squares off then).
    mis_square_off: time | None = None
    # Net P&L of the day (realized + unrealized - charges) may fall to minus this.
    daily_loss_limit: Decimal | None = None
    daily_loss_action: str = "REDUCE_ONLY"  # or HALTED: the trading state the limit moves to
    max_trades_per_day: int | None = None

    def leverage_for(self, product: Product) -> Decimal:
        return self.leverage.get(product, Decimal(1))


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    passed: bool
    reason: str
    numbers: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "reason": self.reason, **dict(self.numbers)}


@dataclass(frozen=True, slots=True)
class Exposure:
    """What the account already holds and has working in one instrument."""

    position_quantity: int = 0  # signed
    working_buy_quantity: int = 0  # remaining quantity of open BUY orders
    working_sell_quantity: int = 0


@dataclass(frozen=True, slots=True)
class Account:
    """The figures the balance check needs, kept as running totals by the validator."""

    realized_pnl: Decimal = ZERO
    charges: Decimal = ZERO
    position_margin: Decimal = ZERO
    reserved_margin: Decimal = ZERO
    open_orders: int = 0

    def available(self, capital: Decimal) -> Decimal:
        return capital + self.realized_pnl - self.charges - self.position_margin - self.reserved_margin


@dataclass(frozen=True, slots=True)
class ValidationResult:
    passed: bool
    checks: tuple[CheckResult, ...]
    entry_price: Decimal | None
    required_margin: Decimal
    reduces_position: bool

    @property
    def failed(self) -> CheckResult | None:
        return next((c for c in self.checks if not c.passed), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "entry_price": None if self.entry_price is None else str(self.entry_price),
            "required_margin": str(self.required_margin),
            "reduces_position": self.reduces_position,
            "checks": [c.as_dict() for c in self.checks],
        }

    def as_document(self, **extra: Any) -> Mapping[str, Any]:
        """``as_dict`` (and ``extra``) as the order keeps it: its JSON text. The result
        is plain JSON by construction (text, truth values, lists), so it is written
        once, without the walk that proves an arbitrary mapping reads back exactly."""
        value = {**self.as_dict(), **extra}
        try:
            return document_of(value)
        except (TypeError, ValueError):  # a check that put a non-text number in: kept as objects
            return compact(value)


@dataclass(frozen=True, slots=True)
class DayPnl:
    """The account's P&L since the trading day (Asia/Kolkata) began: realized,
    unrealized (the change in open positions' value) and the charges paid."""

    realized: Decimal = ZERO
    unrealized: Decimal = ZERO
    charges: Decimal = ZERO

    @property
    def net(self) -> Decimal:
        return self.realized + self.unrealized - self.charges

    def words(self) -> str:
        return (f"net P&L today {_money(self.net)} (realized {_money(self.realized)}, "
                f"unrealized {_money(self.unrealized)}, charges {_money(self.charges)})")

    def numbers(self) -> dict[str, str]:
        return {"day_net_pnl": _money(self.net), "day_realized_pnl": _money(self.realized),
                "day_unrealized_pnl": _money(self.unrealized), "day_charges": _money(self.charges)}


@dataclass(frozen=True, slots=True)
class Flow:
    """The running figures the checks on the order flow need, kept by the validator
    and passed in (domain code never reads a clock): the time, the orders accepted in
    the last second and minute (overall and for the order's strategy), when the same
    order was last accepted, the gross exposure held and working, the day's P&L, the
    orders accepted today, and the instrument's circuit limits when known."""

    now: datetime | None = None
    orders_last_second: int = 0
    orders_last_minute: int = 0
    strategy_orders_last_second: int = 0
    strategy_orders_last_minute: int = 0
    duplicate_at: datetime | None = None
    gross_exposure: Decimal = ZERO
    day: DayPnl = field(default_factory=DayPnl)
    orders_today: int = 0
    circuit: tuple[Decimal, Decimal] | None = None  # (lower, upper)
    calendar: MarketCalendar | None = None


def duplicate_key(request: OrderRequest) -> tuple[Any, ...]:
    """What makes two orders the same order: strategy, instrument, side, quantity,
    type and prices."""
    return (request.strategy_id, request.exchange, request.symbol, request.product, request.side,
            request.quantity, request.order_type, request.price, request.trigger_price)


def daily_loss_reached(day: DayPnl, limits: RiskLimits) -> bool:
    """The day's net loss is at or past the limit (a loss equal to the limit stops)."""
    return limits.daily_loss_limit is not None and day.net <= -limits.daily_loss_limit


def _pct_of(distance: Decimal, base: Decimal) -> Decimal:
    return (distance * HUNDRED / base).quantize(Decimal("0.01"))


def check_protective_prices(request: OrderRequest, entry: Decimal, limits: RiskLimits) -> CheckResult:
    """Stop-loss below and take-profit above the entry of a BUY (the other way round for
    a SELL), each within ``max_stop_distance_percent`` of it. The request checks this
    itself for a priced order; a MARKET order's entry is the last price, known here."""
    limit = limits.max_stop_distance_percent
    numbers = {"entry_price": str(entry), "limit_percent": "none" if limit is None else _percent(limit)}
    buy = request.side is Side.BUY
    shown: list[str] = []
    for name, value, below in (("stop-loss", request.stop_loss, buy), ("take-profit", request.take_profit, not buy)):
        if value is None:
            continue
        key = name.replace("-", "_")
        distance = abs(value - entry)
        pct = _pct_of(distance, entry)
        numbers[key] = str(value)
        numbers[f"{key}_distance_percent"] = _percent(pct)
        if (below and value >= entry) or (not below and value <= entry):
            where = "below" if below else "above"
            return CheckResult(
                "protective_prices", False,
                f"{name} {value} must be {where} the entry price {entry} for a {request.side.value}", numbers,
            )
        # Compared exactly, shown to the hundredth: 5.004% is beyond a 5% limit.
        if limit is not None and distance * HUNDRED > limit * entry:
            return CheckResult(
                "protective_prices", False,
                f"{name} {value} is {_percent(pct)}% from the entry price {entry}, more than the "
                f"{_percent(limit)}% allowed (max_stop_distance_percent)", numbers,
            )
        shown.append(f"{name} {value} {_percent(pct)}% away")
    if not shown:
        return CheckResult("protective_prices", True, "no stop-loss or take-profit given", numbers)
    within = "" if limit is None else f" (within {_percent(limit)}%)"
    return CheckResult("protective_prices", True, f"{', '.join(shown)} from the entry {entry}{within}", numbers)


def check_price_collar(request: OrderRequest, last_price: Decimal | None, limits: RiskLimits) -> CheckResult:
    """A limit price or trigger far from the last price is most likely a typing error."""
    limit = limits.price_collar_percent
    numbers = {"limit_percent": "none" if limit is None else _percent(limit)}
    if limit is None:  # a rule that is off says so, without figures (every order keeps this)
        return CheckResult("price_collar", True, "no price collar configured")
    prices = [(n, v) for n, v in (("limit price", request.price), ("trigger price", request.trigger_price)) if v is not None]
    if not prices:
        return CheckResult("price_collar", True, f"a {request.order_type.value} order has no price to collar", numbers)
    if last_price is None:
        return CheckResult("price_collar", True, "no last price yet: the collar cannot be applied", numbers)
    numbers["last_price"] = str(last_price)
    for name, value in prices:
        distance = abs(value - last_price)
        pct = _pct_of(distance, last_price)
        numbers[name.replace(" ", "_") + "_distance_percent"] = _percent(pct)
        if distance * HUNDRED > limit * last_price:  # exactly; shown to the hundredth
            return CheckResult(
                "price_collar", False,
                f"{name} {value} is {_percent(pct)}% from the last price {last_price}, beyond the "
                f"{_percent(limit)}% price collar (a typing error?)", numbers,
            )
    return CheckResult("price_collar", True, f"within {_percent(limit)}% of the last price {last_price}", numbers)


def check_circuit_limits(request: OrderRequest, circuit: tuple[Decimal, Decimal] | None) -> CheckResult:
    """The exchange refuses a price outside the day's circuit limits, when they are known."""
    key = f"{request.exchange.value}:{request.symbol}"
    if circuit is None:
        return CheckResult("circuit_limits", True, f"circuit limits of {key} not known")
    lower, upper = circuit
    numbers = {"lower_circuit": str(lower), "upper_circuit": str(upper)}
    for name, value in (("limit price", request.price), ("trigger price", request.trigger_price)):
        if value is None:
            continue
        if value > upper or value < lower:
            where = f"above the upper circuit limit {upper}" if value > upper else f"below the lower circuit limit {lower}"
            return CheckResult("circuit_limits", False, f"{name} {value} is {where} of {key} today", numbers)
    return CheckResult("circuit_limits", True, f"within {key}'s circuit limits {lower}-{upper}", numbers)


def check_market_hours(request: OrderRequest, flow: Flow, limits: RiskLimits, reduces: bool = False) -> CheckResult:
    if not limits.enforce_market_hours:
        return CheckResult("market_hours", True, "market hours not enforced")
    if flow.now is None or flow.calendar is None:
        return CheckResult("market_hours", False, "market hours are enforced but no clock was given")
    is_open, why = flow.calendar.is_open(request.exchange.value, flow.now)
    numbers = {"at": flow.now.isoformat(timespec="seconds"), "variety": request.variety.value}
    if request.variety is Variety.AMO:
        # Kite takes an after-market order only outside the session and refuses it in it.
        if is_open:
            return CheckResult(
                "market_hours", False,
                f"variety amo is for after-market orders and Kite refuses it during market hours: {why}; "
                "place it with variety \"regular\"", numbers,
            )
        return CheckResult("market_hours", True, f"after-market order: {why}", numbers)
    if not is_open:
        return CheckResult(
            "market_hours", False,
            f"outside market hours: {why}; to place it for the next session use variety \"amo\"", numbers,
        )
    at = limits.mis_square_off
    if at is not None and request.product is Product.MIS and not reduces and past_square_off(request.exchange, flow.now, at):
        return CheckResult(
            "market_hours", False,
            f"MIS on {request.exchange.value} is squared off at {at:%H:%M} IST: no new MIS position today "
            "(use CNC or NRML to hold past it)", numbers,
        )
    return CheckResult("market_hours", True, why, numbers)


def check_duplicate(request: OrderRequest, flow: Flow, reduces: bool, limits: RiskLimits) -> CheckResult:
    """The same order from the same strategy again within the window: a strategy firing
    twice. An order that only shrinks a position is let through (an exit sent again,
    say after a partial fill, must never be blocked)."""
    window = limits.duplicate_window_seconds
    numbers = {"window_seconds": "none" if window is None else _percent(window)}
    if window is None:
        return CheckResult("duplicate", True, "no duplicate window configured")
    if reduces:
        return CheckResult("duplicate", True, "reduces a position: not checked for duplicates", numbers)
    if flow.duplicate_at is None or flow.now is None:
        return CheckResult("duplicate", True, f"no same order within {_percent(window)}s", numbers)
    age = Decimal(str((flow.now - flow.duplicate_at).total_seconds()))
    numbers["seconds_since_same"] = _percent(age)
    if age < window:
        price = "" if request.price is None else f" at {request.price}"
        return CheckResult(
            "duplicate", False,
            f"duplicate order: the same {request.side.value} of {request.quantity} {request.exchange.value}:"
            f"{request.symbol}{price} from strategy {request.strategy_id} was accepted {_percent(age)}s ago, "
            f"within the {_percent(window)}s duplicate window", numbers,
        )
    return CheckResult("duplicate", True, f"the same order was last accepted {_percent(age)}s ago", numbers)


def check_order_rate(request: OrderRequest, flow: Flow, reduces: bool, limits: RiskLimits) -> CheckResult:
    """Orders accepted in the last second and minute, overall and for this strategy.
    An order that only shrinks a position is never held back by the rate."""
    rules = (
        ("orders a second", flow.orders_last_second, limits.max_orders_per_second, "max_orders_per_second"),
        ("orders a minute", flow.orders_last_minute, limits.max_orders_per_minute, "max_orders_per_minute"),
        (f"orders a second from strategy {request.strategy_id}", flow.strategy_orders_last_second,
         limits.max_strategy_orders_per_second, "max_strategy_orders_per_second"),
        (f"orders a minute from strategy {request.strategy_id}", flow.strategy_orders_last_minute,
         limits.max_strategy_orders_per_minute, "max_strategy_orders_per_minute"),
    )
    if all(limit is None for _, _, limit, _ in rules):
        return CheckResult("order_rate", True, "no order rate limit configured")
    numbers = {setting: f"{count + 1}/{'none' if limit is None else limit}" for _, count, limit, setting in rules}
    if reduces:
        return CheckResult("order_rate", True, "reduces a position: not held to the order rate", numbers)
    for words, count, limit, setting in rules:
        if limit is not None and count + 1 > limit:
            return CheckResult(
                "order_rate", False, f"order rate: this would be {count + 1} {words}, above the limit of {limit} ({setting})", numbers,
            )
    return CheckResult("order_rate", True, "within the order rate limits", numbers)


def check_max_trades_per_day(flow: Flow, reduces: bool, limits: RiskLimits) -> CheckResult:
    limit = limits.max_trades_per_day
    after = flow.orders_today + 1
    numbers = {"orders_today": str(after), "limit": "none" if limit is None else str(limit)}
    if limit is None:
        return CheckResult("max_trades_per_day", True, "no maximum of trades a day configured")
    if after > limit:
        if reduces:
            return CheckResult("max_trades_per_day", True, f"reduces a position: allowed past the {limit} trades of the day", numbers)
        return CheckResult(
            "max_trades_per_day", False, f"this would be trade {after} today, above the maximum of {limit} a day", numbers,
        )
    return CheckResult("max_trades_per_day", True, f"trade {after} of {limit} today", numbers)


def check_daily_loss(flow: Flow, reduces: bool, limits: RiskLimits) -> CheckResult:
    limit = limits.daily_loss_limit
    numbers = {**flow.day.numbers(), "limit": "none" if limit is None else _money(limit)}
    if limit is None:
        return CheckResult("daily_loss", True, "no daily loss limit configured")
    if daily_loss_reached(flow.day, limits):
        if reduces:
            return CheckResult("daily_loss", True, f"daily loss limit reached, but this reduces a position: {flow.day.words()}", numbers)
        return CheckResult(
            "daily_loss", False,
            f"daily loss limit reached: {flow.day.words()}, at or past the limit of -{_money(limit)}; "
            "only orders that reduce a position are accepted today", numbers,
        )
    return CheckResult("daily_loss", True, f"{flow.day.words()}, within the daily loss limit of -{_money(limit)}", numbers)


def check_gross_exposure(entry: Decimal, request: OrderRequest, flow: Flow, reduces: bool, limits: RiskLimits) -> CheckResult:
    limit = limits.max_gross_exposure
    added = ZERO if reduces else entry * request.quantity
    after = flow.gross_exposure + added
    numbers = {"gross_exposure": _money(after), "limit": "none" if limit is None else _money(limit)}
    if limit is None:
        return CheckResult("max_gross_exposure", True, "no maximum gross exposure configured")
    if after > limit:
        return CheckResult(
            "max_gross_exposure", False,
            f"gross exposure would be {_money(after)} (positions and working orders {_money(flow.gross_exposure)} "
            f"plus this order's {_money(added)}), above the maximum {_money(limit)}", numbers,
        )
    return CheckResult("max_gross_exposure", True, f"gross exposure would be {_money(after)} of {_money(limit)}", numbers)


def reference_price(request: OrderRequest, last_price: Decimal | None) -> Decimal | None:
    """The price an order is valued at: its own limit or trigger, else the last price."""
    if request.price is not None:
        return request.price
    if request.order_type is OrderType.SL_M and request.trigger_price is not None:
        return request.trigger_price
    return last_price


def reduces_position(side: Side, quantity: int, exposure: Exposure) -> bool:
    """Whether the order only shrinks the position, counting the working orders that
    already shrink it (two sells of 100 against a long of 100 do not both reduce)."""
    held = exposure.position_quantity
    if held == 0 or (held > 0) == (side is Side.BUY):
        return False
    already_reducing = exposure.working_sell_quantity if held > 0 else exposure.working_buy_quantity
    return quantity <= abs(held) - already_reducing


def check_reference_price(request: OrderRequest, entry: Decimal | None) -> CheckResult:
    key = f"{request.exchange.value}:{request.symbol}"
    if entry is None:
        return CheckResult(
            "reference_price", False, f"no last price for {key} to value a {request.order_type.value} order"
        )
    return CheckResult("reference_price", True, f"valued at {_money(entry)}", {"entry_price": str(entry)})


def check_stop_loss_required(request: OrderRequest, reduces: bool, limits: RiskLimits) -> CheckResult:
    if request.stop_loss is not None:
        return CheckResult("stop_loss_required", True, f"stop-loss at {request.stop_loss}")
    if reduces:
        return CheckResult("stop_loss_required", True, "reduces a position: no stop-loss needed")
    if not limits.require_stop_loss:
        return CheckResult("stop_loss_required", True, "stop-loss not required by configuration")
    return CheckResult(
        "stop_loss_required", False, "stop-loss required for orders that open or add to a position"
    )


def check_risk_per_trade(
    request: OrderRequest, entry: Decimal, reduces: bool, limits: RiskLimits
) -> CheckResult:
    allowed = limits.capital * limits.risk_per_trade_percent / HUNDRED
    pct = _percent(limits.risk_per_trade_percent)
    if request.stop_loss is None:
        why = "reduces a position" if reduces else "no stop-loss given"
        return CheckResult("risk_per_trade", True, f"{why}: risk per trade not measured", {"limit": _money(allowed)})
    buy = request.side is Side.BUY
    if (buy and request.stop_loss >= entry) or (not buy and request.stop_loss <= entry):
        where = "below" if buy else "above"
        return CheckResult(
            "risk_per_trade", False,
            f"stop-loss {request.stop_loss} is not {where} the entry price {entry} for a {request.side.value}",
            {"entry_price": str(entry), "stop_loss": str(request.stop_loss), "limit": _money(allowed)},
        )
    risk = (entry - request.stop_loss) * request.quantity * request.side.sign
    numbers = {"risk": _money(risk), "limit": _money(allowed), "entry_price": str(entry), "stop_loss": str(request.stop_loss)}
    if risk > allowed:
        return CheckResult(
            "risk_per_trade", False, f"risk per trade {_money(risk)} exceeds {pct}% of capital ({_money(allowed)})", numbers
        )
    return CheckResult("risk_per_trade", True, f"risk per trade {_money(risk)} within {pct}% of capital ({_money(allowed)})", numbers)


def check_max_order_value(value: Decimal, limits: RiskLimits) -> CheckResult:
    if limits.max_order_value is None:
        return CheckResult("max_order_value", True, "no maximum order value configured", {"value": _money(value)})
    numbers = {"value": _money(value), "limit": _money(limits.max_order_value)}
    if value > limits.max_order_value:
        return CheckResult(
            "max_order_value", False,
            f"order value {_money(value)} exceeds the maximum order value {_money(limits.max_order_value)}", numbers,
        )
    return CheckResult("max_order_value", True, f"order value {_money(value)} within {_money(limits.max_order_value)}", numbers)


def check_max_position(
    request: OrderRequest, entry: Decimal, exposure: Exposure, reduces: bool, limits: RiskLimits
) -> CheckResult:
    key = f"{request.exchange.value}:{request.symbol}"
    if reduces:
        return CheckResult("max_position", True, f"reduces the position in {key}")
    working_same_side = exposure.working_buy_quantity if request.side is Side.BUY else exposure.working_sell_quantity
    projected = abs(exposure.position_quantity + request.side.sign * (request.quantity + working_same_side))
    value = entry * projected
    if limits.max_position_value is None:
        return CheckResult("max_position", True, "no maximum position configured", {"position_value": _money(value)})
    numbers = {"position_quantity": str(projected), "position_value": _money(value), "limit": _money(limits.max_position_value)}
    if value > limits.max_position_value:
        return CheckResult(
            "max_position", False,
            f"position in {key} would be {projected} worth {_money(value)}, above the maximum {_money(limits.max_position_value)} per symbol",
            numbers,
        )
    return CheckResult("max_position", True, f"position in {key} would be worth {_money(value)}", numbers)


def check_max_open_orders(open_orders: int, limits: RiskLimits) -> CheckResult:
    after = open_orders + 1
    if limits.max_open_orders is None:
        return CheckResult("max_open_orders", True, "no maximum of open orders configured", {"open_orders": str(after)})
    numbers = {"open_orders": str(after), "limit": str(limits.max_open_orders)}
    if after > limits.max_open_orders:
        return CheckResult(
            "max_open_orders", False, f"open orders would be {after}, above the maximum {limits.max_open_orders}", numbers
        )
    return CheckResult("max_open_orders", True, f"open orders would be {after} of {limits.max_open_orders}", numbers)


def required_margin(request: OrderRequest, entry: Decimal, reduces: bool, limits: RiskLimits) -> Decimal:
    """Cash the order blocks: its value over the product's leverage; nothing to reduce."""
    if reduces:
        return ZERO
    return entry * request.quantity / limits.leverage_for(request.product)


def check_balance(required: Decimal, account: Account, limits: RiskLimits) -> CheckResult:
    available = account.available(limits.capital)
    numbers = {"required": _money(required), "available": _money(available)}
    if required > available:
        return CheckResult(
            "balance", False, f"required margin {_money(required)} exceeds available balance {_money(available)}", numbers
        )
    return CheckResult("balance", True, f"required margin {_money(required)} within available {_money(available)}", numbers)


def check_max_order_quantity(request: OrderRequest, limits: RiskLimits) -> CheckResult:
    limit = limits.max_order_quantity
    numbers = {"quantity": str(request.quantity), "limit": "none" if limit is None else str(limit)}
    if limit is not None and request.quantity > limit:
        return CheckResult(
            "max_order_quantity", False, f"quantity: {request.quantity} exceeds the per-order maximum of {limit}", numbers
        )
    return CheckResult("max_order_quantity", True, f"quantity {request.quantity} within the per-order maximum", numbers)


def check_metadata_size(request: OrderRequest, limits: RiskLimits) -> CheckResult:
    limit = limits.max_metadata_bytes
    size = metadata_size(request.metadata)
    numbers = {"bytes": str(size), "limit": "none" if limit is None else str(limit)}
    if limit is not None and size > limit:
        return CheckResult("metadata_size", False, f"metadata: {size} bytes exceeds the limit of {limit} bytes", numbers)
    return CheckResult("metadata_size", True, f"metadata of {size} bytes within the limit", numbers)


def check_instrument(request: OrderRequest, book: InstrumentBook, limits: RiskLimits | None = None) -> CheckResult:
    """The order against the broker's instrument master: its tick and lot sizes. An
    instrument the master lacks (or a master not loaded) falls back to the built-in
    tick table, except for derivatives, which cannot be sized without their lot."""
    exchange, symbol = request.exchange.value, request.symbol
    key = f"{exchange}:{symbol}"
    derivative = is_derivative(exchange)
    if not book.loaded:
        why = f"the instrument master is not loaded ({book.problem or 'not yet'})"
        if derivative:
            return CheckResult("instrument", False, f"{why}: {key} is a derivative, refused without its lot and tick sizes")
        return CheckResult("instrument", True, f"{why}: the built-in tick table applies to {key}")
    instrument = book.get(exchange, symbol)
    if instrument is None:
        if derivative:
            return CheckResult("instrument", False, f"{key} is not in the instrument master of {book.loaded_on}")
        return CheckResult("instrument", True, f"{key} is not in the instrument master: the built-in tick table applies")
    numbers = {"tick_size": str(instrument.tick_size), "lot_size": str(instrument.lot_size)}
    for name, value in (("price", request.price), ("trigger_price", request.trigger_price)):
        if value is not None and instrument.tick_size > 0 and not is_on_tick(value, instrument.tick_size):
            return CheckResult(
                "instrument", False, f"{name}: {value} is not a multiple of {key}'s tick size {instrument.tick_size}", numbers,
            )
    if instrument.lot_size > 1 and request.quantity % instrument.lot_size:
        return CheckResult(
            "instrument", False, f"quantity: {request.quantity} is not a multiple of {key}'s lot size {instrument.lot_size}", numbers,
        )
    freezes = limits.freeze_quantities if limits is not None else {}
    # The exchange's freeze quantity is set per underlying (NIFTY's applies to every
    # NIFTY contract); a symbol's own entry wins.
    freeze = freezes.get(symbol) or (freezes.get(instrument.name) if instrument.name else None)
    if instrument.is_derivative and freeze is not None:
        numbers["freeze_quantity"] = str(freeze)
        if request.quantity > freeze:
            return CheckResult(
                "instrument", False,
                f"quantity: {request.quantity} is above the exchange's freeze quantity {freeze} for {key}: "
                "the exchange refuses larger orders, split it", numbers,
            )
    return CheckResult("instrument", True, f"{key}: tick {instrument.tick_size}, lot {instrument.lot_size}", numbers)


_REDUCES = re.compile(r'"reduces_position":\s*true')


def reduces_position_as_checked(result: Mapping[str, Any] | None) -> bool:
    """Whether the validation result says the order only shrank a position. A result
    kept as text (a FrozenDocument, as every restart reads them) is not parsed for it:
    ``reduces_position`` is a top-level truth value in ``ValidationResult.as_dict`` and
    nowhere else (the checks' figures are text), and a key inside a string is escaped."""
    if result is None:
        return False
    if isinstance(result, FrozenDocument):
        return _REDUCES.search(result.text) is not None
    return bool(result.get("reduces_position"))


def validate_order(
    request: OrderRequest,
    last_price: Decimal | None,
    exposure: Exposure,
    account: Account,
    limits: RiskLimits,
    instruments: InstrumentBook | None = None,
    flow: Flow | None = None,
) -> ValidationResult:
    """Run every pre-trade check on ``request`` and say whether it may go to the broker.
    ``instruments``: the broker's instrument master, when the broker has one (Kite).
    ``flow``: the running figures of the order flow (time, rates, exposure, the day's
    P&L); without it those checks see an idle account."""
    flow = flow or Flow()
    entry = reference_price(request, last_price)
    reduces = reduces_position(request.side, request.quantity, exposure)
    checks = [check_max_order_quantity(request, limits)]
    if instruments is not None:
        checks.append(check_instrument(request, instruments, limits))
    checks += [
        check_metadata_size(request, limits),
        check_market_hours(request, flow, limits, reduces),
        check_duplicate(request, flow, reduces, limits),
        check_order_rate(request, flow, reduces, limits),
        check_max_trades_per_day(flow, reduces, limits),
        check_daily_loss(flow, reduces, limits),
        check_reference_price(request, entry),
        check_price_collar(request, last_price, limits),
        check_circuit_limits(request, flow.circuit),
        check_stop_loss_required(request, reduces, limits),
    ]
    margin = ZERO
    if entry is not None:
        margin = required_margin(request, entry, reduces, limits)
        checks += [
            check_protective_prices(request, entry, limits),
            check_risk_per_trade(request, entry, reduces, limits),
            check_max_order_value(entry * request.quantity, limits),
            check_max_position(request, entry, exposure, reduces, limits),
            check_gross_exposure(entry, request, flow, reduces, limits),
        ]
    checks.append(check_max_open_orders(account.open_orders, limits))
    if entry is not None:
        checks.append(check_balance(margin, account, limits))
    passed = all(c.passed for c in checks)
    return ValidationResult(passed, tuple(checks), entry, margin, reduces)


def _typical_result() -> str:
    """A validation result as most are (every check passed, the usual reasons): the
    preset against which each order's result is kept deflated (``domain.frozen``)."""
    request = OrderRequest(symbol="INFY", side=Side.BUY, quantity=10, order_type=OrderType.LIMIT, price=Decimal("1500.00"),
                           stop_loss=Decimal("1485.00"))
    result = validate_order(request, Decimal("1500.00"), Exposure(), Account(), RiskLimits(capital=Decimal("1000000")))
    compact = json.dumps(result.as_dict(), separators=(",", ":"))
    # PostgreSQL gives jsonb back in its own form (keys by length, then by bytes; ", "
    # and ": " between): the preset holds that form as well.
    return json.dumps(_jsonb_order(result.as_dict())) + compact


def _jsonb_order(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonb_order(value[key]) for key in sorted(value, key=lambda k: (len(k.encode()), k.encode()))}
    if isinstance(value, list):
        return [_jsonb_order(item) for item in value]
    return value


use_preset(_typical_result())
