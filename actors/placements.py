"""Idempotent placement: the client order ids the supervisor has seen, and the reply a
placement shares with the retries that arrive while it is in flight.

A request with a ``client_order_id`` is placed at most once per account. The supervisor,
which takes placements one at a time, decides: an id it has seen this run answers the
order placed with it (waiting for that placement's answer while it is in flight); an id
it has not seen is looked up in the database (a restart forgets nothing that was
recorded); only an unknown id is placed. The unique index on (account, client_order_id)
is the last guard: a second row for the id cannot be written, so cannot be sent.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from actors.base import answer, fail
from actors.trading import PlaceOrder
from domain.enums import OrderStatus
from domain.errors import OrderRejected, OrderSubmissionFailed
from domain.order import Order
from domain.order_request import OrderRequest
from domain.results import OrderResult

# Ids of finished placements kept in memory; older ones are read from the database.
REMEMBERED = 100_000


class SharedReply:
    """Stands where the placer's reply would (a future, or an actor's answer): its one
    answer goes to the placer and to every retry that joined meanwhile. An answer that
    is a failure to record or send (anything but a refusal, which is recorded) calls
    ``forget``, so that a later retry asks the database rather than this run's memory."""

    def __init__(self, first: Any, forget: Callable[["SharedReply"], None]) -> None:
        self._lock = threading.Lock()
        self._waiting: list[Any] = [first]
        self._done = False
        self._forgotten = False
        self._forget = forget

    def join(self, reply: Any) -> bool:
        """Answer ``reply`` with this placement's answer; False when that answer was
        already given (the caller then answers from the order as it stands)."""
        with self._lock:
            if self._done:
                return False
            self._waiting.append(reply)
            return True

    @property
    def done(self) -> bool:
        with self._lock:
            return self._done

    @property
    def forgotten(self) -> bool:
        """Answered with a failure to record or send: the id names no order this run
        can vouch for (the database may still hold one; ask it)."""
        with self._lock:
            return self._forgotten

    def _take(self, forgotten: bool = False) -> list[Any]:
        with self._lock:
            if self._done:
                raise RuntimeError("already answered")
            self._done = True
            # Decided with the answer, never after it: a second answer (a group write's
            # failure reaching every reply of the group) must not turn a settled one.
            self._forgotten = forgotten
            waiting, self._waiting = self._waiting, []
            return waiting

    def set(self, value: Any = None) -> None:
        for reply in self._take():
            answer(reply, value)

    def set_exception(self, exc_info: Any = None) -> None:
        error = exc_info[1] if isinstance(exc_info, tuple) else exc_info
        forgotten = not isinstance(error, OrderRejected)
        waiting = self._take(forgotten)
        if forgotten:
            self._forget(self)
        for reply in waiting:
            fail(reply, error)


@dataclass(slots=True)
class Placement:
    """One client order id as this run knows it: the command that claimed it, its order
    id once given, and its shared reply while in flight (None: known from the database)."""

    command: PlaceOrder | None
    order_id: int | None
    reply: SharedReply | None


class ClientOrderIds:
    """The supervisor's book of client order ids (owned by the supervisor, used on its
    thread only)."""

    def __init__(self, limit: int = REMEMBERED) -> None:
        self._placements: OrderedDict[str, Placement] = OrderedDict()
        self._limit = limit

    def get(self, client_order_id: str) -> Placement | None:
        return self._placements.get(client_order_id)

    def claim(self, client_order_id: str, command: PlaceOrder, reply: SharedReply) -> None:
        self._placements[client_order_id] = Placement(command, None, reply)
        self._trim()

    def known(self, client_order_id: str, order_id: int) -> None:
        self._placements[client_order_id] = Placement(None, order_id, None)
        self._trim()

    def forget(self, client_order_id: str, reply: SharedReply) -> None:
        placement = self._placements.get(client_order_id)
        if placement is not None and placement.reply is reply:
            del self._placements[client_order_id]

    def _trim(self) -> None:
        # Only settled placements go; one in flight is never forgotten (at most a few
        # hundred are, far below the limit).
        excess = len(self._placements) - self._limit
        if excess <= 0:
            return
        for client_order_id in [c for c, p in self._placements.items() if p.reply is None or p.reply.done][:excess]:
            del self._placements[client_order_id]


# What a retry must repeat of the first placement: the fields a modification never
# changes, and, while the first is unmodified, its quantity and prices as well.
SAME_ORDER_FIELDS = ("symbol", "exchange", "side", "order_type", "product", "validity", "variety", "strategy_id")
SAME_TERMS = ("quantity", "price", "trigger_price", "stop_loss", "take_profit")


def reused_for_another_order(request: OrderRequest, first: OrderRequest | Order) -> ValueError | None:
    """A ValueError when ``request`` reuses the client order id of ``first`` for a
    different order: a retry must be the same order (the same instrument, side, type,
    product, validity and strategy, and the same quantity and prices unless the first
    has been modified since), and two orders must not share an id. Another strategy's
    order is not described: the refusal tells nothing of it."""
    compared = SAME_ORDER_FIELDS
    if not isinstance(first, Order) or first.modification_count == 0:
        compared = SAME_ORDER_FIELDS + SAME_TERMS
    for name in compared:
        mine, theirs = getattr(request, name), getattr(first, name)
        if mine != theirs:
            if request.strategy_id != first.strategy_id:
                return ValueError(
                    f"client_order_id: {request.client_order_id} is already used by another order; "
                    "a new order needs a new client_order_id"
                )
            order = f"order {first.order_id}" if isinstance(first, Order) else "an order in flight"
            return ValueError(
                f"client_order_id: {request.client_order_id} names {order} with {name} "
                f"{getattr(theirs, 'value', theirs)}, not {getattr(mine, 'value', mine)}; a new order needs a new client_order_id"
            )
    return None


def answer_retry(order: Order, reply: Any) -> None:
    """Answer a placement whose client order id names ``order`` as the first placement
    was answered: the order's result, or the refusal it met."""
    client = order.client_order_id
    if order.status is OrderStatus.REJECTED:
        fail(reply, OrderRejected(order.status_message or "rejected", failed_check(order), order.order_id))
        return
    if order.status is OrderStatus.FAILED:
        fail(reply, OrderSubmissionFailed(
            f"order {order.order_id} (client_order_id {client}) FAILED: {order.error_message or order.status_message}; "
            "a new attempt needs a new client_order_id"
        ))
        return
    answer(reply, OrderResult(
        order.order_id, order.broker_order_id, order.status, f"already placed with client_order_id {client}",
    ))


def failed_check(order: Order) -> str:
    """The check that refused a REJECTED order: the first pre-trade check that failed,
    or ``broker`` when every check passed and the broker said no."""
    for check in (order.validation_result or {}).get("checks", ()):
        if not check.get("passed", True):
            return str(check.get("name", "unknown"))
    return "broker"
