"""A strategy that is a pykka actor trades with the OMS by message only (actors.trading).

The test drives a small strategy actor by message; the strategy sends the supervisor
PlaceOrder, ModifyOrder and CancelOrder with itself as ``reply_to``, and every answer and
event it hears is handed to the test through a thread-safe queue. The test moves the
paper market with ``oms.paper`` between steps, as a market would. Runs on SQLite and
on PostgreSQL.
"""
from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import pykka
import pytest

from actors import start_oms
from actors.trading import (
    CancelAccepted,
    CancelOrder,
    ModifyAccepted,
    ModifyOrder,
    OrderAccepted,
    OrderChanged,
    OrderFilled,
    OrderRefused,
    PlaceOrder,
    Subscribe,
)
from domain import OrderRequest, OrderStatus
from tests.oms_helpers import wait_for

D = Decimal
S = OrderStatus
STRATEGY_ID = 7
WAIT_S = 10.0

M = TypeVar("M")


# --------------------------------------------------------------------------- the strategy


@dataclass(frozen=True)
class Enter:
    """Test -> strategy: place ``request``."""

    request: OrderRequest
    correlation_id: str


@dataclass(frozen=True)
class Reprice:
    """Test -> strategy: move a working order to ``new_price``."""

    order_id: int
    new_price: Decimal
    correlation_id: str


@dataclass(frozen=True)
class Withdraw:
    """Test -> strategy: cancel an order."""

    order_id: int
    correlation_id: str


class SmallStrategy(pykka.ThreadingActor):
    """Owns nothing but its mailbox. Takes Enter, Reprice and Withdraw from the test and
    turns them into the OMS's commands; hands every message from the OMS to ``heard``."""

    def __init__(self, oms: pykka.ActorRef, heard: "queue.Queue[Any]") -> None:
        super().__init__()
        self.oms = oms
        self.heard = heard

    def on_start(self) -> None:
        self.oms.tell(Subscribe(self.actor_ref, strategy_id=STRATEGY_ID))

    def on_receive(self, message: Any) -> None:
        me = self.actor_ref
        match message:
            case Enter(request, cid):
                self.oms.tell(PlaceOrder(request, reply_to=me, correlation_id=cid))
            case Reprice(order_id, new_price, cid):
                self.oms.tell(ModifyOrder(order_id, new_price=new_price, reply_to=me, correlation_id=cid))
            case Withdraw(order_id, cid):
                self.oms.tell(CancelOrder(order_id, reply_to=me, correlation_id=cid))
            case _:
                self.heard.put(message)


class Mailbox:
    """What the strategy heard, in arrival order; ``next`` takes the first message of a
    kind (and condition) not taken yet, waiting for it if need be."""

    def __init__(self, heard: "queue.Queue[Any]") -> None:
        self.heard = heard
        self.all: list[Any] = []
        self._untaken: list[Any] = []

    def next(self, kind: type[M], where: Callable[[M], bool] = lambda m: True) -> M:
        for message in self._untaken:
            if isinstance(message, kind) and where(message):
                self._untaken.remove(message)
                return message
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                message = self.heard.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the strategy never heard a {kind.__name__} that fits; heard {self.all}") from None
            self.all.append(message)
            if isinstance(message, kind) and where(message):
                return message
            self._untaken.append(message)


@pytest.fixture
def market(database_url: str) -> Iterator[tuple[Any, pykka.ActorRef, Mailbox]]:
    """A running OMS on paper, INFY at 1523.40, and the strategy subscribed to it."""
    heard: queue.Queue[Any] = queue.Queue()
    with start_oms(database_url=database_url, broker="paper", capital=D("1000000")) as oms:
        oms.paper.set_price("INFY", D("1523.40"))
        strategy = SmallStrategy.start(oms.supervisor, heard)
        try:
            yield oms, strategy, Mailbox(heard)
        finally:
            strategy.stop()


