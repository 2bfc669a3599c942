"""The API's JSON: domain values to JSON and back, exactly.

Money and other decimals travel as strings ("2450.5"), never as binary floats; times
as ISO 8601 with their UTC offset; enums as their values. A domain dataclass (Order,
Fill, OrderEvent, Position, OrderResult, Health) goes out as an object of its fields
and comes back, on the client, as the same dataclass, equal to the one the OMS holds.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from datetime import datetime
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: dicts, lists, strings, ints, bools and None."""
    if value is None or isinstance(value, (bool, int, str)) and not isinstance(value, Enum):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if hasattr(value, "model_dump"):  # a pydantic model (an OrderRequest)
        return plain(value.model_dump())
    raise TypeError(f"no JSON form for {type(value).__name__}")


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_plain(cls: type[T], data: Mapping[str, Any]) -> T:
    """The dataclass ``cls`` from its JSON form (``plain``'s inverse); fields it does not
    know are ignored, so a newer server's additions do not break an older client."""
    hints = _hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    values = {name: _typed(hints[name], data[name]) for name in fields if name in data}
    return cls(**values)


def _typed(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _typed(options[0], value) if len(options) == 1 else value
    if origin in (tuple, list):
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return origin(_typed(item, v) for v in value)
    if origin is not None:  # Mapping[...] and the like: plain JSON as it came
        return value
    if hint is Decimal:
        return Decimal(str(value))
    if hint is datetime:
        return datetime.fromisoformat(value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_plain(hint, value)
    return value
