"""PostgreSQL: a group's statements sent as ONE simple query, answered in one round trip.

Why not psycopg's pipeline: a pipeline sends each statement as it is queued and polls
the socket for every one of them (a group of ten statements made about ten polls and
five sends), and every poll gives the GIL up and must win it back. Under load, beside
the OMS's other busy threads, each of those returns waits its turn: a group write that
takes 1 ms alone took 30 ms beside three busy threads. Sent as one string, the group
is one send and one wait: measured 15 ms there, with half the CPU. The parameters are
bound on this side: the group write's own value types are quoted here (below), anything
else by psycopg's ``ClientCursor``, which quotes each value as a literal of its type.

The statements run in the connection's transaction, opened here (as psycopg would
have opened it) when none is open; the caller commits or rolls back as before. The
first statement that fails stops the rest, leaves the transaction failed, and is raised
as the driver's error of its SQLSTATE (a unique violation as ``UniqueViolation``), so
callers see what a statement executed on its own would have raised. A connection lost
on the way raises ``OperationalError`` with the connection marked broken.
"""
from __future__ import annotations

import re
import select
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.pq import ExecStatus, TransactionStatus

_DONE = (ExecStatus.COMMAND_OK, ExecStatus.TUPLES_OK)


def begin_command(raw: psycopg.Connection) -> str:
    """The BEGIN psycopg itself would send on ``raw`` (its isolation level, read-only
    and deferrable settings), so a transaction opened here is the one it would open."""
    parts = ["BEGIN"]
    if raw.isolation_level is not None:
        parts.append("ISOLATION LEVEL " + raw.isolation_level.name.replace("_", " "))
    if raw.read_only is not None:
        parts.append("READ ONLY" if raw.read_only else "READ WRITE")
    if raw.deferrable is not None:
        parts.append("DEFERRABLE" if raw.deferrable else "NOT DEFERRABLE")
    return " ".join(parts)


def run_as_one_query(
    raw: psycopg.Connection, steps: Sequence[tuple[str, Sequence[Mapping[str, Any] | None]]], *, commit: bool = False,
) -> list[tuple[int, tuple | None]]:
    """Run every step, each a statement and its parameter sets (one execution per set),
    in one round trip. Answers, for each step, the rows its executions touched in all
    and the first row its first execution returned (None if it returned none).

    With ``commit``, a transaction this query opens is committed by the same query: no
    second round trip (the caller's COMMIT then finds nothing open and sends nothing).
    A transaction that was open already is the caller's, and stays open. Only for
    writes that may be written again: if the connection is lost on the way, nobody
    knows whether they were committed."""
    fallback: list[psycopg.ClientCursor] = []

    def mogrify(sql: str, params: Mapping[str, Any] | None) -> str:
        if not fallback:
            fallback.append(psycopg.ClientCursor(raw))
        return fallback[0].mogrify(sql, params)

    plain = _plain_quoting(raw)
    texts: list[str] = []
    counts: list[int] = []
    opened = not raw.autocommit and raw.info.transaction_status == TransactionStatus.IDLE
    if opened:
        texts.append(begin_command(raw))
    for sql, parameter_sets in steps:
        counts.append(len(parameter_sets))
        template = _template(sql) if plain else None
        for params in parameter_sets:
            if params is None:
                texts.append(sql)  # as psycopg sends a statement without parameters: verbatim
                continue
            text = None if template is None else _render(template, params)
            texts.append(text if text is not None else mogrify(sql, params))
    if commit and opened:
        texts.append("COMMIT")  # skipped, with the rest, once a statement fails
    results = _exchange(raw, ";\n".join(texts).encode(raw.info.encoding))
    if opened:
        results = results[1:-1] if commit else results[1:]
    answers: list[tuple[int, tuple | None]] = []
    at = 0
    for count in counts:
        mine = results[at:at + count]
        at += count
        touched = sum(int(result.command_tuples or 0) for result in mine)
        first = mine[0] if mine else None
        row = None
        if first is not None and first.status == ExecStatus.TUPLES_OK and first.ntuples:
            row = tuple(
                None if value is None else value.decode(raw.info.encoding)
                for value in (first.get_value(0, column) for column in range(first.nfields))
            )
        answers.append((touched, row))
    return answers


