"""The closed vocabularies of an order: where, which way, what kind, how long."""
from __future__ import annotations

from enum import Enum


class Exchange(str, Enum):
    NSE = "NSE"
    BSE = "BSE"
    NFO = "NFO"
    BFO = "BFO"
    CDS = "CDS"
    MCX = "MCX"


class Side(str, Enum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell: the direction a fill moves a position."""
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> "Side":
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(str, Enum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    SL = "SL"
    SL_M = "SL-M"


class Product(str, Enum):
    CNC = "CNC"
    MIS = "MIS"
    NRML = "NRML"


class Validity(str, Enum):
    DAY = "DAY"
    IOC = "IOC"


class Variety(str, Enum):
    """Kite's order variety: ``regular`` in market hours, ``amo`` (after-market order)
    placed outside them and sent to the exchange when it opens."""

    REGULAR = "regular"
    AMO = "amo"


class OrderStatus(str, Enum):
    """The seed's seven statuses. Partial fills are OPEN with filled_quantity > 0."""

    PENDING = "PENDING"
    SUBMITTED = "SUBMITTED"
    OPEN = "OPEN"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.FAILED}
)
