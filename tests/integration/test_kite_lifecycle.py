"""The whole OMS in Kite mode, through the real kiteconnect client, against the Kite
emulator: place, fills and partial fills, modify, cancel, rejections, and a restart that
finds every order again by its tag. Nothing is ever at the broker twice."""
from __future__ import annotations

import logging
import time
from decimal import Decimal

import pytest

from domain import OrderRejected, OrderStatus
from emulator.server import KiteEmulator
from tests.kite_helpers import KEY, SECRET, TOKEN, assert_no_credentials, eventually, kite_emulator, start_kite_oms
from tests.oms_helpers import buy, wait_for

D = Decimal
S = OrderStatus


@pytest.fixture
def emulator():
    with kite_emulator() as emu:
        yield emu


def one_order_per_tag(emulator, oms) -> None:
    for order in oms.get_orders():
        assert len(emulator.book.orders_tagged(order.tag)) <= 1, f"{order.tag} is at the broker twice"


def test_place_fill_partial_fill_modify_cancel_and_reject(emulator, database_url, caplog):
    caplog.set_level(logging.DEBUG)
    oms = start_kite_oms(emulator, database_url)
    try:
        assert oms.paper is None
        oms.mark_price("INFY", "1500")
        market = oms.place_order(buy("INFY", 10, order_type="MARKET", product="MIS", stop_loss="1490"))
        filled = wait_for(oms, market.order_id, lambda o: o.status is S.FILLED)
        assert (filled.filled_quantity, filled.average_price, filled.broker_order_id) == (10, D("1500"), market.broker_order_id)

        emulator.set_liquidity("RELIANCE", 4)
        limit = oms.place_order(buy("RELIANCE", 10, order_type="LIMIT", price="2440", product="MIS", stop_loss="2430"))
        assert limit.status is S.OPEN
        emulator.set_price("RELIANCE", "2439.50")
        wait_for(oms, limit.order_id, lambda o: o.filled_quantity == 4)
        assert oms.modify_order(limit.order_id, new_price="2445")  # crosses at once: 4 more
        modified = wait_for(oms, limit.order_id, lambda o: o.filled_quantity == 8)
        assert modified.price == D("2445") and modified.status is S.OPEN
        (at_kite,) = emulator.book.orders_tagged(modified.tag)
        assert (at_kite["price"], at_kite["filled_quantity"]) == (D("2445"), 8)
        assert oms.cancel_order(limit.order_id)
        cancelled = wait_for(oms, limit.order_id, lambda o: o.status is S.CANCELLED)
        assert cancelled.filled_quantity == 8

        emulator.reject_next("RMS:Margin Exceeds, Required:24500, Available:10")
        risky = oms.place_order(buy("RELIANCE", 10, order_type="LIMIT", price="2450", product="CNC", stop_loss="2400"))
        rejected = wait_for(oms, risky.order_id, lambda o: o.status is S.REJECTED)
        assert rejected.status_message == "RMS:Margin Exceeds, Required:24500, Available:10"
        with pytest.raises(OrderRejected, match="Invalid `tradingsymbol`") as refused:
            oms.place_order(buy("NOSUCH", 1, order_type="LIMIT", price="100", product="MIS", stop_loss="99"))
        assert refused.value.failed_check == "broker"

        positions = {p.symbol: p.quantity for p in oms.get_positions()}
        assert positions == {"INFY": 10, "RELIANCE": 8}
        fills = oms.get_trades()
        assert sorted(f.trade_id for f in fills) == sorted(t["trade_id"] for t in emulator.book.trades())
        one_order_per_tag(emulator, oms)
        assert emulator.count("place") == 4
    finally:
        oms.stop()
    assert_no_credentials(caplog.text, str(refused.value))


