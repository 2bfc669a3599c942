"""OrderRequest: every field rule, the cross-field rules (price/trigger by order type,
stop-loss and take-profit sides, tick sizes) and immutability, metadata's included.

Every refusal is a ValueError (pydantic's ValidationError) that names the field it blames:
either the error's location is that field, or its message opens with "<field>:".
"""
from __future__ import annotations

import copy
import json
import pickle
import time
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from domain.enums import Exchange, OrderType, Product, Side, Validity, Variety
from domain.order_request import (
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_QUANTITY,
    MAX_STRATEGY_ID,
    OrderRequest,
    thaw_metadata,
)

D = Decimal
MONEY_FIELDS = ("price", "trigger_price", "stop_loss", "take_profit", "tick_size")


def limit_buy(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments of a valid LIMIT BUY of 10 INFY at 100.00, with overrides."""
    return {"symbol": "INFY", "side": "BUY", "quantity": 10, "order_type": "LIMIT", "price": D("100.00"), **overrides}


def blamed_field(error: ValidationError) -> str:
    """The field a (single) validation error names: its location, or the "<field>:" its
    message opens with (cross-field rules have no location)."""
    first = error.errors()[0]
    if first["loc"]:
        return str(first["loc"][0])
    message = first["msg"].removeprefix("Value error, ")
    return message.split(":", 1)[0]


def refusal(field: str, **kwargs: Any) -> str:
    """Build the request, assert it is refused with a ValueError naming ``field``, and
    return the error text for further assertions."""
    with pytest.raises(ValueError) as info:
        OrderRequest(**kwargs)
    error = info.value
    assert isinstance(error, ValidationError)
    assert blamed_field(error) == field
    text = str(error)
    assert field in text
    return text


# --- a valid request ----------------------------------------------------------------


def test_minimal_request_is_a_day_mis_market_order_on_nse() -> None:
    request = OrderRequest(symbol="INFY", side="BUY", quantity=1)

    assert request.exchange is Exchange.NSE
    assert request.order_type is OrderType.MARKET
    assert request.product is Product.MIS
    assert request.validity is Validity.DAY
    assert request.strategy_id == 0
    assert request.price is None and request.trigger_price is None
    assert request.metadata == {} and isinstance(request.metadata, MappingProxyType)


def test_the_design_guides_example_builds_verbatim() -> None:
    # OMS_GUIDE.md, "Example Usage" of the Order Manager: floats for money, an int strategy.
    order = OrderRequest(
        symbol='RELIANCE',
        exchange='NSE',
        side='BUY',
        quantity=10,
        order_type='LIMIT',
        price=2450.50,
        stop_loss=2430.00,   # 20.50 risk per share = 205 total risk
        take_profit=2491.00, # 40.50 reward per share = 405 total reward
        product='MIS',       # Intraday
        validity='DAY',
        strategy_id=1
    )

    assert order.price == Decimal("2450.5") and isinstance(order.price, Decimal)
    assert order.stop_loss == Decimal("2430") and order.take_profit == Decimal("2491")
    assert order.quantity == 10 and order.strategy_id == 1
    assert order.exchange is Exchange.NSE and order.side is Side.BUY and order.order_type is OrderType.LIMIT
    assert order.product is Product.MIS and order.validity is Validity.DAY


def test_money_given_as_string_or_int_is_stored_as_the_exact_decimal() -> None:
    request = OrderRequest(**limit_buy(price="100.05", stop_loss=95, take_profit=" 110.10 "))

    assert request.price == D("100.05") and isinstance(request.price, Decimal)
    assert request.stop_loss == D("95") and isinstance(request.stop_loss, Decimal)
    assert request.take_profit == D("110.10")


# --- enumerated fields --------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "enum_type"),
    [("exchange", Exchange), ("side", Side), ("order_type", OrderType), ("product", Product), ("validity", Validity)],
)
def test_each_enumerated_field_accepts_every_exact_value_and_its_enum_member(field: str, enum_type: type) -> None:
    for member in enum_type:
        base = {"symbol": "INFY", "side": "BUY", "quantity": 1}
        if field == "order_type":
            base.update(
                {
                    OrderType.MARKET: {},
                    OrderType.LIMIT: {"price": D("100.00")},
                    OrderType.SL: {"price": D("100.00"), "trigger_price": D("99.00")},
                    OrderType.SL_M: {"trigger_price": D("99.00")},
                }[member]
            )
        by_value = OrderRequest(**{**base, field: member.value})
        by_member = OrderRequest(**{**base, field: member})

        assert getattr(by_value, field) is member
        assert getattr(by_member, field) is member


@pytest.mark.parametrize(
    ("field", "bad_value"),
    [
        ("exchange", "nse"),
        ("exchange", "NSEX"),
        ("side", "buy"),
        ("side", "LONG"),
        ("order_type", "limit"),
        ("order_type", "SL_M"),  # the member's name, not its value
        ("order_type", "STOP"),
        ("product", "mis"),
        ("product", "CO"),
        ("validity", "GTC"),
        ("validity", 1),
        ("variety", "AMO"),
        ("variety", "co"),
        ("variety", "iceberg"),
        ("variety", 1),
    ],
)
def test_enumerated_field_outside_its_values_is_refused_naming_the_field_and_the_allowed_values(
    field: str, bad_value: object
) -> None:
    text = refusal(field, **{"symbol": "INFY", "side": "BUY", "quantity": 1, field: bad_value})

    assert "is not one of" in text


def test_variety_is_regular_by_default_amo_when_asked_and_a_shared_member() -> None:
    regular = OrderRequest(**limit_buy())
    amo = OrderRequest(**limit_buy(variety="amo"))
    assert regular.variety is Variety.REGULAR
    assert amo.variety is OrderRequest(**limit_buy(variety=Variety.AMO)).variety is Variety.AMO
    assert amo.model_dump()["variety"] is Variety.AMO
    assert pickle.loads(pickle.dumps(amo)).variety is Variety.AMO
    text = refusal("variety", **limit_buy(variety="after-market"))
    assert "variety: 'after-market' is not one of regular, amo" in text


# --- quantity -------------------------------------------------------------------------


def test_max_quantity_is_the_int_column_limit() -> None:
    assert MAX_QUANTITY == 2**31 - 1 == 2_147_483_647


@pytest.mark.parametrize("quantity", [1, 75, 1_000_000, 2**31 - 1])
def test_int_quantity_from_one_to_the_limit_is_accepted(quantity: int) -> None:
    assert OrderRequest(symbol="INFY", side="BUY", quantity=quantity).quantity == quantity


@pytest.mark.parametrize("quantity", [0, -1, -(2**31)])
def test_zero_or_negative_quantity_is_refused_naming_quantity_and_the_minimum(quantity: int) -> None:
    text = refusal("quantity", symbol="INFY", side="BUY", quantity=quantity)

    assert f"quantity: {quantity} is below the minimum of 1" in text


@pytest.mark.parametrize("quantity", [2**31, 10**12])
def test_quantity_above_the_int_column_is_refused_naming_quantity_and_the_limit(quantity: int) -> None:
    text = refusal("quantity", symbol="INFY", side="BUY", quantity=quantity)

    assert f"quantity: {quantity} exceeds the limit of 2147483647" in text


def test_quantity_too_long_to_print_is_refused_naming_quantity_and_the_limit() -> None:
    # str() of an int this long raises ValueError itself; the message must not try it.
    text = refusal("quantity", symbol="INFY", side="BUY", quantity=10**10_000)

    assert "exceeds the limit of 2147483647" in text


@pytest.mark.parametrize("quantity", [True, False, 1.0, "1", "10", D(1), None])
def test_quantity_that_is_not_a_plain_int_is_refused_naming_quantity(quantity: object) -> None:
    text = refusal("quantity", symbol="INFY", side="BUY", quantity=quantity)

    assert "quantity: must be an int" in text


# --- money fields ---------------------------------------------------------------------


FINEST = D("0.00000001")


def _with_money(field: str, value: object) -> dict[str, Any]:
    """A request that is valid for any positive amount of at most 8 places in ``field``:
    nothing else to compare it with, and (but for the tick size itself) a tick of 1E-8."""
    base = {"symbol": "INFY", "side": "BUY", "quantity": 1}
    if field == "tick_size":
        return {**base, "tick_size": value}
    if field == "price":
        return {**base, "order_type": "LIMIT", "price": value, "tick_size": FINEST}
    if field == "trigger_price":
        return {**base, "order_type": "SL-M", "trigger_price": value, "tick_size": FINEST}
    return {**base, field: value, "tick_size": FINEST}


@pytest.mark.parametrize("field", MONEY_FIELDS)
@pytest.mark.parametrize(
    ("value", "expected"), [(100.1, "100.1"), (2450.50, "2450.5"), (0.1, "0.1"), (95.0, "95"), (1e-08, "0.00000001")]
)
def test_float_money_is_read_once_by_its_shortest_repr(field: str, value: float, expected: str) -> None:
    request = OrderRequest(**_with_money(field, value))

    assert getattr(request, field) == D(expected)
    assert getattr(request, field) == D(repr(value))


@pytest.mark.parametrize("field", MONEY_FIELDS)
def test_a_float_sum_is_refused_not_rounded(field: str) -> None:
    # 0.1 + 0.2 is the float 0.30000000000000004, not 0.3.
    text = refusal(field, **_with_money(field, 0.1 + 0.2))

    assert f"{field}: 0.30000000000000004 has 17 decimal places" in text


@pytest.mark.parametrize("field", MONEY_FIELDS)
@pytest.mark.parametrize("value", [D("-100.00"), D("0"), D("-0"), 0, "-5", -1.5, 0.0])
def test_zero_or_negative_money_is_refused_naming_the_field(field: str, value: object) -> None:
    text = refusal(field, **_with_money(field, value))

    assert f"{field}: must be positive" in text


@pytest.mark.parametrize("field", MONEY_FIELDS)
@pytest.mark.parametrize(
    "value",
    [D("NaN"), D("sNaN"), D("Infinity"), D("-Infinity"), "NaN", "Infinity", "inf", float("nan"), float("inf"), float("-inf")],
)
def test_nan_or_infinite_money_is_refused_naming_the_field(field: str, value: object) -> None:
    text = refusal(field, **_with_money(field, value))

    assert f"{field}: must be finite" in text


@pytest.mark.parametrize("field", MONEY_FIELDS)
@pytest.mark.parametrize("value", [True, "abc", "", [D(100)], object()])
def test_money_that_is_not_a_number_is_refused_naming_the_field(field: str, value: object) -> None:
    refusal(field, **_with_money(field, value))


@pytest.mark.parametrize("field", MONEY_FIELDS)
@pytest.mark.parametrize("value", [D("1E+999999"), D("9E+999998"), "1E+999999", 1e300])
def test_huge_exponents_are_refused_in_every_money_field_naming_it_and_the_limit(field: str, value: object) -> None:
    # Any arithmetic on these (the tick check divides) would raise decimal.Overflow.
    text = refusal(field, **_with_money(field, value))

    assert f"{field}: " in text and "is out of range" in text and "10**12" in text


@pytest.mark.parametrize("field", MONEY_FIELDS)
@pytest.mark.parametrize("value", [10**12, D("1E+12"), "1000000000000.00", 1e12])
def test_ten_to_the_twelve_is_refused_naming_the_field_and_the_limit(field: str, value: object) -> None:
    text = refusal(field, **_with_money(field, value))

    assert f"{field}: " in text and "must be below 10**12" in text


@pytest.mark.parametrize("field", MONEY_FIELDS)
@pytest.mark.parametrize("value", [D("999999999999.99"), "999999999999.99", 999999999999.99])
def test_just_below_ten_to_the_twelve_on_tick_is_accepted(field: str, value: object) -> None:
    request = OrderRequest(**{**_with_money(field, value), **({} if field == "tick_size" else {"tick_size": D("0.01")})})

    assert getattr(request, field) == D("999999999999.99")


@pytest.mark.parametrize("field", MONEY_FIELDS)
@pytest.mark.parametrize("value", [D("1.00000001"), D("0.00000001"), D("999999999999.99999999")])
def test_eight_decimal_places_are_accepted(field: str, value: Decimal) -> None:
    assert getattr(OrderRequest(**_with_money(field, value)), field) == value


@pytest.mark.parametrize("field", MONEY_FIELDS)
@pytest.mark.parametrize("value", [D("1.000000001"), "0.000000001", D("999999999999.999999999")])
def test_nine_decimal_places_are_refused_naming_the_field_not_rounded(field: str, value: object) -> None:
    text = refusal(field, **_with_money(field, value))

    assert f"{field}: " in text and "at most 8 decimal places" in text


@pytest.mark.parametrize("field", MONEY_FIELDS)
def test_trailing_zeros_beyond_eight_places_are_not_extra_places(field: str) -> None:
    assert getattr(OrderRequest(**_with_money(field, D("1.0000000000"))), field) == D(1)


@pytest.mark.parametrize(
    ("price", "tick"),
    [
        (D("999999999999.99999999"), D("0.00000001")),
        (D("0.00000001"), D("0.00000001")),
        (D("999999999999.99999999"), D("999999999999.99999999")),
        (D("999999999999.99999999"), D("0.00000003")),  # 99999999999999999999 is 3 x 33333333333333333333
    ],
)
def test_the_tick_check_accepts_multiples_at_the_extremes_of_what_is_storable(price: Decimal, tick: Decimal) -> None:
    assert OrderRequest(**limit_buy(price=price, tick_size=tick)).price == price


@pytest.mark.parametrize(
    ("price", "tick"),
    [
        (D("999999999999.99999999"), D("0.00000002")),
        (D("999999999999.99999999"), D("999999999999.99999998")),
        (D("0.00000001"), D("999999999999.99999999")),
        (D("999999999998"), D("999999999999")),
    ],
)
def test_the_tick_check_refuses_non_multiples_at_the_extremes_of_what_is_storable(price: Decimal, tick: Decimal) -> None:
    text = refusal("price", **limit_buy(price=price, tick_size=tick))

    assert f"price: {price} is not a multiple of the tick size {tick}" in text


@given(
    st.one_of(
        st.floats(),
        st.decimals(allow_nan=True, allow_infinity=True),
        st.text(),
        st.from_regex(r"\A-?[0-9]{0,14}(\.[0-9]{0,10})?([eE][-+]?[0-9]{1,7})?\Z"),
    )
)
@example(2450.50)
@example(0.1 + 0.2)
@example(float("nan"))
@example(5e-324)
@example(D("1E+999999"))
@example(D("9E+999998"))
@example(D("-0E+999999"))
@example("sNaN")
@example("1E+99999999999999999999")
def test_any_price_is_stored_as_read_or_refused_naming_price(value: object) -> None:
    try:
        request = OrderRequest(symbol="INFY", side="BUY", quantity=1, order_type="LIMIT", price=value, tick_size=FINEST)
    except ValueError as exc:  # pydantic's ValidationError is one; nothing else may escape
        assert isinstance(exc, ValidationError)
        assert blamed_field(exc) == "price"
        assert "price: " in str(exc)
        return
    assert type(request.price) is Decimal
    if isinstance(value, float):
        assert request.price == D(repr(value))
    elif isinstance(value, str):
        assert request.price == D(value.strip())
    else:
        assert request.price == value


# --- price and trigger by order type --------------------------------------------------


@pytest.mark.parametrize("order_type", ["LIMIT", "SL"])
def test_limit_and_sl_orders_without_a_price_are_refused_naming_price(order_type: str) -> None:
    text = refusal("price", symbol="INFY", side="BUY", quantity=1, order_type=order_type, trigger_price=D("100.00"))

    assert f"price: required for {order_type} orders" in text


@pytest.mark.parametrize("order_type", ["MARKET", "SL-M"])
def test_market_and_sl_m_orders_with_a_price_are_refused_naming_price(order_type: str) -> None:
    extra = {"trigger_price": D("100.00")} if order_type == "SL-M" else {}
    text = refusal("price", symbol="INFY", side="BUY", quantity=1, order_type=order_type, price=D("100.00"), **extra)

    assert f"price: {order_type} orders take no price" in text


@pytest.mark.parametrize("order_type", ["SL", "SL-M"])
def test_sl_and_sl_m_orders_without_a_trigger_are_refused_naming_trigger_price(order_type: str) -> None:
    extra = {"price": D("100.00")} if order_type == "SL" else {}
    text = refusal("trigger_price", symbol="INFY", side="BUY", quantity=1, order_type=order_type, **extra)

    assert f"trigger_price: required for {order_type} orders" in text


@pytest.mark.parametrize("order_type", ["MARKET", "LIMIT"])
def test_market_and_limit_orders_with_a_trigger_are_refused_naming_trigger_price(order_type: str) -> None:
    extra = {"price": D("100.00")} if order_type == "LIMIT" else {}
    text = refusal(
        "trigger_price", symbol="INFY", side="BUY", quantity=1, order_type=order_type, trigger_price=D("99.00"), **extra
    )

    assert f"trigger_price: {order_type} orders take no trigger price" in text


def test_sl_buy_with_trigger_above_limit_price_is_refused_naming_trigger_price() -> None:
    text = refusal(
        "trigger_price", symbol="INFY", side="BUY", quantity=1, order_type="SL", price=D("100.00"), trigger_price=D("100.05")
    )

    assert "trigger_price: 100.05 must not be above the limit price 100.00 for a stop-loss BUY" in text


def test_sl_buy_with_trigger_at_or_below_limit_price_is_accepted() -> None:
    at = OrderRequest(symbol="INFY", side="BUY", quantity=1, order_type="SL", price=D("100.00"), trigger_price=D("100.00"))
    below = OrderRequest(symbol="INFY", side="BUY", quantity=1, order_type="SL", price=D("100.00"), trigger_price=D("99.95"))

    assert at.trigger_price == D("100.00")
    assert below.trigger_price == D("99.95")


def test_sl_sell_with_trigger_below_limit_price_is_refused_naming_trigger_price() -> None:
    text = refusal(
        "trigger_price", symbol="INFY", side="SELL", quantity=1, order_type="SL", price=D("100.00"), trigger_price=D("99.95")
    )

    assert "trigger_price: 99.95 must not be below the limit price 100.00 for a stop-loss SELL" in text


def test_sl_sell_with_trigger_at_or_above_limit_price_is_accepted() -> None:
    at = OrderRequest(symbol="INFY", side="SELL", quantity=1, order_type="SL", price=D("100.00"), trigger_price=D("100.00"))
    above = OrderRequest(symbol="INFY", side="SELL", quantity=1, order_type="SL", price=D("100.00"), trigger_price=D("100.05"))

    assert at.trigger_price == D("100.00")
    assert above.trigger_price == D("100.05")


# --- entry price --------------------------------------------------------------------


def test_entry_price_is_the_limit_price_then_the_sl_m_trigger_and_none_for_market() -> None:
    limit = OrderRequest(**limit_buy())
    sl = OrderRequest(symbol="INFY", side="BUY", quantity=1, order_type="SL", price=D("101.00"), trigger_price=D("100.50"))
    sl_m = OrderRequest(symbol="INFY", side="BUY", quantity=1, order_type="SL-M", trigger_price=D("100.50"))
    market = OrderRequest(symbol="INFY", side="BUY", quantity=1)

    assert limit.entry_price == D("100.00")
    assert sl.entry_price == D("101.00")
    assert sl_m.entry_price == D("100.50")
    assert market.entry_price is None


# --- stop-loss and take-profit sides --------------------------------------------------


def test_buy_with_stop_below_and_target_above_entry_is_accepted() -> None:
    request = OrderRequest(**limit_buy(stop_loss=D("99.99"), take_profit=D("100.01")))

    assert (request.stop_loss, request.take_profit) == (D("99.99"), D("100.01"))


@pytest.mark.parametrize("stop", [D("100.00"), D("100.01")])
def test_buy_with_stop_loss_at_or_above_entry_is_refused_naming_stop_loss(stop: Decimal) -> None:
    text = refusal("stop_loss", **limit_buy(stop_loss=stop))

    assert f"stop_loss: {stop} must be below the entry price 100.00 for a BUY" in text


@pytest.mark.parametrize("target", [D("100.00"), D("99.99")])
def test_buy_with_take_profit_at_or_below_entry_is_refused_naming_take_profit(target: Decimal) -> None:
    text = refusal("take_profit", **limit_buy(take_profit=target))

    assert f"take_profit: {target} must be above the entry price 100.00 for a BUY" in text


def test_sell_with_stop_above_and_target_below_entry_is_accepted() -> None:
    request = OrderRequest(**limit_buy(side="SELL", stop_loss=D("100.01"), take_profit=D("99.99")))

    assert (request.stop_loss, request.take_profit) == (D("100.01"), D("99.99"))


@pytest.mark.parametrize("stop", [D("100.00"), D("99.99")])
def test_sell_with_stop_loss_at_or_below_entry_is_refused_naming_stop_loss(stop: Decimal) -> None:
    text = refusal("stop_loss", **limit_buy(side="SELL", stop_loss=stop))

    assert f"stop_loss: {stop} must be above the entry price 100.00 for a SELL" in text


@pytest.mark.parametrize("target", [D("100.00"), D("100.01")])
def test_sell_with_take_profit_at_or_above_entry_is_refused_naming_take_profit(target: Decimal) -> None:
    text = refusal("take_profit", **limit_buy(side="SELL", take_profit=target))

    assert f"take_profit: {target} must be below the entry price 100.00 for a SELL" in text


def test_sl_m_buy_measures_the_stop_against_its_trigger() -> None:
    text = refusal(
        "stop_loss", symbol="INFY", side="BUY", quantity=1, order_type="SL-M", trigger_price=D("100.00"), stop_loss=D("100.50")
    )

    assert "stop_loss: 100.50 must be below the entry price 100.00 for a BUY" in text


def test_market_buy_with_stop_not_below_target_is_refused_naming_stop_loss() -> None:
    text = refusal("stop_loss", symbol="INFY", side="BUY", quantity=1, stop_loss=D("110.00"), take_profit=D("110.00"))

    assert "stop_loss: 110.00 must be below take_profit 110.00 for a BUY" in text


def test_market_sell_with_stop_not_above_target_is_refused_naming_stop_loss() -> None:
    text = refusal("stop_loss", symbol="INFY", side="SELL", quantity=1, stop_loss=D("90.00"), take_profit=D("95.00"))

    assert "stop_loss: 90.00 must be above take_profit 95.00 for a SELL" in text


def test_market_order_with_stop_and_target_on_the_right_sides_is_accepted() -> None:
    buy = OrderRequest(symbol="INFY", side="BUY", quantity=1, stop_loss=D("90.00"), take_profit=D("110.00"))
    sell = OrderRequest(symbol="INFY", side="SELL", quantity=1, stop_loss=D("110.00"), take_profit=D("90.00"))

    assert buy.stop_loss == D("90.00") and sell.stop_loss == D("110.00")


# --- ticks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "price",
    [D("0.01"), D("249.99"), D("250.05"), D("999.95"), D("1000.10"), D("4999.90"), D("5000.50"), D("9999.50"),
     D("10001.00"), D("19999.00"), D("20005.00")],
)
def test_nse_equity_price_on_its_band_tick_is_accepted(price: Decimal) -> None:
    assert OrderRequest(**limit_buy(price=price)).price == price


@pytest.mark.parametrize(
    ("price", "tick"),
    [
        (D("249.995"), D("0.01")),
        (D("250.01"), D("0.05")),
        (D("999.99"), D("0.05")),
        (D("1000.05"), D("0.10")),
        (D("4999.95"), D("0.10")),
        (D("5000.10"), D("0.50")),
        (D("9999.90"), D("0.50")),
        (D("10000.50"), D("1.00")),
        (D("19999.50"), D("1.00")),
        (D("20001.00"), D("5.00")),
    ],
)
def test_nse_equity_price_off_its_band_tick_is_refused_naming_price_and_tick(price: Decimal, tick: Decimal) -> None:
    text = refusal("price", **limit_buy(price=price))

    assert f"price: {price} is not a multiple of the tick size {tick}" in text


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("trigger_price", {"order_type": "SL", "price": D("300.00"), "trigger_price": D("299.97")}),
        ("stop_loss", {"price": D("300.00"), "stop_loss": D("290.02")}),
        ("take_profit", {"price": D("300.00"), "take_profit": D("310.03")}),
    ],
)
def test_trigger_stop_and_target_are_each_tick_checked_naming_their_field(field: str, overrides: dict) -> None:
    text = refusal(field, **limit_buy(**overrides))

    assert "is not a multiple of the tick size 0.05" in text


def test_price_with_more_digits_than_decimal_precision_is_refused_as_out_of_range_naming_price() -> None:
    # 10**30 + 1 never reaches the tick check (where it used to raise decimal.InvalidOperation).
    price = "1000000000000000000000000000001"

    text = refusal("price", **limit_buy(price=price))

    assert "price: 1000000000000000000000000000001 is out of range" in text


def test_each_price_is_checked_against_the_band_it_falls_in() -> None:
    # Entry 251.00 sits in the 0.05 band; the stop at 249.99 in the 0.01 band.
    request = OrderRequest(**limit_buy(price=D("251.00"), stop_loss=D("249.99")))

    assert request.stop_loss == D("249.99")


def test_explicit_tick_size_wins_over_the_default_table() -> None:
    finer = OrderRequest(**limit_buy(price=D("1000.01"), tick_size=D("0.01")))
    text = refusal("price", **limit_buy(price=D("100.10"), tick_size=D("0.25")))

    assert finer.price == D("1000.01")
    assert "price: 100.10 is not a multiple of the tick size 0.25" in text


def test_explicit_tick_size_accepts_its_own_multiples() -> None:
    request = OrderRequest(**limit_buy(price=D("100.25"), stop_loss=D("99.75"), tick_size=D("0.25")))

    assert request.tick_size == D("0.25")


def test_currency_prices_are_checked_on_the_quarter_paisa_tick() -> None:
    accepted = OrderRequest(symbol="USDINR24DECFUT", exchange="CDS", side="BUY", quantity=1, order_type="LIMIT", price=D("83.2525"))
    text = refusal("price", symbol="USDINR24DECFUT", exchange="CDS", side="BUY", quantity=1, order_type="LIMIT", price=D("83.2510"))

    assert accepted.price == D("83.2525")
    assert "tick size 0.0025" in text


def test_cheap_stock_option_takes_a_paisa_tick_but_an_index_option_does_not() -> None:
    stock_option = OrderRequest(symbol="RELIANCE24DEC1300CE", exchange="NFO", side="BUY", quantity=1, order_type="LIMIT", price=D("12.34"))
    text = refusal("price", symbol="NIFTY24DEC24000CE", exchange="NFO", side="BUY", quantity=1, order_type="LIMIT", price=D("12.34"))

    assert stock_option.price == D("12.34")
    assert "tick size 0.05" in text


# --- symbol ---------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", ["INFY", "M&M", "BAJAJ-AUTO", "NIFTY24DEC24000CE", "NIFTY_50", "3MINDIA", "A", "A" * 40])
def test_kite_trading_symbols_are_accepted(symbol: str) -> None:
    assert OrderRequest(symbol=symbol, side="BUY", quantity=1).symbol == symbol


@pytest.mark.parametrize(
    "symbol",
    ["infy", "Infy", "TATA MOTORS", " INFY", "INFY ", "US$", "-INFY", "&M", "", "A" * 41, "INFY\t", "ÄBC"],
)
def test_symbols_outside_the_kite_alphabet_are_refused_naming_symbol(symbol: str) -> None:
    text = refusal("symbol", symbol=symbol, side="BUY", quantity=1)

    assert "is not a Kite trading symbol" in text


def test_symbol_with_a_trailing_newline_is_refused_naming_symbol() -> None:
    # "$" in a Python regex also matches just before a final "\n"; the symbol must not.
    text = refusal("symbol", symbol="INFY\n", side="BUY", quantity=1)

    assert "is not a Kite trading symbol" in text


def test_symbol_that_is_not_a_string_is_refused_naming_symbol() -> None:
    refusal("symbol", symbol=123, side="BUY", quantity=1)


# --- strategy id ----------------------------------------------------------------------


@pytest.mark.parametrize("strategy_id", [0, 1, 2**31 - 1])
def test_strategy_ids_from_zero_to_the_int_column_limit_are_accepted(strategy_id: int) -> None:
    assert OrderRequest(symbol="INFY", side="BUY", quantity=1, strategy_id=strategy_id).strategy_id == strategy_id


def test_max_strategy_id_is_the_int_column_limit() -> None:
    assert MAX_STRATEGY_ID == 2**31 - 1


@pytest.mark.parametrize("strategy_id", [-1, -(2**31)])
def test_negative_strategy_id_is_refused_naming_strategy_id_and_the_minimum(strategy_id: int) -> None:
    text = refusal("strategy_id", symbol="INFY", side="BUY", quantity=1, strategy_id=strategy_id)

    assert f"strategy_id: {strategy_id} is below the minimum of 0" in text


@pytest.mark.parametrize("strategy_id", [2**31, 10**12])
def test_strategy_id_above_the_int_column_is_refused_naming_strategy_id_and_the_limit(strategy_id: int) -> None:
    text = refusal("strategy_id", symbol="INFY", side="BUY", quantity=1, strategy_id=strategy_id)

    assert f"strategy_id: {strategy_id} exceeds the limit of 2147483647" in text


@pytest.mark.parametrize("strategy_id", [True, False, 1.0, D(1), None])
def test_strategy_id_that_is_not_a_plain_int_is_refused_naming_strategy_id(strategy_id: object) -> None:
    text = refusal("strategy_id", symbol="INFY", side="BUY", quantity=1, strategy_id=strategy_id)

    assert "strategy_id: must be an int" in text


@pytest.mark.parametrize("strategy_id", ["s1", "rsi", "1", "", "default"])
def test_string_strategy_id_is_refused_pointing_the_name_to_metadata(strategy_id: str) -> None:
    text = refusal("strategy_id", symbol="INFY", side="BUY", quantity=1, strategy_id=strategy_id)

    assert "is a string; strategy_id is an integer" in text
    assert 'metadata={"strategy": "rsi"}' in text


def test_a_strategys_name_goes_in_metadata() -> None:
    request = OrderRequest(symbol="INFY", side="BUY", quantity=1, strategy_id=7, metadata={"strategy": "rsi"})

    assert request.metadata["strategy"] == "rsi" and request.strategy_id == 7


# --- metadata -------------------------------------------------------------------------


def metadata_of_size(size: int, char: str = "x") -> dict[str, str]:
    """{"k": "xxx..."} whose compact UTF-8 JSON text is exactly ``size`` bytes."""
    overhead = len('{"k":""}')
    width = len(char.encode("utf-8"))
    assert (size - overhead) % width == 0
    metadata = {"k": char * ((size - overhead) // width)}
    assert len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode("utf-8")) == size
    return metadata


def test_json_metadata_is_kept() -> None:
    request = OrderRequest(symbol="INFY", side="BUY", quantity=1, metadata={"signal": "breakout", "score": 3, "tags": ["a"]})

    assert thaw_metadata(request.metadata) == {"signal": "breakout", "score": 3, "tags": ["a"]}
    assert request.metadata["tags"] == ("a",)


@pytest.mark.parametrize("metadata", [{"x": object()}, {"x": float("nan")}, {"x": float("inf")}, {"x": D("1.5")}, {"x": {1, 2}}])
def test_metadata_that_is_not_json_is_refused_naming_metadata(metadata: dict) -> None:
    text = refusal("metadata", symbol="INFY", side="BUY", quantity=1, metadata=metadata)

    assert "metadata: must be JSON-serializable" in text


@pytest.mark.parametrize("metadata", [{1: "x"}, {"a": {None: 1}}, {"a": [{(1, 2): 1}]}])
def test_metadata_with_a_key_that_is_not_a_string_is_refused_naming_metadata(metadata: dict) -> None:
    text = refusal("metadata", symbol="INFY", side="BUY", quantity=1, metadata=metadata)

    assert "is not a string" in text


@pytest.mark.parametrize("metadata", [None, [], "{}", [("a", 1)]])
def test_metadata_that_is_not_a_mapping_is_refused_naming_metadata(metadata: object) -> None:
    text = refusal("metadata", symbol="INFY", side="BUY", quantity=1, metadata=metadata)

    assert "metadata: must be a dict" in text


def test_metadata_limits_are_64_kib_and_32_levels() -> None:
    assert MAX_METADATA_BYTES == 65_536
    assert MAX_METADATA_DEPTH == 32


@pytest.mark.parametrize("char", ["x", "é", "€", "😀"])
def test_metadata_of_exactly_the_byte_limit_is_accepted(char: str) -> None:
    size = MAX_METADATA_BYTES - (MAX_METADATA_BYTES - 8) % len(char.encode("utf-8"))
    metadata = metadata_of_size(size, char)

    assert OrderRequest(symbol="INFY", side="BUY", quantity=1, metadata=metadata).metadata == metadata


def test_metadata_of_exactly_65536_bytes_is_accepted() -> None:
    metadata = metadata_of_size(65_536)

    assert OrderRequest(symbol="INFY", side="BUY", quantity=1, metadata=metadata).metadata == metadata


def test_metadata_one_byte_over_the_limit_is_refused_naming_metadata_and_the_limit() -> None:
    text = refusal("metadata", symbol="INFY", side="BUY", quantity=1, metadata=metadata_of_size(65_537))

    assert "metadata: 65537 bytes exceeds the limit of 65536 bytes" in text


def test_metadata_size_is_counted_in_utf8_bytes_not_characters() -> None:
    # 32,768 characters of two bytes each: half the limit in characters, over it in bytes.
    text = refusal("metadata", symbol="INFY", side="BUY", quantity=1, metadata={"k": "é" * 32_768})

    assert "metadata: 65544 bytes exceeds the limit of 65536 bytes" in text


def test_metadata_of_70000_bytes_is_refused_with_its_size() -> None:
    text = refusal("metadata", symbol="INFY", side="BUY", quantity=1, metadata=metadata_of_size(70_000))

    assert "metadata: 70000 bytes exceeds the limit of 65536 bytes" in text


def test_metadata_sharing_one_list_exponentially_is_refused_without_walking_it_all() -> None:
    # 2**30 leaves once written out; a few dozen objects in memory. (The error is read
    # through errors(), not str(): pydantic's text repr()s the whole input.)
    bomb: object = ["x" * 16]
    for _ in range(30):
        bomb = [bomb, bomb]
    started = time.monotonic()

    with pytest.raises(ValidationError) as info:
        OrderRequest(symbol="INFY", side="BUY", quantity=1, metadata={"bomb": bomb})

    assert time.monotonic() - started < 5
    assert blamed_field(info.value) == "metadata"
    assert "exceeds the limit of 65536 bytes" in info.value.errors()[0]["msg"]


@pytest.mark.parametrize(
    "metadata",
    [
        {"a\x00b": 1},
        {"\x00": 1},
        {"outer": {"inner\x00": 1}},
        {"a": "b\x00"},
        {"a": ["ok", {"deep": ["x", "\x00"]}]},
        {"a": ("\x00",)},
    ],
)
def test_metadata_with_a_nul_character_in_a_key_or_value_is_refused_naming_metadata(metadata: dict) -> None:
    text = refusal("metadata", symbol="INFY", side="BUY", quantity=1, metadata=metadata)

    assert "contains a NUL character" in text


def test_metadata_with_a_lone_surrogate_is_refused_naming_metadata() -> None:
    text = refusal("metadata", symbol="INFY", side="BUY", quantity=1, metadata={"k": "\ud800"})

    assert "not UTF-8" in text


def nested(depth: int) -> dict[str, Any]:
    """{"n": {"n": ... {}}}: ``depth`` dicts inside the outer one."""
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"n": value}
    return value


def test_metadata_nested_to_the_depth_limit_is_accepted() -> None:
    metadata = nested(MAX_METADATA_DEPTH)

    assert thaw_metadata(OrderRequest(symbol="INFY", side="BUY", quantity=1, metadata=metadata).metadata) == metadata


@pytest.mark.parametrize("depth", [MAX_METADATA_DEPTH + 1, 10_000])
def test_metadata_nested_deeper_than_the_limit_is_refused_naming_metadata(depth: int) -> None:
    text = refusal("metadata", symbol="INFY", side="BUY", quantity=1, metadata=nested(depth))

    assert f"nested deeper than {MAX_METADATA_DEPTH} levels" in text


def test_metadata_that_contains_itself_is_refused_naming_metadata() -> None:
    loop: dict[str, Any] = {"a": []}
    loop["a"].append(loop)

    text = refusal("metadata", symbol="INFY", side="BUY", quantity=1, metadata=loop)

    assert "contains itself" in text


def test_metadata_may_share_a_value_that_is_not_a_loop() -> None:
    shared = [1, 2]
    request = OrderRequest(symbol="INFY", side="BUY", quantity=1, metadata={"a": shared, "b": shared})

    assert request.metadata["a"] == request.metadata["b"] == (1, 2)


def test_enum_and_int_subclass_values_in_metadata_are_stored_as_plain_values() -> None:
    request = OrderRequest(symbol="INFY", side="BUY", quantity=1, metadata={"side": Side.SELL, "flag": True})

    assert type(request.metadata["side"]) is str and request.metadata["side"] == "SELL"
    assert request.metadata["flag"] is True


# --- metadata is frozen ---------------------------------------------------------------


def test_changing_the_dict_passed_in_does_not_change_the_request() -> None:
    metadata: dict[str, Any] = {"signal": "breakout", "levels": [1, 2], "nested": {"k": "v"}}
    request = OrderRequest(symbol="INFY", side="BUY", quantity=1, metadata=metadata)

    metadata["signal"] = "changed"
    metadata["new"] = 1
    metadata["levels"].append(3)
    metadata["nested"]["k"] = "changed"

    assert thaw_metadata(request.metadata) == {"signal": "breakout", "levels": [1, 2], "nested": {"k": "v"}}


def test_request_metadata_cannot_be_changed() -> None:
    request = OrderRequest(symbol="INFY", side="BUY", quantity=1, metadata={"a": 1, "nested": {"k": "v"}, "levels": [1]})

    with pytest.raises(TypeError):
        request.metadata["a"] = 2  # type: ignore[index]
    with pytest.raises(TypeError):
        del request.metadata["a"]  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        request.metadata["nested"]["k"] = "changed"
    with pytest.raises(AttributeError):
        request.metadata["levels"].append(2)

    assert thaw_metadata(request.metadata) == {"a": 1, "nested": {"k": "v"}, "levels": [1]}


def test_the_value_read_back_from_model_dump_is_a_plain_copy() -> None:
    request = OrderRequest(symbol="INFY", side="BUY", quantity=1, metadata={"nested": {"k": "v"}, "levels": [1, [2]]})

    dumped = request.model_dump()["metadata"]
    dumped["nested"]["k"] = "changed"
    dumped["levels"].append(3)

    assert type(dumped) is dict and type(dumped["levels"]) is list and type(dumped["levels"][1]) is list
    assert thaw_metadata(request.metadata) == {"nested": {"k": "v"}, "levels": [1, [2]]}


def test_model_dump_gives_json_ready_plain_data() -> None:
    request = OrderRequest(**limit_buy(metadata={"nested": {"k": "v"}, "levels": [1, 2.5, None]}))

    assert request.model_dump()["metadata"] == {"nested": {"k": "v"}, "levels": [1, 2.5, None]}
    assert json.loads(json.dumps(request.model_dump(mode="json")))["metadata"] == {"nested": {"k": "v"}, "levels": [1, 2.5, None]}


def test_a_request_rebuilt_from_its_dump_or_its_own_metadata_is_equal() -> None:
    request = OrderRequest(**limit_buy(strategy_id=3, metadata={"nested": {"k": "v"}, "levels": [1, [2]]}))

    assert OrderRequest(**request.model_dump()) == request
    assert OrderRequest(**{**request.model_dump(), "metadata": request.metadata}) == request


def test_a_request_survives_deepcopy_and_pickle() -> None:
    request = OrderRequest(**limit_buy(metadata={"nested": {"k": "v"}, "levels": [1]}))

    assert copy.deepcopy(request) == request
    assert pickle.loads(pickle.dumps(request)) == request


# --- shape and immutability -----------------------------------------------------------


@pytest.mark.parametrize("extra", ["qty", "tradingsymbol", "transaction_type", "tag"])
def test_unknown_fields_are_refused_naming_the_field(extra: str) -> None:
    text = refusal(extra, symbol="INFY", side="BUY", quantity=1, **{extra: "x"})

    assert "Extra inputs are not permitted" in text


@pytest.mark.parametrize("field", ["symbol", "side", "quantity"])
def test_missing_required_field_is_refused_naming_it(field: str) -> None:
    kwargs = {"symbol": "INFY", "side": "BUY", "quantity": 1}
    del kwargs[field]

    refusal(field, **kwargs)


@pytest.mark.parametrize(
    ("field", "value"),
    [("quantity", 2), ("price", D("101.00")), ("side", Side.SELL), ("symbol", "TCS"), ("stop_loss", D("1.00"))],
)
def test_assigning_to_a_field_of_a_request_raises_and_leaves_it_unchanged(field: str, value: object) -> None:
    request = OrderRequest(**limit_buy())
    before = request.model_dump()

    with pytest.raises(ValueError, match=field):
        setattr(request, field, value)

    assert request.model_dump() == before


def test_equal_requests_compare_equal() -> None:
    assert OrderRequest(**limit_buy()) == OrderRequest(**limit_buy(price="100.00"))
