"""Monitoring, end to end: a real OMS on the paper exchange, its metrics scraped over HTTP
from its loopback port, and its alerts delivered to a real webhook receiver and a fake
Telegram on 127.0.0.1. An injected reconciliation mismatch raises exactly one alert,
which is resolved once the positions agree again."""
from __future__ import annotations

import socket
import threading
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors import start_oms
from domain import OrderRejected, OrderStatus
from tests.alert_receivers import Receiver
from tests.oms_helpers import buy, wait_for

BOT_TOKEN = "7712345678:AAH-monitoring-test-token"


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a real scrape, by (name, labels)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_a_scrape_of_the_metrics_port_shows_the_five_kpis_and_the_counters(sqlite_url):
    oms = start_oms(database_url=sqlite_url, metrics_port=0, reconcile_interval=0, alerts={"evaluate_every": 3600})
    try:
        assert oms.metrics_url.startswith("http://127.0.0.1:")
        oms.paper.set_price("RELIANCE", "2450")
        oms.paper.set_price("INFY", "1500")
        filled = oms.place_order(buy("RELIANCE", 10, order_type="MARKET", stop_loss="2430", take_profit="2490"))
        wait_for(oms, filled.order_id, lambda o: o.status is OrderStatus.FILLED)
        resting = oms.place_order(buy("INFY", 5, order_type="LIMIT", price="1490", stop_loss="1480", take_profit="1520"))
        assert oms.cancel_order(resting.order_id)
        wait_for(oms, resting.order_id, lambda o: o.status is OrderStatus.CANCELLED)
        with pytest.raises(OrderRejected) as outside_band:  # refused by the exchange, not the OMS
            oms.place_order(buy("INFY", 5, order_type="LIMIT", price="1100", stop_loss="1090", take_profit="1120"))
        assert outside_band.value.failed_check == "broker"
        with pytest.raises(OrderRejected) as no_stop:  # refused by a pre-trade check: not a placement
            oms.place_order(buy("INFY", 5, order_type="LIMIT", price="1490"))
        assert no_stop.value.failed_check == "stop_loss_required"

        samples = scrape(oms.metrics_url)
        deadline = time.monotonic() + 5
        while value(samples, "oms_live_orders") and time.monotonic() < deadline:  # trackers tell they ended
            time.sleep(0.01)
            samples = scrape(oms.metrics_url)
    finally:
        oms.stop()

    # The five KPIs: 2 of 3 placements accepted; 1 of 3 ended orders filled.
    assert value(samples, "oms_order_success_ratio") == pytest.approx(2 / 3)
    assert value(samples, "oms_order_fill_ratio") == pytest.approx(1 / 3)
    assert value(samples, "oms_order_latency_seconds_count") == 3
    assert 0 < value(samples, "oms_order_latency_quantile_seconds", quantile="0.95") < 1
    assert 0 < value(samples, "oms_order_latency_quantile_seconds", quantile="0.99") < 1
    assert value(samples, "oms_reconciliation_mismatches") == 0
    assert ("oms_reconciliation_issues_total", ()) not in samples  # none found: no series yet
    assert value(samples, "oms_position_accuracy_ratio") == 1.0
    assert value(samples, "oms_reconciliations_total", result="all_clear") == 1  # the pass at start
    # ... and the usual counters.
    assert value(samples, "oms_orders_total", status="FILLED") == 1
    assert value(samples, "oms_orders_total", status="CANCELLED") == 1
    assert value(samples, "oms_orders_total", status="REJECTED") == 2
    assert value(samples, "oms_orders_total", status="SUBMITTED") == 3
    assert value(samples, "oms_order_rejections_total", check="broker") == 1
    assert value(samples, "oms_order_rejections_total", check="stop_loss_required") == 1
    assert value(samples, "oms_fills_total") == 1
    assert value(samples, "oms_live_orders") == 0
    assert value(samples, "oms_db_write_seconds_count") >= 3
    assert value(samples, "oms_kpi_samples", kpi="order_success_ratio") == 3
    assert all(name.startswith("oms_") for name, _ in samples)


