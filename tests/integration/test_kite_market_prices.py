"""Trading on Kite with ``kite_market_prices``: the OMS follows Kite's live last prices
(the websocket in LTP mode, or ltp() polling with it off) for what it holds, trades and
watches, so a MARKET order is valued at the market's price by the risk checks and the
positions are marked to it; nothing is asked of the strategy (oms.mark_price)."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from domain import OrderStatus
from tests.kite_helpers import eventually, kite_emulator, start_kite_oms
from tests.oms_helpers import buy, wait_for

S = OrderStatus


@pytest.fixture
def emulator():
    with kite_emulator() as emu:
        yield emu


@pytest.mark.parametrize("ticker", [True, False], ids=["websocket", "polling"])
def test_orders_are_valued_and_positions_marked_at_kites_live_prices(emulator, sqlite_url, ticker):
    emulator.set_price("INFY", "1502.35")  # read at start: INFY is on the watchlist
    oms = start_kite_oms(emulator, sqlite_url, kite_market_prices=True, kite_ticker=ticker, paper_watchlist="NSE:INFY",
                         paper_prices_interval=0.2)
    try:
        bought = oms.place_order(buy("INFY", 10, product="MIS", stop_loss="1480"))
        filled = wait_for(oms, bought.order_id, lambda o: o.status is S.FILLED, timeout=10)
        # Valued by the risk checks at Kite's price, not at a price the strategy told.
        assert D(filled.validation_result["entry_price"]) == D("1502.35")

        emulator.set_price("INFY", "1510.00")  # the market moves: the position is marked to it
        (position,) = eventually(lambda: [p for p in oms.get_positions() if p.symbol == "INFY" and p.last_price == D("1510.00")],
                                 10, "INFY marked at 1510")
        assert position.unrealized_pnl == (D("1510.00") - filled.average_price) * 10

        # An instrument in no watchlist is followed from its first order.
        emulator.set_price("RELIANCE", "2461.50")
        other = oms.place_order(buy("RELIANCE", 2, product="MIS", stop_loss="2400"))
        valued = wait_for(oms, other.order_id, lambda o: o.status is S.FILLED, timeout=10).validation_result["entry_price"]
        assert D(valued) == D("2461.50")
    finally:
        oms.stop()


def test_a_restart_marks_what_is_held_from_the_start(emulator, sqlite_url):
    oms = start_kite_oms(emulator, sqlite_url)
    try:
        oms.mark_price("RELIANCE", "2450")
        bought = oms.place_order(buy("RELIANCE", 3, product="NRML", stop_loss="2400"))
        wait_for(oms, bought.order_id, lambda o: o.status is S.FILLED, timeout=10)
    finally:
        oms.stop()
    emulator.set_price("RELIANCE", "2475.50")
    oms = start_kite_oms(emulator, sqlite_url, kite_market_prices=True, paper_prices_interval=0.2)
    try:
        eventually(lambda: [p for p in oms.get_positions() if p.symbol == "RELIANCE" and p.last_price == D("2475.50")], 10,
                   "the held RELIANCE marked at Kite's price after the restart")
    finally:
        oms.stop()
