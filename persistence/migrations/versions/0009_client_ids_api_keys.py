"""Idempotent placement and the HTTP API's keys.

``orders.client_order_id``: the client's own id for an order, unique per account (a
unique index on (account, client_order_id); rows without one, NULL, never collide).
``api_keys``: the API's keys by account, as SHA-256 hashes only, with the strategies a key
may see and whether it may only read; a revoked key keeps its row (``revoked_at``).

Revision ID: 0009_client_ids_api_keys
Revises: 0008_paper_book_history
Create Date: 2026-12-01
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from persistence.types import JSONDoc, UTCDateTime

revision: str = "0009_client_ids_api_keys"
down_revision: Union[str, Sequence[str], None] = "0008_paper_book_history"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("client_order_id", sa.String(64), nullable=True))
    op.create_index("uq_orders_account_client_order_id", "orders", ["account", "client_order_id"], unique=True)
    op.create_table(
        "api_keys",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("account", sa.String(32), nullable=False, server_default=sa.text("'default'")),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("strategies", JSONDoc(), nullable=True),
        sa.Column("read_only", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("account", "name", name="uq_api_keys_account_name"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_index("uq_orders_account_client_order_id", table_name="orders")
    op.drop_column("orders", "client_order_id")
