"""The PositionKeeper actor with a real Journal on a real SQLite file; a probe stands in
for the validator, which is told PositionChanged after every committed change."""
from __future__ import annotations

from decimal import Decimal
from typing import Iterator

import pytest
from sqlalchemy import text

from actors.journal import Journal
from actors.messages import (
    ApplyFill,
    CorrectPosition,
    GetPositions,
    MarkPrice,
    PositionChanged,
    RecordFill,
    RecordNewOrder,
    RecordPosition,
    RecordTransition,
)
from actors.position_keeper import PositionKeeper
from domain.enums import Exchange, OrderStatus, Product
from domain.fill import Fill
from domain.order import Order, OrderEvent, apply_fill, created, transition
from domain.position import Position
from domain.position import apply_fill as position_after
from domain.reconciliation import Difference, IssueType, StalePosition
from persistence.store import Store
from tests.actor_probes import (
    WAIT,
    ActorGroup,
    StepClock,
    actor_group,
    fill_for,
    new_future,
    new_order,
    order_request,
    outcome,
)

D = Decimal
INFY_MIS = (Exchange.NSE, "INFY", Product.MIS)
INFY_CNC = (Exchange.NSE, "INFY", Product.CNC)


@pytest.fixture
def actors() -> Iterator[ActorGroup]:
    yield from actor_group()


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    """A second, independent Store on the journal's database, for reading back."""
    with Store.open(sqlite_url) as store:
        yield store


class Keeper:
    """A journal, a validator probe and a keeper, started in that order."""

    def __init__(self, actors: ActorGroup, url: str, clock: StepClock) -> None:
        self.journal = actors.start(Journal, url)
        self.validator = actors.probe("validator")
        self.ref = actors.start(PositionKeeper, self.journal, self.validator.ref, clock)

    def positions(self) -> dict[tuple, Position]:
        return {p.key: p for p in self.ref.ask(GetPositions(), timeout=WAIT)}

    def stop(self) -> None:
        self.ref.stop(block=True, timeout=WAIT)
        self.validator.stop()
        self.journal.stop(block=True, timeout=WAIT)


def open_order_changes(clock: StepClock, order_id: int, **request) -> list[tuple[Order, OrderEvent]]:
    """PENDING, SUBMITTED and OPEN (acknowledged), as an order tracker records them."""
    pending = created(new_order(order_id, order_request(**request), clock()))
    submitted = transition(pending[0], OrderStatus.SUBMITTED, clock())
    opened = transition(submitted[0], OrderStatus.OPEN, clock(), broker_order_id=f"B-{order_id}")
    return [pending, submitted, opened]


def record_trade(journal, clock: StepClock, order: Order, trade_id: str, quantity: int, price: str) -> tuple[Fill, Order]:
    """Record a trade of ``order`` through the journal, as an order tracker does before
    it asks the keeper to apply it. Returns the fill and the order after it."""
    fill = fill_for(order, trade_id, quantity, D(price), clock())
    filled, event = apply_fill(order, quantity, D(price), fill.at, trade_id)
    assert journal.ask(RecordFill(fill, filled, event), timeout=WAIT) is True
    return fill, filled


def record_order(journal, clock: StepClock, order_id: int, **request) -> Order:
    """An acknowledged order, recorded through the journal."""
    first, *rest = open_order_changes(clock, order_id, **request)
    journal.ask(RecordNewOrder(*first), timeout=WAIT)
    for change in rest:
        journal.ask(RecordTransition(*change), timeout=WAIT)
    return rest[-1][0]


# --------------------------------------------------------------------------- apply


