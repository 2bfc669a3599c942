"""The Journal actor, driven by message, on SQLite and on PostgreSQL: every write is
committed before it is answered (read back through a separate Store on the same URL),
a refusal fails the strategy's reply after it is stored, and reads are a closed list."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import pykka
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from actors.journal import Journal
from actors.messages import (
    IdsReserved,
    Load,
    RecordFill,
    RecordNewOrder,
    RecordPosition,
    RecordRefusal,
    RecordSubmission,
    RecordTransition,
    ReserveIds,
)
from domain.enums import OrderStatus
from domain.errors import OrderRejected
from domain.order import Order, OrderEvent, apply_fill, created, refused, transition
from domain.position import Position
from domain.position import apply_fill as position_after
from persistence.store import Store
from tests.actor_probes import (
    WAIT,
    ActorGroup,
    Probe,
    StepClock,
    actor_group,
    fill_for,
    new_future,
    new_order,
    order_request,
    outcome,
)

D = Decimal
S = OrderStatus
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def actors() -> Iterator[ActorGroup]:
    yield from actor_group()


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A separate Store on the journal's database: what another process would see."""
    with Store.open(database_url) as store:
        yield store


@pytest.fixture
def journal(actors, database_url, store):
    return actors.start(Journal, database_url)


GHOST = 404  # an order id no row has


def new(clock: StepClock, order_id: int = 1, **request) -> tuple[Order, OrderEvent]:
    return created(new_order(order_id, order_request(**request), clock(), {"passed": True}))


def opened(journal, clock: StepClock, order_id: int = 1) -> Order:
    """An order recorded PENDING -> SUBMITTED -> OPEN through the journal."""
    pending = new(clock, order_id)
    journal.ask(RecordNewOrder(*pending), timeout=WAIT)
    submitted = transition(pending[0], S.SUBMITTED, clock())
    journal.ask(RecordTransition(*submitted), timeout=WAIT)
    opened_ = transition(submitted[0], S.OPEN, clock(), {"by": "ack"}, broker_order_id=f"B-{order_id}")
    journal.ask(RecordTransition(*opened_), timeout=WAIT)
    return opened_[0]


def statuses(store: Store, order_id: int = 1) -> list[tuple[S | None, S]]:
    return [(e.from_status, e.to_status) for e in store.load_events(order_id)]


# --------------------------------------------------------------------------- asked writes


def test_record_new_order_commits_the_row_and_its_first_event(journal, store, clock):
    order, event = new(clock)

    assert journal.ask(RecordNewOrder(order, event), timeout=WAIT) is None

    assert store.load_order(1) == order
    assert store.load_events(1) == [event]


def test_record_submission_commits_pending_and_submitted_together(journal, store, clock):
    pending, first = new(clock)
    submitted, sent = transition(pending, S.SUBMITTED, clock())

    journal.ask(RecordSubmission(pending, first, submitted, sent), timeout=WAIT)

    assert store.load_order(1) == submitted
    assert statuses(store) == [(None, S.PENDING), (S.PENDING, S.SUBMITTED)]


def test_record_transition_commits_the_change_and_appends_its_event(journal, store, clock):
    order = opened(journal, clock)

    assert store.load_order(1) == order
    assert (order.status, order.broker_order_id) == (S.OPEN, "B-1")
    assert statuses(store) == [(None, S.PENDING), (S.PENDING, S.SUBMITTED), (S.SUBMITTED, S.OPEN)]
    assert store.load_events(1)[-1].payload == {"by": "ack"}


def test_record_fill_commits_the_trade_the_order_and_the_event_once(journal, store, clock):
    order = opened(journal, clock)
    fill = fill_for(order, "T1", 4, D("1500"), clock())
    filled, event = apply_fill(order, 4, D("1500"), fill.at, "T1")

    assert journal.ask(RecordFill(fill, filled, event), timeout=WAIT) is True

    assert store.load_fills(1) == [fill]
    assert [f.trade_id for f in store.load_unapplied_fills()] == ["T1"]
    assert store.load_order(1) == filled
    assert store.load_events(1)[-1] == event
    assert store.trade_ids(1) == {"T1"}

    # The same trade again (a replay): nothing is written, and the answer says so.
    again, again_event = apply_fill(filled, 4, D("1500"), clock(), "T1")
    assert journal.ask(RecordFill(fill, again, again_event), timeout=WAIT) is False
    assert store.load_fills(1) == [fill]
    assert store.load_order(1).filled_quantity == 4
    assert len(store.load_events(1)) == 4


