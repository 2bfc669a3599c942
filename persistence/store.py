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
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from types import SimpleNamespace
from typing import Any, TypeVar

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from domain.charges import Charges
from domain.enums import (
    TERMINAL_STATUSES,
    Exchange,
    OrderStatus,
    OrderType,
    Product,
    Side,
    Validity,
    Variety,
)
from domain.fill import Fill
from domain.order import Order, OrderEvent
from domain.position import Position
from persistence.group_write import (
    TRANSACTION_ID_KEY,
    Intent,
    NewFill,
    NewOrder,
    OrderNotFound,
    PositionUpdate,
    Transition,
    write_group,
)
from persistence.migrate import engine_for
from persistence.order_ids import read_tag_prefix, reserve_order_ids
from persistence.schema import (
    DEFAULT_ACCOUNT,
    day_baselines,
    order_events,
    orders,
    positions,
    reconciliation_log,
    trades,
    trading_states,
)

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
# Ids in one IN (...) list: well inside either database's limit on parameters.
_IDS_PER_QUERY = 500
WriteOp = Callable[[Connection], Any]


def _value(enum_or_str: Any) -> Any:
    """The stored text of an enum (its value); strings and None pass through."""
    return getattr(enum_or_str, "value", enum_or_str)


# --------------------------------------------------------------------------- row <-> domain


def _order_row(order: Order) -> dict[str, Any]:
    return {
        "id": order.order_id,
        "tag": order.tag,
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
        "risk_amount": order.risk_amount,
        "tick_size": order.tick_size,
        "status": _value(order.status),
        "filled_quantity": order.filled_quantity,
        "average_price": order.average_price,
        "filled_value": order.filled_value,
        # A FrozenDocument goes as it is: its text is what the JSON column stores.
        "validation_result": order.validation_result,
        "status_message": order.status_message,
        "error_message": order.error_message,
        "modification_count": order.modification_count,
        "client_order_id": order.client_order_id,
        "variety": _value(order.variety),
        "metadata_": dict(order.metadata or {}),
        "created_at": order.created_at,
        "submitted_at": order.submitted_at,
        "updated_at": order.updated_at,
        "filled_at": order.filled_at,
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
        "error_message": order.error_message,
        "quantity": order.quantity,
        "price": order.price,
        "trigger_price": order.trigger_price,
        "modification_count": order.modification_count,
        "submitted_at": order.submitted_at,
        "updated_at": order.updated_at,
        "filled_at": order.filled_at,
    }


