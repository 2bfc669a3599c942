"""OMS settings: keyword arguments to start_oms, then OMS_* environment variables,
then an optional TOML file (OMS_CONFIG_FILE or config_file=...), then defaults."""
from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from domain.enums import Product
from domain.money import to_decimal
from domain.risk import RiskLimits


class OMSSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_", extra="forbid", frozen=True)

    config_file: Path | None = Field(default=None, description="TOML file with these same keys")
    database_url: str = Field(default="sqlite:///oms.db", description="SQLAlchemy URL: sqlite:///file.db or postgresql+psycopg://...")
    account: str = Field(
        default="default", pattern=r"^[A-Za-z0-9_-]{1,32}$",
        description="the broker account this OMS trades; its rows are the only ones it reads or writes",
    )
    broker: Literal["paper"] = Field(default="paper", description="the broker behind the gateway")
    capital: Decimal = Field(default=Decimal("1000000"), gt=0, description="trading capital in rupees")
    risk_per_trade_percent: Decimal = Field(default=Decimal("2"), gt=0, le=100, description="max (entry - stop) x quantity, as % of capital")
    require_stop_loss: bool = Field(default=True, description="orders that open or add to a position need a stop_loss")
    max_order_value: Decimal | None = Field(default=Decimal("500000"), description="max price x quantity of one order; empty to disable")
    max_position_value: Decimal | None = Field(default=Decimal("1000000"), description="max value held in one instrument, working orders included")
    max_open_orders: int | None = Field(default=500, description="max working orders at once")
    max_order_quantity: int | None = Field(default=None, gt=0, le=2_147_483_647, description="max quantity of one order; empty for none beyond Kite's")
    max_metadata_bytes: int = Field(default=65_536, gt=0, le=65_536, description="max size of an order's metadata, as JSON bytes")
    mis_leverage: Decimal = Field(default=Decimal("5"), gt=0, description="margin multiple for MIS orders")
    nrml_leverage: Decimal = Field(default=Decimal("1"), gt=0, description="margin multiple for NRML orders")
    tracker_threads: int = Field(default=4, ge=1, le=64, description="threads the order trackers share (one tracker per live order, however many)")
    request_timeout: float = Field(default=30.0, gt=0, description="seconds a blocking call waits for the OMS")
    paper_band_percent: Decimal = Field(default=Decimal("20"), gt=0, description="paper exchange circuit band around the last price")
    log_level: str = Field(default="WARNING", description="logging level")

    @field_validator("max_open_orders", "max_order_quantity", mode="before")
    @classmethod
    def _optional_count(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator(
        "capital", "risk_per_trade_percent", "max_order_value", "max_position_value",
        "mis_leverage", "nrml_leverage", "paper_band_percent", mode="before",
    )
    @classmethod
    def _exact(cls, value: Any, info) -> Any:
        if value is None or value == "":
            return None
        return to_decimal(value, info.field_name)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = init_settings.init_kwargs.get("config_file") or os.environ.get("OMS_CONFIG_FILE")  # type: ignore[attr-defined]
        if toml:
            path = Path(toml)
            if not path.is_file():
                raise ValueError(f"config_file: {path} does not exist")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    def risk_limits(self) -> RiskLimits:
        return RiskLimits(
            capital=self.capital,
            risk_per_trade_percent=self.risk_per_trade_percent,
            require_stop_loss=self.require_stop_loss,
            max_order_value=self.max_order_value,
            max_position_value=self.max_position_value,
            max_open_orders=self.max_open_orders,
            max_order_quantity=self.max_order_quantity,
            max_metadata_bytes=self.max_metadata_bytes,
            leverage={Product.CNC: Decimal(1), Product.MIS: self.mis_leverage, Product.NRML: self.nrml_leverage},
        )


def describe_settings_error(error: ValidationError) -> str:
    """One line per bad setting, naming its environment variable: for people, not code."""
    lines = []
    for problem in error.errors():
        name = ".".join(str(part) for part in problem["loc"]) or "settings"
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"OMS_{name.upper()} ({name}): {message}")
    return "\n".join(lines)
