"""The paper book's history: for each account that trades on the paper exchange (it has a
``paper_counters`` row), the orders that traded before the book kept them (0004 seeded
only the working ones) go into the book with their trades. The book's positions are the
paper exchange's word, which reconciliation now trusts: without them a position built
before 0004 would look like one the exchange never had.

An account that never used the paper exchange (Kite only) is left alone.

Revision ID: 0008_paper_book_history
Revises: 0007_day_baselines
Create Date: 2026-11-30
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from persistence.types import Money, UTCDateTime

revision: str = "0008_paper_book_history"
down_revision: Union[str, Sequence[str], None] = "0007_day_baselines"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_FINISHED = {"FILLED": "COMPLETE", "CANCELLED": "CANCELLED", "REJECTED": "REJECTED", "FAILED": "REJECTED"}
_STOP_TYPES = ("SL", "SL-M")


def _tables() -> dict[str, sa.Table]:
    meta = sa.MetaData()
    text, money = sa.String, Money(24, 8)
    orders = sa.Table(
        "orders", meta, *(sa.Column(n, text) for n in (
            "account", "broker_order_id", "tag", "exchange", "symbol", "side", "order_type", "product", "validity",
            "status")),
        sa.Column("id", sa.Integer), sa.Column("quantity", sa.Integer), sa.Column("filled_quantity", sa.Integer),
        sa.Column("price", money), sa.Column("trigger_price", money), sa.Column("filled_value", money),
        sa.Column("average_price", money), sa.Column("created_at", UTCDateTime), sa.Column("submitted_at", UTCDateTime),
        sa.Column("updated_at", UTCDateTime),
    )
    trades = sa.Table(
        "trades", meta, sa.Column("id", sa.BigInteger), sa.Column("account", text), sa.Column("order_id", sa.Integer),
        sa.Column("broker_trade_id", text), sa.Column("quantity", sa.Integer), sa.Column("price", money),
        sa.Column("executed_at", UTCDateTime),
    )
    paper_orders = sa.Table(
        "paper_orders", meta, *(sa.Column(n, text) for n in (
            "account", "broker_order_id", "tag", "exchange", "symbol", "side", "order_type", "product", "validity",
            "status", "message")),
        sa.Column("arrival", sa.BigInteger), sa.Column("quantity", sa.Integer), sa.Column("filled_quantity", sa.Integer),
        sa.Column("price", money), sa.Column("trigger_price", money), sa.Column("filled_value", money),
        sa.Column("average_price", money), sa.Column("placed_at", UTCDateTime), sa.Column("updated_at", UTCDateTime),
    )
    paper_trades = sa.Table(
        "paper_trades", meta, sa.Column("account", text), sa.Column("trade_id", text), sa.Column("broker_order_id", text),
        sa.Column("seq", sa.BigInteger), sa.Column("quantity", sa.Integer), sa.Column("price", money),
        sa.Column("executed_at", UTCDateTime),
    )
    counters = sa.Table("paper_counters", meta, sa.Column("account", text))
    return {"orders": orders, "trades": trades, "paper_orders": paper_orders, "paper_trades": paper_trades,
            "paper_counters": counters}


def upgrade() -> None:
    bind = op.get_bind()
    t = _tables()
    orders, trades, book, book_trades = t["orders"], t["trades"], t["paper_orders"], t["paper_trades"]
    for (account,) in bind.execute(sa.select(t["paper_counters"].c.account)).all():
        known = {r[0] for r in bind.execute(sa.select(book.c.broker_order_id).where(book.c.account == account))}
        arrival = bind.execute(sa.select(sa.func.coalesce(sa.func.max(book.c.arrival), 0)).where(book.c.account == account)).scalar_one()
        missing = [
            o for o in bind.execute(
                sa.select(orders).where(
                    orders.c.account == account, orders.c.broker_order_id.is_not(None), orders.c.filled_quantity > 0,
                ).order_by(orders.c.id)
            ).mappings()
            if o["broker_order_id"] not in known
        ]
        if not missing:
            continue
        rows = []
        for o in missing:
            arrival += 1
            untriggered = o["order_type"] in _STOP_TYPES and o["filled_quantity"] == 0
            rows.append({
                "account": account, "broker_order_id": o["broker_order_id"], "arrival": arrival, "tag": o["tag"],
                "exchange": o["exchange"], "symbol": o["symbol"], "side": o["side"], "order_type": o["order_type"],
                "product": o["product"], "validity": o["validity"], "quantity": o["quantity"], "price": o["price"],
                "trigger_price": o["trigger_price"],
                "status": _FINISHED.get(o["status"]) or ("TRIGGER PENDING" if untriggered else "OPEN"),
                "filled_quantity": o["filled_quantity"], "filled_value": o["filled_value"],
                "average_price": o["average_price"], "message": None,
                "placed_at": o["submitted_at"] or o["created_at"],
                "updated_at": o["updated_at"] or o["submitted_at"] or o["created_at"],
            })
        bind.execute(sa.insert(book), rows)
        seq = bind.execute(sa.select(sa.func.coalesce(sa.func.max(book_trades.c.seq), 0)).where(book_trades.c.account == account)).scalar_one()
        have = {r[0] for r in bind.execute(sa.select(book_trades.c.trade_id).where(book_trades.c.account == account))}
        ids = {o["id"]: o["broker_order_id"] for o in missing}
        chosen = sorted(ids)
        found = []
        for start in range(0, len(chosen), 500):  # bounded IN lists
            found += bind.execute(
                sa.select(trades).where(trades.c.account == account, trades.c.order_id.in_(chosen[start : start + 500]))
            ).mappings().all()
        fills = []
        for f in sorted(found, key=lambda row: row["id"]):
            if f["broker_trade_id"] in have:
                continue
            seq += 1
            fills.append({
                "account": account, "trade_id": f["broker_trade_id"], "broker_order_id": ids[f["order_id"]], "seq": seq,
                "quantity": f["quantity"], "price": f["price"], "executed_at": f["executed_at"],
            })
        if fills:
            bind.execute(sa.insert(book_trades), fills)


def downgrade() -> None:
    """Nothing to undo: the copied history is what the paper exchange did, and the book of
    0004 holds it as it holds the rest."""
