"""Pre-trade risk checks: each one on both sides of its boundary with its exact message,
and validate_order running them all. Capital 1,000,000 unless a test says otherwise."""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from domain.enums import Product, Side
from domain.order_request import OrderRequest
from domain.risk import (
    Account,
    Exposure,
    RiskLimits,
    check_balance,
    check_max_open_orders,
    check_max_order_quantity,
    check_max_order_value,
    check_max_position,
    check_metadata_size,
    check_reference_price,
    check_risk_per_trade,
    check_stop_loss_required,
    reduces_position,
    reference_price,
    required_margin,
    validate_order,
)

D = Decimal
LIMITS = RiskLimits(capital=D("1000000"))
FLAT = Exposure()
NO_ACCOUNT = Account()
FLOW_CHECKS = ["market_hours", "duplicate", "order_rate", "max_trades_per_day", "daily_loss"]
CHECK_ORDER = [
    "max_order_quantity", "metadata_size", *FLOW_CHECKS, "reference_price", "price_collar", "circuit_limits",
    "stop_loss_required", "protective_prices", "risk_per_trade", "max_order_value", "max_position", "max_gross_exposure",
    "max_open_orders", "balance",
]


def order(side: str = "BUY", quantity: int = 10, **fields: Any) -> OrderRequest:
    """A LIMIT order for INFY at 100.00 unless ``fields`` say otherwise."""
    defaults: dict[str, Any] = {"order_type": "LIMIT", "price": D("100.00")}
    if fields.get("order_type") in ("MARKET", "SL-M"):
        defaults.pop("price")
    return OrderRequest(symbol="INFY", side=side, quantity=quantity, **{**defaults, **fields})


def by_name(result, name: str):
    return next(c for c in result.checks if c.name == name)


# --- reference price --------------------------------------------------------------------


def test_limit_and_sl_orders_are_valued_at_their_own_price_whatever_the_last_price() -> None:
    limit = order(price=D("100.00"))
    sl = order(order_type="SL", price=D("101.00"), trigger_price=D("100.50"))

    assert reference_price(limit, D("90.00")) == D("100.00")
    assert reference_price(sl, D("90.00")) == D("101.00")


def test_sl_m_order_is_valued_at_its_trigger() -> None:
    assert reference_price(order(order_type="SL-M", trigger_price=D("100.50")), D("90.00")) == D("100.50")


def test_market_order_is_valued_at_the_last_price() -> None:
    assert reference_price(order(order_type="MARKET"), D("99.95")) == D("99.95")
    assert reference_price(order(order_type="MARKET"), None) is None


def test_market_order_without_a_last_price_fails_reference_price() -> None:
    result = validate_order(order(order_type="MARKET", stop_loss=D("95.00")), None, FLAT, NO_ACCOUNT, LIMITS)

    assert not result.passed
    assert result.failed.name == "reference_price"
    assert result.failed.reason == "no last price for NSE:INFY to value a MARKET order"
    assert [c.name for c in result.checks] == [
        "max_order_quantity", "metadata_size", *FLOW_CHECKS, "reference_price", "price_collar", "circuit_limits",
        "stop_loss_required", "max_open_orders",
    ]
    assert result.entry_price is None and result.required_margin == 0


def test_reference_price_check_passes_with_the_value_it_used() -> None:
    check = check_reference_price(order(), D("100.00"))

    assert check.passed and check.reason == "valued at 100.00"
    assert check.numbers == {"entry_price": "100.00"}


def test_market_order_with_a_last_price_is_checked_at_that_price() -> None:
    request = order(order_type="MARKET", quantity=450, stop_loss=D("2401.00"))

    result = validate_order(request, D("2450.00"), FLAT, NO_ACCOUNT, LIMITS)

    assert result.entry_price == D("2450.00")
    assert result.failed.reason == "risk per trade 22050.00 exceeds 2% of capital (20000.00)"
    assert result.required_margin == D("220500.00")


