"""instruments: the broker's instrument master (tick size, lot size, instrument type),
cached so that a restart on the same day need not fetch it again.

Revision ID: 0005_instruments
Revises: 0004_paper_book
Create Date: 2026-11-26
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from persistence.types import Money

revision: str = "0005_instruments"
down_revision: Union[str, Sequence[str], None] = "0004_paper_book"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "instruments",
        sa.Column("exchange", sa.String(8), nullable=False),
        sa.Column("tradingsymbol", sa.String(64), nullable=False),
        sa.Column("instrument_token", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False, server_default=sa.text("''")),
        sa.Column("instrument_type", sa.String(8), nullable=False),
        sa.Column("segment", sa.String(16), nullable=False),
        sa.Column("expiry", sa.Date(), nullable=True),
        sa.Column("strike", Money(20, 8), nullable=False, server_default=sa.text("0")),
        sa.Column("tick_size", Money(20, 8), nullable=False),
        sa.Column("lot_size", sa.Integer(), nullable=False),
        sa.Column("loaded_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("exchange", "tradingsymbol", name="pk_instruments"),
    )


def downgrade() -> None:
    op.drop_table("instruments")
