"""Positions: average price on adds, realized P&L on reductions, flips through zero,
shorts, marking and net P&L. Quantities are signed; every Decimal is exact."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.enums import Exchange, Product, Side
from domain.position import Position, apply_fill, mark

D = Decimal
BUY, SELL = Side.BUY, Side.SELL
T0 = datetime(2025, 6, 2, 9, 15, tzinfo=timezone.utc)


def flat() -> Position:
    return Position(Exchange.NSE, "INFY", Product.MIS)


def after(position: Position, *fills: tuple[Side, int, str]) -> Position:
    for side, quantity, price in fills:
        position = apply_fill(position, side, quantity, D(price)).after
    return position


# --- opening and adding ---------------------------------------------------------------


def test_a_new_position_is_flat_with_nothing_realized() -> None:
    position = flat()

    assert position.is_flat and position.quantity == 0
    assert position.average_price == 0 and position.realized_pnl == 0
    assert position.unrealized_pnl == 0 and position.net_pnl == 0
    assert position.key == (Exchange.NSE, "INFY", Product.MIS)


def test_first_buy_opens_a_long_at_the_fill_price_and_marks_it_there() -> None:
    change = apply_fill(flat(), BUY, 10, D("100.00"), at=T0)

    assert change.after.quantity == 10
    assert change.after.average_price == D("100.00")
    assert change.after.last_price == D("100.00") and change.after.updated_at == T0
    assert change.realized_pnl == 0 and change.before == flat()


def test_buy_10_at_100_then_10_at_110_averages_105() -> None:
    position = after(flat(), (BUY, 10, "100.00"), (BUY, 10, "110.00"))

    assert position.quantity == 20
    assert position.average_price == D("105.00")
    assert position.realized_pnl == 0


def test_adding_averages_by_quantity_rounded_to_eight_places() -> None:
    position = after(flat(), (BUY, 1, "100.00"), (BUY, 2, "100.05"))

    assert position.average_price == D("100.03333333")


# --- reducing, closing, flipping ------------------------------------------------------


def test_selling_5_at_120_from_20_long_at_105_realizes_75_and_keeps_the_average() -> None:
    position = after(flat(), (BUY, 10, "100.00"), (BUY, 10, "110.00"))

    change = apply_fill(position, SELL, 5, D("120.00"))

    assert change.realized_pnl == D("75.00")
    assert change.after.quantity == 15
    assert change.after.average_price == D("105.00")
    assert change.after.realized_pnl == D("75.00")


def test_selling_20_at_90_from_15_long_at_105_realizes_minus_225_and_opens_5_short_at_90() -> None:
    position = after(flat(), (BUY, 10, "100.00"), (BUY, 10, "110.00"), (SELL, 5, "120.00"))

    change = apply_fill(position, SELL, 20, D("90.00"))

    assert change.realized_pnl == D("-225.00")
    assert change.after.quantity == -5
    assert change.after.average_price == D("90.00")
    assert change.after.realized_pnl == D("-150.00")  # 75 - 225


def test_buying_back_a_5_short_at_80_from_90_realizes_50_and_leaves_it_flat_at_zero_average() -> None:
    position = after(flat(), (SELL, 5, "90.00"))

    change = apply_fill(position, BUY, 5, D("80.00"))

    assert change.realized_pnl == D("50.00")
    assert change.after.is_flat
    assert change.after.average_price == 0


def test_round_trip_realizes_sells_minus_buys() -> None:
    # buys 10@100 + 10@110 + 5@80 = 2500; sells 5@120 + 20@90 = 2400.
    position = after(
        flat(), (BUY, 10, "100.00"), (BUY, 10, "110.00"), (SELL, 5, "120.00"), (SELL, 20, "90.00"), (BUY, 5, "80.00")
    )

    assert position.is_flat
    assert position.realized_pnl == D("-100.00")
    assert position.unrealized_pnl == 0


def test_closing_exactly_to_zero_realizes_everything_and_resets_the_average() -> None:
    position = after(flat(), (BUY, 3, "250.05"))

    change = apply_fill(position, SELL, 3, D("251.00"))

    assert change.realized_pnl == D("2.85")
    assert change.after.quantity == 0 and change.after.average_price == 0


def test_buying_through_a_short_opens_the_rest_long_at_the_fill_price() -> None:
    position = after(flat(), (SELL, 10, "200.00"))

    change = apply_fill(position, BUY, 25, D("190.00"))

    assert change.realized_pnl == D("100.00")  # (200 - 190) x 10
    assert change.after.quantity == 15
    assert change.after.average_price == D("190.00")


# --- shorts -----------------------------------------------------------------------------


def test_short_averages_its_sells_and_realizes_on_buy_backs() -> None:
    position = after(flat(), (SELL, 10, "200.00"), (SELL, 10, "210.00"))

    change = apply_fill(position, BUY, 5, D("190.00"))

    assert position.quantity == -20 and position.average_price == D("205.00")
    assert change.realized_pnl == D("75.00")  # (205 - 190) x 5
    assert change.after.quantity == -15 and change.after.average_price == D("205.00")


def test_short_gains_when_the_price_falls_and_loses_when_it_rises() -> None:
    position = after(flat(), (SELL, 15, "205.00"))

    assert mark(position, D("200.00")).unrealized_pnl == D("75.00")
    assert mark(position, D("210.00")).unrealized_pnl == D("-75.00")


# --- marking and net P&L ----------------------------------------------------------------


def test_mark_values_the_open_quantity_at_the_new_price_and_changes_nothing_else() -> None:
    position = after(flat(), (BUY, 20, "105.00"))

    marked = mark(position, D("112.50"), at=T0)

    assert marked.unrealized_pnl == D("150.00")  # (112.50 - 105) x 20
    assert (marked.quantity, marked.average_price, marked.realized_pnl) == (20, D("105.00"), 0)
    assert marked.last_price == D("112.50") and marked.updated_at == T0


def test_later_fills_do_not_move_the_mark() -> None:
    position = mark(after(flat(), (BUY, 10, "100.00")), D("101.00"))

    position = after(position, (BUY, 10, "104.00"))

    assert position.last_price == D("101.00")
    assert position.unrealized_pnl == D("-20.00")  # (101 - 102) x 20


def test_flat_position_has_no_unrealized_pnl_whatever_the_mark() -> None:
    position = mark(after(flat(), (BUY, 5, "100.00"), (SELL, 5, "101.00")), D("500.00"))

    assert position.unrealized_pnl == 0
    assert position.realized_pnl == D("5.00")


def test_net_pnl_is_realized_plus_unrealized_less_every_charge() -> None:
    position = apply_fill(flat(), BUY, 10, D("100.00"), charges=D("1.25")).after
    position = apply_fill(position, SELL, 4, D("105.00"), charges=D("0.75")).after

    position = mark(position, D("103.00"))

    assert position.charges == D("2.00")
    assert position.realized_pnl == D("20.00")
    assert position.unrealized_pnl == D("18.00")
    assert position.net_pnl == D("36.00")


@pytest.mark.parametrize(("quantity", "price"), [(0, D("100")), (-5, D("100")), (5, D("0")), (5, D("-1"))])
def test_fill_without_quantity_or_price_is_refused(quantity: int, price: Decimal) -> None:
    with pytest.raises(ValueError, match="fill (quantity|price) must be positive"):
        apply_fill(flat(), BUY, quantity, price)


# --- property: any sequence of buys and sells -----------------------------------------

TICK = D("0.05")
prices = st.integers(min_value=1, max_value=200_000).map(lambda ticks: ticks * TICK)
trades = st.tuples(st.sampled_from([BUY, SELL]), st.integers(min_value=1, max_value=500), prices)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(fills=st.lists(trades, min_size=1, max_size=40), mark_price=prices)
def test_any_sequence_of_fills_keeps_the_books_balanced(
    fills: list[tuple[Side, int, Decimal]], mark_price: Decimal
) -> None:
    position = flat()
    bought = sold = D(0)
    signed = traded = 0

    for side, quantity, price in fills:
        held = position.quantity
        position = apply_fill(position, side, quantity, price).after
        signed += side.sign * quantity
        traded += quantity
        if side is BUY:
            bought += quantity * price
        else:
            sold += quantity * price
        tolerance = D("1e-6") * traded

        assert position.quantity == signed
        marked = mark(position, mark_price)
        assert abs(marked.realized_pnl + marked.unrealized_pnl - ((sold - bought) + signed * mark_price)) <= tolerance
        if position.is_flat:
            assert abs(position.realized_pnl - (sold - bought)) <= tolerance
            assert position.average_price == 0
        elif held != 0 and (held > 0) != (position.quantity > 0):
            assert position.average_price == price  # flipped: the rest opened at this fill
        else:
            assert position.average_price > 0


@settings(max_examples=150, deadline=None, database=None)
@given(fills=st.lists(trades, min_size=1, max_size=30))
def test_shorts_mirror_longs(fills: list[tuple[Side, int, Decimal]]) -> None:
    long_book, short_book = flat(), flat()

    for side, quantity, price in fills:
        long_book = apply_fill(long_book, side, quantity, price).after
        short_book = apply_fill(short_book, side.opposite, quantity, price).after

    assert short_book.quantity == -long_book.quantity
    assert short_book.average_price == long_book.average_price
    assert short_book.realized_pnl == -long_book.realized_pnl
