"""Reconciliation's rules: how the OMS's positions are compared with the broker's, what
each difference is called, what the correction is, and the report a caller gets back.

Pure: the reconciler actor reads both sides and the time, and hands them in here.

The guide's three position findings, by (exchange, symbol, product):

* UNKNOWN_POSITION: the broker holds a position the OMS has as flat (or not at all);
* QUANTITY_MISMATCH: both hold one, of different quantities;
* PHANTOM_POSITION: the OMS holds a position the broker does not.

The broker is the truth in all three: the correction sets the OMS's quantity to the
broker's. Realized P&L and charges already booked are kept (they were paid); the
average price becomes the broker's where it has one, since the open quantity is now
the broker's.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from domain.broker import BrokerPosition
from domain.enums import Exchange, Product
from domain.frozen import freeze
from domain.market_hours import IST
from domain.position import Position, PositionKey

ZERO = Decimal(0)


class IssueType(str, Enum):
    UNKNOWN_POSITION = "UNKNOWN_POSITION"
    QUANTITY_MISMATCH = "QUANTITY_MISMATCH"
    PHANTOM_POSITION = "PHANTOM_POSITION"
    ORDER_DRIFT = "ORDER_DRIFT"
    """One of our orders has more (or fewer) fills at the broker than the OMS recorded,
    and no update has brought them in for a while: a missed fill."""
    UNTAGGED_ORDER = "UNTAGGED_ORDER"
    """An order at the broker that carries no tag of ours (placed by hand, or by another
    program): reported once, never adopted."""


RESOLUTION = "RECONCILIATION_FIX"


class StalePosition(Exception):
    """The position moved after it was compared with the broker's (a fill arrived):
    nothing is corrected; the next pass compares again."""


@dataclass(frozen=True, slots=True)
class Difference:
    """A position on which the two sides disagree."""

    issue_type: IssueType
    key: PositionKey
    internal_quantity: int
    broker_quantity: int
    broker_average_price: Decimal | None = None

    @property
    def exchange(self) -> Exchange:
        return self.key[0]

    @property
    def symbol(self) -> str:
        return self.key[1]

    @property
    def product(self) -> Product:
        return self.key[2]


def differences(
    ours: Mapping[PositionKey, Position], broker: Mapping[PositionKey, BrokerPosition]
) -> list[Difference]:
    """Every key whose quantity differs, in a stable order (exchange, symbol, product)."""
    found = []
    for key in sorted(set(ours) | set(broker), key=lambda k: (k[0].value, k[1], k[2].value)):
        held = ours[key].quantity if key in ours else 0
        theirs = broker.get(key)
        broker_quantity = theirs.quantity if theirs is not None else 0
        if held == broker_quantity:
            continue
        if held == 0:
            kind = IssueType.UNKNOWN_POSITION
        elif broker_quantity == 0:
            kind = IssueType.PHANTOM_POSITION
        else:
            kind = IssueType.QUANTITY_MISMATCH
        average = theirs.average_price if theirs is not None and theirs.average_price > 0 else None
        found.append(Difference(kind, key, held, broker_quantity, average))
    return found


def carried_delivery(position: Position, now: datetime) -> bool:
    """Whether ``position`` is a delivery (CNC) position opened before today (India's
    day): at Kite it has moved to the holdings, so the positions book no longer shows
    it, and comparing it there would call it a phantom."""
    if position.product is not Product.CNC or position.quantity == 0:
        return False
    opened = position.opened_at or position.updated_at
    return opened is None or opened.astimezone(IST).date() < now.astimezone(IST).date()


def corrected(position: Position | None, difference: Difference, at: datetime) -> Position:
    """``position`` (None: never held) set to the broker's quantity at ``at``.

    Booked P&L and charges stay. The average price is the broker's when it reports one;
    otherwise ours is kept while the position keeps its direction, and flat has none.
    A position that opens (from flat, or through zero) is opened at ``at``; one that
    goes flat is closed at ``at`` and loses its protective prices."""
    exchange, symbol, product = difference.key
    before = position or Position(exchange, symbol, product)
    quantity = difference.broker_quantity
    if quantity == 0:
        return replace(
            before, quantity=0, average_price=ZERO, closed_at=at, stop_loss=None, take_profit=None, updated_at=at,
        )
    same_direction = before.quantity != 0 and (before.quantity > 0) == (quantity > 0)
    average = difference.broker_average_price or (before.average_price if same_direction else None)
    if average is None:
        # No price for the open quantity at all: the last one known is the best guess,
        # and a position with no price cannot be valued; the log row says so.
        average = before.last_price or ZERO
    opened = before.opened_at if same_direction else at
    return replace(
        before, quantity=quantity, average_price=average, opened_at=opened, closed_at=None,
        last_price=before.last_price if before.last_price is not None else (average or None), updated_at=at,
    )


@dataclass(frozen=True)
class ReconciliationReport(Mapping[str, Any]):
    """What one reconciliation found and did, read as the guide's dict:
    ``report["all_clear"]``, ``["mismatches"]``, ``["unknown_positions"]``,
    ``["timestamp"]`` (ISO 8601, UTC), and also ``["deferred"]`` (positions left for
    the next pass because updates were still arriving) and ``["untagged_orders"]``
    (broker orders without our tag, reported the first time they are seen).

    Read-only all the way down; attributes give the same values."""

    all_clear: bool
    mismatches: tuple[Mapping[str, Any], ...]
    unknown_positions: tuple[Mapping[str, Any], ...]
    timestamp: str
    deferred: tuple[Mapping[str, Any], ...] = ()
    untagged_orders: tuple[Mapping[str, Any], ...] = ()

    def __getitem__(self, key: str) -> Any:
        if key not in _REPORT_KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_REPORT_KEYS)

    def __len__(self) -> int:
        return len(_REPORT_KEYS)


_REPORT_KEYS = ("all_clear", "mismatches", "unknown_positions", "timestamp", "deferred", "untagged_orders")


def _entry(difference: Difference) -> Mapping[str, Any]:
    entry: dict[str, Any] = {
        "symbol": difference.symbol,
        "exchange": difference.exchange.value,
        "product": difference.product.value,
        "internal_quantity": difference.internal_quantity,
        "broker_quantity": difference.broker_quantity,
        "difference": difference.broker_quantity - difference.internal_quantity,
        "type": difference.issue_type.value,
    }
    if difference.issue_type is IssueType.UNKNOWN_POSITION:
        entry["broker_avg_price"] = difference.broker_average_price
    frozen: Mapping[str, Any] = freeze(entry)
    return frozen


def report(
    at: datetime,
    confirmed: list[Difference],
    deferred: Sequence[Difference] = (),
    untagged: Sequence[Mapping[str, Any]] = (),
) -> ReconciliationReport:
    """The report of one pass: ``confirmed`` differences were logged and corrected."""
    mismatches = tuple(_entry(d) for d in confirmed if d.issue_type is not IssueType.UNKNOWN_POSITION)
    unknown = tuple(_entry(d) for d in confirmed if d.issue_type is IssueType.UNKNOWN_POSITION)
    return ReconciliationReport(
        all_clear=not mismatches and not unknown and not untagged,
        mismatches=mismatches,
        unknown_positions=unknown,
        timestamp=at.isoformat(),
        deferred=tuple(_entry(d) for d in deferred),
        untagged_orders=tuple(freeze(dict(u)) for u in untagged),
    )
