"""Kite's limits hold whatever the strategies send: no more than 10 order requests reach
the broker in any second, and a request that would wait too long is refused, naming the
limit. Nothing is lost: every order is at Kite once, or clearly refused."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from domain import OrderNotCancellable, OrderNotModifiable, OrderStatus, OrderSubmissionFailed
from tests.kite_helpers import kite_emulator, start_kite_oms
from tests.oms_helpers import buy, wait_for

S = OrderStatus
ORDER_ROUTES = ("place", "modify", "cancel")
MINUTE_LIMIT = "40 order requests a minute"


@pytest.fixture
def emulator():
    with kite_emulator() as emu:
        yield emu


def order_request_times(emulator) -> list[float]:
    return sorted(at for at, route in emulator.arrivals if route in ORDER_ROUTES)


def most_in_any_window(times: list[float], seconds: float) -> int:
    """The largest number of times inside one window [t, t + seconds)."""
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= seconds:
            start += 1
        most = max(most, end - start + 1)
    return most


def strategy(oms, index: int, orders: int, outcomes: list, rounds: int = 2) -> None:
    for _ in range(rounds):
        one_round(oms, index, orders, outcomes)


def one_round(oms, index: int, orders: int, outcomes: list) -> None:
    """Places ``orders`` resting bids, then modifies each, then cancels each, as fast as
    the OMS answers; records every outcome (None for done, or the exception)."""
    placed = []
    for _ in range(orders):
        request = buy("INFY", 10, order_type="LIMIT", price="1490", product="MIS", stop_loss="1480", strategy_id=index)
        try:
            placed.append(oms.place_order(request).order_id)
            outcomes.append(("place", index, None))
        except OrderSubmissionFailed as error:
            outcomes.append(("place", index, error))
    for order_id in placed:
        try:
            outcomes.append(("modify", order_id, oms.modify_order(order_id, new_price="1491") and None))
        except OrderNotModifiable as error:
            outcomes.append(("modify", order_id, error))
    for order_id in placed:
        try:
            outcomes.append(("cancel", order_id, oms.cancel_order(order_id) and None))
        except OrderNotCancellable as error:
            outcomes.append(("cancel", order_id, error))


def test_no_more_than_ten_order_requests_reach_kite_in_any_second(emulator, sqlite_url):
    oms = start_kite_oms(emulator, sqlite_url, kite_orders_per_minute=40, kite_rate_wait_max=2.0)
    try:
        oms.mark_price("INFY", "1500")
        outcomes: list = []
        strategies = [threading.Thread(target=strategy, args=(oms, i + 1, 4, outcomes)) for i in range(4)]
        for thread in strategies:
            thread.start()
        for thread in strategies:
            thread.join(60)
        assert not any(thread.is_alive() for thread in strategies)
        assert len(outcomes) == 4 * 2 * 4 + 2 * sum(1 for kind, _, error in outcomes if kind == "place" and error is None)

        times = order_request_times(emulator)
        assert most_in_any_window(times, 1.0) <= 10
        assert most_in_any_window(times, 60.0) <= 40
        assert len(times) == 40  # the minute's allowance was used, and not passed

        # Every refusal says which limit; what was not refused reached Kite exactly once.
        refused = [(kind, error) for kind, _, error in outcomes if error is not None]
        # Round one alone asks 48 (> 40), and no strategy reaches round two's places
        # without its round one: some place is always refused. Which modifications and
        # cancels are depends on how the strategies' requests interleave.
        assert "place" in {kind for kind, _ in refused}, "the burst should have met the minute limit"
        for kind, error in refused:
            if kind == "place" or "FAILED" not in str(error):
                assert MINUTE_LIMIT in str(error), f"{kind} refused without naming the limit: {error}"
        sent = {kind: sum(1 for k, _, error in outcomes if k == kind and error is None) for kind in ORDER_ROUTES}
        assert sent == {kind: emulator.count(kind) for kind in ORDER_ROUTES}

        for order in oms.get_orders():
            at_kite = emulator.book.orders_tagged(order.tag)
            if order.status is S.FAILED:
                assert at_kite == [] and MINUTE_LIMIT in order.status_message
            else:
                assert len(at_kite) == 1 and order.broker_order_id == at_kite[0]["order_id"]
        assert emulator.count("place") == sum(1 for o in oms.get_orders() if o.broker_order_id)
    finally:
        oms.stop()


def test_the_modifications_allowed_per_order_come_from_the_settings(emulator, sqlite_url):
    oms = start_kite_oms(emulator, sqlite_url, kite_modifications_per_order=2)
    try:
        oms.mark_price("INFY", "1500")
        order = oms.place_order(buy("INFY", 10, order_type="LIMIT", price="1490", product="MIS", stop_loss="1480"))
        for price in ("1491", "1492"):
            assert oms.modify_order(order.order_id, new_price=price)
            wait_for(oms, order.order_id, lambda o, p=Decimal(price): o.price == p)
        with pytest.raises(OrderNotModifiable, match="modified 2 times, the broker's limit"):
            oms.modify_order(order.order_id, new_price="1493")
        assert emulator.count("modify") == 2
    finally:
        oms.stop()


def test_after_a_restart_the_days_order_count_goes_on_from_the_orders_kite_lists_today(emulator, sqlite_url):
    oms = start_kite_oms(emulator, sqlite_url)
    try:
        for k in range(3):
            oms.place_order(buy("INFY", 1, order_type="LIMIT", price=str(1400 + k), product="MIS", stop_loss="1300"))
    finally:
        oms.stop()
    oms = start_kite_oms(emulator, sqlite_url, kite_orders_per_day=4)
    try:
        assert oms.place_order(buy("INFY", 1, order_type="LIMIT", price="1450", product="MIS", stop_loss="1300")).status is S.OPEN
        with pytest.raises(OrderSubmissionFailed, match="4 order requests a day is used up"):
            oms.place_order(buy("INFY", 1, order_type="LIMIT", price="1451", product="MIS", stop_loss="1300"))
        assert emulator.count("place") == 4
    finally:
        oms.stop()
