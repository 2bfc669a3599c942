"""Kite's order statuses mapped onto ours: the one table that does it."""
from __future__ import annotations

from typing import Mapping

from domain.enums import OrderStatus

S = OrderStatus

# Transient "... PENDING" / "... REQ RECEIVED" statuses before the exchange has the
# order are SUBMITTED; once it rests at the exchange (or is being modified or cancelled
# there) it is OPEN. COMPLETE only means FILLED once the trades are in: the order
# tracker settles fills from trades, never from this status alone.
KITE_TO_OMS: Mapping[str, OrderStatus] = {
    "PUT ORDER REQ RECEIVED": S.SUBMITTED,
    "VALIDATION PENDING": S.SUBMITTED,
    "OPEN PENDING": S.SUBMITTED,
    # An after-market order Kite has taken and holds for the next session: accepted and
    # working (cancellable, modifiable), not filled. When the exchange opens, Kite sends it
    # on (OPEN PENDING, which never moves our OPEN order back) and it trades as usual.
    "AMO REQ RECEIVED": S.OPEN,
    "OPEN": S.OPEN,
    "TRIGGER PENDING": S.OPEN,
    "MODIFY VALIDATION PENDING": S.OPEN,
    "MODIFY PENDING": S.OPEN,
    "MODIFIED": S.OPEN,
    "UPDATE": S.OPEN,
    "CANCEL PENDING": S.OPEN,
    "COMPLETE": S.FILLED,
    "CANCELLED": S.CANCELLED,
    "CANCELLED AMO": S.CANCELLED,
    "REJECTED": S.REJECTED,
}


def map_kite_status(status: str) -> OrderStatus:
    """Our status for a Kite status; unknown ones raise ValueError rather than guess."""
    try:
        return KITE_TO_OMS[status.strip().upper()]
    except KeyError:
        raise ValueError(f"unknown Kite order status {status!r}") from None