def test_record_position_commits_it_and_marks_the_trade_applied(journal, store, clock):
    order = opened(journal, clock)
    fill = fill_for(order, "T1", 10, D("1500"), clock())
    journal.ask(RecordFill(fill, *apply_fill(order, 10, D("1500"), fill.at, "T1")), timeout=WAIT)
    position = position_after(Position(*fill.position_key), fill.side, 10, fill.price, fill.charges.total, fill.at).after

    journal.ask(RecordPosition(position, "T1"), timeout=WAIT)

    assert store.load_positions() == [position]
    assert store.load_unapplied_fills() == []

    marked = replace(position, last_price=D("1510"), updated_at=clock())
    journal.ask(RecordPosition(marked), timeout=WAIT)  # a revaluation: no trade to mark
    assert store.load_positions() == [marked]


def test_an_asked_write_that_fails_raises_to_the_asker_and_the_journal_carries_on(journal, store, clock):
    order, event = new(clock)
    journal.ask(RecordNewOrder(order, event), timeout=WAIT)

    with pytest.raises(IntegrityError):
        journal.ask(RecordNewOrder(order, event), timeout=WAIT)  # the same order id twice
    ghost = transition(new(clock, GHOST)[0], S.SUBMITTED, clock())
    with pytest.raises(LookupError):
        journal.ask(RecordTransition(*ghost), timeout=WAIT)  # no such order row

    assert journal.is_alive()
    other, other_event = new(clock, 2)
    journal.ask(RecordNewOrder(other, other_event), timeout=WAIT)
    assert [o.order_id for o in store.load_orders()] == [1, 2]
    assert len(store.load_events(1)) == 1


# --------------------------------------------------------------------------- told writes (group commit)


def test_told_writes_are_answered_after_they_are_committed(journal, store, clock):
    first, second = new(clock, 1), new(clock, 2)
    submitted = transition(first[0], S.SUBMITTED, clock())
    replies = [new_future() for _ in range(3)]

    journal.tell(RecordNewOrder(*first, reply=replies[0]))
    journal.tell(RecordNewOrder(*second, reply=replies[1]))
    journal.tell(RecordTransition(*submitted, reply=replies[2]))

    for reply in replies:
        assert reply.get(timeout=WAIT) is None
    assert store.load_order(1) == submitted[0]
    assert store.load_order(2) == second[0]
    assert statuses(store, 1) == [(None, S.PENDING), (S.PENDING, S.SUBMITTED)]


def test_a_told_write_that_fails_fails_only_its_own_reply(journal, store, clock):
    good, ghost, also_good = new(clock, 1), new(clock, GHOST), new(clock, 2)
    replies = [new_future() for _ in range(3)]

    journal.tell(RecordNewOrder(*good, reply=replies[0]))
    journal.tell(RecordTransition(*transition(ghost[0], S.SUBMITTED, clock()), reply=replies[1]))
    journal.tell(RecordNewOrder(*also_good, reply=replies[2]))

    assert replies[0].get(timeout=WAIT) is None
    assert isinstance(outcome(replies[1]), LookupError)
    assert replies[2].get(timeout=WAIT) is None
    assert [o.order_id for o in store.load_orders()] == [1, 2]


def test_a_told_fill_answers_whether_it_was_new(journal, store, clock):
    order = opened(journal, clock)
    fill = fill_for(order, "T1", 4, D("1500"), clock())
    filled, event = apply_fill(order, 4, D("1500"), fill.at, "T1")
    once, twice = new_future(), new_future()

    journal.tell(RecordFill(fill, filled, event, reply=once))
    journal.tell(RecordFill(fill, *apply_fill(filled, 4, D("1500"), clock(), "T1"), reply=twice))

    assert once.get(timeout=WAIT) is True
    assert twice.get(timeout=WAIT) is False
    assert store.load_fills(1) == [fill]
    assert store.load_order(1).filled_quantity == 4


def test_a_read_sees_every_write_told_before_it(journal, clock):
    order, event = new(clock)
    reply = new_future()

    journal.tell(RecordNewOrder(order, event, reply=reply))
    seen = journal.ask(Load("load_order", (1,)), timeout=WAIT)

    assert seen == order


def test_stopping_the_journal_commits_what_was_told_before(actors, database_url, store, clock):
    journal = actors.start(Journal, database_url)
    orders = [new(clock, i) for i in range(1, 6)]
    replies = [new_future() for _ in orders]
    for (order, event), reply in zip(orders, replies):
        journal.tell(RecordNewOrder(order, event, reply=reply))

    journal.stop(block=True, timeout=WAIT)

    for reply in replies:
        assert reply.get(timeout=WAIT) is None
    assert len(store.load_orders()) == 5


# --------------------------------------------------------------------------- refusals


