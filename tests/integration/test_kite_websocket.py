"""Kite's websocket: order updates pushed to the OMS as they happen, beside polling.

Polling is slowed to 30 s wherever the websocket must be shown to be the source: what
arrives within a few seconds came by the websocket (or by the poll the OMS makes at
once whenever the websocket reconnects)."""
from __future__ import annotations

import logging
from collections import Counter

import pytest

from domain import OrderStatus
from tests.kite_helpers import KEY, TOKEN, assert_no_credentials, eventually, kite_emulator, start_kite_oms
from tests.oms_helpers import buy, wait_for

S = OrderStatus
SLOW = 30.0  # seconds between polls: longer than any of these tests
KITE_TO_OURS = {"COMPLETE": S.FILLED, "CANCELLED": S.CANCELLED, "REJECTED": S.REJECTED, "OPEN": S.OPEN}


@pytest.fixture
def emulator():
    with kite_emulator() as emu:
        yield emu


def resting(quantity: int, price: str = "1490") -> object:
    return buy("INFY", quantity, order_type="LIMIT", price=price, product="MIS", stop_loss=str(int(price) - 10))


def test_updates_and_fills_arrive_by_websocket_while_polling_sleeps(emulator, sqlite_url):
    oms = start_kite_oms(emulator, sqlite_url, kite_ticker=True, kite_poll_interval=SLOW)
    try:
        eventually(lambda: emulator.ticker.connected, 5, "the websocket connected")
        oms.mark_price("INFY", "1500")
        filling = oms.place_order(resting(10))
        cancelled = oms.place_order(resting(5, "1470"))
        polls = emulator.count("orders"), emulator.count("trades")

        emulator.set_liquidity("INFY", 4)
        emulator.set_price("INFY", "1489")  # 4 of 10 fill
        partly = wait_for(oms, filling.order_id, lambda o: o.filled_quantity == 4, timeout=5)
        assert partly.status is S.OPEN
        (position,) = [p for p in oms.get_positions() if p.symbol == "INFY"]
        assert position.quantity == 4  # a partial fill reaches the position as it happens

        emulator.set_liquidity("INFY", None)
        emulator.set_price("INFY", "1488")
        emulator.book.cancel("regular", cancelled.broker_order_id)  # at Kite, say from its app
        assert wait_for(oms, filling.order_id, lambda o: o.status is S.FILLED, timeout=5).filled_quantity == 10
        assert wait_for(oms, cancelled.order_id, lambda o: o.status is S.CANCELLED, timeout=5)

        # Neither book was polled meanwhile: the websocket brought the updates, and the
        # fills were read as the order's own trades when its filled quantity grew.
        assert (emulator.count("orders"), emulator.count("trades")) == polls
        assert emulator.count("order_trades") >= 2
        ours = sorted(t.trade_id for t in oms.get_trades(filling.order_id))
        assert ours == sorted(str(t["trade_id"]) for t in emulator.book.trades(filling.broker_order_id))
    finally:
        oms.stop()


def test_updates_lost_doubled_and_late_still_end_every_order_as_kite_has_it(emulator, sqlite_url):
    emulator.ticker.configure(drop=0.3, duplicate=0.3, reorder=0.3, seed=11, hold=0.2)
    oms = start_kite_oms(emulator, sqlite_url, kite_ticker=True, kite_poll_interval=0.5)
    try:
        eventually(lambda: emulator.ticker.connected, 5, "the websocket connected")
        oms.mark_price("INFY", "1500")
        placed = [oms.place_order(resting(quantity, price))
                  for quantity, price in ((10, "1490"), (6, "1489"), (8, "1488"), (5, "1470"), (7, "1465"))]
        emulator.set_liquidity("INFY", 3)
        emulator.set_price("INFY", "1489")
        emulator.book.cancel("regular", placed[1].broker_order_id)  # 3 of 6 filled, then cancelled
        for price in ("1488", "1488", "1487", "1487", "1487"):
            emulator.set_price("INFY", price)
        emulator.book.cancel("regular", placed[3].broker_order_id)

        at_kite = {o["order_id"]: o for o in emulator.book.orders()}
        for result in placed:
            kite = at_kite[result.broker_order_id]
            done = wait_for(oms, result.order_id, lambda o, k=kite: (o.status, o.filled_quantity) == (
                KITE_TO_OURS[k["status"]], k["filled_quantity"]), timeout=10)
            assert done.filled_quantity == kite["filled_quantity"]
        counts = emulator.ticker.counts
        assert counts.dropped and counts.duplicated and counts.reordered  # the seed did misbehave

        trades = oms.get_trades()
        assert sorted(t.trade_id for t in trades) == sorted(str(t["trade_id"]) for t in emulator.book.trades())
        assert not [tid for tid, n in Counter(t.trade_id for t in trades).items() if n > 1]
        (position,) = [p for p in oms.get_positions() if p.symbol == "INFY"]
        assert position.quantity == sum(o["filled_quantity"] for o in at_kite.values())
        for result in placed:  # no order ever moved backward
            events = oms.get_order_events(result.order_id)
            assert not [e for e in events if e.from_status is not None and e.from_status.is_terminal]
    finally:
        oms.stop()


