"""Initial schema: orders, order_events (append-only), trades, positions,
reconciliation_log.

Written out by hand to mirror persistence/schema.py as it was at this revision.

Revision ID: 0001_initial
Revises:
Create Date: 2024-11-25
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from persistence.types import JSONDoc, Money, UTCDateTime

revision: str = "0001_initial"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

ORDER_STATUSES = ("PENDING", "SUBMITTED", "OPEN", "FILLED", "CANCELLED", "REJECTED", "FAILED")
APPEND_ONLY_MESSAGE = "order_events is append-only"


def _big_pk() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.String(32), nullable=False),
        sa.Column("broker_order_id", sa.String(64), nullable=True),
        sa.Column("strategy_id", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("exchange", sa.String(8), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("order_type", sa.String(8), nullable=False),
        sa.Column("product", sa.String(8), nullable=False),
        sa.Column("validity", sa.String(8), nullable=False),
        sa.Column("price", Money(20, 8), nullable=True),
        sa.Column("trigger_price", Money(20, 8), nullable=True),
        sa.Column("stop_loss", Money(20, 8), nullable=True),
        sa.Column("take_profit", Money(20, 8), nullable=True),
        sa.Column("tick_size", Money(20, 8), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("filled_quantity", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("average_price", Money(24, 8), nullable=True),
        sa.Column("validation_result", JSONDoc(), nullable=True),
        sa.Column("status_message", sa.Text(), nullable=True),
        sa.Column("modification_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("metadata", JSONDoc(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        sa.UniqueConstraint("order_id", name="uq_orders_order_id"),
        sa.CheckConstraint("quantity > 0", name="ck_orders_quantity_positive"),
        sa.CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in ORDER_STATUSES) + ")",
            name="ck_orders_status_valid",
        ),
        sa.CheckConstraint(
            "filled_quantity >= 0 AND filled_quantity <= quantity",
            name="ck_orders_filled_quantity_range",
        ),
    )
    op.create_index("ix_orders_broker_order_id", "orders", ["broker_order_id"])
    op.create_index("ix_orders_strategy_id", "orders", ["strategy_id"])
    op.create_index("ix_orders_status", "orders", ["status"])
    op.create_index("ix_orders_symbol_exchange", "orders", ["symbol", "exchange"])

    op.create_table(
        "order_events",
        sa.Column("id", _big_pk(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.String(32), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("payload", JSONDoc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_order_events"),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.order_id"], name="fk_order_events_order_id_orders"
        ),
    )
    op.create_index("ix_order_events_order_id", "order_events", ["order_id"])

    op.create_table(
        "trades",
        sa.Column("id", _big_pk(), autoincrement=True, nullable=False),
        sa.Column("trade_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(32), nullable=False),
        sa.Column("broker_order_id", sa.String(64), nullable=True),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("exchange", sa.String(8), nullable=False),
        sa.Column("product", sa.String(8), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("price", Money(20, 8), nullable=False),
        sa.Column("charges", Money(20, 8), nullable=False),
        sa.Column("charges_detail", JSONDoc(), nullable=True),
        sa.Column("executed_at", UTCDateTime(), nullable=False),
        sa.Column("position_applied", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_trades"),
        sa.UniqueConstraint("trade_id", name="uq_trades_trade_id"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.order_id"], name="fk_trades_order_id_orders"),
        sa.CheckConstraint("quantity > 0", name="ck_trades_quantity_positive"),
    )
    op.create_index("ix_trades_order_id", "trades", ["order_id"])

    op.create_table(
        "positions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("exchange", sa.String(8), nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("product", sa.String(8), nullable=False),
        sa.Column("quantity", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("average_price", Money(24, 8), nullable=False),
        sa.Column("realized_pnl", Money(20, 8), nullable=False),
        sa.Column("unrealized_pnl", Money(20, 8), nullable=False),
        sa.Column("charges", Money(20, 8), nullable=False),
        sa.Column("last_price", Money(20, 8), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_positions"),
        sa.UniqueConstraint(
            "exchange", "symbol", "product", name="uq_positions_exchange_symbol_product"
        ),
    )

    op.create_table(
        "reconciliation_log",
        sa.Column("id", _big_pk(), autoincrement=True, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("exchange", sa.String(8), nullable=True),
        sa.Column("symbol", sa.String(40), nullable=True),
        sa.Column("product", sa.String(8), nullable=True),
        sa.Column("order_id", sa.String(32), nullable=True),
        sa.Column("oms_value", JSONDoc(), nullable=True),
        sa.Column("broker_value", JSONDoc(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("details", JSONDoc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_reconciliation_log"),
    )

    _create_append_only_guard()


def _create_append_only_guard() -> None:
    """Make the database itself refuse UPDATE, DELETE (and TRUNCATE) on order_events."""
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            f"""
            CREATE OR REPLACE FUNCTION order_events_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}: % refused', TG_OP
                    USING ERRCODE = 'restrict_violation';
            END;
            $$
            """
        )
        # Statement-level, so even an UPDATE/DELETE that matches no row is refused.
        op.execute(
            "CREATE TRIGGER order_events_no_update_delete "
            "BEFORE UPDATE OR DELETE ON order_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION order_events_append_only()"
        )
        op.execute(
            "CREATE TRIGGER order_events_no_truncate "
            "BEFORE TRUNCATE ON order_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION order_events_append_only()"
        )
    elif dialect == "sqlite":
        # SQLite has no TRUNCATE (DELETE without WHERE is caught by the delete trigger).
        op.execute(
            "CREATE TRIGGER order_events_no_update BEFORE UPDATE ON order_events "
            f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}: UPDATE refused'); END"
        )
        op.execute(
            "CREATE TRIGGER order_events_no_delete BEFORE DELETE ON order_events "
            f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}: DELETE refused'); END"
        )


def _drop_append_only_guard() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS order_events_no_truncate ON order_events")
        op.execute("DROP TRIGGER IF EXISTS order_events_no_update_delete ON order_events")
        op.execute("DROP FUNCTION IF EXISTS order_events_append_only()")
    elif dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS order_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS order_events_no_delete")


def downgrade() -> None:
    _drop_append_only_guard()
    op.drop_table("reconciliation_log")
    op.drop_table("positions")
    op.drop_index("ix_trades_order_id", table_name="trades")
    op.drop_table("trades")
    op.drop_index("ix_order_events_order_id", table_name="order_events")
    op.drop_table("order_events")
    op.drop_index("ix_orders_symbol_exchange", table_name="orders")
    op.drop_index("ix_orders_status", table_name="orders")
    op.drop_index("ix_orders_strategy_id", table_name="orders")
    op.drop_index("ix_orders_broker_order_id", table_name="orders")
    op.drop_table("orders")