def _dict_or_none(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else dict(value)


# The orders table's columns by key, looked up once: ``orders.c.<name>`` is a lookup in
# SQLAlchemy's column collection (about 1 us), and reading one order took 32 of them.
# A restart's 10,000 live orders took 0.33-0.44 s here, 0.23 s now (measured).
_O = SimpleNamespace(**{column.key: column for column in orders.c})


def _order_from_row(row: RowMapping) -> Order:
    return Order(
        order_id=row[_O.id],
        tag=row[_O.tag],
        symbol=row[_O.symbol],
        exchange=Exchange(row[_O.exchange]),
        side=Side(row[_O.side]),
        quantity=row[_O.quantity],
        order_type=OrderType(row[_O.order_type]),
        product=Product(row[_O.product]),
        validity=Validity(row[_O.validity]),
        strategy_id=row[_O.strategy_id],
        status=OrderStatus(row[_O.status]),
        created_at=row[_O.created_at],
        updated_at=row[_O.updated_at],
        submitted_at=row[_O.submitted_at],
        filled_at=row[_O.filled_at],
        price=row[_O.price],
        trigger_price=row[_O.trigger_price],
        stop_loss=row[_O.stop_loss],
        take_profit=row[_O.take_profit],
        risk_amount=row[_O.risk_amount],
        tick_size=row[_O.tick_size],
        metadata=dict(row[_O.metadata_] or {}),
        filled_quantity=row[_O.filled_quantity],
        average_price=row[_O.average_price],
        filled_value=row[_O.filled_value],
        broker_order_id=row[_O.broker_order_id],
        validation_result=row[_O.validation_result],  # a FrozenDocument of the stored text
        status_message=row[_O.status_message],
        error_message=row[_O.error_message],
        modification_count=row[_O.modification_count],
        client_order_id=row[_O.client_order_id],
        variety=Variety(row[_O.variety]),
    )


def _event_row(event: OrderEvent) -> dict[str, Any]:
    return {
        "order_id": event.order_id,
        "at": event.at,
        "from_status": _value(event.from_status),
        "to_status": _value(event.to_status),
        "payload": dict(event.payload or {}),
    }


# Annotations and modifications of working orders, in the order written: where a
# modification request and its outcome are recorded.
_OPEN_TO_OPEN = (
    select(order_events.c.order_id, order_events.c.payload)
    .where(order_events.c.from_status == OrderStatus.OPEN.value, order_events.c.to_status == OrderStatus.OPEN.value)
    .order_by(order_events.c.id)
)


def _unanswered(rows: Iterable[RowMapping]) -> dict[int, dict[str, str]]:
    """Per order, the last ``modify_requested`` no modification followed (OPEN -> OPEN
    events in the order written)."""
    asked: dict[int, dict[str, str]] = {}
    for row in rows:
        payload = dict(row[order_events.c.payload] or {})
        order_id = row[order_events.c.order_id]
        if "modify_requested" in payload:
            asked[order_id] = dict(payload["modify_requested"])
        elif "modified" in payload or "modified_at_broker" in payload or "modify_refused" in payload:
            asked.pop(order_id, None)  # carried out, or refused for certain: nothing left unsure
    return asked


def _event_from_row(row: RowMapping) -> OrderEvent:
    from_status = row[order_events.c.from_status]
    return OrderEvent(
        order_id=row[order_events.c.order_id],
        at=row[order_events.c.at],
        from_status=None if from_status is None else OrderStatus(from_status),
        to_status=OrderStatus(row[order_events.c.to_status]),
        payload=dict(row[order_events.c.payload] or {}),
        id=row[order_events.c.id],
    )


# The scale of the charge columns (all alike): each component is rounded to it before
# it is stored, and total_charges is the sum of the stored components, as the guide
# defines it. (Rounding the exact total instead can differ from that sum in the last place.)
_CHARGE_PLACES = Decimal(1).scaleb(-trades.c.brokerage.type.scale)
assert all(
    trades.c[name].type.scale == trades.c.brokerage.type.scale
    for name in ("stt", "exchange_txn_charge", "gst", "stamp_duty", "sebi_fee", "total_charges")
)


def _trade_row(fill: Fill) -> dict[str, Any]:
    charges = fill.charges.rounded(_CHARGE_PLACES)
    protective = {k: str(v) for k, v in (("stop_loss", fill.stop_loss), ("take_profit", fill.take_profit)) if v is not None}
    return {
        "broker_trade_id": fill.trade_id,
        "order_id": fill.order_id,
        "broker_order_id": fill.broker_order_id,
        "symbol": fill.symbol,
        "exchange": _value(fill.exchange),
        "product": _value(fill.product),
        "side": _value(fill.side),
        "quantity": fill.quantity,
        "price": fill.price,
        "brokerage": charges.brokerage,
        "stt": charges.stt,
        "exchange_txn_charge": charges.exchange_charge,
        "gst": charges.gst,
        "stamp_duty": charges.stamp_duty,
        "sebi_fee": charges.sebi_fee,
        "total_charges": charges.total,
        "executed_at": fill.at,
        "metadata_": protective or None,
        "position_applied": False,
    }


def _fill_from_row(row: RowMapping) -> Fill:
    protective = row[trades.c.metadata_] or {}
    return Fill(
        trade_id=row[trades.c.broker_trade_id],
        order_id=row[trades.c.order_id],
        broker_order_id=row[trades.c.broker_order_id],
        exchange=Exchange(row[trades.c.exchange]),
        symbol=row[trades.c.symbol],
        product=Product(row[trades.c.product]),
        side=Side(row[trades.c.side]),
        quantity=row[trades.c.quantity],
        price=row[trades.c.price],
        at=row[trades.c.executed_at],
        charges=Charges(
            brokerage=row[trades.c.brokerage],
            stt=row[trades.c.stt],
            exchange_charge=row[trades.c.exchange_txn_charge],
            sebi_fee=row[trades.c.sebi_fee],
            stamp_duty=row[trades.c.stamp_duty],
            gst=row[trades.c.gst],
        ),
        stop_loss=_decimal_or_none(protective.get("stop_loss")),
        take_profit=_decimal_or_none(protective.get("take_profit")),
        id=row[trades.c.id],
    )


def _decimal_or_none(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _position_row(position: Position) -> dict[str, Any]:
    # A position row exists only once a fill has moved it, so it has a time by then.
    opened_at = position.opened_at or position.updated_at
    return {
        "exchange": _value(position.exchange),
        "symbol": position.symbol,
        "product": _value(position.product),
        "quantity": position.quantity,
        "average_price": position.average_price,
        "realized_pnl": position.realized_pnl,
        "unrealized_pnl": position.unrealized_pnl,
        "stop_loss": position.stop_loss,
        "take_profit": position.take_profit,
        "charges": position.charges,
        "last_price": position.last_price,
        "opened_at": opened_at,
        "updated_at": position.updated_at or opened_at,
        "closed_at": position.closed_at,
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
        opened_at=row[positions.c.opened_at],
        closed_at=row[positions.c.closed_at],
        stop_loss=row[positions.c.stop_loss],
        take_profit=row[positions.c.take_profit],
    )


# --------------------------------------------------------------------------- write ops


def _group_op(conn: Connection, intent: Intent) -> Any:
    """One intent written through the group path (the only write path for orders)."""
    return write_group(conn, [intent], _rows_for(conn))[0]


def _op_record_reconciliation(
    conn: Connection,
    at: datetime,
    issue_type: str,
    *,
    symbol: str,
    internal_quantity: int | None = None,
    broker_quantity: int | None = None,
    resolved: bool = False,
    resolution: str | None = None,
    resolved_at: datetime | None = None,
    exchange: Exchange | str | None = None,
    product: Product | str | None = None,
    order_id: int | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    conn.execute(
        insert(reconciliation_log).values(
            account=conn.info[ACCOUNT_KEY],
            detected_at=at,
            issue_type=_value(issue_type),
            symbol=symbol,
            internal_quantity=internal_quantity,
            broker_quantity=broker_quantity,
            resolved=resolved,
            resolution=resolution,
            resolved_at=resolved_at,
            exchange=_value(exchange),
            product=_value(product),
            order_id=order_id,
            metadata_=None if metadata is None else dict(metadata),
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


def op_reconciliation(at: datetime, issue_type: str, **fields: Any) -> WriteOp:
    return partial(_op_record_reconciliation, at=at, issue_type=issue_type, **fields)


# The Store puts its account on the connection for the length of each transaction, so
# every write made through it (op builders included) is stamped with that account.
ACCOUNT_KEY = "oms_account"


class _RowMappers:
    """The row mappers for one account, handed to ``group_write`` (which must not
    import this module)."""

    def __init__(self, account: str) -> None:
        self.account = account

    def order_row(self, order: Order) -> dict[str, Any]:
        return {**_order_row(order), "account": self.account}

    def order_changes(self, order: Order) -> dict[str, Any]:
        return _order_changes(order)

    def event_row(self, event: OrderEvent) -> dict[str, Any]:
        return {**_event_row(event), "account": self.account}

    def trade_row(self, fill: Fill) -> dict[str, Any]:
        return {**_trade_row(fill), "account": self.account}

    def position_row(self, position: Position) -> dict[str, Any]:
        return {**_position_row(position), "account": self.account}


_MAPPERS: dict[str, _RowMappers] = {}


def _rows_for(conn: Connection) -> _RowMappers:
    account = conn.info[ACCOUNT_KEY]
    mappers = _MAPPERS.get(account)
    if mappers is None:
        mappers = _MAPPERS[account] = _RowMappers(account)
    return mappers


# --------------------------------------------------------------------------- the Store


# A connection idle for longer is checked (one SELECT 1) before it is written on: under
# load it never is, and after a quiet spell the round trip is nothing beside an order
# failed for a connection that had died meanwhile.
IDLE_PING_SECONDS = 2.0


class UnsureCommit(Exception):
    """The connection was lost while a group's COMMIT was on its way: the group may or
    may not have been written. ``transaction_id`` is what ``Store.commit_status`` asks
    the server about once it answers again; ``results`` are the group's results had it
    been written. (An outage: nothing can be known until the database is back.)"""

    def __init__(self, transaction_id: str, results: Any, cause: BaseException) -> None:
        if isinstance(cause, UnsureCommit):
            cause = cause.cause
        super().__init__(f"connection lost while committing transaction {transaction_id}: {cause}")
        self.cause = cause
        self.transaction_id = transaction_id
        self.results = results


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot be used right now (unreachable, the
    connection lost, the disk full), rather than that one write was wrong."""
    if isinstance(error, UnsureCommit):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (OperationalError, InterfaceError))


class Store:
    """Reads and writes one account's domain values; one long-lived connection; one
    transaction per write (or per ``write_many`` batch)."""

    def __init__(self, engine: Engine, account: str = DEFAULT_ACCOUNT) -> None:
        self._engine = engine
        self.account = account
        self._conn: Connection | None = None
        self._last_used = time.monotonic()
        self._lock = threading.RLock()
        self._closed = False
        self._tag_prefix: str | None = None

    @classmethod
    def open(cls, url: str, migrate: bool = True, account: str = DEFAULT_ACCOUNT) -> "Store":
        """A Store on a new engine for ``url``; with ``migrate``, the schema is brought
        to the newest revision first."""
        return cls(engine_for(url, migrate), account)

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
        if conn is not None and time.monotonic() - self._last_used > IDLE_PING_SECONDS and not self._alive(conn):
            # The server (or the network) dropped it while it sat idle: an outage that
            # nothing wrote through. The write at hand goes on a new connection instead
            # of failing on the dead one.
            self._discard(conn)
            conn = None
        if conn is None:
            conn = self._engine.connect()
            self._conn = conn
        self._last_used = time.monotonic()
        return conn

    @staticmethod
    def _alive(conn: Connection) -> bool:
        try:
            with conn.begin():
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - any failure: it is not fit to write on
            return False

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
            conn.info[ACCOUNT_KEY] = self.account
            conn.info.pop(TRANSACTION_ID_KEY, None)
            done, transaction_id = False, None
            try:
                if conn.in_transaction():  # left over from an earlier failure
                    conn.rollback()
                with conn.begin():
                    result = work(conn)
                    # What fails from here on is the COMMIT. (The id is read now: a lost
                    # connection is invalidated, and its info with it, before we hear.)
                    done, transaction_id = True, conn.info.pop(TRANSACTION_ID_KEY, None)
                return result
            except DBAPIError as exc:
                lost = exc.connection_invalidated or conn.invalidated or conn.closed
                if lost:
                    self._discard(conn)
                if done and lost and transaction_id is not None:
                    raise UnsureCommit(transaction_id, result, exc) from exc
                raise
            except BaseException:
                if conn.invalidated or conn.closed:
                    self._discard(conn)
                raise

    def commit_status(self, transaction_id: str) -> str | None:
        """What became of a PostgreSQL transaction whose COMMIT went unanswered
        (``UnsureCommit``, its id "<xid>/<pid>"): 'committed' or 'aborted'; None if the
        server cannot say (it no longer knows the id, as after a fail-over: never written
        here). A transaction still 'in progress' (its COMMIT never reached a server
        process that is still waiting, say behind a network partition, and would wait
        for hours) is ended by ending that process, and then it is 'aborted' or, had the
        COMMIT just arrived, 'committed'. Raises an outage while the server is away."""
        xid, _, pid = transaction_id.partition("/")

        def status(conn: Connection) -> str | None:
            return conn.exec_driver_sql("SELECT pg_xact_status(CAST(%(xid)s AS xid8))", {"xid": xid}).scalar()

        try:
            found = self._transaction(status)
        except DBAPIError as error:
            if is_outage(error):
                raise
            return None
        if found != "in progress" or not pid:
            return found

        def end(conn: Connection) -> None:
            # Only that process, and only while it still holds this transaction (a pid is
            # given to a new process once the old one is gone).
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                "WHERE pid = %(pid)s AND backend_xid::text = %(xid32)s",
                {"pid": int(pid), "xid32": str(int(xid) % 2**32)},
            )

        self._transaction(end)
        return self._transaction(status)

    # ---------------------------------------------------------------- order ids

    def reserve_ids(self, count: int) -> list[int]:
        """``count`` order ids no one else will ever be given, from the database's own
        sequence (several OMS processes sharing the database included). Unused ones are
        simply never seen: ids may have gaps, never repeats."""
        if count <= 0:
            return []
        return self._transaction(lambda conn: reserve_order_ids(conn, count))

    def tag_prefix(self) -> str:
        """This database's mark on its orders at the broker (see ``domain.order_tag``)."""
        if self._tag_prefix is None:
            self._tag_prefix = self._transaction(read_tag_prefix)
        return self._tag_prefix

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
        return self._transaction(lambda conn: write_group(conn, intents, _rows_for(conn), careful))

    def record_new_order(self, order: Order, event: OrderEvent) -> None:
        """Insert the orders row and its first event."""
        self._transaction(op_new_order(order, event))

    def record_transition(self, order: Order, event: OrderEvent) -> None:
        """Update the order's mutable fields and append the event."""
        self._transaction(op_transition(order, event))

    def record_fill(self, fill: Fill, order: Order, event: OrderEvent) -> bool:
        """Insert the trade and update the order and append the event; if the trade id
        is already stored, write nothing and return False."""
        return bool(self._transaction(op_fill(fill, order, event)))

    def record_position(self, position: Position, applied_trade_id: str | None = None) -> None:
        """Upsert the position by (exchange, symbol, product); mark ``applied_trade_id``
        (if given) as applied to it, in the same transaction. An ``applied_trade_id``
        with no trades row raises LookupError and nothing is written."""
        self._transaction(op_position(position, applied_trade_id))

    def record_reconciliation(self, at: datetime, issue_type: str, **fields: Any) -> None:
        """One reconciliation finding, in the guide's columns (see ``op_reconciliation``)."""
        self._transaction(op_reconciliation(at, issue_type, **fields))

    def record_finding(self, at: datetime, issue_type: str, position: Position | None = None, **fields: Any) -> None:
        """One reconciliation finding and the position it corrected (if any), in one
        transaction: a correction is never stored without its reason, nor the reverse.
        A finding resolved when found is resolved at ``at``."""
        if fields.get("resolved") and fields.get("resolved_at") is None:
            fields["resolved_at"] = at
        finding = op_reconciliation(at, issue_type, **fields)
        if position is None:
            self._transaction(finding)
            return
        write_position = op_position(position)
        self._transaction(lambda conn: (write_position(conn), finding(conn)))

    def record_trading_state(self, state: str, reason: str, at: datetime) -> None:
        """Append one change of the trading state (the latest row is the state)."""
        self._transaction(lambda conn: conn.execute(insert(trading_states).values(
            account=self.account, state=state, reason=reason, changed_at=at,
        )))

    def load_trading_state(self) -> tuple[str, str, datetime] | None:
        """The account's trading state as last changed: (state, reason, when), or None."""
        statement = (
            select(trading_states).where(trading_states.c.account == self.account)
            .order_by(trading_states.c.id.desc()).limit(1)
        )
        found = self._rows(statement)
        if not found:
            return None
        row = found[0]
        return row["state"], row["reason"], row["changed_at"]

    def load_trading_states(self) -> list[tuple[str, str, datetime]]:
        """Every change of the account's trading state, oldest first."""
        statement = select(trading_states).where(trading_states.c.account == self.account).order_by(trading_states.c.id)
        return [(row["state"], row["reason"], row["changed_at"]) for row in self._rows(statement)]

    def record_day_baseline(
        self, day: date, realized: Decimal, unrealized: Decimal, charges: Decimal, at: datetime,
    ) -> tuple[Decimal, Decimal, Decimal]:
        """Keep the day's starting totals unless the day has them already; answer the
        day's baseline as stored (the first one recorded wins)."""

        def work(conn: Connection) -> tuple[Decimal, Decimal, Decimal]:
            mine = (day_baselines.c.account == self.account) & (day_baselines.c.day == day)
            row = conn.execute(select(day_baselines).where(mine)).mappings().first()
            if row is None:
                conn.execute(insert(day_baselines).values(
                    account=self.account, day=day, realized_pnl=realized, unrealized_pnl=unrealized, charges=charges,
                    recorded_at=at,
                ))
                return realized, unrealized, charges
            return row["realized_pnl"], row["unrealized_pnl"], row["charges"]

        return self._transaction(work)

    def known_tags(self, tags: Sequence[str]) -> set[str]:
        """Which of ``tags`` our orders carry (older orders carry tags of an older form)."""
        found: set[str] = set()
        for start in range(0, len(tags), 500):
            chunk = list(tags[start : start + 500])
            statement = select(orders.c.tag).where(orders.c.account == self.account, orders.c.tag.in_(chunk))
            found.update(row["tag"] for row in self._rows(statement))
        return found

    def untagged_broker_orders(self) -> set[str]:
        """The broker order ids already reported as carrying no tag of ours."""
        statement = select(reconciliation_log.c.metadata_).where(
            reconciliation_log.c.account == self.account, reconciliation_log.c.issue_type == "UNTAGGED_ORDER",
        )
        documents = [row[reconciliation_log.c.metadata_] for row in self._rows(statement)]
        return {str(d["broker_order_id"]) for d in documents if d and "broker_order_id" in d}

    # ---------------------------------------------------------------- reads

    def _rows(self, statement: Any) -> list[RowMapping]:
        return self._transaction(lambda conn: list(conn.execute(statement).mappings()))

    def load_order(self, order_id: int) -> Order | None:
        rows = self._rows(select(orders).where(orders.c.id == order_id, orders.c.account == self.account))
        return _order_from_row(rows[0]) if rows else None

    def filled_quantities(self, order_ids: Iterable[int]) -> dict[int, int]:
        """The filled quantity of each of these orders that the account has, in a few
        queries however many are asked (the reconciler compares a whole day's orders
        with the broker's on every pass that finds a difference)."""
        wanted = sorted(set(order_ids))
        found: dict[int, int] = {}
        for start in range(0, len(wanted), _IDS_PER_QUERY):
            chunk = wanted[start : start + _IDS_PER_QUERY]
            statement = select(orders.c.id, orders.c.filled_quantity).where(
                orders.c.account == self.account, orders.c.id.in_(chunk)
            )
            found.update((row[orders.c.id], row[orders.c.filled_quantity]) for row in self._rows(statement))
        return found

    def load_order_by_client_id(self, client_order_id: str) -> Order | None:
        """The account's order placed with this client order id, if any."""
        rows = self._rows(
            select(orders).where(orders.c.account == self.account, orders.c.client_order_id == client_order_id)
        )
        return _order_from_row(rows[0]) if rows else None

    def load_orders(
        self,
        statuses: Iterable[OrderStatus] | None = None,
        strategy_id: int | None = None,
        after_id: int = 0,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Order]:
        """Orders (optionally only those in ``statuses`` / of ``strategy_id``) in id
        order, those with ids above ``after_id`` (a cursor: pass the last id seen), at
        most ``limit`` of them; ``newest_first``: the ``limit`` newest, newest first."""
        statement = (
            select(orders)
            .where(orders.c.account == self.account, orders.c.id > after_id)
            .order_by(orders.c.id.desc() if newest_first else orders.c.id)
            .limit(limit)
        )
        if statuses is not None:
            wanted = [_value(s) for s in statuses]
            if not wanted:
                return []
            statement = statement.where(orders.c.status.in_(wanted))
        if strategy_id is not None:
            statement = statement.where(orders.c.strategy_id == strategy_id)
        return [_order_from_row(row) for row in self._rows(statement)]

    def load_orders_in(self, exchange: Exchange, symbol: str, product: Product, since: datetime) -> list[Order]:
        """The orders in one instrument created at or after ``since``, oldest first."""
        statement = (
            select(orders)
            .where(
                orders.c.account == self.account, orders.c.exchange == _value(exchange), orders.c.symbol == symbol,
                orders.c.product == _value(product), orders.c.created_at >= since,
            )
            .order_by(orders.c.id)
        )
        return [_order_from_row(row) for row in self._rows(statement)]

    def load_live_orders(self) -> list[Order]:
        """Orders not in a terminal status, oldest first."""
        live = [s for s in OrderStatus if s not in TERMINAL_STATUSES]
        return self.load_orders(statuses=live)

    def load_positions(self) -> list[Position]:
        statement = (
            select(positions)
            .where(positions.c.account == self.account)
            .order_by(positions.c.exchange, positions.c.symbol, positions.c.product)
        )
        return [_position_from_row(row) for row in self._rows(statement)]

    def load_fills(self, order_id: int | None = None, after_id: int = 0, limit: int | None = None) -> list[Fill]:
        """Fills (of one order, or all), in the order they were recorded: those recorded
        after the fill numbered ``after_id`` (``trades.id``), at most ``limit``."""
        statement = (
            select(trades)
            .where(trades.c.account == self.account, trades.c.id > after_id)
            .order_by(trades.c.id)
            .limit(limit)
        )
        if order_id is not None:
            statement = statement.where(trades.c.order_id == order_id)
        return [_fill_from_row(row) for row in self._rows(statement)]

    def load_unapplied_fills(self) -> list[Fill]:
        """Fills whose position was not (yet) written, in the order they were recorded."""
        statement = (
            select(trades)
            .where(trades.c.account == self.account, trades.c.position_applied.is_(False))
            .order_by(trades.c.id)
        )
        return [_fill_from_row(row) for row in self._rows(statement)]

    def trade_ids(self, order_id: int) -> set[str]:
        rows = self._rows(
            select(trades.c.broker_trade_id).where(trades.c.account == self.account, trades.c.order_id == order_id)
        )
        return {row[trades.c.broker_trade_id] for row in rows}

    def trade_applied(self, trade_id: str) -> bool:
        """Whether the position has already been moved by this trade."""
        rows = self._rows(
            select(trades.c.position_applied).where(trades.c.account == self.account, trades.c.broker_trade_id == trade_id)
        )
        return bool(rows and rows[0][trades.c.position_applied])

    def trade_ids_of_live_orders(self) -> dict[int, set[str]]:
        """The trade ids of every order not yet terminal, by order id, in one query."""
        live = [s.value for s in OrderStatus if s not in TERMINAL_STATUSES]
        statement = (
            select(trades.c.order_id, trades.c.broker_trade_id)
            .join(orders, orders.c.id == trades.c.order_id)
            .where(orders.c.account == self.account, orders.c.status.in_(live))
        )
        found: dict[int, set[str]] = {}
        for row in self._rows(statement):
            found.setdefault(row[trades.c.order_id], set()).add(row[trades.c.broker_trade_id])
        return found

    def unanswered_modifications_of_live_orders(self) -> dict[int, dict[str, str]]:
        """For each live order whose last modification request was never answered (its
        audit trail has ``modify_requested`` with no modification after it), what was
        asked, as recorded: what may have been carried out. A request the broker refused
        (``modify_refused``) is answered; one whose answer was lost (``modify_unanswered``)
        is not. One query, over the OPEN -> OPEN events of live orders only."""
        live = [s.value for s in OrderStatus if s not in TERMINAL_STATUSES]
        statement = _OPEN_TO_OPEN.join(orders, orders.c.id == order_events.c.order_id).where(
            orders.c.account == self.account, orders.c.status.in_(live),
        )
        return _unanswered(self._rows(statement))

    def unanswered_modification(self, order_id: int) -> dict[str, str] | None:
        """One order's unanswered modification request (as above), for a tracker started
        again while the OMS runs."""
        statement = _OPEN_TO_OPEN.where(order_events.c.account == self.account, order_events.c.order_id == order_id)
        return _unanswered(self._rows(statement)).get(order_id)

    def load_events(self, order_id: int | None = None, after_id: int = 0, limit: int | None = None) -> list[OrderEvent]:
        """The audit trail (of one order, or all), in the order it was written: events
        after ``after_id`` (``order_events.id``), at most ``limit``."""
        statement = (
            select(order_events)
            .where(order_events.c.account == self.account, order_events.c.id > after_id)
            .order_by(order_events.c.id)
            .limit(limit)
        )
        if order_id is not None:
            statement = statement.where(order_events.c.order_id == order_id)
        return [_event_from_row(row) for row in self._rows(statement)]

    def load_reconciliation_log(self) -> list[dict[str, Any]]:
        """Every reconciliation entry, oldest first, as a dict keyed by column name."""
        statement = (
            select(reconciliation_log)
            .where(reconciliation_log.c.account == self.account)
            .order_by(reconciliation_log.c.id)
        )
        return [
            {column.name: row[column] for column in reconciliation_log.columns}
            for row in self._rows(statement)
        ]

    def count_orders_by_status(self) -> dict[OrderStatus, int]:
        """How many orders are in each status (every status present, zero if none)."""
        statement = (
            select(orders.c.status, func.count().label("n"))
            .where(orders.c.account == self.account)
            .group_by(orders.c.status)
        )
        counts = {status: 0 for status in OrderStatus}
        for row in self._rows(statement):
            counts[OrderStatus(row["status"])] = int(row["n"])
        return counts
