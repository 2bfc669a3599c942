"""The design guide's schema (shared/OMS_GUIDE.md, "Database Schema"), as the database
itself holds it, on SQLite and on PostgreSQL.

* the guide's four tables, every column under the guide's name, its indexes and CHECKs;
* what the OMS writes there, read back with the guide's own column names by plain SQL on
  a separate connection, after orders placed through the public API;
* order ids from the database's sequence: never repeated across Stores, restarts, threads;
* accounts: several OMSs share one database, each with its own rows only, and a second
  OMS for one (database, account) is refused while the first runs.

Every test taking ``database_url`` runs twice: on a SQLite file and on a brand-new
PostgreSQL database.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import pytest
from psycopg import sql
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError

from actors import start_oms
from domain import OrderRequest, OrderStatus
from domain.charges import charges_for_fill
from domain.enums import Exchange, Product, Side
from domain.fill import Fill
from domain.order import Order, apply_fill, created, transition
from domain.order_tag import broker_tag
from domain.position import Position
from domain.position import apply_fill as position_fill
from persistence.account_lock import AccountInUse
from persistence.store import Store
from tests.oms_helpers import raw_connection, rows, wait_for

UTC = timezone.utc
CAPITAL = Decimal("1000000")
REPO_ROOT = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------- the guide

GUIDE_COLUMNS = {
    "orders": {
        "id", "broker_order_id", "strategy_id", "symbol", "exchange", "side", "quantity",
        "order_type", "price", "trigger_price", "stop_loss", "take_profit", "risk_amount",
        "status", "status_message", "filled_quantity", "average_price", "created_at",
        "submitted_at", "updated_at", "filled_at", "validation_result", "error_message", "metadata",
    },
    "positions": {
        "id", "symbol", "exchange", "quantity", "average_price", "realized_pnl", "unrealized_pnl",
        "stop_loss", "take_profit", "opened_at", "updated_at", "closed_at", "metadata",
    },
    "trades": {
        "id", "order_id", "broker_trade_id", "symbol", "exchange", "side", "quantity", "price",
        "brokerage", "stt", "exchange_txn_charge", "gst", "stamp_duty", "total_charges",
        "executed_at", "metadata",
    },
    "reconciliation_log": {
        "id", "symbol", "issue_type", "internal_quantity", "broker_quantity", "resolved",
        "resolution", "detected_at", "resolved_at", "metadata",
    },
}
# The columns the guide declares NOT NULL (or PRIMARY KEY).
GUIDE_NOT_NULL = {
    "orders": {"id", "strategy_id", "symbol", "exchange", "side", "quantity", "order_type", "status", "created_at"},
    "positions": {"id", "symbol", "exchange", "quantity", "average_price", "opened_at", "updated_at"},
    "trades": {"id", "order_id", "symbol", "exchange", "side", "quantity", "price", "executed_at"},
    "reconciliation_log": {"id", "symbol", "issue_type", "detected_at"},
}
GUIDE_INTEGERS = {
    "orders": {"id", "strategy_id", "quantity", "filled_quantity"},
    "positions": {"id", "quantity"},
    "trades": {"id", "order_id", "quantity"},
    "reconciliation_log": {"id", "internal_quantity", "broker_quantity"},
}
GUIDE_MONEY = {
    "orders": {"price", "trigger_price", "stop_loss", "take_profit", "risk_amount", "average_price"},
    "positions": {"average_price", "realized_pnl", "unrealized_pnl", "stop_loss", "take_profit"},
    "trades": {"price", "brokerage", "stt", "exchange_txn_charge", "gst", "stamp_duty", "total_charges"},
    "reconciliation_log": set(),
}
GUIDE_TIMESTAMPS = {
    "orders": {"created_at", "submitted_at", "updated_at", "filled_at"},
    "positions": {"opened_at", "updated_at", "closed_at"},
    "trades": {"executed_at"},
    "reconciliation_log": {"detected_at", "resolved_at"},
}
GUIDE_JSON = {
    "orders": {"validation_result", "metadata"},
    "positions": {"metadata"},
    "trades": {"metadata"},
    "reconciliation_log": {"metadata"},
}
GUIDE_INDEXES = {
    "orders": {
        "idx_orders_broker_id": ["broker_order_id"],
        "idx_orders_symbol": ["symbol"],
        "idx_orders_status": ["status"],
        "idx_orders_created_at": ["created_at"],
        "idx_orders_strategy_id": ["strategy_id"],
    },
    "positions": {"idx_positions_symbol": ["symbol"], "idx_positions_open": ["closed_at"]},
    "trades": {
        "idx_trades_order_id": ["order_id"],
        "idx_trades_symbol": ["symbol"],
        "idx_trades_executed_at": ["executed_at"],
    },
    "reconciliation_log": {
        "idx_reconciliation_unresolved": ["resolved"],
        "idx_reconciliation_detected_at": ["detected_at"],
    },
}
DESCENDING = {"idx_orders_created_at", "idx_trades_executed_at", "idx_reconciliation_detected_at"}
PARTIAL = {"idx_positions_open": "closed_at is null", "idx_reconciliation_unresolved": "resolved ="}


def guide_request(**changes: Any) -> OrderRequest:
    """The guide's OrderRequest example, verbatim (floats and all), with ``changes``."""
    fields: dict[str, Any] = dict(
        symbol='RELIANCE',
        exchange='NSE',
        side='BUY',
        quantity=10,
        order_type='LIMIT',
        price=2450.50,
        stop_loss=2430.00,   # 20.50 risk per share = 205 total risk
        take_profit=2491.00, # 40.50 reward per share = 405 total reward
        product='MIS',       # Intraday
        validity='DAY',
        strategy_id=1
    )
    fields.update(changes)
    return OrderRequest(**{k: v for k, v in fields.items() if v is not None})


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    return migrated_engine


