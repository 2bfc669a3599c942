"""The order's life: the transition table, fills, late updates (is_progress) and
modifications. Time is injected; every Decimal is exact."""
from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from domain.enums import TERMINAL_STATUSES, OrderStatus
from domain.errors import IllegalTransition
from domain.money import average
from domain.order import (
    Modification,
    Order,
    annotate,
    apply_fill,
    can_transition,
    check_modification,
    created,
    is_progress,
    refused,
    transition,
)
from domain.order_request import OrderRequest

D = Decimal
S = OrderStatus
T0 = datetime(2025, 6, 2, 9, 15, tzinfo=timezone.utc)
T1 = T0 + timedelta(seconds=1)

# The table, written out here independently of domain/order.py.
ALLOWED: frozenset[tuple[OrderStatus | None, OrderStatus]] = frozenset(
    {
        (None, S.PENDING),
        (None, S.REJECTED),
        (S.PENDING, S.SUBMITTED),
        (S.PENDING, S.REJECTED),
        (S.PENDING, S.FAILED),
        (S.PENDING, S.CANCELLED),
        (S.SUBMITTED, S.OPEN),
        (S.SUBMITTED, S.FILLED),
        (S.SUBMITTED, S.CANCELLED),
        (S.SUBMITTED, S.REJECTED),
        (S.SUBMITTED, S.FAILED),
        (S.OPEN, S.OPEN),
        (S.OPEN, S.FILLED),
        (S.OPEN, S.CANCELLED),
        (S.OPEN, S.REJECTED),
        (S.OPEN, S.FAILED),
    }
)
ALL_PAIRS = list(itertools.product([None, *S], list(S)))
STATUS_PAIRS = [(a, b) for a, b in ALL_PAIRS if a is not None]


def new_order(quantity: int = 10, **request_overrides: Any) -> Order:
    """A fresh LIMIT BUY order (PENDING) for ``quantity`` INFY at 100.00."""
    fields = {"symbol": "INFY", "side": "BUY", "quantity": quantity, "order_type": "LIMIT", "price": D("100.00")}
    request = OrderRequest(**{**fields, **request_overrides})
    return Order.from_request("ord-1", request, T0)


def order_in(status: OrderStatus, quantity: int = 10, **request_overrides: Any) -> Order:
    return replace(new_order(quantity, **request_overrides), status=status)


def fill(order: Order, quantity: int, price: str, trade_id: str = "t") -> Order:
    return apply_fill(order, quantity, D(price), T1, trade_id)[0]


# --- the table ----------------------------------------------------------------------


def test_table_allows_exactly_the_listed_pairs() -> None:
    allowed = {pair for pair in ALL_PAIRS if can_transition(*pair)}

    assert allowed == ALLOWED


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED - {(None, S.PENDING), (None, S.REJECTED)}, key=str))
def test_allowed_transition_moves_the_order_and_records_the_event(current: OrderStatus, target: OrderStatus) -> None:
    order = order_in(current)

    moved, event = transition(order, target, T1, {"why": "test"}, status_message="m")

    assert moved.status is target
    assert moved.updated_at == T1 and moved.status_message == "m"
    assert (event.order_id, event.at, event.from_status, event.to_status) == ("ord-1", T1, current, target)
    assert event.payload == {"why": "test"}
    assert order.status is current  # the original value is untouched


@pytest.mark.parametrize(("current", "target"), [p for p in STATUS_PAIRS if p not in ALLOWED], ids=str)
def test_every_pair_outside_the_table_raises_illegal_transition(current: OrderStatus, target: OrderStatus) -> None:
    order = order_in(current)

    with pytest.raises(IllegalTransition, match=f"{current.value} -> {target.value} is not allowed"):
        transition(order, target, T1)


@pytest.mark.parametrize("target", [s for s in S if s not in (S.PENDING, S.REJECTED)])
def test_an_order_with_no_status_yet_may_only_become_pending_or_rejected(target: OrderStatus) -> None:
    assert not can_transition(None, target)


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATUSES, key=str))
def test_terminal_status_has_no_way_out(terminal: OrderStatus) -> None:
    order = order_in(terminal)

    assert order.is_terminal
    assert not any(can_transition(terminal, target) for target in S)
    for target in S:
        with pytest.raises(IllegalTransition):
            transition(order, target, T1)


def test_terminal_statuses_are_filled_cancelled_rejected_and_failed() -> None:
    assert TERMINAL_STATUSES == {S.FILLED, S.CANCELLED, S.REJECTED, S.FAILED}
    assert not any(s.is_terminal for s in (S.PENDING, S.SUBMITTED, S.OPEN))


