"""OrderRequest: what a strategy asks for, checked field by field before anything else."""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from enum import Enum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from domain.enums import Exchange, OrderType, Product, Side, Validity, Variety
from domain.frozen import freeze, thaw
from domain.money import parse_money
from domain.ticks import default_tick_size, is_on_tick

# Kite trading symbols: upper-case letters and digits, plus '&', '-' and '_'
# (M&M, BAJAJ-AUTO, NIFTY24DEC24000CE); nothing else reaches the exchange.
SYMBOL_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9&_\-]{0,39}$")

# A client's own id for an order (its idempotency key): printable, unambiguous in a URL,
# a header and a log line, and short enough for an indexed column.
CLIENT_ORDER_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$")
MAX_CLIENT_ORDER_ID = 64

# quantity and strategy_id are INT columns; Kite also caps an order's quantity there.
INT_COLUMN_MAX = 2_147_483_647
MAX_QUANTITY = INT_COLUMN_MAX
MAX_STRATEGY_ID = INT_COLUMN_MAX
# The metadata JSONB of one order row: its compact UTF-8 JSON text, at most 64 KiB.
MAX_METADATA_BYTES = 65_536
MAX_METADATA_DEPTH = 32
# Reading stops once the text is surely this long, so a small dict that shares one big
# list many times over (a "billion laughs") is refused without being walked in full.
_METADATA_READ_LIMIT = 16 * MAX_METADATA_BYTES

_ENUM_FIELDS: dict[str, type[Enum]] = {
    "exchange": Exchange,
    "side": Side,
    "order_type": OrderType,
    "product": Product,
    "validity": Validity,
    "variety": Variety,
}
_MONEY_FIELDS = ("price", "trigger_price", "stop_loss", "take_profit", "tick_size")


class OrderRequest(BaseModel):
    """An order as a strategy asks for it. Immutable; invalid input raises ValueError
    (pydantic's ValidationError) naming the field and the rule it broke.

    Enumerated fields take the enum or its exact string value ("BUY", "SL-M"). Money
    takes Decimal, int, a numeric string or a float, read once by its shortest repr
    (2450.50 -> Decimal("2450.5")); see `domain.money.parse_money` for the bounds.
    ``strategy_id`` is an int (0: no strategy named); a strategy's name belongs in
    ``metadata``. ``metadata`` is stored as a read-only mapping (nested dicts become
    read-only mappings, lists tuples); ``model_dump()`` gives plain dicts and lists.
    """

    # Strict: nothing is coerced ("10" is no quantity, 1.0 no strategy). Money and the
    # enums take their wider inputs through their own before-validators.
    # Errors name the field and the rule; echoing the input could print megabytes.
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid", hide_input_in_errors=True)

    symbol: str
    exchange: Exchange = Exchange.NSE
    side: Side
    quantity: int
    order_type: OrderType = OrderType.MARKET
    price: Decimal | None = None
    trigger_price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    product: Product = Product.MIS
    validity: Validity = Validity.DAY
    variety: Variety = Variety.REGULAR
    """Kite's variety: "regular", or "amo" (an after-market order, taken only outside the
    exchange's trading session and sent to the exchange when it opens)."""
    strategy_id: int = 0
    metadata: Mapping[str, Any] = Field(default_factory=dict, validate_default=True)
    tick_size: Decimal | None = None
    """The instrument's own tick size; when absent the exchange's default table applies."""
    managed_exits: bool = True
    """With a ``stop_loss`` or ``take_profit``: the OMS places and manages the exits (an
    OCO pair) as the order fills; False leaves them to the strategy."""
    client_order_id: str | None = None
    """The client's own id for this order (1-64 characters of A-Z, a-z, 0-9, '.', '_',
    ':', '-'): placing again with an id already used in this account answers the order
    placed first and sends nothing. Kept with the order; unique per account."""

    @field_validator(*_ENUM_FIELDS, mode="before")
    @classmethod
    def _enum_from_exact_value(cls, value: object, info: ValidationInfo) -> object:
        name = str(info.field_name)  # a field validator always knows its field
        enum_type = _ENUM_FIELDS[name]
        if isinstance(value, enum_type):
            return value
        if isinstance(value, str):
            for member in enum_type:
                if member.value == value:
                    return member
        allowed = ", ".join(m.value for m in enum_type)
        raise ValueError(f"{name}: {value!r} is not one of {allowed}")

    @field_validator(*_MONEY_FIELDS, mode="before")
    @classmethod
    def _exact_money(cls, value: object, info: ValidationInfo) -> object:
        if value is None:
            return None
        number = parse_money(value, str(info.field_name))
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

    @field_validator("client_order_id")
    @classmethod
    def _client_order_id(cls, value: str | None) -> str | None:
        if value is not None and not CLIENT_ORDER_ID_PATTERN.fullmatch(value):
            raise ValueError(
                f"client_order_id: {_shown(value)} is not a client order id "
                f"(1-{MAX_CLIENT_ORDER_ID} characters of A-Z, a-z, 0-9, '.', '_', ':', '-', "
                "starting with a letter or digit)"
            )
        return value

    @field_validator("quantity", mode="before")
    @classmethod
    def _quantity(cls, value: object) -> int:
        return _int_within(value, "quantity", 1, MAX_QUANTITY)

    @field_validator("strategy_id", mode="before")
    @classmethod
    def _strategy_id(cls, value: object) -> int:
        if isinstance(value, str):
            raise ValueError(
                f"strategy_id: {_shown(value)} is a string; strategy_id is an integer "
                f"(0 to {MAX_STRATEGY_ID}, 0 for no strategy). Put a strategy's name in "
                f"metadata, e.g. metadata={{\"strategy\": \"rsi\"}}"
            )
        return _int_within(value, "strategy_id", 0, MAX_STRATEGY_ID)

    # "plain": pydantic's own Mapping validation would hand back a mutable dict.
    @field_validator("metadata", mode="plain")
    @classmethod
    def _frozen_json_metadata(cls, value: object) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise ValueError(f"metadata: must be a dict, not {type(value).__name__}")
        plain = _MetadataReader().copy(value, ())
        size = _encoded_size(plain)
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"metadata: {size} bytes exceeds the limit of {MAX_METADATA_BYTES} bytes")
        frozen: Mapping[str, Any] = freeze(plain)
        return frozen

    @field_serializer("metadata")
    def _plain_metadata(self, value: Mapping[str, Any]) -> dict[str, Any]:
        plain: dict[str, Any] = thaw_metadata(value)
        return plain

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
        # parse_money has bounded every amount to 20 digits, so the tick division below
        # can neither overflow nor run out of precision.
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

    # A mappingproxy can be neither deep-copied nor pickled. The request is immutable
    # all the way down, so a deep copy may be itself; a pickle rebuilds it from plain
    # data through the same validation.
    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> "OrderRequest":
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuilt, (self.model_dump(),))

    @property
    def entry_price(self) -> Decimal | None:
        """The price the order means to trade at, when the request itself says it:
        the limit price, or the trigger of an SL-M. None for MARKET."""
        if self.price is not None:
            return self.price
        if self.order_type is OrderType.SL_M:
            return self.trigger_price
        return None


