"""One OrderTracker driven by message, from Submit to its end.

Real collaborators where their state matters: a Journal on a SQLite file, a
PositionKeeper and a Validator. Probes stand in for the broker gateway (which the test
plays: it answers PlaceAtBroker with BrokerAccepted and so on) and the supervisor.
"""
from __future__ import annotations

import time
from decimal import Decimal
from typing import Any, Iterator

import pykka
import pytest
from sqlalchemy import text

from actors.journal import Journal
from actors.messages import (
    BrokerAccepted,
    BrokerCancelAccepted,
    BrokerCancelRefused,
    BrokerModifyAccepted,
    BrokerModifyRefused,
    BrokerRefused,
    BrokerUnreachable,
    BrokerUnsure,
    Cancel,
    CancelAtBroker,
    CheckModification,
    CheckOrder,
    ChildFailed,
    FindByTag,
    Forget,
    GetPositions,
    GetRiskState,
    LookupResult,
    Modify,
    ModifyAtBroker,
    OrderChanged,
    OrderFilled,
    PlaceAtBroker,
    Submit,
    TrackerFinished,
)
from actors.order_tracker import OrderTracker
from actors.position_keeper import PositionKeeper
from actors.validator import Validator
from domain.broker import BrokerOrderUpdate
from domain.charges import charges_for_fill
from domain.enums import Exchange, OrderStatus, Product, Side
from domain.errors import OrderNotCancellable, OrderNotModifiable, OrderRejected, OrderSubmissionFailed
from domain.order import PROGRESS, Modification, Order, check_modification
from domain.order_request import OrderRequest
from domain.order_tag import broker_tag, order_id_in_tag
from domain.results import OrderResult
from domain.risk import RiskLimits
from observability.metrics import OMSMetrics
from persistence.store import Store
from tests.actor_probes import (
    WAIT,
    ActorGroup,
    StepClock,
    actor_group,
    barrier,
    broker_trade,
    is_done,
    new_future,
    order_request,
    outcome,
    stopped,
)

D = Decimal
S = OrderStatus
CAPITAL = D("1000000")
INFY_MIS = (Exchange.NSE, "INFY", Product.MIS)


@pytest.fixture
def actors() -> Iterator[ActorGroup]:
    yield from actor_group()


class World:
    """Journal, validator and keeper (real), gateway and supervisor (probes).

    The gateway probe looks at the database at the moment each PlaceAtBroker arrives;
    the supervisor probe does the same for each OrderChanged and OrderFilled, so the
    tests can check that nothing is told before it is committed.
    """

    def __init__(self, actors: ActorGroup, url: str) -> None:
        self.actors = actors
        self.clock = StepClock()
        self.store = Store.open(url)  # creates the schema; closed by the fixture
        self.prefix = self.store.tag_prefix()  # the database's mark on its orders' tags
        self.seen_at_place: dict[int, tuple[Order | None, list]] = {}
        self.seen_at_change: list[tuple[Order, Order | None]] = []
        self.seen_at_fill: list[tuple[OrderFilled, Order | None, list, list]] = []
        self.journal = actors.start(Journal, url)
        self.validator = actors.start(Validator, RiskLimits(capital=CAPITAL, max_open_orders=10))
        self.keeper = actors.start(PositionKeeper, self.journal, self.validator, self.clock)
        self.gateway = actors.probe("gateway", hook=self._look_at_place)
        self.supervisor = actors.probe("supervisor", hook=self._look_at_change)

    def _look_at_place(self, message: Any) -> None:
        if isinstance(message, PlaceAtBroker):
            self.seen_at_place[message.order_id] = (
                self.store.load_order(message.order_id),
                self.store.load_events(message.order_id),
            )

    def _look_at_change(self, message: Any) -> None:
        if isinstance(message, OrderChanged):
            self.seen_at_change.append((message.order, self.store.load_order(message.order.order_id)))
        elif isinstance(message, OrderFilled):
            order_id = message.order.order_id
            self.seen_at_fill.append((
                message, self.store.load_order(order_id), self.store.load_fills(order_id), self.store.load_positions(),
            ))

    def tag(self, order_id: int = 1) -> str:
        return broker_tag(self.prefix, order_id)

    # --- an order -------------------------------------------------------------------

    def tracker(self, order_id: int = 1, request: OrderRequest | None = None, metrics: OMSMetrics | None = None) -> pykka.ActorRef:
        """Check the order with the validator (which reserves, as the supervisor's
        check does) and start its tracker."""
        request = request or order_request()
        result = self.validator.ask(CheckOrder(order_id, request), timeout=WAIT)
        assert result.passed, result.failed
        order = Order.from_request(order_id, request, self.clock(), result.as_dict(), tag=self.tag(order_id))
        return self.actors.start(
            OrderTracker, order,
            journal=self.journal, gateway=self.gateway.ref, keeper=self.keeper,
            validator=self.validator, supervisor=self.supervisor.ref, clock=self.clock, metrics=metrics,
        )

    def submit(self, tracker: pykka.ActorRef, order_id: int = 1) -> pykka.Future:
        reply = new_future()
        tracker.tell(Submit(reply))
        self.gateway.wait_for(PlaceAtBroker, lambda m: m.order_id == order_id)
        return reply

    def open(self, order_id: int = 1, request: OrderRequest | None = None, broker_order_id: str = "B1"):
        """A tracker whose order the broker acknowledged (as broker_order_id)."""
        tracker = self.tracker(order_id, request)
        reply = self.submit(tracker, order_id)
        tracker.tell(BrokerAccepted(broker_order_id))
        assert isinstance(reply.get(timeout=WAIT), OrderResult)
        return tracker

    def trade(self, tracker, trade_id: str, quantity: int, price: str = "1500", order_id: int = 1, broker_order_id: str = "B1"):
        order = self.store.load_order(order_id)
        tracker.tell(broker_trade(order, trade_id, quantity, D(price), self.clock(), broker_order_id))

    def update(self, tracker, status: str, filled: int = 0, *, order_id: int = 1, broker_order_id: str = "B1", quantity: int = 10, message: str | None = None):
        tracker.tell(self.broker_update(status, filled, order_id=order_id, broker_order_id=broker_order_id, quantity=quantity, message=message))

    def broker_update(self, status: str, filled: int = 0, *, order_id: int = 1, broker_order_id: str = "B1", quantity: int = 10, message: str | None = None) -> BrokerOrderUpdate:
        return BrokerOrderUpdate(
            broker_order_id=broker_order_id, tag=self.tag(order_id), status=status, quantity=quantity,
            filled_quantity=filled, at=self.clock(), average_price=D("1500") if filled else None,
            price=D("1500"), message=message,
        )

    # --- looking ------------------------------------------------------------------------

    def order(self, order_id: int = 1) -> Order | None:
        return self.store.load_order(order_id)

    def transitions(self, order_id: int = 1) -> list[tuple[S | None, S]]:
        return [(e.from_status, e.to_status) for e in self.store.load_events(order_id)]

    def risk(self):
        return self.validator.ask(GetRiskState(), timeout=WAIT)

    def positions(self) -> dict:
        return {p.key: p for p in self.keeper.ask(GetPositions(), timeout=WAIT)}

    def changed(self, where=None) -> Order:
        return self.supervisor.wait_for(OrderChanged, where).order

    def finished(self, tracker, order_id: int = 1) -> None:
        """The tracker said it finished, and then stopped itself."""
        self.supervisor.wait_for(TrackerFinished, lambda m: m.order_id == order_id)
        assert stopped(tracker), "the tracker did not stop itself"
        assert not tracker.is_alive()

    def nothing_told_before_commit(self) -> None:
        for told, stored in self.seen_at_change:
            assert stored is not None
            assert PROGRESS[stored.status] >= PROGRESS[told.status], (told, stored)
            assert stored.filled_quantity >= told.filled_quantity, (told, stored)


