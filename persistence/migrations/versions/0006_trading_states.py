"""trading_states: every change of the trading state (RUNNING, REDUCE_ONLY, HALTED) with
its reason, append-only; an account's latest row is its state, which so outlives a
restart (a kill switch leaves the OMS HALTED until someone resumes it).

Revision ID: 0006_trading_states
Revises: 0005_instruments
Create Date: 2026-11-30
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from persistence.types import UTCDateTime

revision: str = "0006_trading_states"
down_revision: Union[str, Sequence[str], None] = "0005_instruments"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APPEND_ONLY_MESSAGE = "trading_states is append-only"


def upgrade() -> None:
    op.create_table(
        "trading_states",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("account", sa.String(32), nullable=False, server_default=sa.text("'default'")),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("state IN ('RUNNING', 'REDUCE_ONLY', 'HALTED')", name="valid_trading_state"),
    )
    op.create_index("idx_trading_states_account", "trading_states", ["account", "id"])
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            f"""
            CREATE OR REPLACE FUNCTION trading_states_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}: % refused', TG_OP
                    USING ERRCODE = 'restrict_violation';
            END;
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER trading_states_no_update_delete BEFORE UPDATE OR DELETE ON trading_states "
            "FOR EACH STATEMENT EXECUTE FUNCTION trading_states_append_only()"
        )
        op.execute(
            "CREATE TRIGGER trading_states_no_truncate BEFORE TRUNCATE ON trading_states "
            "FOR EACH STATEMENT EXECUTE FUNCTION trading_states_append_only()"
        )
    elif dialect == "sqlite":
        op.execute(
            "CREATE TRIGGER trading_states_no_update BEFORE UPDATE ON trading_states "
            f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}: UPDATE refused'); END"
        )
        op.execute(
            "CREATE TRIGGER trading_states_no_delete BEFORE DELETE ON trading_states "
            f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}: DELETE refused'); END"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS trading_states_no_truncate ON trading_states")
        op.execute("DROP TRIGGER IF EXISTS trading_states_no_update_delete ON trading_states")
        op.execute("DROP FUNCTION IF EXISTS trading_states_append_only()")
    op.drop_index("idx_trading_states_account", table_name="trading_states")
    op.drop_table("trading_states")
