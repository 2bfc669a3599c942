"""The BrokerGateway actor in front of a real PaperExchange; probes stand in for the
order trackers (and the supervisor), recording every outcome and broker event."""
from __future__ import annotations

from decimal import Decimal
from typing import Iterator

import pykka
import pytest

from actors.broker_gateway import BrokerGateway
from actors.brokers.paper import PaperExchange
from actors.messages import (
    BrokerAccepted,
    BrokerCancelAccepted,
    BrokerCancelRefused,
    BrokerModifyAccepted,
    BrokerModifyRefused,
    BrokerRefused,
    BrokerUnreachable,
    BrokerUnsure,
    CancelAtBroker,
    ChildFailed,
    FindByTag,
    Forget,
    FromBroker,
    LookupResult,
    ModifyAtBroker,
    PlaceAtBroker,
    Route,
)
from domain.broker import BrokerOrderRequest, BrokerOrderUpdate, BrokerTrade, BrokerUnavailable
from domain.enums import Exchange, OrderType, Product, Side, Validity
from domain.order import Modification
from tests.actor_probes import T0, ActorGroup, Probe, StepClock, actor_group, barrier, tag_of

D = Decimal
# Our orders 1, 2 and 9 and the tags the broker knows them by.
TAG1, TAG2, TAG9 = tag_of(1), tag_of(2), tag_of(9)


@pytest.fixture
def actors() -> Iterator[ActorGroup]:
    yield from actor_group()


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def exchange(clock) -> PaperExchange:
    paper = PaperExchange(clock, id_prefix="7")
    paper.set_price("INFY", D("1500"))
    return paper


def request(tag: str = TAG1, **overrides) -> BrokerOrderRequest:
    fields = dict(
        tag=tag, exchange=Exchange.NSE, symbol="INFY", side=Side.BUY, quantity=10,
        order_type=OrderType.MARKET, product=Product.MIS, validity=Validity.DAY,
    )
    fields.update(overrides)
    return BrokerOrderRequest(**fields)


def resting(tag: str, price: str = "1490") -> BrokerOrderRequest:
    """A LIMIT buy below the last price: it rests OPEN until the price comes down."""
    return request(tag, order_type=OrderType.LIMIT, price=D(price))


class Gateway:
    def __init__(self, actors: ActorGroup, broker) -> None:
        self.supervisor = actors.probe("supervisor")
        self.ref = actors.start(BrokerGateway, broker, supervisor=self.supervisor.ref)
        self.actors = actors

    def tracker(self, name: str = "tracker") -> Probe:
        return self.actors.probe(name)

    def place(self, tracker: Probe, order_id: int = 1, broker_request: BrokerOrderRequest | None = None):
        self.ref.tell(PlaceAtBroker(order_id, broker_request or request(tag_of(order_id)), tracker.ref))
        return tracker.wait_for((BrokerAccepted, BrokerRefused, BrokerUnreachable, BrokerUnsure))


@pytest.fixture
def gateway(actors, exchange) -> Gateway:
    return Gateway(actors, exchange)


# --------------------------------------------------------------------------- place


def test_place_is_accepted_and_then_the_fill_arrives_as_a_broker_trade(gateway, exchange):
    tracker = gateway.tracker()

    outcome = gateway.place(tracker)

    assert isinstance(outcome, BrokerAccepted)
    trade = tracker.wait_for(BrokerTrade)
    assert (trade.broker_order_id, trade.tag, trade.quantity, trade.price) == (outcome.broker_order_id, TAG1, 10, D("1500"))
    complete = tracker.wait_for(BrokerOrderUpdate, lambda u: u.status == "COMPLETE")
    assert complete.filled_quantity == 10
    # The outcome of the call comes first; the broker's events follow, in the order they happened.
    received = tracker.messages
    assert isinstance(received[0], BrokerAccepted)
    assert received.index(trade) < received.index(complete)
    assert exchange.trades(outcome.broker_order_id) == [trade]