def test_apply_fill_answers_what_it_did_to_the_position_persists_it_and_tells_the_validator(actors, sqlite_url, clock, store):
    keeper = Keeper(actors, sqlite_url, clock)
    order = record_order(keeper.journal, clock, 1)
    fill, _ = record_trade(keeper.journal, clock, order, "T1", 10, "1500")

    change = keeper.ref.ask(ApplyFill(fill), timeout=WAIT)

    position = change.after
    assert change.before == Position(*INFY_MIS) and change.realized_pnl == 0

    assert position.key == INFY_MIS
    assert (position.quantity, position.average_price, position.realized_pnl) == (10, D("1500"), D(0))
    assert position.charges == fill.charges.total
    assert position.updated_at == fill.at
    # Committed before the answer: a separate Store sees it, with the trade marked applied.
    assert store.load_positions() == [position]
    assert store.load_unapplied_fills() == []
    changed = keeper.validator.wait_for(PositionChanged)
    assert changed.before == Position(*INFY_MIS)
    assert changed.after == position
    assert changed.fill == fill
    assert keeper.positions() == {INFY_MIS: position}


def test_a_reducing_fill_realizes_pnl_and_keeps_adding_charges(actors, sqlite_url, clock, store):
    keeper = Keeper(actors, sqlite_url, clock)
    buy = record_order(keeper.journal, clock, 1)
    sell = record_order(keeper.journal, clock, 2, side="SELL", price=D("1510"), stop_loss=None)
    bought, _ = record_trade(keeper.journal, clock, buy, "T1", 10, "1500")
    sold, _ = record_trade(keeper.journal, clock, sell, "T2", 4, "1510")

    first = keeper.ref.ask(ApplyFill(bought), timeout=WAIT).after
    moved = keeper.ref.ask(ApplyFill(sold), timeout=WAIT)
    second = moved.after
    assert moved.before == first and moved.realized_pnl == D("40")

    assert (second.quantity, second.average_price) == (6, D("1500"))
    assert second.realized_pnl == D("40")
    assert second.charges == bought.charges.total + sold.charges.total
    assert store.load_positions() == [second]
    changes = keeper.validator.wait_for_count(PositionChanged, 2)
    assert [(c.before, c.after) for c in changes] == [(Position(*INFY_MIS), first), (first, second)]


def test_mis_and_cnc_of_one_symbol_are_kept_apart(actors, sqlite_url, clock, store):
    keeper = Keeper(actors, sqlite_url, clock)
    mis = record_order(keeper.journal, clock, 1)
    cnc = record_order(keeper.journal, clock, 2, product="CNC", quantity=3)
    mis_fill, _ = record_trade(keeper.journal, clock, mis, "T1", 10, "1500")
    cnc_fill, _ = record_trade(keeper.journal, clock, cnc, "T2", 3, "1502")

    keeper.ref.ask(ApplyFill(mis_fill), timeout=WAIT)
    keeper.ref.ask(ApplyFill(cnc_fill), timeout=WAIT)

    positions = keeper.positions()
    assert set(positions) == {INFY_MIS, INFY_CNC}
    assert (positions[INFY_MIS].quantity, positions[INFY_MIS].average_price) == (10, D("1500"))
    assert (positions[INFY_CNC].quantity, positions[INFY_CNC].average_price) == (3, D("1502"))
    assert positions[INFY_MIS].charges == mis_fill.charges.total
    stored = {p.key: (p.quantity, p.average_price) for p in store.load_positions()}
    assert stored == {INFY_MIS: (10, D("1500")), INFY_CNC: (3, D("1502"))}


def test_the_same_fill_applied_twice_moves_the_position_once(actors, sqlite_url, clock, store):
    """DESIGN.md, lessons: "applying a fill must be idempotent". The keeper owns the
    positions and the trade's applied mark; a repeated ApplyFill (a tracker restarted
    by the supervisor, a replay) must not count the fill again."""
    keeper = Keeper(actors, sqlite_url, clock)
    order = record_order(keeper.journal, clock, 1)
    fill, _ = record_trade(keeper.journal, clock, order, "T1", 10, "1500")

    once = keeper.ref.ask(ApplyFill(fill), timeout=WAIT)
    again = keeper.ref.ask(ApplyFill(fill), timeout=WAIT)

    assert once.after.quantity == 10
    assert again is None  # it moved nothing the second time
    assert keeper.positions()[INFY_MIS].quantity == 10
    assert store.load_positions()[0].quantity == 10


