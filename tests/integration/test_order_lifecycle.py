"""The order's whole life through start_oms in paper mode, on SQLite and PostgreSQL."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest

from actors import start_oms
from domain import InsufficientBalance, OrderNotCancellable, OrderNotFound, OrderRejected, OrderStatus
from tests.oms_helpers import buy, rows, sell, wait_for

D = Decimal
S = OrderStatus


@pytest.fixture
def oms(database_url):
    oms = start_oms(database_url=database_url, broker="paper", capital=D("1000000"))
    oms.paper.set_price("RELIANCE", D("2450.50"))
    oms.paper.set_price("INFY", D("1500.00"))
    try:
        yield oms
    finally:
        oms.stop()


def statuses_of(url: str, order_id: str) -> list[tuple]:
    return [
        (r["from_status"], r["to_status"])
        for r in rows(url, "SELECT from_status, to_status FROM order_events WHERE order_id = :o ORDER BY id", o=order_id)
    ]


def test_market_order_is_filled_and_becomes_a_trade_with_charges_and_a_position(oms, database_url):
    result = oms.place_order(buy("RELIANCE", 10, stop_loss=D("2400.00")))

    assert result.status is S.OPEN and result.broker_order_id
    order = wait_for(oms, result.order_id, lambda o: o.status is S.FILLED)
    assert order.filled_quantity == 10 and order.average_price == D("2450.50")
    [trade] = rows(database_url, "SELECT * FROM trades WHERE order_id = :o", o=result.order_id)
    assert trade["quantity"] == 10 and D(trade["price"]) == D("2450.50")
    assert D(trade["total_charges"]) > 0 and trade["position_applied"]
    [position] = [p for p in oms.get_positions() if p.symbol == "RELIANCE"]
    assert position.quantity == 10 and position.average_price == D("2450.50")
    assert statuses_of(database_url, result.order_id) == [
        (None, "PENDING"), ("PENDING", "SUBMITTED"), ("SUBMITTED", "OPEN"), ("OPEN", "FILLED"),
    ]


def test_order_row_is_durable_before_the_broker_sees_it(oms, database_url):
    exchange = oms.paper.exchange
    seen_at_broker: list[list[dict]] = []
    real_place = exchange.place

    def place_and_look(request):
        seen_at_broker.append(rows(database_url, "SELECT status FROM orders WHERE tag = :t", t=request.tag))
        return real_place(request)

    exchange.place = place_and_look
    result = oms.place_order(buy("RELIANCE", 5, stop_loss=D("2400.00")))

    assert seen_at_broker == [[{"status": "SUBMITTED"}]]
    assert statuses_of(database_url, result.order_id)[:2] == [(None, "PENDING"), ("PENDING", "SUBMITTED")]


def test_refused_order_names_the_check_and_its_numbers_is_stored_rejected_and_never_sent(oms, database_url):
    request = buy("RELIANCE", 450, order_type="LIMIT", price=D("2450.00"), stop_loss=D("2401.00"))

    with pytest.raises(OrderRejected) as refused:
        oms.place_order(request)

    assert refused.value.failed_check == "risk_per_trade"
    assert str(refused.value) == "risk per trade 22050.00 exceeds 2% of capital (20000.00)"
    [row] = rows(database_url, "SELECT * FROM orders WHERE id = :o", o=refused.value.order_id)
    assert row["status"] == "REJECTED"
    checks = {c["name"]: c for c in row["validation_result"]["checks"]}
    assert checks["risk_per_trade"]["passed"] is False and checks["risk_per_trade"]["risk"] == "22050.00"
    assert all(o.tag != row["tag"] for o in oms.paper.orders())
    assert statuses_of(database_url, refused.value.order_id) == [(None, "REJECTED")]


def test_order_without_stop_loss_that_opens_a_position_is_refused(oms):
    with pytest.raises(OrderRejected) as refused:
        oms.place_order(buy("INFY", 10))
    assert refused.value.failed_check == "stop_loss_required"


def test_order_beyond_the_balance_raises_insufficient_balance(database_url):
    oms = start_oms(database_url=database_url, capital=D("100000"), max_order_value=None, max_position_value=None)
    try:
        oms.paper.set_price("INFY", D("1500.00"))
        with pytest.raises(InsufficientBalance) as refused:
            oms.place_order(buy("INFY", 400, product="CNC", stop_loss=D("1495.00")))
        assert refused.value.required == D("600000.00")
        assert refused.value.available == D("100000")
        assert refused.value.failed_check == "balance"
    finally:
        oms.stop()


def test_bad_input_raises_a_value_error_naming_the_field_and_writes_nothing(oms, database_url):
    before = rows(database_url, "SELECT count(*) AS n FROM orders")[0]["n"]
    with pytest.raises(ValueError, match="price"):
        buy("RELIANCE", 10, order_type="LIMIT", price=float("nan"), stop_loss=D("2400"))
    with pytest.raises(ValueError, match="quantity"):
        buy("RELIANCE", 2**31, order_type="LIMIT", price=D("2450.50"), stop_loss=D("2400"))
    with pytest.raises(TypeError, match="OrderRequest"):
        oms.place_order({"symbol": "RELIANCE", "side": "BUY", "quantity": 10})
    with pytest.raises(ValueError, match="new_price"):
        oms.modify_order(1, new_price=D("-1"))
    assert rows(database_url, "SELECT count(*) AS n FROM orders")[0]["n"] == before
    assert oms.paper.orders() == []


def test_broker_rejection_raises_order_rejected_and_stores_rejected(oms, database_url):
    with pytest.raises(OrderRejected) as refused:
        oms.place_order(buy("RELIANCE", 1, order_type="LIMIT", price=D("3000.00"), stop_loss=D("2900.00")))
    assert refused.value.failed_check == "broker"
    assert "outside the circuit band" in refused.value.reason
    assert oms.get_order_status(refused.value.order_id).status is S.REJECTED
    assert statuses_of(database_url, refused.value.order_id)[-1] == ("SUBMITTED", "REJECTED")


def test_limit_order_rests_until_the_price_crosses(oms):
    result = oms.place_order(buy("INFY", 10, order_type="LIMIT", price=D("1490.00"), stop_loss=D("1450.00")))
    assert [o.order_id for o in oms.get_active_orders()] == [result.order_id]

    oms.paper.set_price("INFY", D("1489.00"))

    order = wait_for(oms, result.order_id, lambda o: o.status is S.FILLED)
    assert order.average_price == D("1489.00")
    assert oms.get_active_orders() == []


def test_partial_fill_then_cancel_keeps_filled_quantity(oms, database_url):
    oms.paper.set_liquidity("INFY", 4)
    result = oms.place_order(buy("INFY", 10, stop_loss=D("1450.00")))
    wait_for(oms, result.order_id, lambda o: o.filled_quantity == 4)

    assert oms.cancel_order(result.order_id) is True

    order = wait_for(oms, result.order_id, lambda o: o.status is S.CANCELLED)
    assert order.filled_quantity == 4
    [position] = [p for p in oms.get_positions() if p.symbol == "INFY"]
    assert position.quantity == 4
    assert statuses_of(database_url, result.order_id)[-1] == ("OPEN", "CANCELLED")


def test_modify_moves_the_limit_price_and_the_order_fills_at_the_new_price(oms, database_url):
    result = oms.place_order(buy("INFY", 10, order_type="LIMIT", price=D("1480.00"), stop_loss=D("1450.00")))

    assert oms.modify_order(result.order_id, new_price=D("1500.00")) is True

    order = wait_for(oms, result.order_id, lambda o: o.status is S.FILLED)
    assert order.price == D("1500.00") and order.modification_count == 1
    payloads = rows(database_url, "SELECT payload FROM order_events WHERE order_id = :o ORDER BY id", o=result.order_id)
    assert {"modified": {"price": "1500.00"}} in [p["payload"] for p in payloads]


def test_a_modification_refused_by_a_risk_check_is_in_the_audit_trail_and_never_reaches_the_exchange(oms, database_url):
    result = oms.place_order(buy("INFY", 10, order_type="LIMIT", price=D("1480.00"), stop_loss=D("1450.00")))

    with pytest.raises(OrderRejected) as refused:
        oms.modify_order(result.order_id, new_quantity=10_000)  # ₹1.48 crore: past the capital

    def not_sent() -> list[dict]:
        payloads = rows(database_url, "SELECT payload FROM order_events WHERE order_id = :o ORDER BY id", o=result.order_id)
        return [p["payload"]["modify_not_sent"] for p in payloads if "modify_not_sent" in (p["payload"] or {})]

    deadline = time.monotonic() + 10
    while not not_sent() and time.monotonic() < deadline:  # recorded by the order's tracker, after the caller heard
        time.sleep(0.01)
    assert not_sent() == [{"requested": {"quantity": "10000"}, "reason": refused.value.reason, "check": refused.value.failed_check}]
    order = oms.get_order_status(result.order_id)
    assert (order.status, order.quantity, order.modification_count) == (S.OPEN, 10, 0)
    [at_exchange] = [o for o in oms.paper.orders() if o.broker_order_id == order.broker_order_id]
    assert at_exchange.quantity == 10


def test_cancelling_a_filled_order_is_refused_and_an_unknown_order_is_not_found(oms):
    result = oms.place_order(buy("INFY", 1, stop_loss=D("1450.00")))
    wait_for(oms, result.order_id, lambda o: o.status is S.FILLED)

    with pytest.raises(OrderNotCancellable):
        oms.cancel_order(result.order_id)
    with pytest.raises(OrderNotFound):
        oms.cancel_order(10**9)
    with pytest.raises(OrderNotFound):
        oms.get_order_status(10**9)
    with pytest.raises(OrderNotFound):
        oms.get_order_status("no-such-order")


def test_closing_a_position_realizes_profit_and_needs_no_stop_loss(oms):
    opened = oms.place_order(buy("INFY", 10, stop_loss=D("1450.00")))
    wait_for(oms, opened.order_id, lambda o: o.status is S.FILLED)
    oms.paper.set_price("INFY", D("1520.00"))

    closed = oms.place_order(sell("INFY", 10))

    wait_for(oms, closed.order_id, lambda o: o.status is S.FILLED)
    [position] = [p for p in oms.get_positions() if p.symbol == "INFY"]
    assert position.quantity == 0 and position.realized_pnl == D("200.00")
    assert position.charges > 0


def test_restart_finds_orders_and_positions_as_they_were_and_resting_orders_still_work(database_url):
    oms = start_oms(database_url=database_url)
    try:
        oms.paper.set_price("INFY", D("1500.00"))
        filled = oms.place_order(buy("INFY", 10, stop_loss=D("1450.00")))
        wait_for(oms, filled.order_id, lambda o: o.status is S.FILLED)
        resting = oms.place_order(buy("INFY", 5, order_type="LIMIT", price=D("1400.00"), stop_loss=D("1350.00")))
        before_orders = {o.order_id: o for o in oms.get_orders()}
        before_positions = oms.get_positions()
    finally:
        oms.stop()

    oms = start_oms(database_url=database_url)
    try:
        after_orders = {o.order_id: o for o in oms.get_orders()}
        assert after_orders == before_orders
        assert oms.get_positions() == before_positions
        assert [o.order_id for o in oms.get_active_orders()] == [resting.order_id]

        oms.paper.set_price("INFY", D("1399.00"))

        order = wait_for(oms, resting.order_id, lambda o: o.status is S.FILLED)
        assert order.average_price == D("1399.00")
        [position] = oms.get_positions()
        assert position.quantity == 15
        # The exchange kept its book across the restart: the same two orders, nothing sent again.
        assert sorted(o.tag for o in oms.paper.orders()) == sorted(o.tag for o in before_orders.values())
    finally:
        oms.stop()


def test_an_order_whose_outcome_is_unknown_is_looked_up_by_tag_not_resent(oms):
    oms.paper.fail_next_place("ambiguous", "read timeout")

    result = oms.place_order(buy("INFY", 3, stop_loss=D("1450.00")))

    assert result.status is S.SUBMITTED and "outcome unknown" in result.message
    order = wait_for(oms, result.order_id, lambda o: o.status is S.FILLED)
    assert order.broker_order_id is not None
    assert [o.tag for o in oms.paper.orders()] == [oms.get_order_status(result.order_id).tag]


def test_an_order_the_broker_never_received_fails_without_a_position(oms):
    oms.paper.fail_next_place("unavailable", "connection refused")
    from domain import OrderSubmissionFailed

    with pytest.raises(OrderSubmissionFailed, match="connection refused"):
        oms.place_order(buy("INFY", 3, stop_loss=D("1450.00")))
    assert oms.get_positions() == []
    assert oms.paper.orders() == []