@pytest.fixture
def world(actors, sqlite_url) -> Iterator[World]:
    w = World(actors, sqlite_url)
    try:
        yield w
    finally:
        actors.stop_all()
        w.store.close()


def filled_changed(world: World, quantity: int) -> Order:
    return world.changed(lambda m: m.order.filled_quantity == quantity)


# --------------------------------------------------------------------------- submit


def test_submit_records_pending_then_submitted_before_the_gateway_hears_of_it(world):
    tracker = world.tracker()

    world.submit(tracker)

    stored, events = world.seen_at_place[1]
    assert stored is not None and stored.status is S.SUBMITTED
    assert [(e.from_status, e.to_status) for e in events] == [(None, S.PENDING), (S.PENDING, S.SUBMITTED)]
    assert events[0].payload["validation_result"]["passed"] is True
    assert stored.submitted_at == events[1].at
    place = world.gateway.of_type(PlaceAtBroker)[0]
    assert place.tracker == tracker
    # Exactly-once: our id travels in the broker's tag, behind this database's prefix.
    assert place.request.tag == world.tag(1) == stored.tag
    assert order_id_in_tag(world.prefix, place.request.tag) == 1
    assert (place.request.symbol, place.request.quantity, place.request.price) == ("INFY", 10, D("1500"))
    assert world.changed().status is S.SUBMITTED
    world.nothing_told_before_commit()


def test_broker_accepted_opens_the_order_with_its_broker_id_and_answers_the_reply(world):
    tracker = world.tracker()
    reply = world.submit(tracker)

    tracker.tell(BrokerAccepted("B1"))

    result = reply.get(timeout=WAIT)
    assert result == OrderResult(1, "B1", S.OPEN, result.message)
    order = world.order()
    assert (order.status, order.broker_order_id) == (S.OPEN, "B1")
    assert world.transitions()[-1] == (S.SUBMITTED, S.OPEN)
    assert world.changed(lambda m: m.order.status is S.OPEN).broker_order_id == "B1"
    assert tracker.is_alive()
    world.nothing_told_before_commit()


def test_a_duplicate_ack_changes_nothing(world):
    tracker = world.open()

    tracker.tell(BrokerAccepted("B1"))
    barrier(tracker)

    assert world.transitions() == [(None, S.PENDING), (S.PENDING, S.SUBMITTED), (S.SUBMITTED, S.OPEN)]


# --------------------------------------------------------------------------- fills


def test_a_trade_is_recorded_with_charges_moves_the_position_and_is_published(world):
    tracker = world.open()

    world.trade(tracker, "T1", 4, "1500")

    told = filled_changed(world, 4)
    assert (told.status, told.average_price) == (S.OPEN, D("1500"))
    # When the supervisor hears of the fill, the trade row and the position are in.
    fills = world.store.load_fills(1)
    assert [(f.trade_id, f.quantity, f.price, f.broker_order_id) for f in fills] == [("T1", 4, D("1500"), "B1")]
    expected = charges_for_fill(Exchange.NSE, "INFY", Product.MIS, Side.BUY, 4, D("1500")).rounded()
    assert fills[0].charges == expected
    assert expected.total > 0
    assert world.store.load_unapplied_fills() == []
    position = world.positions()[INFY_MIS]
    assert (position.quantity, position.average_price) == (4, D("1500"))
    assert position.charges == expected.total
    assert world.transitions()[-1] == (S.OPEN, S.OPEN)
    # The validator heard: 6 of 10 still reserved, and the position's margin is held.
    barrier(tracker)  # it tells the validator just after the supervisor
    risk = world.risk()
    assert risk.reserved_margin == D("3000") * 6 / 10
    assert risk.position_margin == D("1200")
    assert tracker.is_alive()
    world.nothing_told_before_commit()


