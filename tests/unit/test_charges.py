"""Charges on fills: rates by segment, brokerage per executed order across partial
fills, exact (unrounded) Decimals, and the published checks from shared/ZERODHA.md."""
from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.charges import (
    ZERODHA_RATES,
    Charges,
    RateCard,
    Segment,
    charges_for_fill,
    segment_of,
)
from domain.enums import Exchange, Product, Side

D = Decimal


def rates_with(segment: Segment, **changes: Decimal | None) -> RateCard:
    """ZERODHA_RATES with some of one segment's rates replaced."""
    segments = dict(ZERODHA_RATES.segments)
    segments[segment] = replace(segments[segment], **changes)
    return RateCard(as_of=ZERODHA_RATES.as_of, source="test", segments=segments)


# The rate both published checks in ZERODHA.md were computed at.
OLDER_TXN_PCT = D("0.00345")


# --- segment_of ---------------------------------------------------------------------


@pytest.mark.parametrize("exchange", [Exchange.NSE, Exchange.BSE])
@pytest.mark.parametrize("product", [Product.CNC, Product.NRML])
def test_cash_market_cnc_and_nrml_are_equity_delivery(exchange: Exchange, product: Product) -> None:
    assert segment_of(exchange, "INFY", product) is Segment.EQUITY_DELIVERY


@pytest.mark.parametrize("exchange", [Exchange.NSE, Exchange.BSE])
def test_cash_market_mis_is_equity_intraday(exchange: Exchange) -> None:
    assert segment_of(exchange, "INFY", Product.MIS) is Segment.EQUITY_INTRADAY


@pytest.mark.parametrize(
    ("exchange", "symbol", "segment"),
    [
        (Exchange.NFO, "NIFTY26NOV24000CE", Segment.OPTIONS),
        (Exchange.NFO, "BANKNIFTY26NOV52000PE", Segment.OPTIONS),
        (Exchange.NFO, "NIFTY26NOVFUT", Segment.FUTURES),
        (Exchange.BFO, "SENSEX26NOV80000CE", Segment.OPTIONS),
        (Exchange.BFO, "SENSEX26NOVFUT", Segment.FUTURES),
        (Exchange.CDS, "USDINR26NOV84CE", Segment.CURRENCY_OPTIONS),
        (Exchange.CDS, "USDINR26NOV84PE", Segment.CURRENCY_OPTIONS),
        (Exchange.CDS, "USDINR26NOVFUT", Segment.CURRENCY_FUTURES),
        (Exchange.MCX, "GOLDM26NOV75000CE", Segment.COMMODITY_OPTIONS),
        (Exchange.MCX, "CRUDEOIL26NOV6000PE", Segment.COMMODITY_OPTIONS),
        (Exchange.MCX, "CRUDEOIL26NOVFUT", Segment.COMMODITY_FUTURES),
    ],
)
@pytest.mark.parametrize("product", [Product.NRML, Product.MIS])
def test_derivatives_ending_ce_or_pe_are_options_and_the_rest_futures_whatever_the_product(
    exchange: Exchange, symbol: str, segment: Segment, product: Product
) -> None:
    assert segment_of(exchange, symbol, product) is segment


# --- Charges value ------------------------------------------------------------------


SAMPLE = Charges(
    brokerage=D("20"),
    stt=D("110.000"),
    exchange_charge=D("0.0444906"),
    sebi_fee=D("0.0014980"),
    stamp_duty=D("0.22470"),
    gst=D("0.008277948"),
)


def test_total_is_the_sum_of_the_six_components() -> None:
    assert SAMPLE.total == D("130.278966548")


def test_as_dict_gives_every_component_and_the_total_as_exact_strings() -> None:
    assert SAMPLE.as_dict() == {
        "brokerage": "20",
        "stt": "110.000",
        "exchange_charge": "0.0444906",
        "sebi_fee": "0.0014980",
        "stamp_duty": "0.22470",
        "gst": "0.008277948",
        "total": "130.278966548",
    }


def test_from_dict_inverts_as_dict() -> None:
    assert Charges.from_dict(SAMPLE.as_dict()) == SAMPLE


def test_from_dict_ignores_total_and_derives_it_again() -> None:
    d = SAMPLE.as_dict()
    d["total"] = "999"
    assert Charges.from_dict(d).total == D("130.278966548")


def test_from_dict_refuses_a_missing_component() -> None:
    d = SAMPLE.as_dict()
    del d["gst"]
    with pytest.raises(ValueError, match="gst"):
        Charges.from_dict(d)


