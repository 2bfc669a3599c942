"""Reads go through readers on their own connections, a bounded page at a time: a
large or slow read never holds up an order being placed, filled or cancelled."""
from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from actors import start_oms
from domain.enums import OrderStatus as S
from persistence.store import Store
from tests.oms_helpers import buy, wait_for

D = Decimal


@pytest.fixture
def oms(database_url):
    oms = start_oms(database_url=database_url, broker="paper", capital=D("10000000"))
    oms.paper.set_price("INFY", D("1500.00"))
    yield oms
    oms.stop()


def test_orders_are_placed_filled_and_cancelled_while_a_read_is_stuck(oms, monkeypatch):
    release, entered = threading.Event(), threading.Event()
    real = Store.load_orders

    def stuck(self, *args, **kwargs):
        entered.set()
        release.wait(30)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Store, "load_orders", stuck)
    answers: list = []
    reading = threading.Thread(target=lambda: answers.append(oms.get_orders()))
    reading.start()
    try:
        assert entered.wait(10), "the read never reached a reader"

        filled = oms.place_order(buy("INFY", 5, stop_loss=D("1450.00")))
        resting = oms.place_order(buy("INFY", 5, order_type="LIMIT", price=D("1400.00"), stop_loss=D("1350.00")))
        assert wait_for(oms, filled.order_id, lambda o: o.status is S.FILLED).filled_quantity == 5
        assert oms.cancel_order(resting.order_id) is True
        wait_for(oms, resting.order_id, lambda o: o.status is S.CANCELLED)
        assert reading.is_alive(), "the read should still be stuck: nothing above waited on it"
    finally:
        release.set()
        reading.join(30)
    assert [o.order_id for o in answers[0]] == [filled.order_id, resting.order_id]


def test_lists_come_in_bounded_pages_and_iter_orders_reads_them_all(oms):
    ids = [oms.place_order(buy("INFY", 1, stop_loss=D("1450.00"))).order_id for _ in range(7)]

    first = oms.get_orders(limit=3)
    second = oms.get_orders(after_id=first[-1].order_id, limit=3)

    assert [o.order_id for o in first + second] == ids[:6]
    assert [o.order_id for o in oms.iter_orders(page=2)] == ids
    with pytest.raises(ValueError, match="limit"):
        oms.get_orders(limit=10_001)
    with pytest.raises(ValueError, match="after_id"):
        oms.get_orders(after_id=-1)
    trades = oms.get_trades(limit=2)
    assert [t.id for t in trades] == sorted(t.id for t in trades)
    assert oms.get_trades(after_id=trades[-1].id, limit=100)[0].id > trades[-1].id
    events = oms.get_order_events(ids[0])
    assert [e.to_status for e in events][:2] == [S.PENDING, S.SUBMITTED]
    assert oms.get_order_events(ids[0], after_id=events[0].id)[0] == events[1]