def test_a_reading_taken_while_orders_are_placed_never_counts_a_placement_before_its_latency(sqlite_url):
    """The broker's answer is timed before the commit that counts the placement, and the
    KPIs read the placements before the latencies: however a reading falls among the
    orders' commits, it stands on at least as many latencies as placements."""
    oms = start_oms(database_url=sqlite_url, reconcile_interval=0, alerts={"evaluate_every": 3600})
    readings = []
    placing = threading.Event()

    def read_while_placing() -> None:
        while placing.is_set():
            readings.append(oms.metrics.kpis())

    try:
        oms.paper.set_price("RELIANCE", "2450")
        placing.set()
        reader = threading.Thread(target=read_while_placing)
        reader.start()
        try:
            for n in range(40):
                # resting, or refused by the exchange (a bid outside the circuit band)
                bid, stop, target = ("2440", "2430", "2490") if n % 2 else ("1100", "1090", "1120")
                try:
                    oms.place_order(buy("RELIANCE", 1, order_type="LIMIT", price=bid, stop_loss=stop, take_profit=target))
                except OrderRejected as refused:
                    assert refused.failed_check == "broker"
        finally:
            placing.clear()
            reader.join(10)
        final = oms.metrics.kpis()
    finally:
        oms.stop()
    assert final.placements == 40 and final.latencies == 40
    assert len(readings) > 40
    assert all(k.latencies >= k.placements for k in readings), [(k.placements, k.latencies) for k in readings if k.latencies < k.placements]


def test_stopping_the_oms_stops_its_metrics_server(sqlite_url):
    oms = start_oms(database_url=sqlite_url, metrics_port=0, reconcile_interval=0)
    port = oms.metrics_server.port
    assert scrape(oms.metrics_url)
    oms.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    assert not [t for t in threading.enumerate() if t.name.startswith("oms-metrics")]


def test_a_metrics_port_in_use_is_refused_before_anything_starts(sqlite_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match=f"metrics_port: cannot listen on 127.0.0.1:{taken.getsockname()[1]}"):
            start_oms(database_url=sqlite_url, metrics_port=taken.getsockname()[1])
    start_oms(database_url=sqlite_url, reconcile_interval=0).stop()  # nothing was left holding the account


def test_two_oms_in_one_process_keep_their_metrics_apart(tmp_path):
    one = start_oms(database_url=f"sqlite:///{tmp_path / 'one.db'}", reconcile_interval=0)
    two = start_oms(database_url=f"sqlite:///{tmp_path / 'two.db'}", reconcile_interval=0)
    try:
        one.paper.set_price("RELIANCE", "2450")
        one.place_order(buy("RELIANCE", 1, order_type="MARKET", stop_loss="2430", take_profit="2490"))
        assert b'oms_orders_total{status="SUBMITTED"} 1.0' in one.metrics_text()
        assert b'oms_orders_total{status="SUBMITTED"} 0.0' in two.metrics_text()
    finally:
        two.stop()
        one.stop()