def test_the_same_trade_twice_counts_once(world):
    tracker = world.open()
    world.trade(tracker, "T1", 4)
    filled_changed(world, 4)

    world.trade(tracker, "T1", 4)  # the broker (or a reconnect) repeats it
    world.trade(tracker, "T2", 3)
    filled_changed(world, 7)

    assert [f.trade_id for f in world.store.load_fills(1)] == ["T1", "T2"]
    assert world.order().filled_quantity == 7
    assert world.positions()[INFY_MIS].quantity == 7
    assert [c.order.filled_quantity for c in world.supervisor.of_type(OrderChanged) if c.order.filled_quantity] == [4, 7]


def test_partial_fills_then_filled_and_the_tracker_stops_itself(world):
    tracker = world.open()

    world.trade(tracker, "T1", 4, "1500")
    world.trade(tracker, "T2", 6, "1499")

    done = filled_changed(world, 10)
    assert done.status is S.FILLED
    assert done.average_price == D("1499.4")
    world.finished(tracker)
    assert world.transitions()[-2:] == [(S.OPEN, S.OPEN), (S.OPEN, S.FILLED)]
    order = world.order()
    assert (order.status, order.filled_quantity, order.average_price) == (S.FILLED, 10, D("1499.4"))
    assert order.filled_at == world.store.load_events(1)[-1].at  # when the last fill made it FILLED
    assert world.positions()[INFY_MIS].quantity == 10
    # The tracker told the gateway to forget it and the validator that it closed.
    world.gateway.wait_for(Forget, lambda m: m.order_id == 1)
    risk = world.risk()
    assert (risk.open_orders, risk.reserved_margin) == (0, D(0))
    assert risk.position_margin == D("10") * D("1499.4") / 5
    world.nothing_told_before_commit()


def test_a_complete_status_alone_does_not_fill_the_order(world):
    """FILLED is settled by the trades; COMPLETE before them only says more are coming."""
    tracker = world.open()

    world.update(tracker, "COMPLETE", 10)
    barrier(tracker)

    assert world.order().status is S.OPEN
    assert tracker.is_alive()
    world.trade(tracker, "T1", 10)
    assert filled_changed(world, 10).status is S.FILLED
    world.finished(tracker)


def test_each_fill_is_told_to_the_supervisor_as_order_filled_once_committed_and_applied(world):
    tracker = world.open()

    world.trade(tracker, "T1", 4, "1500")
    world.trade(tracker, "T1", 4, "1500")  # repeated by the broker: not a second fill
    world.trade(tracker, "T2", 6, "1499")
    world.finished(tracker)

    told = world.supervisor.of_type(OrderFilled)
    assert [m.fill for m in told] == world.store.load_fills(1), "one OrderFilled per fill, as recorded"
    assert [(m.fill.trade_id, m.order.filled_quantity, m.order.status) for m in told] == [("T1", 4, S.OPEN), ("T2", 10, S.FILLED)]
    assert told[-1].order == world.order()
    assert all((m.fill.order_id, m.fill.broker_order_id, m.fill.stop_loss) == (1, "B1", D("1490")) for m in told)
    # After the OrderChanged that shows the fill, before the tracker says it finished.
    messages = world.supervisor.messages
    for message in told:
        shown = next(i for i, m in enumerate(messages) if isinstance(m, OrderChanged) and m.order == message.order)
        assert shown < messages.index(message)
    assert messages.index(told[-1]) < next(i for i, m in enumerate(messages) if isinstance(m, TrackerFinished))
    # When each arrived, its trade, the order and the position were already committed.
    assert len(world.seen_at_fill) == 2
    for message, stored, fills, positions in world.seen_at_fill:
        assert message.fill in fills
        assert stored.filled_quantity >= message.order.filled_quantity
        assert [p.quantity >= message.order.filled_quantity for p in positions] == [True]
    world.nothing_told_before_commit()


# --------------------------------------------------------------------------- the place outcome


def test_broker_refused_rejects_the_order_and_the_reply_raises_order_rejected(world):
    tracker = world.tracker()
    reply = world.submit(tracker)

    tracker.tell(BrokerRefused("RMS: margin exceeds", "B7"))

    error = outcome(reply)
    assert isinstance(error, OrderRejected)
    assert error.failed_check == "broker"
    assert error.reason == "RMS: margin exceeds"
    assert error.order_id == 1
    order = world.order()
    assert (order.status, order.status_message, order.broker_order_id) == (S.REJECTED, "RMS: margin exceeds", "B7")
    assert world.transitions()[-1] == (S.SUBMITTED, S.REJECTED)
    world.finished(tracker)
    assert world.risk().open_orders == 0


def test_broker_unreachable_fails_the_order_and_the_reply_raises_submission_failed(world):
    tracker = world.tracker()
    reply = world.submit(tracker)

    tracker.tell(BrokerUnreachable("connection refused"))

    error = outcome(reply)
    assert isinstance(error, OrderSubmissionFailed)
    assert "connection refused" in str(error)
    order = world.order()
    assert order.status is S.FAILED
    assert "connection refused" in order.error_message
    assert world.transitions()[-1] == (S.SUBMITTED, S.FAILED)
    world.finished(tracker)
    assert world.risk().open_orders == 0


def test_broker_unsure_stays_submitted_answers_submitted_and_looks_the_order_up(world):
    tracker = world.tracker()
    reply = world.submit(tracker)

    tracker.tell(BrokerUnsure("read timeout"))

    result = reply.get(timeout=WAIT)
    assert isinstance(result, OrderResult)
    assert (result.status, result.broker_order_id) == (S.SUBMITTED, None)
    lookup = world.gateway.wait_for(FindByTag)
    assert (lookup.order_id, lookup.tag, lookup.tracker) == (1, world.tag(1), tracker)
    order = world.order()
    assert order.status is S.SUBMITTED
    assert "read timeout" in order.status_message
    events = world.store.load_events(1)
    assert (events[-1].from_status, events[-1].to_status) == (S.SUBMITTED, S.SUBMITTED)
    assert events[-1].payload == {"outcome_unknown": "read timeout"}
    assert tracker.is_alive()
    assert world.risk().open_orders == 1  # still in flight: still reserved