def test_a_resting_order_fills_later_and_the_trade_is_routed_to_its_tracker(gateway, exchange):
    mine, other = gateway.tracker("mine"), gateway.tracker("other")
    accepted = gateway.place(mine, 1, resting(TAG1))
    gateway.place(other, 2, resting(TAG2, "1480"))
    assert isinstance(accepted, BrokerAccepted)
    mine.wait_for(BrokerOrderUpdate, lambda u: u.status == "OPEN")

    exchange.set_price("INFY", D("1490"))

    trade = mine.wait_for(BrokerTrade)
    assert (trade.broker_order_id, trade.price) == (accepted.broker_order_id, D("1490"))
    barrier(gateway.ref)
    other.settle()
    assert not other.of_type(BrokerTrade)


@pytest.mark.parametrize(
    "kind, outcome_type",
    [("rejected", BrokerRefused), ("unavailable", BrokerUnreachable), ("ambiguous", BrokerUnsure)],
)
def test_each_injected_place_fault_maps_to_its_outcome(gateway, exchange, kind, outcome_type):
    tracker = gateway.tracker()
    exchange.fail_next_place(kind, f"injected {kind}")

    outcome = gateway.place(tracker)

    assert type(outcome) is outcome_type
    assert outcome.reason == f"injected {kind}"
    if kind == "rejected":
        assert outcome.broker_order_id is None
        assert exchange.find_by_tag(TAG1) is None
    elif kind == "unavailable":
        assert exchange.find_by_tag(TAG1) is None
    else:
        # The order IS at the broker: its events still reach the tracker, by its tag.
        found = exchange.find_by_tag(TAG1)
        assert found is not None
        trade = tracker.wait_for(BrokerTrade)
        assert trade.broker_order_id == found.broker_order_id
    # One failed place does not stop the gateway: the next order goes through.
    assert isinstance(gateway.place(gateway.tracker("next"), 2), BrokerAccepted)


def test_an_exchange_rejection_is_refused_with_the_broker_order_id(gateway, exchange):
    tracker = gateway.tracker()

    outcome = gateway.place(tracker, 1, request(order_type=OrderType.LIMIT, price=D("2000")))

    assert isinstance(outcome, BrokerRefused)
    assert "circuit band" in outcome.reason
    assert outcome.broker_order_id == exchange.find_by_tag(TAG1).broker_order_id


class ExplodingExchange(PaperExchange):
    """A broker whose place fails in a way the Broker interface does not describe."""

    def place(self, request: BrokerOrderRequest) -> str:
        raise RuntimeError("connection reset while reading the response")


def test_an_unexpected_exception_from_place_is_reported_unsure_never_refused(actors, clock):
    broker = ExplodingExchange(clock, id_prefix="8")
    broker.set_price("INFY", D("1500"))
    gateway = Gateway(actors, broker)
    tracker = gateway.tracker()

    outcome = gateway.place(tracker)

    assert isinstance(outcome, BrokerUnsure)
    assert "RuntimeError" in outcome.reason
    assert "connection reset" in outcome.reason
    barrier(gateway.ref)
    assert gateway.ref.is_alive()
    assert not gateway.supervisor.settle()


# --------------------------------------------------------------------------- cancel and modify


def test_cancel_of_a_completed_order_is_refused(gateway, exchange):
    tracker = gateway.tracker()
    accepted = gateway.place(tracker)
    tracker.wait_for(BrokerOrderUpdate, lambda u: u.status == "COMPLETE")

    gateway.ref.tell(CancelAtBroker(1, accepted.broker_order_id, tracker.ref))

    refused = tracker.wait_for(BrokerCancelRefused)
    assert "COMPLETE" in refused.reason


def test_cancel_of_a_working_order_is_accepted_and_confirmed_by_an_update(gateway, exchange):
    tracker = gateway.tracker()
    accepted = gateway.place(tracker, 1, resting(TAG1))

    gateway.ref.tell(CancelAtBroker(1, accepted.broker_order_id, tracker.ref))

    tracker.wait_for(BrokerCancelAccepted)
    cancelled = tracker.wait_for(BrokerOrderUpdate, lambda u: u.status == "CANCELLED")
    assert cancelled.broker_order_id == accepted.broker_order_id


def test_a_cancel_refused_by_an_injected_fault_is_reported(gateway, exchange):
    tracker = gateway.tracker()
    accepted = gateway.place(tracker, 1, resting(TAG1))
    exchange.fail_next_cancel("exchange busy")

    gateway.ref.tell(CancelAtBroker(1, accepted.broker_order_id, tracker.ref))

    assert tracker.wait_for(BrokerCancelRefused).reason == "exchange busy"


