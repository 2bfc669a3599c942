"""PostgreSQL: a group's statements sent as ONE simple query, answered in one round trip.

Why not psycopg's pipeline: a pipeline sends each statement as it is queued and polls
the socket for every one of them (a group of ten statements made about ten polls and
five sends), and every poll gives the GIL up and must win it back. Under load, beside
the OMS's other busy threads, each of those returns waits its turn: a group write that
takes 1 ms alone took 30 ms beside three busy threads. Sent as one string, the group
is one send and one wait: measured 15 ms there, with half the CPU (the parameters are
bound on this side, by psycopg's ``ClientCursor``, which quotes each value as a literal
of its type).

The statements run in the connection's transaction, opened here (as psycopg would
have opened it) when none is open; the caller commits or rolls back as before. The
first statement that fails stops the rest, leaves the transaction failed, and is raised
as the driver's error of its SQLSTATE (a unique violation as ``UniqueViolation``), so
callers see what a statement executed on its own would have raised. A connection lost
on the way raises ``OperationalError`` with the connection marked broken.
"""
from __future__ import annotations

import select
from collections.abc import Mapping, Sequence
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


def run_as_one_query(raw: psycopg.Connection, steps: Sequence[tuple[str, Sequence[Mapping[str, Any] | None]]]) -> list[tuple[int, tuple | None]]:
    """Run every step, each a statement and its parameter sets (one execution per set),
    in one round trip. Answers, for each step, the rows its executions touched in all
    and the first row its first execution returned (None if it returned none)."""
    bind = psycopg.ClientCursor(raw)
    texts: list[str] = []
    counts: list[int] = []
    opened = not raw.autocommit and raw.info.transaction_status == TransactionStatus.IDLE
    if opened:
        texts.append(begin_command(raw))
    for sql, parameter_sets in steps:
        counts.append(len(parameter_sets))
        texts.extend(bind.mogrify(sql, params) for params in parameter_sets)
    results = _exchange(raw, ";\n".join(texts).encode(raw.info.encoding))
    if opened:
        results = results[1:]
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