def test_a_restart_finds_every_order_again_by_tag(emulator, sqlite_url):
    # The first session: a resting order, and one whose placement timed out while Kite's
    # order book lags, so it is still SUBMITTED, without a broker id, when the OMS stops.
    oms = start_kite_oms(emulator, sqlite_url, kite_lookup_misses=50, kite_lookup_pause=0.2)
    try:
        resting = oms.place_order(buy("INFY", 10, order_type="LIMIT", price="1490", product="MIS", stop_loss="1480"))
        emulator.faults.lag_reads(30)
        emulator.faults.timeout_after_accept("place", hold=3)
        unsure = oms.place_order(buy("INFY", 5, order_type="LIMIT", price="1480", product="MIS", stop_loss="1470"))
        assert unsure.status is S.SUBMITTED and unsure.broker_order_id is None
        time.sleep(0.3)  # a look-up or two miss: the order stays SUBMITTED, never FAILED on a miss
        assert oms.get_order_status(unsure.order_id).status is S.SUBMITTED
    finally:
        oms.stop()

    # While the OMS is down, the resting order partly fills.
    emulator.faults.clear()
    emulator.set_liquidity("INFY", 4)
    emulator.set_price("INFY", "1489")

    oms = start_kite_oms(emulator, sqlite_url)
    try:
        found = wait_for(oms, unsure.order_id, lambda o: o.broker_order_id is not None)
        assert (found.status, found.filled_quantity) == (S.OPEN, 0)
        caught_up = wait_for(oms, resting.order_id, lambda o: o.filled_quantity == 4)  # filled while down
        assert caught_up.broker_order_id == resting.broker_order_id
        emulator.set_price("INFY", "1479")  # the next fills arrive by polling
        wait_for(oms, resting.order_id, lambda o: o.filled_quantity == 8)
        wait_for(oms, unsure.order_id, lambda o: o.filled_quantity == 4)
        for order_id, filled in ((resting.order_id, 8), (unsure.order_id, 4)):
            assert oms.cancel_order(order_id)
            assert wait_for(oms, order_id, lambda o: o.status is S.CANCELLED).filled_quantity == filled
        orders = {o.order_id: o for o in oms.get_orders()}
        for order in orders.values():
            (at_kite,) = emulator.book.orders_tagged(order.tag)
            assert (order.broker_order_id, order.filled_quantity) == (at_kite["order_id"], at_kite["filled_quantity"])
        assert emulator.count("place") == 2
        assert eventually(lambda: len(oms.get_trades()) == len(emulator.book.trades()))
    finally:
        oms.stop()


def test_a_restart_with_many_live_orders_reads_kites_books_once_not_once_per_order(emulator, sqlite_url):
    # Kite answers 10 reads a second: a look-up per live order, each reading the order
    # book and the order's trades, would take minutes for a few thousand orders.
    oms = start_kite_oms(emulator, sqlite_url)
    try:
        placed = [
            oms.place_order(buy("INFY", 1, order_type="LIMIT", price=str(1400 + k), product="MIS", stop_loss="1300"))
            for k in range(12)
        ]
    finally:
        oms.stop()
    emulator.calls.clear()

    oms = start_kite_oms(emulator, sqlite_url, kite_poll_interval=30)  # no polling reads in the count
    try:
        assert eventually(lambda: emulator.count("orders") >= 1)
        time.sleep(1.0)  # every recovering tracker has looked its order up by now
        # The first poll, the look-ups' shared read, maybe one more as the sharing window
        # ends, and the start-up reconciliation's own fresh read: never one per order.
        assert emulator.count("orders") <= 4, emulator.count("orders")
        assert emulator.count("order_trades") == 0 and emulator.count("trades") <= 3
        for result in placed:
            order = oms.get_order_status(result.order_id)
            assert (order.status, order.broker_order_id) == (S.OPEN, result.broker_order_id)
        assert emulator.count("place") == 0  # found, never sent again
    finally:
        oms.stop()


def test_the_oms_rides_out_a_restart_of_kite_which_keeps_its_day(sqlite_url, tmp_path):
    # Kite going away and coming back (the emulator restarted on the same port, its book
    # kept): the OMS's reads fail meanwhile, then go on; the resting order is still there,
    # fills, and nothing was sent twice.
    state = tmp_path / "kite-book"
    first = KiteEmulator(KEY, SECRET, TOKEN, state_file=state).start()
    first.set_price("INFY", "1500")
    oms = start_kite_oms(first, sqlite_url)
    second = None
    try:
        resting = oms.place_order(buy("INFY", 10, order_type="LIMIT", price="1490", product="MIS", stop_loss="1480"))
        tag = oms.get_order_status(resting.order_id).tag
        port = int(first.url.rsplit(":", 1)[1])
        first.stop()
        time.sleep(0.3)  # a few polls meet a closed port
        second = KiteEmulator(KEY, SECRET, TOKEN, port=port, state_file=state).start()
        (kept,) = second.book.orders_tagged(tag)
        assert (kept["order_id"], kept["status"]) == (resting.broker_order_id, "OPEN")
        second.set_price("INFY", "1489")
        done = wait_for(oms, resting.order_id, lambda o: o.status is S.FILLED, timeout=10)
        assert done.filled_quantity == 10
        assert eventually(lambda: len(oms.get_trades()) == len(second.book.trades()) == 1)
        assert second.count("place") == 0 and len(second.book.orders_tagged(tag)) == 1
    finally:
        oms.stop()
        if second is not None:
            second.stop()