# --- binding values on our side -----------------------------------------------------------
# psycopg's ClientCursor quotes a value through its adapters, about 1 us a value; a group
# of an order's statements has a few hundred. The types the group write binds are quoted
# here instead, to the same literal text PostgreSQL reads back as the same value; anything
# else (or a statement with placeholders other than %(name)s) goes to psycopg.

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%|%")


@lru_cache(maxsize=256)
def _template(sql: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """``sql`` split around its %(name)s placeholders: (texts, names), one more text than
    names. None if it holds any other use of %."""
    texts: list[str] = []
    names: list[str] = []
    text, at = "", 0
    for mark in _PLACEHOLDER.finditer(sql):
        text += sql[at:mark.start()]
        at = mark.end()
        if mark.group(1) is not None:
            texts.append(text)
            names.append(mark.group(1))
            text = ""
        elif mark.group(0) == "%%":
            text += "%"
        else:
            return None
    texts.append(text + sql[at:])
    return tuple(texts), tuple(names)


def _plain_quoting(raw: psycopg.Connection) -> bool:
    """Whether a string literal is read as written but for doubled quotes: with
    standard_conforming_strings on (PostgreSQL's default), a backslash is an ordinary
    character. In UTF-8, no byte of a multibyte character is a quote."""
    return (raw.pgconn.parameter_status(b"standard_conforming_strings") == b"on"
            and raw.info.encoding == "utf-8")


def _quote(value: Any) -> str | None:
    """``value`` as a SQL literal, or None for a type left to psycopg."""
    kind = type(value)
    if value is None:
        return "NULL"
    if kind is str:
        if "\x00" in value:
            return None  # not storable: psycopg says so
        return "'" + value.replace("'", "''") + "'"
    if kind is int or (kind is Decimal and value.is_finite()):
        text = str(value)  # a Decimal's exponent form (1E-8) is read as the same exact numeric
        # In parentheses, a minus sign can neither join the SQL before it into "--", a
        # comment, nor come after a cast that binds tighter ("-9223372036854775808::bigint").
        return "(" + text + ")" if text[0] == "-" else text
    if kind is bool:
        return "true" if value else "false"
    if kind is datetime and value.tzinfo is timezone.utc:
        return "'" + value.isoformat(" ") + "'::timestamptz"
    return None


def _render(template: tuple[tuple[str, ...], tuple[str, ...]], params: Mapping[str, Any]) -> str | None:
    texts, names = template
    parts = [texts[0]]
    for name, text in zip(names, texts[1:]):
        literal = _quote(params[name]) if name in params else None
        if literal is None:
            return None
        parts.append(literal)
        parts.append(text)
    return "".join(parts)


def _exchange(raw: psycopg.Connection, query: bytes) -> list[pq.abc.PGresult]:
    """Send ``query`` and collect every statement's result; raise the first failure."""
    pgconn = raw.pgconn
    encoding = raw.info.encoding
    with raw.lock:  # what psycopg holds around every exchange on the connection
        pgconn.send_query(query)
        poller = select.poll()
        fd = pgconn.socket
        while pgconn.flush():  # a long query may not fit the socket's buffer at once
            poller.register(fd, select.POLLIN | select.POLLOUT)
            for _, event in poller.poll():
                if event & select.POLLIN:
                    pgconn.consume_input()  # the server may answer while we still send
            poller.unregister(fd)
        poller.register(fd, select.POLLIN)
        results: list[pq.abc.PGresult] = []
        while True:
            if pgconn.is_busy():
                # Read only when the socket has something: a read that finds nothing is
                # still a system call, and it gives the GIL up all the same.
                poller.poll()
                pgconn.consume_input()
                continue
            result = pgconn.get_result()
            if result is None:
                break
            results.append(result)
    for result in results:
        if result.status not in _DONE:
            raise _error(result, encoding)
    return results


def _error(result: pq.abc.PGresult, encoding: str) -> psycopg.Error:
    message = (result.error_message or b"").decode(encoding, "replace").strip() or f"statement failed ({result.status.name})"
    sqlstate = result.error_field(pq.DiagnosticField.SQLSTATE)
    if sqlstate is None:
        return psycopg.OperationalError(message)  # no answer from the server: the link failed
    try:
        kind = errors.lookup(sqlstate.decode())
    except KeyError:
        kind = psycopg.DatabaseError
    return kind(message)