def test_sl_m_order_is_checked_at_its_trigger_not_the_last_price() -> None:
    request = order(order_type="SL-M", quantity=100, trigger_price=D("500.00"), stop_loss=D("495.00"))

    result = validate_order(request, D("480.00"), FLAT, NO_ACCOUNT, LIMITS)

    assert result.entry_price == D("500.00")
    assert result.required_margin == D("10000.00")  # 500 x 100 / 5 (MIS)
    assert by_name(result, "risk_per_trade").numbers["risk"] == "500.00"


# --- reduces_position -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "quantity", "exposure", "reduces"),
    [
        (Side.SELL, 100, Exposure(position_quantity=100), True),
        (Side.SELL, 101, Exposure(position_quantity=100), False),  # would flip short
        (Side.BUY, 100, Exposure(position_quantity=-100), True),
        (Side.BUY, 101, Exposure(position_quantity=-100), False),
        (Side.BUY, 10, Exposure(position_quantity=100), False),  # adds
        (Side.SELL, 10, Exposure(position_quantity=-100), False),
        (Side.BUY, 10, Exposure(), False),
        (Side.SELL, 10, Exposure(), False),
        # working orders that already reduce the position are counted
        (Side.SELL, 40, Exposure(position_quantity=100, working_sell_quantity=60), True),
        (Side.SELL, 41, Exposure(position_quantity=100, working_sell_quantity=60), False),
        (Side.BUY, 50, Exposure(position_quantity=-100, working_buy_quantity=50), True),
        (Side.BUY, 51, Exposure(position_quantity=-100, working_buy_quantity=50), False),
        (Side.SELL, 100, Exposure(position_quantity=100, working_sell_quantity=100), False),
        # working orders on the adding side do not use up the reduction
        (Side.SELL, 100, Exposure(position_quantity=100, working_buy_quantity=500), True),
        (Side.BUY, 100, Exposure(position_quantity=-100, working_sell_quantity=500), True),
    ],
)
def test_reduces_position_only_when_the_order_fits_inside_what_is_left_to_reduce(
    side: Side, quantity: int, exposure: Exposure, reduces: bool
) -> None:
    assert reduces_position(side, quantity, exposure) is reduces


def test_second_sell_of_a_long_already_being_sold_does_not_reduce() -> None:
    exposure = Exposure(position_quantity=100, working_sell_quantity=100)

    result = validate_order(order(side="SELL", quantity=100), None, exposure, NO_ACCOUNT, LIMITS)

    assert not result.reduces_position
    assert by_name(result, "stop_loss_required").passed is False


# --- stop-loss required -----------------------------------------------------------------


def test_opening_order_without_stop_loss_is_refused() -> None:
    check = check_stop_loss_required(order(), False, LIMITS)

    assert not check.passed
    assert check.reason == "stop-loss required for orders that open or add to a position"


def test_adding_order_without_stop_loss_is_refused() -> None:
    result = validate_order(order(), None, Exposure(position_quantity=50), NO_ACCOUNT, LIMITS)

    assert result.failed.name == "stop_loss_required"


def test_reducing_order_without_stop_loss_passes() -> None:
    result = validate_order(order(side="SELL", quantity=40), None, Exposure(position_quantity=100, working_sell_quantity=60), NO_ACCOUNT, LIMITS)

    assert result.passed
    assert by_name(result, "stop_loss_required").reason == "reduces a position: no stop-loss needed"
    assert by_name(result, "risk_per_trade").reason == "reduces a position: risk per trade not measured"


def test_order_one_unit_past_what_is_left_to_reduce_needs_a_stop_loss() -> None:
    exposure = Exposure(position_quantity=100, working_sell_quantity=60)

    result = validate_order(order(side="SELL", quantity=41), None, exposure, NO_ACCOUNT, LIMITS)

    assert result.failed.name == "stop_loss_required"


def test_order_with_a_stop_loss_passes_naming_it() -> None:
    check = check_stop_loss_required(order(stop_loss=D("95.00")), False, LIMITS)

    assert check.passed and check.reason == "stop-loss at 95.00"