def test_created_is_the_pending_event_from_no_status() -> None:
    order, event = created(new_order())

    assert order.status is S.PENDING
    assert (event.from_status, event.to_status, event.at) == (None, S.PENDING, T0)


def test_refused_is_the_only_event_of_an_order_a_check_refused() -> None:
    order, event = refused(new_order(), "risk per trade 22050.00 exceeds 2% of capital (20000.00)")

    assert order.status is S.REJECTED and order.is_terminal
    assert order.status_message == "risk per trade 22050.00 exceeds 2% of capital (20000.00)"
    assert (event.from_status, event.to_status) == (None, S.REJECTED)
    assert event.payload["reason"] == "risk per trade 22050.00 exceeds 2% of capital (20000.00)"


def test_annotate_keeps_the_status_and_records_a_same_status_event() -> None:
    order = order_in(S.SUBMITTED)

    noted, event = annotate(order, T1, {"broker_order_id": "B1"}, broker_order_id="B1")

    assert noted.status is S.SUBMITTED and noted.broker_order_id == "B1" and noted.updated_at == T1
    assert (event.from_status, event.to_status, event.payload) == (S.SUBMITTED, S.SUBMITTED, {"broker_order_id": "B1"})


# --- fills --------------------------------------------------------------------------


def test_partial_fill_on_a_submitted_order_makes_it_open_with_the_fill_price() -> None:
    order, event = apply_fill(order_in(S.SUBMITTED), 4, D("100.00"), T1, "t1")

    assert order.status is S.OPEN
    assert order.filled_quantity == 4 and order.remaining_quantity == 6
    assert order.average_price == D("100.00")
    assert (event.from_status, event.to_status) == (S.SUBMITTED, S.OPEN)
    assert event.payload == {"trade_id": "t1", "quantity": 4, "price": "100.00", "filled_quantity": 4}


def test_fills_grow_filled_quantity_and_weight_the_average_price() -> None:
    order = fill(order_in(S.SUBMITTED), 4, "100.00")
    order = fill(order, 6, "100.50")

    assert order.filled_quantity == 10
    assert order.average_price == D("100.30")  # (400.00 + 603.00) / 10
    assert order.filled_value == D("1003.00")


def test_average_price_is_rounded_to_eight_places() -> None:
    order = fill(order_in(S.SUBMITTED, quantity=3), 1, "100.00")
    order = fill(order, 2, "100.05")

    assert order.average_price == D("100.03333333")


def test_average_price_stays_the_exact_weighted_mean_across_three_fills() -> None:
    # 1@100.00 + 2@100.05 + 3@100.00 = 600.10 over 6 = 100.01666666..., i.e. 100.01666667.
    order = fill(order_in(S.SUBMITTED, quantity=6), 1, "100.00")
    order = fill(order, 2, "100.05")
    order = fill(order, 3, "100.00")

    assert order.average_price == average(D("600.10"), 6) == D("100.01666667")


def test_fill_covering_the_whole_quantity_makes_the_order_filled() -> None:
    order, event = apply_fill(order_in(S.OPEN), 10, D("100.00"), T1, "t1")

    assert order.status is S.FILLED and order.remaining_quantity == 0
    assert (event.from_status, event.to_status) == (S.OPEN, S.FILLED)


def test_order_is_filled_exactly_when_the_last_unit_is_filled() -> None:
    order = order_in(S.SUBMITTED)
    statuses = []
    for _ in range(10):
        order = fill(order, 1, "100.00")
        statuses.append(order.status)

    assert statuses == [S.OPEN] * 9 + [S.FILLED]


def test_whole_fill_on_a_submitted_order_goes_straight_to_filled() -> None:
    order = fill(order_in(S.SUBMITTED), 10, "99.95")

    assert order.status is S.FILLED and order.average_price == D("99.95")


def test_overfill_raises_illegal_transition_and_changes_nothing() -> None:
    order = fill(order_in(S.SUBMITTED), 7, "100.00")

    with pytest.raises(IllegalTransition, match="fill of 4 would make 11 filled of 10"):
        apply_fill(order, 4, D("100.00"), T1, "t2")

    assert order.filled_quantity == 7 and order.status is S.OPEN


def test_fill_on_a_filled_order_is_refused() -> None:
    order = fill(order_in(S.SUBMITTED), 10, "100.00")

    with pytest.raises(IllegalTransition):
        apply_fill(order, 1, D("100.00"), T1, "t2")


