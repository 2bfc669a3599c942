"""OMS settings: keyword arguments to start_oms, then OMS_* environment variables,
then an optional TOML file (OMS_CONFIG_FILE or config_file=...), then defaults."""
from __future__ import annotations

import ipaddress
import os
from datetime import time
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from actors.brokers.kite_rates import KiteRateLimits
from actors.brokers.kite_secrets import read_secrets
from actors.cpu_pin import refusal
from domain.enums import Product
from domain.market_hours import MarketCalendar, parse_holidays
from domain.money import to_decimal
from domain.monitoring import OMSAlertsConfig
from domain.risk import RiskLimits


class _SecretsFileSource(PydanticBaseSettingsSource):
    """The credentials the secrets file holds, below the keywords and the environment
    and above the TOML settings file."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls)
        self._path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything comes from __call__

    def __call__(self) -> dict[str, Any]:
        return dict(read_secrets(self._path))


class OMSSettings(BaseSettings):
    # hide_input_in_errors: an error message must never echo a credential (or a database
    # URL with its password) back into a log.
    model_config = SettingsConfigDict(env_prefix="OMS_", extra="forbid", frozen=True, hide_input_in_errors=True)

    config_file: Path | None = Field(default=None, description="TOML file with these same keys")
    database_url: str = Field(default="sqlite:///oms.db", description="SQLAlchemy URL: sqlite:///file.db or postgresql+psycopg://...")
    account: str = Field(
        default="default", pattern=r"^[A-Za-z0-9_-]{1,32}$",
        description="the broker account this OMS trades; its rows are the only ones it reads or writes",
    )
    broker: Literal["paper", "kite"] = Field(default="paper", description="the broker behind the gateway: paper (simulated) or kite (Zerodha)")
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
    # Pre-trade rules of the order flow (issue 17); empty (None) switches one off.
    max_stop_distance_percent: Decimal | None = Field(
        default=None, gt=0, description="stop-loss and take-profit at most this % from the entry; empty for no limit (the side is always checked)",
    )
    freeze_quantities: dict[str, int] = Field(
        default_factory=dict,
        description="F&O freeze quantities by underlying or trading symbol, e.g. {\"NIFTY\": 1800} (JSON in the environment, a table in TOML); Kite mode",
    )
    max_gross_exposure: Decimal | None = Field(default=None, gt=0, description="max sum of |quantity| x price over every position and working order")
    max_orders_per_second: int | None = Field(default=None, gt=0, description="orders accepted a second, all strategies")
    max_orders_per_minute: int | None = Field(default=None, gt=0, description="orders accepted a minute, all strategies")
    max_strategy_orders_per_second: int | None = Field(default=None, gt=0, description="orders accepted a second from one strategy_id")
    max_strategy_orders_per_minute: int | None = Field(default=None, gt=0, description="orders accepted a minute from one strategy_id")
    duplicate_window_seconds: Decimal | None = Field(
        default=None, gt=0, le=86400, description="the same strategy, instrument, side, quantity and price again within this many seconds is refused",
    )
    price_collar_percent: Decimal | None = Field(default=None, gt=0, description="a limit price or trigger at most this % from the last price")
    enforce_market_hours: bool | None = Field(
        default=None, description="refuse orders outside the exchange's hours and on its holidays (IST); empty: on with kite, off with paper",
    )
    market_holidays_file: Path | None = Field(default=None, description="CSV of holidays (date,exchanges,name) instead of the one shipped")
    daily_loss_limit: Decimal | None = Field(
        default=None, gt=0, description="the day's net loss (realized + unrealized - charges, IST day) that stops new risk",
    )
    daily_loss_action: Literal["REDUCE_ONLY", "HALTED"] = Field(
        default="REDUCE_ONLY", description="the trading state the daily loss limit moves the OMS to",
    )
    max_trades_per_day: int | None = Field(default=None, gt=0, description="orders accepted a day (IST); orders that reduce a position are always accepted")
    tracker_threads: int = Field(default=4, ge=1, le=64, description="threads the order trackers share (one tracker per live order, however many)")
    gil_switch_interval: float = Field(
        default=0.0005, ge=0, le=0.1,
        description="seconds a busy Python thread may keep the GIL while an order waits for it (sys.setswitchinterval, "
        "process-wide while an OMS runs); 0 leaves Python's own (0.005)",
    )
    pin_to_cpu: int | None = Field(
        default=None, ge=0,
        description="run the whole process on this one CPU while the OMS runs (its Python work has one GIL, so one processor "
        "is all it uses, and on one its hand-offs between actors are cheaper; measured: a quarter less CPU per order); "
        "empty leaves the process where it is. Linux only; two processes pinned to one CPU share it",
    )
    recovery_timeout: float = Field(
        default=60.0, gt=0, le=3600,
        description="seconds start_oms waits for the orders left live by the last run to be looked up at the broker",
    )
    managed_exits: bool = Field(
        default=False,
        description="place and manage the exits of entries with a stop_loss or take_profit (an OCO pair sized to the fills); "
        "an order can opt out (OrderRequest.managed_exits=False). Off by default: a strategy that places its own exits "
        "would otherwise be exited twice",
    )
    mis_square_off_time: time = Field(
        default=time(15, 15),
        description="time of day (IST) at which the OMS cancels open MIS orders and closes MIS positions on NSE/BSE/NFO/BFO, "
        "before the broker's own square-off; a clock rule (see enforce_market_hours)",
    )
    reconcile_interval: float = Field(
        default=30.0, ge=0, le=86400,
        description="seconds between reconciliations of positions and orders with the broker's (one also runs at start); 0: only at start and on request",
    )
    reconcile_settle: float = Field(
        default=1.0, ge=0, le=60,
        description="seconds a difference with the broker must hold unchanged before it is corrected (updates may still be arriving)",
    )
    reconcile_fill_grace: float = Field(
        default=30.0, ge=0, le=3600,
        description="seconds an order may have fills at the broker that the OMS has not recorded before reconciliation calls them missed (until then they are on their way)",
    )
    request_timeout: float = Field(default=30.0, gt=0, description="seconds a blocking call waits for the OMS")
    paper_band_percent: Decimal = Field(default=Decimal("20"), gt=0, description="paper exchange circuit band around the last price")
    log_level: str = Field(default="WARNING", description="logging level")
    log_format: Literal["text", "json"] = Field(
        default="text", description="text, or json: one JSON object a line (with order_id and strategy_id where they apply)",
    )
    # Monitoring (README, "Monitoring"): metrics, and the guide's alerts.
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535,
        description="serve the Prometheus metrics at http://127.0.0.1:PORT/metrics; empty: not served (0: any free port)",
    )
    alerts: OMSAlertsConfig = Field(
        default_factory=OMSAlertsConfig,
        description="the alert thresholds and KPI windows (JSON in the environment, an [alerts] table in TOML)",
    )
    alert_webhook_url: SecretStr | None = Field(default=None, description="POST every alert as JSON to this http(s) URL")
    alert_telegram_bot_token: SecretStr | None = Field(default=None, description="Telegram bot token for alerts (with alert_telegram_chat_id)")
    alert_telegram_chat_id: str | None = Field(default=None, description="Telegram chat the alerts go to")
    alert_telegram_api_root: str = Field(default="https://api.telegram.org", description="Telegram Bot API root (a fake's URL in tests)")
    alert_timeout: float = Field(default=5.0, gt=0, le=60, description="seconds an alert sink may take to deliver one alert")
    # Zerodha Kite (broker = "kite"). The credentials come from the environment or the
    # TOML file, never the command line; SecretStr keeps them out of reprs and logs.
    kite_api_key: SecretStr | None = Field(default=None, description="Kite Connect API key")
    kite_api_secret: SecretStr | None = Field(default=None, description="Kite Connect API secret (postback checksums, the daily login)")
    kite_access_token: SecretStr | None = Field(default=None, description="the day's Kite access token")
    kite_secrets_file: Path | None = Field(
        default=None, description="file holding the Kite credentials (TOML if *.toml, else KEY=VALUE lines); "
        "the OMS takes a new access token from it when it changes (oms-login writes it)",
    )
    kite_secrets_poll: float = Field(default=5.0, gt=0, le=3600, description="seconds between looks at the secrets file for a new token")
    kite_root: str = Field(default="https://api.kite.trade", description="Kite API root (an emulator's URL in tests)")
    kite_timeout: float = Field(default=7.0, gt=0, le=120, description="seconds the Kite client waits for an answer")
    kite_poll_interval: float = Field(default=1.0, gt=0, le=60, description="seconds between reads of Kite's order and trade books")
    kite_market_protection: Decimal = Field(default=Decimal(-1), description="market_protection of MARKET and SL-M orders: -1 (automatic) or a percentage in (0, 100]")
    kite_algo_id: str | None = Field(default=None, description="exchange-issued algo id sent with every order; empty for none")
    kite_lookup_misses: int = Field(default=5, ge=1, le=100, description="look-ups by tag that must miss in a row before an order Kite never listed is failed")
    kite_lookup_pause: float = Field(default=2.0, gt=0, le=60, description="seconds between those look-ups")
    # Kite's limits (shared/ZERODHA.md); Zerodha changes them. Empty: no such limit.
    kite_orders_per_second: int | None = Field(default=10, gt=0, description="order requests (place, modify, cancel) a second")
    kite_orders_per_minute: int | None = Field(default=400, gt=0, description="order requests a minute")
    kite_orders_per_day: int | None = Field(default=5000, gt=0, description="order requests a day (Asia/Kolkata)")
    kite_calls_per_second: int | None = Field(default=10, gt=0, description="other calls (order book, trades, look-ups) a second")
    kite_quotes_per_second: int | None = Field(default=1, gt=0, description="quote calls (ltp) a second")
    kite_modifications_per_order: int = Field(default=25, gt=0, description="modifications Kite allows one order")
    kite_postback_port: int | None = Field(
        default=None, ge=0, le=65535,
        description="take Kite's postbacks on this loopback port (behind your proxy); empty: none (0: any free port)",
    )
    kite_postback_path: str = Field(default="/kite/postback", pattern=r"^/[A-Za-z0-9/_-]*$", description="the postback listener's path")
    kite_instruments: bool = Field(default=True, description="load Kite's instrument master (tick and lot sizes) at start and every morning, cached in the database")
    kite_rate_wait_max: float = Field(default=5.0, ge=0, le=300, description="seconds a request may wait for Kite's limits before it is refused")
    kite_ticker: bool = Field(
        default=True,
        description="take order updates (and, paper trading on Kite's prices, ticks) from Kite's websocket as well as by polling; "
        "off: polling alone (always on beside it, and enough on its own)",
    )
    kite_ws_root: str = Field(default="wss://ws.kite.trade", description="Kite's websocket root (an emulator's ws:// URL in tests)")
    kite_market_prices: bool = Field(
        default=False,
        description="broker kite: follow Kite's live last prices (websocket LTP ticks, or ltp() polling while that is off or "
        "down) for the instruments held, traded and in paper_watchlist, so the risk checks value MARKET orders and the "
        "positions are marked at the market's price; off: oms.mark_price tells them",
    )
    # Paper trading at the market's prices (broker = "paper").
    paper_prices: Literal["manual", "kite"] = Field(
        default="manual",
        description="where the paper exchange's prices come from: manual (oms.paper.set_price) or kite (Kite's live prices, "
        "by its websocket in LTP mode or, while that is off or down, by polling ltp(); needs kite_api_key and kite_access_token; "
        "orders still never go to Kite)",
    )
    paper_watchlist: str = Field(
        default="", pattern=r"^\s*([A-Z]+:[^,\s]+\s*(,\s*[A-Z]+:[^,\s]+\s*)*)?$",
        description="instruments whose Kite prices are followed from the start, as EXCHANGE:SYMBOL, comma-separated "
        "(others are followed from their first order); paper_prices = kite, or kite_market_prices",
    )
    paper_prices_interval: float = Field(
        default=1.0, gt=0, le=60, description="seconds between ltp() reads of the followed instruments while the websocket is off or down",
    )

    # The HTTP/WebSocket API (api/, started by run_oms.py --serve and oms serve).
    api_host: str = Field(
        default="127.0.0.1", min_length=1, max_length=253,
        description="address the API listens on; anything but loopback also needs api_allow_remote (and TLS in front)",
    )
    api_port: int = Field(default=8700, ge=0, le=65535, description="port the API listens on (0: any free port)")
    api_allow_remote: bool = Field(
        default=False,
        description="let the API bind an address other than loopback; it speaks plain HTTP, so put a TLS proxy in front",
    )
    api_requests_per_second: Decimal = Field(
        default=Decimal("20"), gt=0, le=100000, description="requests a second one API key may make, sustained (token bucket)",
    )
    api_burst: int = Field(default=40, ge=1, le=100000, description="requests one API key may make at once, above the sustained rate")
    api_max_body_bytes: int = Field(
        default=131_072, ge=1024, le=16_777_216, description="largest request body the API reads; larger ones are refused (413)",
    )
    api_event_buffer: int = Field(
        default=10_000, ge=100, le=1_000_000,
        description="recent stream events kept in memory for reconnecting clients; older ones are read from the audit trail",
    )

    @field_validator(
        "max_open_orders", "max_order_quantity", "max_orders_per_second", "max_orders_per_minute",
        "max_strategy_orders_per_second", "max_strategy_orders_per_minute", "max_trades_per_day",
        "enforce_market_hours", "market_holidays_file", "kite_orders_per_second", "kite_orders_per_minute",
        "kite_orders_per_day", "kite_calls_per_second", "kite_quotes_per_second", "kite_postback_port", "metrics_port",
        "pin_to_cpu", mode="before",
    )
    @classmethod
    def _optional_count(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator(
        "kite_algo_id", "kite_api_key", "kite_api_secret", "kite_access_token", "kite_secrets_file",
        "alert_webhook_url", "alert_telegram_bot_token", "alert_telegram_chat_id", mode="before",
    )
    @classmethod
    def _optional_text(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("pin_to_cpu")
    @classmethod
    def _a_cpu_of_ours(cls, cpu: int | None) -> int | None:
        why = None if cpu is None else refusal(cpu)
        if why is not None:
            raise ValueError(why)
        return cpu

    @field_validator("kite_ws_root")
    @classmethod
    def _ws_root(cls, value: str) -> str:
        if not value.startswith(("wss://", "ws://")):
            raise ValueError(f"kite_ws_root: a ws(s) URL such as wss://ws.kite.trade, got {value!r}")
        return value.rstrip("/")

    @field_validator("alert_webhook_url")
    @classmethod
    def _webhook(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("https://", "http://")):
            raise ValueError("alert_webhook_url: an http(s) URL")  # never the value: it may hold a secret
        return value

    @field_validator("alert_telegram_api_root")
    @classmethod
    def _telegram_root(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"alert_telegram_api_root: an http(s) URL such as https://api.telegram.org, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _telegram(self) -> "OMSSettings":
        if (self.alert_telegram_bot_token is None) != (self.alert_telegram_chat_id is None):
            raise ValueError("Telegram alerts need both alert_telegram_bot_token and alert_telegram_chat_id "
                             "(OMS_ALERT_TELEGRAM_BOT_TOKEN, OMS_ALERT_TELEGRAM_CHAT_ID)")
        return self

    @field_validator("kite_root")
    @classmethod
    def _root(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"kite_root: an http(s) URL such as https://api.kite.trade, got {value!r}")
        return value.rstrip("/")

    @field_validator("kite_market_protection", mode="before")
    @classmethod
    def _protection(cls, value: Any) -> Any:
        protection = to_decimal(value, "kite_market_protection")
        if protection != -1 and not (0 < protection <= 100):
            raise ValueError(f"kite_market_protection: -1 (automatic) or a percentage in (0, 100], got {protection}")
        return protection

    @model_validator(mode="after")
    def _api_on_loopback(self) -> "OMSSettings":
        if not self.api_allow_remote and not is_loopback(self.api_host):
            raise ValueError(
                f"api_host {self.api_host!r} is not a loopback address: the API speaks plain HTTP; "
                "set api_allow_remote (OMS_API_ALLOW_REMOTE=true) and put TLS in front to serve it beyond this machine"
            )
        return self

    @model_validator(mode="after")
    def _kite_credentials(self) -> "OMSSettings":
        if self.broker == "kite":
            missing = [name for name in ("kite_api_key", "kite_access_token") if getattr(self, name) is None]
            if missing:
                names = " and ".join(f"{name} (OMS_{name.upper()})" for name in missing)
                raise ValueError(f"broker kite needs {names}: set them in the environment or the config file")
            if self.kite_postback_port is not None and self.kite_api_secret is None:
                raise ValueError("kite_postback_port needs kite_api_secret (OMS_KITE_API_SECRET): postbacks are checked with it")
        elif self.paper_prices == "kite":
            missing = [name for name in ("kite_api_key", "kite_access_token") if getattr(self, name) is None]
            if missing:
                names = " and ".join(f"{name} (OMS_{name.upper()})" for name in missing)
                raise ValueError(f"paper_prices kite needs {names}: Kite's prices are read with them")
        return self

    @property
    def paper_watched(self) -> tuple[tuple[str, str], ...]:
        """The watchlist as (exchange, symbol) pairs."""
        pairs = (item.strip().split(":", 1) for item in self.paper_watchlist.split(",") if item.strip())
        return tuple((exchange, symbol) for exchange, symbol in pairs)

    @field_validator(
        "capital", "risk_per_trade_percent", "max_order_value", "max_position_value",
        "mis_leverage", "nrml_leverage", "paper_band_percent", "max_stop_distance_percent", "max_gross_exposure",
        "duplicate_window_seconds", "price_collar_percent", "daily_loss_limit", "api_requests_per_second", mode="before",
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
        secrets = init_settings.init_kwargs.get("kite_secrets_file") or os.environ.get("OMS_KITE_SECRETS_FILE")  # type: ignore[attr-defined]
        if secrets:
            sources.append(_SecretsFileSource(settings_cls, Path(secrets)))
        toml = init_settings.init_kwargs.get("config_file") or os.environ.get("OMS_CONFIG_FILE")  # type: ignore[attr-defined]
        if toml:
            path = Path(toml)
            if not path.is_file():
                raise ValueError(f"config_file: {path} does not exist")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    def kite_rate_limits(self) -> KiteRateLimits:
        return KiteRateLimits(
            orders_per_second=self.kite_orders_per_second,
            orders_per_minute=self.kite_orders_per_minute,
            orders_per_day=self.kite_orders_per_day,
            calls_per_second=self.kite_calls_per_second,
            quotes_per_second=self.kite_quotes_per_second,
            wait_max=self.kite_rate_wait_max,
        )

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
            max_stop_distance_percent=self.max_stop_distance_percent,
            freeze_quantities=dict(self.freeze_quantities),
            max_gross_exposure=self.max_gross_exposure,
            max_orders_per_second=self.max_orders_per_second,
            max_orders_per_minute=self.max_orders_per_minute,
            max_strategy_orders_per_second=self.max_strategy_orders_per_second,
            max_strategy_orders_per_minute=self.max_strategy_orders_per_minute,
            duplicate_window_seconds=self.duplicate_window_seconds,
            price_collar_percent=self.price_collar_percent,
            enforce_market_hours=self.market_hours_enforced,
            mis_square_off=self.mis_square_off_time if self.market_hours_enforced else None,
            daily_loss_limit=self.daily_loss_limit,
            daily_loss_action=self.daily_loss_action,
            max_trades_per_day=self.max_trades_per_day,
        )

    @property
    def market_hours_enforced(self) -> bool:
        """The clock rules: on with the real broker, off with the paper one (the demo and
        the tests run at any hour), unless set either way."""
        if self.enforce_market_hours is not None:
            return self.enforce_market_hours
        return self.broker == "kite"

    def market_calendar(self) -> MarketCalendar:
        """The holidays shipped in domain/data/holidays.csv, or the configured file's."""
        if self.market_holidays_file is not None:
            text = Path(self.market_holidays_file).read_text(encoding="utf-8")
        else:
            text = resources.files("domain").joinpath("data/holidays.csv").read_text(encoding="utf-8")
        return MarketCalendar(parse_holidays(text))


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only: localhost, 127.0.0.0/8 or ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def describe_settings_error(error: ValidationError) -> str:
    """One line per bad setting, naming its environment variable: for people, not code."""
    lines = []
    for problem in error.errors():
        name = ".".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        # A rule across settings (broker kite needs its credentials) names them itself.
        lines.append(f"OMS_{name.upper()} ({name}): {message}" if name else message)
    return "\n".join(lines)
