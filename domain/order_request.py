"""OrderRequest: what a strategy asks for, checked field by field before anything else."""
from __future__ import annotations

import json
import re
from decimal import Decimal
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.enums import Exchange, OrderType, Product, Side, Validity
from domain.money import to_decimal
from domain.ticks import default_tick_size, is_on_tick

# Kite trading symbols: upper-case letters and digits, plus '&', '-' and '_'
# (M&M, BAJAJ-AUTO, NIFTY24DEC24000CE); nothing else reaches the exchange.
SYMBOL_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9&_\-]{0,39}$")
STRATEGY_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")

_ENUM_FIELDS: dict[str, type[Enum]] = {
    "exchange": Exchange,
    "side": Side,
    "order_type": OrderType,
    "product": Product,
    "validity": Validity,
}
_MONEY_FIELDS = ("price", "trigger_price", "stop_loss", "take_profit", "tick_size")


class OrderRequest(BaseModel):
    """An order as a strategy asks for it. Immutable; invalid input raises ValueError
    (pydantic's ValidationError) naming the field and the rule it broke.

    Enumerated fields take the enum or its exact string value ("BUY", "SL-M"); money
    takes Decimal, int or a numeric string, never float.
    """

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    symbol: str
    exchange: Exchange = Exchange.NSE
    side: Side
    quantity: int = Field(gt=0)
    order_type: OrderType = OrderType.MARKET
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    product: Product = Product.MIS
    validity: Validity = Validity.DAY
    strategy_id: str = "default"
    metadata: dict[str, Any] = Field(default_factory=dict)
    tick_size: Decimal | None = None
    """The instrument's own tick size; when absent the exchange's default table applies."""

    @field_validator(*_ENUM_FIELDS, mode="before")
    @classmethod
    def _enum_from_exact_value(cls, value: object, info) -> object:
        enum_type = _ENUM_FIELDS[info.field_name]
        if isinstance(value, enum_type):
            return value
        if isinstance(value, str):
            for member in enum_type:
                if member.value == value:
                    return member
        allowed = ", ".join(m.value for m in enum_type)
        raise ValueError(f"{info.field_name}: {value!r} is not one of {allowed}")

    @field_validator(*_MONEY_FIELDS, mode="before")
    @classmethod
    def _exact_money(cls, value: object, info) -> object:
        if value is None:
            return None
        number = to_decimal(value, info.field_name)
        if number <= 0:
            raise ValueError(f"{info.field_name}: must be positive, got {number}")
        return number

    @field_validator("symbol")
    @classmethod
    def _kite_symbol(cls, value: str) -> str:
        if not SYMBOL_PATTERN.fullmatch(value):
            raise ValueError(
                f"symbol: {value!r} is not a Kite trading symbol "
                "(1-40 characters of A-Z, 0-9, '&', '-', '_', starting with a letter or digit)"
            )
        return value

    @field_validator("strategy_id")
    @classmethod
    def _strategy_id(cls, value: str) -> str:
        if not STRATEGY_ID_PATTERN.fullmatch(value):
            raise ValueError(
                f"strategy_id: {value!r} must be 1-64 characters of letters, digits, '_', '.', ':', '-'"
            )
        return value

    @field_validator("metadata")
    @classmethod
    def _json_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"metadata: must be JSON-serializable ({exc})") from None
        return value

    @model_validator(mode="after")
    def _cross_field_rules(self) -> "OrderRequest":
        kind = self.order_type
        if kind in (OrderType.LIMIT, OrderType.SL) and self.price is None:
            raise ValueError(f"price: required for {kind.value} orders")
        if kind in (OrderType.MARKET, OrderType.SL_M) and self.price is not None:
            raise ValueError(f"price: {kind.value} orders take no price")
        if kind in (OrderType.SL, OrderType.SL_M) and self.trigger_price is None:
            raise ValueError(f"trigger_price: required for {kind.value} orders")
        if kind in (OrderType.MARKET, OrderType.LIMIT) and self.trigger_price is not None:
            raise ValueError(f"trigger_price: {kind.value} orders take no trigger price")
        if kind is OrderType.SL and self.price is not None and self.trigger_price is not None:
            if self.side is Side.BUY and self.trigger_price > self.price:
                raise ValueError(
                    f"trigger_price: {self.trigger_price} must not be above the limit price "
                    f"{self.price} for a stop-loss BUY"
                )
            if self.side is Side.SELL and self.trigger_price < self.price:
                raise ValueError(
                    f"trigger_price: {self.trigger_price} must not be below the limit price "
                    f"{self.price} for a stop-loss SELL"
                )
        for name in ("price", "trigger_price", "stop_loss", "take_profit"):
            value = getattr(self, name)
            if value is None:
                continue
            tick = self.tick_size or default_tick_size(self.exchange, self.symbol, value)
            if not is_on_tick(value, tick):
                raise ValueError(f"{name}: {value} is not a multiple of the tick size {tick}")
        self._check_exit_sides()
        return self

    def _check_exit_sides(self) -> None:
        stop, target, entry = self.stop_loss, self.take_profit, self.entry_price
        buy = self.side is Side.BUY
        if stop is not None and target is not None:
            if buy and not stop < target:
                raise ValueError(f"stop_loss: {stop} must be below take_profit {target} for a BUY")
            if not buy and not stop > target:
                raise ValueError(f"stop_loss: {stop} must be above take_profit {target} for a SELL")
        if entry is None:
            return
        if stop is not None:
            if buy and not stop < entry:
                raise ValueError(f"stop_loss: {stop} must be below the entry price {entry} for a BUY")
            if not buy and not stop > entry:
                raise ValueError(f"stop_loss: {stop} must be above the entry price {entry} for a SELL")
        if target is not None:
            if buy and not target > entry:
                raise ValueError(f"take_profit: {target} must be above the entry price {entry} for a BUY")
            if not buy and not target < entry:
                raise ValueError(f"take_profit: {target} must be below the entry price {entry} for a SELL")

    @property
    def entry_price(self) -> Decimal | None:
        """The price the order means to trade at, when the request itself says it:
        the limit price, or the trigger of an SL-M. None for MARKET."""
        if self.price is not None:
            return self.price
        if self.order_type is OrderType.SL_M:
            return self.trigger_price
        return None