def test_stop_loss_not_required_when_configured_off() -> None:
    limits = RiskLimits(capital=D("1000000"), require_stop_loss=False)

    result = validate_order(order(), None, FLAT, NO_ACCOUNT, limits)

    assert result.passed
    assert by_name(result, "stop_loss_required").reason == "stop-loss not required by configuration"
    assert by_name(result, "risk_per_trade").reason == "no stop-loss given: risk per trade not measured"
    assert by_name(result, "risk_per_trade").numbers == {"limit": "20000.00"}


# --- risk per trade ---------------------------------------------------------------------


def test_buy_450_at_2450_with_stop_2401_risks_22050_over_2_percent_of_a_million() -> None:
    request = order(quantity=450, price=D("2450.00"), stop_loss=D("2401.00"))

    result = validate_order(request, None, FLAT, NO_ACCOUNT, LIMITS)

    assert not result.passed
    assert result.failed.name == "risk_per_trade"
    assert result.failed.reason == "risk per trade 22050.00 exceeds 2% of capital (20000.00)"
    assert [c.name for c in result.checks if not c.passed] == ["risk_per_trade"]


def test_risk_exactly_at_the_limit_passes() -> None:
    request = order(quantity=400, price=D("2450.00"), stop_loss=D("2400.00"))

    check = check_risk_per_trade(request, D("2450.00"), False, LIMITS)

    assert check.passed
    assert check.reason == "risk per trade 20000.00 within 2% of capital (20000.00)"


@pytest.mark.parametrize(
    ("side", "price", "stop", "passed", "reason"),
    [
        ("BUY", "200.00", "100.00", True, "risk per trade 100.00 within 2% of capital (100.00)"),
        ("BUY", "200.01", "100.00", False, "risk per trade 100.01 exceeds 2% of capital (100.00)"),
        ("SELL", "100.00", "200.00", True, "risk per trade 100.00 within 2% of capital (100.00)"),
        ("SELL", "100.00", "200.01", False, "risk per trade 100.01 exceeds 2% of capital (100.00)"),
    ],
)
def test_risk_per_trade_boundary_is_a_paisa_wide(side: str, price: str, stop: str, passed: bool, reason: str) -> None:
    limits = RiskLimits(capital=D("5000"))
    request = order(side=side, quantity=1, price=D(price), stop_loss=D(stop))

    check = check_risk_per_trade(request, D(price), False, limits)

    assert check.passed is passed
    assert check.reason == reason


def test_risk_per_trade_carries_its_numbers() -> None:
    request = order(quantity=450, price=D("2450.00"), stop_loss=D("2401.00"))

    check = check_risk_per_trade(request, D("2450.00"), False, LIMITS)

    assert check.numbers == {"risk": "22050.00", "limit": "20000.00", "entry_price": "2450.00", "stop_loss": "2401.00"}


def test_fractional_risk_percent_is_printed_without_trailing_zeros() -> None:
    limits = RiskLimits(capital=D("1000000"), risk_per_trade_percent=D("1.50"))
    request = order(quantity=400, price=D("2450.00"), stop_loss=D("2400.00"))

    check = check_risk_per_trade(request, D("2450.00"), False, limits)

    assert check.reason == "risk per trade 20000.00 exceeds 1.5% of capital (15000.00)"


# --- max order value ------------------------------------------------------------------


def test_order_value_at_the_maximum_passes_and_a_paisa_over_fails() -> None:
    limits = RiskLimits(capital=D("1000000"), max_order_value=D("50000.00"))

    at = check_max_order_value(D("50000.00"), limits)
    over = check_max_order_value(D("50000.01"), limits)

    assert at.passed and at.reason == "order value 50000.00 within 50000.00"
    assert not over.passed
    assert over.reason == "order value 50000.01 exceeds the maximum order value 50000.00"
    assert over.numbers == {"value": "50000.01", "limit": "50000.00"}


