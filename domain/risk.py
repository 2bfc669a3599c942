"""Pre-trade risk checks: pure functions of the request, the account and the limits.

Every check runs on every order so that the stored ``validation_result`` shows each
one's outcome and numbers; the first failure in CHECK_ORDER is the reason given.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from domain.enums import Exchange, OrderType, Product, Side
from domain.instruments import InstrumentBook, is_derivative
from domain.order_request import MAX_METADATA_BYTES, OrderRequest, metadata_size
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


def check_instrument(request: OrderRequest, book: InstrumentBook) -> CheckResult:
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
    return CheckResult("instrument", True, f"{key}: tick {instrument.tick_size}, lot {instrument.lot_size}", numbers)


def validate_order(
    request: OrderRequest,
    last_price: Decimal | None,
    exposure: Exposure,
    account: Account,
    limits: RiskLimits,
    instruments: InstrumentBook | None = None,
) -> ValidationResult:
    """Run every pre-trade check on ``request`` and say whether it may go to the broker.
    ``instruments``: the broker's instrument master, when the broker has one (Kite)."""
    entry = reference_price(request, last_price)
    reduces = reduces_position(request.side, request.quantity, exposure)
    checks = [check_max_order_quantity(request, limits)]
    if instruments is not None:
        checks.append(check_instrument(request, instruments))
    checks += [
        check_metadata_size(request, limits),
        check_reference_price(request, entry),
        check_stop_loss_required(request, reduces, limits),
    ]
    margin = ZERO
    if entry is not None:
        margin = required_margin(request, entry, reduces, limits)
        checks += [
            check_risk_per_trade(request, entry, reduces, limits),
            check_max_order_value(entry * request.quantity, limits),
            check_max_position(request, entry, exposure, reduces, limits),
        ]
    checks.append(check_max_open_orders(account.open_orders, limits))
    if entry is not None:
        checks.append(check_balance(margin, account, limits))
    passed = all(c.passed for c in checks)
    return ValidationResult(passed, tuple(checks), entry, margin, reduces)
