"""The paper exchange's book in the database: what the simulated exchange remembers.

A real broker never forgets an order it acknowledged, nor a trade it reported, across
an OMS restart. The paper exchange lives inside the OMS process, so its book is kept in
its own tables (``paper_orders``, ``paper_trades``, ``paper_prices``, ``paper_counters``,
see ``persistence.schema``), one account's rows per store, written on a connection of its
own (never the Journal's: the exchange is the broker's far side, not the OMS).

The exchange loads its book once, at construction, and saves each change in one short
transaction before it answers or reports it (write-ahead). This module only moves rows:
the records below are plain values, and the exchange decides what they mean.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from persistence.database import create_engine_for
from persistence.group_write import write_rows
from persistence.schema import (
    DEFAULT_ACCOUNT,
    paper_counters,
    paper_orders,
    paper_prices,
    paper_trades,
)

__all__ = [
    "PaperBook",
    "PaperBookStore",
    "PaperCounters",
    "PaperOrderRecord",
    "PaperPriceRecord",
    "PaperTradeRecord",
]


@dataclass(frozen=True, slots=True)
class PaperOrderRecord:
    """One order of the book as it stands (quantity and prices after modifications)."""

    broker_order_id: str
    arrival: int
    tag: str
    exchange: str
    symbol: str
    side: str
    order_type: str
    product: str
    validity: str
    quantity: int
    price: Decimal | None
    trigger_price: Decimal | None
    status: str
    filled_quantity: int
    filled_value: Decimal
    average_price: Decimal | None
    message: str | None
    placed_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PaperTradeRecord:
    """One execution; the order's tag, instrument and side are the order's."""

    trade_id: str
    broker_order_id: str
    seq: int
    quantity: int
    price: Decimal
    executed_at: datetime


@dataclass(frozen=True, slots=True)
class PaperPriceRecord:
    exchange: str
    symbol: str
    price: Decimal
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PaperCounters:
    """How ids are made: the prefix, and how far the order and trade counters are
    reserved (no id above them was ever handed out; a restart goes on above them)."""

    id_prefix: str
    order_seq: int
    trade_seq: int


@dataclass(frozen=True, slots=True)
class PaperBook:
    """One account's whole book: orders in arrival order, trades in execution order."""

    orders: list[PaperOrderRecord]
    trades: list[PaperTradeRecord]
    prices: list[PaperPriceRecord]
    counters: PaperCounters | None  # None: the account has never traded on paper


def _row(record: Any, account: str) -> dict[str, Any]:
    row = {f.name: getattr(record, f.name) for f in fields(record)}
    row["account"] = account
    return row


def _record(kind: Any, row: Any) -> Any:
    mapping = row._mapping
    return kind(**{f.name: mapping[f.name] for f in fields(kind)})


class PaperBookStore:
    """Owns one account's paper book in the database, and the engine and the single
    connection it is read and written on. ``save`` is one transaction; a failure rolls
    it back and raises (the exchange keeps the change and saves it again later); a dead
    connection is thrown away and the next call opens a new one. Thread-safe (a lock),
    though the exchange calls it under its own lock anyway."""

    def __init__(self, engine: Engine, account: str = DEFAULT_ACCOUNT, *, owns_engine: bool = False) -> None:
        self.account = account
        self._engine = engine
        self._owns_engine = owns_engine
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        self.closed = False
        dialect = engine.dialect.name
        if dialect not in ("postgresql", "sqlite"):
            raise ValueError(f"the paper book needs PostgreSQL or SQLite, not {dialect}")

    @classmethod
    def open(cls, url: str, account: str = DEFAULT_ACCOUNT) -> PaperBookStore:
        """A store on an engine of its own for ``url`` (already migrated), closed with it."""
        # One connection is all it uses; the pool never grows past it.
        kwargs = {} if url.startswith("sqlite") else {"pool_size": 1, "max_overflow": 1}
        return cls(create_engine_for(url, **kwargs), account, owns_engine=True)

    # ---------------------------------------------------------------- reading

    def load(self) -> PaperBook:
        """The account's whole book, as last saved."""

        def read(conn: Connection) -> PaperBook:
            mine = self.account
            orders = [
                _record(PaperOrderRecord, row)
                for row in conn.execute(
                    select(paper_orders).where(paper_orders.c.account == mine).order_by(paper_orders.c.arrival)
                )
            ]
            trades = [
                _record(PaperTradeRecord, row)
                for row in conn.execute(
                    select(paper_trades).where(paper_trades.c.account == mine).order_by(paper_trades.c.seq)
                )
            ]
            prices = [
                _record(PaperPriceRecord, row)
                for row in conn.execute(select(paper_prices).where(paper_prices.c.account == mine))
            ]
            row = conn.execute(select(paper_counters).where(paper_counters.c.account == mine)).first()
            counters = None if row is None else PaperCounters(row.id_prefix, int(row.order_seq), int(row.trade_seq))
            return PaperBook(orders, trades, prices, counters)

        return self._transaction(read)

    # ---------------------------------------------------------------- writing

    def save(
        self,
        orders: Iterable[PaperOrderRecord] = (),
        trades: Iterable[PaperTradeRecord] = (),
        prices: Iterable[PaperPriceRecord] = (),
        counters: PaperCounters | None = None,
    ) -> None:
        """Write these rows (each order and price whole, each trade once, the counters)
        in one transaction, committed before this returns."""
        mine = self.account
        order_rows = [_row(o, mine) for o in orders]
        trade_rows = [_row(t, mine) for t in trades]
        price_rows = [_row(p, mine) for p in prices]
        counter_row = None if counters is None else _row(counters, mine)
        if not (order_rows or trade_rows or price_rows or counter_row):
            return

        def write(conn: Connection) -> None:
            # Orders first: a trade refers to its order. An order, a price, the counters
            # are written whole (again: the same row); a trade is a fact, written once.
            # So a save whose answer is lost can simply be made again (the BookWriter
            # holds it until it is): it may commit in its own round trip.
            write_rows(conn, commit=True, steps=[
                (paper_orders, order_rows, ("account", "broker_order_id"), True),
                (paper_trades, trade_rows, ("account", "trade_id"), False),
                (paper_prices, price_rows, ("account", "exchange", "symbol"), True),
                (paper_counters, [counter_row] if counter_row is not None else [], ("account",), True),
            ])

        self._transaction(write)

    # ---------------------------------------------------------------- connection

    def close(self) -> None:
        """Close the connection (and the engine, if it is the store's own). Idempotent;
        a closed store refuses to read or write."""
        with self._lock:
            self.closed = True
            conn, self._conn = self._conn, None
            if conn is not None:
                with suppress(Exception):
                    conn.close()
            if self._owns_engine:
                self._engine.dispose()

    def _transaction(self, work: Any) -> Any:
        with self._lock:
            if self.closed:
                raise RuntimeError(f"the paper book of account {self.account!r} is closed")
            conn = self._conn
            if conn is not None and (conn.closed or conn.invalidated):
                self._discard(conn)
                conn = None
            if conn is None:
                conn = self._conn = self._engine.connect()
            try:
                if conn.in_transaction():  # left over from an earlier failure
                    conn.rollback()
                with conn.begin():
                    return work(conn)
            except DBAPIError as error:
                if error.connection_invalidated or conn.invalidated or conn.closed:
                    self._discard(conn)
                raise

    def _discard(self, conn: Connection) -> None:
        if self._conn is conn:
            self._conn = None
        with suppress(Exception):
            conn.invalidate()
        with suppress(Exception):
            conn.close()
