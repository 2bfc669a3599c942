"""A COMMIT whose answer is lost: the connection to PostgreSQL dies after the COMMIT was
sent, so only the server knows whether the group was written. The Journal, driven by
message on a real PostgreSQL server, must neither write it twice (events doubled, a
fill answered "already there" so that its position never moves) nor report an intent
as unrecorded that the database holds. It asks the server what became of the
transaction (``pg_xact_status``) before it answers anyone.

The fault is injected at the driver's edge: the COMMIT goes to the server (or, for
"not written", the connection is closed instead of committing), and then the client
sees the connection gone, as when a proxy or the network cuts it at that moment."""
from __future__ import annotations

from decimal import Decimal
from typing import Iterator

import psycopg
import pykka
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.engine.default import DefaultDialect

from actors import journal as journal_module
from actors.journal import Journal
from actors.messages import Load, PlaceAtBroker, RecordFill, RecordNewOrder, RecordPositions, RecordTransition, Submit
from domain.enums import OrderStatus
from domain.errors import OMSUnavailable, OrderSubmissionFailed
from domain.order import apply_fill, created, transition
from domain.position import Position
from domain.position import apply_fill as position_after
from persistence.store import Store
from tests.actor_probes import ActorGroup, StepClock, actor_group, fill_for, new_future, new_order, order_request, outcome
from tests.fault_proxy import FaultProxy
from tests.oms_helpers import raw_connection
from tests.unit.test_order_tracker_actor import World

D = Decimal
S = OrderStatus
ANSWER = 15.0  # the journal retries with backoff after an outage: its first retry is well inside