def test_fill_on_a_cancelled_order_is_recorded_and_keeps_it_cancelled() -> None:
    order = fill(order_in(S.SUBMITTED), 3, "100.00")
    order, _ = transition(order, S.CANCELLED, T1)

    late, event = apply_fill(order, 2, D("101.00"), T1, "late")

    assert late.status is S.CANCELLED
    assert late.filled_quantity == 5 and late.average_price == D("100.40")
    assert (event.from_status, event.to_status) == (S.CANCELLED, S.CANCELLED)


def test_fill_covering_the_rest_of_a_cancelled_order_still_keeps_it_cancelled() -> None:
    order = fill(order_in(S.CANCELLED), 10, "100.00")

    assert order.status is S.CANCELLED and order.filled_quantity == 10


@pytest.mark.parametrize("status", [S.REJECTED, S.FAILED])
def test_fill_on_a_rejected_or_failed_order_raises_illegal_transition(status: OrderStatus) -> None:
    with pytest.raises(IllegalTransition):
        apply_fill(order_in(status), 1, D("100.00"), T1, "t")


@pytest.mark.parametrize(("quantity", "price"), [(0, D("100")), (-1, D("100")), (1, D("0")), (1, D("-1"))])
def test_fill_with_no_quantity_or_no_price_is_refused(quantity: int, price: Decimal) -> None:
    with pytest.raises(ValueError, match="fill (quantity|price) must be positive"):
        apply_fill(order_in(S.OPEN), quantity, price, T1, "t")


# --- is_progress ----------------------------------------------------------------------

RANK = {S.PENDING: 0, S.SUBMITTED: 1, S.OPEN: 2, S.FILLED: 3, S.CANCELLED: 3, S.REJECTED: 3, S.FAILED: 3}


@pytest.mark.parametrize(("current", "reported"), STATUS_PAIRS, ids=str)
def test_is_progress_only_moves_forward(current: OrderStatus, reported: OrderStatus) -> None:
    expected = RANK[reported] > RANK[current] or (current is S.OPEN and reported is S.OPEN)

    assert is_progress(current, reported) is expected


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATUSES, key=str))
def test_no_report_is_progress_for_a_terminal_order(terminal: OrderStatus) -> None:
    assert not any(is_progress(terminal, reported) for reported in S)


def test_late_open_after_a_fill_is_not_progress_but_another_open_update_is() -> None:
    assert not is_progress(S.FILLED, S.OPEN)
    assert not is_progress(S.OPEN, S.SUBMITTED)
    assert is_progress(S.OPEN, S.OPEN)
    assert not is_progress(S.SUBMITTED, S.SUBMITTED)


# --- check_modification ---------------------------------------------------------------


def test_modification_must_change_something() -> None:
    with pytest.raises(ValueError, match="modification: give at least one of"):
        check_modification(order_in(S.OPEN), Modification())


@pytest.mark.parametrize("new_quantity", [3, 2, 0])
def test_new_quantity_not_above_the_filled_quantity_is_refused_naming_new_quantity(new_quantity: int) -> None:
    order = fill(order_in(S.SUBMITTED), 3, "100.00")

    with pytest.raises(ValueError, match=f"new_quantity: {new_quantity} must exceed the filled quantity 3"):
        check_modification(order, Modification(quantity=new_quantity))


def test_new_quantity_just_above_the_filled_quantity_is_accepted() -> None:
    order = fill(order_in(S.SUBMITTED), 3, "100.00")

    request = check_modification(order, Modification(quantity=4))

    assert request.quantity == 4


def test_modified_request_keeps_every_field_it_does_not_change() -> None:
    order = order_in(S.OPEN, stop_loss=D("95.00"), take_profit=D("110.00"), tick_size=D("0.05"), metadata={"k": "v"})

    request = check_modification(order, Modification(price=D("101.00")))

    assert request.price == D("101.00")
    assert (request.symbol, request.side.value, request.quantity) == ("INFY", "BUY", 10)
    assert (request.stop_loss, request.take_profit, request.tick_size) == (D("95.00"), D("110.00"), D("0.05"))
    assert request.metadata == {"k": "v"}


def test_modified_price_off_the_tick_is_refused_naming_price() -> None:
    with pytest.raises(ValueError, match="price: 300.03 is not a multiple of the tick size 0.05"):
        check_modification(order_in(S.OPEN), Modification(price=D("300.03")))


