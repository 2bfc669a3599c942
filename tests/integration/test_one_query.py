"""persistence.one_query on a real PostgreSQL server: a group's statements as one query,
with each value bound on our side exactly, the transaction psycopg would open, the first
failure raised as the driver's error of its SQLSTATE, and a lost connection marked broken."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import errors
from psycopg.pq import TransactionStatus

from persistence.one_query import _quote, _render, _template, begin_command, run_as_one_query
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


# --- values quoted on our side, not by psycopg's adapters ----------------------------------

UTC = timezone.utc
ROUND_TRIP = "SELECT %(text)s::text, %(amount)s::numeric, %(at)s, %(flag)s, %(number)s::bigint"

texts = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")) | st.sampled_from(
    ["'", "''", "\\", "\\'", "'; DROP TABLE t; --", "-- not a comment", "/* not */", "$$", "E'\\n'", "₹ ఒకటి", "%s", "%(text)s"]
)
amounts = st.decimals(allow_nan=False, allow_infinity=False, places=None, min_value=Decimal("-1e20"), max_value=Decimal("1e20"))
moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts, amount=amounts, at=moments, flag=st.booleans() | st.none(), number=st.integers(-(2**63), 2**63 - 1))
def test_a_value_quoted_on_our_side_is_read_back_by_the_server_as_exactly_that_value(raw, text, amount, at, flag, number):
    params = {"text": text, "amount": amount, "at": at, "flag": flag, "number": number}
    rendered = _render(_template(ROUND_TRIP), params)
    assert rendered is not None  # every one of these types is quoted here, none left to psycopg
    try:
        [(_, row)] = run_as_one_query(raw, [(ROUND_TRIP, [params])])
        typed = raw.execute(rendered).fetchone()
    finally:
        raw.rollback()
    assert row is not None
    assert typed == (text, amount, at, flag, number)


def test_a_negative_number_is_parenthesised_so_no_minus_sign_makes_a_comment_or_loses_to_a_cast(raw):
    assert _quote(-5) == "(-5)"
    assert _quote(Decimal("-0.05")) == "(-0.05)"
    assert _render(_template("SELECT 1 -%(x)s"), {"x": -1}) == "SELECT 1 -(-1)"
    [(_, row)] = run_as_one_query(raw, [("SELECT 1 -%(x)s, %(least)s::bigint", [{"x": -1, "least": -(2**63)}])])
    raw.rollback()
    assert row == ("2", str(-(2**63)))


def test_what_is_not_quoted_here_goes_to_psycopg_and_still_arrives_exactly(raw):
    # a zone other than UTC, a date, a float, a NaN, a NUL: none is quoted here
    at = datetime(2026, 11, 30, 9, 15, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    for value in (at, at.date(), 2.5, Decimal("NaN"), "a\x00b", b"bytes"):
        assert _quote(value) is None
    [(_, row)] = run_as_one_query(raw, [("SELECT %(at)s::timestamptz = %(utc)s, %(day)s::date, %(half)s::float8, %(nan)s::numeric",
                                         [{"at": at, "utc": at.astimezone(UTC), "day": at.date(), "half": 2.5, "nan": Decimal("NaN")}])])
    raw.rollback()
    assert row == ("t", "2026-11-30", "2.5", "NaN")
    with pytest.raises(psycopg.DataError, match="NUL"):
        run_as_one_query(raw, [("SELECT %(text)s", [{"text": "a\x00b"}])])
    raw.rollback()


def test_statements_with_other_placeholders_or_percent_signs_are_left_to_psycopg(raw):
    assert _template("SELECT %s") is None
    assert _template("SELECT 'a%%b', %(x)s") == (("SELECT 'a%b', ", ""), ("x",))
    [(_, first), (_, second)] = run_as_one_query(raw, [
        ("SELECT 'a%%b', %(x)s::text", [{"x": "it's"}]),
        ("SELECT 5 %% 3", [{}]),
    ])
    raw.rollback()
    assert first == ("a%b", "it's")
    assert second == ("2",)
    [(_, verbatim)] = run_as_one_query(raw, [("SELECT '%%', 5 % 3", [None])])  # no parameters: sent as written
    raw.rollback()
    assert verbatim == ("%%", "2")


def test_with_standard_conforming_strings_off_every_string_is_quoted_by_psycopg(raw):
    raw.execute("SET standard_conforming_strings = off")
    raw.commit()
    tricky = "back\\slash and 'quote'"
    [(_, row)] = run_as_one_query(raw, [("SELECT %(text)s::text", [{"text": tricky}])])
    raw.rollback()
    assert row == (tricky,)


def test_with_commit_a_transaction_the_query_opened_is_committed_by_it_and_one_already_open_is_left_open(raw, fresh_postgres_url):
    row = {"amount": 1, "at": None, "note": None, "doc": None, "flag": None}
    [(inserted, _)] = run_as_one_query(raw, [(INSERT, [{"id": 1, **row}])], commit=True)
    assert inserted == 1 and raw.info.transaction_status == TransactionStatus.IDLE
    with raw_connection(fresh_postgres_url) as other:  # committed: another session sees it
        assert other.execute("SELECT array_agg(id) FROM t").fetchone() == ([1],)

    raw.execute("INSERT INTO t (id) VALUES (2)")  # the caller's transaction: not ours to commit
    run_as_one_query(raw, [(INSERT, [{"id": 3, **row}])], commit=True)
    assert raw.info.transaction_status == TransactionStatus.INTRANS
    raw.rollback()

    with pytest.raises(errors.UniqueViolation):  # a failure skips the COMMIT with the rest
        run_as_one_query(raw, [(INSERT, [{"id": 4, **row}, {"id": 1, **row}])], commit=True)
    assert raw.info.transaction_status == TransactionStatus.INERROR
    raw.rollback()
    assert raw.execute("SELECT array_agg(id) FROM t").fetchone() == ([1],)
    raw.rollback()