def test_from_dict_refuses_an_unknown_component() -> None:
    with pytest.raises(ValueError, match="ctt"):
        Charges.from_dict({**SAMPLE.as_dict(), "ctt": "1"})


def test_charges_refuse_a_float_component() -> None:
    with pytest.raises(TypeError, match="stt"):
        Charges(D(0), 0.1, D(0), D(0), D(0), D(0))  # type: ignore[arg-type]


def test_adding_charges_adds_each_component() -> None:
    other = Charges(D("1"), D("2"), D("3"), D("4"), D("5"), D("6"))
    assert SAMPLE + other == Charges(
        brokerage=D("21"),
        stt=D("112.000"),
        exchange_charge=D("3.0444906"),
        sebi_fee=D("4.0014980"),
        stamp_duty=D("5.22470"),
        gst=D("6.008277948"),
    )


def test_zero_charges_are_the_identity_of_addition() -> None:
    assert Charges.zero().total == 0
    assert Charges.zero() + SAMPLE == SAMPLE


# --- the rate card ------------------------------------------------------------------


def test_the_zerodha_rate_card_covers_every_segment_and_is_dated_november_2026() -> None:
    assert set(ZERODHA_RATES.segments) == set(Segment)
    assert ZERODHA_RATES.as_of == date(2026, 11, 1)


def test_a_rate_card_cannot_be_changed_in_place() -> None:
    with pytest.raises(TypeError):
        ZERODHA_RATES.segments[Segment.OPTIONS] = ZERODHA_RATES.segments[Segment.FUTURES]  # type: ignore[index]


def test_segment_rates_are_either_flat_or_percentage_brokerage_not_both() -> None:
    with pytest.raises(ValueError, match="not both"):
        replace(ZERODHA_RATES.segments[Segment.OPTIONS], brokerage_pct=D("0.03"))


def test_a_rate_card_without_the_fills_segment_is_refused() -> None:
    card = RateCard(as_of=date(2026, 11, 1), source="cash only", segments={})
    with pytest.raises(ValueError, match="OPTIONS"):
        charges_for_fill(
            Exchange.NFO, "NIFTY26NOV24000CE", Product.NRML, Side.BUY, 75, D("100"), rates=card
        )


# --- equity delivery ----------------------------------------------------------------


def test_delivery_buy_pays_stt_transaction_sebi_stamp_and_gst_but_no_brokerage() -> None:
    c = charges_for_fill(Exchange.NSE, "INFY", Product.CNC, Side.BUY, 1, D("1498"))
    assert c.brokerage == 0
    assert c.stt == D("1.498")  # 0.1%
    assert c.exchange_charge == D("0.0444906")  # 0.00297%
    assert c.sebi_fee == D("0.001498")  # ₹10 per crore
    assert c.stamp_duty == D("0.2247")  # 0.015%
    assert c.gst == D("0.008277948")  # 18% of (0 + 0.001498 + 0.0444906)
    assert c.total == D("1.776966548")


def test_delivery_sell_pays_stt_too_but_no_stamp_duty() -> None:
    c = charges_for_fill(Exchange.NSE, "INFY", Product.CNC, Side.SELL, 1, D("1498"))
    assert c.stt == D("1.498")
    assert c.stamp_duty == 0
    assert c.total == D("1.552266548")


def test_components_keep_full_decimal_precision_unrounded() -> None:
    c = charges_for_fill(Exchange.NSE, "IDEA", Product.CNC, Side.BUY, 7, D("7.13"))
    # value 49.91
    assert c.exchange_charge == D("0.001482327")
    assert c.sebi_fee == D("0.00004991")
    assert c.gst == D("0.00027580266")


# --- intraday and futures: percentage brokerage capped per order --------------------


def test_intraday_brokerage_is_three_basis_points_of_a_small_order() -> None:
    c = charges_for_fill(Exchange.NSE, "INFY", Product.MIS, Side.BUY, 10, D("1498"))
    assert c.brokerage == D("4.494")


def test_intraday_brokerage_is_capped_at_20_rupees_on_a_large_order() -> None:
    c = charges_for_fill(Exchange.NSE, "INFY", Product.MIS, Side.BUY, 100, D("1498"))
    assert c.brokerage == D("20")


