"""What happens when an actor fails or the OMS stops with orders in flight."""
from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest

import actors.order_tracker as order_tracker
from actors import start_oms
from domain import OrderStatus
from tests.oms_helpers import buy, rows, wait_for

D = Decimal
S = OrderStatus


def test_a_tracker_that_fails_mid_fill_is_restarted_and_counts_the_fill_exactly_once(database_url, monkeypatch):
    real_charges = order_tracker.charges_for_fill
    failures = []

    def charges_failing_once(*args, **kwargs):
        if not failures:
            failures.append("boom")
            raise RuntimeError("injected: charges table unreadable")
        return real_charges(*args, **kwargs)

    monkeypatch.setattr(order_tracker, "charges_for_fill", charges_failing_once)
    oms = start_oms(database_url=database_url)
    try:
        oms.paper.set_price("INFY", D("1500.00"))

        result = oms.place_order(buy("INFY", 10, stop_loss=D("1450.00")))

        order = wait_for(oms, result.order_id, lambda o: o.status is S.FILLED)
        assert failures == ["boom"]
        assert order.filled_quantity == 10
        [position] = oms.get_positions()
        assert position.quantity == 10
        assert len(rows(database_url, "SELECT broker_trade_id FROM trades")) == 1
        assert len(oms.paper.orders()) == 1  # restarted by looking up its tag, not re-sent
        place_again = oms.place_order(buy("INFY", 1, stop_loss=D("1450.00")))
        wait_for(oms, place_again.order_id, lambda o: o.status is S.FILLED)  # trading goes on
    finally:
        oms.stop()


@pytest.mark.timeout(60)
def test_stop_answers_a_strategy_waiting_on_a_slow_broker_instead_of_leaving_it_hanging(sqlite_url):
    oms = start_oms(database_url=sqlite_url, request_timeout=30)
    oms.paper.set_price("INFY", D("1500.00"))
    exchange = oms.paper.exchange
    real_place = exchange.place
    entered = threading.Event()

    def slow_place(request):
        entered.set()
        time.sleep(1.0)
        return real_place(request)

    exchange.place = slow_place
    answers: list = []
    waiting = threading.Thread(target=lambda: answers.append(oms.place_order(buy("INFY", 1, stop_loss=D("1450.00")))))
    waiting.start()
    assert entered.wait(10)

    started = time.monotonic()
    oms.stop()
    waiting.join(10)

    assert not waiting.is_alive() and time.monotonic() - started < 10
    [answer] = answers
    assert answer.status is S.SUBMITTED and "stopped" in answer.message
    [row] = rows(sqlite_url, "SELECT status FROM orders")
    assert row["status"] == "SUBMITTED"  # recorded before the broker call; settled by tag on restart


def test_a_stopped_oms_refuses_clearly_and_sends_nothing(sqlite_url):
    from actors import OMSStopped
    from domain import OrderSubmissionFailed

    oms = start_oms(database_url=sqlite_url)
    oms.paper.set_price("INFY", D("1500.00"))
    oms.stop()

    with pytest.raises(OMSStopped, match="not running") as refused:
        oms.place_order(buy("INFY", 1, stop_loss=D("1450.00")))
    assert isinstance(refused.value, OrderSubmissionFailed)
    with pytest.raises(OMSStopped):
        oms.get_positions()
    oms.stop()  # stopping twice is harmless
    assert oms.paper.orders() == []
    assert rows(sqlite_url, "SELECT count(*) AS n FROM orders") == [{"n": 0}]
