"""Default tick sizes by exchange, segment and price band (shared/ZERODHA.md, since
15 Apr 2025), and Kite's order statuses mapped onto ours."""
from __future__ import annotations

from decimal import Decimal

import pytest

from domain.enums import Exchange, OrderStatus
from domain.kite_status import KITE_TO_OMS, map_kite_status
from domain.ticks import default_tick_size, is_future, is_on_tick, is_option

D = Decimal
S = OrderStatus

# --- equity bands ---------------------------------------------------------------------


@pytest.mark.parametrize("exchange", [Exchange.NSE, Exchange.BSE])
@pytest.mark.parametrize(
    ("price", "tick"),
    [
        (D("0.01"), D("0.01")),
        (D("249.99"), D("0.01")),
        (D("250"), D("0.05")),
        (D("999.95"), D("0.05")),
        (D("1000"), D("0.10")),
        (D("4999.90"), D("0.10")),
        (D("5000"), D("0.50")),
        (D("9999.50"), D("0.50")),
        (D("10000"), D("1.00")),
        (D("19999"), D("1.00")),
        (D("20000"), D("5.00")),
        (D("150000"), D("5.00")),
    ],
)
def test_stock_tick_follows_the_price_band_with_each_bound_in_the_upper_band(
    exchange: Exchange, price: Decimal, tick: Decimal
) -> None:
    assert default_tick_size(exchange, "INFY", price) == tick


@pytest.mark.parametrize(("price", "tick"), [(D("249.99"), D("0.01")), (D("1300"), D("0.10")), (D("25000"), D("5.00"))])
def test_stock_futures_use_the_stock_table(price: Decimal, tick: Decimal) -> None:
    assert default_tick_size(Exchange.NFO, "RELIANCE24DECFUT", price) == tick


def test_a_cash_market_symbol_ending_in_ce_is_still_a_stock() -> None:
    assert default_tick_size(Exchange.NSE, "RELIANCE", D("1300")) == D("0.10")
    assert default_tick_size(Exchange.NSE, "ABCE", D("100")) == D("0.01")


# --- derivatives, currency, commodity -------------------------------------------------


@pytest.mark.parametrize(
    ("exchange", "symbol"),
    [
        (Exchange.NFO, "NIFTY24DEC24000CE"),
        (Exchange.NFO, "BANKNIFTY24DEC52000PE"),
        (Exchange.NFO, "FINNIFTY24DEC23000CE"),
        (Exchange.NFO, "MIDCPNIFTY24DEC12000PE"),
        (Exchange.BFO, "SENSEX24DEC80000CE"),
        (Exchange.BFO, "BANKEX24DEC60000PE"),
    ],
)
@pytest.mark.parametrize("price", [D("0.05"), D("12.35"), D("249.95"), D("250"), D("1200")])
def test_index_options_tick_at_5_paise_at_every_price(exchange: Exchange, symbol: str, price: Decimal) -> None:
    assert default_tick_size(exchange, symbol, price) == D("0.05")


@pytest.mark.parametrize(("price", "tick"), [(D("0.01"), D("0.01")), (D("249.99"), D("0.01")), (D("250"), D("0.05")), (D("600"), D("0.05"))])
def test_stock_options_tick_at_a_paisa_below_250_and_5_paise_from_250(price: Decimal, tick: Decimal) -> None:
    assert default_tick_size(Exchange.NFO, "RELIANCE24DEC1300CE", price) == tick
    assert default_tick_size(Exchange.NFO, "M&M24DEC3000PE", price) == tick


@pytest.mark.parametrize("symbol", ["USDINR24DECFUT", "EURINR24DEC90CE"])
@pytest.mark.parametrize("price", [D("1"), D("83.2525"), D("500")])
def test_currency_derivatives_tick_at_a_quarter_paisa(symbol: str, price: Decimal) -> None:
    assert default_tick_size(Exchange.CDS, symbol, price) == D("0.0025")


@pytest.mark.parametrize("price", [D("250.00"), D("72000")])
def test_commodities_without_their_own_tick_accept_any_paisa(price: Decimal) -> None:
    assert default_tick_size(Exchange.MCX, "GOLD25FEBFUT", price) == D("0.01")


