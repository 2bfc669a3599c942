"""day_baselines: the running P&L totals when each trading day began (one row per account
and Asia/Kolkata day), so the daily loss limit counts the day's loss across restarts.

Revision ID: 0007_day_baselines
Revises: 0006_trading_states
Create Date: 2026-11-30
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from persistence.types import Money, UTCDateTime

revision: str = "0007_day_baselines"
down_revision: Union[str, Sequence[str], None] = "0006_trading_states"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "day_baselines",
        sa.Column("account", sa.String(32), nullable=False, server_default=sa.text("'default'")),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("realized_pnl", Money(20, 8), nullable=False),
        sa.Column("unrealized_pnl", Money(20, 8), nullable=False),
        sa.Column("charges", Money(20, 8), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("account", "day", name="pk_day_baselines"),
    )


def downgrade() -> None:
    op.drop_table("day_baselines")
