"""The design guide's schema, exactly: integer order ids, every guide column, accounts.

* ``orders.id`` becomes the order id that callers hold; ``order_events.order_id`` and
  ``trades.order_id`` reference it. The old text id, which the broker knows as the
  order's tag, is kept in the new ``orders.tag`` so orders still live at the broker are
  found again after the upgrade.
* ``strategy_id`` becomes an integer; a name that was not a number moves to
  ``metadata["strategy"]`` and the id becomes 0 ("no strategy named"; 0002's
  placeholder name "default" meant just that and is not kept).
* Every other text reference to an order (``reconciliation_log.order_id``) becomes its
  integer id; one that names no order is kept as written in the entry's metadata.
* A trade's charges move from ``charges_detail`` into one column each and
  ``total_charges`` keeps the recorded total; a component finer than the columns' scale
  is stored rounded, and the exact ``charges_detail`` stays in the trade's metadata.
* The guide's columns are added (orders: risk_amount, submitted_at, filled_at,
  error_message; trades: broker_trade_id, one column per charge, total_charges, metadata;
  positions: stop_loss, take_profit, opened_at, closed_at, metadata;
  reconciliation_log in the guide's shape) with the guide's indexes and CHECKs.
* Every table gains ``account`` (existing rows belong to ``default``).
* ``oms_database`` holds this database's broker-tag prefix.

Foreign keys and column types change, which neither database does in place for all of
them, so each table is rebuilt: the old one is renamed aside, the new one created, the
rows copied (every row is kept), and the old one dropped. Written out by hand to mirror
persistence/schema.py as it is at this revision.

Revision ID: 0003_guide_schema
Revises: 0002_order_filled_value
Create Date: 2026-11-30
"""
from __future__ import annotations

import secrets
import string
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Sequence, Union

import sqlalchemy as sa
from alembic import op

from persistence.types import JSONDoc, Money, UTCDateTime

revision: str = "0003_guide_schema"
down_revision: Union[str, Sequence[str], None] = "0002_order_filled_value"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

OLD = "_v2"
BATCH = 2000
ORDER_STATUSES = ("PENDING", "SUBMITTED", "OPEN", "FILLED", "CANCELLED", "REJECTED", "FAILED")
APPEND_ONLY_MESSAGE = "order_events is append-only"
TABLES = ("orders", "order_events", "trades", "positions", "reconciliation_log")
MAX_INT = 2_147_483_647


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _big_pk() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _account() -> sa.Column:
    return sa.Column("account", sa.String(32), nullable=False, server_default=sa.text("'default'"))


