"""OrderRequest: every field rule, the cross-field rules (price/trigger by order type,
stop-loss and take-profit sides, tick sizes) and immutability.

Every refusal is a ValueError (pydantic's ValidationError) that names the field it blames:
either the error's location is that field, or its message opens with "<field>:".
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from domain.enums import Exchange, OrderType, Product, Side, Validity
from domain.order_request import OrderRequest

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
    assert request.strategy_id == "default"
    assert request.price is None and request.trigger_price is None
    assert request.metadata == {}


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
    ],
)
def test_enumerated_field_outside_its_values_is_refused_naming_the_field_and_the_allowed_values(
    field: str, bad_value: object
) -> None:
    text = refusal(field, **{"symbol": "INFY", "side": "BUY", "quantity": 1, field: bad_value})

    assert "is not one of" in text


# --- quantity -------------------------------------------------------------------------


@pytest.mark.parametrize("quantity", [1, 75, 1_000_000])
def test_positive_int_quantity_is_accepted(quantity: int) -> None:
    assert OrderRequest(symbol="INFY", side="BUY", quantity=quantity).quantity == quantity


@pytest.mark.parametrize("quantity", [0, -1])
def test_zero_or_negative_quantity_is_refused_naming_quantity(quantity: int) -> None:
    text = refusal("quantity", symbol="INFY", side="BUY", quantity=quantity)

    assert "greater than 0" in text


@pytest.mark.parametrize("quantity", [True, False, 1.0, "1", D(1)])
def test_quantity_that_is_not_a_plain_int_is_refused_naming_quantity(quantity: object) -> None:
    refusal("quantity", symbol="INFY", side="BUY", quantity=quantity)


# --- money fields ---------------------------------------------------------------------


def _with_money(field: str, value: object) -> dict[str, Any]:
    """A request that would be valid with a sensible value in ``field``."""
    if field == "trigger_price":
        return {"symbol": "INFY", "side": "BUY", "quantity": 1, "order_type": "SL-M", "trigger_price": value}
    return limit_buy(**{field: value})


@pytest.mark.parametrize("field", MONEY_FIELDS)
def test_float_money_is_refused_naming_the_field(field: str) -> None:
    text = refusal(field, **_with_money(field, 100.5))

    assert f"{field}: floats are not accepted for money" in text


@pytest.mark.parametrize("field", MONEY_FIELDS)
@pytest.mark.parametrize("value", [D("-100.00"), D("0"), D("-0"), 0, "-5"])
def test_zero_or_negative_money_is_refused_naming_the_field(field: str, value: object) -> None:
    text = refusal(field, **_with_money(field, value))

    assert f"{field}: must be positive" in text


@pytest.mark.parametrize("field", MONEY_FIELDS)
@pytest.mark.parametrize("value", [D("NaN"), D("sNaN"), D("Infinity"), D("-Infinity"), "NaN", "Infinity", "inf"])
def test_nan_or_infinite_money_is_refused_naming_the_field(field: str, value: object) -> None:
    text = refusal(field, **_with_money(field, value))

    assert f"{field}: must be finite" in text


@pytest.mark.parametrize("field", MONEY_FIELDS)
@pytest.mark.parametrize("value", [True, "abc", "", [D(100)], object()])
def test_money_that_is_not_a_number_is_refused_naming_the_field(field: str, value: object) -> None:
    refusal(field, **_with_money(field, value))


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


def test_price_with_more_digits_than_decimal_precision_is_refused_as_off_tick_naming_price() -> None:
    # 10**30 + 1 is not a multiple of 5.00; the check must say so, not raise decimal.InvalidOperation.
    price = "1000000000000000000000000000001"

    text = refusal("price", **limit_buy(price=price))

    assert "is not a multiple of the tick size 5.00" in text


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


# --- strategy id and metadata ---------------------------------------------------------


@pytest.mark.parametrize("strategy_id", ["momo", "mean_rev.v2", "desk:alpha-1", "x" * 64])
def test_strategy_ids_of_the_allowed_alphabet_are_accepted(strategy_id: str) -> None:
    assert OrderRequest(symbol="INFY", side="BUY", quantity=1, strategy_id=strategy_id).strategy_id == strategy_id


@pytest.mark.parametrize("strategy_id", ["", "has space", "x" * 65, "tag/1"])
def test_strategy_ids_outside_the_alphabet_are_refused_naming_strategy_id(strategy_id: str) -> None:
    refusal("strategy_id", symbol="INFY", side="BUY", quantity=1, strategy_id=strategy_id)


def test_strategy_id_with_a_trailing_newline_is_refused_naming_strategy_id() -> None:
    refusal("strategy_id", symbol="INFY", side="BUY", quantity=1, strategy_id="momo\n")


def test_json_metadata_is_kept() -> None:
    request = OrderRequest(symbol="INFY", side="BUY", quantity=1, metadata={"signal": "breakout", "score": 3, "tags": ["a"]})

    assert request.metadata == {"signal": "breakout", "score": 3, "tags": ["a"]}


@pytest.mark.parametrize("metadata", [{"x": object()}, {"x": float("nan")}, {"x": D("1.5")}])
def test_metadata_that_is_not_json_is_refused_naming_metadata(metadata: dict) -> None:
    text = refusal("metadata", symbol="INFY", side="BUY", quantity=1, metadata=metadata)

    assert "metadata: must be JSON-serializable" in text


# --- shape and immutability -----------------------------------------------------------


@pytest.mark.parametrize("extra", ["qty", "tradingsymbol", "variety", "tag"])
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
