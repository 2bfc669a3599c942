"""The operator's controls over HTTP (halt, reduce-only, resume, the kill switch), the
status document the status page draws, and the metrics on the API server: each needs a
key that may write for the whole account, and each acts through the OMS handle."""
from __future__ import annotations

from decimal import Decimal

import pytest

from api.client import APIError
from domain.enums import OrderStatus
from domain.errors import OrderRejected
from tests.api_helpers import served
from tests.oms_helpers import buy, wait_for

D = Decimal


def test_halt_reduce_only_resume_and_the_kill_switch_over_http(sqlite_url):
    with served(sqlite_url) as s, s.client(s.key("ops")) as ops:
        ops.paper.set_price("INFY", "1500")
        long = ops.place_order(buy("INFY", 10, stop_loss="1450"))
        wait_for(ops, long.order_id, lambda o: o.status is OrderStatus.FILLED)
        resting = ops.place_order(buy("INFY", 5, order_type="LIMIT", price="1400", stop_loss="1350"))

        assert ops.halt("news pending").value == "HALTED"
        with pytest.raises(OrderRejected, match="HALTED"):
            ops.place_order(buy("INFY", 1, order_type="LIMIT", price="1400", stop_loss="1350"))
        assert ops.reduce_only("loss limit near").value == "REDUCE_ONLY"
        assert ops.resume("all clear").value == "RUNNING"

        done = ops.close_all_positions(timeout=30)
        assert done["all_closed"] is True and done["state"] == "HALTED"
        assert resting.order_id in done["cancelled"]
        assert [p.quantity for p in s.oms.get_positions()] == [0]
        assert s.oms.trading_state.value == "HALTED"
        status = ops.status()
        assert status["trading_state"] == "HALTED" and status["positions"][0]["quantity"] == 0


def test_the_controls_refuse_read_only_and_strategy_keys_and_change_nothing(sqlite_url):
    with served(sqlite_url) as s:
        reader, desk = s.client(s.key("reader", read_only=True)), s.client(s.key("desk", strategies=[7]))
        with reader, desk:
            for client in (reader, desk):
                for act in (client.halt, client.reduce_only, client.resume, client.close_all_positions):
                    with pytest.raises(APIError) as refused:
                        act()
                    assert refused.value.status == 403
            with pytest.raises(APIError) as refused:
                desk.status()
            assert refused.value.status == 403 and refused.value.check == "strategy"
            assert reader.status()["trading_state"] == "RUNNING"  # a read-only key may look
        assert s.oms.trading_state.value == "RUNNING"


def test_the_status_document_has_what_the_page_shows(sqlite_url):
    with served(sqlite_url) as s, s.client(s.key("ops")) as ops:
        ops.paper.set_price("TCS", "3500")
        bought = ops.place_order(buy("TCS", 4, stop_loss="3400"))
        wait_for(ops, bought.order_id, lambda o: o.status is OrderStatus.FILLED)
        ops.paper.set_price("TCS", "3510")
        status = ops.status()
        assert status["account"] == "default" and status["broker"] == "paper" and status["live_orders"] == 0
        assert [o["order_id"] for o in status["orders"]] == [bought.order_id]
        (position,) = status["positions"]
        assert (position["symbol"], position["quantity"], position["unrealized_pnl"]) == ("TCS", 4, "40.00")
        pnl = {k: D(v) for k, v in status["pnl"].items()}
        assert pnl["unrealized"] == D(40) and pnl["charges"] > 0 and pnl["net"] == pnl["realized"] + pnl["unrealized"] - pnl["charges"]
        assert D(status["pnl_history"][-1][1]) == pnl["net"]
        kpis = {k["metric"]: k for k in status["kpis"]}
        assert set(kpis) == {"oms_order_success_ratio", "oms_order_fill_ratio", "oms_reconciliation_issues_total",
                             "oms_order_latency_seconds", "oms_position_accuracy_ratio"}
        assert kpis["oms_order_success_ratio"]["value"] == 1.0 and kpis["oms_order_success_ratio"]["warning"] == 0.98
        assert kpis["oms_order_success_ratio"]["critical"] == 0.95
        assert (kpis["oms_order_latency_seconds"]["warning"], kpis["oms_order_latency_seconds"]["critical"]) == (500, 1000)
        assert kpis["oms_position_accuracy_ratio"]["critical"] == 0.99 and status["alerts"] == []


def test_metrics_on_the_api_server_are_open_to_this_host_and_keyed_from_elsewhere(sqlite_url):
    import asyncio

    from api.app import Gatekeeper

    with served(sqlite_url) as s:
        with s.http() as anonymous:  # a Prometheus on this host, with no key
            scraped = anonymous.get(s.url + "/metrics")
        assert scraped.status_code == 200 and "text/plain" in scraped.headers["content-type"]
        for name in ("oms_order_success_ratio", "oms_order_fill_ratio", "oms_reconciliation_issues_total",
                     "oms_order_latency_seconds", "oms_position_accuracy_ratio"):
            assert name in scraped.text
        with s.http() as anonymous:
            assert anonymous.get(s.url + "/api/v1/state").status_code == 401  # the rest stays keyed

        # The same request from another host (as with api_allow_remote) needs a key.
        sent: list[dict] = []

        async def app(scope, receive, send):
            sent.append({"reached": True})

        async def send(message):
            sent.append(message)

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        gate = Gatekeeper(app, keys=None, buckets=None, max_body=1000)  # type: ignore[arg-type]
        remote = {"type": "http", "path": "/metrics", "headers": [], "client": ("192.0.2.7", 40000)}
        asyncio.run(gate(remote, receive, send))
        assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 401 and {"reached": True} not in sent
