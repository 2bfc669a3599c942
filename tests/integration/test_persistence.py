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
from domain.enums import Exchange, OrderStatus, OrderType, Product, Side, Validity
from domain.fill import Fill
from domain.order import Order, OrderEvent, apply_fill, created, transition
from domain.order_request import OrderRequest
from domain.position import Position
from persistence.database import create_engine_for, safe_url
from persistence.migrate import alembic_config, current_revision, head_revision, upgrade
from persistence.schema import metadata
from persistence.store import OrderNotFound, Store, op_fill, op_new_order, op_position

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
        strategy_id="momentum-1",
    )
    fields.update(overrides)
    return OrderRequest(**fields)


def new_order(order_id: str = "OMS-1", when: datetime = T0, **overrides) -> tuple[Order, OrderEvent]:
    return created(Order.from_request(order_id, request(**overrides), when))


def fill_for(order: Order, trade_id: str, quantity: int, price: Decimal, when: datetime) -> Fill:
    charges = charges_for_fill(order.exchange, order.symbol, order.product, order.side, quantity, price)
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


def submitted_and_open(store: Store, order_id: str = "OMS-1", **overrides) -> Order:
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
        modification_count=2,
        created_at=datetime(2024, 11, 25, 9, 45, 0, 654321, tzinfo=IST),  # stored as UTC
        updated_at=datetime(2024, 11, 25, 4, 16, 30, 1, tzinfo=UTC),
    )
    for f in dataclasses.fields(Order):  # the test really sets every field
        assert getattr(order, f.name) not in (None, 0, {}), f.name

    store.record_new_order(order, event)
    loaded = store.load_order(order.order_id)

    assert loaded == order
    assert isinstance(loaded.exchange, Exchange) and isinstance(loaded.side, Side)
    assert isinstance(loaded.order_type, OrderType) and loaded.order_type is OrderType.SL
    assert isinstance(loaded.product, Product) and isinstance(loaded.validity, Validity)
    assert loaded.status is OrderStatus.OPEN
    for name in ("price", "trigger_price", "stop_loss", "take_profit", "tick_size", "average_price"):
        value = getattr(loaded, name)
        assert isinstance(value, Decimal), name
        assert value == getattr(order, name), name
    assert loaded.created_at.utcoffset() == timedelta(0)
    assert loaded.created_at == datetime(2024, 11, 25, 4, 15, 0, 654321, tzinfo=UTC)
    assert loaded.updated_at.tzinfo is not None and loaded.updated_at.utcoffset() == timedelta(0)
    assert loaded.metadata == order.metadata
    assert loaded.validation_result == order.validation_result


def test_unknown_order_loads_as_none(store: Store) -> None:
    assert store.load_order("nope") is None


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
    order, _ = new_order("GHOST")
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
    assert store.load_fills("other") == []
    loaded = store.load_fills()[0]
    assert loaded.charges == fill.charges  # every component exact, from charges_detail
    assert loaded.at.utcoffset() == timedelta(0)
    assert store.load_order(order.order_id) == filled
    assert store.load_events(order.order_id)[-1] == event
    assert store.trade_ids(order.order_id) == {"T-1"}
    assert store.trade_ids("other") == set()
    # The charges column holds the total (to the column's 8 places).
    (total,) = store.write_many(
        [lambda conn: conn.execute(text("SELECT charges FROM trades WHERE trade_id = 'T-1'")).scalar_one()]
    )
    assert Decimal(str(total)) == fill.charges.total.quantize(Decimal("1E-8"))


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
    flat = Position(Exchange.NFO, "NIFTY24DEC24000CE", Product.NRML)
    store.record_position(flat)
    assert store.load_positions() == [flat]


def test_marking_an_unknown_trade_applied_writes_nothing(store: Store) -> None:
    pos = Position(Exchange.NSE, "INFY", Product.MIS, 1, Decimal("10"), updated_at=at(1))
    with pytest.raises(LookupError):
        store.record_position(pos, applied_trade_id="no-such-trade")
    assert store.load_positions() == []


def test_money_columns_keep_eight_places_rounded_half_away_from_zero(store: Store) -> None:
    """NUMERIC(20, 8): the same rounding on SQLite (exact text) as on PostgreSQL."""
    pos = Position(
        Exchange.NSE,
        "INFY",
        Product.MIS,
        quantity=1,
        average_price=Decimal("100.123456785"),
        realized_pnl=Decimal("-0.000000005"),
        charges=Decimal("2.52144004520"),
        updated_at=at(1),
    )
    store.record_position(pos)
    (loaded,) = store.load_positions()
    assert loaded.average_price == Decimal("100.12345679")
    assert loaded.realized_pnl == Decimal("-0.00000001")
    assert loaded.charges == Decimal("2.52144005")


