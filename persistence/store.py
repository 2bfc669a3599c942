"""The Store: the only door actors use to the database.

It holds ONE long-lived connection (the journal actor owns the Store and calls it from
one thread; a lock makes stray calls from other threads wait their turn rather than
share the connection). Every write method is one transaction, committed before it
returns, all-or-nothing. Reads give back domain values exactly as they were written:
enums, Decimals, timezone-aware UTC datetimes, metadata and validation_result dicts.

Each write is a thin wrapper over an ``_op_*`` function taking a Connection; the
``op_*`` builders below wrap those as ``Callable[[Connection], object]`` so that several
writes can be committed together with ``write_many`` (group commit).

If the connection drops (PostgreSQL restarted, backend killed), the write that met the
dead connection raises; it is not retried. The dead connection is thrown away and the
next call opens a fresh one.

This module speaks tables, not rules: it stores what it is given and decides nothing.
"""
from __future__ import annotations

import threading
from contextlib import suppress
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import DBAPIError

from domain.charges import Charges
from domain.enums import (
    TERMINAL_STATUSES,
    Exchange,
    OrderStatus,
    OrderType,
    Product,
    Side,
    Validity,
)
from domain.fill import Fill
from domain.order import Order, OrderEvent
from domain.position import Position
from persistence.database import create_engine_for
from persistence.group_write import (
    Intent,
    NewFill,
    NewOrder,
    OrderNotFound,
    PositionUpdate,
    Transition,
    write_group,
)
from persistence.migrate import upgrade
from persistence.schema import order_events, orders, positions, reconciliation_log, trades

__all__ = [
    "OrderNotFound",
    "Store",
    "WriteOp",
    "op_fill",
    "op_new_order",
    "op_position",
    "op_reconciliation",
    "op_transition",
]

T = TypeVar("T")
WriteOp = Callable[[Connection], Any]


def _value(enum_or_str: Any) -> Any:
    """The stored text of an enum (its value); strings and None pass through."""
    return getattr(enum_or_str, "value", enum_or_str)


# --------------------------------------------------------------------------- row <-> domain


def _order_row(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "broker_order_id": order.broker_order_id,
        "strategy_id": order.strategy_id,
        "symbol": order.symbol,
        "exchange": _value(order.exchange),
        "side": _value(order.side),
        "quantity": order.quantity,
        "order_type": _value(order.order_type),
        "product": _value(order.product),
        "validity": _value(order.validity),
        "price": order.price,
        "trigger_price": order.trigger_price,
        "stop_loss": order.stop_loss,
        "take_profit": order.take_profit,
        "tick_size": order.tick_size,
        "status": _value(order.status),
        "filled_quantity": order.filled_quantity,
        "average_price": order.average_price,
        "filled_value": order.filled_value,
        "validation_result": _dict_or_none(order.validation_result),
        "status_message": order.status_message,
        "modification_count": order.modification_count,
        "metadata_": dict(order.metadata or {}),
        "created_at": order.created_at,
        "updated_at": order.updated_at,
    }


def _order_changes(order: Order) -> dict[str, Any]:
    """Only the columns that change during an order's life: the validation result and
    metadata are written once, with the row, and never converted to JSON again."""
    return {
        "status": order.status.value,
        "filled_quantity": order.filled_quantity,
        "average_price": order.average_price,
        "filled_value": order.filled_value,
        "broker_order_id": order.broker_order_id,
        "status_message": order.status_message,
        "quantity": order.quantity,
        "price": order.price,
        "trigger_price": order.trigger_price,
        "modification_count": order.modification_count,
        "updated_at": order.updated_at,
    }


