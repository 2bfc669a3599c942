"""The PostgreSQL test infrastructure itself (tests/conftest.py, .ci/postgres.sh)."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.postgres


def test_fresh_database_round_trip(fresh_postgres_url: str) -> None:
    engine = create_engine(fresh_postgres_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
            conn.execute(text("CREATE TABLE probe (id integer PRIMARY KEY, note text NOT NULL)"))
            conn.execute(
                text("INSERT INTO probe (id, note) VALUES (:id, :note)"),
                {"id": 7, "note": "hello"},
            )
        with engine.connect() as conn:
            row = conn.execute(text("SELECT id, note FROM probe")).one()
            assert tuple(row) == (7, "hello")
            assert conn.execute(text("SHOW fsync")).scalar_one() == "on"
    finally:
        engine.dispose()


def test_fresh_database_is_new_and_empty(fresh_postgres_url: str, postgres_url: str) -> None:
    engine = create_engine(fresh_postgres_url)
    try:
        with engine.connect() as conn:
            name = conn.execute(text("SELECT current_database()")).scalar_one()
            tables = conn.execute(
                text(
                    "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                    "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
                )
            ).scalars().all()
    finally:
        engine.dispose()
    assert name.startswith("oms_t_")
    assert name != make_url(postgres_url).database
    assert tables == []
