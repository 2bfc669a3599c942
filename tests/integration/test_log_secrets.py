"""No secret ever reaches the log. An OMS on Kite (the emulator) with every credential
configured (Kite's API key, secret and access token, a database password, a webhook URL
with a secret path, a Telegram bot token) lives through a day with errors: a broker
rejection, a 5xx on a place, an expired token and a fresh one, failing alert sinks, a
reconciliation mismatch. Its whole log, at DEBUG, in JSON, holds none of them; and the
lines about an order name it and its strategy."""
from __future__ import annotations

import io
import json
import logging

import pytest
from kiteconnect import KiteConnect
from sqlalchemy.engine import make_url

from domain import OrderRejected, OrderStatus, OrderSubmissionFailed
from observability.logs import configure_logging
from tests.alert_receivers import Receiver
from tests.kite_helpers import CREDENTIALS, KEY, kite_emulator, start_kite_oms
from tests.oms_helpers import buy, wait_for

DB_PASSWORD = "db-pa55word-3e1f"
BOT_TOKEN = "7712345678:AAH-log-secrets-bot-token"
WEBHOOK_PATH = "/services/T01/B02/hooksecret5d8c"
FRESH_TOKEN = "kite-token-fresh-71aa"


@pytest.fixture
def json_log():
    """The whole process's log, at DEBUG, as JSON lines, through the launcher's set-up."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("DEBUG", "json", stream=stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.mark.postgres
def test_a_day_with_errors_logs_no_secret_and_names_each_order(fresh_postgres_url, json_log):
    # Trust authentication ignores the password, so it can be configured without being needed.
    database_url = make_url(fresh_postgres_url).set(password=DB_PASSWORD).render_as_string(hide_password=False)
    with kite_emulator() as emulator, Receiver(status=500) as webhook, Receiver(status=401) as telegram:
        emulator.add_access_token(FRESH_TOKEN)
        oms = start_kite_oms(
            emulator, database_url, reconcile_interval=0, reconcile_settle=0.05, log_level="DEBUG",
            alerts={"evaluate_every": 0.05}, alert_webhook_url=webhook.url + WEBHOOK_PATH,
            alert_telegram_bot_token=BOT_TOKEN, alert_telegram_chat_id="-1001", alert_telegram_api_root=telegram.url,
        )
        try:
            oms.mark_price("INFY", "1500")
            placed = oms.place_order(buy("INFY", 5, order_type="MARKET", stop_loss="1480", take_profit="1530", strategy_id=9))
            wait_for(oms, placed.order_id, lambda o: o.status is OrderStatus.FILLED)
            emulator.reject_next()  # Kite's RMS: accepted, then REJECTED
            try:
                rejected = oms.place_order(buy("INFY", 5, order_type="MARKET", stop_loss="1480", take_profit="1530", strategy_id=9))
                wait_for(oms, rejected.order_id, lambda o: o.status is OrderStatus.REJECTED)
            except OrderRejected:
                pass  # ... or refused at once: a rejection all the same
            emulator.faults.fail(500, "place")
            unsure = oms.place_order(buy("INFY", 1, order_type="MARKET", stop_loss="1480", take_profit="1530", strategy_id=9))
            wait_for(oms, unsure.order_id, lambda o: o.status in (OrderStatus.FAILED, OrderStatus.FILLED))
            emulator.expire_tokens()
            with pytest.raises(OrderSubmissionFailed):
                oms.place_order(buy("INFY", 1, order_type="MARKET", stop_loss="1480", take_profit="1530", strategy_id=9))
            emulator.add_access_token(FRESH_TOKEN)  # the next morning's login
            oms.set_access_token(FRESH_TOKEN)
            # Someone sells at the broker's terminal: a mismatch, an alert, and sinks that fail.
            KiteConnect(KEY, FRESH_TOKEN, root=emulator.url, timeout=2).place_order(
                "regular", "NSE", "INFY", "SELL", 2, "MIS", "MARKET", market_protection=-1,
            )
            assert oms.reconcile_positions()["mismatches"]
            webhook.wait_for(1)
            telegram.wait_for(1)
        finally:
            oms.stop()

    text = json_log.getvalue()
    records = [json.loads(line) for line in text.splitlines()]
    assert len(records) > 50  # a DEBUG log of a day with errors: plenty to leak from
    for secret in (*CREDENTIALS, FRESH_TOKEN, DB_PASSWORD, BOT_TOKEN, WEBHOOK_PATH, "hooksecret5d8c", "AAH-log"):
        assert secret not in text, f"{secret!r} leaked into the log"
    about_orders = [r for r in records if r.get("order_id") == placed.order_id]
    assert about_orders and all(r["strategy_id"] == 9 for r in about_orders)
    assert any("rejected" in r["message"].lower() or "RMS" in r["message"] for r in records)