def test_a_non_authoritative_lookup_miss_leaves_the_order_submitted(world):
    """A real broker's reads lag: one miss proves nothing, so the order stays in flight."""
    tracker = world.tracker()
    world.submit(tracker)
    tracker.tell(BrokerUnsure("read timeout"))
    world.gateway.wait_for(FindByTag)

    tracker.tell(LookupResult(None, (), authoritative=False))
    barrier(tracker)

    assert world.order().status is S.SUBMITTED
    assert tracker.is_alive()
    assert world.risk().open_orders == 1


def test_lookup_finding_nothing_fails_the_order(world):
    tracker = world.tracker()
    world.submit(tracker)
    tracker.tell(BrokerUnsure("read timeout"))
    world.gateway.wait_for(FindByTag)

    tracker.tell(LookupResult(None, (), authoritative=True))

    world.finished(tracker)
    order = world.order()
    assert order.status is S.FAILED
    assert world.tag(1) in order.error_message
    assert order.broker_order_id is None
    assert world.transitions()[-1] == (S.SUBMITTED, S.FAILED)
    assert world.risk().open_orders == 0


def test_lookup_finding_the_order_adopts_its_broker_id_and_applies_its_trades(world):
    tracker = world.tracker()
    world.submit(tracker)
    tracker.tell(BrokerUnsure("read timeout"))
    world.gateway.wait_for(FindByTag)
    order = world.order()
    trades = (
        broker_trade(order, "T1", 4, D("1500"), world.clock(), "B9"),
        broker_trade(order, "T2", 6, D("1500"), world.clock(), "B9"),
    )

    tracker.tell(LookupResult(world.broker_update("COMPLETE", 10, broker_order_id="B9"), trades))

    world.finished(tracker)
    order = world.order()
    assert (order.status, order.broker_order_id, order.filled_quantity) == (S.FILLED, "B9", 10)
    assert [f.trade_id for f in world.store.load_fills(1)] == ["T1", "T2"]
    assert world.positions()[INFY_MIS].quantity == 10
    adopted = [e for e in world.store.load_events(1) if e.payload.get("broker_order_id") == "B9"]
    assert [(e.from_status, e.to_status) for e in adopted] == [(S.SUBMITTED, S.OPEN)]


def test_fills_that_arrive_before_the_lookup_name_the_broker_order(world):
    """A polled broker delivers an unsure order's trades by our tag, maybe before the
    look-up answers: the order must not end FILLED without its broker id."""
    tracker = world.tracker()
    world.submit(tracker)
    tracker.tell(BrokerUnsure("read timeout"))
    world.gateway.wait_for(FindByTag)
    order = world.order()

    tracker.tell(broker_trade(order, "T1", 10, D("1500"), world.clock(), "B9"))
    tracker.tell(world.broker_update("COMPLETE", 10, broker_order_id="B9"))

    world.finished(tracker)
    order = world.order()
    assert (order.status, order.broker_order_id, order.filled_quantity) == (S.FILLED, "B9", 10)
    assert world.transitions()[-2:] == [(S.SUBMITTED, S.OPEN), (S.OPEN, S.FILLED)]


def test_lookup_finding_a_working_order_opens_it_and_keeps_tracking(world):
    tracker = world.tracker()
    world.submit(tracker)
    tracker.tell(BrokerUnsure("read timeout"))
    world.gateway.wait_for(FindByTag)
    order = world.order()

    tracker.tell(LookupResult(world.broker_update("OPEN", 4, broker_order_id="B9"), (broker_trade(order, "T1", 4, D("1500"), world.clock(), "B9"),)))

    assert filled_changed(world, 4).status is S.OPEN
    order = world.order()
    assert (order.status, order.broker_order_id, order.filled_quantity) == (S.OPEN, "B9", 4)
    assert tracker.is_alive()


def test_a_late_update_with_an_older_status_never_moves_the_order_back(world):
    tracker = world.open()
    world.trade(tracker, "T1", 4)
    filled_changed(world, 4)
    before = world.transitions()

    world.update(tracker, "OPEN PENDING", 0)  # SUBMITTED in our terms, and no fills
    world.update(tracker, "VALIDATION PENDING", 0)
    world.update(tracker, "OPEN", 2)
    barrier(tracker)

    order = world.order()
    assert (order.status, order.filled_quantity) == (S.OPEN, 4)
    assert world.transitions() == before
    # ... and it still finishes normally.
    world.trade(tracker, "T2", 6)
    assert filled_changed(world, 10).status is S.FILLED
    world.finished(tracker)
    statuses = [to for _, to in world.transitions()]
    assert all(PROGRESS[a] <= PROGRESS[b] for a, b in zip(statuses, statuses[1:])), statuses


def test_an_update_ahead_of_the_ack_opens_the_order_and_the_late_ack_changes_nothing(world):
    tracker = world.tracker()
    reply = world.submit(tracker)

    world.update(tracker, "OPEN", 0)
    world.changed(lambda m: m.order.status is S.OPEN)
    tracker.tell(BrokerAccepted("B1"))

    assert reply.get(timeout=WAIT).status is S.OPEN
    barrier(tracker)
    assert world.transitions() == [(None, S.PENDING), (S.PENDING, S.SUBMITTED), (S.SUBMITTED, S.OPEN)]


def test_a_broker_rejection_update_after_the_ack_rejects_the_order_and_the_tracker_finishes(world):
    tracker = world.open()

    world.update(tracker, "REJECTED", 0, message="circuit limit")

    world.finished(tracker)
    order = world.order()
    assert (order.status, order.status_message) == (S.REJECTED, "circuit limit")


