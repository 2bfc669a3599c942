"""Exceptions named for the decision the caller has to make."""
from __future__ import annotations

from decimal import Decimal
from typing import Any


class OMSError(Exception):
    """Base of every error the OMS raises on purpose."""


class OrderRejected(OMSError):
    """The OMS (a pre-trade check) or the broker refused the order; it is stored REJECTED.

    ``failed_check`` names the check that refused it (``"risk_per_trade"``,
    ``"balance"``, ... or ``"broker"`` when the broker said no).
    """

    def __init__(self, reason: str, failed_check: str, order_id: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.failed_check = failed_check
        self.order_id = order_id

    def __reduce__(self) -> tuple[Any, ...]:  # keep the extra fields across pickling (futures, processes)
        return (type(self), (self.reason, self.failed_check, self.order_id))


class InsufficientBalance(OrderRejected):
    """The balance/margin check refused the order: ``required`` exceeds ``available``."""

    def __init__(
        self,
        required: Decimal,
        available: Decimal,
        reason: str | None = None,
        order_id: int | None = None,
    ) -> None:
        self.required = required
        self.available = available
        super().__init__(
            reason
            or f"required margin {required:.2f} exceeds available balance {available:.2f}",
            "balance",
            order_id,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.required, self.available, self.reason, self.order_id))


class OrderSubmissionFailed(OMSError):
    """The order could not be handed to the broker (the broker never got it, or the
    OMS could not record it first). Nothing is working at the broker."""


class OMSUnavailable(OrderSubmissionFailed):
    """The OMS cannot record the request now (the database is unavailable), so nothing
    was sent; the message names the cause. Try again once ``oms.health()`` is RUNNING."""


class RecordedLate(OMSUnavailable):
    """The request was recorded, but the database could confirm it only after it came
    back (its COMMIT's answer was lost on the way): too late to act on, so nothing was
    sent. The order shows why."""


class OrderNotFound(OMSError, KeyError):
    """No order with this id exists."""

    def __init__(self, order_id: int) -> None:
        super().__init__(f"no order with id {order_id!r}")
        self.order_id = order_id

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.order_id,))


class OrderNotCancellable(OMSError):
    """The order cannot be cancelled (it is terminal, or the broker refused)."""

    def __init__(self, order_id: int, reason: str) -> None:
        super().__init__(f"order {order_id} cannot be cancelled: {reason}")
        self.order_id = order_id
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.order_id, self.reason))


class OrderNotModifiable(OMSError, ValueError):
    """The modification is not allowed for this order in its current state."""

    def __init__(self, order_id: int, reason: str) -> None:
        super().__init__(f"order {order_id} cannot be modified: {reason}")
        self.order_id = order_id
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.order_id, self.reason))


class IllegalTransition(OMSError):
    """A status change the state machine does not allow (a bug or a stale update)."""
