"""An actor per order without a thread per order: every live order has its own tracker,
and every tracker runs on the supervisor's small pool of threads. The thread count does
not grow with the number of live orders, a restart tracks every live order again, and a
stop stops every tracker and the pool's threads (the conftest checks nothing is left)."""
from __future__ import annotations

import threading
from decimal import Decimal

from actors import start_oms
from actors.runtime import live_actors
from domain import OrderStatus
from tests.oms_helpers import buy, wait_for

D = Decimal
S = OrderStatus
RESTING = 300


def resting_buy():
    return buy("INFY", 1, order_type="LIMIT", price=D("1300.00"), stop_loss=D("1250.00"))


def trackers() -> int:
    return sum(1 for ref in live_actors() if ref.actor_class.__name__ == "OrderTracker")


def test_live_orders_each_have_a_tracker_and_the_threads_do_not_grow_with_them(database_url):
    oms = start_oms(database_url=database_url, capital=D("100000000"), max_open_orders=None, tracker_threads=2)
    try:
        oms.paper.set_price("INFY", D("1500.00"))
        oms.place_order(resting_buy())  # the pool's threads are started by the first order
        threads_with_one = threading.active_count()

        ids = [oms.place_order(resting_buy()).order_id for _ in range(RESTING - 1)]

        assert trackers() == RESTING
        assert threading.active_count() == threads_with_one
        assert len([t for t in threading.enumerate() if t.name.startswith("tracker-")]) <= 2
        assert all(oms.cancel_order(order_id) for order_id in ids)
        for order_id in ids:
            wait_for(oms, order_id, lambda o: o.status is S.CANCELLED)
        assert trackers() == 1
    finally:
        oms.stop()
    assert trackers() == 0


def test_a_restart_tracks_every_live_order_again_and_each_still_works(database_url):
    settings = dict(database_url=database_url, capital=D("100000000"), max_open_orders=None)
    oms = start_oms(**settings)
    try:
        oms.paper.set_price("INFY", D("1500.00"))
        ids = [oms.place_order(resting_buy()).order_id for _ in range(RESTING)]
    finally:
        oms.stop()
    assert trackers() == 0

    oms = start_oms(**settings)
    try:
        assert sorted(o.order_id for o in oms.get_active_orders()) == sorted(ids)
        assert trackers() == RESTING
        oms.paper.set_price("INFY", D("1299.00"))  # every resting buy fills

        for order_id in ids:
            wait_for(oms, order_id, lambda o: o.status is S.FILLED)
        assert sum(p.quantity for p in oms.get_positions()) == RESTING
        assert oms.get_active_orders() == []
    finally:
        oms.stop()