def test_a_rejection_of_an_unacknowledged_order_never_shows_it_open(world):
    """A place that timed out (unsure) on an order the exchange then rejected: the
    broker's REJECTED update is the first word about it. SUBMITTED -> REJECTED is a
    transition of its own; the append-only audit trail (and every subscriber) must not
    be told the order was OPEN at the broker when it never was."""
    tracker = world.tracker()
    world.submit(tracker)
    tracker.tell(BrokerUnsure("read timeout"))
    world.gateway.wait_for(FindByTag)

    world.update(tracker, "REJECTED", 0, broker_order_id="B5", message="price outside the circuit band")

    world.finished(tracker)
    order = world.order()
    assert (order.status, order.broker_order_id) == (S.REJECTED, "B5")
    assert order.status_message == "price outside the circuit band"
    statuses = [to for _, to in world.transitions()]
    assert S.OPEN not in statuses, world.transitions()
    assert all(c.order.status is not S.OPEN for c in world.supervisor.of_type(OrderChanged))


# --------------------------------------------------------------------------- cancel


def test_cancel_is_answered_true_once_the_broker_accepts_it_and_the_cancelled_update_settles_the_order(world):
    tracker = world.open()
    reply = new_future()

    tracker.tell(Cancel(reply))

    cancel = world.gateway.wait_for(CancelAtBroker)
    assert (cancel.order_id, cancel.broker_order_id, cancel.tracker) == (1, "B1", tracker)
    assert not is_done(reply), "the broker has not taken the request yet"
    tracker.tell(BrokerCancelAccepted())

    assert reply.get(timeout=WAIT) is True
    # The broker only took the request: the order is not cancelled until it says so.
    barrier(tracker)
    assert world.order().status is S.OPEN
    assert not any(c.order.status is S.CANCELLED for c in world.supervisor.of_type(OrderChanged))
    assert tracker.is_alive()

    world.update(tracker, "CANCELLED", 0)

    assert world.changed(lambda m: m.order.status is S.CANCELLED).order_id == 1
    assert world.order().status is S.CANCELLED
    assert world.transitions()[-1] == (S.OPEN, S.CANCELLED)
    world.finished(tracker)
    assert world.risk().open_orders == 0
    world.nothing_told_before_commit()


def test_a_refused_cancel_fails_the_reply_and_the_order_keeps_working(world):
    tracker = world.open()
    reply = new_future()
    tracker.tell(Cancel(reply))
    world.gateway.wait_for(CancelAtBroker)

    tracker.tell(BrokerCancelRefused("order is already complete"))

    error = outcome(reply)
    assert isinstance(error, OrderNotCancellable)
    assert error.reason == "order is already complete"
    assert tracker.is_alive()
    world.trade(tracker, "T1", 10)
    assert filled_changed(world, 10).status is S.FILLED
    world.finished(tracker)


def test_cancel_before_the_ack_is_sent_after_the_ack(world):
    tracker = world.tracker()
    place_reply = world.submit(tracker)
    cancel_reply = new_future()

    tracker.tell(Cancel(cancel_reply))
    barrier(tracker)
    world.gateway.settle()
    assert not world.gateway.of_type(CancelAtBroker), "no broker id yet: nothing to cancel at the broker"
    assert not is_done(cancel_reply)

    tracker.tell(BrokerAccepted("B1"))

    cancel = world.gateway.wait_for(CancelAtBroker)
    assert cancel.broker_order_id == "B1"
    assert place_reply.get(timeout=WAIT).broker_order_id == "B1"
    # The CANCELLED update overtook the broker's answer to the cancel request: the
    # order is cancelled, which is all the caller asked for.
    world.update(tracker, "CANCELLED", 0)
    assert cancel_reply.get(timeout=WAIT) is True
    assert world.order().status is S.CANCELLED
    assert world.transitions()[-1] == (S.OPEN, S.CANCELLED)
    world.finished(tracker)


def test_cancel_with_fills_reported_before_their_trades_waits_for_the_trades(world):
    tracker = world.open()
    reply = new_future()
    tracker.tell(Cancel(reply))
    world.gateway.wait_for(CancelAtBroker)

    world.update(tracker, "CANCELLED", 4)  # 4 filled before the cancel took; trade not in yet
    world.changed(lambda m: m.order.status is S.CANCELLED)
    barrier(tracker)
    assert tracker.is_alive(), "a tracker must not stop while the broker reports fills it has not seen"
    assert not is_done(reply)

    world.trade(tracker, "T1", 4)

    assert reply.get(timeout=WAIT) is True
    world.finished(tracker)
    order = world.order()
    assert (order.status, order.filled_quantity) == (S.CANCELLED, 4)
    assert world.positions()[INFY_MIS].quantity == 4


def test_cancel_of_an_order_already_cancelled_is_refused(world):
    tracker = world.open()
    world.update(tracker, "CANCELLED", 4)  # the tracker waits for the trade of those 4
    world.changed(lambda m: m.order.status is S.CANCELLED)
    reply = new_future()

    tracker.tell(Cancel(reply))

    error = outcome(reply)
    assert isinstance(error, OrderNotCancellable)
    assert "CANCELLED" in error.reason
    world.gateway.settle()
    assert not world.gateway.of_type(CancelAtBroker)
    world.trade(tracker, "T1", 4)
    world.finished(tracker)


def test_cancel_fails_not_cancellable_when_the_order_fills_before_the_cancel_reaches_the_broker(world):
    tracker = world.open()
    reply = new_future()
    tracker.tell(Cancel(reply))
    world.gateway.wait_for(CancelAtBroker)

    world.trade(tracker, "T1", 10)  # the exchange filled it before it saw the cancel

    error = outcome(reply)
    assert isinstance(error, OrderNotCancellable)
    assert error.order_id == 1
    assert "FILLED" in error.reason
    order = world.order()
    assert (order.status, order.filled_quantity) == (S.FILLED, 10)
    world.finished(tracker)
    assert world.positions()[INFY_MIS].quantity == 10


