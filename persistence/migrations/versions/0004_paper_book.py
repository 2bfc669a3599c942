"""The paper exchange's book: ``paper_orders``, ``paper_trades``, ``paper_prices`` and
``paper_counters``, each keyed by the OMS account.

Until now the simulated exchange kept its book in memory only, and a restart made a new,
empty one that took back just the OPEN orders the OMS's own tables held. The book is now
the exchange's own, in these tables. To keep what that re-adoption did for a database
upgraded with orders still working, each account's OPEN orders (with a broker order id)
are put into the new book once, with the trades the OMS recorded for them; the
exchange's id counters start afresh (a new random prefix on first use). Only the paper
broker exists today, so every broker order id in ``orders`` is a paper one.

Written out by hand to mirror persistence/schema.py as it is at this revision.

Revision ID: 0004_paper_book
Revises: 0003_guide_schema
Create Date: 2026-12-02
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from persistence.types import Money, UTCDateTime

revision: str = "0004_paper_book"
down_revision: Union[str, Sequence[str], None] = "0003_guide_schema"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BATCH = 2000
_STOP_TYPES = ("SL", "SL-M")
_FINISHED = {"FILLED": "COMPLETE", "CANCELLED": "CANCELLED", "REJECTED": "REJECTED", "FAILED": "REJECTED"}


def _account() -> sa.Column:
    return sa.Column("account", sa.String(32), nullable=False, server_default=sa.text("'default'"))


def _paper_schema() -> sa.MetaData:
    meta = sa.MetaData()
    sa.Table(
        "paper_orders", meta,
        _account(),
        sa.Column("broker_order_id", sa.String(50), nullable=False),
        sa.Column("arrival", sa.BigInteger, nullable=False),
        sa.Column("tag", sa.Text, nullable=False),
        sa.Column("exchange", sa.String(10), nullable=False),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("side", sa.Text, nullable=False),
        sa.Column("order_type", sa.Text, nullable=False),
        sa.Column("product", sa.Text, nullable=False),
        sa.Column("validity", sa.Text, nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("price", Money(20, 8)),
        sa.Column("trigger_price", Money(20, 8)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("filled_quantity", sa.Integer, nullable=False),
        sa.Column("filled_value", Money(24, 8), nullable=False),
        sa.Column("average_price", Money(24, 8)),
        sa.Column("message", sa.Text),
        sa.Column("placed_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("account", "broker_order_id", name="pk_paper_orders"),
    )
    sa.Table(
        "paper_trades", meta,
        _account(),
        sa.Column("trade_id", sa.String(50), nullable=False),
        sa.Column("broker_order_id", sa.String(50), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("price", Money(20, 8), nullable=False),
        sa.Column("executed_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("account", "trade_id", name="pk_paper_trades"),
        sa.ForeignKeyConstraint(
            ["account", "broker_order_id"], ["paper_orders.account", "paper_orders.broker_order_id"],
            name="fk_paper_trades_account_paper_orders",
        ),
    )
    sa.Table(
        "paper_prices", meta,
        _account(),
        sa.Column("exchange", sa.String(10), nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("price", Money(20, 8), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("account", "exchange", "symbol", name="pk_paper_prices"),
    )
    sa.Table(
        "paper_counters", meta,
        _account(),
        sa.Column("id_prefix", sa.String(9), nullable=False),
        sa.Column("order_seq", sa.BigInteger, nullable=False),
        sa.Column("trade_seq", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("account", name="pk_paper_counters"),
    )
    return meta


def _oms_tables() -> tuple[sa.Table, sa.Table]:
    """The 0003 ``orders`` and ``trades`` columns read here, typed to read values exactly."""
    meta = sa.MetaData()
    orders = sa.Table(
        "orders", meta,
        sa.Column("id", sa.Integer), sa.Column("account", sa.String), sa.Column("broker_order_id", sa.String),
        sa.Column("tag", sa.String), sa.Column("exchange", sa.String), sa.Column("symbol", sa.String),
        sa.Column("side", sa.String), sa.Column("order_type", sa.String), sa.Column("product", sa.String),
        sa.Column("validity", sa.String), sa.Column("quantity", sa.Integer),
        sa.Column("price", Money(20, 8)), sa.Column("trigger_price", Money(20, 8)),
        sa.Column("status", sa.String), sa.Column("filled_quantity", sa.Integer),
        sa.Column("filled_value", Money(24, 8)), sa.Column("average_price", Money(24, 8)),
        sa.Column("created_at", UTCDateTime), sa.Column("submitted_at", UTCDateTime),
        sa.Column("updated_at", UTCDateTime),
    )
    trades = sa.Table(
        "trades", meta,
        sa.Column("id", sa.BigInteger), sa.Column("account", sa.String), sa.Column("order_id", sa.Integer),
        sa.Column("broker_trade_id", sa.String), sa.Column("quantity", sa.Integer),
        sa.Column("price", Money(20, 8)), sa.Column("executed_at", UTCDateTime),
    )
    return orders, trades


def _seed_working_orders(bind: sa.Connection, book: sa.MetaData) -> None:
    """Each account's working orders go into its new book, as the old restart put them
    back into the new in-memory exchange, with the trades the OMS recorded for them; so
    do its finished orders that traded, so that the book's positions (the exchange's
    word, which reconciliation trusts) are the positions those trades made."""
    orders, trades = _oms_tables()
    paper_orders, paper_trades = book.tables["paper_orders"], book.tables["paper_trades"]
    working = orders.c.broker_order_id.is_not(None) & (
        (orders.c.status == "OPEN") | (orders.c.filled_quantity > 0)
    )
    arrival: dict[str, int] = defaultdict(int)
    rows = []
    for o in bind.execute(sa.select(orders).where(working).order_by(orders.c.id)).mappings():
        arrival[o["account"]] += 1
        untriggered = o["order_type"] in _STOP_TYPES and o["filled_quantity"] == 0
        rows.append({
            "account": o["account"], "broker_order_id": o["broker_order_id"], "arrival": arrival[o["account"]],
            "tag": o["tag"], "exchange": o["exchange"], "symbol": o["symbol"], "side": o["side"],
            "order_type": o["order_type"], "product": o["product"], "validity": o["validity"],
            "quantity": o["quantity"], "price": o["price"], "trigger_price": o["trigger_price"],
            "status": _FINISHED.get(o["status"]) or ("TRIGGER PENDING" if untriggered else "OPEN"),
            "filled_quantity": o["filled_quantity"], "filled_value": o["filled_value"],
            "average_price": o["average_price"], "message": None,
            "placed_at": o["submitted_at"] or o["created_at"],
            "updated_at": o["updated_at"] or o["submitted_at"] or o["created_at"],
        })
        if len(rows) >= BATCH:
            bind.execute(sa.insert(paper_orders), rows)
            rows = []
    if rows:
        bind.execute(sa.insert(paper_orders), rows)

    seq: dict[str, int] = defaultdict(int)
    fills = (
        sa.select(trades.c.account, trades.c.broker_trade_id, orders.c.broker_order_id,
                  trades.c.quantity, trades.c.price, trades.c.executed_at)
        .join(orders, orders.c.id == trades.c.order_id)
        .where(working, orders.c.account == trades.c.account)
        .order_by(trades.c.id)
    )
    rows = []
    for t in bind.execute(fills).mappings():
        seq[t["account"]] += 1
        rows.append({
            "account": t["account"], "trade_id": t["broker_trade_id"], "broker_order_id": t["broker_order_id"],
            "seq": seq[t["account"]], "quantity": t["quantity"], "price": t["price"],
            "executed_at": t["executed_at"],
        })
        if len(rows) >= BATCH:
            bind.execute(sa.insert(paper_trades), rows)
            rows = []
    if rows:
        bind.execute(sa.insert(paper_trades), rows)


def upgrade() -> None:
    bind = op.get_bind()
    book = _paper_schema()
    book.create_all(bind)
    _seed_working_orders(bind, book)


def downgrade() -> None:
    # The book goes with its tables: a paper exchange after the downgrade starts empty.
    for table in ("paper_trades", "paper_orders", "paper_prices", "paper_counters"):
        op.drop_table(table)
