"""Kite settings: the broker "kite" needs its credentials, which are SecretStr and never
shown in a repr, a log line or an error message."""
from __future__ import annotations

import logging
import os
from decimal import Decimal

import pytest
from pydantic import ValidationError

from actors import OMSSettings
from actors.settings import describe_settings_error

KEY, SECRET, TOKEN = "kite-key-6b1f", "kite-secret-0c4e", "kite-token-93da"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("OMS_"):
            monkeypatch.delenv(name)


def test_kite_defaults():
    settings = OMSSettings()
    assert (settings.kite_root, settings.kite_timeout, settings.kite_market_protection) == (
        "https://api.kite.trade", 7.0, Decimal(-1))
    assert settings.kite_algo_id is None and settings.kite_access_token is None


def test_credentials_come_from_the_environment_and_stay_hidden(monkeypatch, caplog):
    monkeypatch.setenv("OMS_BROKER", "kite")
    monkeypatch.setenv("OMS_KITE_API_KEY", KEY)
    monkeypatch.setenv("OMS_KITE_API_SECRET", SECRET)
    monkeypatch.setenv("OMS_KITE_ACCESS_TOKEN", TOKEN)
    settings = OMSSettings()
    assert settings.kite_access_token.get_secret_value() == TOKEN
    logging.getLogger("oms").warning("settings: %s %r", settings, settings)
    shown = " ".join([repr(settings), str(settings), settings.model_dump_json(), caplog.text])
    for secret in (KEY, SECRET, TOKEN):
        assert secret not in shown


def test_broker_kite_without_credentials_names_what_is_missing():
    with pytest.raises(ValidationError) as refused:
        OMSSettings(broker="kite", kite_api_secret=SECRET)
    text = describe_settings_error(refused.value)
    assert "OMS_KITE_API_KEY" in text and "OMS_KITE_ACCESS_TOKEN" in text
    assert SECRET not in text and SECRET not in str(refused.value)


def test_a_bad_kite_setting_never_echoes_the_credentials():
    with pytest.raises(ValidationError) as refused:
        OMSSettings(broker="kite", kite_api_key=KEY, kite_access_token=TOKEN, kite_timeout="soon")
    assert "kite_timeout" in str(refused.value)
    assert TOKEN not in str(refused.value) and KEY not in str(refused.value)


@pytest.mark.parametrize(("value", "accepted"), [("-1", True), ("2.5", True), ("100", True), ("0", False), ("101", False), ("-2", False)])
def test_market_protection_is_automatic_or_a_percentage(value, accepted):
    if accepted:
        assert OMSSettings(kite_market_protection=value).kite_market_protection == Decimal(value)
    else:
        with pytest.raises(ValidationError, match="kite_market_protection"):
            OMSSettings(kite_market_protection=value)


def test_an_empty_algo_id_means_none(monkeypatch):
    monkeypatch.setenv("OMS_KITE_ALGO_ID", "")
    assert OMSSettings().kite_algo_id is None


def test_the_api_root_is_an_http_url():
    assert OMSSettings(kite_root="http://127.0.0.1:8000/").kite_root == "http://127.0.0.1:8000"
    with pytest.raises(ValidationError, match="kite_root"):
        OMSSettings(kite_root="api.kite.trade")


def test_kites_limits_are_settings_and_empty_means_none(monkeypatch):
    limits = OMSSettings().kite_rate_limits()
    assert (limits.orders_per_second, limits.orders_per_minute, limits.orders_per_day) == (10, 400, 5000)
    assert (limits.calls_per_second, limits.quotes_per_second, limits.wait_max) == (10, 1, 5.0)
    assert OMSSettings().kite_modifications_per_order == 25
    monkeypatch.setenv("OMS_KITE_ORDERS_PER_SECOND", "8")
    monkeypatch.setenv("OMS_KITE_ORDERS_PER_DAY", "")
    monkeypatch.setenv("OMS_KITE_MODIFICATIONS_PER_ORDER", "20")
    settings = OMSSettings()
    assert (settings.kite_rate_limits().orders_per_second, settings.kite_rate_limits().orders_per_day) == (8, None)
    assert settings.kite_modifications_per_order == 20
    with pytest.raises(ValidationError, match="kite_orders_per_minute"):
        OMSSettings(kite_orders_per_minute=0)


def test_the_websocket_is_on_by_default_at_kites_root_and_can_be_switched_off(monkeypatch):
    settings = OMSSettings()
    assert (settings.kite_ticker, settings.kite_ws_root) == (True, "wss://ws.kite.trade")
    monkeypatch.setenv("OMS_KITE_TICKER", "false")
    monkeypatch.setenv("OMS_KITE_WS_ROOT", "ws://127.0.0.1:9999/")
    settings = OMSSettings()
    assert (settings.kite_ticker, settings.kite_ws_root) == (False, "ws://127.0.0.1:9999")
    with pytest.raises(ValidationError, match="kite_ws_root: a ws"):
        OMSSettings(kite_ws_root="https://ws.kite.trade")


def test_paper_prices_from_kite_and_the_watchlist_from_the_environment(monkeypatch):
    monkeypatch.setenv("OMS_PAPER_PRICES", "kite")
    monkeypatch.setenv("OMS_KITE_API_KEY", KEY)
    monkeypatch.setenv("OMS_KITE_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("OMS_PAPER_WATCHLIST", "NSE:INFY, NFO:NIFTY26DECFUT")
    settings = OMSSettings()
    assert settings.broker == "paper" and settings.paper_prices == "kite"
    assert settings.paper_watched == (("NSE", "INFY"), ("NFO", "NIFTY26DECFUT"))