# --------------------------------------------------------------------------- marks


def test_mark_price_revalues_unrealized_pnl_in_memory_and_writes_it_at_stop(actors, sqlite_url, clock, store):
    keeper = Keeper(actors, sqlite_url, clock)
    mis = record_order(keeper.journal, clock, 1)
    cnc = record_order(keeper.journal, clock, 2, product="CNC", quantity=3)
    keeper.ref.ask(ApplyFill(record_trade(keeper.journal, clock, mis, "T1", 10, "1500")[0]), timeout=WAIT)
    keeper.ref.ask(ApplyFill(record_trade(keeper.journal, clock, cnc, "T2", 3, "1500")[0]), timeout=WAIT)
    marked_at = clock()

    keeper.ref.tell(MarkPrice(Exchange.NSE, "INFY", D("1512.50"), marked_at))
    keeper.ref.tell(MarkPrice(Exchange.BSE, "INFY", D("9999"), marked_at))  # another exchange: no position

    positions = keeper.positions()
    assert positions[INFY_MIS].unrealized_pnl == D("125.00")
    assert positions[INFY_CNC].unrealized_pnl == D("37.50")
    assert all(p.last_price == D("1512.50") and p.updated_at == marked_at for p in positions.values())
    assert set(positions) == {INFY_MIS, INFY_CNC}
    # Not written on every tick...
    assert {p.last_price for p in store.load_positions()} == {D("1500")}

    keeper.ref.stop(block=True, timeout=WAIT)

    # ... but written when the keeper stops.
    assert {p.key: p for p in store.load_positions()} == positions


# --------------------------------------------------------------------------- restart


def test_a_new_keeper_on_the_same_database_loads_the_positions(actors, sqlite_url, clock, store):
    first = Keeper(actors, sqlite_url, clock)
    mis = record_order(first.journal, clock, 1)
    cnc = record_order(first.journal, clock, 2, product="CNC", quantity=3)
    first.ref.ask(ApplyFill(record_trade(first.journal, clock, mis, "T1", 10, "1500")[0]), timeout=WAIT)
    first.ref.ask(ApplyFill(record_trade(first.journal, clock, cnc, "T2", 3, "1490.05")[0]), timeout=WAIT)
    before = first.positions()
    first.stop()

    second = Keeper(actors, sqlite_url, clock)

    after = second.positions()
    assert set(after) == {INFY_MIS, INFY_CNC}
    assert {k: (p.quantity, p.average_price, p.realized_pnl) for k, p in after.items()} == {
        INFY_MIS: (10, D("1500"), D(0)),
        INFY_CNC: (3, D("1490.05"), D(0)),
    }
    assert second.validator.settle() == []  # nothing was re-applied, so nothing to tell
    # The restarted keeper holds exactly what the first one held. (The CNC buy's
    # charges, 3 x 1490.05 on delivery, run to more than the 8 decimal places the
    # positions table keeps; the first keeper held them unrounded.)
    assert after == before


def test_a_recorded_but_unapplied_fill_is_applied_exactly_once_at_start(actors, sqlite_url, clock, store):
    # Before the "crash": a long of 10 applied, then a sell of 4 recorded in trades
    # whose position was never written (position_applied is false).
    first = Keeper(actors, sqlite_url, clock)
    buy = record_order(first.journal, clock, 1)
    first.ref.ask(ApplyFill(record_trade(first.journal, clock, buy, "T1", 10, "1500")[0]), timeout=WAIT)
    first.stop()
    first_change, *later = open_order_changes(clock, 2, side="SELL", price=D("1520"), stop_loss=None)
    store.record_new_order(*first_change)
    for change in later:
        store.record_transition(*change)
    sell_order = later[-1][0]
    sell = fill_for(sell_order, "T2", 4, D("1520"), clock())
    assert store.record_fill(sell, *apply_fill(sell_order, 4, D("1520"), sell.at, "T2"))
    assert [f.trade_id for f in store.load_unapplied_fills()] == ["T2"]

    second = Keeper(actors, sqlite_url, clock)

    changed = second.validator.wait_for(PositionChanged)
    assert changed.fill == sell
    assert (changed.before.quantity, changed.after.quantity) == (10, 6)
    assert changed.after.realized_pnl == D("80")
    assert second.positions()[INFY_MIS] == changed.after
    assert store.load_unapplied_fills() == []
    assert store.load_positions() == [changed.after]
    second.stop()

    third = Keeper(actors, sqlite_url, clock)

    assert third.positions()[INFY_MIS].quantity == 6
    assert third.validator.settle() == []
    assert store.load_positions()[0].quantity == 6