# --------------------------------------------------------------------------- reads


def test_load_orders_filters_and_orders_by_creation_time(store: Store) -> None:
    a, ea = new_order("A", when=at(30))
    b, eb = new_order("B", when=at(10), strategy_id="meanrev")
    c, ec = new_order("C", when=at(20))
    for o, e in ((a, ea), (b, eb), (c, ec)):
        store.record_new_order(o, e)
    c_done, e = transition(c, OrderStatus.CANCELLED, at(40))
    store.record_transition(c_done, e)
    b_sub, e = transition(b, OrderStatus.SUBMITTED, at(41))
    store.record_transition(b_sub, e)

    assert [o.order_id for o in store.load_orders()] == ["B", "C", "A"]
    assert store.load_orders([OrderStatus.PENDING]) == [a]
    assert store.load_orders({OrderStatus.CANCELLED, OrderStatus.SUBMITTED}) == [b_sub, c_done]
    assert store.load_orders(strategy_id="meanrev") == [b_sub]
    assert store.load_orders([OrderStatus.PENDING], strategy_id="meanrev") == []
    assert store.load_orders([]) == []
    assert store.load_live_orders() == [b_sub, a]
    counts = store.count_orders_by_status()
    assert counts[OrderStatus.PENDING] == 1
    assert counts[OrderStatus.SUBMITTED] == 1
    assert counts[OrderStatus.CANCELLED] == 1
    assert sum(counts.values()) == 3
    assert set(counts) == set(OrderStatus)


def test_events_of_all_orders_come_back_in_write_order(store: Store) -> None:
    a, ea = new_order("A")
    b, eb = new_order("B")
    store.record_new_order(a, ea)
    store.record_new_order(b, eb)
    a2, ea2 = transition(a, OrderStatus.SUBMITTED, at(1))
    store.record_transition(a2, ea2)
    assert store.load_events() == [ea, eb, ea2]
    assert store.load_events("B") == [eb]


def test_reconciliation_entries_round_trip(store: Store) -> None:
    store.record_reconciliation(
        at(5),
        "QUANTITY_MISMATCH",
        exchange=Exchange.NSE,
        symbol="INFY",
        product=Product.CNC,
        oms_value={"quantity": 10, "average_price": Decimal("1500.05")},
        broker_value={"quantity": 12},
        resolution="adopted broker quantity",
        details={"note": "manual trade at broker"},
    )
    store.record_reconciliation(at(6), "MISSED_FILL", order_id="OMS-9")

    first, second = store.load_reconciliation_log()
    assert first["at"] == at(5) and first["at"].utcoffset() == timedelta(0)
    assert first["kind"] == "QUANTITY_MISMATCH"
    assert (first["exchange"], first["symbol"], first["product"]) == ("NSE", "INFY", "CNC")
    assert first["oms_value"] == {"quantity": 10, "average_price": "1500.05"}
    assert first["broker_value"] == {"quantity": 12}
    assert first["resolution"] == "adopted broker quantity"
    assert first["details"] == {"note": "manual trade at broker"}
    assert first["order_id"] is None
    assert second["kind"] == "MISSED_FILL" and second["order_id"] == "OMS-9"
    assert second["oms_value"] is None and second["details"] is None


# --------------------------------------------------------------------------- atomicity


def test_a_new_order_whose_event_fails_leaves_nothing_written(store: Store) -> None:
    order, event = new_order("OMS-1")
    stray = dataclasses.replace(event, order_id="NO-SUCH-ORDER")  # violates the FK
    with pytest.raises(IntegrityError):
        store.record_new_order(order, stray)
    assert store.load_order("OMS-1") is None
    assert store.load_events() == []
    # The Store is still usable afterwards.
    store.record_new_order(order, event)
    assert store.load_order("OMS-1") == order


def test_a_duplicate_order_id_leaves_nothing_written(store: Store) -> None:
    order, event = new_order("OMS-1")
    store.record_new_order(order, event)
    clash, clash_event = new_order("OMS-1", symbol="TCS", when=at(9))
    with pytest.raises(IntegrityError):
        store.record_new_order(clash, clash_event)
    assert store.load_order("OMS-1") == order
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
    order, event = new_order("OMS-1")
    order2, event2 = new_order("OMS-2")
    stray = dataclasses.replace(event2, order_id="NOPE")
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
    assert store.load_order("OMS-1") == filled
    assert store.load_positions() == [pos]
    assert store.load_unapplied_fills() == []
    assert len(store.load_events("OMS-1")) == 2


