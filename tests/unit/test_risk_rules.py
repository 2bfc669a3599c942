"""The pre-trade rules of issue 17 as pure functions, each on both sides of its boundary:
protective prices, the freeze quantity, gross exposure, order rate, duplicates, the price
collar and circuit limits, market hours with holidays, the daily loss limit, trades a day.
Time is passed in."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest

from domain.instruments import Instrument, InstrumentBook
from domain.market_hours import IST, MarketCalendar, ist_date, parse_holidays
from domain.order_request import OrderRequest
from domain.risk import (
    Account,
    DayPnl,
    Exposure,
    Flow,
    RiskLimits,
    check_circuit_limits,
    check_daily_loss,
    check_duplicate,
    check_gross_exposure,
    check_instrument,
    check_market_hours,
    check_max_trades_per_day,
    check_order_rate,
    check_price_collar,
    check_protective_prices,
    daily_loss_reached,
    duplicate_key,
    validate_order,
)

D = Decimal
LIMITS = RiskLimits(capital=D("1000000"))
CALENDAR = MarketCalendar(parse_holidays(resources.files("domain").joinpath("data/holidays.csv").read_text()))


def ist(text: str) -> datetime:
    """An IST wall time as an aware UTC instant."""
    return datetime.fromisoformat(text).replace(tzinfo=IST).astimezone(timezone.utc)


def order(side: str = "BUY", quantity: int = 10, **fields: Any) -> OrderRequest:
    defaults: dict[str, Any] = {"order_type": "LIMIT", "price": D("100.00")}
    if fields.get("order_type") in ("MARKET", "SL-M"):
        defaults.pop("price")
    return OrderRequest(symbol="INFY", side=side, quantity=quantity, **{**defaults, **fields})


def limits(**overrides: Any) -> RiskLimits:
    return RiskLimits(capital=D("1000000"), **overrides)


# --- stop-loss and take-profit distance -------------------------------------------------


def test_protective_prices_within_the_distance_pass_and_just_beyond_are_refused() -> None:
    rule = limits(max_stop_distance_percent=D(5))
    inside = check_protective_prices(order(stop_loss=D("95.00"), take_profit=D("105.00")), D("100.00"), rule)
    beyond_stop = check_protective_prices(order(stop_loss=D("94.99")), D("100.00"), rule)
    beyond_target = check_protective_prices(order(take_profit=D("105.01")), D("100.00"), rule)

    assert inside.passed, inside.reason
    assert inside.numbers["stop_loss_distance_percent"] == "5"
    assert not beyond_stop.passed
    assert beyond_stop.reason == "stop-loss 94.99 is 5.01% from the entry price 100.00, more than the 5% allowed (max_stop_distance_percent)"
    assert not beyond_target.passed
    assert "take-profit 105.01 is 5.01% from the entry price 100.00" in beyond_target.reason


def test_a_market_orders_protective_prices_must_be_on_the_right_side_of_the_last_price() -> None:
    buy = order(order_type="MARKET", stop_loss=D("95.00"), take_profit=D("99.00"))
    sell = order("SELL", order_type="MARKET", stop_loss=D("99.00"))

    wrong_target = check_protective_prices(buy, D("100.00"), LIMITS)
    wrong_stop = check_protective_prices(sell, D("100.00"), LIMITS)
    right = check_protective_prices(order(order_type="MARKET", stop_loss=D("99.95"), take_profit=D("100.05")), D("100.00"), LIMITS)

    assert wrong_target.reason == "take-profit 99.00 must be above the entry price 100.00 for a BUY"
    assert wrong_stop.reason == "stop-loss 99.00 must be above the entry price 100.00 for a SELL"
    assert right.passed and "no limit" not in right.reason


# --- freeze quantity (F&O) and lot multiples -------------------------------------------------


def nifty_book() -> InstrumentBook:
    future = Instrument("NFO", "NIFTY26DECFUT", D("0.05"), 75, "FUT", "NFO-FUT", "NIFTY")
    return InstrumentBook.of([future], ist_date(ist("2026-12-01T08:45:00")))


def fut(quantity: int) -> OrderRequest:
    return OrderRequest(symbol="NIFTY26DECFUT", exchange="NFO", side="BUY", quantity=quantity, order_type="LIMIT",
                        price=D("24000.00"), product="NRML")


def test_a_derivative_at_its_freeze_quantity_passes_and_one_lot_more_is_refused() -> None:
    rule = limits(freeze_quantities={"NIFTY": 1800})

    at = check_instrument(fut(1800), nifty_book(), rule)
    above = check_instrument(fut(1875), nifty_book(), rule)
    unknown = check_instrument(fut(1875), nifty_book(), LIMITS)

    assert at.passed and at.numbers["freeze_quantity"] == "1800"
    assert not above.passed
    assert above.reason == ("quantity: 1875 is above the exchange's freeze quantity 1800 for NFO:NIFTY26DECFUT: "
                            "the exchange refuses larger orders, split it")
    assert unknown.passed  # no freeze quantity known: only the lot multiple applies


def test_a_symbols_own_freeze_quantity_wins_over_its_underlyings_and_lots_still_apply() -> None:
    rule = limits(freeze_quantities={"NIFTY": 1800, "NIFTY26DECFUT": 900})

    assert check_instrument(fut(900), nifty_book(), rule).passed
    assert not check_instrument(fut(975), nifty_book(), rule).passed
    assert "not a multiple of NFO:NIFTY26DECFUT's lot size 75" in check_instrument(fut(80), nifty_book(), rule).reason


# --- gross exposure -------------------------------------------------------------------------


def test_gross_exposure_up_to_the_maximum_passes_and_a_rupee_more_is_refused() -> None:
    rule = limits(max_gross_exposure=D("10000"))
    flow = Flow(gross_exposure=D("9000"))

    at = check_gross_exposure(D("100.00"), order(quantity=10), flow, False, rule)
    above = check_gross_exposure(D("100.01"), order(quantity=10, price=D("100.01")), flow, False, rule)
    reducing = check_gross_exposure(D("100.01"), order("SELL", quantity=10, price=D("100.01")), flow, True, rule)

    assert at.passed and at.numbers == {"gross_exposure": "10000.00", "limit": "10000.00"}
    assert not above.passed
    assert above.reason == ("gross exposure would be 10000.10 (positions and working orders 9000.00 plus this order's "
                            "1000.10), above the maximum 10000.00")
    assert reducing.passed


# --- order rate ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "setting, flow_field, words",
    [
        ("max_orders_per_second", "orders_last_second", "orders a second"),
        ("max_orders_per_minute", "orders_last_minute", "orders a minute"),
        ("max_strategy_orders_per_second", "strategy_orders_last_second", "orders a second from strategy 7"),
        ("max_strategy_orders_per_minute", "strategy_orders_last_minute", "orders a minute from strategy 7"),
    ],
)
def test_the_order_rate_allows_the_limit_and_refuses_one_more(setting: str, flow_field: str, words: str) -> None:
    rule = limits(**{setting: 5})
    request = order(strategy_id=7)

    fifth = check_order_rate(request, Flow(**{flow_field: 4}), False, rule)
    sixth = check_order_rate(request, Flow(**{flow_field: 5}), False, rule)
    exit_ = check_order_rate(request, Flow(**{flow_field: 5}), True, rule)

    assert fifth.passed
    assert not sixth.passed
    assert sixth.reason == f"order rate: this would be 6 {words}, above the limit of 5 ({setting})"
    assert sixth.numbers[setting] == "6/5"
    assert exit_.passed


# --- duplicates ------------------------------------------------------------------------------


def test_the_same_order_within_the_window_is_a_duplicate_and_at_the_window_it_is_not() -> None:
    rule = limits(duplicate_window_seconds=D(2))
    now = ist("2026-12-01T10:00:00")
    request = order(strategy_id=3)

    inside = check_duplicate(request, Flow(now=now, duplicate_at=now - timedelta(seconds=1.999)), False, rule)
    at = check_duplicate(request, Flow(now=now, duplicate_at=now - timedelta(seconds=2)), False, rule)
    exit_ = check_duplicate(request, Flow(now=now, duplicate_at=now), True, rule)

    assert not inside.passed
    assert inside.reason == ("duplicate order: the same BUY of 10 NSE:INFY at 100.00 from strategy 3 was accepted "
                             "1.999s ago, within the 2s duplicate window")
    assert at.passed
    assert exit_.passed


def test_a_different_strategy_quantity_price_or_side_is_not_the_same_order() -> None:
    base = duplicate_key(order(strategy_id=3))

    assert duplicate_key(order(strategy_id=3)) == base
    for other in (order(strategy_id=4), order(quantity=11, strategy_id=3), order(price=D("100.05"), strategy_id=3),
                  order("SELL", strategy_id=3)):
        assert duplicate_key(other) != base


# --- price collar and circuit limits ---------------------------------------------------------


def test_a_price_at_the_collar_passes_and_just_beyond_is_refused() -> None:
    rule = limits(price_collar_percent=D(10))

    at = check_price_collar(order(price=D("110.00")), D("100.00"), rule)
    beyond = check_price_collar(order(price=D("110.01")), D("100.00"), rule)
    below = check_price_collar(order("SELL", price=D("89.99")), D("100.00"), rule)
    no_price = check_price_collar(order(price=D("500.00")), None, rule)

    assert at.passed
    assert not beyond.passed
    assert beyond.reason == "limit price 110.01 is 10.01% from the last price 100.00, beyond the 10% price collar (a typing error?)"
    assert not below.passed
    assert no_price.passed and "no last price" in no_price.reason
    hair = check_price_collar(order(price=D("1100.05"), tick_size=D("0.05")), D("1000.00"), rule)  # 10.005%: shown as 10.01 (rounded)
    assert not hair.passed


def test_a_trigger_far_from_the_last_price_is_collared_too() -> None:
    rule = limits(price_collar_percent=D(10))
    stop = order("SELL", order_type="SL-M", trigger_price=D("80.00"))

    result = check_price_collar(stop, D("100.00"), rule)

    assert not result.passed and result.reason.startswith("trigger price 80.00 is 20% from the last price 100.00")


def test_prices_at_the_circuit_limits_pass_and_beyond_them_are_refused() -> None:
    circuit = (D("90.00"), D("110.00"))

    assert check_circuit_limits(order(price=D("110.00")), circuit).passed
    assert check_circuit_limits(order(price=D("90.00")), circuit).passed
    above = check_circuit_limits(order(price=D("110.05")), circuit)
    below = check_circuit_limits(order(price=D("89.95")), circuit)
    assert above.reason == "limit price 110.05 is above the upper circuit limit 110.00 of NSE:INFY today"
    assert below.reason == "limit price 89.95 is below the lower circuit limit 90.00 of NSE:INFY today"
    assert check_circuit_limits(order(price=D("500.00")), None).passed  # not known: not checked


# --- market hours and holidays ---------------------------------------------------------------


HOURS = limits(enforce_market_hours=True)


def hours(at: str, exchange: str = "NSE") -> Any:
    request = order(exchange=exchange)
    return check_market_hours(request, Flow(now=ist(at), calendar=CALENDAR), HOURS)


def test_nse_takes_orders_from_9_15_and_refuses_them_from_15_30() -> None:
    assert not hours("2026-12-01T09:14:59").passed
    assert hours("2026-12-01T09:15:00").passed
    assert hours("2026-12-01T15:29:59").passed
    late = hours("2026-12-01T15:30:00")
    assert not late.passed
    assert late.reason == "outside market hours: NSE is open 09:15-15:30 IST; now is Tue 01 Dec 2026 15:30:00 IST; to place it for the next session use variety \"amo\""


def test_weekends_and_listed_holidays_are_closed_and_the_day_after_is_open() -> None:
    saturday = hours("2026-12-05T11:00:00")
    christmas = hours("2026-12-25T11:00:00")

    assert saturday.reason == "outside market hours: NSE is closed on weekends (now Sat 05 Dec 2026 11:00:00 IST); to place it for the next session use variety \"amo\""
    assert christmas.reason == "outside market hours: NSE is closed for Christmas (now Fri 25 Dec 2026 11:00:00 IST); to place it for the next session use variety \"amo\""
    assert hours("2026-12-24T11:00:00").passed
    assert not hours("2026-11-10T11:00:00", exchange="NFO").passed  # Diwali Balipratipada closes F&O too


def test_each_exchange_keeps_its_own_hours_and_the_rule_can_be_off() -> None:
    assert hours("2026-12-01T16:59:59", exchange="CDS").passed
    assert not hours("2026-12-01T17:00:00", exchange="CDS").passed
    assert hours("2026-12-01T23:29:59", exchange="MCX").passed
    assert not hours("2026-12-01T23:30:00", exchange="MCX").passed
    off = check_market_hours(order(), Flow(now=ist("2026-12-05T03:00:00"), calendar=CALENDAR), LIMITS)
    assert off.passed and off.reason == "market hours not enforced"


def amo_hours(at: str, exchange: str = "NSE", enforced: RiskLimits = HOURS) -> Any:
    request = order(exchange=exchange, variety="amo")
    return check_market_hours(request, Flow(now=ist(at), calendar=CALENDAR), enforced)


def test_an_amo_passes_only_outside_the_session_and_is_refused_in_it() -> None:
    evening = amo_hours("2026-12-01T15:30:00")
    assert evening.passed
    assert evening.reason == "after-market order: NSE is open 09:15-15:30 IST; now is Tue 01 Dec 2026 15:30:00 IST"
    assert evening.numbers["variety"] == "amo"
    assert amo_hours("2026-12-05T11:00:00").passed  # a Saturday
    assert amo_hours("2026-12-25T11:00:00").passed  # a holiday
    assert amo_hours("2026-12-01T09:14:59").passed  # before the open
    during = amo_hours("2026-12-01T09:15:00")
    assert not during.passed
    assert during.reason == (
        "variety amo is for after-market orders and Kite refuses it during market hours: "
        "NSE is open 09:15-15:30 IST (now Tue 01 Dec 2026 09:15:00 IST); place it with variety \"regular\""
    )
    assert not amo_hours("2026-12-01T16:00:00", exchange="MCX").passed  # MCX still trading
    assert amo_hours("2026-12-01T23:30:00", exchange="MCX").passed
    off = amo_hours("2026-12-01T11:00:00", enforced=LIMITS)  # not enforced (paper): the broker decides
    assert off.passed and off.reason == "market hours not enforced"


def test_a_regular_order_outside_hours_is_told_to_use_variety_amo() -> None:
    refused = hours("2026-12-01T18:00:00")
    assert not refused.passed
    assert refused.reason.endswith('; to place it for the next session use variety "amo"')
    assert refused.numbers["variety"] == "regular"


def test_the_ist_day_turns_at_midnight_ist_not_utc() -> None:
    assert ist_date(datetime(2026, 11, 30, 18, 29, 59, tzinfo=timezone.utc)).isoformat() == "2026-11-30"
    assert ist_date(datetime(2026, 11, 30, 18, 30, 0, tzinfo=timezone.utc)).isoformat() == "2026-12-01"


def test_the_shipped_holiday_list_has_nse_2026_and_a_bad_line_is_named() -> None:
    nse = CALENDAR.holidays["NSE"]
    assert len([d for d in nse if d.year == 2026]) == 15
    with pytest.raises(ValueError, match="holidays line 2: '2026-13-01' is not a YYYY-MM-DD date"):
        parse_holidays("date,exchanges,name\n2026-13-01,NSE,Nothing\n")


# --- the daily loss limit and net P&L ----------------------------------------------------------


def test_a_loss_just_short_of_the_limit_passes_and_one_at_it_stops_new_risk() -> None:
    rule = limits(daily_loss_limit=D("5000"))
    short = DayPnl(realized=D("-4000"), unrealized=D("-900"), charges=D("99.99"))
    at = DayPnl(realized=D("-4000"), unrealized=D("-900"), charges=D("100"))

    assert not daily_loss_reached(short, rule) and daily_loss_reached(at, rule)
    assert check_daily_loss(Flow(day=short), False, rule).passed
    refused = check_daily_loss(Flow(day=at), False, rule)
    assert not refused.passed
    assert refused.reason == (
        "daily loss limit reached: net P&L today -5000.00 (realized -4000.00, unrealized -900.00, charges 100.00), "
        "at or past the limit of -5000.00; only orders that reduce a position are accepted today"
    )
    assert refused.numbers["day_net_pnl"] == "-5000.00"
    assert check_daily_loss(Flow(day=at), True, rule).passed  # closing out is always allowed


# --- trades a day ------------------------------------------------------------------------------


def test_the_last_trade_of_the_day_passes_and_the_next_is_refused_unless_it_reduces() -> None:
    rule = limits(max_trades_per_day=20)

    assert check_max_trades_per_day(Flow(orders_today=19), False, rule).passed
    refused = check_max_trades_per_day(Flow(orders_today=20), False, rule)
    assert refused.reason == "this would be trade 21 today, above the maximum of 20 a day"
    assert check_max_trades_per_day(Flow(orders_today=20), True, rule).passed


# --- all together --------------------------------------------------------------------------------


def test_validate_order_names_the_first_rule_broken_and_records_every_rule() -> None:
    rule = limits(price_collar_percent=D(5), daily_loss_limit=D("1000"))
    flow = Flow(now=ist("2026-12-01T10:00:00"), day=DayPnl(realized=D("-1000")), calendar=CALENDAR)

    result = validate_order(order(price=D("120.00"), stop_loss=D("119.00")), D("100.00"), Exposure(), Account(), rule, flow=flow)

    assert result.failed.name == "daily_loss"
    assert {c.name for c in result.checks if not c.passed} == {"daily_loss", "price_collar"}
