"""Many writes in one transaction with a few statements: the group commit's engine.

A group is a sequence of write intents (new orders, transitions, fills, positions) in
the order they were made. Rather than a handful of statements per intent, the group is
written table by table: every order row once, in its final state; every audit event
in sequence (so event ids keep the order things happened); the trades that are new;
every position once, in its final state. The result for each
intent is what its single write would have returned (for a fill: whether it was new).

This is the hot path of the whole OMS, so it speaks to the driver directly, inside the
caller's SQLAlchemy transaction: on PostgreSQL the whole group as one query
(``persistence.one_query``), on SQLite plain SQL and ``executemany``. Values are
converted exactly as the column types in ``persistence.types`` store them (those types
still read every row back), and the conversions are chosen from the columns' declared
types in ``persistence.schema``, so the two cannot drift.

Any surprise (an update that matches no row, a constraint) raises and rolls the whole
group back; the caller then writes the intents one by one so the culprit alone fails.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timezone
from functools import lru_cache, partial
from typing import Any, Callable, Iterator, Sequence

from sqlalchemy import Boolean, Table
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, StatementError

from domain.fill import Fill
from domain.order import Order, OrderEvent
from domain.position import Position
from persistence.one_query import run_as_one_query
from persistence.schema import order_events, orders, positions, trades
from persistence.types import JSONDoc, Money, UTCDateTime, bind_money, bind_utc, json_dumps

UTC = timezone.utc


@dataclass(frozen=True, slots=True)
class NewOrder:
    order: Order
    event: OrderEvent


@dataclass(frozen=True, slots=True)
class Transition:
    order: Order
    event: OrderEvent


@dataclass(frozen=True, slots=True)
class NewFill:
    fill: Fill
    order: Order
    event: OrderEvent


@dataclass(frozen=True, slots=True)
class PositionUpdate:
    position: Position
    applied_trade_id: str | None = None


Intent = NewOrder | Transition | NewFill | PositionUpdate


class OrderNotFound(LookupError):
    """An update named an order that has no row."""


# Where write_group leaves the PostgreSQL transaction id of the group it wrote (conn.info).
TRANSACTION_ID_KEY = "oms_transaction_id"
# "<transaction id>/<server process id>": the process, to end it if it lingers ('in progress').
_TRANSACTION_ID = "SELECT pg_current_xact_id()::text || '/' || pg_backend_pid()::text"


class TradeNotUnapplied(LookupError):
    """A position update named a trade that has no row, or whose position was already
    moved by it (``trades.position_applied``)."""


# --- values as the column types store them ----------------------------------------------

def _json_text(value: Any) -> str | None:
    return None if value is None else json_dumps(value)


def _converter(column, sqlite: bool) -> Callable[[Any], Any]:
    kind = column.type
    if isinstance(kind, Money):
        return partial(bind_money, column=column.name, precision=kind.precision, scale=kind.scale, sqlite=sqlite)
    if isinstance(kind, UTCDateTime):
        return partial(bind_utc, column=column.name, sqlite=sqlite, as_text=True)
    if isinstance(kind, JSONDoc):
        return _json_text
    if isinstance(kind, Boolean):
        return (lambda v: None if v is None else int(bool(v))) if sqlite else (lambda v: v)
    return lambda v: getattr(v, "value", v)  # enums as their text


class _Statements:
    """The group write's SQL for one dialect, with each column's converter."""

    def __init__(self, dialect: str) -> None:
        self.sqlite = dialect == "sqlite"
        self.pg = dialect == "postgresql"

    def placeholder(self, name: str, column=None) -> str:
        mark = f"%({name})s" if self.pg else f":{name}"
        if self.pg and column is not None and isinstance(column.type, JSONDoc):
            return f"CAST({mark} AS JSONB)"
        return mark

    @lru_cache(maxsize=None)
    def converters(self, table: Table, keys: tuple[str, ...]) -> tuple[Callable[[Any], Any], ...]:
        return tuple(_converter(table.c[k], self.sqlite) for k in keys)

    @lru_cache(maxsize=None)
    def insert(self, table: Table, keys: tuple[str, ...], upsert_on: tuple[str, ...] = (), replace: bool = True) -> str:
        names = ", ".join(table.c[k].name for k in keys)
        values = ", ".join(self.placeholder(k, table.c[k]) for k in keys)
        sql = f"INSERT INTO {table.name} ({names}) VALUES ({values})"
        if upsert_on and not replace:
            sql += f" ON CONFLICT ({', '.join(upsert_on)}) DO NOTHING"
        elif upsert_on:
            changes = ", ".join(
                f"{table.c[k].name} = excluded.{table.c[k].name}" for k in keys if k not in upsert_on
            )
            sql += f" ON CONFLICT ({', '.join(upsert_on)}) DO UPDATE SET {changes}"
        return sql

    @lru_cache(maxsize=None)
    def update(self, table: Table, keys: tuple[str, ...], where: tuple[str, ...]) -> str:
        """UPDATE ... SET keys WHERE each of ``where`` equals its ``w_<name>`` parameter."""
        sets = ", ".join(f"{table.c[k].name} = {self.placeholder(k, table.c[k])}" for k in keys)
        conditions = " AND ".join(f"{w} = {self.placeholder('w_' + w)}" for w in where)
        return f"UPDATE {table.name} SET {sets} WHERE {conditions}"

    def insert_step(
        self, table: Table, dicts: Sequence[dict[str, Any]], upsert_on: tuple[str, ...] = (), replace: bool = True
    ) -> "_Step":
        """Insert ``dicts`` in order: one execution of the statement per row."""
        keys, params = self.rows(table, dicts)
        return _Step(self.insert(table, keys, upsert_on, replace), params)

    def rows(self, table: Table, dicts: Sequence[dict[str, Any]]) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
        keys = tuple(dicts[0])
        convert = self.converters(table, keys)
        return keys, [{k: f(row[k]) for k, f in zip(keys, convert)} for row in dicts]


@lru_cache(maxsize=None)
def _statements(dialect: str) -> _Statements:
    return _Statements(dialect)


# --- the group ----------------------------------------------------------------------------

def write_group(conn: Connection, intents: Sequence[Intent], rows, careful: bool = True) -> list[Any]:
    """Write ``intents`` on ``conn`` (inside the caller's transaction). ``rows`` is the
    Store's row mappers (order_row, order_changes, event_row, trade_row, position_row).

    ``careful`` first asks which fills' trade ids are already stored, so a duplicate is
    answered False and writes nothing. Not careful, the trades are simply inserted: a
    duplicate then fails the whole group on the unique constraint, and the caller redoes
    the intents carefully, one by one. (Duplicates are rare; the order trackers drop
    them first.) That saves a round trip on every group.
    """
    sql = _statements(conn.dialect.name)
    raw = conn.connection.dbapi_connection
    with _as_sqlalchemy_errors(conn, raw, "group write"):
        known: set[str] = set()
        if careful:
            known = _stored_trade_ids(raw, sql, rows.account, [i.fill.trade_id for i in intents if isinstance(i, NewFill)])
        results, plan = _plan(sql, intents, rows, known)
        xid = _run(raw, plan, one_query=sql.pg and not careful, transaction_id=sql.pg)
        if xid is not None:
            conn.info[TRANSACTION_ID_KEY] = xid
        return results


def write_rows(
    conn: Connection, steps: Sequence[tuple[Table, Sequence[dict[str, Any]], tuple[str, ...], bool]], *, commit: bool = False,
) -> None:
    """Write whole rows, table by table, on ``conn`` (inside the caller's transaction):
    each step is (table, rows, conflict keys, replace). With conflict keys, a row that
    is there already is replaced (``replace``) or left as it is (a fact written once).
    On PostgreSQL every statement goes out in one query: one round trip. With
    ``commit``, the same query also commits, when these are the transaction's first
    statements (the caller's COMMIT then has nothing left to do); only for rows that
    can be written again should the answer be lost (``run_as_one_query``). Elsewhere
    the caller commits, as always."""
    sql = _statements(conn.dialect.name)
    raw = conn.connection.dbapi_connection
    with _as_sqlalchemy_errors(conn, raw, "row write"):
        plan = [sql.insert_step(table, rows, keys, replace) for table, rows, keys, replace in steps if rows]
        _run(raw, plan, one_query=sql.pg, commit=commit)


@contextmanager
def _as_sqlalchemy_errors(conn: Connection, raw: Any, what: str) -> Iterator[None]:
    """Driver errors raised as SQLAlchemy would have: the same exception classes
    (IntegrityError, OperationalError, ...), and a dead connection invalidated so its
    owner reconnects; a value refused before it reached the database as StatementError."""
    try:
        yield
    except (TypeError, ValueError) as error:
        raise StatementError(str(error), what, None, error) from error
    except conn.dialect.loaded_dbapi.Error as error:
        lost = conn.dialect.is_disconnect(error, raw, None)
        if lost:
            conn.invalidate(error)
        raise DBAPIError.instance(
            what, None, error, conn.dialect.loaded_dbapi.Error, connection_invalidated=lost, dialect=conn.dialect,
        ) from error


def _stored_trade_ids(raw, sql: _Statements, account: str, trade_ids: list[str]) -> set[str]:
    if not trade_ids:
        return set()
    cursor = raw.cursor()
    try:
        marks = ", ".join(sql.placeholder(f"t{n}") for n in range(len(trade_ids)))
        cursor.execute(
            f"SELECT broker_trade_id FROM trades WHERE account = {sql.placeholder('account')} AND broker_trade_id IN ({marks})",
            {"account": account, **{f"t{n}": t for n, t in enumerate(trade_ids)}},
        )
        return {row[0] for row in cursor.fetchall()}
    finally:
        cursor.close()


@dataclass(slots=True)
class _Step:
    """One statement and its parameter sets, executed once per set."""

    sql: str
    params: list[dict[str, Any]]
    expected_rows: int | None = None  # refuse the group if the statement touches fewer
    refusal: str = ""


def _plan(sql: _Statements, intents: Sequence[Intent], rows, known: set[str]) -> tuple[list[Any], list[_Step]]:
    """Each intent's result, and the statements that write the group."""
    results: list[Any] = []
    inserted: dict[int, Order] = {}  # order rows new in this group, final state
    updated: dict[int, Order] = {}  # existing order rows, final state
    events: list[OrderEvent] = []
    new_trades: list[Fill] = []
    final_positions: dict[tuple, Position] = {}
    applied: list[str] = []
    known = set(known)
    for intent in intents:
        if isinstance(intent, NewFill):
            if intent.fill.trade_id in known:
                results.append(False)
                continue
            known.add(intent.fill.trade_id)
            new_trades.append(intent.fill)
            results.append(True)
        else:
            results.append(None)
        if isinstance(intent, NewOrder):
            inserted[intent.order.order_id] = intent.order
            events.append(intent.event)
        elif isinstance(intent, (Transition, NewFill)):
            order_id = intent.order.order_id
            (inserted if order_id in inserted else updated)[order_id] = intent.order
            events.append(intent.event)
        elif isinstance(intent, PositionUpdate):
            final_positions[intent.position.key] = intent.position
            if intent.applied_trade_id is not None:
                applied.append(intent.applied_trade_id)

    plan: list[_Step] = []
    if inserted:
        plan.append(sql.insert_step(orders, [rows.order_row(o) for o in inserted.values()]))
    if updated:
        keys, params = sql.rows(orders, [rows.order_changes(o) for o in updated.values()])
        for param, order_id in zip(params, updated):
            param["w_id"] = order_id
            param["w_account"] = rows.account  # another account's order is no order of ours
        plan.append(_Step(
            sql.update(orders, keys, ("id", "account")), params, len(params),
            "order update(s) matched no orders row of this account",
        ))
    if events:
        plan.append(sql.insert_step(order_events, [rows.event_row(e) for e in events]))
    if new_trades:
        plan.append(sql.insert_step(trades, [rows.trade_row(f) for f in new_trades]))
    if final_positions:
        plan.append(sql.insert_step(positions, [rows.position_row(p) for p in final_positions.values()], ("account", "exchange", "symbol", "product")))
    if applied:
        yes = True if sql.pg else 1
        plan.append(_Step(
            f"UPDATE trades SET position_applied = {sql.placeholder('yes')} "
            f"WHERE account = {sql.placeholder('account')} AND broker_trade_id = {sql.placeholder('w_trade_id')} "
            f"AND position_applied = {sql.placeholder('no')}",
            [{"yes": yes, "no": not yes if sql.pg else 0, "account": rows.account, "w_trade_id": t} for t in applied],
            len(applied),
            # The database is the judge of "applied once": memory keeps only a recent window.
            "applied trade(s) have no unapplied trades row (no such trade, or applied already)",
        ))
    return results, plan


def _run(raw, plan: list[_Step], one_query: bool, transaction_id: bool = False, commit: bool = False) -> str | None:
    """Run the plan. With ``one_query`` (PostgreSQL, a group), every statement goes out
    in one query (``persistence.one_query``): one send and one wait for the group instead of
    one per statement, each of which would also have to win the GIL back from the other
    actors' threads. Otherwise statement by statement, each checked at once, so a
    failure names its first cause.

    With ``transaction_id`` (PostgreSQL), the transaction's id is asked for in the same
    round trip and returned: if the connection is lost while the COMMIT is on its way,
    only the server knows whether the group was written, and this id is how to ask it."""
    if commit and any(step.expected_rows is not None for step in plan):
        raise ValueError("a plan checked after it ran cannot commit in the same query: the check would come too late")
    if one_query:
        steps = [(_TRANSACTION_ID, [None])] if transaction_id else []
        steps += [(step.sql, step.params) for step in plan]
        answers = run_as_one_query(raw, steps, commit=commit)
        for (touched, _), step in zip(answers[transaction_id:], plan):
            _check(touched, step)
        return answers[0][1][0] if transaction_id else None
    cursors = [raw.cursor() for _ in range(len(plan) + transaction_id)]
    try:
        if transaction_id:
            cursors[-1].execute(_TRANSACTION_ID)
        for cursor, step in zip(cursors, plan):
            cursor.executemany(step.sql, step.params)
            _check(cursor.rowcount, step)
        return str(cursors[-1].fetchone()[0]) if transaction_id else None
    finally:
        for cursor in cursors:
            try:
                cursor.close()
            except Exception:  # the connection may already be gone; nothing to release
                continue


def _check(rowcount: int, step: _Step) -> None:
    if step.expected_rows is not None and rowcount != step.expected_rows:
        missing = step.expected_rows - rowcount
        error = OrderNotFound if step.sql.startswith("UPDATE orders") else TradeNotUnapplied
        raise error(f"{missing} {step.refusal}")