def test_intraday_brokerage_is_capped_at_20_rupees_per_order_across_partial_fills() -> None:
    args = (Exchange.NSE, "RELIANCE", Product.MIS, Side.BUY)
    first = charges_for_fill(*args, 50, D("1000"))
    second = charges_for_fill(*args, 30, D("1000"), prior_filled_value=D("50000"))
    third = charges_for_fill(*args, 20, D("1000"), prior_filled_value=D("80000"))
    assert first.brokerage == D("15")  # 0.03% of 50,000
    assert second.brokerage == D("5")  # 0.03% of 80,000 is 24: capped at 20, 15 already paid
    assert third.brokerage == D("0")  # the cap was reached
    assert first.brokerage + second.brokerage + third.brokerage == D("20")


def test_intraday_buy_pays_stamp_duty_and_no_stt() -> None:
    c = charges_for_fill(Exchange.NSE, "INFY", Product.MIS, Side.BUY, 400, D("1000"))
    assert c.stt == 0
    assert c.stamp_duty == D("12")  # 0.003% of 4,00,000


def test_intraday_sell_pays_stt_and_no_stamp_duty() -> None:
    c = charges_for_fill(Exchange.NSE, "INFY", Product.MIS, Side.SELL, 400, D("1100"))
    assert c.stt == D("110")  # 0.025% of 4,40,000
    assert c.stamp_duty == 0


def test_gst_is_18_percent_of_brokerage_sebi_fee_and_transaction_charge_only() -> None:
    c = charges_for_fill(Exchange.NSE, "INFY", Product.MIS, Side.SELL, 400, D("1100"))
    assert c.brokerage == D("20")
    assert c.exchange_charge == D("13.068")  # 0.00297% of 4,40,000
    assert c.sebi_fee == D("0.44")
    assert c.gst == D("6.03144")  # 18% of 33.508; STT is not taxed


def test_futures_sell_pays_stt_of_point_zero_five_percent() -> None:
    c = charges_for_fill(Exchange.NFO, "NIFTY26NOVFUT", Product.NRML, Side.SELL, 75, D("24000"))
    # value 18,00,000
    assert c.brokerage == D("20")
    assert c.stt == D("900")
    assert c.exchange_charge == D("31.14")  # 0.00173%
    assert c.sebi_fee == D("1.8")
    assert c.stamp_duty == 0
    assert c.gst == D("9.529200")  # 18% of 52.94
    assert c.total == D("962.469200")


def test_futures_buy_pays_stamp_duty_of_point_zero_zero_two_percent_and_no_stt() -> None:
    c = charges_for_fill(Exchange.NFO, "NIFTY26NOVFUT", Product.NRML, Side.BUY, 75, D("24000"))
    assert c.stt == 0
    assert c.stamp_duty == D("36")


# --- options: flat brokerage per order, charges on premium --------------------------


def test_options_brokerage_is_20_rupees_flat_on_the_first_fill_only() -> None:
    args = (Exchange.NFO, "NIFTY26NOV24000CE", Product.NRML, Side.BUY)
    first = charges_for_fill(*args, 75, D("100"))
    later = charges_for_fill(*args, 75, D("100"), prior_filled_value=D("7500"))
    assert first.brokerage == D("20")
    assert later.brokerage == 0


def test_options_sell_pays_stt_of_point_one_five_percent_of_premium() -> None:
    c = charges_for_fill(Exchange.NFO, "NIFTY26NOV24000CE", Product.NRML, Side.SELL, 75, D("100"))
    # premium turnover 7,500
    assert c.brokerage == D("20")
    assert c.stt == D("11.25")
    assert c.exchange_charge == D("2.62725")  # 0.03503%
    assert c.sebi_fee == D("0.0075")
    assert c.stamp_duty == 0
    assert c.gst == D("4.074255")  # 18% of 22.63475
    assert c.total == D("37.959005")


def test_options_buy_pays_stamp_duty_and_no_stt() -> None:
    c = charges_for_fill(Exchange.NFO, "NIFTY26NOV24000CE", Product.NRML, Side.BUY, 75, D("100"))
    assert c.stt == 0
    assert c.stamp_duty == D("0.225")  # 0.003%


# --- currency and commodity (best-known rates) --------------------------------------


