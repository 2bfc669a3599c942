"""KiteBroker on the real kiteconnect client against the Kite emulator: what it sends,
what it hears back (polled, de-duplicated), and what each misbehaviour means."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Iterator

import pytest

from actors.brokers.kite import KiteBroker
from domain.broker import (
    BrokerAmbiguous,
    BrokerOrderRequest,
    BrokerOrderUpdate,
    BrokerRejected,
    BrokerTrade,
    BrokerUnavailable,
)
from domain.enums import Exchange, OrderType, Product, Side, Validity
from emulator import KiteEmulator

D = Decimal
KEY, TOKEN = "em_key", "em_token_9f3a"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Sink:
    def __init__(self) -> None:
        self.events: list = []
        self._changed = threading.Condition()

    def on_order_update(self, update: BrokerOrderUpdate) -> None:
        with self._changed:
            self.events.append(update)
            self._changed.notify_all()

    on_trade = on_order_update

    def wait(self, predicate, timeout: float = 10.0):
        with self._changed:
            assert self._changed.wait_for(lambda: any(predicate(e) for e in self.events), timeout), self.events
            return next(e for e in self.events if predicate(e))

    def updates(self, order_id: str) -> list[BrokerOrderUpdate]:
        return [e for e in self.events if isinstance(e, BrokerOrderUpdate) and e.broker_order_id == order_id]


@pytest.fixture
def emulator() -> Iterator[KiteEmulator]:
    with KiteEmulator(KEY, "em_secret", TOKEN) as emu:
        emu.set_price("INFY", "1500")
        yield emu


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def broker(emulator, sink) -> Iterator[KiteBroker]:
    kite = KiteBroker(api_key=KEY, access_token=TOKEN, root=emulator.url, clock=utc_now, timeout=1.0, poll_interval=0.05)
    kite.connect(sink)
    yield kite
    kite.close()


def order(tag: str = "KT1", order_type: OrderType = OrderType.MARKET, quantity: int = 10, **fields) -> BrokerOrderRequest:
    return BrokerOrderRequest(tag, Exchange.NSE, "INFY", Side.BUY, quantity, order_type, Product.MIS, Validity.DAY, **fields)


def placed_forms(emulator: KiteEmulator) -> list[dict]:
    return [params for route, params in emulator.calls if route == "place"]


# --------------------------------------------------------------------------- what is sent


def test_a_market_order_carries_our_tag_and_automatic_market_protection(emulator, broker):
    broker.place(order("KT1"))
    broker.place(order("KT2", OrderType.LIMIT, price=D("1490.50")))
    broker.place(order("KT3", OrderType.SL_M, trigger_price=D("1510")))
    market, limit, stop = placed_forms(emulator)
    assert {k: market[k] for k in ("variety", "tag", "market_protection", "order_type")} == {
        "variety": "regular", "tag": "KT1", "market_protection": "-1", "order_type": "MARKET"}
    assert "price" not in market and "algo_id" not in market
    assert (limit["price"], "market_protection" in limit) == ("1490.50", False)
    assert (stop["trigger_price"], stop["market_protection"]) == ("1510", "-1")


def test_a_configured_protection_and_algo_id_are_sent(emulator):
    kite = KiteBroker(api_key=KEY, access_token=TOKEN, root=emulator.url, clock=utc_now,
                      market_protection=3, algo_id="ALGO42")
    kite.place(order())
    (form,) = placed_forms(emulator)
    assert (form["market_protection"], form["algo_id"]) == ("3", "ALGO42")


# --------------------------------------------------------------------------- what comes back


def test_fills_arrive_by_polling_once_each_and_the_order_settles(emulator, broker, sink):
    emulator.set_liquidity("INFY", 4)
    order_id = broker.place(order("KT1", OrderType.LIMIT, price=D("1490")))
    sink.wait(lambda e: isinstance(e, BrokerOrderUpdate) and e.status == "OPEN")
    emulator.set_price("INFY", "1489.95")
    emulator.set_price("INFY", "1489.90")
    emulator.set_price("INFY", "1489.85")
    sink.wait(lambda e: isinstance(e, BrokerOrderUpdate) and e.status == "COMPLETE")
    time.sleep(0.2)  # a few more polling rounds: nothing is delivered twice
    trades = [e for e in sink.events if isinstance(e, BrokerTrade)]
    assert [t.quantity for t in trades] == [4, 4, 2]
    assert len({t.trade_id for t in trades}) == 3 and {t.tag for t in trades} == {"KT1"}
    assert [t.price for t in trades] == [D("1489.95"), D("1489.9"), D("1489.85")]
    statuses = [(u.status, u.filled_quantity) for u in sink.updates(order_id)]
    assert statuses[-1] == ("COMPLETE", 10) and len(statuses) == len(set(statuses))
    assert broker.trades(order_id) == trades
    found = broker.find_by_tag("KT1")
    assert (found.broker_order_id, found.status, found.average_price) == (order_id, "COMPLETE", D("1489.91"))


def test_modify_and_cancel_are_confirmed_by_updates(emulator, broker, sink):
    order_id = broker.place(order("KT1", OrderType.LIMIT, price=D("1490")))
    broker.modify(order_id, quantity=12, price=D("1495.50"))
    sink.wait(lambda e: isinstance(e, BrokerOrderUpdate) and e.price == D("1495.5") and e.quantity == 12)
    broker.cancel(order_id)
    sink.wait(lambda e: isinstance(e, BrokerOrderUpdate) and e.status == "CANCELLED")
    with pytest.raises(BrokerRejected, match="CANCELLED"):
        broker.cancel(order_id)
    with pytest.raises(BrokerRejected, match="CANCELLED"):
        broker.modify(order_id, price=D("1496"))


def test_kites_refusals_come_back_in_kites_words(emulator, broker, sink):
    with pytest.raises(BrokerRejected, match="Invalid `tradingsymbol`"):
        broker.place(BrokerOrderRequest("KT9", Exchange.NSE, "NOPE", Side.BUY, 1, OrderType.LIMIT, Product.MIS, Validity.DAY, price=D("10")))
    emulator.reject_next("RMS:Margin Exceeds, Required:15000, Available:10")
    order_id = broker.place(order("KT2"))  # accepted, then rejected in the order book
    rejected = sink.wait(lambda e: isinstance(e, BrokerOrderUpdate) and e.status == "REJECTED")
    assert (rejected.broker_order_id, rejected.message) == (order_id, "RMS:Margin Exceeds, Required:15000, Available:10")


def test_account_reads(emulator, broker):
    broker.place(order())
    (position,) = broker.account_positions()["net"]
    assert (position.symbol, position.quantity, position.average_price) == ("INFY", 10, D("1500"))
    assert broker.margins()["equity"].debits == D("15000")
    assert broker.last_prices("NSE:INFY") == {"NSE:INFY": D("1500")}
    (infy,) = broker.instruments()
    assert (infy.symbol, infy.tick_size, infy.lot_size) == ("INFY", D("0.01"), 1)


# --------------------------------------------------------------------------- misbehaviour


def test_a_timeout_after_accept_is_ambiguous_and_the_order_is_found_by_tag(emulator, broker):
    emulator.faults.timeout_after_accept("place", hold=5)
    with pytest.raises(BrokerAmbiguous, match="no answer from Kite"):
        broker.place(order("LOST1"))
    found = broker.find_by_tag("LOST1")
    assert found is not None and found.status == "COMPLETE"
    assert len(emulator.book.orders_tagged("LOST1")) == 1


def test_a_429_on_place_is_not_sent_try_later(emulator, broker):
    emulator.faults.fail(429, "place")
    with pytest.raises(BrokerUnavailable, match="rate limit"):
        broker.place(order("KT1"))
    assert emulator.book.orders_tagged("KT1") == []


def test_reads_wait_out_429s(emulator, broker):
    emulator.faults.fail(429, "orders", times=2)
    before = emulator.count("orders")
    assert broker.orders() == []  # a read of its own (a look-up may share the one at connect)
    assert emulator.count("orders") - before >= 3


@pytest.mark.parametrize(("status", "html"), [(500, False), (503, False), (502, True), (504, True)])
def test_a_5xx_on_place_is_ambiguous(emulator, broker, status, html):
    emulator.faults.fail(status, "place", html=html)
    with pytest.raises(BrokerAmbiguous, match="may have taken effect"):
        broker.place(order("KT1"))
    assert broker.find_by_tag("KT1") is None  # this time it had not


def test_an_expired_token_stops_orders_until_a_fresh_one_is_set(emulator, broker, sink):
    emulator.expire_tokens()
    with pytest.raises(BrokerUnavailable, match="log in again") as refused:
        broker.place(order("KT1"))
    with pytest.raises(BrokerUnavailable, match="log in again"):
        broker.place(order("KT2"))
    assert len(placed_forms(emulator)) == 1  # the second was never sent
    assert TOKEN not in str(refused.value) and KEY not in str(refused.value)
    assert broker.refusal is not None and TOKEN not in repr(broker)

    fresh = "fresh_token_77"
    emulator.add_access_token(fresh)
    broker.set_access_token(fresh)
    order_id = broker.place(order("KT3"))
    sink.wait(lambda e: isinstance(e, BrokerOrderUpdate) and e.broker_order_id == order_id)
