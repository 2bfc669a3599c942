"""Journal: the one writer of the database, committing in groups."""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pykka

from actors.base import OMSActor, answer, dispatch, fail, handles, tell_quietly
from actors.messages import (
    IdsReserved,
    Load,
    OrderChanged,
    RecordFill,
    RecordNewOrder,
    RecordPosition,
    RecordPositions,
    RecordRefusal,
    RecordSubmission,
    RecordTransition,
    ReserveIds,
)
from persistence.group_write import Intent, NewFill, NewOrder, PositionUpdate, Transition
from persistence.schema import DEFAULT_ACCOUNT
from persistence.store import Store

log = logging.getLogger("oms.journal")

# The reads other actors may ask for, by Store method name.
READS = frozenset(
    {
        "load_order",
        "load_orders",
        "load_live_orders",
        "load_positions",
        "load_fills",
        "load_unapplied_fills",
        "trade_ids",
        "trade_ids_of_live_orders",
        "trade_applied",
        "load_events",
        "count_orders_by_status",
        "tag_prefix",
    }
)
WRITES = (RecordNewOrder, RecordSubmission, RecordRefusal, RecordTransition, RecordFill, RecordPosition, RecordPositions)
# Bounds one transaction, so one group commit never holds the first writer for long.
MAX_GROUP = 500


def _intents(message: Any) -> list[Intent]:
    if isinstance(message, (RecordNewOrder, RecordRefusal)):
        return [NewOrder(message.order, message.event)]
    if isinstance(message, RecordSubmission):
        return [NewOrder(message.pending, message.created), Transition(message.submitted, message.sent)]
    if isinstance(message, RecordTransition):
        return [Transition(message.order, message.event)]
    if isinstance(message, RecordFill):
        return [NewFill(message.fill, message.order, message.event)]
    if isinstance(message, RecordPosition):
        return [PositionUpdate(message.position, message.applied_trade_id)]
    if isinstance(message, RecordPositions):
        return [PositionUpdate(position, trade_id) for position, trade_id in message.changes]
    raise TypeError(f"not a write: {message!r}")


@dispatch
class Journal(OMSActor):
    """Owns the database session (a Store on one long-lived connection).

    Takes the writes RecordNewOrder, RecordSubmission, RecordTransition, RecordFill,
    RecordPosition, RecordPositions and RecordRefusal, ReserveIds (answered by telling
    IdsReserved) and Load (reads). Reads and writes are the account's own only.

    Group commit: a write told with a reply future waits in the group until the inbox is
    empty (or the group is full), then the whole group is committed in one transaction
    and every sender is answered after that commit. A group that fails is redone one
    write at a time, so one bad write cannot fail the others. A read first commits the
    group, so it sees every write told before it.
    """

    def __init__(self, database_url: str, supervisor=None, account: str = DEFAULT_ACCOUNT) -> None:
        super().__init__()
        self.supervisor = supervisor
        self._url = database_url
        self._account = account
        self._store: Store | None = None
        self._group: list[Any] = []

    def on_start(self) -> None:
        self._store = Store.open(self._url, account=self._account)

    def on_stop(self) -> None:
        self._commit_group()
        if self._store is not None:
            self._store.close()

    def on_failure(self, *exc_info) -> None:
        super().on_failure(*exc_info)
        if self._store is not None:
            self._store.close()

    @property
    def store(self) -> Store:
        assert self._store is not None, "journal not started"
        return self._store

    def on_receive(self, message: Any) -> Any:
        self._current = message
        if isinstance(message, WRITES) and message.reply is not None:
            self._group.append(message)
            if len(self._group) >= MAX_GROUP or self.actor_inbox.empty():
                self._commit_group()
            self._current = None
            return None
        self._commit_group()
        if isinstance(message, WRITES):  # asked: committed alone, answered on return
            [result] = self._write([message])
            if isinstance(result, BaseException):
                raise result
            return result[-1]
        return super().on_receive(message)

    def _commit_group(self) -> None:
        group, self._group = self._group, []
        if not group:
            return
        for message, result in zip(group, self._write(group)):
            if isinstance(message, RecordRefusal):
                if isinstance(result, BaseException):
                    # The refusal stands even if it cannot be stored: nothing reaches the broker.
                    log.error("could not store refused order %s: %r", message.order.order_id, result)
                else:
                    tell_quietly(message.notify, OrderChanged(message.order))
                fail(message.reply, message.error)
            elif isinstance(result, BaseException):
                fail(message.reply, result)
            else:
                answer(message.reply, result[-1])

    def _write(self, messages: list[Any]) -> list[Any]:
        """Each message's op results (or the exception that refused it)."""
        opsets = [_intents(m) for m in messages]
        try:
            flat = self.store.write_group([i for intents in opsets for i in intents], careful=False)
        except Exception as error:
            if len(messages) > 1:
                log.info("group of %d writes failed (%r); redoing them one by one", len(messages), error)
            # Each write again, carefully: a duplicate fill is then answered False, and
            # any other failure is that write's own.
            results = []
            for intents in opsets:
                try:
                    results.append(self.store.write_group(intents, careful=True))
                except Exception as own:
                    results.append(own)
            return results
        results, at = [], 0
        for ops in opsets:
            results.append(flat[at : at + len(ops)])
            at += len(ops)
        return results

    @handles(ReserveIds)
    def _reserve(self, message: ReserveIds) -> None:
        try:
            ids = self.store.reserve_ids(message.count)
        except Exception as error:  # the database is away: the supervisor asks again later
            log.error("could not reserve order ids: %r", error)
            tell_quietly(message.reply_to, IdsReserved((), repr(error)))
            return
        tell_quietly(message.reply_to, IdsReserved(tuple(ids)))

    @handles(Load)
    def _load(self, message: Load):
        if message.what not in READS:
            raise ValueError(f"journal has no read named {message.what!r}")
        return getattr(self.store, message.what)(*message.args)


def write(journal: pykka.ActorRef, message: Any, timeout: float = 60.0) -> Any:
    """Tell ``journal`` a write with a reply future and wait for its commit: the write
    joins a group commit with whatever else is queued. Raises what the write raised."""
    reply: pykka.Future = pykka.ThreadingFuture()
    journal.tell(replace(message, reply=reply))
    return reply.get(timeout=timeout)
