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