def test_a_cancel_waiting_for_the_ack_fails_not_cancellable_when_the_broker_rejects_the_order(world):
    tracker = world.tracker()
    place_reply = world.submit(tracker)
    cancel_reply = new_future()
    tracker.tell(Cancel(cancel_reply))
    barrier(tracker)

    tracker.tell(BrokerRefused("RMS: margin exceeds"))

    assert isinstance(outcome(place_reply), OrderRejected)
    error = outcome(cancel_reply)
    assert isinstance(error, OrderNotCancellable)
    assert "REJECTED" in error.reason
    world.finished(tracker)
    world.gateway.settle()
    assert not world.gateway.of_type(CancelAtBroker), "nothing at the broker to cancel"


def test_every_cancel_waiting_on_one_request_is_answered_and_only_one_request_is_sent(world):
    tracker = world.open()
    first, second = new_future(), new_future()

    tracker.tell(Cancel(first))
    tracker.tell(Cancel(second))
    world.gateway.wait_for(CancelAtBroker)
    tracker.tell(BrokerCancelAccepted())

    assert (first.get(timeout=WAIT), second.get(timeout=WAIT)) == (True, True)
    world.gateway.settle()
    assert len(world.gateway.of_type(CancelAtBroker)) == 1


def test_a_fill_that_beats_an_accepted_cancel_at_the_exchange_settles_the_order_filled(world):
    """True means the broker took the request, not that the order is cancelled: the
    exchange may still fill it first, and then the order is FILLED."""
    tracker = world.open()
    reply = new_future()
    tracker.tell(Cancel(reply))
    world.gateway.wait_for(CancelAtBroker)
    tracker.tell(BrokerCancelAccepted())
    assert reply.get(timeout=WAIT) is True

    world.trade(tracker, "T1", 10)

    assert filled_changed(world, 10).status is S.FILLED
    world.finished(tracker)
    assert world.order().status is S.FILLED
    assert world.positions()[INFY_MIS].quantity == 10


# --------------------------------------------------------------------------- modify


def modification_checked(world: World, change: Modification, order_id: int = 1):
    """The supervisor's part: the validator checks the order as it would become."""
    order = world.order(order_id)
    result = world.validator.ask(CheckModification(order_id, check_modification(order, change), order.filled_quantity), timeout=WAIT)
    assert result.passed, result.failed
    return result


def test_modify_goes_to_the_broker_and_modify_accepted_commits_the_new_price(world):
    tracker = world.open()
    change = Modification(price=D("1495"))
    modification_checked(world, change)
    reply = new_future()

    tracker.tell(Modify(change, reply))

    sent = world.gateway.wait_for(ModifyAtBroker)
    assert (sent.order_id, sent.broker_order_id, sent.change, sent.tracker) == (1, "B1", change, tracker)
    assert not is_done(reply)
    tracker.tell(BrokerModifyAccepted(change))

    assert reply.get(timeout=WAIT) is True
    # Committed before the caller heard True.
    order = world.order()
    assert (order.price, order.modification_count, order.status) == (D("1495"), 1, S.OPEN)
    last = world.store.load_events(1)[-1]
    assert (last.from_status, last.to_status) == (S.OPEN, S.OPEN)
    assert last.payload == {"modified": {"price": "1495"}}
    assert world.changed(lambda m: m.order.price == D("1495")).modification_count == 1
    barrier(tracker)
    assert world.risk().reserved_margin == D("1495") * 10 / 5


def test_a_refused_modification_fails_the_reply_and_gives_the_old_reservation_back(world):
    """The supervisor's CheckModification replaced the reservation with the modified
    order's; when the broker refuses the change, the order keeps its old terms, so the
    validator must hold the old reservation again (the tracker tells it OrderWorking
    "to undo the tentative reservation")."""
    tracker = world.open()
    assert world.risk().reserved_margin == D("3000")
    change = Modification(quantity=20)
    modification_checked(world, change)
    assert world.risk().reserved_margin == D("6000")
    reply = new_future()
    tracker.tell(Modify(change, reply))
    world.gateway.wait_for(ModifyAtBroker)

    tracker.tell(BrokerModifyRefused("order is being executed"))

    error = outcome(reply)
    assert isinstance(error, OrderNotModifiable)
    assert error.reason == "order is being executed"
    assert world.order().quantity == 10
    assert tracker.is_alive()
    barrier(tracker)  # the reply is failed first, the validator told just after
    assert world.risk().reserved_margin == D("3000"), "still holding the refused modification's margin"


def test_modify_to_a_quantity_not_above_the_filled_quantity_is_not_modifiable(world):
    tracker = world.open()
    world.trade(tracker, "T1", 4)
    filled_changed(world, 4)
    reply = new_future()

    tracker.tell(Modify(Modification(quantity=4), reply))

    error = outcome(reply)
    assert isinstance(error, OrderNotModifiable)
    assert "must exceed the filled quantity 4" in error.reason
    world.gateway.settle()
    assert not world.gateway.of_type(ModifyAtBroker)
    assert world.order().quantity == 10


def test_modify_before_the_ack_is_not_modifiable(world):
    tracker = world.tracker()
    world.submit(tracker)
    reply = new_future()

    tracker.tell(Modify(Modification(price=D("1495")), reply))

    assert isinstance(outcome(reply), OrderNotModifiable)
    world.gateway.settle()
    assert not world.gateway.of_type(ModifyAtBroker)


def modification_sent(world: World, tracker, change: Modification, checked: bool = True):
    """``change`` asked of ``tracker`` (checked by the validator first, as the supervisor
    does, unless not ``checked``) and on its way to the broker: the caller's reply."""
    if checked:
        modification_checked(world, change)
    reply = new_future()
    tracker.tell(Modify(change, reply))
    world.gateway.wait_for(ModifyAtBroker)
    return reply