def _new_schema() -> sa.MetaData:
    meta = sa.MetaData()
    orders = sa.Table(
        "orders", meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _account(),
        sa.Column("broker_order_id", sa.String(50)),
        sa.Column("strategy_id", sa.Integer, nullable=False),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("exchange", sa.String(10), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("order_type", sa.String(10), nullable=False),
        sa.Column("product", sa.String(8), nullable=False),
        sa.Column("validity", sa.String(8), nullable=False),
        sa.Column("price", Money(20, 8)),
        sa.Column("trigger_price", Money(20, 8)),
        sa.Column("stop_loss", Money(20, 8)),
        sa.Column("take_profit", Money(20, 8)),
        sa.Column("risk_amount", Money(24, 8)),
        sa.Column("tick_size", Money(20, 8)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("status_message", sa.Text),
        sa.Column("filled_quantity", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("average_price", Money(24, 8)),
        sa.Column("filled_value", Money(24, 8), nullable=False, server_default=sa.text("0")),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("submitted_at", UTCDateTime),
        sa.Column("updated_at", UTCDateTime),
        sa.Column("filled_at", UTCDateTime),
        sa.Column("validation_result", JSONDoc),
        sa.Column("error_message", sa.Text),
        sa.Column("metadata", JSONDoc),
        sa.Column("tag", sa.String(32), nullable=False),
        sa.Column("modification_count", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        sa.CheckConstraint(_in("side", ("BUY", "SELL")), name="valid_side"),
        sa.CheckConstraint(_in("order_type", ("MARKET", "LIMIT", "SL", "SL-M")), name="valid_order_type"),
        sa.CheckConstraint(_in("status", ORDER_STATUSES), name="valid_status"),
        sa.CheckConstraint("quantity > 0", name="orders_quantity_positive"),
        sa.CheckConstraint("filled_quantity >= 0 AND filled_quantity <= quantity", name="orders_filled_quantity_range"),
        sa.UniqueConstraint("account", "broker_order_id", name="uq_orders_account_broker_order_id"),
        sa.UniqueConstraint("account", "tag", name="uq_orders_account_tag"),
        sa.Index("idx_orders_broker_id", "broker_order_id"),
        sa.Index("idx_orders_symbol", "symbol"),
        sa.Index("idx_orders_status", "status"),
        sa.Index("idx_orders_strategy_id", "strategy_id"),
        sa.Index("idx_orders_account_status", "account", "status"),
        sqlite_autoincrement=True,
    )
    sa.Index("idx_orders_created_at", orders.c.created_at.desc())
    sa.Table(
        "order_events", meta,
        sa.Column("id", _big_pk(), primary_key=True, autoincrement=True),
        _account(),
        sa.Column("order_id", sa.Integer, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("from_status", sa.String(20)),
        sa.Column("to_status", sa.String(20), nullable=False),
        sa.Column("payload", JSONDoc),
        sa.PrimaryKeyConstraint("id", name="pk_order_events"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_order_events_order_id_orders"),
        sa.Index("ix_order_events_order_id", "order_id"),
    )
    trades = sa.Table(
        "trades", meta,
        sa.Column("id", _big_pk(), primary_key=True, autoincrement=True),
        _account(),
        sa.Column("order_id", sa.Integer, nullable=False),
        sa.Column("broker_trade_id", sa.String(50), nullable=False),
        sa.Column("broker_order_id", sa.String(50)),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("exchange", sa.String(10), nullable=False),
        sa.Column("product", sa.String(8), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("price", Money(20, 8), nullable=False),
        *(sa.Column(name, Money(20, 8), nullable=False) for name in (
            "brokerage", "stt", "exchange_txn_charge", "gst", "stamp_duty", "sebi_fee", "total_charges",
        )),
        sa.Column("executed_at", UTCDateTime, nullable=False),
        sa.Column("metadata", JSONDoc),
        sa.Column("position_applied", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("id", name="pk_trades"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_trades_order_id_orders"),
        sa.CheckConstraint("quantity > 0", name="trades_quantity_positive"),
        sa.CheckConstraint(_in("side", ("BUY", "SELL")), name="trades_valid_side"),
        sa.UniqueConstraint("account", "broker_trade_id", name="uq_trades_account_broker_trade_id"),
        sa.Index("idx_trades_order_id", "order_id"),
        sa.Index("idx_trades_symbol", "symbol"),
    )
    sa.Index("idx_trades_executed_at", trades.c.executed_at.desc())
    sa.Table(
        "positions", meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _account(),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("exchange", sa.String(10), nullable=False),
        sa.Column("product", sa.String(8), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("average_price", Money(24, 8), nullable=False),
        sa.Column("realized_pnl", Money(20, 8), nullable=False, server_default=sa.text("0")),
        sa.Column("unrealized_pnl", Money(20, 8), nullable=False, server_default=sa.text("0")),
        sa.Column("stop_loss", Money(20, 8)),
        sa.Column("take_profit", Money(20, 8)),
        sa.Column("charges", Money(20, 8), nullable=False, server_default=sa.text("0")),
        sa.Column("last_price", Money(20, 8)),
        sa.Column("opened_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("closed_at", UTCDateTime),
        sa.Column("metadata", JSONDoc),
        sa.PrimaryKeyConstraint("id", name="pk_positions"),
        sa.UniqueConstraint("account", "exchange", "symbol", "product", name="uq_positions_account_exchange_symbol_product"),
        sa.Index("idx_positions_symbol", "symbol"),
        sa.Index("idx_positions_open", "closed_at", postgresql_where=sa.text("closed_at IS NULL"), sqlite_where=sa.text("closed_at IS NULL")),
    )
    log = sa.Table(
        "reconciliation_log", meta,
        sa.Column("id", _big_pk(), primary_key=True, autoincrement=True),
        _account(),
        sa.Column("symbol", sa.String(40), nullable=False),
        sa.Column("issue_type", sa.String(50), nullable=False),
        sa.Column("internal_quantity", sa.Integer),
        sa.Column("broker_quantity", sa.Integer),
        sa.Column("resolved", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("resolution", sa.Text),
        sa.Column("detected_at", UTCDateTime, nullable=False),
        sa.Column("resolved_at", UTCDateTime),
        sa.Column("metadata", JSONDoc),
        sa.Column("exchange", sa.String(10)),
        sa.Column("product", sa.String(8)),
        sa.Column("order_id", sa.Integer),
        sa.PrimaryKeyConstraint("id", name="pk_reconciliation_log"),
        sa.Index("idx_reconciliation_unresolved", "resolved", postgresql_where=sa.text("resolved = FALSE"), sqlite_where=sa.text("resolved = 0")),
    )
    sa.Index("idx_reconciliation_detected_at", log.c.detected_at.desc())
    sa.Table(
        "oms_database", meta,
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_oms_database"),
    )
    return meta


def _old_tables() -> dict[str, sa.Table]:
    """The 0002 tables as renamed aside, with the types that read their values exactly."""
    meta = sa.MetaData()
    orders = sa.Table(
        "orders" + OLD, meta,
        sa.Column("id", sa.Integer), sa.Column("order_id", sa.String), sa.Column("broker_order_id", sa.String),
        sa.Column("strategy_id", sa.String), sa.Column("symbol", sa.String), sa.Column("exchange", sa.String),
        sa.Column("side", sa.String), sa.Column("quantity", sa.Integer), sa.Column("order_type", sa.String),
        sa.Column("product", sa.String), sa.Column("validity", sa.String),
        *(sa.Column(c, Money(20, 8)) for c in ("price", "trigger_price", "stop_loss", "take_profit", "tick_size")),
        sa.Column("status", sa.String), sa.Column("filled_quantity", sa.Integer),
        sa.Column("average_price", Money(24, 8)), sa.Column("filled_value", Money(24, 8)),
        sa.Column("validation_result", JSONDoc), sa.Column("status_message", sa.Text),
        sa.Column("modification_count", sa.Integer), sa.Column("metadata", JSONDoc),
        sa.Column("created_at", UTCDateTime), sa.Column("updated_at", UTCDateTime),
    )
    trades = sa.Table(
        "trades" + OLD, meta,
        sa.Column("id", sa.BigInteger), sa.Column("trade_id", sa.String), sa.Column("order_id", sa.String),
        sa.Column("broker_order_id", sa.String), sa.Column("symbol", sa.String), sa.Column("exchange", sa.String),
        sa.Column("product", sa.String), sa.Column("side", sa.String), sa.Column("quantity", sa.Integer),
        sa.Column("price", Money(20, 8)), sa.Column("charges", Money(20, 8)), sa.Column("charges_detail", JSONDoc),
        sa.Column("executed_at", UTCDateTime), sa.Column("position_applied", sa.Boolean),
    )
    positions = sa.Table(
        "positions" + OLD, meta,
        sa.Column("id", sa.Integer), sa.Column("exchange", sa.String), sa.Column("symbol", sa.String),
        sa.Column("product", sa.String), sa.Column("quantity", sa.Integer),
        *(sa.Column(c, Money(20, 8)) for c in ("realized_pnl", "unrealized_pnl", "charges", "last_price")),
        sa.Column("average_price", Money(24, 8)), sa.Column("updated_at", UTCDateTime),
    )
    log = sa.Table(
        "reconciliation_log" + OLD, meta,
        sa.Column("id", sa.BigInteger), sa.Column("at", UTCDateTime), sa.Column("kind", sa.String),
        sa.Column("exchange", sa.String), sa.Column("symbol", sa.String), sa.Column("product", sa.String),
        sa.Column("order_id", sa.String), sa.Column("oms_value", JSONDoc), sa.Column("broker_value", JSONDoc),
        sa.Column("resolution", sa.Text), sa.Column("details", JSONDoc),
    )
    return {"orders": orders, "trades": trades, "positions": positions, "reconciliation_log": log}


# --- moving the old tables aside --------------------------------------------------------

def _drop_append_only_guard(dialect: str) -> None:
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS order_events_no_truncate ON order_events")
        op.execute("DROP TRIGGER IF EXISTS order_events_no_update_delete ON order_events")
        op.execute("DROP FUNCTION IF EXISTS order_events_append_only()")
    elif dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS order_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS order_events_no_delete")


def _create_append_only_guard(dialect: str) -> None:
    """The database itself refuses UPDATE, DELETE (and TRUNCATE) on order_events."""
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
        op.execute(
            "CREATE TRIGGER order_events_no_update_delete BEFORE UPDATE OR DELETE ON order_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION order_events_append_only()"
        )
        op.execute(
            "CREATE TRIGGER order_events_no_truncate BEFORE TRUNCATE ON order_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION order_events_append_only()"
        )
    elif dialect == "sqlite":
        op.execute(
            "CREATE TRIGGER order_events_no_update BEFORE UPDATE ON order_events "
            f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}: UPDATE refused'); END"
        )
        op.execute(
            "CREATE TRIGGER order_events_no_delete BEFORE DELETE ON order_events "
            f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}: DELETE refused'); END"
        )


def _set_aside(bind: sa.Connection, table: str) -> None:
    """Rename ``table`` to ``table_v2`` and free every schema-wide name it holds (index,
    constraint index, sequence), so the new table can take the same names."""
    aside = table + OLD
    op.execute(f"ALTER TABLE {table} RENAME TO {aside}")
    if bind.dialect.name == "postgresql":
        keyed = bind.execute(sa.text(
            "SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass) AND contype IN ('p', 'u')"
        ), {"t": aside}).scalars().all()
        for name in keyed:
            op.execute(f'ALTER TABLE {aside} RENAME CONSTRAINT "{name}" TO "{name}{OLD}"')
        indexes = bind.execute(sa.text("SELECT indexname FROM pg_indexes WHERE tablename = :t"), {"t": aside}).scalars().all()
        for name in indexes:
            if not name.endswith(OLD):
                op.execute(f'DROP INDEX "{name}"')
        sequence = bind.execute(sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": aside}).scalar()
        if sequence:
            op.execute(f"ALTER SEQUENCE {sequence} RENAME TO {aside}_id_seq")
    else:
        indexes = bind.execute(sa.text(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t AND sql IS NOT NULL"
        ), {"t": aside}).scalars().all()
        for name in indexes:
            op.execute(f'DROP INDEX "{name}"')


# --- copying the rows -------------------------------------------------------------------

def _batches(bind: sa.Connection, table: sa.Table) -> Any:
    """Every row of ``table`` by id, a batch at a time (keyset pagination)."""
    last = None
    while True:
        statement = sa.select(table).order_by(table.c.id).limit(BATCH)
        if last is not None:
            statement = statement.where(table.c.id > last)
        rows = bind.execute(statement).mappings().all()
        if not rows:
            return
        yield rows
        last = rows[-1]["id"]


def _strategy(name: str | None, metadata: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The integer strategy id, and metadata carrying the old name when it was a name."""
    text = (name or "").strip()
    if text.isascii() and text.isdigit() and int(text) <= MAX_INT:
        return int(text), metadata
    if text in ("", "default"):
        return 0, metadata
    return 0, {**metadata, "strategy": text}


def _risk_amount(row: Any) -> Decimal | None:
    stop = row["stop_loss"]
    entry = (row["validation_result"] or {}).get("entry_price") or row["price"] or (
        row["trigger_price"] if row["order_type"] == "SL-M" else None
    )
    if stop is None or entry is None:
        return None
    return abs(Decimal(str(entry)) - stop) * row["quantity"]


def _copy_orders(bind: sa.Connection, old: sa.Table, new: sa.Table) -> None:
    for rows in _batches(bind, old):
        values = []
        for row in rows:
            strategy_id, metadata = _strategy(row["strategy_id"], dict(row["metadata"] or {}))
            values.append({
                "id": row["id"], "account": "default", "broker_order_id": row["broker_order_id"],
                "strategy_id": strategy_id, "symbol": row["symbol"], "exchange": row["exchange"],
                "side": row["side"], "quantity": row["quantity"], "order_type": row["order_type"],
                "product": row["product"], "validity": row["validity"], "price": row["price"],
                "trigger_price": row["trigger_price"], "stop_loss": row["stop_loss"],
                "take_profit": row["take_profit"], "risk_amount": _risk_amount(row),
                "tick_size": row["tick_size"], "status": row["status"],
                "status_message": row["status_message"], "filled_quantity": row["filled_quantity"],
                "average_price": row["average_price"], "filled_value": row["filled_value"],
                "created_at": row["created_at"], "updated_at": row["updated_at"],
                "validation_result": row["validation_result"],
                "error_message": row["status_message"] if row["status"] == "FAILED" else None,
                "metadata": metadata, "tag": row["order_id"],
                "modification_count": row["modification_count"],
            })
        bind.execute(sa.insert(new), values)


def _stamp_orders_from_events(bind: sa.Connection) -> None:
    """When each order was sent and when it filled, as its audit trail recorded."""
    for column, status in (("submitted_at", "SUBMITTED"), ("filled_at", "FILLED")):
        bind.execute(sa.text(
            f"UPDATE orders SET {column} = (SELECT MIN(e.at) FROM order_events e "
            f"WHERE e.order_id = orders.id AND e.to_status = '{status}')"
        ))


def _copy_events(bind: sa.Connection) -> None:
    bind.execute(sa.text(
        "INSERT INTO order_events (id, account, order_id, at, from_status, to_status, payload) "
        f"SELECT e.id, 'default', o.id, e.at, e.from_status, e.to_status, e.payload "
        f"FROM order_events{OLD} e JOIN orders{OLD} o ON o.order_id = e.order_id"
    ))


_CHARGE_COLUMNS = {  # new column <- Charges.as_dict() key
    "brokerage": "brokerage", "stt": "stt", "exchange_txn_charge": "exchange_charge",
    "gst": "gst", "stamp_duty": "stamp_duty", "sebi_fee": "sebi_fee",
}


def _order_ids(bind: sa.Connection, old_orders: sa.Table, text_ids: set[Any]) -> dict[str, int]:
    """The integer id of each old text order id that names an order."""
    wanted = {t for t in text_ids if t is not None}
    if not wanted:
        return {}
    return dict(bind.execute(
        sa.select(old_orders.c.order_id, old_orders.c.id).where(old_orders.c.order_id.in_(wanted))
    ).all())


def _copy_trades(bind: sa.Connection, old: sa.Table, new: sa.Table, old_orders: sa.Table) -> None:
    places = Decimal(1).scaleb(-new.c.brokerage.type.scale)
    for rows in _batches(bind, old):
        ids = _order_ids(bind, old_orders, {r["order_id"] for r in rows})
        values = []
        for row in rows:
            detail = row["charges_detail"] or {}
            charges = {column: Decimal(str(detail.get(key, "0"))) for column, key in _CHARGE_COLUMNS.items()}
            if not detail:  # only the total was known: keep it whole rather than invent a split
                charges["brokerage"] = row["charges"]
            # Figures finer than the new columns (written before charges were rounded to the
            # database's scale): the columns take them rounded, the exact text stays beside.
            lossy = any(value != value.quantize(places) for value in charges.values())
            # Rounded here, as NUMERIC rounds (half away from zero): the column types
            # refuse to round a value silently.
            charges = {column: value.quantize(places, ROUND_HALF_UP) for column, value in charges.items()}
            values.append({
                "id": row["id"], "account": "default", "order_id": ids[row["order_id"]],
                "broker_trade_id": row["trade_id"], "broker_order_id": row["broker_order_id"],
                "symbol": row["symbol"], "exchange": row["exchange"], "product": row["product"],
                "side": row["side"], "quantity": row["quantity"], "price": row["price"],
                **charges, "total_charges": row["charges"], "executed_at": row["executed_at"],
                "metadata": {"charges_detail": detail} if lossy else None,
                "position_applied": row["position_applied"],
            })
        bind.execute(sa.insert(new), values)


def _copy_positions(bind: sa.Connection, old: sa.Table, new: sa.Table) -> None:
    for rows in _batches(bind, old):
        bind.execute(sa.insert(new), [{
            "id": r["id"], "account": "default", "symbol": r["symbol"], "exchange": r["exchange"],
            "product": r["product"], "quantity": r["quantity"], "average_price": r["average_price"],
            "realized_pnl": r["realized_pnl"], "unrealized_pnl": r["unrealized_pnl"],
            "charges": r["charges"], "last_price": r["last_price"],
            # The old table never knew when a position opened; its last change is the best bound.
            "opened_at": r["updated_at"] or _epoch(), "updated_at": r["updated_at"] or _epoch(),
            "closed_at": (r["updated_at"] or _epoch()) if r["quantity"] == 0 else None,
        } for r in rows])


def _epoch() -> Any:
    from datetime import datetime, timezone

    return datetime(1970, 1, 1, tzinfo=timezone.utc)


def _quantity(value: Any) -> int | None:
    if isinstance(value, dict):
        value = value.get("quantity")
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _reconciliation_metadata(row: Any, order_id: int | None) -> dict[str, Any]:
    metadata = {"oms_value": row["oms_value"], "broker_value": row["broker_value"], "details": row["details"]}
    if row["order_id"] is not None and order_id is None:  # names no order here: kept as written
        metadata["order_id"] = row["order_id"]
    return metadata


def _copy_reconciliation(bind: sa.Connection, old: sa.Table, new: sa.Table, old_orders: sa.Table) -> None:
    for rows in _batches(bind, old):
        ids = _order_ids(bind, old_orders, {r["order_id"] for r in rows})
        bind.execute(sa.insert(new), [{
            "id": r["id"], "account": "default", "symbol": r["symbol"] or "", "issue_type": r["kind"],
            "internal_quantity": _quantity(r["oms_value"]), "broker_quantity": _quantity(r["broker_value"]),
            "resolved": r["resolution"] is not None, "resolution": r["resolution"],
            "detected_at": r["at"], "resolved_at": r["at"] if r["resolution"] is not None else None,
            "metadata": _reconciliation_metadata(r, ids.get(r["order_id"])),
            "exchange": r["exchange"], "product": r["product"], "order_id": ids.get(r["order_id"]),
        } for r in rows])


def _advance_sequences(bind: sa.Connection) -> None:
    """PostgreSQL: each table's id sequence continues after the ids copied in."""
    for table in TABLES:
        bind.execute(sa.text(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
        ))


def new_tag_prefix() -> str:
    """Six random capital letters: the mark of this database's orders at the broker."""
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(6))


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    _drop_append_only_guard(dialect)
    for table in TABLES:
        _set_aside(bind, table)
    new = _new_schema()
    new.create_all(bind)
    old = _old_tables()
    _copy_orders(bind, old["orders"], new.tables["orders"])
    _copy_events(bind)
    _stamp_orders_from_events(bind)
    _copy_trades(bind, old["trades"], new.tables["trades"], old["orders"])
    _copy_positions(bind, old["positions"], new.tables["positions"])
    _copy_reconciliation(bind, old["reconciliation_log"], new.tables["reconciliation_log"], old["orders"])
    for table in ("order_events", "trades", "reconciliation_log", "positions", "orders"):  # children first
        op.execute(f"DROP TABLE {table}{OLD}")
    if dialect == "postgresql":
        _advance_sequences(bind)
    bind.execute(sa.insert(new.tables["oms_database"]).values(key="tag_prefix", value=new_tag_prefix()))
    _create_append_only_guard(dialect)


def downgrade() -> None:
    raise NotImplementedError("0003 changes the order id's type; restore a backup taken before upgrading")