class LostCommitAnswer:
    """Arm it, and the next COMMIT in this process is sent (``written``) or never sent,
    and then the connection is gone before the client hears the server."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed: bool | None = None
        self.fired = 0
        self.then = lambda: None  # what else happens at that moment (the database going away)
        original = DefaultDialect.do_commit

        def do_commit(dialect, dbapi_connection) -> None:
            written, self.armed = self.armed, None
            if written is None:
                original(dialect, dbapi_connection)
                return
            self.fired += 1
            if written:
                original(dialect, dbapi_connection)
            self.then()
            dbapi_connection.dbapi_connection.close()  # (the pool's proxy holds the driver's); not written: rolled back
            raise psycopg.OperationalError("server closed the connection unexpectedly")

        monkeypatch.setattr(DefaultDialect, "do_commit", do_commit)

    def next_commit(self, written: bool) -> None:
        self.armed = written


@pytest.fixture
def actors() -> Iterator[ActorGroup]:
    yield from actor_group()


@pytest.fixture
def store(fresh_postgres_url) -> Iterator[Store]:
    with Store.open(fresh_postgres_url) as store:
        yield store


@pytest.fixture
def journal(actors, fresh_postgres_url, store):
    journal = actors.start(Journal, fresh_postgres_url)
    journal.ask(Load("count_orders_by_status"), timeout=ANSWER)  # started: its own commits are behind it
    return journal


@pytest.fixture
def lost(monkeypatch) -> LostCommitAnswer:
    return LostCommitAnswer(monkeypatch)


def opened(journal, clock: StepClock):
    pending = created(new_order(1, order_request(), clock(), {"passed": True}))
    journal.ask(RecordNewOrder(*pending), timeout=ANSWER)
    submitted = transition(pending[0], S.SUBMITTED, clock())
    journal.ask(RecordTransition(*submitted), timeout=ANSWER)
    return submitted[0]


def statuses(store: Store) -> list[tuple]:
    return [(e.from_status, e.to_status) for e in store.load_events(1)]


@pytest.mark.parametrize("written", [True, False], ids=["written", "not-written"])
def test_broker_news_whose_commit_answer_was_lost_is_written_exactly_once(journal, store, lost, written):
    clock = StepClock()
    submitted = opened(journal, clock)
    acked = transition(submitted, S.OPEN, clock(), {"by": "ack"}, broker_order_id="B-1")
    fill = fill_for(acked[0], "T1", 4, D("1500"), clock())
    filled = apply_fill(acked[0], 4, D("1500"), fill.at, "T1")
    position = position_after(Position(*fill.position_key), fill.side, 4, fill.price, fill.charges.total, fill.at).after
    replies = [new_future() for _ in range(3)]

    lost.next_commit(written)
    journal.tell(RecordTransition(*acked, reply=replies[0]))
    assert outcome(replies[0], ANSWER) is None  # answered only once the server said
    journal.tell(RecordFill(fill, *filled, reply=replies[1]))
    assert outcome(replies[1], ANSWER) is True  # new: the fill is the tracker's to apply
    lost.next_commit(written)
    journal.tell(RecordPositions(((position, "T1"),), reply=replies[2]))
    assert outcome(replies[2], ANSWER) is None

    assert lost.fired == 2
    assert statuses(store) == [(None, S.PENDING), (S.PENDING, S.SUBMITTED), (S.SUBMITTED, S.OPEN), (S.OPEN, S.OPEN)]
    assert store.load_fills(1) == [fill]
    assert store.load_order(1) == filled[0]
    assert store.load_positions() == [position] and store.load_unapplied_fills() == []


def test_a_fill_whose_commit_answer_was_lost_is_answered_new_not_already_there(journal, store, lost):
    # Redone blindly, the group would find its trade stored and answer False, and the
    # order's tracker would never hand the fill to the position keeper.
    clock = StepClock()
    submitted = opened(journal, clock)
    acked = transition(submitted, S.OPEN, clock(), broker_order_id="B-1")
    journal.ask(RecordTransition(*acked), timeout=ANSWER)
    fill = fill_for(acked[0], "T1", 10, D("1500"), clock())
    reply = new_future()

    lost.next_commit(True)
    journal.tell(RecordFill(fill, *apply_fill(acked[0], 10, D("1500"), fill.at, "T1"), reply=reply))

    assert outcome(reply, ANSWER) is True
    assert [f.trade_id for f in store.load_unapplied_fills()] == ["T1"]
    assert len(store.load_events(1)) == 4


@pytest.mark.parametrize("written", [True, False], ids=["written", "not-written"])
def test_an_intent_whose_commit_answer_was_lost_is_answered_as_the_database_has_it(journal, store, lost, written):
    clock = StepClock()
    order, event = created(new_order(1, order_request(), clock(), {"passed": True}))
    reply = new_future()

    lost.next_commit(written)
    journal.tell(RecordNewOrder(order, event, reply=reply))

    answer = outcome(reply, ANSWER)
    if written:
        assert answer is None  # recorded: the order may go to the broker
        assert store.load_order(1) == order and len(store.load_events(1)) == 1
    else:
        assert isinstance(answer, OMSUnavailable)  # not recorded, so never sent
        assert store.load_order(1) is None


@pytest.mark.parametrize("written", [True, False], ids=["written", "not-written"])
def test_an_asked_write_whose_commit_answer_was_lost_is_settled_at_once(journal, store, lost, written):
    clock = StepClock()
    order, event = created(new_order(1, order_request(), clock(), {"passed": True}))

    lost.next_commit(written)
    if written:
        assert journal.ask(RecordNewOrder(order, event), timeout=ANSWER) is None
        assert store.load_order(1) == order
    else:
        with pytest.raises(OMSUnavailable):
            journal.ask(RecordNewOrder(order, event), timeout=ANSWER)
        assert store.load_order(1) is None
    assert len(store.load_events(1)) == int(written)
    other, other_event = created(new_order(2, order_request(), clock(), {"passed": True}))
    journal.ask(RecordNewOrder(other, other_event), timeout=ANSWER)  # and the journal writes on
    assert store.load_order(2) == other


def test_a_lost_answer_while_a_failed_group_is_redone_one_by_one_settles_each_write_alone(journal, store, lost):
    # A duplicate fill fails the group; its writes are redone one at a time, and the
    # answer of one of those commits is lost. The others are answered as written; the
    # unsure one once the server has said; nothing is written twice.
    clock = StepClock()
    first = opened(journal, clock)
    acked = transition(first, S.OPEN, clock(), broker_order_id="B-1")
    journal.ask(RecordTransition(*acked), timeout=ANSWER)
    fill = fill_for(acked[0], "T1", 4, D("1500"), clock())
    filled = apply_fill(acked[0], 4, D("1500"), fill.at, "T1")
    assert journal.ask(RecordFill(fill, *filled), timeout=ANSWER) is True
    second = created(new_order(2, order_request(), clock(), {"passed": True}))
    journal.ask(RecordNewOrder(*second), timeout=ANSWER)
    sent = transition(second[0], S.SUBMITTED, clock())
    journal.ask(RecordTransition(*sent), timeout=ANSWER)
    replies = [new_future(), new_future()]

    lost.next_commit(True)
    journal.tell(RecordFill(fill, *apply_fill(filled[0], 4, D("1500"), clock(), "T1"), reply=replies[0]))
    journal.tell(RecordTransition(*transition(sent[0], S.OPEN, clock(), broker_order_id="B-2"), reply=replies[1]))

    assert outcome(replies[0], ANSWER) is False  # the same trade: already there
    assert outcome(replies[1], ANSWER) is None
    assert lost.fired == 1
    assert store.load_fills(1) == [fill] and len(store.load_events(1)) == 4
    assert [(e.from_status, e.to_status) for e in store.load_events(2)] == [(None, S.PENDING), (S.PENDING, S.SUBMITTED), (S.SUBMITTED, S.OPEN)]


def test_a_transaction_whose_commit_never_arrived_is_ended_and_then_known_not_written(store, fresh_postgres_url):
    # A partition, not a closed socket: the server process still sits in the transaction,
    # 'in progress', and would for hours. Asking about it ends that process (and only
    # while it still holds that transaction), so the answer is definite: not written.
    lingering, bystander = raw_connection(fresh_postgres_url), raw_connection(fresh_postgres_url)
    try:
        xid, pid = lingering.execute("SELECT pg_current_xact_id()::text, pg_backend_pid()").fetchone()
        lingering.execute("INSERT INTO oms_database (key, value) VALUES ('lingering', 'x')")
        other_pid = bystander.execute("SELECT pg_backend_pid()").fetchone()[0]

        # The id of the transaction with another process's pid (as if the pid were reused): left alone.
        assert store.commit_status(f"{xid}/{other_pid}") == "in progress"
        assert bystander.execute("SELECT 1").fetchone() == (1,)

        assert store.commit_status(f"{xid}/{pid}") == "aborted"
        with pytest.raises(psycopg.OperationalError):
            lingering.execute("SELECT 1")
    finally:
        lingering.close()
        bystander.close()
    assert store.commit_status("999999999999/1") is None  # an id the server never gave (a fail-over): cannot say


@pytest.fixture
def proxied(fresh_postgres_url) -> Iterator[tuple[FaultProxy, str]]:
    """The test database through a proxy the test can cut, and its URL through it."""
    url = make_url(fresh_postgres_url)
    proxy = FaultProxy(url.host or "127.0.0.1", url.port or 5432)
    try:
        yield proxy, url.set(port=proxy.port).render_as_string(hide_password=False)
    finally:
        proxy.close()


def test_a_lost_commit_answer_in_an_outage_is_settled_when_the_database_is_back(actors, proxied, store, lost):
    # The database cannot be asked at once: the write waits, the news told after it waits
    # behind it, and both are answered, in order and once, when it answers again.
    proxy, url = proxied
    journal = actors.start(Journal, url)
    clock = StepClock()
    submitted = opened(journal, clock)
    acked = transition(submitted, S.OPEN, clock(), broker_order_id="B-1")
    fill = fill_for(acked[0], "T1", 4, D("1500"), clock())
    first, then = new_future(), new_future()

    lost.then = proxy.cut
    lost.next_commit(True)
    journal.tell(RecordTransition(*acked, reply=first))
    journal.tell(RecordFill(fill, *apply_fill(acked[0], 4, D("1500"), fill.at, "T1"), reply=then))
    with pytest.raises(pykka.Timeout):
        first.get(timeout=1.0)  # not answered while the database cannot say
    proxy.restore()

    assert outcome(first, ANSWER) is None
    assert outcome(then, ANSWER) is True
    assert statuses(store) == [(None, S.PENDING), (S.PENDING, S.SUBMITTED), (S.SUBMITTED, S.OPEN), (S.OPEN, S.OPEN)]
    assert store.load_fills(1) == [fill]


def test_a_new_order_confirmed_only_after_the_outage_is_not_sent(actors, proxied, fresh_postgres_url, lost, monkeypatch):
    # Its PENDING and SUBMITTED were written, but the database could say so only once it
    # was back: too late for an order a strategy placed seconds ago. The tracker records
    # it FAILED and never hands it to the broker.
    monkeypatch.setattr(journal_module, "STALE_INTENT_SECONDS", 0.3)
    proxy, url = proxied
    world = World(actors, url)
    world.store.close()
    world.store = Store.open(fresh_postgres_url)  # the test's own look, not through the proxy
    try:
        world.journal.ask(Load("count_orders_by_status"), timeout=ANSWER)
        tracker = world.tracker()
        reply = new_future()

        lost.then = proxy.cut
        lost.next_commit(True)
        tracker.tell(Submit(reply))
        with pytest.raises(pykka.Timeout):
            reply.get(timeout=1.0)
        proxy.restore()

        refused = outcome(reply, ANSWER)
        assert isinstance(refused, OrderSubmissionFailed) and "too late to act on" in str(refused)
        world.finished(tracker)
        assert world.gateway.of_type(PlaceAtBroker) == []
        assert world.transitions() == [(None, S.PENDING), (S.PENDING, S.SUBMITTED), (S.SUBMITTED, S.FAILED)]
    finally:
        actors.stop_all()
        world.store.close()