def test_record_refusal_stores_the_order_then_fails_the_reply_with_the_given_error(journal, store, clock):
    order = new_order(9, order_request(stop_loss=None), clock(), {"passed": False})
    rejected, event = refused(order, "stop-loss required")
    error = OrderRejected("stop-loss required", "stop_loss_required", 9)
    reply = new_future()

    journal.tell(RecordRefusal(rejected, event, error, reply))

    raised = outcome(reply)
    assert raised is error
    # Stored before the strategy heard: once the reply has failed, the row is there.
    stored = store.load_order(9)
    assert (stored.status, stored.status_message) == (S.REJECTED, "stop-loss required")
    assert statuses(store, 9) == [(None, S.REJECTED)]


def test_record_refusal_still_fails_the_reply_when_the_order_cannot_be_stored(journal, store, clock):
    order, event = new(clock, 9)
    journal.ask(RecordNewOrder(order, event), timeout=WAIT)
    rejected, refusal = refused(replace(order, validation_result={"passed": False}), "duplicate")
    error = OrderRejected("trading is HALTED", "trading_state", 9)
    reply = new_future()

    journal.tell(RecordRefusal(rejected, refusal, error, reply))

    assert outcome(reply) is error
    assert journal.is_alive()
    assert store.load_order(9).status is S.PENDING  # the first row stands


# --------------------------------------------------------------------------- reads


def test_load_answers_the_named_read(journal, store, clock):
    order = opened(journal, clock)

    assert journal.ask(Load("load_order", (1,)), timeout=WAIT) == order
    assert journal.ask(Load("load_order", (GHOST,)), timeout=WAIT) is None
    assert journal.ask(Load("load_live_orders"), timeout=WAIT) == [order]
    assert journal.ask(Load("count_orders_by_status"), timeout=WAIT)[S.OPEN] == 1
    assert journal.ask(Load("trade_ids", (1,)), timeout=WAIT) == set()


@pytest.mark.parametrize("name", ["record_new_order", "close", "write_many", "_transaction", "engine", "no_such_read"])
def test_load_rejects_names_that_are_not_reads(journal, store, clock, name):
    with pytest.raises(ValueError, match="no read named"):
        journal.ask(Load(name, ()), timeout=WAIT)

    assert journal.is_alive()
    order, event = new(clock)
    journal.ask(RecordNewOrder(order, event), timeout=WAIT)  # the store is still open and usable
    assert store.load_order(1) == order


# --------------------------------------------------------------------------- order ids

SEQUENCE = "orders_id_seq"  # PostgreSQL's sequence behind orders.id


def reserve(journal, to: Probe, count: int) -> IdsReserved:
    """Tell ``journal`` ReserveIds and wait for the IdsReserved it tells ``to``."""
    before = len(to.of_type(IdsReserved))
    journal.tell(ReserveIds(count, to.ref))
    return to.wait_for_count(IdsReserved, before + 1)[-1]


def test_reserve_ids_answers_ascending_ids_that_never_repeat(actors, journal, store, clock):
    supervisor = actors.probe("supervisor")

    first = reserve(journal, supervisor, 3)
    second = reserve(journal, supervisor, 5)

    assert (first.error, second.error) == (None, None)
    assert (len(first.ids), len(second.ids)) == (3, 5)
    for ids in (first.ids, second.ids):
        assert all(type(i) is int and i > 0 for i in ids)
        assert list(ids) == sorted(set(ids)), "ascending, each once"
    assert min(second.ids) > max(first.ids), "the second block repeats or goes back"
    # A reserved id is the order's own: the order is stored, and read back, under it.
    order, event = new(clock, first.ids[0])
    journal.ask(RecordNewOrder(order, event), timeout=WAIT)
    assert store.load_order(first.ids[0]) == order


def test_reserved_ids_never_repeat_across_a_restart_or_a_second_journal(actors, database_url, store, clock):
    """Ids come from the database, not from memory: a restarted OMS, or a second OMS
    process on the same database, never gets an id that was given before."""
    supervisor = actors.probe("supervisor")
    journal = actors.start(Journal, database_url)
    before = reserve(journal, supervisor, 4)
    for order_id in before.ids[:2]:  # two of them used, two never used
        journal.ask(RecordNewOrder(*new(clock, order_id)), timeout=WAIT)
    journal.stop(block=True, timeout=WAIT)

    restarted = actors.start(Journal, database_url)
    blocks = [reserve(restarted, supervisor, 3)]
    # Started once the first is up (journals starting together: see the test below).
    other = actors.start(Journal, database_url, account="desk-b")
    blocks += [reserve(other, supervisor, 3), reserve(restarted, supervisor, 2)]

    given = list(before.ids) + [i for block in blocks for i in block.ids]
    assert all(block.error is None for block in blocks)
    assert len(given) == len(set(given)) == 12, given
    assert min(blocks[0].ids) > max(before.ids)