def test_currency_futures_pay_no_stt_and_a_tiny_stamp_duty() -> None:
    buy = charges_for_fill(Exchange.CDS, "USDINR26NOVFUT", Product.NRML, Side.BUY, 1000, D("84.5"))
    sell = charges_for_fill(Exchange.CDS, "USDINR26NOVFUT", Product.NRML, Side.SELL, 1000, D("84.5"))
    assert buy.stt == 0 and sell.stt == 0
    assert buy.brokerage == D("20")  # 0.03% of 84,500 is 25.35: capped at 20
    assert buy.exchange_charge == D("0.29575")  # 0.00035%
    assert buy.stamp_duty == D("0.0845")  # 0.0001%


def test_currency_options_pay_20_rupees_flat_and_no_stt() -> None:
    c = charges_for_fill(Exchange.CDS, "USDINR26NOV84CE", Product.NRML, Side.SELL, 1000, D("0.25"))
    assert c.brokerage == D("20")
    assert c.stt == 0
    assert c.exchange_charge == D("0.07775")  # 0.0311% of 250


def test_commodity_futures_sell_pays_ctt_in_the_stt_field() -> None:
    c = charges_for_fill(Exchange.MCX, "CRUDEOIL26NOVFUT", Product.NRML, Side.SELL, 100, D("6000"))
    # value 6,00,000
    assert c.brokerage == D("20")
    assert c.stt == D("60")  # CTT 0.01%
    assert c.exchange_charge == D("12.6")  # 0.0021%
    assert c.stamp_duty == 0


def test_commodity_options_sell_pays_ctt_of_point_zero_five_percent_of_premium() -> None:
    c = charges_for_fill(Exchange.MCX, "CRUDEOIL26NOV6000CE", Product.NRML, Side.SELL, 100, D("150"))
    # premium turnover 15,000
    assert c.brokerage == D("20")
    assert c.stt == D("7.5")
    assert c.exchange_charge == D("6.27")  # 0.0418%


def test_commodity_options_buy_pays_stamp_duty_of_point_zero_zero_three_percent() -> None:
    c = charges_for_fill(Exchange.MCX, "CRUDEOIL26NOV6000CE", Product.NRML, Side.BUY, 100, D("150"))
    assert c.stt == 0
    assert c.stamp_duty == D("0.45")


# --- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize("quantity", [0, -1])
def test_a_fill_without_positive_quantity_is_refused(quantity: int) -> None:
    with pytest.raises(ValueError, match="quantity"):
        charges_for_fill(Exchange.NSE, "INFY", Product.CNC, Side.BUY, quantity, D("1498"))


@pytest.mark.parametrize("price", [D("0"), D("-1"), D("NaN")])
def test_a_fill_without_a_positive_finite_price_is_refused(price: Decimal) -> None:
    with pytest.raises(ValueError, match="price"):
        charges_for_fill(Exchange.NSE, "INFY", Product.CNC, Side.BUY, 1, price)


def test_a_float_price_is_refused() -> None:
    with pytest.raises(ValueError, match="price"):
        charges_for_fill(Exchange.NSE, "INFY", Product.CNC, Side.BUY, 1, 1498.0)  # type: ignore[arg-type]


def test_a_negative_prior_filled_value_is_refused() -> None:
    with pytest.raises(ValueError, match="prior_filled_value"):
        charges_for_fill(
            Exchange.NSE, "INFY", Product.MIS, Side.BUY, 1, D("1498"), prior_filled_value=D("-1")
        )


# --- the published checks (ZERODHA.md) ----------------------------------------------


def test_order_margins_mock_components_match_at_the_older_transaction_rate() -> None:
    """The official order_margins.json mock: INFY CNC buy, qty 1 at 1498, txn 0.00345%.

    Its STT, exchange and SEBI figures are ours exactly. It also shows brokerage 0.01
    (Zerodha's delivery brokerage is 0) and stamp duty 0.22 (0.2247 rounded to the
    paisa), so at the rates as specified the exact total is 1.78545122, not 1.79255122.
    """
    card = rates_with(Segment.EQUITY_DELIVERY, exchange_pct=OLDER_TXN_PCT)
    c = charges_for_fill(Exchange.NSE, "INFY", Product.CNC, Side.BUY, 1, D("1498"), rates=card)
    assert c.stt == D("1.498")
    assert c.exchange_charge == D("0.051681")
    assert c.sebi_fee == D("0.001498")
    assert c.brokerage == 0
    assert c.stamp_duty == D("0.2247")
    assert c.gst == D("0.00957222")  # 18% of (0 + 0.001498 + 0.051681)
    assert c.total == D("1.78545122")