# --------------------------------------------------------------------------- a failed write


def test_a_position_write_that_fails_does_not_count_the_fill_twice_after_a_restart(actors, sqlite_url, clock, store):
    """Trackers tell ApplyFill with a reply future; the journal fails that future when
    the position cannot be committed. The fill's trade stays "not applied", so the next
    start applies it from the trades table. The position written by the *next* fill must
    therefore not already include it, or the restart counts it twice."""
    keeper = Keeper(actors, sqlite_url, clock)
    order = record_order(keeper.journal, clock, 1)
    first, order = record_trade(keeper.journal, clock, order, "T1", 4, "1500")
    second, _ = record_trade(keeper.journal, clock, order, "T2", 6, "1500")
    with store.engine.begin() as conn:  # the disk fills up for a moment
        conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON positions BEGIN SELECT RAISE(ABORT, 'disk is full'); END"))
    failed = new_future()

    keeper.ref.tell(ApplyFill(first, failed))

    assert "disk is full" in str(outcome(failed))
    with store.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER refuse"))
    applied = new_future()
    keeper.ref.tell(ApplyFill(second, applied))
    applied.get(timeout=WAIT)
    in_session = keeper.positions()[INFY_MIS].quantity
    keeper.stop()
    stored = store.load_positions()[0].quantity
    unapplied = [f.trade_id for f in store.load_unapplied_fills()]

    restarted = Keeper(actors, sqlite_url, clock)

    # 4 + 6 = 10 were bought, each fill once.
    assert restarted.positions()[INFY_MIS].quantity == 10, (
        f"in session the keeper held {in_session}; the positions row held {stored} "
        f"while trades {unapplied} were still marked unapplied"
    )


# --------------------------------------------------------------------------- opened, closed, protective prices


def test_a_position_records_when_it_opened_went_flat_and_reopened(actors, sqlite_url, clock, store):
    keeper = Keeper(actors, sqlite_url, clock)
    buy = record_order(keeper.journal, clock, 1, take_profit=D("1530"))  # stop-loss 1490
    sell = record_order(keeper.journal, clock, 2, side="SELL", price=D("1510"), stop_loss=None)
    again = record_order(keeper.journal, clock, 3, price=D("1505"), stop_loss=D("1495"), take_profit=D("1540"))
    bought, _ = record_trade(keeper.journal, clock, buy, "T1", 10, "1500")
    sold, _ = record_trade(keeper.journal, clock, sell, "T2", 10, "1510")
    rebought, _ = record_trade(keeper.journal, clock, again, "T3", 5, "1505")

    opened = keeper.ref.ask(ApplyFill(bought), timeout=WAIT).after
    assert (opened.opened_at, opened.closed_at) == (bought.at, None)
    assert (opened.stop_loss, opened.take_profit) == (D("1490"), D("1530")), "carried from the fill"
    assert store.load_positions() == [opened]

    flat = keeper.ref.ask(ApplyFill(sold), timeout=WAIT).after
    assert flat.quantity == 0
    assert (flat.opened_at, flat.closed_at) == (bought.at, sold.at)
    assert (flat.stop_loss, flat.take_profit) == (None, None), "a flat position protects nothing"
    assert store.load_positions() == [flat]

    reopened = keeper.ref.ask(ApplyFill(rebought), timeout=WAIT).after
    assert reopened.quantity == 5
    assert (reopened.opened_at, reopened.closed_at) == (rebought.at, None), "closed_at is cleared when it reopens"
    assert (reopened.stop_loss, reopened.take_profit) == (D("1495"), D("1540"))
    assert store.load_positions() == [reopened]
    changes = keeper.validator.wait_for_count(PositionChanged, 3)
    assert [c.after for c in changes] == [opened, flat, reopened]
    keeper.stop()

    # A restarted keeper holds the same times and prices, read back from the database.
    assert Keeper(actors, sqlite_url, clock).positions() == {INFY_MIS: reopened}