def infy(quantity: int = 10, **fields: Any) -> OrderRequest:
    return OrderRequest(symbol="INFY", side="BUY", quantity=quantity, strategy_id=STRATEGY_ID,
                        metadata={"strategy": "small"}, **fields)


# --------------------------------------------------------------------------- tests


def test_strategy_actor_hears_a_whole_order_life_by_message(market):
    oms, strategy, mailbox = market

    strategy.tell(Enter(infy(order_type="LIMIT", price=D("1520.00"), stop_loss=D("1505.00")), "entry"))
    accepted = mailbox.next(OrderAccepted)
    assert accepted.correlation_id == "entry"
    assert accepted.result.status is S.OPEN and accepted.result.broker_order_id
    order_id = accepted.result.order_id
    assert isinstance(order_id, int)
    mailbox.next(OrderChanged, lambda m: m.order.status is S.OPEN)

    # The market trades through the bid, with 4 shares on offer: a partial fill.
    oms.paper.set_liquidity("INFY", 4)
    oms.paper.set_price("INFY", D("1519.90"))
    filled = mailbox.next(OrderFilled)
    assert (filled.fill.order_id, filled.fill.quantity, filled.fill.price) == (order_id, 4, D("1519.90"))
    assert filled.fill.charges.total > 0
    assert (filled.order.status, filled.order.filled_quantity) == (S.OPEN, 4)

    strategy.tell(Reprice(order_id, D("1510.00"), "lower"))
    assert mailbox.next(ModifyAccepted) == ModifyAccepted("lower", order_id)
    modified = mailbox.next(OrderChanged, lambda m: m.order.modification_count == 1)
    assert (modified.order.price, modified.order.filled_quantity) == (D("1510.00"), 4)

    strategy.tell(Withdraw(order_id, "exit"))
    assert mailbox.next(CancelAccepted) == CancelAccepted("exit", order_id)
    cancelled = mailbox.next(OrderChanged, lambda m: m.order.status is S.CANCELLED)
    assert cancelled.order.filled_quantity == 4

    # Everything it heard was about its own order, in the order the OMS committed it.
    assert not any(isinstance(m, OrderRefused) for m in mailbox.all)
    changes = [m.order for m in mailbox.all if isinstance(m, OrderChanged)]
    assert {o.order_id for o in changes} == {order_id}
    assert [o.status for o in changes][-1] is S.CANCELLED
    assert [o.filled_quantity for o in changes] == sorted(o.filled_quantity for o in changes)
    assert oms.get_order_status(order_id).status is S.CANCELLED


def test_strategy_actor_hears_a_refusal_with_the_check_and_its_reason(market):
    oms, strategy, mailbox = market
    # Another strategy's order, filled before ours is placed: not for this subscriber. (The
    # supervisor tells subscribers of a change as it takes it in, before queries see it.)
    other = oms.place_order(OrderRequest(symbol="INFY", side="BUY", quantity=1, stop_loss=D("1500.00")))
    wait_for(oms, other.order_id, lambda o: o.status is S.FILLED)

    strategy.tell(Enter(infy(), "no stop"))  # opens a position with no stop-loss
    refused = mailbox.next(OrderRefused)
    assert refused.correlation_id == "no stop"
    assert refused.failed_check == "stop_loss_required"
    assert "stop-loss required" in refused.reason
    assert refused.order_id is not None
    rejected = mailbox.next(OrderChanged, lambda m: m.order.order_id == refused.order_id)
    assert rejected.order.status is S.REJECTED and rejected.order.strategy_id == STRATEGY_ID

    strategy.tell(Withdraw(refused.order_id, "too late"))
    late = mailbox.next(OrderRefused, lambda m: m.correlation_id == "too late")
    assert (late.failed_check, late.order_id) == ("not_cancellable", refused.order_id)

    assert not any(getattr(getattr(m, "order", None), "order_id", None) == other.order_id for m in mailbox.all)
