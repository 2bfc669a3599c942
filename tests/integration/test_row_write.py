"""Whole rows written table by table (``persistence.group_write.write_rows``, the paper
book's writes). Its rows must land exactly as writing them one after the other would
have left them, or not at all."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, StatementError

from persistence.group_write import write_rows
from persistence.schema import paper_counters, paper_prices

AT = datetime(2026, 11, 30, 4, 0, tzinfo=timezone.utc)


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    return migrated_engine


def price(symbol: str, value: str, account: str = "A") -> dict:
    return {"account": account, "exchange": "NSE", "symbol": symbol, "price": Decimal(value), "updated_at": AT}


def prices(engine: Engine) -> dict[str, Decimal]:
    with engine.connect() as conn:
        return {row.symbol: row.price for row in conn.execute(select(paper_prices).order_by(paper_prices.c.symbol))}


def test_a_row_written_twice_in_one_write_ends_as_the_last_or_the_first_as_asked(engine: Engine) -> None:
    with engine.begin() as conn:
        write_rows(conn, [(paper_prices, [price("INFY", "1"), price("TCS", "5"), price("INFY", "2")], ("account", "exchange", "symbol"), True)])
    assert prices(engine) == {"INFY": Decimal("2"), "TCS": Decimal("5")}  # replaced: the last one

    with engine.begin() as conn:
        write_rows(conn, [(paper_prices, [price("INFY", "3"), price("WIPRO", "7"), price("WIPRO", "8")], ("account", "exchange", "symbol"), False)])
    assert prices(engine) == {"INFY": Decimal("2"), "TCS": Decimal("5"), "WIPRO": Decimal("7")}  # kept: the first one


def test_several_tables_and_nulls_go_in_one_write_and_read_back_exactly(engine: Engine) -> None:
    counters = {"account": "A", "id_prefix": "P", "order_seq": 2**40, "trade_seq": 0}
    with engine.begin() as conn:
        write_rows(conn, [
            (paper_prices, [price("INFY", "1500.12345678")], ("account", "exchange", "symbol"), True),
            (paper_counters, [counters], ("account",), True),
            (paper_prices, [], ("account", "exchange", "symbol"), True),  # nothing: skipped
        ])
    assert prices(engine) == {"INFY": Decimal("1500.12345678")}
    with engine.connect() as conn:
        row = conn.execute(select(paper_counters)).one()
    assert (row.id_prefix, row.order_seq, row.trade_seq) == ("P", 2**40, 0)


def test_a_value_the_column_cannot_hold_is_refused_and_nothing_of_the_write_lands(engine: Engine) -> None:
    with engine.begin() as conn:
        write_rows(conn, [(paper_prices, [price("INFY", "1")], ("account", "exchange", "symbol"), True)])

    if engine.dialect.name == "postgresql":  # SQLite keeps any length of text
        too_long = price("X" * 41, "2")  # symbol is VARCHAR(40): refused, never cut to fit
        with pytest.raises(DBAPIError):
            with engine.begin() as conn:
                write_rows(conn, [(paper_prices, [price("INFY", "9"), too_long], ("account", "exchange", "symbol"), True)])
    with pytest.raises(StatementError):  # more places than NUMERIC(20, 8): refused, never rounded
        with engine.begin() as conn:
            write_rows(conn, [(paper_prices, [price("INFY", "9"), price("TCS", "1.123456789")], ("account", "exchange", "symbol"), True)])

    assert prices(engine) == {"INFY": Decimal("1")}
    with engine.begin() as conn:  # the connection is fit for the next write
        write_rows(conn, [(paper_prices, [price("INFY", "4")], ("account", "exchange", "symbol"), True)])
    assert prices(engine) == {"INFY": Decimal("4")}


def test_inside_a_larger_transaction_the_rows_roll_back_with_it(engine: Engine) -> None:
    class Abandoned(Exception):
        pass

    with pytest.raises(Abandoned):
        with engine.begin() as conn:
            conn.execute(paper_prices.insert().values(**price("TCS", "5")))  # something before it
            write_rows(conn, [(paper_prices, [price("INFY", "1")], ("account", "exchange", "symbol"), True)])
            raise Abandoned
    assert prices(engine) == {}

    with engine.begin() as conn:
        conn.execute(paper_prices.insert().values(**price("TCS", "5")))
        write_rows(conn, [(paper_prices, [price("INFY", "1")], ("account", "exchange", "symbol"), True)])
    assert prices(engine) == {"INFY": Decimal("1"), "TCS": Decimal("5")}


def test_a_plan_checked_after_it_ran_is_refused_a_commit_in_the_same_query() -> None:
    # Its rows touched are judged once the answer is back: committed by then, a wrong
    # count could no longer undo anything. Refused before anything is sent.
    from persistence.group_write import _run, _Step

    checked = _Step("UPDATE orders SET status = 'OPEN' WHERE id = %(w_id)s", [{"w_id": 1}], 1, "no such order")
    with pytest.raises(ValueError, match="cannot commit in the same query"):
        _run(None, [checked], one_query=True, commit=True)