def money(value: Any) -> Decimal | None:
    """A money column as read by plain SQL: NUMERIC on PostgreSQL, exact text on SQLite."""
    return None if value is None else Decimal(str(value))


def moment(value: Any) -> datetime | None:
    """A timestamp as read by plain SQL: timestamptz on PostgreSQL, naive UTC text on SQLite."""
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def eventually(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy (positions follow fills
    asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


def only_position(oms, symbol: str = "RELIANCE"):
    found = [p for p in oms.get_positions() if p.symbol == symbol]
    assert len(found) <= 1
    return found[0] if found else None


def stop_all(*handles) -> None:
    for oms in handles:
        if oms is not None:
            oms.stop()


# --------------------------------------------------------------------------- a. the tables


def test_every_guide_table_and_column_exists_under_the_guides_name(engine: Engine) -> None:
    inspector = inspect(engine)
    assert set(GUIDE_COLUMNS) <= set(inspector.get_table_names())
    postgres = engine.dialect.name == "postgresql"
    for table, expected in GUIDE_COLUMNS.items():
        columns = {c["name"]: c for c in inspector.get_columns(table)}
        missing = expected - set(columns)
        assert not missing, f"{table} lacks the guide's column(s) {sorted(missing)}"
        assert "account" in columns and not columns["account"]["nullable"], table
        for name in GUIDE_NOT_NULL[table]:
            assert not columns[name]["nullable"], f"{table}.{name} should be NOT NULL"
        for name in GUIDE_INTEGERS[table]:
            assert columns[name]["type"].python_type is int, f"{table}.{name} should be an integer"
        for name in GUIDE_TIMESTAMPS[table]:
            assert columns[name]["type"].python_type is datetime, f"{table}.{name} should be a timestamp"
        if postgres:  # SQLite has no such types: money is exact text there, JSON is text
            for name in GUIDE_MONEY[table]:
                assert type(columns[name]["type"]).__name__ == "NUMERIC", f"{table}.{name}"
            for name in GUIDE_JSON[table]:
                assert type(columns[name]["type"]).__name__ == "JSONB", f"{table}.{name}"
            for name in GUIDE_TIMESTAMPS[table]:
                assert columns[name]["type"].timezone, f"{table}.{name} should be timestamptz"
    # trades.order_id REFERENCES orders(id).
    fks = {(fk["referred_table"], tuple(fk["constrained_columns"]), tuple(fk["referred_columns"]))
           for fk in inspector.get_foreign_keys("trades")}
    assert ("orders", ("order_id",), ("id",)) in fks
    # The guide's UNIQUEs, per account (the same broker order or trade id may belong to
    # two accounts: both sides of one exchange trade carry its number).
    def uniques(table: str) -> set[tuple[str, ...]]:
        return {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}

    assert ("account", "broker_order_id") in uniques("orders")
    assert ("account", "broker_trade_id") in uniques("trades")
    assert ("account", "exchange", "symbol", "product") in uniques("positions")


def test_the_guides_indexes_exist_with_their_names(engine: Engine) -> None:
    inspector = inspect(engine)
    for table, expected in GUIDE_INDEXES.items():
        indexes = {ix["name"]: ix for ix in inspector.get_indexes(table)}
        for name, columns in expected.items():
            assert name in indexes, f"{table} lacks index {name}"
            assert indexes[name]["column_names"] == columns, name
    # Newest-first and partial indexes, as the guide writes them.
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            definitions = dict(conn.execute(text("SELECT indexname, indexdef FROM pg_indexes")).all())
    else:
        with engine.connect() as conn:
            definitions = dict(conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index'")).all())
    for name in DESCENDING:
        assert " DESC" in definitions[name].upper(), definitions[name]
    for name, where in PARTIAL.items():
        assert "WHERE" in definitions[name].upper() and where in definitions[name].lower(), definitions[name]


ORDER_ROW = {
    "strategy_id": 1, "symbol": "RELIANCE", "exchange": "NSE", "side": "BUY", "quantity": 10,
    "order_type": "LIMIT", "product": "MIS", "validity": "DAY", "status": "PENDING", "tag": "GOOD1",
}


def insert_order(engine: Engine, **changes: Any) -> None:
    row = {**ORDER_ROW, **changes}
    names = ", ".join(row)
    marks = ", ".join(f":{k}" for k in row)
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO orders ({names}, created_at) VALUES ({marks}, CURRENT_TIMESTAMP)"), row)


@pytest.mark.parametrize(
    "constraint, column, bad",
    [
        ("valid_side", "side", "HOLD"),
        ("valid_side", "side", "buy"),
        ("valid_order_type", "order_type", "STOP"),
        ("valid_order_type", "order_type", "SL_M"),
        ("valid_status", "status", "PARTIAL"),
        ("valid_status", "status", "open"),
    ],
)
def test_the_guides_check_constraints_refuse_a_bad_row(engine: Engine, constraint: str, column: str, bad: str) -> None:
    names = {c["name"] for c in inspect(engine).get_check_constraints("orders")}
    assert {"valid_side", "valid_order_type", "valid_status"} <= names
    insert_order(engine)  # the same row, but good, goes in: the refusal below is the CHECK's
    with pytest.raises(IntegrityError, match=constraint):
        insert_order(engine, tag="BAD1", **{column: bad})
    with engine.connect() as conn:
        assert conn.execute(text("SELECT tag FROM orders")).scalars().all() == ["GOOD1"]


def test_every_value_the_guide_allows_is_accepted(engine: Engine) -> None:
    n = 0
    for side in ("BUY", "SELL"):
        for order_type in ("MARKET", "LIMIT", "SL", "SL-M"):
            for status in ("PENDING", "SUBMITTED", "OPEN", "FILLED", "CANCELLED", "REJECTED", "FAILED"):
                n += 1
                insert_order(engine, side=side, order_type=order_type, status=status, tag=f"OK{n}")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM orders")).scalar_one() == n == 56


# --------------------------------------------------------------------------- b. the OMS writes it


def test_orders_placed_through_the_api_read_back_in_the_guides_columns(database_url: str) -> None:
    oms = start_oms(database_url=database_url, broker="paper", capital=CAPITAL)
    try:
        oms.paper.set_price("RELIANCE", Decimal("2450.50"))
        # The guide's example as a MARKET order: it fills at the last price.
        market = oms.place_order(guide_request(order_type='MARKET', price=None))
        filled = wait_for(oms, market.order_id, lambda o: o.status is OrderStatus.FILLED)
        # The market moves up; the guide's LIMIT example, verbatim, now rests below it.
        oms.paper.set_price("RELIANCE", Decimal("2460.00"))
        order = OrderRequest(
            symbol='RELIANCE',
            exchange='NSE',
            side='BUY',
            quantity=10,
            order_type='LIMIT',
            price=2450.50,
            stop_loss=2430.00,   # 20.50 risk per share = 205 total risk
            take_profit=2491.00, # 40.50 reward per share = 405 total reward
            product='MIS',       # Intraday
            validity='DAY',
            strategy_id=1
        )
        assert order == guide_request()
        limit = oms.place_order(order)
        resting = wait_for(oms, limit.order_id, lambda o: o.status is OrderStatus.OPEN)
        assert resting.filled_quantity == 0
        eventually(lambda: (p := only_position(oms)) and p.quantity == 10, "the position holds the fill")
        (fill,) = oms.get_trades(market.order_id)
    finally:
        oms.stop()
    assert isinstance(market.order_id, int) and isinstance(limit.order_id, int)
    assert limit.order_id > market.order_id
    assert filled.average_price == Decimal("2450.50")

    # -- orders
    found = rows(database_url, "SELECT id, strategy_id, submitted_at, filled_at, risk_amount, validation_result FROM orders")
    by_id = {r["id"]: r for r in found}
    assert set(by_id) == {market.order_id, limit.order_id}
    for order_id in by_id:
        row = by_id[order_id]
        assert row["strategy_id"] == 1
        assert moment(row["submitted_at"]) is not None
        # (entry - stop) x quantity: 20.50 risk per share = 205 total risk
        assert money(row["risk_amount"]) == (Decimal("2450.50") - Decimal("2430.00")) * 10 == Decimal("205")
        assert row["validation_result"]["passed"] is True
        assert Decimal(row["validation_result"]["entry_price"]) == Decimal("2450.50")
    assert moment(by_id[market.order_id]["filled_at"]) >= moment(by_id[market.order_id]["submitted_at"])
    assert moment(by_id[market.order_id]["filled_at"]) == filled.filled_at
    assert by_id[limit.order_id]["filled_at"] is None

    # -- trades
    (trade,) = rows(
        database_url,
        "SELECT order_id, broker_trade_id, brokerage, stt, exchange_txn_charge, gst, stamp_duty, total_charges FROM trades",
    )
    assert trade["order_id"] == market.order_id
    assert trade["broker_trade_id"] == fill.trade_id and trade["broker_trade_id"]
    (sebi,) = rows(database_url, "SELECT sebi_fee FROM trades")
    components = ("brokerage", "stt", "exchange_txn_charge", "gst", "stamp_duty")
    stored = {name: money(trade[name]) for name in components}
    stored["sebi_fee"] = money(sebi["sebi_fee"])
    assert money(trade["total_charges"]) == sum(stored.values())
    expected = charges_for_fill(Exchange.NSE, "RELIANCE", Product.MIS, Side.BUY, 10, Decimal("2450.50")).rounded()
    assert stored == {
        "brokerage": expected.brokerage, "stt": expected.stt, "exchange_txn_charge": expected.exchange_charge,
        "gst": expected.gst, "stamp_duty": expected.stamp_duty, "sebi_fee": expected.sebi_fee,
    }
    assert money(trade["total_charges"]) == expected.total == Decimal("10.29763813")
    assert stored["brokerage"] == Decimal("7.3515") and stored["stt"] == 0  # 0.03% intraday; no STT on an MIS buy

    # -- positions
    (position,) = rows(database_url, "SELECT symbol, quantity, average_price, opened_at, closed_at FROM positions")
    assert (position["symbol"], position["quantity"]) == ("RELIANCE", 10)
    assert money(position["average_price"]) == Decimal("2450.50")
    assert moment(position["opened_at"]) >= moment(by_id[market.order_id]["submitted_at"])
    assert position["closed_at"] is None
    (protect,) = rows(database_url, "SELECT stop_loss, take_profit FROM positions")
    assert (money(protect["stop_loss"]), money(protect["take_profit"])) == (Decimal("2430.00"), Decimal("2491.00"))

    # -- the join the guide's foreign key promises
    joined = rows(database_url, "SELECT o.id, t.total_charges FROM orders o JOIN trades t ON t.order_id = o.id")
    assert [(r["id"], money(r["total_charges"])) for r in joined] == [(market.order_id, Decimal("10.29763813"))]


def test_a_resting_order_is_cancelled_and_a_flat_position_closed_then_reopened(database_url: str) -> None:
    oms = start_oms(database_url=database_url, broker="paper", capital=CAPITAL)
    try:
        oms.paper.set_price("RELIANCE", Decimal("2450.50"))
        bought = oms.place_order(guide_request(order_type='MARKET', price=None))
        wait_for(oms, bought.order_id, lambda o: o.status is OrderStatus.FILLED)
        oms.paper.set_price("RELIANCE", Decimal("2460.00"))
        resting = oms.place_order(guide_request())
        wait_for(oms, resting.order_id, lambda o: o.status is OrderStatus.OPEN)
    finally:
        oms.stop()

    # A restart recovers the resting order; it is cancelled from the new OMS.
    oms = start_oms(database_url=database_url, broker="paper", capital=CAPITAL)
    try:
        assert oms.get_order_status(resting.order_id).status is OrderStatus.OPEN
        assert oms.cancel_order(resting.order_id) is True
        cancelled = wait_for(oms, resting.order_id, lambda o: o.status is OrderStatus.CANCELLED)
        assert cancelled.filled_quantity == 0 and cancelled.filled_at is None

        opened = eventually(lambda: only_position(oms), "the position is loaded")
        assert opened.quantity == 10 and opened.opened_at is not None and opened.closed_at is None
        assert (opened.stop_loss, opened.take_profit) == (Decimal("2430.00"), Decimal("2491.00"))

        # Sell it all: the position goes flat and is closed.
        oms.paper.set_price("RELIANCE", Decimal("2470.00"))
        sold = oms.place_order(guide_request(side='SELL', order_type='MARKET', price=None, stop_loss=None, take_profit=None))
        wait_for(oms, sold.order_id, lambda o: o.status is OrderStatus.FILLED)
        flat = eventually(lambda: (p := only_position(oms)) and p.quantity == 0 and p, "the position is flat")
        assert flat.closed_at is not None and flat.closed_at >= opened.opened_at
        assert flat.stop_loss is None and flat.take_profit is None  # nothing left to protect
        assert flat.realized_pnl == (Decimal("2470.00") - Decimal("2450.50")) * 10
        row = eventually(
            lambda: [r for r in rows(database_url, "SELECT quantity, opened_at, closed_at FROM positions") if r["closed_at"] is not None],
            "the closed position is written",
        )[0]
        assert row["quantity"] == 0 and moment(row["closed_at"]) == flat.closed_at
        assert moment(row["opened_at"]) == opened.opened_at

        # Buy again: the position reopens and loses its closed_at.
        again = oms.place_order(guide_request(order_type='MARKET', price=None, quantity=5, stop_loss=2450.00))
        wait_for(oms, again.order_id, lambda o: o.status is OrderStatus.FILLED)
        reopened = eventually(lambda: (p := only_position(oms)) and p.quantity == 5 and p, "the position reopens")
        assert reopened.closed_at is None and reopened.opened_at >= flat.closed_at
        assert (reopened.stop_loss, reopened.take_profit) == (Decimal("2450.00"), Decimal("2491.00"))
    finally:
        oms.stop()

    (position,) = rows(database_url, "SELECT symbol, quantity, average_price, opened_at, closed_at FROM positions")
    assert (position["symbol"], position["quantity"]) == ("RELIANCE", 5)
    assert money(position["average_price"]) == Decimal("2470.00")
    assert position["closed_at"] is None and moment(position["opened_at"]) == reopened.opened_at
    statuses = {r["id"]: (r["status"], r["filled_at"]) for r in rows(database_url, "SELECT id, status, filled_at FROM orders")}
    assert statuses[resting.order_id] == ("CANCELLED", None)
    assert all(statuses[o.order_id][0] == "FILLED" and statuses[o.order_id][1] is not None for o in (bought, sold, again))


# --------------------------------------------------------------------------- c. order ids


def test_ids_reserved_by_two_stores_interleaved_are_all_distinct_and_survive_a_restart(database_url: str) -> None:
    first, second = Store.open(database_url), Store.open(database_url)
    seen: list[int] = []
    try:
        for n in range(1, 8):
            seen += first.reserve_ids(n)
            seen += second.reserve_ids(n)
            seen += first.reserve_ids(1)
    finally:
        first.close()
        second.close()
    assert len(seen) == len(set(seen)) == 2 * sum(range(1, 8)) + 7
    assert all(isinstance(i, int) and i > 0 for i in seen)

    # A restart (new Stores, new engines) goes on above everything handed out before.
    with Store.open(database_url) as again, Store.open(database_url) as other:
        later = again.reserve_ids(5) + other.reserve_ids(5) + again.reserve_ids(3)
    assert min(later) > max(seen)
    assert len(set(later)) == len(later) == 13
    with Store.open(database_url) as store:
        assert store.reserve_ids(0) == []


def test_ids_stay_above_orders_the_oms_placed(database_url: str) -> None:
    oms = start_oms(database_url=database_url, broker="paper", capital=CAPITAL)
    try:
        oms.paper.set_price("RELIANCE", Decimal("2450.50"))
        placed = [oms.place_order(guide_request(order_type='MARKET', price=None, quantity=1)).order_id for _ in range(3)]
    finally:
        oms.stop()
    with Store.open(database_url) as store:
        fresh = store.reserve_ids(10)
    assert min(fresh) > max(r["m"] for r in rows(database_url, "SELECT MAX(id) AS m FROM orders")) >= max(placed)
    assert len(set(placed)) == 3


def test_ids_reserved_from_four_threads_at_once_never_repeat(database_url: str) -> None:
    threads, rounds, block = 4, 25, 3
    start = threading.Barrier(threads)
    got: list[list[int]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def reserve(n: int) -> None:
        try:
            with Store.open(database_url, migrate=False) as store:
                start.wait(timeout=30)
                for _ in range(rounds):
                    got[n].extend(store.reserve_ids(block))
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    with Store.open(database_url):  # migrate once, before the threads race
        pass
    workers = [threading.Thread(target=reserve, args=(n,), name=f"reserve-{n}") for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not any(w.is_alive() for w in workers)
    assert errors == []
    every = [i for ids in got for i in ids]
    assert len(every) == threads * rounds * block
    assert len(set(every)) == len(every), "an id was handed out twice"
    for ids in got:  # each block is consecutive and ascending within a Store's calls
        assert ids == sorted(ids)


# --------------------------------------------------------------------------- d. accounts


def _trade_in(oms, symbol: str, price: str, quantity: int, holding: int | None = None) -> int:
    """Buy at market; wait until the position holds ``holding`` (default ``quantity``)."""
    oms.paper.set_price(symbol, Decimal(price))
    stop = Decimal(price) - Decimal("10")
    result = oms.place_order(OrderRequest(symbol=symbol, side="BUY", quantity=quantity, stop_loss=stop, strategy_id=3))
    wait_for(oms, result.order_id, lambda o: o.status is OrderStatus.FILLED)
    held = quantity if holding is None else holding
    eventually(lambda: (p := only_position(oms, symbol)) and p.quantity == held, f"{symbol} position of {held}")
    return result.order_id


@pytest.mark.postgres
def test_two_accounts_share_one_postgresql_database_and_see_only_their_own_rows(fresh_postgres_url: str) -> None:
    url = fresh_postgres_url
    a = b = None
    try:
        a = start_oms(database_url=url, broker="paper", capital=CAPITAL, account="acct_a")
        b = start_oms(database_url=url, broker="paper", capital=CAPITAL, account="acct_b")
        a_ids = [_trade_in(a, "RELIANCE", "2450.50", 10)]
        b_ids = [_trade_in(b, "INFY", "1500.10", 5)]
        a_ids.append(_trade_in(a, "RELIANCE", "2451.00", 2, holding=12))
        b.paper.set_price("INFY", Decimal("1500.10"))
        resting = b.place_order(OrderRequest(
            symbol="INFY", side="BUY", quantity=1, order_type="LIMIT", price=Decimal("1400.00"),
            stop_loss=Decimal("1390.00"), strategy_id=3,
        ))
        b_ids.append(resting.order_id)

        assert sorted(o.order_id for o in a.get_orders()) == sorted(a_ids)
        assert sorted(o.order_id for o in b.get_orders()) == sorted(b_ids)
        assert not set(a_ids) & set(b_ids)  # one sequence for the whole database
        assert [(p.symbol, p.quantity) for p in a.get_positions()] == [("RELIANCE", 12)]
        assert [(p.symbol, p.quantity) for p in b.get_positions()] == [("INFY", 5)]
        assert {f.order_id for f in a.get_trades()} == set(a_ids)
        assert {f.order_id for f in b.get_trades()} == {b_ids[0]}
        assert [o.order_id for o in b.get_active_orders()] == [resting.order_id]
        assert a.get_active_orders() == []

        # A second OMS for an account already running on this database is refused.
        with pytest.raises(AccountInUse, match="acct_a") as refused:
            start_oms(database_url=url, broker="paper", capital=CAPITAL, account="acct_a")
        assert "already running" in str(refused.value)
        assert "acct_b" not in str(refused.value)
        with pytest.raises(AccountInUse, match="acct_b"):
            start_oms(database_url=url, broker="paper", capital=CAPITAL, account="acct_b")
    finally:
        stop_all(a, b)

    def accounts(table: str, key: str) -> dict[Any, str]:
        return {r[key]: r["account"] for r in rows(url, f"SELECT {key}, account FROM {table}")}

    assert accounts("orders", "id") == {**{i: "acct_a" for i in a_ids}, **{i: "acct_b" for i in b_ids}}
    assert set(accounts("trades", "order_id").items()) == {(i, "acct_a") for i in a_ids} | {(b_ids[0], "acct_b")}
    assert accounts("positions", "symbol") == {"RELIANCE": "acct_a", "INFY": "acct_b"}
    events = rows(url, "SELECT DISTINCT order_id, account FROM order_events")
    assert {(r["order_id"], r["account"]) for r in events} == (
        {(i, "acct_a") for i in a_ids} | {(i, "acct_b") for i in b_ids}
    )

    # Once the first has stopped, the account starts again, with its own orders back.
    again = start_oms(database_url=url, broker="paper", capital=CAPITAL, account="acct_a")
    try:
        assert sorted(o.order_id for o in again.get_orders()) == sorted(a_ids)
        assert [(p.symbol, p.quantity) for p in again.get_positions()] == [("RELIANCE", 12)]
    finally:
        again.stop()


def test_one_oms_per_account_on_a_database_file_too(sqlite_url: str) -> None:
    first = other = None
    try:
        first = start_oms(database_url=sqlite_url, broker="paper", capital=CAPITAL, account="acct_a")
        with pytest.raises(AccountInUse, match="acct_a"):
            start_oms(database_url=sqlite_url, broker="paper", capital=CAPITAL, account="acct_a")
        # Another account on the same file runs beside it, each with its own rows.
        other = start_oms(database_url=sqlite_url, broker="paper", capital=CAPITAL, account="acct_b")
        a_id = _trade_in(first, "RELIANCE", "2450.50", 10)
        b_id = _trade_in(other, "INFY", "1500.10", 5)
        assert [o.order_id for o in first.get_orders()] == [a_id]
        assert [o.order_id for o in other.get_orders()] == [b_id]
        assert [p.symbol for p in first.get_positions()] == ["RELIANCE"]
        assert [p.symbol for p in other.get_positions()] == ["INFY"]
    finally:
        stop_all(first, other)
    assert {r["id"]: r["account"] for r in rows(sqlite_url, "SELECT id, account FROM orders")} == {a_id: "acct_a", b_id: "acct_b"}
    # Stopped, the account may start again.
    again = start_oms(database_url=sqlite_url, broker="paper", capital=CAPITAL, account="acct_a")
    try:
        assert [o.order_id for o in again.get_orders()] == [a_id]
    finally:
        again.stop()


def test_stores_of_two_accounts_share_tables_but_never_rows(database_url: str) -> None:
    """Below the OMS: the same broker trade id and the same position key may exist in
    two accounts (both sides of one exchange trade carry its number); each Store reads
    and writes its own account's rows only."""
    at = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
    a, b = Store.open(database_url, account="acct_a"), Store.open(database_url, account="acct_b")
    try:
        assert a.tag_prefix() == b.tag_prefix()  # one prefix per database
        for store in (a, b):
            (order_id,) = store.reserve_ids(1)
            request = OrderRequest(symbol="INFY", side="BUY", quantity=2, order_type="LIMIT", price=Decimal("1500.10"), strategy_id=5)
            order, event = created(Order.from_request(order_id, request, at, tag=broker_tag(store.tag_prefix(), order_id)))
            store.record_new_order(order, event)
            order, event = transition(order, OrderStatus.SUBMITTED, at, broker_order_id="SAME-BROKER-ID")
            store.record_transition(order, event)
            charges = charges_for_fill(Exchange.NSE, "INFY", Product.MIS, Side.BUY, 2, Decimal("1500.10")).rounded()
            fill = Fill("SAME-TRADE", order_id, "SAME-BROKER-ID", Exchange.NSE, "INFY", Product.MIS, Side.BUY, 2, Decimal("1500.10"), at, charges)
            filled, event = apply_fill(order, 2, fill.price, at, fill.trade_id)
            assert store.record_fill(fill, filled, event) is True
            assert store.record_fill(fill, filled, event) is False  # idempotent within the account
            position = position_fill(Position(Exchange.NSE, "INFY", Product.MIS), Side.BUY, 2, fill.price, charges.total, at).after
            store.record_position(position, applied_trade_id="SAME-TRADE")
        for store, other in ((a, b), (b, a)):
            (mine,) = store.load_orders()
            assert [f.order_id for f in store.load_fills()] == [mine.order_id]
            assert {e.order_id for e in store.load_events()} == {mine.order_id}
            assert store.load_order(other.load_orders()[0].order_id) is None
            assert store.trade_ids(mine.order_id) == {"SAME-TRADE"}
            assert [(p.symbol, p.quantity) for p in store.load_positions()] == [("INFY", 2)]
            assert store.load_unapplied_fills() == []
            assert store.count_orders_by_status()[OrderStatus.FILLED] == 1
        a.record_reconciliation(at, "QUANTITY_MISMATCH", symbol="INFY", internal_quantity=2, broker_quantity=3)
        assert len(a.load_reconciliation_log()) == 1 and b.load_reconciliation_log() == []
    finally:
        a.close()
        b.close()
    found = rows(database_url, "SELECT account, COUNT(*) AS n FROM trades GROUP BY account ORDER BY account")
    assert [(r["account"], r["n"]) for r in found] == [("acct_a", 1), ("acct_b", 1)]


@pytest.mark.postgres
def test_the_same_account_runs_on_two_postgresql_databases_at_once(fresh_postgres_url: str) -> None:
    """The lock is per (database, account): one server, two databases, one account each."""
    base = make_url(fresh_postgres_url)
    name = f"oms_t_{uuid.uuid4().hex}"
    with raw_connection(fresh_postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name)))
    second_url = base.set(database=name).render_as_string(hide_password=False)
    first = second = None
    try:
        first = start_oms(database_url=fresh_postgres_url, broker="paper", capital=CAPITAL, account="acct_a")
        second = start_oms(database_url=second_url, broker="paper", capital=CAPITAL, account="acct_a")
        with pytest.raises(AccountInUse, match="acct_a"):
            start_oms(database_url=second_url, broker="paper", capital=CAPITAL, account="acct_a")
    finally:
        stop_all(first, second)
        with raw_connection(fresh_postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


HOLDER = """
import sys, time
from decimal import Decimal
from actors import start_oms
oms = start_oms(database_url=sys.argv[1], broker="paper", capital=Decimal("1000000"), account="acct_a")
print("running", flush=True)
time.sleep(600)
"""


def test_an_account_held_by_a_process_that_died_is_free_again(database_url: str, tmp_path) -> None:
    """The lock dies with its process (a killed OMS leaves no stale lock behind): the
    kernel drops the file lock, the server the advisory lock of the closed session."""
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)}
    holder = subprocess.Popen(
        [sys.executable, str(script), database_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        line = holder.stdout.readline()
        assert line.strip() == "running", holder.stderr.read() if holder.poll() is not None else line
        with pytest.raises(AccountInUse, match="acct_a"):
            start_oms(database_url=database_url, broker="paper", capital=CAPITAL, account="acct_a")
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
        holder.stdout.close()
        holder.stderr.close()

    deadline = time.monotonic() + 15
    while True:
        try:
            oms = start_oms(database_url=database_url, broker="paper", capital=CAPITAL, account="acct_a")
            break
        except AccountInUse:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    oms.stop()


def test_a_store_cannot_change_another_accounts_order(database_url: str) -> None:
    """Order ids are unique across the database, but a Store still writes only its own
    account's rows: a transition or fill naming another account's order is refused as an
    unknown order, and nothing of either account changes."""
    at = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
    a, b = Store.open(database_url, account="acct_a"), Store.open(database_url, account="acct_b")
    try:
        (order_id,) = b.reserve_ids(1)
        request = OrderRequest(symbol="INFY", side="BUY", quantity=2, order_type="LIMIT", price=Decimal("1500.10"), strategy_id=5)
        theirs, event = created(Order.from_request(order_id, request, at, tag=broker_tag(b.tag_prefix(), order_id)))
        b.record_new_order(theirs, event)
        b_events = b.load_events()

        moved, move = transition(theirs, OrderStatus.CANCELLED, at, status_message="not yours to cancel")
        with pytest.raises(LookupError):
            a.record_transition(moved, move)
        opened, _ = transition(theirs, OrderStatus.SUBMITTED, at, broker_order_id="X-1")
        charges = charges_for_fill(Exchange.NSE, "INFY", Product.MIS, Side.BUY, 2, Decimal("1500.10")).rounded()
        fill = Fill("T-X", order_id, "X-1", Exchange.NSE, "INFY", Product.MIS, Side.BUY, 2, Decimal("1500.10"), at, charges)
        filled, fill_event = apply_fill(opened, 2, fill.price, at, fill.trade_id)
        with pytest.raises(LookupError):
            a.record_fill(fill, filled, fill_event)

        assert b.load_order(order_id) == theirs
        assert b.load_events() == b_events and b.load_fills() == []
        assert a.load_orders() == [] and a.load_events() == [] and a.load_fills() == []
    finally:
        a.close()
        b.close()
    assert rows(database_url, "SELECT COUNT(*) AS n FROM trades")[0]["n"] == 0
    assert rows(database_url, "SELECT COUNT(*) AS n FROM order_events")[0]["n"] == 1
