"""Paper trading on Kite's live prices: the paper exchange takes its prices from Kite
(the emulator's, here) by the websocket in LTP mode, or by polling ltp() when the
websocket is off, and fills at them; not one order reaches Kite."""
from __future__ import annotations

from decimal import Decimal as D

import pytest
from pydantic import ValidationError

from actors import OMSSettings, start_oms
from domain import OrderStatus
from tests.kite_helpers import KEY, TOKEN, eventually, kite_emulator
from tests.oms_helpers import buy, wait_for

S = OrderStatus


@pytest.fixture
def emulator():
    with kite_emulator() as emu:
        yield emu


def start_paper_on_kite(emulator, database_url: str, **overrides):
    settings = dict(
        broker="paper", paper_prices="kite", database_url=database_url, kite_api_key=KEY, kite_access_token=TOKEN,
        kite_root=emulator.url, kite_ws_root=emulator.ws_url, kite_timeout=1.0, paper_watchlist="NSE:INFY",
    )
    settings.update(overrides)
    return start_oms(**settings)


def token_of(emulator, symbol: str) -> int:
    (instrument,) = [i for i in emulator.book.instruments() if i.symbol == symbol]
    return instrument.token


def test_paper_orders_fill_at_kites_streamed_prices_and_none_reaches_kite(emulator, sqlite_url):
    oms = start_paper_on_kite(emulator, sqlite_url)
    try:
        paper = oms.paper.exchange
        assert paper.price("INFY") == D("1500")  # the watchlist's first price, read at start
        eventually(lambda: emulator.ticker.subscriptions() == {token_of(emulator, "INFY"): "ltp"}, 5, "INFY streamed in LTP mode")
        reads = emulator.count("ltp")

        emulator.set_price("INFY", "1502.35")  # the market moves at Kite
        eventually(lambda: paper.price("INFY") == D("1502.35"), 5, "the paper exchange took Kite's price")
        market = oms.place_order(buy("INFY", 10, product="MIS", stop_loss="1480"))
        filled = wait_for(oms, market.order_id, lambda o: o.status is S.FILLED, timeout=5)
        assert filled.average_price == D("1502.35")

        resting = oms.place_order(buy("INFY", 5, order_type="LIMIT", price="1495", product="MIS", stop_loss="1480"))
        assert resting.status is S.OPEN
        emulator.set_price("INFY", "1494.9")
        done = wait_for(oms, resting.order_id, lambda o: o.status is S.FILLED, timeout=5)
        assert done.average_price == D("1494.9")
        (position,) = [p for p in oms.get_positions() if p.symbol == "INFY"]
        assert position.quantity == 15

        assert emulator.count("ltp") == reads  # every move came by the websocket
        assert emulator.book.orders() == [] and emulator.count("place") == 0  # paper: nothing was sent to Kite
    finally:
        oms.stop()


def test_an_instruments_first_order_reads_its_price_and_follows_it_from_then_on(emulator, sqlite_url):
    oms = start_paper_on_kite(emulator, sqlite_url, paper_watchlist="")
    try:
        assert oms.paper.exchange.price("RELIANCE") is None
        placed = oms.place_order(buy("RELIANCE", 4, product="MIS", stop_loss="2400"))  # MARKET: valued at Kite's price
        assert wait_for(oms, placed.order_id, lambda o: o.status is S.FILLED, timeout=5).average_price == D("2450")
        eventually(lambda: token_of(emulator, "RELIANCE") in emulator.ticker.subscriptions(), 5, "RELIANCE streamed")
        emulator.set_price("RELIANCE", "2461.5")
        eventually(lambda: oms.paper.exchange.price("RELIANCE") == D("2461.5"), 5, "the next price streamed")
        assert emulator.count("place") == 0
    finally:
        oms.stop()


def test_with_the_websocket_off_prices_come_by_polling_ltp(emulator, sqlite_url):
    oms = start_paper_on_kite(emulator, sqlite_url, kite_ticker=False, paper_prices_interval=0.2)
    try:
        assert oms.paper.exchange.price("INFY") == D("1500")
        resting = oms.place_order(buy("INFY", 5, order_type="LIMIT", price="1495", product="MIS", stop_loss="1480"))
        emulator.set_price("INFY", "1493.25")
        done = wait_for(oms, resting.order_id, lambda o: o.status is S.FILLED, timeout=5)
        assert done.average_price == D("1493.25")
        assert emulator.ticker.connections == 0 and emulator.count("ltp") >= 2
        assert emulator.count("place") == 0
    finally:
        oms.stop()


def test_paper_on_kites_prices_needs_kite_credentials():
    with pytest.raises(ValidationError, match="paper_prices kite needs kite_api_key"):
        OMSSettings(paper_prices="kite")
    with pytest.raises(ValidationError):
        OMSSettings(paper_watchlist="INFY")  # EXCHANGE:SYMBOL