def test_a_dropped_connection_is_reconnected_and_what_it_missed_is_read_at_once(emulator, sqlite_url):
    oms = start_kite_oms(emulator, sqlite_url, kite_ticker=True, kite_poll_interval=SLOW)
    try:
        eventually(lambda: emulator.ticker.connected, 5, "the websocket connected")
        oms.mark_price("INFY", "1500")
        placed = oms.place_order(resting(10))
        emulator.ticker.refuse(1)  # the first attempt to reconnect fails
        assert emulator.ticker.disconnect() == 1
        eventually(lambda: not emulator.ticker.connected, 5, "the websocket dropped")
        emulator.set_price("INFY", "1489")  # fills while nobody listens: Kite does not resend it
        eventually(lambda: emulator.ticker.counts.failed >= 1, 5, "the update was lost")

        filled = wait_for(oms, placed.order_id, lambda o: o.status is S.FILLED, timeout=10)
        assert filled.filled_quantity == 10
        assert emulator.ticker.refused == 1 and emulator.ticker.connections >= 2 and emulator.ticker.connected
    finally:
        oms.stop()


def test_a_refused_token_is_reported_without_it_and_a_fresh_one_reconnects(emulator, sqlite_url, caplog):
    caplog.set_level(logging.DEBUG)  # the websocket library logs its request line, token and all, at DEBUG
    oms = start_kite_oms(emulator, sqlite_url, kite_ticker=True, kite_poll_interval=SLOW, log_level="DEBUG")
    try:
        eventually(lambda: emulator.ticker.connected, 5, "the websocket connected")
        emulator.expire_tokens()
        emulator.ticker.disconnect()
        eventually(lambda: emulator.ticker.refused >= 1, 5, "the websocket was refused")
        eventually(lambda: "Kite refused the websocket session (HTTP 403)" in caplog.text, 5, "the refusal was logged")

        emulator.add_access_token("fresh-token-81f2")
        oms.set_access_token("fresh-token-81f2")
        eventually(lambda: emulator.ticker.connected, 5, "the websocket reconnected with the fresh token")
        oms.mark_price("INFY", "1500")
        placed = oms.place_order(resting(10))
        emulator.set_price("INFY", "1489")
        assert wait_for(oms, placed.order_id, lambda o: o.status is S.FILLED, timeout=5)
    finally:
        oms.stop()
    assert "oms.kite.ticker.websockets" in caplog.text and "> GET /?" in caplog.text  # the request line was logged ...
    assert_no_credentials(caplog.text)  # ... with neither the key nor a token in it
    assert "fresh-token-81f2" not in caplog.text and KEY not in caplog.text and TOKEN not in caplog.text


def test_with_the_websocket_off_polling_alone_carries_every_update(emulator, sqlite_url):
    oms = start_kite_oms(emulator, sqlite_url, kite_ticker=False, kite_poll_interval=0.05)
    try:
        oms.mark_price("INFY", "1500")
        placed = oms.place_order(resting(10))
        emulator.set_liquidity("INFY", 4)
        emulator.set_price("INFY", "1489")
        assert wait_for(oms, placed.order_id, lambda o: o.filled_quantity == 4, timeout=5).status is S.OPEN
        emulator.set_liquidity("INFY", None)
        emulator.set_price("INFY", "1488")
        assert wait_for(oms, placed.order_id, lambda o: o.status is S.FILLED, timeout=5).filled_quantity == 10
        assert emulator.ticker.connections == 0 and emulator.count("order_trades") == 0
    finally:
        oms.stop()