def test_adding_moves_the_protective_prices_reducing_keeps_them_and_a_flip_reopens(actors, sqlite_url, clock, store):
    keeper = Keeper(actors, sqlite_url, clock)
    first = record_order(keeper.journal, clock, 1, take_profit=D("1530"))  # stop-loss 1490
    more = record_order(keeper.journal, clock, 2, quantity=5, price=D("1502"), stop_loss=D("1495"), take_profit=D("1540"))
    trim = record_order(keeper.journal, clock, 3, side="SELL", quantity=5, price=D("1510"), stop_loss=None)
    flip = record_order(
        keeper.journal, clock, 4, side="SELL", quantity=20, price=D("1510"), stop_loss=D("1530"), take_profit=D("1480"),
    )
    fills = [
        record_trade(keeper.journal, clock, first, "T1", 10, "1500")[0],
        record_trade(keeper.journal, clock, more, "T2", 5, "1502")[0],
        record_trade(keeper.journal, clock, trim, "T3", 5, "1510")[0],
        record_trade(keeper.journal, clock, flip, "T4", 20, "1510")[0],
    ]

    long, added, trimmed, short = (keeper.ref.ask(ApplyFill(f), timeout=WAIT).after for f in fills)

    assert (added.quantity, added.opened_at) == (15, fills[0].at), "adding does not reopen"
    assert (added.stop_loss, added.take_profit) == (D("1495"), D("1540")), "the adding order's prices"
    assert (trimmed.quantity, trimmed.opened_at) == (10, fills[0].at)
    assert (trimmed.stop_loss, trimmed.take_profit) == (D("1495"), D("1540")), "a reducing fill keeps them"
    assert trimmed.closed_at is None
    # Through zero: the long closed and a short of 10 opened at the flipping fill.
    assert (short.quantity, short.average_price) == (-10, D("1510"))
    assert (short.opened_at, short.closed_at) == (fills[3].at, None)
    assert (short.stop_loss, short.take_profit) == (D("1530"), D("1480"))
    assert store.load_positions() == [short]


def test_a_fill_replayed_at_start_carries_its_orders_protective_prices(actors, sqlite_url, clock, store):
    """The protective prices travel with the recorded trade, so a fill applied only after
    a restart still gives its position the order's stop-loss and take-profit."""
    first_change, *later = open_order_changes(clock, 1, take_profit=D("1530"))  # stop-loss 1490
    store.record_new_order(*first_change)
    for change in later:
        store.record_transition(*change)
    order = later[-1][0]
    fill = fill_for(order, "T1", 10, D("1500"), clock())
    assert store.record_fill(fill, *apply_fill(order, 10, D("1500"), fill.at, "T1"))

    keeper = Keeper(actors, sqlite_url, clock)

    changed = keeper.validator.wait_for(PositionChanged)
    assert changed.fill == fill
    assert (changed.after.stop_loss, changed.after.take_profit) == (D("1490"), D("1530"))
    assert (changed.after.opened_at, changed.after.closed_at) == (fill.at, None)
    assert store.load_positions() == [changed.after]


# --------------------------------------------------------------------------- corrections