def test_floats_and_naive_datetimes_are_refused(store: Store) -> None:
    order, event = new_order("OMS-1")
    with pytest.raises(StatementError, match="never float"):
        store.record_new_order(dataclasses.replace(order, price=1500.1), event)  # type: ignore[arg-type]
    with pytest.raises(StatementError, match="timezone-aware"):
        store.record_new_order(dataclasses.replace(order, updated_at=datetime(2024, 11, 25, 9, 0)), event)
    assert store.load_orders() == []


# --------------------------------------------------------------------------- migrations and schema

EXPECTED_COLUMNS = {
    "orders": {
        "id", "order_id", "broker_order_id", "strategy_id", "symbol", "exchange", "side",
        "quantity", "order_type", "product", "validity", "price", "trigger_price", "stop_loss",
        "take_profit", "tick_size", "status", "filled_quantity", "average_price",
        "filled_value", "validation_result", "status_message", "modification_count", "metadata",
        "created_at", "updated_at",
    },
    "order_events": {"id", "order_id", "at", "from_status", "to_status", "payload"},
    "trades": {
        "id", "trade_id", "order_id", "broker_order_id", "symbol", "exchange", "product", "side",
        "quantity", "price", "charges", "charges_detail", "executed_at", "position_applied",
    },
    "positions": {
        "id", "exchange", "symbol", "product", "quantity", "average_price", "realized_pnl",
        "unrealized_pnl", "charges", "last_price", "updated_at",
    },
    "reconciliation_log": {
        "id", "at", "kind", "exchange", "symbol", "product", "order_id", "oms_value",
        "broker_value", "resolution", "details",
    },
}
JSON_COLUMNS = {
    ("orders", "validation_result"), ("orders", "metadata"), ("order_events", "payload"),
    ("trades", "charges_detail"), ("reconciliation_log", "oms_value"),
    ("reconciliation_log", "broker_value"), ("reconciliation_log", "details"),
}


def test_migrations_create_the_schema_and_running_them_again_is_a_no_op(engine: Engine) -> None:
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision() == "0002_order_filled_value"
    upgrade(engine)  # again: nothing to do, nothing breaks
    upgrade(engine.url.render_as_string(hide_password=False))  # by URL too
    assert current_revision(engine) == head_revision()

    inspector = inspect(engine)
    assert set(inspector.get_table_names()) == set(EXPECTED_COLUMNS) | {"alembic_version"}
    for table, columns in EXPECTED_COLUMNS.items():
        assert {c["name"] for c in inspector.get_columns(table)} == columns, table

    def uniques(table: str) -> set[tuple[str, ...]]:
        return {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}

    assert ("order_id",) in uniques("orders")
    assert ("trade_id",) in uniques("trades")
    assert ("exchange", "symbol", "product") in uniques("positions")
    fks = {(fk["referred_table"], tuple(fk["constrained_columns"])) for fk in inspector.get_foreign_keys("order_events")}
    assert fks == {("orders", ("order_id",))}
    indexed = {tuple(ix["column_names"]) for ix in inspector.get_indexes("orders")}
    assert {("broker_order_id",), ("strategy_id",), ("status",), ("symbol", "exchange")} <= indexed


def test_the_migration_creates_exactly_what_schema_py_declares(engine: Engine) -> None:
    upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_migrations_downgrade_to_nothing_and_up_again(engine: Engine) -> None:
    upgrade(engine)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert current_revision(engine) == head_revision()


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
        "UPDATE order_events SET payload = NULL WHERE order_id = 'OMS-1'",
        "DELETE FROM order_events",
        "DELETE FROM order_events WHERE order_id = 'OMS-1'",
    ]
    if engine.dialect.name == "postgresql":
        # Statement-level triggers: refused even when no row matches, and TRUNCATE too.
        # (SQLite's triggers are per row; SQLite has no TRUNCATE.)
        refused += ["DELETE FROM order_events WHERE order_id = 'nothing-matches'", "TRUNCATE order_events"]
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
    first, first_event = new_order("OMS-1")
    store.record_new_order(first, first_event)
    _kill_store_connection(store, database_url)

    lost, lost_event = new_order("OMS-2")
    with pytest.raises(DBAPIError):
        store.record_new_order(lost, lost_event)  # raises; not retried behind our back

    again, again_event = new_order("OMS-3")
    store.record_new_order(again, again_event)  # a fresh connection
    assert [o.order_id for o in store.load_orders()] == ["OMS-1", "OMS-3"]
    assert store.load_order("OMS-2") is None


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
        assert store.load_order("OLD-1").filled_value == Decimal("300.05")
    finally:
        store._conn and store._conn.close()