def test_order_value_is_price_times_quantity_in_validate_order() -> None:
    limits = RiskLimits(capital=D("1000000"), max_order_value=D("49999.99"))
    request = order(quantity=100, price=D("500.00"), stop_loss=D("499.00"))

    result = validate_order(request, None, FLAT, NO_ACCOUNT, limits)

    assert result.failed.name == "max_order_value"
    assert result.failed.reason == "order value 50000.00 exceeds the maximum order value 49999.99"


def test_no_maximum_order_value_configured_passes() -> None:
    check = check_max_order_value(D("99999999.00"), LIMITS)

    assert check.passed and check.reason == "no maximum order value configured"
    assert check.numbers == {"value": "99999999.00"}


# --- max position ---------------------------------------------------------------------


def test_max_position_counts_the_position_and_working_same_side_orders() -> None:
    limits = RiskLimits(capital=D("1000000"), max_position_value=D("20000.00"))
    exposure = Exposure(position_quantity=100, working_buy_quantity=50, working_sell_quantity=500)

    check = check_max_position(order(quantity=50), D("100.00"), exposure, False, limits)

    assert check.passed
    assert check.reason == "position in NSE:INFY would be worth 20000.00"
    assert check.numbers == {"position_quantity": "200", "position_value": "20000.00", "limit": "20000.00"}


def test_max_position_a_paisa_below_the_projected_value_fails() -> None:
    limits = RiskLimits(capital=D("1000000"), max_position_value=D("19999.99"))
    exposure = Exposure(position_quantity=100, working_buy_quantity=50)

    check = check_max_position(order(quantity=50), D("100.00"), exposure, False, limits)

    assert not check.passed
    assert check.reason == "position in NSE:INFY would be 200 worth 20000.00, above the maximum 19999.99 per symbol"


def test_max_position_for_a_short_counts_working_sells() -> None:
    limits = RiskLimits(capital=D("1000000"), max_position_value=D("4999.99"))
    exposure = Exposure(position_quantity=-10, working_sell_quantity=20, working_buy_quantity=1000)

    check = check_max_position(order(side="SELL", quantity=20), D("100.00"), exposure, False, limits)

    assert not check.passed
    assert check.numbers["position_quantity"] == "50"
    assert check.numbers["position_value"] == "5000.00"


def test_order_that_flips_the_position_is_measured_on_what_is_left_the_other_way() -> None:
    limits = RiskLimits(capital=D("1000000"), max_position_value=D("5000.00"))

    check = check_max_position(order(side="SELL", quantity=150), D("100.00"), Exposure(position_quantity=100), False, limits)

    assert check.passed and check.numbers["position_quantity"] == "50"


def test_reducing_order_passes_max_position_whatever_the_limit() -> None:
    limits = RiskLimits(capital=D("1000000"), max_position_value=D("0.01"))

    check = check_max_position(order(side="SELL", quantity=50), D("100.00"), Exposure(position_quantity=100), True, limits)

    assert check.passed and check.reason == "reduces the position in NSE:INFY"


def test_no_maximum_position_configured_passes_with_the_value() -> None:
    check = check_max_position(order(quantity=50), D("100.00"), FLAT, False, LIMITS)

    assert check.passed and check.reason == "no maximum position configured"
    assert check.numbers == {"position_value": "5000.00"}


# --- max open orders ------------------------------------------------------------------


def test_open_orders_up_to_the_maximum_pass_and_one_more_fails() -> None:
    limits = RiskLimits(capital=D("1000000"), max_open_orders=100)

    at = check_max_open_orders(99, limits)
    over = check_max_open_orders(100, limits)

    assert at.passed and at.reason == "open orders would be 100 of 100"
    assert not over.passed and over.reason == "open orders would be 101, above the maximum 100"
    assert over.numbers == {"open_orders": "101", "limit": "100"}


def test_no_maximum_of_open_orders_configured_passes() -> None:
    check = check_max_open_orders(10_000, RiskLimits(capital=D("1"), max_open_orders=None))

    assert check.passed and check.reason == "no maximum of open orders configured"


