"""The Store, the schema and its migrations, on SQLite and on PostgreSQL.

Every test taking ``database_url`` runs twice: once on a SQLite file, once on a brand-new
PostgreSQL database.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError

from domain import position as positions_domain
from domain.charges import charges_for_fill
from domain.enums import Exchange, OrderStatus, OrderType, Product, Side, Validity, Variety
from domain.fill import Fill
from domain.order import Order, OrderEvent, apply_fill, created, transition
from domain.order_request import OrderRequest
from domain.order_tag import broker_tag
from domain.position import Position
from persistence.database import create_engine_for, safe_url
from persistence.migrate import alembic_config, current_revision, head_revision, upgrade
from persistence.schema import metadata
from persistence.store import OrderNotFound, Store, op_fill, op_new_order, op_position

# Any prefix will do for orders made by hand: the Store stores the tag it is given.
PREFIX = "TEST"
NO_SUCH_ORDER = 999_999

UTC = timezone.utc
IST = timezone(timedelta(hours=5, minutes=30))
T0 = datetime(2024, 11, 25, 4, 15, 0, 123456, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --------------------------------------------------------------------------- builders


def request(**overrides) -> OrderRequest:
    fields = dict(
        symbol="INFY",
        exchange="NSE",
        side="BUY",
        quantity=10,
        order_type="LIMIT",
        price=Decimal("1500.10"),
        product="MIS",
        strategy_id=1,
    )
    fields.update(overrides)
    return OrderRequest(**fields)


def new_order(order_id: int = 1, when: datetime = T0, **overrides) -> tuple[Order, OrderEvent]:
    return created(Order.from_request(order_id, request(**overrides), when, tag=broker_tag(PREFIX, order_id)))


def fill_for(order: Order, trade_id: str, quantity: int, price: Decimal, when: datetime) -> Fill:
    # Rounded to the columns' 8 places, as the order tracker does: what is in memory is
    # exactly what a restart reads back.
    charges = charges_for_fill(order.exchange, order.symbol, order.product, order.side, quantity, price).rounded()
    return Fill(
        trade_id=trade_id,
        order_id=order.order_id,
        broker_order_id=order.broker_order_id,
        exchange=order.exchange,
        symbol=order.symbol,
        product=order.product,
        side=order.side,
        quantity=quantity,
        price=price,
        at=when,
        charges=charges,
    )


def submitted_and_open(store: Store, order_id: int = 1, **overrides) -> Order:
    """An order stored through PENDING -> SUBMITTED -> OPEN, as the OMS would."""
    order, event = new_order(order_id, **overrides)
    store.record_new_order(order, event)
    order, event = transition(order, OrderStatus.SUBMITTED, at(1), broker_order_id=f"B-{order_id}")
    store.record_transition(order, event)
    order, event = transition(order, OrderStatus.OPEN, at(2), {"broker_status": "OPEN"})
    store.record_transition(order, event)
    return order


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store.open(database_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    e = create_engine_for(database_url)
    try:
        yield e
    finally:
        e.dispose()


def count_rows(store: Store, table: str) -> int:
    (n,) = store.write_many([lambda conn: conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()])
    return int(n)


# --------------------------------------------------------------------------- orders


def test_an_order_with_every_field_set_reads_back_exactly(store: Store) -> None:
    order, event = new_order(
        order_type="SL",
        price=Decimal("1500.10"),
        trigger_price=Decimal("1499.95"),
        stop_loss=Decimal("1480.05"),
        take_profit=Decimal("1550.25"),
        tick_size=Decimal("0.05"),
        validity="IOC",
        metadata={"signal": "breakout", "levels": [1, 2.5, "x"], "nested": {"ok": True, "n": None}},
    )
    order = dataclasses.replace(
        order,
        validation_result={"passed": True, "margin_required": "15001.00", "checks": ["tick", "balance"]},
        filled_quantity=3,
        average_price=Decimal("1500.08333333"),
        filled_value=Decimal("4500.25"),
        broker_order_id="241125000123456",
        status=OrderStatus.OPEN,
        status_message="partially filled",
        error_message="an earlier attempt timed out",
        modification_count=2,
        client_order_id="strat-7:entry.0001",
        variety=Variety.AMO,
        created_at=datetime(2024, 11, 25, 9, 45, 0, 654321, tzinfo=IST),  # stored as UTC
        submitted_at=datetime(2024, 11, 25, 4, 15, 1, 5, tzinfo=UTC),
        updated_at=datetime(2024, 11, 25, 4, 16, 30, 1, tzinfo=UTC),
        filled_at=datetime(2024, 11, 25, 10, 0, 0, 7, tzinfo=IST),  # not filled, but every column is tested
    )
    for f in dataclasses.fields(Order):  # the test really sets every field
        assert getattr(order, f.name) not in (None, 0, {}), f.name

    store.record_new_order(order, event)
    loaded = store.load_order(order.order_id)

    assert loaded == order
    assert isinstance(loaded.order_id, int) and loaded.tag == f"{PREFIX}1"
    assert loaded.risk_amount == (Decimal("1500.10") - Decimal("1480.05")) * 10
    assert isinstance(loaded.strategy_id, int) and loaded.strategy_id == 1
    assert isinstance(loaded.exchange, Exchange) and isinstance(loaded.side, Side)
    assert isinstance(loaded.order_type, OrderType) and loaded.order_type is OrderType.SL
    assert isinstance(loaded.product, Product) and isinstance(loaded.validity, Validity)
    assert loaded.status is OrderStatus.OPEN
    assert loaded.variety is Variety.AMO  # the shared member, not a new object per order
    for name in ("price", "trigger_price", "stop_loss", "take_profit", "tick_size", "average_price", "risk_amount"):
        value = getattr(loaded, name)
        assert isinstance(value, Decimal), name
        assert value == getattr(order, name), name
    assert loaded.created_at.utcoffset() == timedelta(0)
    assert loaded.created_at == datetime(2024, 11, 25, 4, 15, 0, 654321, tzinfo=UTC)
    assert loaded.updated_at.tzinfo is not None and loaded.updated_at.utcoffset() == timedelta(0)
    assert loaded.filled_at == datetime(2024, 11, 25, 4, 30, 0, 7, tzinfo=UTC)
    assert loaded.filled_at.utcoffset() == timedelta(0) and loaded.submitted_at.utcoffset() == timedelta(0)
    # Money reads back at a trader's scale, whatever the column's scale.
    assert str(loaded.price) == "1500.10" and str(loaded.tick_size) == "0.05"
    assert loaded.metadata == order.metadata
    assert loaded.validation_result == order.validation_result


def test_unknown_order_loads_as_none(store: Store) -> None:
    assert store.load_order(NO_SUCH_ORDER) is None


def test_a_transition_updates_the_row_and_appends_one_event(store: Store) -> None:
    order, first = new_order()
    store.record_new_order(order, first)

    submitted, event = transition(order, OrderStatus.SUBMITTED, at(1), {"via": "kite"}, broker_order_id="B1")
    store.record_transition(submitted, event)
    modified, modify_event = transition(
        submitted,
        OrderStatus.OPEN,
        at(2),
        {"quantity": "20", "price": Decimal("1501.00")},
        quantity=20,
        price=Decimal("1501.00"),
        modification_count=1,
        status_message="modified",
    )
    store.record_transition(modified, modify_event)

    assert store.load_order(order.order_id) == modified
    events = store.load_events(order.order_id)
    assert [(e.from_status, e.to_status) for e in events] == [
        (None, OrderStatus.PENDING),
        (OrderStatus.PENDING, OrderStatus.SUBMITTED),
        (OrderStatus.SUBMITTED, OrderStatus.OPEN),
    ]
    assert events[0] == first
    assert events[1] == event
    # Decimals in a payload are stored as their exact strings.
    assert events[2].payload == {"quantity": "20", "price": "1501.00"}
    assert events[2].at == at(2) and events[2].at.utcoffset() == timedelta(0)


def test_a_transition_of_an_unknown_order_writes_nothing(store: Store) -> None:
    order, _ = new_order(77)
    moved, event = transition(order, OrderStatus.SUBMITTED, at(1))
    with pytest.raises(OrderNotFound):
        store.record_transition(moved, event)
    assert store.load_events() == []


# --------------------------------------------------------------------------- fills


def test_a_fill_is_stored_with_its_order_change_and_event(store: Store) -> None:
    order = submitted_and_open(store)
    fill = fill_for(order, "T-1", 4, Decimal("1500.05"), at(3))
    filled, event = apply_fill(order, fill.quantity, fill.price, fill.at, fill.trade_id)

    assert store.record_fill(fill, filled, event) is True

    assert store.load_fills() == [fill]
    assert store.load_fills(order.order_id) == [fill]
    assert store.load_fills(NO_SUCH_ORDER) == []
    loaded = store.load_fills()[0]
    assert loaded.charges == fill.charges  # every component exact, from its own column
    assert loaded.at.utcoffset() == timedelta(0)
    assert store.load_order(order.order_id) == filled
    assert store.load_events(order.order_id)[-1] == event
    assert store.trade_ids(order.order_id) == {"T-1"}
    assert store.trade_ids(NO_SUCH_ORDER) == set()
    # The guide's columns: the order's integer id, the broker's trade id, one column per
    # charge and their total.
    (row,) = store.write_many([
        lambda conn: conn.execute(text(
            "SELECT order_id, broker_trade_id, brokerage, stt, exchange_txn_charge, gst, stamp_duty, sebi_fee,"
            " total_charges FROM trades WHERE broker_trade_id = 'T-1'"
        )).mappings().one()
    ])
    assert row["order_id"] == order.order_id and row["broker_trade_id"] == "T-1"
    c = fill.charges
    stored = {k: Decimal(str(v)) for k, v in row.items() if k not in ("order_id", "broker_trade_id")}
    assert stored == {
        "brokerage": c.brokerage, "stt": c.stt, "exchange_txn_charge": c.exchange_charge, "gst": c.gst,
        "stamp_duty": c.stamp_duty, "sebi_fee": c.sebi_fee, "total_charges": c.total,
    }
    assert stored["total_charges"] == sum(v for k, v in stored.items() if k != "total_charges")


def test_charges_finer_than_the_columns_are_rounded_and_still_add_up(store: Store) -> None:
    """Components are rounded half away from zero to the columns' 8 places, and
    total_charges is the sum of the rounded components (as the guide defines it), not
    the rounded exact total, which can differ in the last place."""
    order = submitted_and_open(store)
    exact = charges_for_fill(order.exchange, order.symbol, order.product, order.side, 1, Decimal("1500.05"))
    assert exact.gst == Decimal("0.08929197630") and exact.exchange_charge == Decimal("0.044551485")
    # The case where the two disagree: 0.63036001 rounded whole, 0.63036002 summed.
    assert exact.total.quantize(Decimal("1E-8")) != exact.rounded().total
    fill = dataclasses.replace(fill_for(order, "T-1", 1, Decimal("1500.05"), at(3)), charges=exact)
    filled, event = apply_fill(order, 1, fill.price, fill.at, fill.trade_id)
    assert store.record_fill(fill, filled, event) is True

    (loaded,) = store.load_fills()
    assert loaded.charges == exact.rounded()
    assert loaded.charges.gst == Decimal("0.08929198") and loaded.charges.exchange_charge == Decimal("0.04455149")
    (total,) = store.write_many(
        [lambda conn: conn.execute(text("SELECT total_charges FROM trades WHERE broker_trade_id = 'T-1'")).scalar_one()]
    )
    assert Decimal(str(total)) == exact.rounded().total == Decimal("0.63036002")


def test_a_fill_with_a_trade_id_already_stored_writes_nothing(store: Store) -> None:
    order = submitted_and_open(store)
    fill = fill_for(order, "T-1", 4, Decimal("1500.05"), at(3))
    once, event = apply_fill(order, 4, fill.price, fill.at, fill.trade_id)
    assert store.record_fill(fill, once, event) is True
    order_row = store.load_order(order.order_id)
    events = store.load_events()

    # The same trade again, as a replayed broker update would bring it.
    twice, again = apply_fill(once, 4, fill.price, at(4), fill.trade_id)
    assert store.record_fill(fill, twice, again) is False
    # Even a different fill object carrying the same trade id.
    other = dataclasses.replace(fill, quantity=2, at=at(5))
    assert store.record_fill(other, twice, again) is False

    assert store.load_order(order.order_id) == order_row
    assert store.load_order(order.order_id).filled_quantity == 4
    assert store.load_events() == events
    assert store.load_fills() == [fill]


def test_load_unapplied_fills_lists_fills_whose_position_is_not_written(store: Store) -> None:
    order = submitted_and_open(store)
    f1 = fill_for(order, "T-1", 4, Decimal("1500.05"), at(3))
    order, e1 = apply_fill(order, 4, f1.price, f1.at, f1.trade_id)
    store.record_fill(f1, order, e1)
    f2 = fill_for(order, "T-2", 6, Decimal("1500.10"), at(4))
    order, e2 = apply_fill(order, 6, f2.price, f2.at, f2.trade_id)
    store.record_fill(f2, order, e2)
    assert order.status is OrderStatus.FILLED

    assert store.load_unapplied_fills() == [f1, f2]

    change = positions_domain.apply_fill(
        Position(Exchange.NSE, "INFY", Product.MIS), Side.BUY, 4, f1.price, Decimal("1.25"), f1.at
    )
    store.record_position(change.after, applied_trade_id="T-1")
    assert store.load_unapplied_fills() == [f2]


# --------------------------------------------------------------------------- positions


def test_positions_are_upserted_by_exchange_symbol_and_product(store: Store) -> None:
    order = submitted_and_open(store)
    fill = fill_for(order, "T-1", 10, Decimal("1500.05"), at(3))
    filled, event = apply_fill(order, 10, fill.price, fill.at, fill.trade_id)
    store.record_fill(fill, filled, event)

    mis = positions_domain.apply_fill(
        Position(Exchange.NSE, "INFY", Product.MIS), Side.BUY, 10, Decimal("1500.05"), Decimal("12.34"), at(3)
    ).after
    cnc = positions_domain.apply_fill(
        Position(Exchange.NSE, "INFY", Product.CNC), Side.BUY, 5, Decimal("1490.00"), Decimal("1.5"), at(3)
    ).after
    bse = positions_domain.apply_fill(
        Position(Exchange.BSE, "INFY", Product.MIS), Side.SELL, 3, Decimal("1501.00"), Decimal("0"), at(3)
    ).after
    store.record_position(mis, applied_trade_id="T-1")
    store.record_position(cnc)
    store.record_position(bse)

    assert {p.key: p for p in store.load_positions()} == {p.key: p for p in (mis, cnc, bse)}
    assert store.load_unapplied_fills() == []

    # A second write of the MIS position replaces that row and leaves the others alone.
    reduced = positions_domain.apply_fill(mis, Side.SELL, 4, Decimal("1510.00"), Decimal("2.5"), at(9))
    marked = positions_domain.mark(reduced.after, Decimal("1512.35"), at(10))
    assert marked.unrealized_pnl != 0 and marked.realized_pnl != 0
    store.record_position(marked)

    loaded = {p.key: p for p in store.load_positions()}
    assert len(loaded) == 3
    assert loaded[mis.key] == marked
    assert loaded[cnc.key] == cnc and loaded[bse.key] == bse
    assert loaded[bse.key].quantity == -3  # signed: a short
    assert loaded[mis.key].updated_at == at(10)
    (stored_unrealized,) = store.write_many(
        [
            lambda conn: conn.execute(
                text("SELECT unrealized_pnl FROM positions WHERE product = 'MIS' AND exchange = 'NSE'")
            ).scalar_one()
        ]
    )
    assert Decimal(str(stored_unrealized)) == marked.unrealized_pnl


def test_a_flat_position_without_a_price_round_trips(store: Store) -> None:
    flat = Position(Exchange.NFO, "NIFTY24DEC24000CE", Product.NRML, updated_at=at(2), opened_at=at(1), closed_at=at(2))
    store.record_position(flat)
    assert store.load_positions() == [flat]


def test_a_position_with_no_time_at_all_is_refused(store: Store) -> None:
    """opened_at is NOT NULL (the guide's schema): a position row exists only once a fill
    has moved it, and the Store invents no time for one that never was."""
    with pytest.raises(IntegrityError):
        store.record_position(Position(Exchange.NFO, "NIFTY24DEC24000CE", Product.NRML))
    assert store.load_positions() == []


def test_a_position_that_goes_flat_is_closed_and_reopens(store: Store) -> None:
    key = Position(Exchange.NSE, "INFY", Product.MIS)
    opened = positions_domain.apply_fill(
        key, Side.BUY, 10, Decimal("1500.05"), Decimal("1"), at(1), Decimal("1480.00"), Decimal("1550.00")
    ).after
    store.record_position(opened)
    (loaded,) = store.load_positions()
    assert loaded == opened
    assert (loaded.opened_at, loaded.closed_at) == (at(1), None)
    assert (loaded.stop_loss, loaded.take_profit) == (Decimal("1480.00"), Decimal("1550.00"))

    flat = positions_domain.apply_fill(opened, Side.SELL, 10, Decimal("1510.00"), Decimal("1"), at(5)).after
    store.record_position(flat)
    (loaded,) = store.load_positions()
    assert loaded == flat
    assert loaded.quantity == 0 and (loaded.opened_at, loaded.closed_at) == (at(1), at(5))
    assert loaded.stop_loss is None and loaded.take_profit is None

    again = positions_domain.apply_fill(flat, Side.SELL, 2, Decimal("1512.00"), Decimal("1"), at(9), Decimal("1530.00")).after
    store.record_position(again)
    (loaded,) = store.load_positions()
    assert loaded == again
    assert loaded.quantity == -2 and (loaded.opened_at, loaded.closed_at) == (at(9), None)
    assert loaded.stop_loss == Decimal("1530.00")
    (row,) = store.write_many([
        lambda conn: conn.execute(text("SELECT opened_at, closed_at FROM positions WHERE symbol = 'INFY'")).one()
    ])
    assert row.closed_at is None and row.opened_at is not None


def test_marking_an_unknown_trade_applied_writes_nothing(store: Store) -> None:
    pos = Position(Exchange.NSE, "INFY", Product.MIS, 1, Decimal("10"), updated_at=at(1))
    with pytest.raises(LookupError):
        store.record_position(pos, applied_trade_id="no-such-trade")
    assert store.load_positions() == []


def test_money_the_columns_cannot_hold_exactly_is_refused_never_rounded(store: Store) -> None:
    """NUMERIC(20, 8): a ninth decimal place, or 10^12 and above, is refused with the
    column's name, on SQLite and PostgreSQL alike, and nothing is written."""
    def position(**money: Decimal) -> Position:
        fields = {"average_price": Decimal("100.12345678"), "realized_pnl": Decimal(0), "charges": Decimal(0), **money}
        return Position(Exchange.NSE, "INFY", Product.MIS, quantity=1, updated_at=at(1), **fields)

    for bad, words in (
        ({"average_price": Decimal("100.123456785")}, "average_price: 100.123456785 has more than 8 decimal places"),
        ({"realized_pnl": Decimal("-0.000000005")}, "realized_pnl"),
        ({"charges": Decimal("1E+12")}, "charges: 1E+12 does not fit NUMERIC(20, 8)"),
        ({"charges": Decimal("1E+999999")}, "does not fit"),
    ):
        with pytest.raises(Exception, match=words.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
            store.record_position(position(**bad))
    assert store.load_positions() == []
    store.record_position(position(charges=Decimal("2.52144005")))
    (loaded,) = store.load_positions()
    assert loaded.average_price == Decimal("100.12345678") and loaded.charges == Decimal("2.52144005")


# --------------------------------------------------------------------------- reads


def test_load_orders_filters_and_pages_in_id_order(store: Store) -> None:
    a, ea = new_order(1, when=at(30))
    b, eb = new_order(2, when=at(10), strategy_id=42)
    c, ec = new_order(3, when=at(20))
    for o, e in ((a, ea), (b, eb), (c, ec)):
        store.record_new_order(o, e)
    c_done, e = transition(c, OrderStatus.CANCELLED, at(40))
    store.record_transition(c_done, e)
    b_sub, e = transition(b, OrderStatus.SUBMITTED, at(41))
    store.record_transition(b_sub, e)

    # Id order, whatever the clock said: ids are the cursor pages are read by.
    assert [o.order_id for o in store.load_orders()] == [1, 2, 3]
    assert [o.order_id for o in store.load_orders(limit=2)] == [1, 2]
    assert [o.order_id for o in store.load_orders(after_id=2)] == [3]
    assert store.load_orders([OrderStatus.PENDING]) == [a]
    assert store.load_orders({OrderStatus.CANCELLED, OrderStatus.SUBMITTED}) == [b_sub, c_done]
    assert store.load_orders(strategy_id=42) == [b_sub]
    assert store.load_orders(strategy_id=1) == [a, c_done]
    assert store.load_orders([OrderStatus.PENDING], strategy_id=42) == []
    assert store.load_orders([]) == []
    assert store.load_live_orders() == [a, b_sub]
    counts = store.count_orders_by_status()
    assert counts[OrderStatus.PENDING] == 1
    assert counts[OrderStatus.SUBMITTED] == 1
    assert counts[OrderStatus.CANCELLED] == 1
    assert sum(counts.values()) == 3
    assert set(counts) == set(OrderStatus)


def test_filled_quantities_answers_many_orders_at_once_and_only_the_accounts_own(store: Store) -> None:
    # More ids than one query takes: the answer must still cover them all.
    orders_ = [new_order(n) for n in range(1, 1203)]
    store.write_many([op_new_order(order, event) for order, event in orders_])
    placed = submitted_and_open(store, 2000)
    fill = fill_for(placed, "T-1", 3, Decimal("100"), at(5))
    filled, event = apply_fill(placed, 3, Decimal("100"), at(5), "T-1")
    store.record_fill(fill, filled, event)

    asked = [*range(1, 1203), 2000, 99999]
    found = store.filled_quantities(asked)
    assert found == {**{n: 0 for n in range(1, 1203)}, 2000: 3}  # 99999 is nobody's
    other = Store(store.engine, account="OTHER")
    assert other.filled_quantities(asked) == {}
    assert store.filled_quantities([]) == {}


def test_events_of_all_orders_come_back_in_write_order(store: Store) -> None:
    a, ea = new_order(1)
    b, eb = new_order(2)
    store.record_new_order(a, ea)
    store.record_new_order(b, eb)
    a2, ea2 = transition(a, OrderStatus.SUBMITTED, at(1))
    store.record_transition(a2, ea2)
    assert store.load_events() == [ea, eb, ea2]
    assert store.load_events(2) == [eb]


def test_reconciliation_entries_round_trip(store: Store) -> None:
    store.record_reconciliation(
        at(5),
        "QUANTITY_MISMATCH",
        symbol="INFY",
        internal_quantity=10,
        broker_quantity=12,
        resolved=True,
        resolution="adopted broker quantity",
        resolved_at=at(7),
        exchange=Exchange.NSE,
        product=Product.CNC,
        metadata={"average_price": Decimal("1500.05"), "note": "manual trade at broker"},
    )
    store.record_reconciliation(at(6), "MISSED_FILL", symbol="TCS", order_id=9)

    first, second = store.load_reconciliation_log()
    assert first["detected_at"] == at(5) and first["detected_at"].utcoffset() == timedelta(0)
    assert first["issue_type"] == "QUANTITY_MISMATCH"
    assert (first["exchange"], first["symbol"], first["product"]) == ("NSE", "INFY", "CNC")
    assert (first["internal_quantity"], first["broker_quantity"]) == (10, 12)
    assert first["resolved"] is True and first["resolved_at"] == at(7)
    assert first["resolution"] == "adopted broker quantity"
    assert first["metadata"] == {"average_price": "1500.05", "note": "manual trade at broker"}
    assert first["order_id"] is None and first["account"] == store.account
    assert second["issue_type"] == "MISSED_FILL" and second["order_id"] == 9 and second["symbol"] == "TCS"
    assert second["resolved"] is False and second["resolved_at"] is None and second["resolution"] is None
    assert second["internal_quantity"] is None and second["broker_quantity"] is None
    assert second["metadata"] is None and second["exchange"] is None


# --------------------------------------------------------------------------- atomicity


def test_a_new_order_whose_event_fails_leaves_nothing_written(store: Store) -> None:
    order, event = new_order(1)
    stray = dataclasses.replace(event, order_id=NO_SUCH_ORDER)  # violates the FK
    with pytest.raises(IntegrityError):
        store.record_new_order(order, stray)
    assert store.load_order(1) is None
    assert store.load_events() == []
    # The Store is still usable afterwards.
    store.record_new_order(order, event)
    assert store.load_order(1) == order


def test_a_duplicate_order_id_leaves_nothing_written(store: Store) -> None:
    order, event = new_order(1)
    store.record_new_order(order, event)
    clash, clash_event = new_order(1, symbol="TCS", when=at(9))
    with pytest.raises(IntegrityError):
        store.record_new_order(clash, clash_event)
    # Another id under a tag already taken: the broker could not tell the two apart.
    same_tag, same_tag_event = new_order(2, symbol="TCS", when=at(9))
    same_tag = dataclasses.replace(same_tag, tag=order.tag)
    with pytest.raises(IntegrityError):
        store.record_new_order(same_tag, same_tag_event)
    assert store.load_order(1) == order
    assert store.load_order(2) is None
    assert store.load_events() == [event]


def test_a_fill_whose_order_update_fails_leaves_no_trade(store: Store) -> None:
    order = submitted_and_open(store)
    fill = fill_for(order, "T-1", 4, Decimal("1500.05"), at(3))
    filled, event = apply_fill(order, 4, fill.price, fill.at, fill.trade_id)
    broken = dataclasses.replace(filled, filled_quantity=99)  # violates the CHECK
    with pytest.raises(IntegrityError):
        store.record_fill(fill, broken, event)
    assert store.load_fills() == []
    assert store.load_order(order.order_id) == order
    # Nothing was marked as seen: the fill can still be recorded properly.
    assert store.record_fill(fill, filled, event) is True


def test_write_many_commits_all_or_nothing_and_returns_each_result(store: Store) -> None:
    order, event = new_order(1)
    order2, event2 = new_order(2)
    stray = dataclasses.replace(event2, order_id=NO_SUCH_ORDER)
    with pytest.raises(IntegrityError):
        store.write_many([op_new_order(order, event), op_new_order(order2, stray)])
    assert store.load_orders() == []

    opened = dataclasses.replace(order, status=OrderStatus.OPEN, broker_order_id="B1")
    fill = fill_for(opened, "T-1", 10, Decimal("1500.05"), at(3))
    filled, fill_event = apply_fill(opened, 10, fill.price, fill.at, fill.trade_id)
    pos = positions_domain.apply_fill(
        Position(Exchange.NSE, "INFY", Product.MIS), Side.BUY, 10, fill.price, Decimal("3"), fill.at
    ).after
    results = store.write_many(
        [
            op_new_order(order, event),
            op_fill(fill, filled, fill_event),
            op_position(pos, "T-1"),
            op_fill(fill, filled, fill_event),  # the duplicate inside the same batch
        ]
    )
    assert results == [None, True, None, False]
    assert store.load_order(1) == filled
    assert store.load_positions() == [pos]
    assert store.load_unapplied_fills() == []
    assert len(store.load_events(1)) == 2


def test_floats_and_naive_datetimes_are_refused(store: Store) -> None:
    order, event = new_order(1)
    with pytest.raises(StatementError, match="never float"):
        store.record_new_order(dataclasses.replace(order, price=1500.1), event)  # type: ignore[arg-type]
    with pytest.raises(StatementError, match="timezone-aware"):
        store.record_new_order(dataclasses.replace(order, updated_at=datetime(2024, 11, 25, 9, 0)), event)
    assert store.load_orders() == []


# --------------------------------------------------------------------------- migrations and schema

EXPECTED_COLUMNS = {
    "orders": {
        "id", "account", "tag", "broker_order_id", "strategy_id", "symbol", "exchange", "side",
        "quantity", "order_type", "product", "validity", "price", "trigger_price", "stop_loss",
        "take_profit", "risk_amount", "tick_size", "status", "status_message", "filled_quantity",
        "average_price", "filled_value", "created_at", "submitted_at", "updated_at", "filled_at",
        "validation_result", "error_message", "metadata", "modification_count", "client_order_id",
        "variety",
    },
    "order_events": {"id", "account", "order_id", "at", "from_status", "to_status", "payload"},
    "trades": {
        "id", "account", "order_id", "broker_trade_id", "broker_order_id", "symbol", "exchange",
        "product", "side", "quantity", "price", "brokerage", "stt", "exchange_txn_charge", "gst",
        "stamp_duty", "sebi_fee", "total_charges", "executed_at", "metadata", "position_applied",
    },
    "positions": {
        "id", "account", "exchange", "symbol", "product", "quantity", "average_price",
        "realized_pnl", "unrealized_pnl", "stop_loss", "take_profit", "charges", "last_price",
        "opened_at", "updated_at", "closed_at", "metadata",
    },
    "reconciliation_log": {
        "id", "account", "symbol", "issue_type", "internal_quantity", "broker_quantity", "resolved",
        "resolution", "detected_at", "resolved_at", "metadata", "exchange", "product", "order_id",
    },
    "oms_database": {"key", "value"},
    "trading_states": {"id", "account", "state", "reason", "changed_at"},
    "day_baselines": {"account", "day", "realized_pnl", "unrealized_pnl", "charges", "recorded_at"},
    "api_keys": {"id", "account", "name", "key_hash", "strategies", "read_only", "created_at", "revoked_at"},
    # The paper exchange's book (0004): the broker's far side, apart from the OMS's tables.
    "paper_orders": {
        "account", "broker_order_id", "arrival", "tag", "exchange", "symbol", "side", "order_type",
        "product", "validity", "quantity", "price", "trigger_price", "status", "filled_quantity",
        "filled_value", "average_price", "message", "placed_at", "updated_at",
    },
    "paper_trades": {"account", "trade_id", "broker_order_id", "seq", "quantity", "price", "executed_at"},
    "paper_prices": {"account", "exchange", "symbol", "price", "updated_at"},
    "paper_counters": {"account", "id_prefix", "order_seq", "trade_seq"},
    "instruments": {
        "exchange", "tradingsymbol", "instrument_token", "name", "instrument_type", "segment", "expiry",
        "strike", "tick_size", "lot_size", "loaded_on",
    },
}
JSON_COLUMNS = {
    ("orders", "validation_result"), ("orders", "metadata"), ("order_events", "payload"),
    ("trades", "metadata"), ("positions", "metadata"), ("reconciliation_log", "metadata"), ("api_keys", "strategies"),
}


def test_migrations_create_the_schema_and_running_them_again_is_a_no_op(engine: Engine) -> None:
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision() == "0010_order_variety"
    upgrade(engine)  # again: nothing to do, nothing breaks
    upgrade(engine.url.render_as_string(hide_password=False))  # by URL too
    assert current_revision(engine) == head_revision()

    inspector = inspect(engine)
    assert set(inspector.get_table_names()) == set(EXPECTED_COLUMNS) | {"alembic_version"}
    for table, columns in EXPECTED_COLUMNS.items():
        assert {c["name"] for c in inspector.get_columns(table)} == columns, table

    def uniques(table: str) -> set[tuple[str, ...]]:
        return {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}

    # Per account: several OMS processes (one per broker account) share one database.
    assert {("account", "tag"), ("account", "broker_order_id")} <= uniques("orders")
    assert ("account", "broker_trade_id") in uniques("trades")
    assert ("account", "exchange", "symbol", "product") in uniques("positions")
    for child in ("order_events", "trades"):
        fks = {(fk["referred_table"], tuple(fk["constrained_columns"]), tuple(fk["referred_columns"]))
               for fk in inspector.get_foreign_keys(child)}
        assert fks == {("orders", ("order_id",), ("id",))}, child
    indexed = {tuple(ix["column_names"]) for ix in inspector.get_indexes("orders")}
    assert {("broker_order_id",), ("strategy_id",), ("status",), ("symbol",)} <= indexed
    # Idempotent placement's last guard: one order per client order id and account.
    assert any(ix["unique"] and ix["column_names"] == ["account", "client_order_id"] for ix in inspector.get_indexes("orders"))
    assert ("account", "name") in uniques("api_keys") and ("key_hash",) in uniques("api_keys")
    types = {c["name"]: c["type"] for c in inspector.get_columns("orders")}
    assert types["id"].python_type is int and types["strategy_id"].python_type is int


def test_the_migration_creates_exactly_what_schema_py_declares(engine: Engine) -> None:
    upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_migrations_downgrade_to_nothing_and_up_again(engine: Engine) -> None:
    upgrade(engine, "0002_order_filled_value")
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def test_the_guide_schema_revision_refuses_to_downgrade_and_changes_nothing(engine: Engine) -> None:
    """0003 turns text order ids into integers: it cannot be undone in place, so a
    downgrade is refused outright (restore a backup instead), before anything changes."""
    upgrade(engine)
    store = Store(engine)
    order, event = new_order()
    store.record_new_order(order, event)
    with pytest.raises(NotImplementedError, match="backup"):
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0002_order_filled_value")
    assert current_revision(engine) == head_revision()
    assert set(inspect(engine).get_table_names()) == set(EXPECTED_COLUMNS) | {"alembic_version"}
    assert store.load_order(order.order_id) == order
    assert store.load_events() == [event]
    store.close()


def test_store_open_migrates_and_data_survives_reopening(database_url: str) -> None:
    order, event = new_order()
    with Store.open(database_url) as first:
        first.record_new_order(order, event)
    with Store.open(database_url) as second:  # migrate again: a no-op
        assert second.load_order(order.order_id) == order
        assert second.load_events() == [event]


def test_order_events_is_append_only_in_the_database_itself(store: Store, engine: Engine) -> None:
    order, event = new_order()
    store.record_new_order(order, event)

    refused = [
        "UPDATE order_events SET to_status = 'FILLED'",
        "UPDATE order_events SET payload = NULL WHERE order_id = 1",
        "UPDATE order_events SET account = 'other'",
        "DELETE FROM order_events",
        "DELETE FROM order_events WHERE order_id = 1",
    ]
    if engine.dialect.name == "postgresql":
        # Statement-level triggers: refused even when no row matches, and TRUNCATE too.
        # (SQLite's triggers are per row; SQLite has no TRUNCATE.)
        refused += ["DELETE FROM order_events WHERE order_id = -1", "TRUNCATE order_events"]
    for statement in refused:
        with pytest.raises(DBAPIError, match="order_events is append-only"):
            with engine.begin() as conn:
                conn.execute(text(statement))
    assert store.load_events() == [event]


@pytest.mark.postgres
def test_json_columns_are_jsonb_and_money_is_numeric_on_postgresql(fresh_postgres_url: str) -> None:
    engine = create_engine_for(fresh_postgres_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND data_type = 'jsonb'"
                )
            ).all()
            money = conn.execute(
                text(
                    "SELECT data_type, numeric_precision, numeric_scale FROM information_schema.columns "
                    "WHERE table_name = 'orders' AND column_name = 'average_price'"
                )
            ).one()
            charge = conn.execute(
                text(
                    "SELECT data_type, numeric_precision, numeric_scale FROM information_schema.columns "
                    "WHERE table_name = 'trades' AND column_name = 'total_charges'"
                )
            ).one()
            stamp = conn.execute(
                text(
                    "SELECT data_type FROM information_schema.columns "
                    "WHERE table_name = 'order_events' AND column_name = 'at'"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert {tuple(r) for r in rows} == JSON_COLUMNS
    assert tuple(money) == ("numeric", 24, 8)
    assert tuple(charge) == ("numeric", 20, 8)
    assert stamp == "timestamp with time zone"


def test_sqlite_is_durable_wal_with_foreign_keys(sqlite_url: str) -> None:
    engine = create_engine_for(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
    finally:
        engine.dispose()


def test_sqlite_transactions_begin_at_the_driver_and_a_refused_begin_is_raised_as_sqlalchemys_error(sqlite_url: str) -> None:
    engine = create_engine_for(sqlite_url)
    try:
        with engine.connect() as conn:
            with conn.begin():
                assert conn.connection.dbapi_connection.in_transaction  # BEGIN was sent, at the driver
                conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            assert not conn.connection.dbapi_connection.in_transaction
            conn.connection.dbapi_connection.execute("BEGIN")  # one already open under SQLAlchemy's feet
            with pytest.raises(DBAPIError, match="within a transaction"):
                conn.begin()
    finally:
        engine.dispose()


def test_safe_url_never_shows_the_password() -> None:
    shown = safe_url("postgresql+psycopg://oms:s3cret@db.example:5432/oms")
    assert "s3cret" not in shown
    assert shown == "postgresql+psycopg://oms:***@db.example:5432/oms"
    assert safe_url("sqlite:///var/oms.db") == "sqlite:///var/oms.db"


# --------------------------------------------------------------------------- reconnecting


def _kill_store_connection(store: Store, database_url: str) -> None:
    """Make the Store's connection die under it, as a database restart would."""
    if database_url.startswith("sqlite"):
        (raw,) = store.write_many([lambda conn: conn.connection.dbapi_connection])
        raw.close()
        return
    (pid,) = store.write_many([lambda conn: conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()])
    killer = create_engine_for(database_url)
    try:
        with killer.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    finally:
        killer.dispose()


def test_the_store_reconnects_after_its_connection_is_killed(store: Store, database_url: str) -> None:
    first, first_event = new_order(1)
    store.record_new_order(first, first_event)
    _kill_store_connection(store, database_url)

    lost, lost_event = new_order(2)
    with pytest.raises(DBAPIError):
        store.record_new_order(lost, lost_event)  # raises; not retried behind our back

    again, again_event = new_order(3)
    store.record_new_order(again, again_event)  # a fresh connection
    assert [o.order_id for o in store.load_orders()] == [1, 3]
    assert store.load_order(2) is None


def test_upgrading_from_the_first_revision_backfills_filled_value_from_trades(engine: Engine) -> None:
    upgrade(engine, "0001_initial")
    now = datetime(2026, 11, 25, 4, 0, tzinfo=timezone.utc)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO orders (order_id, strategy_id, symbol, exchange, side, quantity, order_type,"
                " product, validity, status, filled_quantity, average_price, modification_count,"
                " created_at, updated_at) VALUES ('OLD-1', 's', 'INFY', 'NSE', 'BUY', 3, 'MARKET', 'MIS',"
                " 'DAY', 'FILLED', 3, '100.01666666', 0, :t, :t)"
            ),
            {"t": now.isoformat() if engine.dialect.name == "sqlite" else now},
        )
        for trade_id, quantity, price in (("T1", 1, "100.00"), ("T2", 2, "100.025")):
            conn.execute(
                text(
                    "INSERT INTO trades (trade_id, order_id, symbol, exchange, product, side, quantity, price,"
                    " charges, charges_detail, executed_at, position_applied) VALUES (:id, 'OLD-1', 'INFY',"
                    " 'NSE', 'MIS', 'BUY', :q, :p, '0', '{}', :t, true)"
                ),
                {"id": trade_id, "q": quantity, "p": price, "t": now.isoformat() if engine.dialect.name == "sqlite" else now},
            )

    upgrade(engine)

    store = Store(engine)
    try:
        (order,) = store.load_orders()
        assert order.tag == "OLD-1"  # the old text id, which the broker knows the order by
        assert order.filled_value == Decimal("300.05")
        assert order.strategy_id == 0 and order.metadata == {"strategy": "s"}
        assert {f.trade_id for f in store.load_fills(order.order_id)} == {"T1", "T2"}
    finally:
        store._conn and store._conn.close()
