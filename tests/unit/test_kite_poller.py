"""The Kite order poller: each change delivered once, each trade once, trades before
the order they complete, and a trade held back until its order (and tag) is listed."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path

from actors.brokers.kite_poller import OrderPoller
from domain.broker import BrokerOrderUpdate, BrokerTrade

MOCKS = Path(__file__).resolve().parents[3] / "shared" / "kite-mocks"
NOW = datetime(2026, 11, 30, 4, 0, tzinfo=timezone.utc)


def kite_order(order_id="101", status="OPEN", filled=0, tag="AB1", price=1490.5):
    body = dict(json.loads((MOCKS / "orders.json").read_text())["data"][1])
    return dict(body, order_id=order_id, status=status, filled_quantity=filled, quantity=10, tag=tag, price=price)


def kite_trade(trade_id="9001", order_id="101", quantity=4):
    body = dict(json.loads((MOCKS / "trades.json").read_text())["data"][0])
    return dict(body, trade_id=trade_id, order_id=order_id, quantity=quantity)


class Books:
    def __init__(self):
        self.orders: list[dict] = []
        self.trades: list[dict] = []


class Sink:
    def __init__(self):
        self.events: list = []

    def on_order_update(self, update: BrokerOrderUpdate) -> None:
        self.events.append(update)

    def on_trade(self, trade: BrokerTrade) -> None:
        self.events.append(trade)


def poller(books: Books, sink: Sink, **kwargs) -> OrderPoller:
    return OrderPoller(lambda: books.orders, lambda: books.trades, sink, interval=0.01, clock=lambda: NOW, **kwargs)


def test_an_unchanged_order_is_delivered_once():
    books, sink = Books(), Sink()
    books.orders = [kite_order()]
    p = poller(books, sink)
    p.poll_once()
    p.poll_once()
    assert [(e.broker_order_id, e.status) for e in sink.events] == [("101", "OPEN")]


def test_each_change_is_delivered_and_trades_come_before_their_order():
    books, sink = Books(), Sink()
    p = poller(books, sink)
    books.orders = [kite_order()]
    p.poll_once()
    books.orders = [kite_order(filled=4)]
    books.trades = [kite_trade()]
    p.poll_once()
    books.orders = [kite_order(status="COMPLETE", filled=10)]
    books.trades = [kite_trade(), kite_trade("9002", quantity=6)]
    p.poll_once()
    p.poll_once()
    shown = [(type(e).__name__, getattr(e, "status", None) or e.trade_id) for e in sink.events]
    assert shown == [("BrokerOrderUpdate", "OPEN"), ("BrokerTrade", "9001"), ("BrokerOrderUpdate", "OPEN"),
                     ("BrokerTrade", "9002"), ("BrokerOrderUpdate", "COMPLETE")]
    assert all(t.tag == "AB1" for t in sink.events if isinstance(t, BrokerTrade))


def test_a_trade_waits_for_its_order_to_be_listed():
    books, sink = Books(), Sink()
    p = poller(books, sink)
    books.trades = [kite_trade()]
    p.poll_once()
    assert sink.events == []
    books.orders = [kite_order(filled=4)]
    p.poll_once()
    assert [type(e).__name__ for e in sink.events] == ["BrokerTrade", "BrokerOrderUpdate"]
    assert sink.events[0].tag == "AB1"


def test_an_unreadable_order_is_skipped_and_the_rest_delivered():
    books, sink = Books(), Sink()
    books.orders = [kite_order(status="TELEPORTED"), kite_order("102")]
    poller(books, sink).poll_once()
    assert [e.broker_order_id for e in sink.events] == ["102"]


def test_the_thread_keeps_polling_through_failures_and_stops_when_asked():
    sink = Sink()
    failures = iter([RuntimeError("blip"), RuntimeError("blip")])
    polled = threading.Event()

    def read_orders():
        error = next(failures, None)
        if error is not None:
            raise error
        polled.set()
        return [kite_order()]

    p = OrderPoller(read_orders, lambda: [], sink, interval=0.01, max_interval=0.05, clock=lambda: NOW)
    p.start()
    try:
        assert polled.wait(5)
    finally:
        p.stop()
    assert [e.status for e in sink.events] == ["OPEN"]
