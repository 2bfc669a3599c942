"""Order ids from the database's own sequence, and this database's broker-tag prefix.

Ids are reserved in blocks (one round trip for many orders) so that no new order waits
on the database for its id. PostgreSQL hands out the ``orders.id`` sequence's values,
which no two sessions ever share; SQLite advances the ``AUTOINCREMENT`` counter of
``orders`` inside a write transaction, which SQLite serialises across processes. Either
way an id is never given twice, not across restarts nor across OMS processes.
"""
from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.engine import Connection

from persistence.schema import oms_database

TAG_PREFIX_KEY = "tag_prefix"


def reserve_order_ids(conn: Connection, count: int) -> list[int]:
    """``count`` fresh order ids, in ascending order (inside the caller's transaction)."""
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            text("SELECT nextval(pg_get_serial_sequence('orders', 'id')) FROM generate_series(1, :n)"),
            {"n": count},
        )
        return sorted(int(row[0]) for row in rows)
    # The write comes first so the transaction holds SQLite's write lock before it reads.
    conn.execute(text(
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'orders', (SELECT COALESCE(MAX(id), 0) FROM orders) "
        "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'orders')"
    ))
    conn.execute(text("UPDATE sqlite_sequence SET seq = seq + :n WHERE name = 'orders'"), {"n": count})
    last = int(conn.execute(text("SELECT seq FROM sqlite_sequence WHERE name = 'orders'")).scalar_one())
    return list(range(last - count + 1, last + 1))


def read_tag_prefix(conn: Connection) -> str:
    """The prefix written when the database was created (migration 0003)."""
    value = conn.execute(select(oms_database.c.value).where(oms_database.c.key == TAG_PREFIX_KEY)).scalar()
    if not value:
        raise LookupError("the database has no broker tag prefix (oms_database.tag_prefix); was it migrated?")
    return str(value)
