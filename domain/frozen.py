"""Read-only copies of JSON-like values, so a value object that holds a dict is really
immutable: what a caller receives can never change the OMS's state, or another caller's.

Mappings become read-only mappings (``MappingProxyType`` over a private dict) and lists
become tuples, all the way down. ``thaw`` gives back plain, mutable dicts and lists.
"""
from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any

# Values that are immutable already, told apart by their exact type first (most values
# are one of these, and an ABC isinstance check costs ten times an exact-type test).
_SCALARS = frozenset({str, int, float, bool, type(None), Decimal})


def freeze(value: Any) -> Any:
    """A deep read-only copy of ``value``; one that is already frozen is returned as is."""
    kind = type(value)
    if kind in _SCALARS or kind is MappingProxyType:
        return value
    if kind is dict:
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if kind is list or kind is tuple:
        return tuple([freeze(item) for item in value])
    if isinstance(value, MappingProxyType):
        return value  # only ever made by freeze, so everything inside is frozen too
    if isinstance(value, Mapping):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """A plain, mutable deep copy of (frozen) ``value``: mappings become dicts, tuples lists."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [thaw(item) for item in value]
    return value
