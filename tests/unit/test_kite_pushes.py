"""Pushed order updates (websocket, postbacks) bring the order's trades when its fills
grew, trades first; each trade once, whoever delivered it; a failed read never holds
the update back."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

from actors.brokers import kite_parsing as parse
from actors.brokers.kite_pushes import PushedUpdates
from domain.broker import BrokerOrderUpdate, BrokerTrade

MOCKS = Path(__file__).resolve().parents[3] / "shared" / "kite-mocks"
NOW = datetime(2022, 3, 3, 4, 0, tzinfo=timezone.utc)


class RecordingSink:
    """The broker's sink as the gateway sees it: everything, in order."""

    def __init__(self) -> None:
        self.events: list[BrokerOrderUpdate | BrokerTrade] = []

    def on_order_update(self, update: BrokerOrderUpdate) -> None:
        self.events.append(update)

    def on_trade(self, trade: BrokerTrade) -> None:
        self.events.append(trade)


class KiteTradeBook:
    """Kite's far side of order_trades(): the trades it lists for an order, and how
    often it was asked."""

    def __init__(self) -> None:
        self.trades: dict[str, list[dict]] = {}
        self.reads = 0
        self.down = False

    def order_trades(self, order_id: str) -> list[dict]:
        self.reads += 1
        if self.down:
            raise ConnectionError("Kite did not answer")
        return list(self.trades.get(order_id, []))


def postback(status: str, filled: int, quantity: int = 2) -> BrokerOrderUpdate:
    body = json.loads((MOCKS / "postback.json").read_text())  # Kite's own body (SBIN, 220303000308932)
    body.update(status=status, filled_quantity=filled, quantity=quantity, pending_quantity=quantity - filled, tag="t7")
    return parse.order_update(body, now=NOW)


def sbin_trade(trade_id: str) -> dict:
    return {"trade_id": trade_id, "order_id": "220303000308932", "exchange": "NSE", "tradingsymbol": "SBIN",
            "instrument_token": 779521, "product": "CNC", "average_price": 470.05, "quantity": 1,
            "exchange_order_id": "1000000001482421", "transaction_type": "BUY",
            "fill_timestamp": "2022-03-03 09:24:25", "order_timestamp": "09:24:25", "exchange_timestamp": "2022-03-03 09:24:25"}


def delivered(pushed: PushedUpdates, count: int) -> None:
    deadline = time.monotonic() + 5
    while pushed.delivered < count:
        assert time.monotonic() < deadline, f"only {pushed.delivered} of {count} updates delivered"
        time.sleep(0.005)


def run(pushed: PushedUpdates, *updates: BrokerOrderUpdate, sink: RecordingSink) -> list:
    pushed.start()
    try:
        for update in updates:
            pushed.on_order_update(update)
        delivered(pushed, len(updates))
    finally:
        pushed.stop()
    return [(type(e).__name__, getattr(e, "trade_id", getattr(e, "status", None))) for e in sink.events]


def test_a_fill_brings_its_trades_first_and_the_same_state_again_reads_nothing():
    sink, kite = RecordingSink(), KiteTradeBook()
    kite.trades["220303000308932"] = [sbin_trade("T1")]
    pushed = PushedUpdates(sink, kite.order_trades)
    seen = run(pushed, postback("OPEN", 0), postback("UPDATE", 1), postback("UPDATE", 1), sink=sink)
    assert seen == [("BrokerOrderUpdate", "OPEN"), ("BrokerTrade", "T1"), ("BrokerOrderUpdate", "UPDATE"),
                    ("BrokerOrderUpdate", "UPDATE")]
    assert kite.reads == 1
    (trade,) = [e for e in sink.events if isinstance(e, BrokerTrade)]
    assert (trade.tag, str(trade.price)) == ("t7", "470.05")  # the order's tag: Kite's trades carry none


def test_a_trade_already_delivered_is_not_delivered_again():
    sink, kite = RecordingSink(), KiteTradeBook()
    kite.trades["220303000308932"] = [sbin_trade("T1"), sbin_trade("T2")]
    delivered_by_polling = {"T1"}
    pushed = PushedUpdates(sink, kite.order_trades, trade_ids=delivered_by_polling)
    seen = run(pushed, postback("COMPLETE", 2), sink=sink)
    assert seen == [("BrokerTrade", "T2"), ("BrokerOrderUpdate", "COMPLETE")]
    assert delivered_by_polling == {"T1", "T2"}


def test_a_lagging_trade_book_is_read_again_at_the_next_update_and_a_failed_read_holds_nothing_back():
    sink, kite = RecordingSink(), KiteTradeBook()
    kite.trades["220303000308932"] = [sbin_trade("T1")]  # the second trade is not listed yet
    pushed = PushedUpdates(sink, kite.order_trades)
    pushed.start()
    try:
        pushed.on_order_update(postback("COMPLETE", 2))
        delivered(pushed, 1)
        kite.trades["220303000308932"].append(sbin_trade("T2"))
        pushed.on_order_update(postback("COMPLETE", 2))  # doubled: and now the trade book has it
        delivered(pushed, 2)
        kite.down = True
        pushed.on_order_update(postback("COMPLETE", 3, quantity=3))
        delivered(pushed, 3)
    finally:
        pushed.stop()
    kinds = [(type(e).__name__, getattr(e, "trade_id", getattr(e, "status", None))) for e in sink.events]
    assert kinds == [("BrokerTrade", "T1"), ("BrokerOrderUpdate", "COMPLETE"), ("BrokerTrade", "T2"),
                     ("BrokerOrderUpdate", "COMPLETE"), ("BrokerOrderUpdate", "COMPLETE")]
    assert kite.reads == 3