def test_option_and_future_are_recognised_by_segment_and_suffix() -> None:
    assert is_option(Exchange.NFO, "NIFTY24DEC24000CE") and is_option(Exchange.BFO, "SENSEX24DEC80000PE")
    assert not is_option(Exchange.NSE, "NIFTY24DEC24000CE")
    assert not is_option(Exchange.NFO, "NIFTY24DECFUT")
    assert is_future(Exchange.NFO, "NIFTY24DECFUT") and is_future(Exchange.CDS, "USDINR24DECFUT")
    assert is_future(Exchange.MCX, "CRUDEOIL25JANFUT")
    assert not is_future(Exchange.NSE, "FUT")


# --- is_on_tick -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "tick", "on_tick"),
    [
        (D("100.05"), D("0.05"), True),
        (D("100.03"), D("0.05"), False),
        (D("100"), D("0.05"), True),
        (D("100.00"), D("0.01"), True),
        (D("100.001"), D("0.01"), False),
        (D("83.2525"), D("0.0025"), True),
        (D("83.2530"), D("0.0025"), False),
        (D("20005"), D("5.00"), True),
        (D("20001"), D("5.00"), False),
        (D("100"), D("0"), False),
    ],
)
def test_price_is_on_tick_exactly_when_it_is_a_whole_number_of_ticks(price: Decimal, tick: Decimal, on_tick: bool) -> None:
    assert is_on_tick(price, tick) is on_tick


def test_is_on_tick_answers_for_prices_beyond_the_decimal_precision() -> None:
    # Decimal's "%" raises InvalidOperation once the quotient needs more than 28 digits.
    assert is_on_tick(D("1000000000000000000000000000001"), D("5.00")) is False
    assert is_on_tick(D("1E30"), D("5.00")) is True


# --- Kite statuses --------------------------------------------------------------------

# Every Kite status the OMS knows, written out here independently of the table.
KITE_STATUSES = {
    "PUT ORDER REQ RECEIVED": S.SUBMITTED,
    "VALIDATION PENDING": S.SUBMITTED,
    "OPEN PENDING": S.SUBMITTED,
    "AMO REQ RECEIVED": S.OPEN,
    "OPEN": S.OPEN,
    "TRIGGER PENDING": S.OPEN,
    "MODIFY VALIDATION PENDING": S.OPEN,
    "MODIFY PENDING": S.OPEN,
    "MODIFIED": S.OPEN,
    "UPDATE": S.OPEN,
    "CANCEL PENDING": S.OPEN,
    "COMPLETE": S.FILLED,
    "CANCELLED": S.CANCELLED,
    "CANCELLED AMO": S.CANCELLED,
    "REJECTED": S.REJECTED,
}


def test_the_mapping_covers_exactly_the_listed_kite_statuses() -> None:
    assert dict(KITE_TO_OMS) == KITE_STATUSES


@pytest.mark.parametrize(("kite", "ours"), sorted(KITE_STATUSES.items()))
def test_each_kite_status_maps_to_ours(kite: str, ours: OrderStatus) -> None:
    assert map_kite_status(kite) is ours


@pytest.mark.parametrize(("kite", "ours"), sorted(KITE_STATUSES.items()))
def test_kite_status_in_lower_case_with_surrounding_whitespace_maps_the_same(kite: str, ours: OrderStatus) -> None:
    assert map_kite_status(f"  {kite.lower()}\n") is ours
    assert map_kite_status(kite.title()) is ours


def test_no_kite_status_maps_to_pending_or_failed() -> None:
    assert not {S.PENDING, S.FAILED} & set(KITE_TO_OMS.values())


@pytest.mark.parametrize("kite", ["", "   ", "PARTIALLY FILLED", "FILLED", "OPENED", "CANCELED", "TRIGGER_PENDING", "COMPLETED"])
def test_unknown_kite_status_raises_value_error_quoting_it(kite: str) -> None:
    with pytest.raises(ValueError, match="unknown Kite order status") as info:
        map_kite_status(kite)

    assert repr(kite) in str(info.value)
