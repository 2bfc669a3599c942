"""The monitoring settings: the metrics port, the alert thresholds (a setting of their
own, JSON in the environment, a table in TOML), the sinks and the log format."""
from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from actors import OMSSettings
from actors.oms import alert_sinks
from domain.monitoring import OMSAlertsConfig
from observability.logs import secrets_of
from observability.sinks import TelegramSink, WebhookSink


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("OMS_"):
            monkeypatch.delenv(name)


def test_by_default_no_port_the_guides_thresholds_text_logs_and_only_the_log_sink():
    settings = OMSSettings()
    assert settings.metrics_port is None and settings.log_format == "text"
    assert settings.alerts == OMSAlertsConfig()
    assert alert_sinks(settings) == []


def test_thresholds_come_as_json_from_the_environment_and_as_a_table_from_toml(monkeypatch, tmp_path):
    monkeypatch.setenv("OMS_ALERTS", '{"order_latency_warning_ms": 300, "min_orders": 50}')
    monkeypatch.setenv("OMS_METRICS_PORT", "9108")
    monkeypatch.setenv("OMS_LOG_FORMAT", "json")
    settings = OMSSettings()
    assert (settings.alerts.order_latency_warning_ms, settings.alerts.min_orders) == (300, 50)
    assert settings.alerts.order_latency_critical_ms == 1000  # the rest stay the guide's
    assert (settings.metrics_port, settings.log_format) == (9108, "json")

    monkeypatch.delenv("OMS_ALERTS")
    toml = tmp_path / "oms.toml"
    toml.write_text('[alerts]\norder_success_rate_warning = 0.99\nevaluate_every = 1.5\n')
    settings = OMSSettings(config_file=toml)
    assert (settings.alerts.order_success_rate_warning, settings.alerts.evaluate_every) == (0.99, 1.5)


def test_an_empty_metrics_port_serves_nothing_and_a_bad_one_is_refused(monkeypatch):
    monkeypatch.setenv("OMS_METRICS_PORT", "")
    assert OMSSettings().metrics_port is None
    with pytest.raises(ValidationError, match="metrics_port"):
        OMSSettings(metrics_port=70000)
    with pytest.raises(ValidationError, match="log_format"):
        OMSSettings(log_format="xml")


def test_the_sinks_the_settings_configure(monkeypatch):
    monkeypatch.setenv("OMS_ALERT_WEBHOOK_URL", "https://hooks.example.com/T1/B2/s3cr3tpath")
    monkeypatch.setenv("OMS_ALERT_TELEGRAM_BOT_TOKEN", "7712345678:AAH-settings-token")
    monkeypatch.setenv("OMS_ALERT_TELEGRAM_CHAT_ID", "-100555")
    settings = OMSSettings()
    webhook, telegram = alert_sinks(settings)
    assert isinstance(webhook, WebhookSink) and isinstance(telegram, TelegramSink)
    shown = repr(settings) + repr(webhook) + repr(telegram)
    assert "s3cr3tpath" not in shown and "AAH-settings-token" not in shown
    assert {"https://hooks.example.com/T1/B2/s3cr3tpath", "7712345678:AAH-settings-token"} <= set(secrets_of(settings))


def test_telegram_needs_both_its_token_and_its_chat():
    with pytest.raises(ValidationError, match="alert_telegram_chat_id"):
        OMSSettings(alert_telegram_bot_token="7712345678:AAH-x")


def test_a_webhook_that_is_not_http_is_refused_without_echoing_it():
    with pytest.raises(ValidationError) as refused:
        OMSSettings(alert_webhook_url="ftp://hooks.example.com/secretpath")
    assert "alert_webhook_url" in str(refused.value) and "secretpath" not in str(refused.value)


def test_the_database_password_counts_as_a_secret():
    settings = OMSSettings(database_url="postgresql+psycopg://oms:db-Pa55-x@127.0.0.1:5432/oms")
    assert "db-Pa55-x" in secrets_of(settings)