def test_a_correction_sets_the_brokers_quantity_stores_it_with_its_log_row_and_tells_the_validator(
    actors, sqlite_url, clock, store,
):
    keeper = Keeper(actors, sqlite_url, clock)
    order = record_order(keeper.journal, clock, 1)
    fill, _ = record_trade(keeper.journal, clock, order, "T1", 10, "1500")
    held = keeper.ref.ask(ApplyFill(fill), timeout=WAIT).after
    keeper.validator.wait_for(PositionChanged)

    difference = Difference(IssueType.QUANTITY_MISMATCH, INFY_MIS, 10, 8, D("1501"))
    after = keeper.ref.ask(CorrectPosition(difference, clock()), timeout=WAIT)

    assert (after.quantity, after.average_price, after.realized_pnl, after.charges) == (8, D("1501"), D(0), held.charges)
    assert store.load_positions() == [after]
    (row,) = store.load_reconciliation_log()
    assert (row["issue_type"], row["internal_quantity"], row["broker_quantity"], row["resolved"]) == (
        "QUANTITY_MISMATCH", 10, 8, True,
    )
    assert row["resolved_at"] == row["detected_at"] == after.updated_at
    told = keeper.validator.wait_for(PositionChanged, where=lambda m: m.fill is None)
    assert (told.before, told.after) == (held, after)


def test_a_correction_of_a_position_a_fill_moved_meanwhile_is_refused_and_changes_nothing(actors, sqlite_url, clock, store):
    keeper = Keeper(actors, sqlite_url, clock)
    order = record_order(keeper.journal, clock, 1)
    fill, _ = record_trade(keeper.journal, clock, order, "T1", 10, "1500")
    keeper.ref.ask(ApplyFill(fill), timeout=WAIT)

    stale = Difference(IssueType.UNKNOWN_POSITION, INFY_MIS, 0, 10, D("1500"))  # compared before the fill
    with pytest.raises(StalePosition, match="INFY is now 10"):
        keeper.ref.ask(CorrectPosition(stale, clock()), timeout=WAIT)
    assert keeper.positions()[INFY_MIS].quantity == 10
    assert store.load_reconciliation_log() == []
    assert store.load_positions()[0].quantity == 10


def test_a_correction_waits_for_a_fill_recorded_but_not_yet_applied(actors, sqlite_url, clock, store):
    # The trade is in the database and the broker's position has it, but the keeper has
    # not applied it yet: that is no difference. Applied first, it makes the comparison
    # stale, so nothing is "corrected" and the fill is not counted again later.
    keeper = Keeper(actors, sqlite_url, clock)
    order = record_order(keeper.journal, clock, 1)
    record_trade(keeper.journal, clock, order, "T1", 10, "1500")

    compared = Difference(IssueType.UNKNOWN_POSITION, INFY_MIS, 0, 10, D("1500"))
    with pytest.raises(StalePosition, match="INFY is now 10"):
        keeper.ref.ask(CorrectPosition(compared, clock()), timeout=WAIT)

    assert keeper.positions()[INFY_MIS].quantity == 10
    assert store.load_reconciliation_log() == [] and store.load_unapplied_fills() == []
    keeper.stop()
    assert Keeper(actors, sqlite_url, clock).positions()[INFY_MIS].quantity == 10


def test_a_fill_the_database_says_was_applied_brings_memory_up_to_the_database(actors, sqlite_url, clock, store):
    # The keeper's write of a fill was committed but its answer lost (a connection cut
    # during the COMMIT): memory is behind. When the fill comes again, the database says
    # it was applied; its position is the judge, and memory takes it.
    keeper = Keeper(actors, sqlite_url, clock)
    order = record_order(keeper.journal, clock, 1)
    fill, _ = record_trade(keeper.journal, clock, order, "T1", 10, "1500")
    moved = position_after(Position(*INFY_MIS), fill.side, 10, fill.price, fill.charges.total, fill.at).after
    keeper.journal.ask(RecordPosition(moved, "T1"), timeout=WAIT)  # written behind memory's back

    reply = new_future()
    keeper.ref.tell(ApplyFill(fill, reply=reply))  # as a tracker hands it over
    assert outcome(reply) is None  # not applied again

    assert keeper.positions()[INFY_MIS] == moved
    assert store.load_positions() == [moved]
    told = keeper.validator.wait_for(PositionChanged)
    assert (told.before.quantity, told.after) == (0, moved)
