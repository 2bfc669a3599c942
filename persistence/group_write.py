"""Many writes in one transaction with a few statements: the group commit's engine.

A group is a sequence of write intents (new orders, transitions, fills, positions) in
the order they were made. Rather than a handful of statements per intent, the group is
written table by table with one executemany each: every order row once, in its final
state; every audit event in sequence (so event ids keep the order things happened); the
trades that are new; every position once, in its final state. The result for each
intent is what its single write would have returned (for a fill: whether it was new).

Any surprise (an update that matches no row, a constraint) raises and rolls the whole
group back; the caller then writes the intents one by one so the culprit alone fails.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from domain.fill import Fill
from domain.order import Order, OrderEvent
from domain.position import Position
from persistence.schema import order_events, orders, positions, trades


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

_UPDATE_ORDER = None  # built on first use from the Store's order_changes mapper
_MARK_APPLIED = (
    update(trades).where(trades.c.trade_id == bindparam("w_trade_id")).values(position_applied=True)
)


_UPSERTS: dict[str, Any] = {}


def _upsert_positions(dialect: str):
    """INSERT ... ON CONFLICT DO UPDATE for positions, built once per dialect."""
    if dialect not in _UPSERTS:
        _UPSERTS[dialect] = _build_upsert(dialect)
    return _UPSERTS[dialect]


def _update_order(columns: Sequence[str]):
    global _UPDATE_ORDER
    if _UPDATE_ORDER is None:
        _UPDATE_ORDER = (
            update(orders)
            .where(orders.c.order_id == bindparam("w_order_id"))
            .values({name: bindparam(f"w_{name}") for name in columns})
        )
    return _UPDATE_ORDER


def _build_upsert(dialect: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    statement = dialect_insert(positions)
    key = {"exchange", "symbol", "product"}
    return statement.on_conflict_do_update(
        index_elements=[positions.c.exchange, positions.c.symbol, positions.c.product],
        set_={c.name: statement.excluded[c.name] for c in positions.columns if c.name not in key and c.name != "id"},
    )


def write_group(conn: Connection, intents: Sequence[Intent], rows) -> list[Any]:
    """Write ``intents`` on ``conn`` (inside the caller's transaction). ``rows`` is the
    Store's row mappers (order_row, event_row, trade_row, position_row)."""
    fills = [i.fill.trade_id for i in intents if isinstance(i, NewFill)]
    known: set[str] = set()
    if fills:
        known = set(conn.scalars(select(trades.c.trade_id).where(trades.c.trade_id.in_(fills))))

    results: list[Any] = []
    inserted: dict[str, Order] = {}  # order rows new in this group, final state
    updated: dict[str, Order] = {}  # existing order rows, final state
    events: list[OrderEvent] = []
    new_trades: list[Fill] = []
    final_positions: dict[tuple, Position] = {}
    applied: list[str] = []
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

    if inserted:
        conn.execute(insert(orders), [rows.order_row(o) for o in inserted.values()])
    if updated:
        params = []
        for order in updated.values():
            changes = rows.order_changes(order)
            params.append({"w_order_id": order.order_id, **{f"w_{n}": v for n, v in changes.items()}})
        result = conn.execute(_update_order(list(changes)), params)
        if result.rowcount != len(params):
            raise LookupError(f"{len(params) - result.rowcount} order update(s) matched no row")
    if events:
        conn.execute(insert(order_events), [rows.event_row(e) for e in events])
    if new_trades:
        conn.execute(insert(trades), [rows.trade_row(f) for f in new_trades])
    if final_positions:
        conn.execute(_upsert_positions(conn.dialect.name), [rows.position_row(p) for p in final_positions.values()])
    if applied:
        result = conn.execute(_MARK_APPLIED, [{"w_trade_id": t} for t in applied])
        if result.rowcount != len(applied):
            raise LookupError(f"{len(applied) - result.rowcount} applied trade(s) have no trades row")
    return results