def test_modify_of_a_working_order_is_accepted_and_a_crossing_price_fills_it(gateway, exchange):
    tracker = gateway.tracker()
    accepted = gateway.place(tracker, 1, resting(TAG1))
    change = Modification(price=D("1500"))

    gateway.ref.tell(ModifyAtBroker(1, accepted.broker_order_id, change, tracker.ref))

    assert tracker.wait_for(BrokerModifyAccepted).change == change
    assert tracker.wait_for(BrokerTrade).price == D("1500")


def test_modify_of_a_completed_order_is_refused(gateway, exchange):
    tracker = gateway.tracker()
    accepted = gateway.place(tracker)
    tracker.wait_for(BrokerOrderUpdate, lambda u: u.status == "COMPLETE")

    gateway.ref.tell(ModifyAtBroker(1, accepted.broker_order_id, Modification(quantity=20), tracker.ref))

    assert "cannot be modified" in tracker.wait_for(BrokerModifyRefused).reason


# --------------------------------------------------------------------------- routing


def test_forget_stops_routing_the_orders_events(gateway, exchange):
    forgotten, kept = gateway.tracker("forgotten"), gateway.tracker("kept")
    gateway.place(forgotten, 1, resting(TAG1))
    gateway.place(kept, 2, resting(TAG2))

    gateway.ref.tell(Forget(1))
    exchange.set_price("INFY", D("1490"))  # both orders fill, order 1 first

    kept.wait_for(BrokerTrade)
    barrier(gateway.ref)
    forgotten.settle()
    assert not forgotten.of_type(BrokerTrade)
    assert all(u.status == "OPEN" for u in forgotten.of_type(BrokerOrderUpdate))
    assert len(exchange.trades()) == 2


def test_route_delivers_a_recovered_orders_events_by_broker_id(gateway, exchange):
    tracker = gateway.tracker()
    exchange.adopt(resting(TAG9), "700000000000000099", 0, None)

    gateway.ref.tell(Route(9, TAG9, "700000000000000099", tracker.ref))
    barrier(gateway.ref)
    exchange.set_price("INFY", D("1490"))

    assert tracker.wait_for(BrokerTrade).broker_order_id == "700000000000000099"


def test_find_by_tag_answers_the_brokers_order_and_its_trades(gateway, exchange):
    placer = gateway.tracker("placer")
    exchange.set_liquidity("INFY", 4)
    accepted = gateway.place(placer, 1)
    exchange.set_price("INFY", D("1501"))
    exchange.set_price("INFY", D("1502"))
    placer.wait_for(BrokerOrderUpdate, lambda u: u.status == "COMPLETE")
    looker = gateway.tracker("looker")

    gateway.ref.tell(FindByTag(1, TAG1, looker.ref))

    result = looker.wait_for(LookupResult)
    assert result.found.broker_order_id == accepted.broker_order_id
    assert (result.found.status, result.found.filled_quantity) == ("COMPLETE", 10)
    assert [t.quantity for t in result.trades] == [4, 4, 2]
    assert list(result.trades) == exchange.trades(accepted.broker_order_id)


def test_find_by_tag_of_an_order_the_broker_never_saw_answers_none(gateway):
    tracker = gateway.tracker()

    gateway.ref.tell(FindByTag(404, tag_of(404), tracker.ref))

    result = tracker.wait_for(LookupResult)
    assert (result.found, result.trades) == (None, ())
    assert result.authoritative  # the paper book is in this process: a miss is final


def test_find_by_tag_routes_the_orders_later_events_to_the_tracker_that_looked(gateway, exchange):
    """After an unsure place (and, say, a restarted tracker) the order is looked up;
    from then on its events reach the tracker that looked."""
    placer = gateway.tracker("placer")
    exchange.fail_next_place("ambiguous", "timeout")
    gateway.place(placer, 1, resting(TAG1))
    gateway.ref.tell(Forget(1))
    looker = gateway.tracker("looker")

    gateway.ref.tell(FindByTag(1, TAG1, looker.ref))
    found = looker.wait_for(LookupResult).found
    exchange.set_price("INFY", D("1490"))

    assert looker.wait_for(BrokerTrade).broker_order_id == found.broker_order_id


