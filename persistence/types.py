"""Column types that keep the domain's values exact on every database.

* ``UTCDateTime``: timezone-aware UTC in, timezone-aware UTC out. PostgreSQL stores
  ``timestamptz``; SQLite has no time zones, so the value is stored as naive UTC and
  given back its UTC zone on the way out. Naive datetimes are refused on the way in.
* ``Money``: ``Decimal`` in, ``Decimal`` out, never float. PostgreSQL stores
  ``NUMERIC(p, s)``. SQLite has no decimal type (its NUMERIC affinity turns values into
  binary floats), so there the value is stored as its exact decimal text, quantized to
  the column's scale just as PostgreSQL's NUMERIC rounds it (half away from zero).
* ``JSONDoc``: JSONB on PostgreSQL, JSON elsewhere; Python ``None`` is SQL NULL and the
  value is made JSON-safe first (Decimal -> str, datetime -> ISO text, enum -> value).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy import JSON, DateTime, Numeric, String, Text, cast, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from domain.frozen import FrozenDocument
from domain.money import natural

UTC = timezone.utc


def to_jsonable(value: Any) -> Any:
    """``value`` with every Decimal turned into its exact string (and datetimes into ISO
    8601 text, enums into their values, tuples/sets into lists), ready for JSON."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float):
        return value  # not ours to judge; json refuses NaN/inf itself
    if type(value) is FrozenDocument:
        return value.document()  # plain JSON already
    if isinstance(value, Enum):
        return to_jsonable(value.value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(to_jsonable(k)): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    raise TypeError(f"cannot store a {type(value).__name__} in a JSON column: {value!r}")


def _json_default(value: Any) -> Any:
    """What ``json`` cannot write itself, written as ``to_jsonable`` writes it."""
    if isinstance(value, Decimal):
        return str(value)
    if type(value) is FrozenDocument:
        return value.document()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo is not None else value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"cannot store a {type(value).__name__} in a JSON column: {value!r}")


def json_dumps(value: Any) -> str:
    """JSON text of ``value`` with Decimals written as strings (see ``to_jsonable``).
    The conversion happens inside ``json``'s C encoder, only for values that need it:
    this runs for every row the group commit writes. A FrozenDocument, alone or as a
    value of a mapping (the PENDING event's validation result), goes in as its text,
    never parsed and encoded again."""
    if type(value) is FrozenDocument:
        return value.text
    if isinstance(value, Mapping) and any(type(item) is FrozenDocument for item in value.values()):
        return "{" + ",".join(
            f"{json.dumps(str(key))}:{json_dumps(item)}" for key, item in value.items()
        ) + "}"
    return json.dumps(value, default=_json_default, allow_nan=False, separators=(",", ":"))


# --- the one conversion per column type, used by every write path ---------------------
# (the SQLAlchemy types below, and the group write that speaks to the driver directly)


def bind_money(value: Any, column: str, precision: int, scale: int, sqlite: bool) -> Any:
    """``value`` as a NUMERIC(precision, scale) column stores it: exactly, or refused.
    Never rounded (a price or an amount stored other than it was is a wrong fact), never
    float. SQLite gets exact decimal text; PostgreSQL the Decimal itself."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise TypeError(f"{column}: money must be a Decimal (or int), never {type(value).__name__}: {value!r}")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"{column}: money must be finite, got {number}")
    # Checked on the exponent first, so an absurd value is refused before any arithmetic.
    if number and number.adjusted() >= precision - scale:
        raise ValueError(f"{column}: {number} does not fit NUMERIC({precision}, {scale}): below 10^{precision - scale} only")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -scale and number != number.quantize(Decimal(1).scaleb(-scale)):
        raise ValueError(f"{column}: {number} has more than {scale} decimal places; it would be stored rounded")
    if not sqlite:
        return number
    return format(number.quantize(Decimal(1).scaleb(-scale)), "f")


def bind_utc(value: Any, column: str, sqlite: bool, as_text: bool) -> Any:
    """A timezone-aware datetime as UTC: naive ones are refused. On SQLite, naive UTC
    (as SQLAlchemy's DATETIME stores it), or that text when written by the driver."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"{column}: expected a datetime, got {type(value).__name__}: {value!r}")
    if value.tzinfo is not UTC:  # the OMS's own clock gives UTC already
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{column}: naive datetime {value!r}: timestamps must be timezone-aware")
        value = value.astimezone(UTC)
    if not sqlite:
        return value
    naive = value.replace(tzinfo=None)
    # isoformat is strftime("%Y-%m-%d %H:%M:%S.%f") at a fraction of its cost
    return naive.isoformat(" ", "microseconds") if as_text else naive


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return bind_utc(value, "timestamp", dialect.name == "sqlite", as_text=False)  # type: ignore[no-any-return]

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Money(TypeDecorator[Decimal]):
    """An exact decimal: NUMERIC(precision, scale) on PostgreSQL, exact text on SQLite."""

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int = 20, scale: int = 8) -> None:
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.precision = precision
        self.scale = scale
        self._quantum = Decimal(1).scaleb(-scale)
        self._limit = Decimal(10) ** (precision - scale)

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            # VARCHAR gives the column TEXT affinity: SQLite keeps the digits as written.
            return dialect.type_descriptor(String(self.precision + 2))
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return bind_money(value, "money", self.precision, self.scale, dialect.name == "sqlite")

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        """The stored value at a trader's scale (1520.50, not 1520.50000000)."""
        if value is None:
            return None
        if isinstance(value, Decimal):
            return natural(value)
        if isinstance(value, float):  # a value some other writer stored as REAL
            return natural(Decimal(repr(value)))
        return natural(Decimal(str(value)))


class JSONDoc(TypeDecorator[Any]):
    """JSONB on PostgreSQL, JSON elsewhere; Decimals are written as strings."""

    impl = JSON(none_as_null=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(JSON(none_as_null=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return to_jsonable(value)


class JSONDocument(JSONDoc):
    """A JSONDoc read back as a ``FrozenDocument`` straight from the stored text: no
    parse, no objects (an order's validation result, read for every live order at a
    restart and rarely looked into after). The column is read as text (``CAST``), so
    PostgreSQL's jsonb arrives unparsed too."""

    cache_ok = True

    def column_expression(self, column: Any) -> Any:
        return type_coerce(cast(column, Text), self)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        def process(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, str):
                return FrozenDocument(value, squeeze=True) if value.startswith("{") else json.loads(value)
            return value
        return process