def test_validate_order_counts_the_accounts_open_orders() -> None:
    request = order(stop_loss=D("95.00"))

    result = validate_order(request, None, FLAT, Account(open_orders=100), LIMITS)

    assert result.failed.name == "max_open_orders"


# --- balance --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("product", "margin"),
    [(Product.MIS, D("10000.00")), (Product.CNC, D("50000.00")), (Product.NRML, D("50000.00"))],
)
def test_required_margin_is_value_over_the_products_leverage(product: Product, margin: Decimal) -> None:
    request = order(quantity=100, price=D("500.00"), product=product)

    assert required_margin(request, D("500.00"), False, LIMITS) == margin


def test_configured_leverage_applies_and_an_unlisted_product_gets_none() -> None:
    limits = RiskLimits(capital=D("1000000"), leverage={Product.MIS: D("4")})

    assert required_margin(order(quantity=100, price=D("500.00")), D("500.00"), False, limits) == D("12500.00")
    assert required_margin(order(quantity=100, price=D("500.00"), product="CNC"), D("500.00"), False, limits) == D("50000.00")


def test_reducing_order_blocks_no_margin() -> None:
    assert required_margin(order(side="SELL", quantity=100), D("100.00"), True, LIMITS) == 0


def test_available_balance_is_capital_plus_realized_less_charges_and_margins() -> None:
    account = Account(realized_pnl=D("-5000"), charges=D("100"), position_margin=D("200000"), reserved_margin=D("50000"))

    assert account.available(D("1000000")) == D("744900")


def test_required_margin_equal_to_available_passes_and_a_paisa_more_fails() -> None:
    limits = RiskLimits(capital=D("10000"))

    at = check_balance(D("10000.00"), NO_ACCOUNT, limits)
    over = check_balance(D("10000.00"), Account(charges=D("0.01")), limits)

    assert at.passed and at.reason == "required margin 10000.00 within available 10000.00"
    assert not over.passed
    assert over.reason == "required margin 10000.00 exceeds available balance 9999.99"
    assert over.numbers == {"required": "10000.00", "available": "9999.99"}


def test_mis_order_needs_a_fifth_of_its_value_against_the_available_balance() -> None:
    limits = RiskLimits(capital=D("100000"))
    request = order(quantity=1000, price=D("500.00"), stop_loss=D("499.00"))  # 500,000 at 5x = 100,000

    fits = validate_order(request, None, FLAT, NO_ACCOUNT, limits)
    short = validate_order(request, None, FLAT, Account(reserved_margin=D("0.01")), limits)

    assert fits.passed and fits.required_margin == D("100000.00")
    assert short.failed.name == "balance"
    assert short.failed.reason == "required margin 100000.00 exceeds available balance 99999.99"


def test_same_order_as_cnc_needs_its_full_value() -> None:
    limits = RiskLimits(capital=D("100000"))
    request = order(quantity=1000, price=D("500.00"), stop_loss=D("499.00"), product="CNC")

    result = validate_order(request, None, FLAT, NO_ACCOUNT, limits)

    assert result.failed.reason == "required margin 500000.00 exceeds available balance 100000.00"


# --- validate_order as a whole --------------------------------------------------------


def test_every_check_runs_in_order_when_the_order_can_be_valued() -> None:
    result = validate_order(order(stop_loss=D("95.00")), None, FLAT, NO_ACCOUNT, LIMITS)

    assert result.passed and result.failed is None
    assert [c.name for c in result.checks] == CHECK_ORDER


def test_failed_is_the_first_failure_and_later_checks_still_run() -> None:
    # CNC at 1x: 2450 x 450 = 1,102,500 is more than the 1,000,000 available.
    request = order(quantity=450, price=D("2450.00"), stop_loss=D("2401.00"), product="CNC")

    result = validate_order(request, None, FLAT, Account(open_orders=100), LIMITS)

    assert [c.name for c in result.checks if not c.passed] == ["risk_per_trade", "max_open_orders", "balance"]
    assert result.failed.name == "risk_per_trade"
    assert not result.passed