class FlakyLookupExchange(PaperExchange):
    """A broker whose order book cannot be read right now (the network blipped)."""

    def find_by_tag(self, tag: str):
        raise BrokerUnavailable("read timed out")


def test_a_lookup_that_meets_a_broker_error_does_not_kill_the_gateway(actors, clock):
    """A look-up follows an unsure place, i.e. exactly when the broker is flaky. Its
    failure concerns one order; it must not take the gateway down (which halts all
    trading through the supervisor's ChildFailed)."""
    broker = FlakyLookupExchange(clock, id_prefix="9")
    broker.set_price("INFY", D("1500"))
    gateway = Gateway(actors, broker)
    tracker = gateway.tracker()

    gateway.ref.tell(FindByTag(1, TAG1, tracker.ref))

    try:
        barrier(gateway.ref)
        died = False
    except pykka.ActorDeadError:
        died = True
    failures = gateway.supervisor.settle()
    assert not died and gateway.ref.is_alive(), f"the gateway died on a failed look-up; the supervisor got {failures}"
    assert not [m for m in failures if isinstance(m, ChildFailed)]
    assert isinstance(gateway.place(gateway.tracker("next"), 2), BrokerAccepted)


def update(tag: str | None, broker_order_id: str, status: str = "OPEN") -> BrokerOrderUpdate:
    """An order update as the broker pushes it (through the gateway's event sink)."""
    return BrokerOrderUpdate(
        broker_order_id=broker_order_id, tag=tag, status=status, quantity=10, filled_quantity=0,
        at=T0, price=D("1490"),
    )


def trade(tag: str | None, broker_order_id: str, trade_id: str = "T1") -> BrokerTrade:
    return BrokerTrade(
        trade_id=trade_id, broker_order_id=broker_order_id, tag=tag, exchange=Exchange.NSE,
        symbol="INFY", product=Product.MIS, side=Side.BUY, quantity=10, price=D("1490"), at=T0,
    )


def test_a_broker_event_is_routed_by_its_tag_to_its_orders_tracker(gateway):
    """The tag names our order even before the broker's id for it is known (an event
    that overtakes the place's answer, or an order routed while still unsettled)."""
    first, second = gateway.tracker("first"), gateway.tracker("second")
    gateway.ref.tell(Route(1, TAG1, None, first.ref))
    gateway.ref.tell(Route(2, TAG2, None, second.ref))
    second_update = update(TAG2, "700000000000000002")
    first_trade = trade(TAG1, "700000000000000001")

    gateway.ref.tell(FromBroker(second_update))
    gateway.ref.tell(FromBroker(first_trade))

    second.wait_for(BrokerOrderUpdate)
    first.wait_for(BrokerTrade)
    barrier(gateway.ref)
    assert first.settle() == [first_trade]
    assert second.settle() == [second_update]


def test_an_event_without_a_tag_is_routed_by_the_brokers_order_id(gateway):
    tracker = gateway.tracker()
    gateway.ref.tell(Route(9, TAG9, "700000000000000099", tracker.ref))

    gateway.ref.tell(FromBroker(update(None, "700000000000000099", "CANCELLED")))

    assert tracker.wait_for(BrokerOrderUpdate).status == "CANCELLED"


@pytest.mark.parametrize(
    "tag",
    [
        tag_of(3),  # our prefix, an order the gateway was never told of
        tag_of(1, "OTHER"),  # another database's order 1: the whole tag is ours or not
        "MANUAL",  # placed by hand on the broker's site
        None,
    ],
)
def test_an_event_whose_tag_and_broker_id_the_gateway_does_not_know_is_dropped(gateway, tag):
    ours = gateway.tracker("ours")
    gateway.ref.tell(Route(1, TAG1, "700000000000000001", ours.ref))

    gateway.ref.tell(FromBroker(update(tag, "700000000000000777", "COMPLETE")))
    gateway.ref.tell(FromBroker(trade(tag, "700000000000000777")))

    barrier(gateway.ref)
    assert ours.settle() == [], "another order's events reached our tracker"
    assert gateway.ref.is_alive()
    assert not gateway.supervisor.settle()
    # The routes it does know still work.
    gateway.ref.tell(FromBroker(update(TAG1, "700000000000000001")))
    assert ours.wait_for(BrokerOrderUpdate).tag == TAG1