def test_order_margins_mock_total_1_79255122_is_reproduced_with_its_brokerage_and_rounded_stamp() -> None:
    # A rate card with the mock's ₹0.01 delivery brokerage and the older txn rate; the
    # mock's stamp duty is the only rounded figure in it, so round that one to compare.
    card = rates_with(
        Segment.EQUITY_DELIVERY, exchange_pct=OLDER_TXN_PCT, brokerage_flat=D("0.01")
    )
    exact = charges_for_fill(Exchange.NSE, "INFY", Product.CNC, Side.BUY, 1, D("1498"), rates=card)
    as_mock = replace(exact, stamp_duty=exact.stamp_duty.quantize(D("0.01")))
    assert as_mock == Charges(
        brokerage=D("0.01"),
        stt=D("1.498"),
        exchange_charge=D("0.051681"),
        sebi_fee=D("0.001498"),
        stamp_duty=D("0.22"),
        gst=D("0.01137222"),  # the mock's igst 0.011372219999999999, without float noise
    )
    assert as_mock.total == D("1.79255122")


def test_calculator_default_intraday_round_trip_totals_204_39_at_the_older_rate() -> None:
    card = rates_with(Segment.EQUITY_INTRADAY, exchange_pct=OLDER_TXN_PCT)
    buy = charges_for_fill(Exchange.NSE, "X", Product.MIS, Side.BUY, 400, D("1000"), rates=card)
    sell = charges_for_fill(Exchange.NSE, "X", Product.MIS, Side.SELL, 400, D("1100"), rates=card)
    both = buy + sell
    assert both == Charges(
        brokerage=D("40"),
        stt=D("110"),
        exchange_charge=D("28.98"),
        sebi_fee=D("0.84"),
        stamp_duty=D("12"),
        gst=D("12.5676"),
    )
    assert both.total == D("204.3876")
    assert both.total.quantize(D("0.01")) == D("204.39")


# --- properties: splitting an order into fills -------------------------------------

INSTRUMENTS = [
    (Exchange.NSE, "INFY", Product.CNC),
    (Exchange.BSE, "INFY", Product.NRML),
    (Exchange.NSE, "INFY", Product.MIS),
    (Exchange.NFO, "NIFTY26NOVFUT", Product.NRML),
    (Exchange.NFO, "NIFTY26NOV24000PE", Product.NRML),
    (Exchange.CDS, "USDINR26NOVFUT", Product.NRML),
    (Exchange.CDS, "USDINR26NOV84CE", Product.NRML),
    (Exchange.MCX, "CRUDEOIL26NOVFUT", Product.NRML),
    (Exchange.MCX, "GOLDM26NOV75000PE", Product.NRML),
]
instruments = st.sampled_from(INSTRUMENTS)
sides = st.sampled_from(list(Side))
prices = st.integers(min_value=1, max_value=50_000_000).map(lambda paise: D(paise).scaleb(-2))
fill_quantities = st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=10)


def _charges_fill_by_fill(instrument, side, quantities, price) -> list[Charges]:  # type: ignore[no-untyped-def]
    exchange, symbol, product = instrument
    result = []
    prior = D(0)
    for quantity in quantities:
        result.append(
            charges_for_fill(exchange, symbol, product, side, quantity, price, prior_filled_value=prior)
        )
        prior += price * quantity
    return result


@given(instruments, sides, fill_quantities, prices)
def test_splitting_an_order_into_fills_never_changes_its_total_brokerage(
    instrument, side, quantities, price  # type: ignore[no-untyped-def]
) -> None:
    exchange, symbol, product = instrument
    whole = charges_for_fill(exchange, symbol, product, side, sum(quantities), price)
    parts = _charges_fill_by_fill(instrument, side, quantities, price)
    assert sum((p.brokerage for p in parts), D(0)) == whole.brokerage
    assert all(p.brokerage >= 0 for p in parts)
    assert whole.brokerage <= D("20")


@given(instruments, sides, fill_quantities, prices)
def test_charges_summed_over_fills_equal_the_charges_of_one_fill_of_the_whole_order(
    instrument, side, quantities, price  # type: ignore[no-untyped-def]
) -> None:
    exchange, symbol, product = instrument
    whole = charges_for_fill(exchange, symbol, product, side, sum(quantities), price)
    parts = _charges_fill_by_fill(instrument, side, quantities, price)
    summed = sum(parts, Charges.zero())
    # Exact equality component by component: nothing is rounded anywhere.
    assert summed == whole
    assert summed.total == whole.total
