"""orders.filled_value: the exact sum of price x quantity over an order's fills, so its
average price is derived without drift.

Existing rows are backfilled from their trades (or from average x quantity where an
order has no trades row).

Revision ID: 0002_order_filled_value
Revises: 0001_initial
Create Date: 2026-11-25
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from persistence.types import Money

revision: str = "0002_order_filled_value"
down_revision: Union[str, Sequence[str], None] = "0001_initial"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # A plain ADD COLUMN (both databases support it with a constant default): a batch
    # rebuild of orders would be refused by the foreign keys that point at it.
    op.add_column("orders", sa.Column("filled_value", Money(24, 8), server_default=sa.text("0"), nullable=False))
    bind = op.get_bind()
    orders = sa.table(
        "orders",
        sa.column("order_id", sa.String),
        sa.column("filled_quantity", sa.Integer),
        sa.column("average_price", Money(24, 8)),
        sa.column("filled_value", Money(24, 8)),
    )
    trades = sa.table(
        "trades",
        sa.column("order_id", sa.String),
        sa.column("quantity", sa.Integer),
        sa.column("price", Money(20, 8)),
    )
    filled = bind.execute(
        sa.select(orders.c.order_id, orders.c.filled_quantity, orders.c.average_price).where(orders.c.filled_quantity > 0)
    ).all()
    for order_id, quantity, average_price in filled:
        fills = bind.execute(sa.select(trades.c.quantity, trades.c.price).where(trades.c.order_id == order_id)).all()
        value = sum((price * qty for qty, price in fills), start=0) if fills else (average_price or 0) * quantity
        bind.execute(sa.update(orders).where(orders.c.order_id == order_id).values(filled_value=value))


def downgrade() -> None:
    op.drop_column("orders", "filled_value")