def refused_while_one_is_in_flight(world: World):
    """An open order's tracker with a price change of 1495 on its way to the broker, and
    a second change (1490) it refused for that: the tracker and the first one's reply."""
    tracker = world.open()
    first = modification_sent(world, tracker, Modification(price=D("1495")), checked=False)
    second = new_future()
    tracker.tell(Modify(Modification(price=D("1490")), second))
    assert "in flight" in outcome(second).reason
    return tracker, first


def test_a_second_modification_while_one_is_in_flight_is_refused(world):
    tracker, first = refused_while_one_is_in_flight(world)

    tracker.tell(BrokerModifyAccepted(Modification(price=D("1495"))))
    assert first.get(timeout=WAIT) is True
    assert world.order().price == D("1495")
    world.gateway.settle()
    assert [m.change.price for m in world.gateway.of_type(ModifyAtBroker)] == [D("1495")]


# --------------------------------------------------------------------------- modifications in the audit trail


def trail(world: World, order_id: int = 1) -> list[dict]:
    return [event.payload for event in world.store.load_events(order_id)]


def test_a_modification_the_broker_refused_is_answered_in_the_trail_and_a_restart_knows_it_was_not_made(world):
    tracker = world.open()
    reply = modification_sent(world, tracker, Modification(price=D("1495")))

    tracker.tell(BrokerModifyRefused("order is being executed"))

    assert isinstance(outcome(reply), OrderNotModifiable)
    barrier(tracker)
    assert trail(world)[-2:] == [{"modify_requested": {"price": "1495"}}, {"modify_refused": "order is being executed"}]
    assert world.store.unanswered_modifications_of_live_orders() == {}
    assert (world.order().status, world.order().price, world.order().modification_count) == (S.OPEN, D("1500.00"), 0)


def test_a_modification_whose_answer_was_lost_is_marked_unanswered_and_stays_unsure_for_a_restart(world):
    tracker = world.open()

    _unanswered_increase(world, tracker)

    barrier(tracker)
    assert trail(world)[-2:] == [{"modify_requested": {"quantity": "20"}}, {"modify_unanswered": "read timeout"}]
    assert world.store.unanswered_modifications_of_live_orders() == {1: {"quantity": "20"}}


def test_a_modification_refused_before_the_broker_is_in_the_trail_and_leaves_the_one_in_flight_unsure(world):
    tracker, _ = refused_while_one_is_in_flight(world)

    barrier(tracker)
    assert trail(world)[-1] == {"modify_not_sent": {
        "requested": {"price": "1490"}, "reason": "another modification is in flight", "check": "order_state",
    }}
    # The first is still on its way: a restart now must still treat it as possibly made.
    assert world.store.unanswered_modifications_of_live_orders() == {1: {"price": "1495"}}
    world.gateway.settle()
    assert [m.change.price for m in world.gateway.of_type(ModifyAtBroker)] == [D("1495")]


def test_a_modification_refused_before_the_ack_is_recorded_and_the_place_is_timed_at_the_brokers_answer(world):
    metrics = OMSMetrics()
    tracker = world.tracker(metrics=metrics)
    placed = new_future()
    tracker.tell(Submit(placed, time.perf_counter()))
    world.gateway.wait_for(PlaceAtBroker)
    refused = new_future()

    tracker.tell(Modify(Modification(price=D("1495")), refused))

    assert "not yet acknowledged" in outcome(refused).reason
    barrier(tracker)
    assert trail(world)[-1]["modify_not_sent"]["check"] == "order_state"
    assert (metrics.kpis().placements, metrics.kpis().latencies) == (0, 0)  # the broker has not answered
    tracker.tell(BrokerAccepted("B1"))
    placed.get(timeout=WAIT)
    assert (metrics.kpis().placements, metrics.kpis().latencies) == (1, 1)


# --------------------------------------------------------------------------- a broken journal


def test_submit_with_a_stopped_journal_fails_and_nothing_reaches_the_gateway(world):
    tracker = world.tracker()
    world.journal.stop(block=True, timeout=WAIT)
    reply = new_future()

    tracker.tell(Submit(reply))

    error = outcome(reply)
    assert isinstance(error, OrderSubmissionFailed)
    assert "not sent" in str(error)
    world.finished(tracker)
    world.gateway.settle()
    assert not world.gateway.of_type(PlaceAtBroker)
    assert world.risk().open_orders == 0
    assert world.store.load_order(1) is None


def test_an_order_that_could_not_be_recorded_is_told_failed_with_its_error_message(world):
    """Every FAILED order says why in error_message (domain.order.transition sets it).
    The order the supervisor is told of, and shows strategies, when the submission
    could not be recorded is FAILED as well, and must say why just the same."""
    tracker = world.tracker()
    world.journal.stop(block=True, timeout=WAIT)

    tracker.tell(Submit(new_future()))

    told = world.changed(lambda m: m.order.status is S.FAILED)
    assert "not sent" in told.status_message
    assert told.error_message is not None and "not sent" in told.error_message, told
    world.finished(tracker)


@pytest.mark.parametrize(
    "refusal",
    [
        # The database refuses the new order row itself.
        "CREATE TRIGGER refuse BEFORE INSERT ON orders BEGIN SELECT RAISE(ABORT, 'disk is full'); END",
        # The order row could go in, but the SUBMITTED event cannot be written.
        "CREATE TRIGGER refuse BEFORE INSERT ON order_events WHEN NEW.to_status = 'SUBMITTED' "
        "BEGIN SELECT RAISE(ABORT, 'disk is full'); END",
    ],
    ids=["pending-not-written", "submitted-not-written"],
)
def test_submit_when_the_database_refuses_the_write_fails_and_nothing_reaches_the_gateway(world, refusal):
    with world.store.engine.begin() as conn:
        conn.execute(text(refusal))
    tracker = world.tracker()
    reply = new_future()

    tracker.tell(Submit(reply))

    error = outcome(reply)
    assert isinstance(error, OrderSubmissionFailed)
    assert "disk is full" in str(error)
    world.finished(tracker)
    world.gateway.settle()
    assert not world.gateway.of_type(PlaceAtBroker)
    stored = world.store.load_order(1)
    # Never recorded as sent (a PENDING row left behind would be settled by tag at restart).
    assert stored is None or stored.status is S.PENDING
    assert world.risk().open_orders == 0
    # The journal itself carries on: the next order goes through once the disk recovers.
    with world.store.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER refuse"))
    second = world.tracker(2)
    world.submit(second, 2)
    assert world.order(2).status is S.SUBMITTED


