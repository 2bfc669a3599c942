"""Settings: keywords to start_oms, then OMS_* environment variables, then a TOML file,
then defaults; bad values are refused naming the setting."""
from __future__ import annotations

from decimal import Decimal

import pytest

from actors import OMSSettings
from domain.enums import Product


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("OMS_"):
            monkeypatch.delenv(name)


def test_defaults_run_paper_trading_on_an_embedded_sqlite_file():
    settings = OMSSettings()
    assert settings.database_url == "sqlite:///oms.db"
    assert settings.broker == "paper"
    assert settings.capital == Decimal("1000000")
    assert settings.risk_per_trade_percent == Decimal("2") and settings.require_stop_loss


def test_environment_variables_with_the_oms_prefix_are_read_exactly(monkeypatch):
    monkeypatch.setenv("OMS_DATABASE_URL", "sqlite:///elsewhere.db")
    monkeypatch.setenv("OMS_CAPITAL", "250000.50")
    monkeypatch.setenv("OMS_REQUIRE_STOP_LOSS", "false")
    monkeypatch.setenv("OMS_MAX_OPEN_ORDERS", "")

    settings = OMSSettings()

    assert settings.database_url == "sqlite:///elsewhere.db"
    assert settings.capital == Decimal("250000.50") and isinstance(settings.capital, Decimal)
    assert settings.require_stop_loss is False
    assert settings.max_open_orders is None


def test_keywords_override_the_environment_which_overrides_the_toml_file(monkeypatch, tmp_path):
    config = tmp_path / "oms.toml"
    config.write_text('capital = "500000"\nmis_leverage = "4"\ndatabase_url = "sqlite:///from-toml.db"\n')
    monkeypatch.setenv("OMS_CONFIG_FILE", str(config))
    monkeypatch.setenv("OMS_CAPITAL", "750000")

    settings = OMSSettings(database_url="sqlite:///from-keyword.db")

    assert settings.database_url == "sqlite:///from-keyword.db"
    assert settings.capital == Decimal("750000")
    assert settings.mis_leverage == Decimal("4")
    assert settings.risk_limits().leverage_for(Product.MIS) == Decimal("4")


def test_a_missing_config_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match="config_file"):
        OMSSettings(config_file=tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("field", "value"),
    [("capital", 1000.5), ("capital", "-5"), ("broker", "zerodha-live"), ("risk_per_trade_percent", "150"), ("unknown_setting", 1)],
)
def test_bad_values_are_refused_naming_the_setting(field, value):
    with pytest.raises(ValueError, match=field):
        OMSSettings(**{field: value})


# --- the pre-trade rules of issue 17 -------------------------------------------------------


KITE = dict(broker="kite", kite_api_key="k", kite_access_token="t")


def test_the_new_rules_are_off_by_default_and_the_clock_rules_follow_the_broker():
    paper, kite = OMSSettings().risk_limits(), OMSSettings(**KITE).risk_limits()
    for name in ("max_stop_distance_percent", "max_gross_exposure", "max_orders_per_second", "max_orders_per_minute",
                 "max_strategy_orders_per_second", "max_strategy_orders_per_minute", "duplicate_window_seconds",
                 "price_collar_percent", "daily_loss_limit", "max_trades_per_day"):
        assert getattr(paper, name) is None, name
    assert paper.freeze_quantities == {} and paper.daily_loss_action == "REDUCE_ONLY"
    assert (paper.enforce_market_hours, kite.enforce_market_hours) == (False, True)
    assert OMSSettings(enforce_market_hours=True).risk_limits().enforce_market_hours is True
    assert OMSSettings(**KITE, enforce_market_hours=False).risk_limits().enforce_market_hours is False


def test_the_new_rules_are_read_from_the_environment_exactly(monkeypatch):
    monkeypatch.setenv("OMS_ENFORCE_MARKET_HOURS", "true")
    monkeypatch.setenv("OMS_DAILY_LOSS_LIMIT", "5000.50")
    monkeypatch.setenv("OMS_DAILY_LOSS_ACTION", "HALTED")
    monkeypatch.setenv("OMS_FREEZE_QUANTITIES", '{"NIFTY": 1800}')
    monkeypatch.setenv("OMS_DUPLICATE_WINDOW_SECONDS", "0.5")
    monkeypatch.setenv("OMS_MAX_ORDERS_PER_SECOND", "")

    limits = OMSSettings().risk_limits()

    assert limits.enforce_market_hours is True
    assert limits.daily_loss_limit == Decimal("5000.50") and limits.daily_loss_action == "HALTED"
    assert limits.freeze_quantities == {"NIFTY": 1800}
    assert limits.duplicate_window_seconds == Decimal("0.5")
    assert limits.max_orders_per_second is None


def test_a_bad_daily_loss_action_or_holidays_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match="daily_loss_action"):
        OMSSettings(daily_loss_action="PANIC")
    bad = tmp_path / "holidays.csv"
    bad.write_text("2026-02-30,NSE,Nothing\n")
    with pytest.raises(ValueError, match="holidays line 1"):
        OMSSettings(market_holidays_file=str(bad)).market_calendar()
    assert OMSSettings().market_calendar().holiday("NSE", __import__("datetime").date(2026, 1, 26)) == "Republic Day"
