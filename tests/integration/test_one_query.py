"""persistence.one_query on a real PostgreSQL server: a group's statements as one query,
with each value bound on our side exactly, the transaction psycopg would open, the first
failure raised as the driver's error of its SQLSTATE, and a lost connection marked broken."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors
from psycopg.pq import TransactionStatus

from persistence.one_query import begin_command, run_as_one_query
from tests.oms_helpers import raw_connection

pytestmark = pytest.mark.postgres

INSERT = "INSERT INTO t (id, amount, at, note, doc, flag) VALUES (%(id)s, %(amount)s, %(at)s, %(note)s, CAST(%(doc)s AS JSONB), %(flag)s)"


@pytest.fixture
def raw(fresh_postgres_url):
    conn = raw_connection(fresh_postgres_url)
    conn.execute("CREATE TABLE t (id bigint PRIMARY KEY, amount numeric(20, 8), at timestamptz, note text, doc jsonb, flag boolean)")
    conn.commit()
    yield conn
    conn.close()


def test_every_value_reaches_the_table_exactly_as_bound_on_our_side(raw):
    at = datetime(2026, 11, 30, 9, 15, 0, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    rows = [
        {"id": 1, "amount": Decimal("-1234567890.12345678"), "at": at, "note": "it's a \\ back'slash -- not a comment; ₹",
         "doc": json.dumps({"quote": "'", "rupee": "₹", "n": [1, 2.5]}), "flag": True},
        {"id": 2, "amount": Decimal("0.00000001"), "at": None, "note": None, "doc": None, "flag": False},
    ]
    [(inserted, _)] = run_as_one_query(raw, [(INSERT, rows)])
    raw.commit()
    assert inserted == 2
    stored = raw.execute("SELECT id, amount, at, note, doc, flag FROM t ORDER BY id").fetchall()
    assert stored == [
        (1, Decimal("-1234567890.12345678"), at, rows[0]["note"], {"quote": "'", "rupee": "₹", "n": [1, 2.5]}, True),
        (2, Decimal("0.00000001"), None, None, None, False),
    ]


def test_it_answers_each_steps_touched_rows_and_first_row(raw):
    answers = run_as_one_query(raw, [
        ("SELECT 7, 'seven', NULL", [None]),
        (INSERT, [{"id": n, "amount": n, "at": None, "note": None, "doc": None, "flag": None} for n in range(5)]),
        ("UPDATE t SET note = 'x' WHERE id = %(id)s", [{"id": 1}, {"id": 3}, {"id": 99}]),
    ])
    raw.rollback()
    assert answers == [(1, ("7", "seven", None)), (5, None), (2, None)]


def test_it_opens_the_transaction_psycopg_would_and_joins_one_already_open(raw):
    assert raw.info.transaction_status == TransactionStatus.IDLE
    run_as_one_query(raw, [(INSERT, [{"id": 1, "amount": 1, "at": None, "note": None, "doc": None, "flag": None}])])
    assert raw.info.transaction_status == TransactionStatus.INTRANS
    raw.rollback()  # the caller's to end: nothing was committed
    assert raw.execute("SELECT count(*) FROM t").fetchone() == (0,)
    raw.commit()

    raw.execute("INSERT INTO t (id) VALUES (10)")  # psycopg opened this one
    run_as_one_query(raw, [(INSERT, [{"id": 11, "amount": 1, "at": None, "note": None, "doc": None, "flag": None}])])
    raw.commit()
    assert raw.execute("SELECT array_agg(id ORDER BY id) FROM t").fetchone() == ([10, 11],)
    raw.commit()

    raw.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
    raw.read_only = True
    assert begin_command(raw) == "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY"
    [(_, row)] = run_as_one_query(raw, [("SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only')", [None])])
    raw.rollback()
    assert row == ("serializable", "on")


def test_the_first_failure_stops_the_rest_and_is_raised_as_its_sqlstate(raw):
    row = {"amount": 1, "at": None, "note": None, "doc": None, "flag": None}
    with pytest.raises(errors.UniqueViolation, match="duplicate key"):
        run_as_one_query(raw, [
            (INSERT, [{"id": 1, **row}, {"id": 1, **row}]),
            ("INSERT INTO t (id) VALUES (%(id)s)", [{"id": 2}]),
        ])
    assert raw.info.transaction_status == TransactionStatus.INERROR
    raw.rollback()
    assert raw.execute("SELECT count(*) FROM t").fetchone() == (0,)
    raw.commit()
    with pytest.raises(psycopg.IntegrityError):  # what SQLAlchemy maps to its IntegrityError
        run_as_one_query(raw, [("INSERT INTO t (id) VALUES (NULL)", [None])])
    raw.rollback()


def test_a_query_larger_than_the_sockets_buffer_goes_out_whole(raw):
    note = "n" * 10_000
    rows = [{"id": n, "amount": n, "at": None, "note": note, "doc": None, "flag": None} for n in range(1_000)]  # ~10 MB
    [(inserted, _)] = run_as_one_query(raw, [(INSERT, rows)])
    raw.commit()
    assert inserted == 1_000
    assert raw.execute("SELECT count(*), sum(length(note)) FROM t").fetchone() == (1_000, 10_000_000)


def test_a_connection_ended_by_the_server_raises_operational_error_and_is_broken(raw, fresh_postgres_url):
    pid = raw.info.backend_pid
    with raw_connection(fresh_postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):
        run_as_one_query(raw, [("INSERT INTO t (id) VALUES (%(id)s)", [{"id": 1}])])
    assert raw.broken