# --------------------------------------------------------------------------- failure


def test_a_tracker_that_fails_tells_the_supervisor_which_message_it_was_handling(world):
    """DESIGN.md: "An unhandled exception in an actor is logged with the message that
    caused it, and the supervisor decides". Here the position cannot be written, so the
    tracker's BrokerTrade fails; the supervisor must learn it was that trade."""
    tracker = world.open()
    with world.store.engine.begin() as conn:
        conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON positions BEGIN SELECT RAISE(ABORT, 'disk is full'); END"))

    world.trade(tracker, "T1", 4)

    failed = world.supervisor.wait_for(ChildFailed)
    assert (failed.actor, failed.order_id) == ("OrderTracker", 1)
    assert "disk is full" in failed.error
    assert "BrokerTrade" in failed.message and "T1" in failed.message, failed


def _unanswered_increase(world: World, tracker, quantity: int = 20) -> None:
    """A modification of the 10 to ``quantity`` whose answer was lost (Kite may have done it)."""
    reply = modification_sent(world, tracker, Modification(quantity=quantity))
    tracker.tell(BrokerModifyRefused("read timeout", unsure=True))
    assert isinstance(outcome(reply), OrderNotModifiable)


def test_a_fill_that_would_complete_the_order_while_a_larger_quantity_is_unanswered_waits_for_the_broker(world):
    # Chaos seed 3756: 1 was raised to 3 without an answer, Kite did it, and its first
    # fill of 1 made the order FILLED 1/1 for good; the other 2 were then lost. Now the
    # fill waits for the broker's update, which here shows the larger quantity.
    tracker = world.open()
    _unanswered_increase(world, tracker)

    world.trade(tracker, "T1", 10)
    barrier(tracker)
    assert (world.order().status, world.order().filled_quantity) == (S.OPEN, 0)

    world.update(tracker, "OPEN", 10, quantity=20)
    order = filled_changed(world, 10)
    assert (order.status, order.quantity, order.filled_quantity, order.modification_count) == (S.OPEN, 20, 10, 1)
    world.trade(tracker, "T2", 10)
    assert filled_changed(world, 20).status is S.FILLED
    assert world.positions()[INFY_MIS].quantity == 20


def test_the_held_fill_completes_the_order_when_the_broker_shows_the_increase_was_not_made(world):
    tracker = world.open()
    _unanswered_increase(world, tracker)
    world.trade(tracker, "T1", 10)
    barrier(tracker)

    world.update(tracker, "COMPLETE", 10, quantity=10)  # newer than the fill: done at 10

    order = filled_changed(world, 10)
    assert (order.status, order.quantity, order.modification_count) == (S.FILLED, 10, 0)
    world.finished(tracker)


def test_an_unanswered_increase_outlives_a_restart(world):
    # The request is in the audit trail; a tracker started again from the database
    # (after a restart of the OMS) knows it may have been carried out, and holds the
    # completing fill for the broker's word as the first tracker would have.
    tracker = world.open()
    _unanswered_increase(world, tracker)
    tracker.stop()
    asked = world.store.unanswered_modifications_of_live_orders()
    assert asked == {1: {"quantity": "20"}}

    again = world.actors.start(
        OrderTracker, world.order(), journal=world.journal, gateway=world.gateway.ref, keeper=world.keeper,
        validator=world.validator, supervisor=world.supervisor.ref, clock=world.clock, unanswered_modification=asked[1],
    )
    world.trade(again, "T1", 10)
    barrier(again)
    assert (world.order().status, world.order().filled_quantity) == (S.OPEN, 0)
    world.update(again, "COMPLETE", 20, quantity=20)

    assert filled_changed(world, 10).quantity == 20  # the increase taken, then the held fill
    world.trade(again, "T2", 10)
    done = filled_changed(world, 20)
    assert (done.status, done.quantity, done.modification_count) == (S.FILLED, 20, 1)
    assert world.store.unanswered_modifications_of_live_orders() == {}


def test_a_stale_update_at_the_old_quantity_does_not_refute_the_unanswered_increase(world):
    # An update still showing 10 (late, or from before Kite took the change) says
    # nothing: only Kite's COMPLETE at the old quantity, newer than the held fills, does.
    tracker = world.open()
    _unanswered_increase(world, tracker)
    world.update(tracker, "OPEN", 0, quantity=10)
    world.trade(tracker, "T1", 10)
    barrier(tracker)
    assert world.order().filled_quantity == 0  # still held

    reply = new_future()
    tracker.tell(Modify(Modification(price=D("1495")), reply))  # not while its quantity is unsettled
    assert "quantity is unsettled" in str(outcome(reply))

    world.update(tracker, "OPEN", 10, quantity=20)
    order = filled_changed(world, 10)
    assert (order.status, order.quantity) == (S.OPEN, 20)


def test_kites_complete_before_its_trade_refutes_the_unanswered_increase(world):
    # Chaos seed 7983: Kite's status often comes before its trades. COMPLETE at the
    # old quantity, then the fill: the fill completes the order, nothing waits for ever.
    tracker = world.open()
    _unanswered_increase(world, tracker)
    world.update(tracker, "COMPLETE", 10, quantity=10)
    world.trade(tracker, "T1", 10)

    order = filled_changed(world, 10)
    assert (order.status, order.quantity) == (S.FILLED, 10)
    world.finished(tracker)
