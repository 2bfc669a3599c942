"""The alert sinks against real HTTP servers on 127.0.0.1: a webhook receiver and a fake
Telegram Bot API. Delivery is best effort and never raises; no secret reaches the log."""
from __future__ import annotations

import logging
import socket
import time
from datetime import datetime, timezone

from pydantic import SecretStr

from domain.monitoring import Alert, AlertName, Severity
from observability.sinks import AlertNotice, LogSink, TelegramSink, WebhookSink
from tests.alert_receivers import Receiver

AT = datetime(2026, 3, 2, 4, 0, tzinfo=timezone.utc)
ALERT = Alert(
    AlertName.RECONCILIATION_MISMATCH, Severity.WARNING,
    "the last reconciliation found 1 position(s) differing from the broker's (alert at 1 or more)", 1.0, 1.0, AT,
)
BOT_TOKEN = "7712345678:AAH-secret-bot-token_zz9"


def notice(state: str = "firing") -> AlertNotice:
    return AlertNotice(state, ALERT, "acct1", AT)


def test_webhook_posts_the_alert_as_json():
    with Receiver() as receiver:
        assert WebhookSink(f"{receiver.url}/hooks/oms", timeout=2).send(notice()) is True
        assert WebhookSink(f"{receiver.url}/hooks/oms", timeout=2).send(notice("resolved")) is True
        [(path, body), (_, resolved)] = receiver.received
    assert path == "/hooks/oms"
    assert body == {
        "state": "firing", "alert": "reconciliation_mismatch", "severity": "warning", "summary": ALERT.summary,
        "value": 1.0, "threshold": 1.0, "since": AT.isoformat(), "at": AT.isoformat(), "account": "acct1",
        "source": "kite-oms",
    }
    assert resolved["state"] == "resolved"


def test_a_webhook_that_fails_is_logged_without_its_secret_path_and_never_raises(caplog):
    secret_path = "/hooks/T000/B000/XXXXsecretXXXX"
    with Receiver(status=500) as receiver, caplog.at_level(logging.ERROR, logger="oms.alerts"):
        assert WebhookSink(receiver.url + secret_path, timeout=2).send(notice()) is False
    assert "HTTP 500" in caplog.text and receiver.url in caplog.text
    assert "secret" not in caplog.text and "hooks" not in caplog.text


def test_a_webhook_nobody_answers_is_given_up_at_its_timeout():
    with Receiver(delay=1.5) as receiver:
        started = time.monotonic()
        assert WebhookSink(receiver.url, timeout=0.3).send(notice()) is False
        assert time.monotonic() - started < 1.2


def test_a_webhook_that_cannot_connect_is_logged(caplog):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with caplog.at_level(logging.ERROR, logger="oms.alerts"):
        assert WebhookSink(f"http://127.0.0.1:{port}/x", timeout=1).send(notice()) is False
    assert "could not connect" in caplog.text


def test_telegram_sends_the_alert_to_the_chat_through_the_bot_api():
    with Receiver() as telegram:
        sink = TelegramSink(SecretStr(BOT_TOKEN), "-100123", api_root=telegram.url, timeout=2)
        assert sink.send(notice()) is True
        [(path, body)] = telegram.received
    assert path == f"/bot{BOT_TOKEN}/sendMessage"
    assert body["chat_id"] == "-100123"
    assert body["text"].startswith("[WARNING] OMS acct1: reconciliation_mismatch: the last reconciliation found 1")


def test_telegram_failures_never_show_the_bot_token(caplog):
    with Receiver(status=401) as telegram, caplog.at_level(logging.DEBUG):
        sink = TelegramSink(SecretStr(BOT_TOKEN), "-100123", api_root=telegram.url, timeout=2)
        assert sink.send(notice()) is False
    assert "HTTP 401" in caplog.text
    assert BOT_TOKEN not in caplog.text and "AAH" not in caplog.text
    assert BOT_TOKEN not in repr(sink)


def test_the_log_sink_logs_critical_alerts_at_critical_and_resolutions_at_warning(caplog):
    critical = Alert(AlertName.POSITION_ACCURACY, Severity.CRITICAL, "position accuracy 97.00% ...", 0.97, 0.99, AT)
    with caplog.at_level(logging.WARNING, logger="oms.alerts"):
        LogSink().send(AlertNotice("firing", critical, "acct1", AT))
        LogSink().send(AlertNotice("resolved", critical, "acct1", AT))
    fired, resolved = caplog.records
    assert (fired.levelno, resolved.levelno) == (logging.CRITICAL, logging.WARNING)
    assert "[CRITICAL] OMS acct1: position_accuracy" in fired.getMessage()
    assert "[RESOLVED]" in resolved.getMessage() and resolved.alert_state == "resolved"
