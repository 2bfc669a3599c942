"""The broker's instruments as the order checks see them: tick size, lot size, type.

An ``InstrumentBook`` is one loaded instrument master (or the lack of one, with the
reason), never changed after it is made: a new day's master is a new book, swapped in
whole, so a check never sees half of one and half of another.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Mapping

# Where Kite lists derivatives (futures and options) and currency/commodity contracts:
# orders there trade in lots, and their ticks are the contract's own.
DERIVATIVE_EXCHANGES = frozenset({"NFO", "BFO", "CDS", "BCD", "MCX", "NCO"})
DERIVATIVE_TYPES = frozenset({"FUT", "CE", "PE"})


def is_derivative(exchange: str, instrument_type: str = "") -> bool:
    return exchange in DERIVATIVE_EXCHANGES or instrument_type in DERIVATIVE_TYPES


@dataclass(frozen=True, slots=True)
class Instrument:
    """One row of the instrument master."""

    exchange: str
    symbol: str
    tick_size: Decimal
    lot_size: int
    instrument_type: str = "EQ"
    segment: str = ""
    name: str = ""
    token: int = 0
    expiry: date | None = None
    strike: Decimal = Decimal(0)

    @property
    def key(self) -> tuple[str, str]:
        return (self.exchange, self.symbol)

    @property
    def is_derivative(self) -> bool:
        return is_derivative(self.exchange, self.instrument_type)


@dataclass(frozen=True, slots=True)
class InstrumentBook:
    """One instrument master: ``loaded_on`` (the Asia/Kolkata day it was published for)
    and its rows; ``problem`` says why it is missing or stale (None when all is well)."""

    instruments: Mapping[tuple[str, str], Instrument] = field(default_factory=dict)
    loaded_on: date | None = None
    problem: str | None = None

    @classmethod
    def of(cls, rows: list[Instrument], loaded_on: date | None, problem: str | None = None) -> "InstrumentBook":
        return cls({row.key: row for row in rows}, loaded_on, problem)

    @property
    def loaded(self) -> bool:
        return self.loaded_on is not None

    def get(self, exchange: str, symbol: str) -> Instrument | None:
        return self.instruments.get((exchange, symbol))

    def __len__(self) -> int:
        return len(self.instruments)