def _encoded_size(plain: dict[str, Any]) -> int:
    """Bytes of the compact UTF-8 JSON text, as the JSONB column receives it."""
    try:
        text = json.dumps(plain, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("metadata: contains a lone surrogate, which is not UTF-8 text") from None
    except ValueError as exc:  # e.g. an int too long to write as text
        raise ValueError(f"metadata: must be JSON-serializable ({exc})") from None


def metadata_size(metadata: Mapping[str, Any]) -> int:
    """Bytes of ``metadata`` (a request's, already checked) as the database stores it."""
    return _encoded_size(thaw_metadata(metadata))


def _rebuilt(fields: dict[str, Any]) -> OrderRequest:
    return OrderRequest(**fields)


thaw_metadata = thaw  # a plain, mutable copy of (frozen) metadata


def _int_within(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field}: must be an int, not {type(value).__name__} ({_shown(value)})")
    if value < low:
        raise ValueError(f"{field}: {_shown(value)} is below the minimum of {low}")
    if value > high:
        raise ValueError(f"{field}: {_shown(value)} exceeds the limit of {high}")
    return int(value)  # an int subclass (IntEnum) is stored as the plain number


def _shown(value: object) -> str:
    """A value for an error message: short, and safe for ints too long to print."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an int of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"


class _MetadataReader:
    """One pass over a caller's metadata, giving a plain copy (dicts, lists, str, int,
    float, bool, None) that shares no object with it, or a ValueError saying where the
    first problem is. Counts a lower bound of the JSON text's length as it goes."""

    def __init__(self) -> None:
        self._at_least = 0
        self._open: set[int] = set()  # containers on the current path, to spot cycles

    def copy(self, value: object, path: tuple[object, ...]) -> Any:
        if isinstance(value, str):
            return self._text(value, lambda: _where(path))
        self._spend(1)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"metadata: must be JSON-serializable; {_where(path)} is {value!r}")
            return float(value)
        if isinstance(value, (Mapping, list, tuple)):
            return self._container(value, path)
        raise ValueError(
            f"metadata: must be JSON-serializable; {_where(path)} is a {type(value).__name__}"
        )

    def _container(self, value: Mapping[Any, Any] | list[Any] | tuple[Any, ...], path: tuple[object, ...]) -> Any:
        if len(path) > MAX_METADATA_DEPTH:
            raise ValueError(f"metadata: {_where(path)} is nested deeper than {MAX_METADATA_DEPTH} levels")
        if id(value) in self._open:
            raise ValueError(f"metadata: must be JSON-serializable; {_where(path)} contains itself")
        self._open.add(id(value))
        try:
            if isinstance(value, Mapping):
                return {self._key(key, path): self.copy(item, (*path, key)) for key, item in value.items()}
            return [self.copy(item, (*path, index)) for index, item in enumerate(value)]
        finally:
            self._open.discard(id(value))

    def _key(self, key: object, path: tuple[object, ...]) -> str:
        if not isinstance(key, str):
            raise ValueError(
                f"metadata: must be JSON-serializable; key {_shown(key)} in {_where(path)} is not a string"
            )
        return self._text(key, lambda: f"key {_shown(key)} in {_where(path)}")

    def _text(self, text: str, where: Callable[[], str]) -> str:
        self._spend(len(text) + 2)  # at least one byte a character, plus the quotes
        if "\x00" in text:
            # PostgreSQL's text and JSONB cannot hold NUL; refuse it here, not at COMMIT.
            raise ValueError(f"metadata: {where()} contains a NUL character (\\x00)")
        return str.__str__(text)  # a plain str, even from a str subclass (a str Enum)

    def _spend(self, characters: int) -> None:
        self._at_least += characters
        if self._at_least > _METADATA_READ_LIMIT:
            raise ValueError(
                f"metadata: more than {_METADATA_READ_LIMIT} bytes exceeds the limit of "
                f"{MAX_METADATA_BYTES} bytes"
            )


def _where(path: tuple[object, ...]) -> str:
    return "metadata" + "".join(f"[{_shown(step)}]" for step in path)