@pytest.mark.postgres
def test_reserve_ids_that_meet_a_database_error_answer_the_error_and_the_journal_carries_on(actors, fresh_postgres_url, clock):
    """The supervisor never waits on the database for ids: a failed reservation is
    answered (no ids, the error named) and the supervisor asks again later."""
    supervisor = actors.probe("supervisor")
    journal = actors.start(Journal, fresh_postgres_url)
    first = reserve(journal, supervisor, 2)
    with Store.open(fresh_postgres_url) as store, store.engine.begin() as conn:
        conn.execute(text(f"ALTER SEQUENCE {SEQUENCE} MAXVALUE {max(first.ids)}"))  # exhausted

    failed = reserve(journal, supervisor, 2)

    assert failed.ids == ()
    assert failed.error and "maximum value" in failed.error
    assert journal.is_alive()
    with Store.open(fresh_postgres_url) as store, store.engine.begin() as conn:
        conn.execute(text(f"ALTER SEQUENCE {SEQUENCE} NO MAXVALUE"))
    again = reserve(journal, supervisor, 2)
    assert again.error is None
    assert min(again.ids) > max(first.ids)


def test_load_tag_prefix_answers_the_databases_prefix(journal, store, database_url, actors):
    prefix = journal.ask(Load("tag_prefix"), timeout=WAIT)

    assert re.fullmatch(r"[A-Z]{1,10}", prefix), prefix
    assert prefix == store.tag_prefix()
    # Per database, not per process: a second journal on the same database reads the same.
    assert actors.start(Journal, database_url, account="desk-b").ask(Load("tag_prefix"), timeout=WAIT) == prefix


# --------------------------------------------------------------------------- accounts


def test_a_journal_reads_and_writes_only_its_own_accounts_rows(actors, database_url, journal, store, clock):
    mine, theirs = new(clock, 1), new(clock, 2)
    journal.ask(RecordNewOrder(*mine), timeout=WAIT)
    other = actors.start(Journal, database_url, account="desk-b")  # once the first is up

    other.ask(RecordNewOrder(*theirs), timeout=WAIT)

    assert journal.ask(Load("load_orders"), timeout=WAIT) == [mine[0]]
    assert other.ask(Load("load_orders"), timeout=WAIT) == [theirs[0]]
    assert other.ask(Load("load_order", (1,)), timeout=WAIT) is None
    assert store.load_order(2) is None  # the default account's Store
    with Store.open(database_url, account="desk-b") as desk_b:
        assert desk_b.load_order(2) == theirs[0]
        assert [e.order_id for e in desk_b.load_events()] == [2]


def test_journals_of_two_accounts_started_together_both_start(actors, database_url):
    """One program running the OMS for two accounts starts two journals at once, and
    each opens its Store (which brings the schema up to date) in its own thread. Both
    must start: a journal that dies in on_start takes its OMS down before it trades."""
    journals = [actors.start(Journal, database_url, account=account) for account in ("desk-a", "desk-b")]

    prefixes = []
    for journal in journals:
        try:
            prefixes.append(journal.ask(Load("tag_prefix"), timeout=WAIT))
        except pykka.ActorDeadError as error:
            pytest.fail(f"a journal died while starting beside another: {error}")
    assert prefixes[0] == prefixes[1]


TWO_DATABASES_AT_ONCE = """
import logging
import sys
logging.basicConfig(level=logging.ERROR)  # why a journal died, in the child's stderr
from actors.journal import Journal
from actors.messages import Load
journals = [Journal.start(url) for url in sys.argv[1:]]
died = []
for journal in journals:
    try:
        journal.ask(Load("tag_prefix"), timeout=30)
    except Exception as error:
        died.append(repr(error))
for journal in journals:
    try:
        journal.stop(timeout=10)
    except Exception:
        pass
print("died:", died)
sys.exit(1 if died else 0)
"""


def test_journals_of_two_databases_started_together_in_one_process_both_start(tmp_path):
    """One program running two OMSs, each on its own database, starts two journals at
    once; each brings its own database's schema up to date in its own thread. Both must
    start, and each migration must touch its own database only. Run in a child process:
    when this goes wrong the interpreter can crash outright (SIGSEGV), which must not
    take the test session down with it."""
    urls = [f"sqlite:///{tmp_path / name}" for name in ("a.db", "b.db")]

    child = subprocess.run(
        [sys.executable, "-c", TWO_DATABASES_AT_ONCE, *urls],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True, text=True, timeout=120,
    )

    assert child.returncode == 0, (
        f"exit {child.returncode}; {child.stdout.strip()}\n{child.stderr.strip()[-3000:]}"
    )
    for url in urls:
        with Store.open(url) as store:
            assert re.fullmatch(r"[A-Z]{1,10}", store.tag_prefix())
