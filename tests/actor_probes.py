"""Helpers for driving one OMS actor by message and watching what it sends.

- ``Probe``: a pykka actor that stands in for a neighbour. It records every message it
  receives (in arrival order, in a thread-safe log) and lets the test wait, with a
  timeout, for a message of a given type. An optional hook runs in the probe's thread
  at the moment each message arrives (to look at the world *then*, e.g. read the
  database when the gateway is first asked to place an order).
- ``barrier(ref)``: returns once ``ref`` has handled every message told to it before.
- ``StepClock`` / ``FixedClock``: injected clocks, timezone-aware UTC.
- ``ActorGroup``: starts actors and stops them all, in reverse order, whatever happens
  (the conftest hygiene check fails a test that leaves an actor or thread behind).
- ``tag_of`` / ``new_order``: orders as the supervisor makes them, with an integer id and
  the broker tag built from a database's prefix (``domain.order_tag.broker_tag``).

Nothing here sleeps: every wait is on a condition variable or a future, with a timeout.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Iterator, TypeVar

import pykka

from domain.broker import BrokerTrade
from domain.charges import charges_for_fill
from domain.fill import Fill
from domain.order import Order
from domain.order_request import OrderRequest
from domain.order_tag import broker_tag

UTC = timezone.utc
T0 = datetime(2024, 11, 25, 4, 0, 0, tzinfo=UTC)  # 09:30 in Kolkata
WAIT = 5.0  # seconds; every wait in the actor tests is bounded by this
# The broker-tag prefix of tests that have no database to read one from (a real
# database draws its own; see persistence.order_ids.read_tag_prefix).
PREFIX = "TEST"
STRATEGY = 7  # the strategy id of the requests built here

M = TypeVar("M")


# --------------------------------------------------------------------------- clocks


class StepClock:
    """Each call returns a time one ``step`` later than the last (thread-safe), so
    every event an actor stamps is distinct and in order."""

    def __init__(self, start: datetime = T0, step: timedelta = timedelta(seconds=1)) -> None:
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("the clock must be timezone-aware")
        self._next = start
        self._step = step
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            now = self._next
            self._next = now + self._step
            return now

    def peek(self) -> datetime:
        with self._lock:
            return self._next


class FixedClock:
    """Always the same instant."""

    def __init__(self, at: datetime = T0) -> None:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("the clock must be timezone-aware")
        self.at = at

    def __call__(self) -> datetime:
        return self.at


# --------------------------------------------------------------------------- barrier


@dataclass(frozen=True)
class Barrier:
    """A message no OMS actor handles. Asking it of an OMS actor comes back as the
    TypeError of OMSActor's dispatch (an asked failure goes back to the asker and the
    actor carries on), but only after every message told before it was handled."""


def barrier(ref: pykka.ActorRef, timeout: float = WAIT) -> None:
    """Return once ``ref`` has handled every message that was in its inbox."""
    try:
        ref.ask(Barrier(), timeout=timeout)
    except TypeError as error:
        if "does not handle Barrier" not in str(error):
            raise


# --------------------------------------------------------------------------- probe


class _Log:
    """Messages in arrival order, with waiting by type and predicate."""

    def __init__(self) -> None:
        self._messages: list[Any] = []
        self._changed = threading.Condition()

    def add(self, message: Any) -> None:
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()

    def snapshot(self) -> list[Any]:
        with self._changed:
            return list(self._messages)

    def wait_for(
        self,
        kind: type[M] | tuple[type, ...],
        where: Callable[[Any], bool] | None,
        timeout: float,
        count: int,
    ) -> list[M]:
        def matches() -> list[Any]:
            return [m for m in self._messages if isinstance(m, kind) and (where is None or where(m))]

        with self._changed:
            if not self._changed.wait_for(lambda: len(matches()) >= count, timeout=timeout):
                names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
                raise AssertionError(
                    f"no {count} x {names} (matching) within {timeout}s; received: {self._messages!r}"
                )
            return matches()


class _ProbeActor(pykka.ThreadingActor):
    def __init__(self, log: _Log, name: str, hook: Callable[[Any], None] | None) -> None:
        super().__init__()
        self._log = log
        self._name = name
        self._hook = hook

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Barrier):
            return None
        if self._hook is not None:
            self._hook(message)
        self._log.add(message)
        return None

    def __str__(self) -> str:
        return f"Probe[{self._name}] ({self.actor_urn})"


class Probe:
    """A stand-in neighbour. ``probe.ref`` is what the actor under test is given."""

    def __init__(self, name: str = "probe", hook: Callable[[Any], None] | None = None) -> None:
        self.name = name
        self._log = _Log()
        self.ref: pykka.ActorRef = _ProbeActor.start(self._log, name, hook)

    @property
    def messages(self) -> list[Any]:
        return self._log.snapshot()

    def of_type(self, kind: type[M]) -> list[M]:
        return [m for m in self._log.snapshot() if isinstance(m, kind)]

    def types(self) -> list[type]:
        return [type(m) for m in self._log.snapshot()]

    def wait_for(
        self,
        kind: type[M],
        where: Callable[[M], bool] | None = None,
        timeout: float = WAIT,
    ) -> M:
        """The first message of type ``kind`` (satisfying ``where``), waiting for it."""
        return self._log.wait_for(kind, where, timeout, 1)[0]

    def wait_for_count(
        self,
        kind: type[M],
        count: int,
        where: Callable[[M], bool] | None = None,
        timeout: float = WAIT,
    ) -> list[M]:
        return self._log.wait_for(kind, where, timeout, count)

    def settle(self) -> list[Any]:
        """Every message received so far, once the probe has handled its inbox."""
        barrier(self.ref)
        return self.messages

    def stop(self) -> None:
        try:
            self.ref.stop(block=True, timeout=WAIT)
        except pykka.ActorDeadError:
            pass


# --------------------------------------------------------------------------- lifecycle


class ActorGroup:
    """Tracks actors (and probes) started by a test and stops them in reverse order.

    Use as a context manager or through a fixture; ``stop_all`` is idempotent and never
    raises for an actor that already stopped (a tracker stops itself when done).
    """

    def __init__(self) -> None:
        self._items: list[pykka.ActorRef | Probe] = []

    def start(self, actor_class: type[pykka.Actor], *args: Any, **kwargs: Any) -> pykka.ActorRef:
        ref = actor_class.start(*args, **kwargs)
        self._items.append(ref)
        return ref

    def probe(self, name: str = "probe", hook: Callable[[Any], None] | None = None) -> Probe:
        probe = Probe(name, hook)
        self._items.append(probe)
        return probe

    def add(self, item: pykka.ActorRef | Probe) -> None:
        self._items.append(item)

    def stop_all(self) -> None:
        errors: list[BaseException] = []
        while self._items:
            item = self._items.pop()
            try:
                if isinstance(item, Probe):
                    item.stop()
                else:
                    item.stop(block=True, timeout=WAIT)
            except pykka.ActorDeadError:
                pass
            except BaseException as error:  # keep stopping the rest
                errors.append(error)
        if errors:
            raise errors[0]

    def __enter__(self) -> "ActorGroup":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()


def actor_group() -> Iterator[ActorGroup]:
    """Body of a fixture: ``actors = pytest.fixture(actor_group)``."""
    group = ActorGroup()
    try:
        yield group
    finally:
        group.stop_all()


def stopped(ref: pykka.ActorRef, timeout: float = WAIT) -> bool:
    """Wait (bounded) for an actor that stops itself; True once it has."""
    return ref.actor_stopped.wait(timeout)


def new_future() -> pykka.ThreadingFuture:
    return pykka.ThreadingFuture()


def outcome(future: pykka.Future, timeout: float = WAIT) -> Any:
    """The value of ``future`` or the exception it holds (returned, not raised)."""
    try:
        return future.get(timeout=timeout)
    except pykka.Timeout:
        raise
    except Exception as error:  # noqa: BLE001 - the test inspects it
        return error


def is_done(future: pykka.Future) -> bool:
    """Whether ``future`` is already completed (without waiting)."""
    try:
        future.get(timeout=0)
    except pykka.Timeout:
        return False
    except Exception:  # noqa: BLE001 - completed with an exception
        return True
    return True


# --------------------------------------------------------------------------- domain builders


def order_request(**overrides: Any) -> OrderRequest:
    """A valid request: BUY 10 NSE:INFY LIMIT 1500 MIS with a stop-loss at 1490."""
    fields: dict[str, Any] = dict(
        symbol="INFY",
        exchange="NSE",
        side="BUY",
        quantity=10,
        order_type="LIMIT",
        price=Decimal("1500"),
        stop_loss=Decimal("1490"),
        product="MIS",
        strategy_id=STRATEGY,
        metadata={"strategy": "probe-tests"},
    )
    fields.update(overrides)
    return OrderRequest(**fields)


def tag_of(order_id: int, prefix: str = PREFIX) -> str:
    """The broker tag of order ``order_id`` in a database whose prefix is ``prefix``."""
    return broker_tag(prefix, order_id)


def new_order(
    order_id: int,
    request: OrderRequest | None = None,
    at: datetime = T0,
    validation_result: Any = None,
    prefix: str = PREFIX,
) -> Order:
    """The order the supervisor makes of ``request`` (not yet in any status), tagged."""
    return Order.from_request(
        order_id, request or order_request(), at, validation_result, tag=tag_of(order_id, prefix),
    )


def fill_for(
    order: Order, trade_id: str, quantity: int, price: Decimal | str, at: datetime,
    prior_filled_value: Decimal | None = None,
) -> Fill:
    """The Fill an order tracker would make of one trade of ``order`` (charges exact,
    then rounded to the precision the database stores, as the tracker does; the
    order's protective prices carried along)."""
    charges = charges_for_fill(
        order.exchange, order.symbol, order.product, order.side, quantity, Decimal(price),
        prior_filled_value=order.filled_value if prior_filled_value is None else prior_filled_value,
    ).rounded()
    return Fill(
        trade_id, order.order_id, order.broker_order_id, order.exchange, order.symbol,
        order.product, order.side, quantity, Decimal(price), at, charges,
        stop_loss=order.stop_loss, take_profit=order.take_profit,
    )


def broker_trade(
    order: Order, trade_id: str, quantity: int, price: Decimal | str, at: datetime,
    broker_order_id: str | None = None,
) -> BrokerTrade:
    """A BrokerTrade of ``order`` as the broker would report it (under the order's tag)."""
    return BrokerTrade(
        trade_id=trade_id,
        broker_order_id=broker_order_id or order.broker_order_id,
        tag=order.tag,
        exchange=order.exchange,
        symbol=order.symbol,
        product=order.product,
        side=order.side,
        quantity=quantity,
        price=Decimal(price),
        at=at,
    )