def _dict_or_none(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else dict(value)


def _order_from_row(row: RowMapping) -> Order:
    return Order(
        order_id=row[orders.c.order_id],
        symbol=row[orders.c.symbol],
        exchange=Exchange(row[orders.c.exchange]),
        side=Side(row[orders.c.side]),
        quantity=row[orders.c.quantity],
        order_type=OrderType(row[orders.c.order_type]),
        product=Product(row[orders.c.product]),
        validity=Validity(row[orders.c.validity]),
        strategy_id=row[orders.c.strategy_id],
        status=OrderStatus(row[orders.c.status]),
        created_at=row[orders.c.created_at],
        updated_at=row[orders.c.updated_at],
        price=row[orders.c.price],
        trigger_price=row[orders.c.trigger_price],
        stop_loss=row[orders.c.stop_loss],
        take_profit=row[orders.c.take_profit],
        tick_size=row[orders.c.tick_size],
        metadata=dict(row[orders.c.metadata_] or {}),
        filled_quantity=row[orders.c.filled_quantity],
        average_price=row[orders.c.average_price],
        filled_value=row[orders.c.filled_value],
        broker_order_id=row[orders.c.broker_order_id],
        validation_result=_dict_or_none(row[orders.c.validation_result]),
        status_message=row[orders.c.status_message],
        modification_count=row[orders.c.modification_count],
    )


def _event_row(event: OrderEvent) -> dict[str, Any]:
    return {
        "order_id": event.order_id,
        "at": event.at,
        "from_status": _value(event.from_status),
        "to_status": _value(event.to_status),
        "payload": dict(event.payload or {}),
    }


def _event_from_row(row: RowMapping) -> OrderEvent:
    from_status = row[order_events.c.from_status]
    return OrderEvent(
        order_id=row[order_events.c.order_id],
        at=row[order_events.c.at],
        from_status=None if from_status is None else OrderStatus(from_status),
        to_status=OrderStatus(row[order_events.c.to_status]),
        payload=dict(row[order_events.c.payload] or {}),
    )


def _trade_row(fill: Fill) -> dict[str, Any]:
    return {
        "trade_id": fill.trade_id,
        "order_id": fill.order_id,
        "broker_order_id": fill.broker_order_id,
        "symbol": fill.symbol,
        "exchange": _value(fill.exchange),
        "product": _value(fill.product),
        "side": _value(fill.side),
        "quantity": fill.quantity,
        "price": fill.price,
        "charges": fill.charges.total,
        "charges_detail": fill.charges.as_dict(),
        "executed_at": fill.at,
        "position_applied": False,
    }


def _fill_from_row(row: RowMapping) -> Fill:
    detail = row[trades.c.charges_detail]
    return Fill(
        trade_id=row[trades.c.trade_id],
        order_id=row[trades.c.order_id],
        broker_order_id=row[trades.c.broker_order_id],
        exchange=Exchange(row[trades.c.exchange]),
        symbol=row[trades.c.symbol],
        product=Product(row[trades.c.product]),
        side=Side(row[trades.c.side]),
        quantity=row[trades.c.quantity],
        price=row[trades.c.price],
        at=row[trades.c.executed_at],
        charges=Charges.from_dict(detail) if detail else Charges.zero(),
    )


def _position_row(position: Position) -> dict[str, Any]:
    return {
        "exchange": _value(position.exchange),
        "symbol": position.symbol,
        "product": _value(position.product),
        "quantity": position.quantity,
        "average_price": position.average_price,
        "realized_pnl": position.realized_pnl,
        "unrealized_pnl": position.unrealized_pnl,
        "charges": position.charges,
        "last_price": position.last_price,
        "updated_at": position.updated_at,
    }


def _position_from_row(row: RowMapping) -> Position:
    return Position(
        exchange=Exchange(row[positions.c.exchange]),
        symbol=row[positions.c.symbol],
        product=Product(row[positions.c.product]),
        quantity=row[positions.c.quantity],
        average_price=row[positions.c.average_price],
        realized_pnl=row[positions.c.realized_pnl],
        charges=row[positions.c.charges],
        last_price=row[positions.c.last_price],
        updated_at=row[positions.c.updated_at],
    )


# --------------------------------------------------------------------------- write ops


def _group_op(conn: Connection, intent: Intent) -> Any:
    """One intent written through the group path (the only write path for orders)."""
    return write_group(conn, [intent], _ROWS)[0]


def _op_record_reconciliation(
    conn: Connection,
    at: datetime,
    kind: str,
    *,
    exchange: Exchange | str | None = None,
    symbol: str | None = None,
    product: Product | str | None = None,
    order_id: str | None = None,
    oms_value: Any = None,
    broker_value: Any = None,
    resolution: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    conn.execute(
        insert(reconciliation_log).values(
            at=at,
            kind=_value(kind),
            exchange=_value(exchange),
            symbol=symbol,
            product=_value(product),
            order_id=order_id,
            oms_value=oms_value,
            broker_value=broker_value,
            resolution=resolution,
            details=None if details is None else dict(details),
        )
    )


# Public builders of write operations, for ``Store.write_many`` (group commit).


def op_new_order(order: Order, event: OrderEvent) -> WriteOp:
    return partial(_group_op, intent=NewOrder(order, event))


def op_transition(order: Order, event: OrderEvent) -> WriteOp:
    return partial(_group_op, intent=Transition(order, event))


def op_fill(fill: Fill, order: Order, event: OrderEvent) -> WriteOp:
    """Its result in ``write_many`` is True if the fill was new, False if a duplicate."""
    return partial(_group_op, intent=NewFill(fill, order, event))


def op_position(position: Position, applied_trade_id: str | None = None) -> WriteOp:
    return partial(_group_op, intent=PositionUpdate(position, applied_trade_id))


def op_reconciliation(at: datetime, kind: str, **fields: Any) -> WriteOp:
    return partial(_op_record_reconciliation, at=at, kind=kind, **fields)


class _RowMappers:
    """The row mappers, handed to ``group_write`` (which must not import this module)."""

    order_row = staticmethod(lambda order: _order_row(order))
    order_changes = staticmethod(lambda order: _order_changes(order))
    event_row = staticmethod(lambda event: _event_row(event))
    trade_row = staticmethod(lambda fill: _trade_row(fill))
    position_row = staticmethod(lambda position: _position_row(position))


_ROWS = _RowMappers()


# --------------------------------------------------------------------------- the Store


class Store:
    """Reads and writes domain values; one long-lived connection; one transaction per
    write (or per ``write_many`` batch)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None
        self._lock = threading.RLock()
        self._closed = False

    @classmethod
    def open(cls, url: str, migrate: bool = True) -> "Store":
        """A Store on a new engine for ``url``; with ``migrate``, the schema is brought
        to the newest revision first."""
        engine = create_engine_for(url)
        try:
            if migrate:
                upgrade(engine)
            return cls(engine)
        except BaseException:
            engine.dispose()
            raise

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        """Close the connection and dispose of the engine. Idempotent."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            try:
                if conn is not None:
                    conn.close()
            finally:
                self._engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---------------------------------------------------------------- connection

    def _connection(self) -> Connection:
        if self._closed:
            raise RuntimeError("Store is closed")
        conn = self._conn
        if conn is not None and (conn.closed or conn.invalidated):
            self._discard(conn)
            conn = None
        if conn is None:
            conn = self._engine.connect()
            self._conn = conn
        return conn

    def _discard(self, conn: Connection) -> None:
        """Throw a (dead) connection away; the next call opens a new one."""
        if self._conn is conn:
            self._conn = None
        with suppress(Exception):  # it is already dead; nothing more to do
            conn.invalidate()
        with suppress(Exception):
            conn.close()

    def _transaction(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one transaction on the Store's connection and commit.

        Any error rolls the whole transaction back and propagates. If the error came
        from a dead connection, the connection is discarded so the next call reconnects;
        the failed work itself is not retried.
        """
        with self._lock:
            conn = self._connection()
            try:
                if conn.in_transaction():  # left over from an earlier failure
                    conn.rollback()
                with conn.begin():
                    return work(conn)
            except DBAPIError as exc:
                if exc.connection_invalidated or conn.invalidated or conn.closed:
                    self._discard(conn)
                raise
            except BaseException:
                if conn.invalidated or conn.closed:
                    self._discard(conn)
                raise

    # ---------------------------------------------------------------- writes

    def write_many(self, ops: Sequence[WriteOp]) -> list[object]:
        """Run several write operations (``op_*`` builders, or any callable taking a
        Connection) in ONE transaction; return each one's result, in order."""
        ops = list(ops)
        return self._transaction(lambda conn: [op(conn) for op in ops])

    def write_group(self, intents: Sequence[Any], careful: bool = True) -> list[Any]:
        """Write many intents (``persistence.group_write``) in ONE transaction with a few
        statements per table; return each intent's result. All or nothing. Not
        ``careful``, a duplicate fill fails the whole group instead of answering False
        (see ``group_write.write_group``)."""
        intents = list(intents)
        return self._transaction(lambda conn: write_group(conn, intents, _ROWS, careful))

    def record_new_order(self, order: Order, event: OrderEvent) -> None:
        """Insert the orders row and its first event."""
        self._transaction(op_new_order(order, event))

    def record_transition(self, order: Order, event: OrderEvent) -> None:
        """Update the order's mutable fields and append the event."""
        self._transaction(op_transition(order, event))

    def record_fill(self, fill: Fill, order: Order, event: OrderEvent) -> bool:
        """Insert the trade and update the order and append the event; if the trade_id
        is already stored, write nothing and return False."""
        return bool(self._transaction(op_fill(fill, order, event)))

    def record_position(self, position: Position, applied_trade_id: str | None = None) -> None:
        """Upsert the position by (exchange, symbol, product); mark ``applied_trade_id``
        (if given) as applied to it, in the same transaction. An ``applied_trade_id``
        with no trades row raises LookupError and nothing is written."""
        self._transaction(op_position(position, applied_trade_id))

    def record_reconciliation(
        self,
        at: datetime,
        kind: str,
        *,
        exchange: Exchange | str | None = None,
        symbol: str | None = None,
        product: Product | str | None = None,
        order_id: str | None = None,
        oms_value: Any = None,
        broker_value: Any = None,
        resolution: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self._transaction(
            op_reconciliation(
                at,
                kind,
                exchange=exchange,
                symbol=symbol,
                product=product,
                order_id=order_id,
                oms_value=oms_value,
                broker_value=broker_value,
                resolution=resolution,
                details=details,
            )
        )

    # ---------------------------------------------------------------- reads

    def _rows(self, statement: Any) -> list[RowMapping]:
        return self._transaction(lambda conn: list(conn.execute(statement).mappings()))

    def load_order(self, order_id: str) -> Order | None:
        rows = self._rows(select(orders).where(orders.c.order_id == order_id))
        return _order_from_row(rows[0]) if rows else None

    def load_orders(
        self,
        statuses: Iterable[OrderStatus] | None = None,
        strategy_id: str | None = None,
    ) -> list[Order]:
        """Orders (optionally only those in ``statuses`` / of ``strategy_id``), oldest first."""
        statement = select(orders).order_by(orders.c.created_at, orders.c.id)
        if statuses is not None:
            wanted = [_value(s) for s in statuses]
            if not wanted:
                return []
            statement = statement.where(orders.c.status.in_(wanted))
        if strategy_id is not None:
            statement = statement.where(orders.c.strategy_id == strategy_id)
        return [_order_from_row(row) for row in self._rows(statement)]

    def load_live_orders(self) -> list[Order]:
        """Orders not in a terminal status, oldest first."""
        live = [s for s in OrderStatus if s not in TERMINAL_STATUSES]
        return self.load_orders(statuses=live)

    def load_positions(self) -> list[Position]:
        statement = select(positions).order_by(
            positions.c.exchange, positions.c.symbol, positions.c.product
        )
        return [_position_from_row(row) for row in self._rows(statement)]

    def load_fills(self, order_id: str | None = None) -> list[Fill]:
        """Fills (of one order, or all), in the order they were recorded."""
        statement = select(trades).order_by(trades.c.id)
        if order_id is not None:
            statement = statement.where(trades.c.order_id == order_id)
        return [_fill_from_row(row) for row in self._rows(statement)]

    def load_unapplied_fills(self) -> list[Fill]:
        """Fills whose position was not (yet) written, in the order they were recorded."""
        statement = (
            select(trades).where(trades.c.position_applied.is_(False)).order_by(trades.c.id)
        )
        return [_fill_from_row(row) for row in self._rows(statement)]

    def trade_ids(self, order_id: str) -> set[str]:
        rows = self._rows(select(trades.c.trade_id).where(trades.c.order_id == order_id))
        return {row[trades.c.trade_id] for row in rows}

    def trade_ids_of_live_orders(self) -> dict[str, set[str]]:
        """The trade ids of every order not yet terminal, by order id, in one query."""
        live = [s.value for s in OrderStatus if s not in TERMINAL_STATUSES]
        statement = (
            select(trades.c.order_id, trades.c.trade_id)
            .join(orders, orders.c.order_id == trades.c.order_id)
            .where(orders.c.status.in_(live))
        )
        found: dict[str, set[str]] = {}
        for row in self._rows(statement):
            found.setdefault(row[trades.c.order_id], set()).add(row[trades.c.trade_id])
        return found

    def load_events(self, order_id: str | None = None) -> list[OrderEvent]:
        """The audit trail (of one order, or all), in the order it was written."""
        statement = select(order_events).order_by(order_events.c.id)
        if order_id is not None:
            statement = statement.where(order_events.c.order_id == order_id)
        return [_event_from_row(row) for row in self._rows(statement)]

    def load_reconciliation_log(self) -> list[dict[str, Any]]:
        """Every reconciliation entry, oldest first, as a dict keyed by column name."""
        statement = select(reconciliation_log).order_by(reconciliation_log.c.id)
        return [
            {column.name: row[column] for column in reconciliation_log.columns}
            for row in self._rows(statement)
        ]

    def count_orders_by_status(self) -> dict[OrderStatus, int]:
        """How many orders are in each status (every status present, zero if none)."""
        statement = select(orders.c.status, func.count().label("n")).group_by(orders.c.status)
        counts = {status: 0 for status in OrderStatus}
        for row in self._rows(statement):
            counts[OrderStatus(row["status"])] = int(row["n"])
        return counts
