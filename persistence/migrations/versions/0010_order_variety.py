"""After-market orders: ``orders.variety``, Kite's variety the order is placed with.

Every order before this one was placed as "regular", which is what the default gives
the existing rows.

Revision ID: 0010_order_variety
Revises: 0009_client_ids_api_keys
Create Date: 2026-11-30
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0010_order_variety"
down_revision: Union[str, Sequence[str], None] = "0009_client_ids_api_keys"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("variety", sa.String(16), nullable=False, server_default=sa.text("'regular'")))


def downgrade() -> None:
    op.drop_column("orders", "variety")