def test_missing_stop_is_reported_before_the_other_failures() -> None:
    result = validate_order(order(quantity=100_000), None, FLAT, Account(open_orders=100), LIMITS)

    assert result.failed.name == "stop_loss_required"
    assert {c.name for c in result.checks if not c.passed} == {"stop_loss_required", "max_open_orders", "balance"}


def test_as_dict_carries_every_checks_numbers() -> None:
    request = order(quantity=450, price=D("2450.00"), stop_loss=D("2401.00"))

    result = validate_order(request, None, FLAT, NO_ACCOUNT, LIMITS).as_dict()
    new_rules = {*FLOW_CHECKS, "price_collar", "circuit_limits", "protective_prices", "max_gross_exposure"}
    result["checks"] = [c for c in result["checks"] if c["name"] not in new_rules]  # their numbers: tests below

    assert result == {
        "passed": False,
        "entry_price": "2450.00",
        "required_margin": "220500.00",
        "reduces_position": False,
        "checks": [
            {"name": "max_order_quantity", "passed": True, "reason": "quantity 450 within the per-order maximum", "quantity": "450", "limit": "none"},
            {"name": "metadata_size", "passed": True, "reason": "metadata of 2 bytes within the limit", "bytes": "2", "limit": "65536"},
            {"name": "reference_price", "passed": True, "reason": "valued at 2450.00", "entry_price": "2450.00"},
            {"name": "stop_loss_required", "passed": True, "reason": "stop-loss at 2401.00"},
            {
                "name": "risk_per_trade",
                "passed": False,
                "reason": "risk per trade 22050.00 exceeds 2% of capital (20000.00)",
                "risk": "22050.00",
                "limit": "20000.00",
                "entry_price": "2450.00",
                "stop_loss": "2401.00",
            },
            {"name": "max_order_value", "passed": True, "reason": "no maximum order value configured", "value": "1102500.00"},
            {"name": "max_position", "passed": True, "reason": "no maximum position configured", "position_value": "1102500.00"},
            {"name": "max_open_orders", "passed": True, "reason": "open orders would be 1 of 100", "open_orders": "1", "limit": "100"},
            {
                "name": "balance",
                "passed": True,
                "reason": "required margin 220500.00 within available 1000000.00",
                "required": "220500.00",
                "available": "1000000.00",
            },
        ],
    }
    assert json.loads(json.dumps(result)) == result


def test_as_dict_of_a_reducing_order_says_so_and_blocks_no_margin() -> None:
    result = validate_order(order(side="SELL", quantity=100), None, Exposure(position_quantity=100), NO_ACCOUNT, LIMITS)

    as_dict = result.as_dict()

    assert as_dict["passed"] is True
    assert as_dict["reduces_position"] is True
    assert as_dict["required_margin"] == "0"


# --- configurable input limits: each refuses just above its limit, passes at it --------


@pytest.mark.parametrize("quantity, passed", [(100, True), (101, False)])
def test_max_order_quantity_refuses_only_above_the_configured_maximum(quantity: int, passed: bool) -> None:
    limits = RiskLimits(capital=D("10000000"), max_order_quantity=100, require_stop_loss=False)

    check = check_max_order_quantity(order(quantity=quantity, price=D("10.00")), limits)

    assert check.passed is passed
    if not passed:
        assert check.reason == "quantity: 101 exceeds the per-order maximum of 100"


def test_metadata_size_refuses_only_above_the_configured_limit() -> None:
    request = order(metadata={"note": "x" * 20})  # {"note":"xxxx..."} is 31 bytes
    at_limit = RiskLimits(capital=D("1000000"), max_metadata_bytes=31)
    below = RiskLimits(capital=D("1000000"), max_metadata_bytes=30)

    assert check_metadata_size(request, at_limit).passed
    refusal = check_metadata_size(request, below)
    assert not refusal.passed
    assert refusal.reason == "metadata: 31 bytes exceeds the limit of 30 bytes"
