"""The event stream over a WebSocket: order, trade and position events and the guide's
tradeExecuted, filtered by strategy; a client that reconnects with the last id it saw
gets what it missed, and one whose id is gone is told of the gap."""
from __future__ import annotations

from decimal import Decimal

import pytest
from websockets.exceptions import InvalidStatus

from api.client import OMSClient
from tests.api_helpers import served
from tests.oms_helpers import buy, sell


def until(stream, wanted, timeout: float = 10.0) -> list[dict]:
    """Events up to and including the first for which ``wanted(event)``."""
    seen = []
    while True:
        event = stream.receive(timeout=timeout)
        seen.append(event)
        if wanted(event):
            return seen


def test_a_strategy_hears_its_orders_fills_positions_and_the_closed_trade(sqlite_url):
    with served(sqlite_url) as s, s.client(s.key("seven", strategies=[7])) as seven, s.client(s.key("admin")) as admin:
        admin.paper.set_price("INFY", "1500")
        admin.paper.set_price("TCS", "3500")
        with seven.events() as stream:
            other = admin.place_order(buy("TCS", 1, stop_loss="3450", strategy_id=8))
            entry = seven.place_order(buy("INFY", 5, stop_loss="1450", strategy_id=7))
            heard = until(stream, lambda e: e["type"] == "trade")
            admin.paper.set_price("INFY", "1512.5")
            seven.place_order(sell("INFY", 5, strategy_id=7, metadata={"exit_reason": "target"}))
            heard += until(stream, lambda e: e["type"] == "tradeExecuted")
        assert {e["strategy_id"] for e in heard} == {7}
        assert "position" not in {e["type"] for e in heard}  # a position is the account's: not for a limited key
        assert other.order_id not in {e["data"].get("order", {}).get("order_id") for e in heard}
        statuses = [e["data"]["order"]["status"] for e in heard if e["type"] == "order" and e["data"]["order"]["order_id"] == entry.order_id]
        assert statuses[0] == "SUBMITTED" and statuses[-1] == "FILLED"  # PENDING and SUBMITTED commit together
        trade = next(e for e in heard if e["type"] == "trade")
        assert (trade["data"]["order_id"], trade["data"]["trade"]["quantity"]) == (entry.order_id, 5)
        closed = heard[-1]["data"]
        assert Decimal(closed["pnl"]) == Decimal("62.5")  # (1512.5 - 1500) x 5, gross of charges
        assert closed | {"time": None, "pnl": None} == {
            "pnl": None, "symbol": "INFY", "time": None, "exitReason": "target", "exchange": "NSE", "product": "MIS",
            "order_id": closed["order_id"],
        }
        ids = [int(e["id"].rpartition("-")[2]) for e in heard]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_a_client_that_reconnects_with_its_last_id_gets_what_it_missed_once(sqlite_url):
    with served(sqlite_url) as s, s.client(s.key("admin")) as oms:
        oms.paper.set_price("INFY", "1500")
        with oms.events() as stream:
            oms.place_order(buy("INFY", 1, order_type="LIMIT", price="1400", stop_loss="1350"))
            before = until(stream, lambda e: e["type"] == "order" and e["data"]["order"]["status"] == "OPEN")
            last = stream.last_event_id
        missed = oms.place_order(buy("INFY", 2, stop_loss="1450"))  # while away: placed and filled
        s.oms.get_order_status(missed.order_id)
        with oms.events(last_event_id=last) as stream:
            after = until(stream, lambda e: e["type"] == "position")
        assert after[0]["id"] != last and {e["id"] for e in before}.isdisjoint(e["id"] for e in after)
        assert after[0]["data"]["order"]["order_id"] == missed.order_id and after[0]["data"]["order"]["status"] == "SUBMITTED"
        assert int(after[0]["id"].rpartition("-")[2]) == int(last.rpartition("-")[2]) + 1

        with oms.events(last_event_id="0123abcd-5") as stream:  # another run's id: told of the gap, then all kept
            first = stream.receive(timeout=10)
            assert first["type"] == "gap" and first["data"]["last_event_id"] == "0123abcd-5"
            assert stream.receive(timeout=10)["id"] == before[0]["id"]


def test_the_stream_needs_a_valid_key_and_keeps_to_the_keys_strategies(sqlite_url):
    with served(sqlite_url) as s:
        with pytest.raises(InvalidStatus) as refused, OMSClient(s.url, "oms_" + "B" * 43).events():
            pass
        assert refused.value.response.status_code == 401
        with s.client(s.key("seven", strategies=[7])) as seven:
            with pytest.raises(InvalidStatus) as refused, seven.events(strategy_id=8):
                pass
            assert refused.value.response.status_code == 403


def test_a_revoked_key_loses_its_stream(sqlite_url, monkeypatch):
    monkeypatch.setattr("api.app.KEY_RECHECK", 0.2)
    with served(sqlite_url) as s, s.client(s.key("doomed")) as doomed, s.client(s.key("admin")) as admin:
        admin.paper.set_price("INFY", "1500")
        with doomed.events() as stream:
            admin.place_order(buy("INFY", 1, order_type="LIMIT", price="1400", stop_loss="1350"))
            until(stream, lambda e: e["type"] == "order")
            s.revoke("doomed")
            with pytest.raises(Exception) as ended:  # noqa: B017 - the closed stream, as the websockets client reports it
                for _ in range(100):
                    stream.receive(timeout=5)
            assert "1008" in str(ended.value) or "revoked" in str(ended.value), ended.value