def test_modified_price_off_the_orders_own_tick_size_is_refused() -> None:
    order = order_in(S.OPEN, price=D("100.25"), tick_size=D("0.25"))

    with pytest.raises(ValueError, match="price: 100.10 is not a multiple of the tick size 0.25"):
        check_modification(order, Modification(price=D("100.10")))


def test_modified_buy_price_at_or_below_its_stop_loss_is_refused_naming_stop_loss() -> None:
    order = order_in(S.OPEN, stop_loss=D("95.00"))

    with pytest.raises(ValueError, match="stop_loss: 95.00 must be below the entry price 95.00 for a BUY"):
        check_modification(order, Modification(price=D("95.00")))


def test_modified_sell_price_at_or_above_its_take_profit_is_refused_naming_take_profit() -> None:
    order = order_in(S.OPEN, side="SELL", take_profit=D("90.00"))

    with pytest.raises(ValueError, match="take_profit: 90.00 must be below the entry price 89.95 for a SELL"):
        check_modification(order, Modification(price=D("89.95")))


def test_modified_trigger_above_the_limit_of_an_sl_buy_is_refused_naming_trigger_price() -> None:
    order = order_in(S.OPEN, order_type="SL", price=D("100.00"), trigger_price=D("99.50"))

    with pytest.raises(ValueError, match="trigger_price: 100.50 must not be above the limit price 100.00"):
        check_modification(order, Modification(trigger_price=D("100.50")))


def test_modified_price_on_a_market_order_is_refused_naming_price() -> None:
    order = order_in(S.OPEN, order_type="MARKET", price=None)

    with pytest.raises(ValueError, match="price: MARKET orders take no price"):
        check_modification(order, Modification(price=D("100.00")))


def test_modified_trigger_of_an_sl_m_order_is_accepted_on_tick() -> None:
    order = order_in(S.OPEN, order_type="SL-M", price=None, trigger_price=D("99.00"), stop_loss=D("95.00"))

    request = check_modification(order, Modification(trigger_price=D("98.05")))

    assert request.trigger_price == D("98.05") and request.price is None


# --- property: any sequence of fills and transitions ----------------------------------

QUANTITY = 30
fill_quantities = st.one_of(st.integers(min_value=1, max_value=6), st.integers(min_value=1, max_value=QUANTITY + 2))
fills = st.tuples(
    st.just("fill"),
    fill_quantities,
    st.integers(min_value=1980, max_value=2020).map(lambda ticks: D(ticks) * D("0.05")),
)
moves = st.tuples(st.just("transition"), st.sampled_from(list(S)), st.just(None))
notes = st.tuples(st.just("annotate"), st.none(), st.none())
operations = st.lists(st.one_of(fills, fills, fills, moves, notes), max_size=30)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.sampled_from([S.PENDING, S.SUBMITTED, S.OPEN]), ops=operations)
# A case random search finds only now and then: rounding of the running average.
@example(start=S.SUBMITTED, ops=[("fill", 1, D("99.00")), ("fill", 2, D("99.05")), ("fill", 3, D("99.00"))])
def test_no_sequence_of_fills_and_transitions_breaks_the_order_invariants(start: OrderStatus, ops: list[tuple]) -> None:
    order, _ = created(new_order(QUANTITY))
    if start is not S.PENDING:
        order, _ = transition(order, S.SUBMITTED, T0)
    if start is S.OPEN:
        order, _ = transition(order, S.OPEN, T0)
    applied: list[tuple[int, Decimal]] = []

    for kind, a, b in ops:
        before = order
        try:
            if kind == "fill":
                order, _ = apply_fill(order, a, b, T1, "t")
                applied.append((a, b))
            elif kind == "transition":
                order, _ = transition(order, a, T1)
            else:
                order, _ = annotate(order, T1, {"note": "x"})
        except IllegalTransition:
            assert order is before

        assert order.filled_quantity >= before.filled_quantity
        assert 0 <= order.filled_quantity <= order.quantity
        if before.is_terminal:
            assert order.status is before.status
        filled = sum(q for q, _ in applied)
        assert order.filled_quantity == filled
        if applied:
            assert order.average_price == average(sum(q * p for q, p in applied), filled)
        else:
            assert order.average_price is None


def test_a_modification_written_to_the_audit_trail_reads_back_exactly():
    for change in (Modification(quantity=20), Modification(price=Decimal("1495.05")),
                   Modification(quantity=3, price=Decimal("10.0025"), trigger_price=Decimal("9.9975"))):
        assert Modification.from_payload(change.as_payload()) == change