def test_an_injected_reconciliation_mismatch_raises_exactly_one_alert_which_clears_after_the_fix(database_url):
    with Receiver() as webhook, Receiver() as telegram:
        oms = start_oms(
            database_url=database_url, reconcile_interval=0, reconcile_settle=0.05,
            alerts={"evaluate_every": 0.05},  # evaluated continuously, on the alerter's own timer
            alert_webhook_url=f"{webhook.url}/oms-alerts", alert_telegram_bot_token=BOT_TOKEN,
            alert_telegram_chat_id="-100777", alert_telegram_api_root=telegram.url,
        )
        try:
            oms.paper.set_price("RELIANCE", "2450")
            placed = oms.place_order(buy("RELIANCE", 10, order_type="MARKET", stop_loss="2430", take_profit="2490"))
            wait_for(oms, placed.order_id, lambda o: o.status is OrderStatus.FILLED)
            assert oms.reconcile_positions()["all_clear"]
            assert oms.evaluate_alerts().fired == () and oms.alerts == []

            oms.paper.trade_outside("RELIANCE", "SELL", 2)  # someone sells 2 at the broker's terminal
            report = oms.reconcile_positions()
            assert [m["type"] for m in report["mismatches"]] == ["QUANTITY_MISMATCH"]  # found and corrected
            [fired] = webhook.wait_for(1)
            for _ in range(3):  # more evaluations while it holds: nothing new is sent
                oms.evaluate_alerts()
            (active,) = oms.alerts
            assert (active.name.value, active.severity.value) == ("reconciliation_mismatch", "warning")
            assert b'oms_alerts_firing{alert="reconciliation_mismatch",severity="warning"} 1.0' in oms.metrics_text()

            assert oms.reconcile_positions()["all_clear"]  # the next pass: the positions agree again
            _, resolved = webhook.wait_for(2)
            for _ in range(3):
                oms.evaluate_alerts()
            assert oms.alerts == []
            assert b'oms_alerts_firing{alert="reconciliation_mismatch",severity="warning"} 0.0' in oms.metrics_text()
        finally:
            oms.stop()
        sent_to_telegram = telegram.wait_for(2)

    assert len(webhook.bodies()) == 2  # exactly one alert, and its resolution
    assert (fired["state"], fired["alert"], fired["severity"], fired["value"]) == ("firing", "reconciliation_mismatch", "warning", 1.0)
    assert "found 1 position(s) differing" in fired["summary"]
    assert (resolved["state"], resolved["alert"], resolved["since"]) == ("resolved", "reconciliation_mismatch", fired["since"])
    assert [path for path, _ in telegram.received] == [f"/bot{BOT_TOKEN}/sendMessage"] * 2
    assert sent_to_telegram[0]["text"].startswith("[WARNING] OMS default: reconciliation_mismatch")
    assert sent_to_telegram[1]["text"].startswith("[RESOLVED] OMS default: reconciliation_mismatch")


def test_the_metrics_app_answers_what_a_server_mounts_at_slash_metrics(sqlite_url):
    import asyncio

    from observability.exposition import metrics_app, wsgi_app

    oms = start_oms(database_url=sqlite_url, reconcile_interval=0)
    try:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/metrics", "query_string": b"", "headers": []}
        asyncio.run(metrics_app(oms)(scope, receive, send))
        start, *bodies = sent
        assert start["status"] == 200
        body = b"".join(m.get("body", b"") for m in bodies).decode()
        assert "oms_order_success_ratio" in body and "oms_position_accuracy_ratio 1.0" in body

        statuses: list[str] = []
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": "", "wsgi.input": None}
        chunks = wsgi_app(oms.metrics)(environ, lambda status, headers: statuses.append(status))
        assert statuses == ["200 OK"] and b"oms_reconciliations_total" in b"".join(chunks)
    finally:
        oms.stop()


def test_on_kite_broker_errors_and_rate_limit_waits_are_counted(sqlite_url):
    from tests.kite_helpers import kite_emulator, start_kite_oms

    with kite_emulator() as emulator:
        oms = start_kite_oms(emulator, sqlite_url, reconcile_interval=0, kite_orders_per_second=2)
        try:
            oms.mark_price("INFY", "1500")
            emulator.faults.fail(500, "place")  # Kite's back end fails: the order may exist
            unsure = oms.place_order(buy("INFY", 1, order_type="MARKET", stop_loss="1480", take_profit="1530"))
            assert unsure.status is OrderStatus.SUBMITTED
            for _ in range(3):  # two a second: the third waits its turn
                oms.place_order(buy("INFY", 1, order_type="MARKET", stop_loss="1480", take_profit="1530"))
            text = oms.metrics_text().decode()
        finally:
            oms.stop()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }
    assert value(samples, "oms_broker_errors_total", operation="place", kind="ambiguous") == 1
    assert value(samples, "oms_rate_limit_waits_total", family="order requests") >= 1
    assert value(samples, "oms_rate_limit_wait_seconds_sum", family="order requests") > 0
    assert value(samples, "oms_order_latency_seconds_count") == 4  # the unsure one too: its caller was answered
