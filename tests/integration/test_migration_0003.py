"""Migration 0003 (the guide's schema) on a populated 0002 database: nothing is lost.

A database at revision 0002 is filled with raw SQL in the 0002 shape (text order ids,
text strategy ids, trades with a total and a charges_detail JSON, the old
reconciliation_log), exactly as the 0002 OMS wrote them, then upgraded; every row must
come through, re-keyed on the integer ids. Runs on SQLite and on PostgreSQL (a fresh
database per test).
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from actors import start_oms
from domain import OrderRequest, OrderStatus
from domain.charges import charges_for_fill
from domain.enums import Exchange, Product, Side
from persistence.database import create_engine_for
from persistence.migrate import current_revision, head_revision, upgrade
from persistence.store import Store
from tests.oms_helpers import wait_for

UTC = timezone.utc
T0 = datetime(2026, 11, 20, 4, 0, 0, 250000, tzinfo=UTC)
EIGHT = Decimal("1E-8")


def ts(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --------------------------------------------------------------------------- the 0002 data

RELIANCE_4 = charges_for_fill(Exchange.NSE, "RELIANCE", Product.MIS, Side.BUY, 4, Decimal("2450.50")).rounded()
RELIANCE_6 = charges_for_fill(Exchange.NSE, "RELIANCE", Product.MIS, Side.BUY, 6, Decimal("2450.50")).rounded()
# Written before charges were rounded to the column: components finer than 8 places.
INFY_1_EXACT = charges_for_fill(Exchange.NSE, "INFY", Product.MIS, Side.BUY, 1, Decimal("1500.05"))

# old id -> the 0002 orders row (columns as 0001/0002 define them).
ORDERS: dict[int, dict[str, Any]] = {
    3: dict(  # filled in two trades
        order_id="3fa9c0d1e2b4a5968700", broker_order_id="B-1001", strategy_id="7", symbol="RELIANCE",
        side="BUY", quantity=10, order_type="MARKET", price=None, stop_loss="2430.00", take_profit="2491.00",
        status="FILLED", filled_quantity=10, average_price="2450.50", filled_value="24505.00",
        validation_result={"passed": True, "entry_price": "2450.50"}, status_message=None,
        metadata={"signal": "breakout"}, created_at=ts(0), updated_at=ts(3),
    ),
    8: dict(  # live: resting at the broker
        order_id="a1b2c3d4e5f60718293a", broker_order_id="B-1002", strategy_id="rsi", symbol="INFY",
        side="BUY", quantity=5, order_type="LIMIT", price="1500.10", stop_loss="1490.00", take_profit=None,
        status="OPEN", filled_quantity=0, average_price=None, filled_value="0",
        validation_result={"passed": True, "entry_price": "1500.10"}, status_message=None,
        metadata={"rsi": 28.5}, created_at=ts(10), updated_at=ts(12),
    ),
    15: dict(  # refused by a pre-trade check; the longest id 0002 allowed (32 characters)
        order_id="c0ffee00c0ffee00c0ffee00c0ffee00", broker_order_id=None, strategy_id="default", symbol="TCS",
        side="BUY", quantity=1, order_type="MARKET", price=None, stop_loss=None, take_profit=None,
        status="REJECTED", filled_quantity=0, average_price=None, filled_value="0",
        validation_result={"passed": False}, status_message="stop_loss required",
        metadata={}, created_at=ts(20), updated_at=ts(20),
    ),
    41: dict(  # a fill whose trade has no charges_detail, only the total
        order_id="0d0d0d0d0d0d0d0d0d0d", broker_order_id="B-1004", strategy_id="12", symbol="RELIANCE",
        side="SELL", quantity=2, order_type="MARKET", price=None, stop_loss=None, take_profit=None,
        status="FILLED", filled_quantity=2, average_price="2460.00", filled_value="4920.00",
        validation_result={"passed": True, "entry_price": "2460.00"}, status_message=None,
        metadata=None, created_at=ts(30), updated_at=ts(32),
    ),
    42: dict(  # never reached the broker
        order_id="eeeeeeeeeeeeeeeeeeee", broker_order_id=None, strategy_id="momentum", symbol="SBIN",
        side="BUY", quantity=1, order_type="LIMIT", price="800.00", stop_loss="790.00", take_profit=None,
        status="FAILED", filled_quantity=0, average_price=None, filled_value="0",
        validation_result={"passed": True, "entry_price": "800.00"}, status_message="broker unreachable",
        metadata={}, created_at=ts(40), updated_at=ts(41),
    ),
    43: dict(  # its trade's charges_detail is finer than the new columns
        order_id="ffffffffffffffffffff", broker_order_id="B-1006", strategy_id="007", symbol="INFY",
        side="BUY", quantity=1, order_type="MARKET", price=None, stop_loss="1490.00", take_profit=None,
        status="FILLED", filled_quantity=1, average_price="1500.05", filled_value="1500.05",
        validation_result={"passed": True, "entry_price": "1500.05"}, status_message=None,
        metadata={}, created_at=ts(45), updated_at=ts(47),
    ),
}
# (old id, at, from, to, payload)
EVENTS = [
    (3, ts(0), None, "PENDING", {"validation_result": {"passed": True}}),
    (3, ts(1), "PENDING", "SUBMITTED", {"broker_order_id": "B-1001"}),
    (3, ts(1.5), "SUBMITTED", "OPEN", {"broker_status": "OPEN"}),
    (3, ts(2), "OPEN", "OPEN", {"trade_id": "TRD-1", "quantity": 4, "price": "2450.50"}),
    (3, ts(3), "OPEN", "FILLED", {"trade_id": "TRD-2", "quantity": 6, "price": "2450.50"}),
    (8, ts(10), None, "PENDING", {}),
    (8, ts(11), "PENDING", "SUBMITTED", {}),
    (8, ts(12), "SUBMITTED", "OPEN", {"broker_status": "OPEN"}),
    (15, ts(20), None, "REJECTED", {"reason": "stop_loss required"}),
    (41, ts(30), None, "PENDING", {}),
    (41, ts(31), "PENDING", "SUBMITTED", {}),
    (41, ts(32), "SUBMITTED", "FILLED", {"trade_id": "TRD-3"}),
    (42, ts(40), None, "PENDING", {}),
    (42, ts(41), "PENDING", "FAILED", {"reason": "broker unreachable"}),
    (43, ts(45), None, "PENDING", {}),
    (43, ts(46), "PENDING", "SUBMITTED", {}),
    (43, ts(47), "SUBMITTED", "FILLED", {"trade_id": "TRD-4"}),
]
# trade id -> (old order id, side, quantity, price, charges total, charges_detail, at)
TRADES = {
    "TRD-1": (3, "BUY", 4, "2450.50", RELIANCE_4.total, RELIANCE_4.as_dict(), ts(2)),
    "TRD-2": (3, "BUY", 6, "2450.50", RELIANCE_6.total, RELIANCE_6.as_dict(), ts(3)),
    "TRD-3": (41, "SELL", 2, "2460.00", Decimal("1.25"), None, ts(32)),
    "TRD-4": (43, "BUY", 1, "1500.05", INFY_1_EXACT.total.quantize(EIGHT, ROUND_HALF_UP), INFY_1_EXACT.as_dict(), ts(47)),
}
POSITIONS = [
    # exchange, symbol, product, quantity, average, realized, unrealized, charges, last price, updated
    ("NSE", "RELIANCE", "MIS", 8, "2450.50", "19.00", "76.00", "12.04", "2460.00", ts(32)),
    ("NSE", "INFY", "CNC", 0, "0", "-5.00", "0", "3.10", "1499.00", ts(50)),
    ("NSE", "INFY", "MIS", 1, "1500.05", "0", "0", "0.63036001", None, ts(47)),
]
RECONCILIATIONS = [
    # at, kind, exchange, symbol, product, order_id, oms_value, broker_value, resolution, details
    (ts(60), "QUANTITY_MISMATCH", "NSE", "RELIANCE", "MIS", "3fa9c0d1e2b4a5968700",
     {"quantity": 8, "average_price": "2450.50"}, {"quantity": 10}, "adopted broker quantity", {"note": "manual trade"}),
    (ts(61), "MISSED_FILL", None, None, None, "not-one-of-ours", None, None, None, None),
]
COUNTS = {"orders": 6, "order_events": len(EVENTS), "trades": 4, "positions": 3, "reconciliation_log": 2}
OLD_MAX_ID = 43


class Writer:
    """Raw SQL values as the 0002 column types stored them, per dialect."""

    def __init__(self, engine: Engine) -> None:
        self.sqlite = engine.dialect.name == "sqlite"

    def money(self, value: Any) -> Any:
        if value is None:
            return None
        value = Decimal(str(value))
        return format(value.quantize(EIGHT, ROUND_HALF_UP), "f") if self.sqlite else value

    def when(self, value: datetime) -> Any:
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if self.sqlite else value

    def json(self, value: Any) -> Any:
        return None if value is None else json.dumps(value)

    def j(self, name: str) -> str:
        return f":{name}" if self.sqlite else f"CAST(:{name} AS JSONB)"


def build_0002_database(engine: Engine) -> None:
    upgrade(engine, "0002_order_filled_value")
    assert current_revision(engine) == "0002_order_filled_value"
    w = Writer(engine)
    with engine.begin() as conn:
        for old_id, o in ORDERS.items():
            conn.execute(text(
                "INSERT INTO orders (id, order_id, broker_order_id, strategy_id, symbol, exchange, side, quantity,"
                " order_type, product, validity, price, trigger_price, stop_loss, take_profit, tick_size, status,"
                " filled_quantity, average_price, filled_value, validation_result, status_message,"
                " modification_count, metadata, created_at, updated_at) VALUES (:id, :order_id, :broker_order_id,"
                " :strategy_id, :symbol, 'NSE', :side, :quantity, :order_type, 'MIS', 'DAY', :price, NULL,"
                f" :stop_loss, :take_profit, :tick_size, :status, :filled_quantity, :average_price, :filled_value,"
                f" {w.j('validation_result')}, :status_message, 0, {w.j('metadata')}, :created_at, :updated_at)"
            ), {
                **o, "id": old_id, "tick_size": w.money("0.05"),
                **{k: w.money(o[k]) for k in ("price", "stop_loss", "take_profit", "average_price", "filled_value")},
                "validation_result": w.json(o["validation_result"]), "metadata": w.json(o["metadata"]),
                "created_at": w.when(o["created_at"]), "updated_at": w.when(o["updated_at"]),
            })
        for old_id, at, before, after, payload in EVENTS:
            conn.execute(text(
                "INSERT INTO order_events (order_id, at, from_status, to_status, payload)"
                f" VALUES (:order_id, :at, :from_status, :to_status, {w.j('payload')})"
            ), {"order_id": ORDERS[old_id]["order_id"], "at": w.when(at), "from_status": before,
                "to_status": after, "payload": w.json(payload)})
        for trade_id, (old_id, side, quantity, price, charges, detail, at) in TRADES.items():
            o = ORDERS[old_id]
            conn.execute(text(
                "INSERT INTO trades (trade_id, order_id, broker_order_id, symbol, exchange, product, side, quantity,"
                " price, charges, charges_detail, executed_at, position_applied) VALUES (:trade_id, :order_id,"
                f" :broker_order_id, :symbol, 'NSE', 'MIS', :side, :quantity, :price, :charges, {w.j('detail')},"
                " :at, :applied)"
            ), {"trade_id": trade_id, "order_id": o["order_id"], "broker_order_id": o["broker_order_id"],
                "symbol": o["symbol"], "side": side, "quantity": quantity, "price": w.money(price),
                "charges": w.money(charges), "detail": w.json(detail), "at": w.when(at), "applied": True})
        for exchange, symbol, product, quantity, average, realized, unrealized, charges, last, updated in POSITIONS:
            conn.execute(text(
                "INSERT INTO positions (exchange, symbol, product, quantity, average_price, realized_pnl,"
                " unrealized_pnl, charges, last_price, updated_at) VALUES (:exchange, :symbol, :product, :quantity,"
                " :average, :realized, :unrealized, :charges, :last, :updated)"
            ), {"exchange": exchange, "symbol": symbol, "product": product, "quantity": quantity,
                "average": w.money(average), "realized": w.money(realized), "unrealized": w.money(unrealized),
                "charges": w.money(charges), "last": w.money(last), "updated": w.when(updated)})
        for at, kind, exchange, symbol, product, order_id, oms_value, broker_value, resolution, details in RECONCILIATIONS:
            conn.execute(text(
                "INSERT INTO reconciliation_log (at, kind, exchange, symbol, product, order_id, oms_value,"
                f" broker_value, resolution, details) VALUES (:at, :kind, :exchange, :symbol, :product, :order_id,"
                f" {w.j('oms_value')}, {w.j('broker_value')}, :resolution, {w.j('details')})"
            ), {"at": w.when(at), "kind": kind, "exchange": exchange, "symbol": symbol, "product": product,
                "order_id": order_id, "oms_value": w.json(oms_value), "broker_value": w.json(broker_value),
                "resolution": resolution, "details": w.json(details)})
    assert counts(engine) == COUNTS


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {table: conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one() for table in COUNTS}


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    e = create_engine_for(database_url)
    try:
        build_0002_database(e)
        yield e
    finally:
        e.dispose()


@pytest.fixture
def store(engine: Engine) -> Iterator[Store]:
    upgrade(engine)
    s = Store(engine)
    try:
        yield s
    finally:
        if s._conn is not None:
            s._conn.close()  # the engine belongs to the fixture above


def by_tag(store: Store) -> dict[str, Any]:
    return {o.tag: o for o in store.load_orders()}


# --------------------------------------------------------------------------- the upgrade


def test_every_row_of_every_table_comes_through(engine: Engine, store: Store) -> None:
    assert current_revision(engine) == head_revision()  # 0003, then 0004 (the paper book), 0005 (instruments)
    assert counts(engine) == COUNTS
    with engine.connect() as conn:
        for table in COUNTS:
            accounts = conn.execute(text(f"SELECT DISTINCT account FROM {table}")).scalars().all()
            assert accounts == ["default"], table
        assert not [t for t in conn.dialect.get_table_names(conn) if t.endswith("_v2")]


def test_orders_keep_their_ids_and_the_old_text_id_becomes_the_tag(store: Store) -> None:
    orders = {o.order_id: o for o in store.load_orders()}
    assert set(orders) == set(ORDERS)
    for old_id, old in ORDERS.items():
        order = orders[old_id]
        assert order.tag == old["order_id"], old_id
        assert order.broker_order_id == old["broker_order_id"]
        assert (order.symbol, order.side.value, order.quantity) == (old["symbol"], old["side"], old["quantity"])
        assert order.status.value == old["status"] and order.filled_quantity == old["filled_quantity"]
        assert order.created_at == old["created_at"] and order.updated_at == old["updated_at"]
        assert order.validation_result == old["validation_result"]
        for name in ("price", "stop_loss", "take_profit", "average_price", "filled_value"):
            expected = old[name]
            assert getattr(order, name) == (None if expected is None else Decimal(expected)), (old_id, name)
        assert order.tick_size == Decimal("0.05")
    # A live order is found again at the broker by the tag it was sent with.
    assert [o.tag for o in store.load_live_orders()] == ["a1b2c3d4e5f60718293a"]


def test_numeric_strategy_ids_are_kept_and_names_move_to_metadata(store: Store) -> None:
    orders = {o.order_id: o for o in store.load_orders()}
    assert (orders[3].strategy_id, dict(orders[3].metadata)) == (7, {"signal": "breakout"})
    assert (orders[41].strategy_id, dict(orders[41].metadata)) == (12, {})
    assert (orders[43].strategy_id, dict(orders[43].metadata)) == (7, {})  # "007"
    assert (orders[8].strategy_id, dict(orders[8].metadata)) == (0, {"rsi": 28.5, "strategy": "rsi"})
    assert (orders[42].strategy_id, dict(orders[42].metadata)) == (0, {"strategy": "momentum"})
    # "default" was 0002's placeholder for "no strategy named": 0 now, nothing to keep.
    assert (orders[15].strategy_id, dict(orders[15].metadata)) == (0, {})
    assert [o.order_id for o in store.load_orders(strategy_id=7)] == [3, 43]


def test_submitted_and_filled_times_come_from_the_audit_trail(store: Store) -> None:
    orders = {o.order_id: o for o in store.load_orders()}
    assert (orders[3].submitted_at, orders[3].filled_at) == (ts(1), ts(3))
    assert (orders[8].submitted_at, orders[8].filled_at) == (ts(11), None)
    assert (orders[15].submitted_at, orders[15].filled_at) == (None, None)
    assert (orders[41].submitted_at, orders[41].filled_at) == (ts(31), ts(32))
    assert (orders[42].submitted_at, orders[42].filled_at) == (None, None)
    # And the guide's other new columns, derived from what 0002 held.
    assert orders[3].risk_amount == Decimal("205")  # (2450.50 - 2430.00) x 10
    assert orders[8].risk_amount == Decimal("50.50")  # (1500.10 - 1490.00) x 5
    assert orders[42].risk_amount == Decimal("10")
    assert orders[15].risk_amount is None and orders[41].risk_amount is None  # no stop-loss
    assert orders[42].error_message == "broker unreachable"
    assert all(orders[i].error_message is None for i in (3, 8, 15, 41, 43))


def test_order_events_are_re_keyed_on_the_integer_id_and_still_append_only(engine: Engine, store: Store) -> None:
    events = store.load_events()
    assert [(e.order_id, e.at, e.from_status and e.from_status.value, e.to_status.value, dict(e.payload))
            for e in events] == [(i, at, before, after, payload) for i, at, before, after, payload in EVENTS]
    refused = [
        "UPDATE order_events SET to_status = 'FILLED'",
        "UPDATE order_events SET payload = NULL WHERE order_id = 3",
        "DELETE FROM order_events WHERE order_id = 8",
        "DELETE FROM order_events",
    ]
    if engine.dialect.name == "postgresql":
        refused += ["DELETE FROM order_events WHERE order_id = -1", "TRUNCATE order_events"]
    for statement in refused:
        with pytest.raises(DBAPIError, match="order_events is append-only"):
            with engine.begin() as conn:
                conn.execute(text(statement))
    assert store.load_events() == events
    with engine.connect() as conn:  # and the foreign key holds
        orphans = conn.execute(text(
            "SELECT COUNT(*) FROM order_events e LEFT JOIN orders o ON o.id = e.order_id WHERE o.id IS NULL"
        )).scalar_one()
    assert orphans == 0


def test_trades_point_at_the_integer_id_with_every_charge_in_its_column(engine: Engine, store: Store) -> None:
    fills = {f.trade_id: f for f in store.load_fills()}
    assert set(fills) == set(TRADES)
    for trade_id, (old_id, side, quantity, price, _charges, _detail, at) in TRADES.items():
        fill = fills[trade_id]
        assert fill.order_id == old_id, trade_id
        assert (fill.side.value, fill.quantity, fill.price, fill.at) == (side, quantity, Decimal(price), at)
        assert fill.broker_order_id == ORDERS[old_id]["broker_order_id"]
    with engine.connect() as conn:
        stored = {r.broker_trade_id: r for r in conn.execute(text(
            "SELECT broker_trade_id, order_id, brokerage, stt, exchange_txn_charge, gst, stamp_duty, sebi_fee,"
            " total_charges, metadata, position_applied FROM trades"
        ))}
    columns = {"brokerage": "brokerage", "stt": "stt", "exchange_txn_charge": "exchange_charge",
               "gst": "gst", "stamp_duty": "stamp_duty", "sebi_fee": "sebi_fee"}
    for trade_id in ("TRD-1", "TRD-2"):  # as the 0002 OMS wrote them: rounded to 8 places
        row, (_, _, _, _, total, detail, _) = stored[trade_id], TRADES[trade_id]
        for column, key in columns.items():
            assert Decimal(str(getattr(row, column))) == Decimal(detail[key]), (trade_id, column)
        assert Decimal(str(row.total_charges)) == total == sum(Decimal(detail[k]) for k in columns.values())
        assert row.metadata is None and bool(row.position_applied) is True
        assert fills[trade_id].charges.total == total
    # Only the total was known: it is kept whole (as brokerage) rather than split by guesswork.
    row = stored["TRD-3"]
    assert Decimal(str(row.brokerage)) == Decimal(str(row.total_charges)) == Decimal("1.25")
    assert all(Decimal(str(getattr(row, c))) == 0 for c in columns if c != "brokerage")
    # Components finer than the columns: the columns hold them rounded, total_charges the
    # total as recorded, and the exact figures stay in the trade's metadata.
    row, (_, _, _, _, total, detail, _) = stored["TRD-4"], TRADES["TRD-4"]
    assert Decimal(str(row.total_charges)) == total == Decimal("0.63036001")
    for column, key in columns.items():
        assert Decimal(str(getattr(row, column))) == Decimal(detail[key]).quantize(EIGHT, ROUND_HALF_UP)
    metadata = row.metadata if isinstance(row.metadata, dict) else json.loads(row.metadata)
    assert metadata == {"charges_detail": detail}


def test_positions_gain_opened_and_closed_times(store: Store) -> None:
    positions = {(p.exchange.value, p.symbol, p.product.value): p for p in store.load_positions()}
    assert set(positions) == {(e, s, p) for e, s, p, *_ in POSITIONS}
    for exchange, symbol, product, quantity, average, realized, _unrealized, charges, last, updated in POSITIONS:
        p = positions[(exchange, symbol, product)]
        assert (p.quantity, p.average_price, p.realized_pnl, p.charges) == (
            quantity, Decimal(average), Decimal(realized), Decimal(charges)
        )
        assert p.last_price == (None if last is None else Decimal(last))
        assert p.updated_at == updated
        assert p.opened_at == updated  # 0002 never knew; its last change is the best bound
        assert p.closed_at == (updated if quantity == 0 else None)
    assert positions[("NSE", "RELIANCE", "MIS")].unrealized_pnl == Decimal("76.00")


def test_reconciliation_entries_take_the_guides_shape(store: Store) -> None:
    first, second = store.load_reconciliation_log()
    assert first["issue_type"] == "QUANTITY_MISMATCH" and first["detected_at"] == ts(60)
    assert (first["exchange"], first["symbol"], first["product"]) == ("NSE", "RELIANCE", "MIS")
    assert (first["internal_quantity"], first["broker_quantity"]) == (8, 10)
    assert first["resolved"] is True and first["resolution"] == "adopted broker quantity"
    assert first["resolved_at"] == ts(60)
    assert first["order_id"] == 3  # the old text id, re-keyed like every other reference
    assert first["metadata"]["oms_value"] == {"quantity": 8, "average_price": "2450.50"}
    assert first["metadata"]["broker_value"] == {"quantity": 10}
    assert first["metadata"]["details"] == {"note": "manual trade"}

    assert second["issue_type"] == "MISSED_FILL" and second["detected_at"] == ts(61)
    assert second["resolved"] is False and second["resolved_at"] is None and second["resolution"] is None
    assert second["symbol"] == "" and second["exchange"] is None
    # An id that names no order here is kept as it was written.
    assert second["order_id"] is None and second["metadata"]["order_id"] == "not-one-of-ours"


def test_new_ids_continue_above_the_old_ones(store: Store) -> None:
    prefix = store.tag_prefix()
    assert prefix.isalpha() and prefix.isupper()
    fresh = store.reserve_ids(5)
    assert min(fresh) > OLD_MAX_ID and len(set(fresh)) == 5
    with Store.open(store.engine.url.render_as_string(hide_password=False)) as other:
        assert min(other.reserve_ids(3)) > max(fresh)


def test_upgrading_again_at_head_changes_nothing(engine: Engine, store: Store) -> None:
    before = counts(engine)
    upgrade(engine)  # at head: nothing to do
    assert counts(engine) == before and current_revision(engine) == head_revision()


# --------------------------------------------------------------------------- through the OMS


def test_start_oms_upgrades_a_0002_database_and_recovers_its_live_order(database_url: str) -> None:
    engine = create_engine_for(database_url)
    try:
        build_0002_database(engine)
    finally:
        engine.dispose()

    oms = start_oms(database_url=database_url, broker="paper", capital=Decimal("1000000"))
    try:
        live = oms.get_order_status(8)
        assert live.status is OrderStatus.OPEN and live.tag == "a1b2c3d4e5f60718293a"
        assert live.broker_order_id == "B-1002" and live.strategy_id == 0
        assert [o.order_id for o in oms.get_active_orders()] == [8]
        assert sorted(o.order_id for o in oms.get_orders()) == sorted(ORDERS)
        held = {(p.symbol, p.product.value): p.quantity for p in oms.get_positions()}
        assert held == {("RELIANCE", "MIS"): 8, ("INFY", "CNC"): 0, ("INFY", "MIS"): 1}
        assert {f.trade_id for f in oms.get_trades(3)} == {"TRD-1", "TRD-2"}

        # It really is back at the (paper) broker: it can be cancelled there.
        assert oms.cancel_order(8) is True
        wait_for(oms, 8, lambda o: o.status is OrderStatus.CANCELLED)

        # A new order gets an id above every old one, and a tag of the new kind.
        oms.paper.set_price("RELIANCE", Decimal("2450.50"))
        placed = oms.place_order(OrderRequest(
            symbol="RELIANCE", side="BUY", quantity=1, stop_loss=Decimal("2430.00"), strategy_id=7,
        ))
        assert placed.order_id > OLD_MAX_ID
        new = wait_for(oms, placed.order_id, lambda o: o.status is OrderStatus.FILLED)
        assert new.tag.endswith(str(placed.order_id)) and new.tag[: -len(str(placed.order_id))].isupper()
    finally:
        oms.stop()

    engine = create_engine_for(database_url)
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM orders")).scalar_one() == len(ORDERS) + 1
            assert conn.execute(text("SELECT status FROM orders WHERE id = 8")).scalar_one() == "CANCELLED"
    finally:
        engine.dispose()
