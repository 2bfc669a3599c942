"""Read-only copies of JSON-like values, so a value object that holds a dict is really
immutable: what a caller receives can never change the OMS's state, or another caller's.

Mappings become read-only mappings (``MappingProxyType`` over a private dict) and lists
become tuples, all the way down. ``thaw`` gives back plain, mutable dicts and lists.

``compact`` keeps a document that is kept long and read rarely (an order's validation
result: eighteen checks with their reasons, held for every live order) as its JSON text,
a third of the memory of the same document as objects; past ``_SQUEEZE_FROM`` characters
a document made with ``squeeze`` keeps its text deflated against a typical document
(``use_preset``): 2 KB of checks in about 120 bytes, for about 25 us. The database's
reads squeeze (a restart reads every live order's result at once, outside the order
flow); a new order's result is not, because zlib gives up the GIL on every call and, in
the order flow, waiting to get it back cost a third of the throughput (measured).
"""
from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any

# Values that are immutable already, told apart by their exact type first (most values
# are one of these, and an ABC isinstance check costs ten times an exact-type test).
_SCALARS = frozenset({str, int, float, bool, type(None), Decimal})

# Shorter texts are kept as they are: deflating them saves too little to pay for itself.
_SQUEEZE_FROM = 512
# A typical document, deflate's preset dictionary: what a document shares with it costs
# a few bytes (a validation result: 2 KB as text, 0.7 KB deflated alone, under 0.1-0.3 KB
# with a typical result as the preset). Set by the domain that makes such documents.
_preset = b""


def use_preset(typical: str) -> None:
    """Deflate documents made from now on against ``typical`` (a document like them).
    Those made before keep the preset they were made with."""
    global _preset
    _preset = typical.encode()[-32768:]  # deflate's window


def freeze(value: Any) -> Any:
    """A deep read-only copy of ``value``; one that is already frozen is returned as is."""
    kind = type(value)
    if kind in _SCALARS or kind is MappingProxyType or kind is FrozenDocument:
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


class FrozenDocument(Mapping[str, Any]):
    """A read-only JSON document kept as its text: each read parses it and gives the
    value frozen. Equal to any mapping with the same content."""

    __slots__ = ("_kept", "_preset")

    def __init__(self, text: str, squeeze: bool = False) -> None:
        self._preset = _preset  # the one it is deflated with, should the preset change later
        if not squeeze or len(text) < _SQUEEZE_FROM:
            self._kept: str | bytes = text
            return
        # zlib's default level, 6: level 1 looks for matches too briefly to find the preset's
        # far half (PostgreSQL's jsonb form of the typical document): a result read back
        # from PostgreSQL was kept in 283 bytes, now 118, for 26 us instead of 21 (measured).
        deflate = zlib.compressobj(6, zdict=self._preset) if self._preset else zlib.compressobj(6)
        self._kept = deflate.compress(text.encode()) + deflate.flush()

    @property
    def text(self) -> str:
        """The document's JSON text (compact), as a JSON column stores it."""
        kept = self._kept
        if type(kept) is str:
            return kept
        inflate = zlib.decompressobj(zdict=self._preset) if self._preset else zlib.decompressobj()
        return (inflate.decompress(kept) + inflate.flush()).decode()  # type: ignore[arg-type]

    def document(self) -> dict[str, Any]:
        """A plain, mutable copy of the document (one parse)."""
        document: dict[str, Any] = json.loads(self.text)
        return document

    def __getitem__(self, key: str) -> Any:
        return freeze(self.document()[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self.document())

    def __len__(self) -> int:
        return len(self.document())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenDocument):
            return self._kept == other._kept or self.document() == other.document()
        if isinstance(other, Mapping):
            same: bool = self.document() == thaw(other)
            return same
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # like dict: equal to mappings, so unhashable

    def __repr__(self) -> str:
        return repr(self.document())


def compact(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """``value`` as a FrozenDocument when it is plain JSON (text, whole numbers, truth
    values, None, lists and mappings with text keys), read back exactly as it was; else
    frozen as objects (``freeze``)."""
    if type(value) is FrozenDocument:
        return value
    # Floats, or keys that are not text, would not read back as they were written (one
    # walk of the value, cheaper than writing it, reading it back and comparing).
    if not _reads_back(value):
        frozen: Mapping[str, Any] = freeze(value)
        return frozen
    return document_of(value)


def document_of(value: Mapping[str, Any]) -> FrozenDocument:
    """``value`` kept as its compact JSON text, with no walk to prove it reads back: for a
    maker whose values are plain JSON by construction. Raises what ``json.dumps`` raises."""
    return FrozenDocument(json.dumps(value, separators=(",", ":"), allow_nan=False))


_EXACT = frozenset({str, int, bool, type(None)})


def _reads_back(value: Any) -> bool:
    """Whether JSON text gives ``value`` back exactly: text, whole numbers, truth values,
    None, and lists, tuples and mappings (text keys) of them."""
    kind = type(value)
    if kind in _EXACT:
        return True
    if isinstance(value, Mapping):
        return all(type(key) is str and _reads_back(item) for key, item in value.items())
    if kind is list or kind is tuple:
        return all(_reads_back(item) for item in value)
    return False


def thaw(value: Any) -> Any:
    """A plain, mutable deep copy of (frozen) ``value``: mappings become dicts, tuples lists."""
    if type(value) is FrozenDocument:
        return value.document()
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [thaw(item) for item in value]
    return value
