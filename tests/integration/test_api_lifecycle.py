"""An order's whole life through the HTTP API, with the real server on loopback and the
real client: placed, modified, filled by prices set over HTTP, cancelled; the lists, the
audit trail, trades, positions, state and reconciliation read back over HTTP."""
from __future__ import annotations

from decimal import Decimal

import pytest

from api.client import OMSClient
from domain.enums import OrderStatus
from domain.errors import OrderNotCancellable, OrderRejected
from tests.api_helpers import served
from tests.oms_helpers import buy, sell, wait_for

D = Decimal


def test_place_modify_fill_and_cancel_over_http_read_as_in_process(sqlite_url):
    with served(sqlite_url) as s, s.client(s.key("desk")) as oms:
        oms.paper.set_price("INFY", "1500")
        limit = oms.place_order(buy("INFY", 10, order_type="LIMIT", price="1490", stop_loss="1450", strategy_id=7))
        assert limit.status is OrderStatus.OPEN and limit.broker_order_id

        assert oms.modify_order(limit.order_id, new_price=D("1495.5"), new_quantity=12) is True
        modified = wait_for(oms, limit.order_id, lambda o: o.price == D("1495.5"))
        assert modified.quantity == 12 and modified.strategy_id == 7
        assert modified == s.oms.get_order_status(limit.order_id)  # the very value the OMS holds

        oms.paper.set_price("INFY", "1495.5")
        filled = wait_for(oms, limit.order_id, lambda o: o.status is OrderStatus.FILLED)
        assert (filled.filled_quantity, filled.average_price) == (12, D("1495.5"))
        with pytest.raises(OrderNotCancellable):
            oms.cancel_order(limit.order_id)

        resting = oms.place_order(sell("INFY", 12, order_type="LIMIT", price="1600", strategy_id=7))
        assert oms.cancel_order(resting.order_id) is True
        assert wait_for(oms, resting.order_id, lambda o: o.status is OrderStatus.CANCELLED).filled_quantity == 0

        trades = oms.get_trades(limit.order_id)
        assert [(t.quantity, t.price) for t in trades] == [(12, D("1495.5"))]
        assert trades == s.oms.get_trades(limit.order_id)
        events = oms.get_order_events(limit.order_id)
        assert [e.to_status for e in events][:3] == [OrderStatus.PENDING, OrderStatus.SUBMITTED, OrderStatus.OPEN]
        assert events == s.oms.get_order_events(limit.order_id)
        assert [p.quantity for p in oms.get_positions()] == [12]
        assert [o.order_id for o in oms.get_orders(strategy_id=7)] == [limit.order_id, resting.order_id]
        assert [o.order_id for o in oms.get_orders(statuses=(OrderStatus.CANCELLED,))] == [resting.order_id]
        assert [o.order_id for o in oms.iter_orders(page=1)] == [limit.order_id, resting.order_id]
        assert oms.health().state.value == "RUNNING" and oms.trading_state.value == "RUNNING"
        assert oms.reconcile_positions()["all_clear"] is True


def test_a_refused_order_is_a_422_naming_the_check_and_is_stored_as_in_process(sqlite_url):
    with served(sqlite_url) as s, s.http(s.key("desk")) as http:
        http.post("/paper/prices", json={"symbol": "INFY", "price": 1500})
        response = http.post("/orders", json={"symbol": "INFY", "side": "BUY", "quantity": 10})  # no stop loss
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "order_rejected" and error["check"] == "stop_loss_required"
        assert error["order_id"] is not None and "stop" in error["reason"]
        assert s.oms.get_order_status(error["order_id"]).status is OrderStatus.REJECTED

        bad = http.post("/orders", json={"symbol": "INFY", "side": "BUY", "quantity": 10, "price": "-1"})
        assert bad.status_code == 422
        assert bad.json()["error"] | {"reason": None} == {
            "status": 422, "code": "invalid_request", "check": "input", "reason": None, "order_id": None, "field": "price",
        }
        assert len(s.oms.paper.orders()) == 0
        with OMSClient(s.url, s.key("other")) as client, pytest.raises(OrderRejected) as refused:
            client.place_order(buy("INFY", 10))
        assert refused.value.failed_check == "stop_loss_required"


def test_curl_style_json_with_float_money_and_the_openapi_docs(sqlite_url):
    with served(sqlite_url) as s, s.http(s.key("desk")) as http:
        assert http.post("/paper/prices", json={"symbol": "TCS", "price": 3500.05}).json()["price"] == "3500.05"
        placed = http.post("/orders", json={
            "symbol": "TCS", "side": "BUY", "quantity": 2, "order_type": "LIMIT", "price": 3499.9, "stop_loss": 3400.1,
        })
        assert placed.status_code == 201, placed.text
        off_tick = http.post("/orders", json={"symbol": "TCS", "side": "BUY", "quantity": 2, "order_type": "LIMIT", "price": 3499.95})
        assert (off_tick.status_code, off_tick.json()["error"]["field"]) == (422, "price")
        assert placed.headers["Location"] == f"/api/v1/orders/{placed.json()['order_id']}"
        order = http.get(f"/orders/{placed.json()['order_id']}").json()
        assert (order["price"], order["stop_loss"]) == ("3499.9", "3400.1")
        listed = http.get("/orders", params={"status": "OPEN,FILLED", "limit": 1}).json()
        assert [o["order_id"] for o in listed["orders"]] == [placed.json()["order_id"]] == [listed["next_after_id"]]
        assert http.get("/orders", params={"status": "DONE"}).json()["error"]["field"] == "status"
        state = http.get("/state").json()
        assert state["trading_state"] == "RUNNING" and state["broker"] == "paper"
        spec = http.get(s.url + "/openapi.json").json()
        assert {"/api/v1/orders", "/api/v1/orders/{order_id}", "/api/v1/trades", "/api/v1/positions", "/api/v1/state",
                "/api/v1/reconcile", "/api/v1/paper/prices", "/api/v1/orders/{order_id}/events"} <= set(spec["paths"])
        assert http.get(s.url + "/docs").status_code == 200
