"""Journal: the one writer of the database, committing in groups."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any, Callable, TypeVar

import pykka

from actors.base import OMSActor, answer, dispatch, fail, handles, tell_quietly
from actors.messages import (
    DatabaseDown,
    DatabaseUp,
    IdsReserved,
    Load,
    OrderChanged,
    RecordDayBaseline,
    RecordFill,
    RecordFinding,
    RecordNewOrder,
    RecordPosition,
    RecordPositions,
    RecordRefusal,
    RecordSubmission,
    RecordTradingState,
    RecordTransition,
    ReserveIds,
    RetryHeld,
)
from domain.errors import OMSUnavailable, RecordedLate
from observability.metrics import OMSMetrics
from persistence.group_write import Intent, NewFill, NewOrder, PositionUpdate, Transition
from persistence.schema import DEFAULT_ACCOUNT
from persistence.store import Store, UnsureCommit, is_outage

log = logging.getLogger("oms.journal")
T = TypeVar("T")

# The reads other actors may ask for, by Store method name.
READS = frozenset(
    {
        "load_order",
        "filled_quantities",
        "load_orders",
        "load_live_orders",
        "load_positions",
        "load_fills",
        "load_unapplied_fills",
        "trade_ids",
        "trade_ids_of_live_orders",
        "unanswered_modifications_of_live_orders",
        "unanswered_modification",
        "trade_applied",
        "load_events",
        "count_orders_by_status",
        "tag_prefix",
        "untagged_broker_orders",
        "known_tags",
        "load_trading_state",
        "load_orders_in",
    }
)
WRITES = (RecordNewOrder, RecordSubmission, RecordRefusal, RecordTransition, RecordFill, RecordPosition, RecordPositions)
# Bounds one transaction, so one group commit never holds the first writer for long.
MAX_GROUP = 500
# While the database is away: first retry after this, doubling up to the maximum.
RETRY_FIRST_SECONDS = 0.2
RETRY_MAX_SECONDS = 5.0
COMPLAIN_EVERY_SECONDS = 10.0


def _is_news(message: Any) -> bool:
    """Whether a write records what already happened (the broker's word, a fill, a
    position it moved): such a write can only wait, never be refused. The others are
    intents (a new order, a cancel or a modification about to be sent): those are
    refused while they cannot be recorded, so nothing unrecorded reaches the broker."""
    if isinstance(message, (RecordSubmission, RecordNewOrder, RecordRefusal)):
        return False
    if isinstance(message, RecordTransition):
        return not message.intent
    return True


def _reason(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


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

    The database away (a connection refused or lost, a full disk) is an outage, not a
    failure: broker news (acknowledgements, fills, positions) is held in arrival order and
    written, exactly once, when the database answers again (retried with backoff, its
    senders answered then); intents (new orders, cancels, modifications) are refused at
    once with OMSUnavailable, so nothing unrecorded reaches the broker. The supervisor is
    told DatabaseDown and DatabaseUp.

    A write whose COMMIT went unanswered (PostgreSQL; the connection lost on the way) is
    neither redone nor refused: its writer is answered once the database says whether it
    was written (``_settle_unsure``), at once if it can be asked at once, and the writes
    after it wait behind it.
    """

    def __init__(
        self, database_url: str, supervisor=None, account: str = DEFAULT_ACCOUNT, metrics: OMSMetrics | None = None,
    ) -> None:
        super().__init__()
        self._metrics = metrics or OMSMetrics()
        self.supervisor = supervisor
        self._url = database_url
        self._account = account
        self._held: list[Any] = []  # broker news waiting for the database, in arrival order
        # Writes whose COMMIT went unanswered, oldest first: (write, its UnsureCommit, when).
        self._unsure: list[tuple[Any, UnsureCommit, float]] = []
        self._down: str | None = None  # why the database is unusable, while it is
        self._down_since = 0.0
        self._backoff = RETRY_FIRST_SECONDS
        self._last_complaint = 0.0
        self._retry_timer: threading.Timer | None = None
        self._stopping = False
        self._store: Store | None = None
        self._group: list[Any] = []

    heals = True
    asked = (Load, RecordFinding, RecordTradingState, RecordDayBaseline)
    # A write that failed half-way may have been committed: never written a second time.
    retries_after_restart = False

    def restart(self) -> None:
        """A fresh connection; the writes in the group and those held stay queued."""
        if self._store is not None:
            self._store.close()
        self._store = Store.open(self._url, migrate=False, account=self._account)

    def on_start(self) -> None:
        self._store = Store.open(self._url, account=self._account)

    def on_stop(self) -> None:
        self._stopping = True
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer.join(1)
        if self._down is None:
            self._commit_group()
        stopping = OMSUnavailable(
            f"the OMS stopped while the database was unavailable ({self._down}); "
            "the broker still holds what happened and it is read again at the next start"
        )
        if self._unsure and self._settle_unsure() is not None:
            log.error("the OMS stops with %d writes the database may or may not have (their COMMIT went unanswered); "
                      "the next start reads the broker again", len(self._unsure))
        unsure = [message for message, _, _ in self._unsure]
        for message in [*unsure, *self._held, *self._group]:
            fail(message.reply, stopping)
        self._held, self._group, self._unsure = [], [], []
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
        try:
            return self._receive(message)
        except Exception as error:
            if isinstance(message, self.asked) or (isinstance(message, WRITES) and message.reply is None):
                raise  # asked: the asker hears it
            return self._heal(lambda journal, m: journal._receive(m), message, error)

    def _receive(self, message: Any) -> Any:
        self._current = message
        if isinstance(message, RetryHeld):
            self._retry_held()
            return None
        if isinstance(message, WRITES) and message.reply is not None and self._down is not None:
            self._while_down(message)
            return None
        if isinstance(message, WRITES) and message.reply is not None:
            self._group.append(message)
            if len(self._group) >= MAX_GROUP or self.actor_inbox.empty():
                self._commit_group()
            self._current = None
            return None
        self._commit_group()
        if isinstance(message, WRITES):  # asked: committed alone, answered on return
            if self._down is not None:
                raise OMSUnavailable(f"not recorded: the database is unavailable ({self._down})")
            [result] = self._write([message])
            if isinstance(result, UnsureCommit):
                result = self._settle_asked(result)
            if isinstance(result, BaseException):
                if is_outage(result):
                    self._going_down(result)
                    raise OMSUnavailable(f"not recorded: the database is unavailable ({self._down})") from result
                raise result
            return result[-1]
        return super().on_receive(message)

    def _commit_group(self) -> None:
        group, self._group = self._group, []
        if not group:
            return
        try:
            self._commit(group)
        except Exception as error:
            for message in group:  # nobody is left waiting (a reply answered already stays so)
                fail(message.reply, error)
            raise

    def _commit(self, group: list[Any]) -> None:
        outage, held = self._take(group, self._write(group))
        if isinstance(outage, UnsureCommit) and not held and self._settle_unsure() is None:
            # The server said at once (only that connection was lost): nothing is down.
            # What it had not written is news to write now, ahead of anything newer.
            redo, self._held = self._held, []
            outage, held = self._take(redo, self._write(redo)) if redo else (None, [])
        if outage is not None:
            self._going_down(outage)
        if held:
            self._held.extend(held)
        if outage is not None or held:
            self._schedule_retry()

    def _take(self, messages: list[Any], results: list[Any]) -> tuple[BaseException | None, list[Any]]:
        """Answer each write by its own result. What the database's absence kept out:
        news comes back to be held, an intent is refused (nothing unrecorded is sent),
        and a write whose COMMIT went unanswered waits for the database to say whether it
        was written (``_settle_unsure``). Answers the outage, if any, and the news to hold."""
        outage: BaseException | None = None
        held = []
        for message, result in zip(messages, results):
            if isinstance(result, UnsureCommit):
                outage = outage or result
                self._unsure.append((message, result, time.monotonic()))  # settled by _settle_unsure
                continue
            if isinstance(result, BaseException) and is_outage(result):
                outage = outage or result
                if _is_news(message):
                    held.append(message)  # written, in order, once the database is back
                    continue
                result = OMSUnavailable(f"not recorded, so not sent: the database is unavailable ({_reason(result)})")
            self._answer(message, result)
        if any(isinstance(r, UnsureCommit) for r in results):
            log.error("the database went away while committing (transaction %s); those writes are answered once "
                      "it says whether they were written", next(r for r in results if isinstance(r, UnsureCommit)).transaction_id)
        return outage, held

    @staticmethod
    def _answer(message: Any, result: Any) -> None:
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

    def _settle_asked(self, unsure: UnsureCommit) -> Any:
        """An asked write whose COMMIT went unanswered: its asker waits, so the database is
        asked at once (a lost connection is often only that). Unknown, it is an outage;
        the write may then be in the database, as a crash would have left it."""
        try:
            status = self.store.commit_status(unsure.transaction_id)
        except Exception as error:
            log.error("transaction %s may or may not have been written (%r)", unsure.transaction_id, error)
            return unsure
        if status == "committed":
            return unsure.results
        if status == "in progress":  # it may still be written: an outage, as a crash would leave it
            log.error("transaction %s may or may not have been written (still in progress)", unsure.transaction_id)
            return unsure
        return OMSUnavailable(f"not recorded: the connection was lost while writing it (transaction {status or 'unknown'})")

    def _settle_unsure(self) -> BaseException | None:
        """Ask the database what became of each write whose COMMIT went unanswered, in
        the order they were written: redone blindly, a written group would write its
        events twice and find its fills and positions already there; refused, a written
        intent would stay in the database unsent. Written, its writer hears its result;
        not written, news is held again (ahead of what came after it) and an intent is
        refused. Answers the outage if the database cannot say yet."""
        statuses: dict[str, str | None] = {}
        news = []
        while self._unsure:
            message, unsure, parked_at = self._unsure[0]
            if unsure.transaction_id not in statuses:
                try:
                    status = self.store.commit_status(unsure.transaction_id)
                except Exception as error:
                    self._held = news + self._held
                    return error
                if status == "in progress":
                    self._held = news + self._held
                    return RuntimeError(f"transaction {unsure.transaction_id} is still in progress")
                log.warning("transaction %s was %s", unsure.transaction_id,
                            "written" if status == "committed" else f"not written ({status})")
                statuses[unsure.transaction_id] = status
            self._unsure.pop(0)
            waited = time.monotonic() - parked_at
            late = waited > STALE_INTENT_SECONDS and not _is_news(message) and not isinstance(message, RecordRefusal)
            if statuses[unsure.transaction_id] == "committed" and late:
                # Written, but the intent's moment has passed: its writer records why it
                # does not act on it (a new order is not sent; it ends FAILED).
                self._answer(message, RecordedLate(f"recorded, but confirmed only {waited:.0f} s later, "
                                                   "when the database came back; too late to act on"))
            elif statuses[unsure.transaction_id] == "committed":
                self._answer(message, unsure.results)
            elif _is_news(message):
                news.append(message)
            else:
                self._answer(message, OMSUnavailable("not recorded, so not sent: the database went away while writing it"))
        self._held = news + self._held
        return None

    # --- the database away ---------------------------------------------------------------

    def _while_down(self, message: Any) -> None:
        """News from the broker waits for the database, in order; a new intent (an order,
        a cancel, a modification) is refused at once: nothing unrecorded is sent."""
        if _is_news(message):
            self._held.append(message)
            return
        error = OMSUnavailable(f"not recorded, so not sent: the database is unavailable ({self._down})")
        if isinstance(message, RecordRefusal):
            log.error("could not store refused order %s: %s", message.order.order_id, error)
            fail(message.reply, message.error)
        else:
            fail(message.reply, error)

    def _going_down(self, error: BaseException) -> None:
        if self._down is None:
            self._down = _reason(error)
            self._down_since = time.monotonic()
            self._backoff = RETRY_FIRST_SECONDS
            log.error("database unavailable (%s): holding broker news, refusing new intents", self._down)
            tell_quietly(self.supervisor, DatabaseDown(self._down))
            self._schedule_retry()  # probes the database even when nothing is held

    def _schedule_retry(self) -> None:
        if self._retry_timer is not None or self._stopping:
            return
        me = self.actor_ref
        self._retry_timer = threading.Timer(self._backoff, lambda: tell_quietly(me, RetryHeld()))
        self._retry_timer.daemon = True
        self._retry_timer.start()

    def _retry_held(self) -> None:
        self._retry_timer = None
        still_down = self._settle_unsure()
        if still_down is not None:
            self._still_down(still_down)
            return
        held, self._held = self._held, []
        if not held:
            probe = self._probe()
            if probe is not None:
                self._still_down(probe)
                return
            self._back_up()
            return
        outage, again = self._take(held, self._write(held))
        self._held = again + self._held
        if outage is not None:
            self._still_down(outage)
            return
        self._back_up()

    def _probe(self) -> BaseException | None:
        try:
            self.store.count_orders_by_status()
        except Exception as error:
            return error
        return None

    def _still_down(self, error: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_complaint >= COMPLAIN_EVERY_SECONDS:  # rate-limited, not silent
            self._last_complaint = now
            log.error(
                "database still unavailable after %.0f s (%s); %d broker updates held",
                now - self._down_since, _reason(error), len(self._held),
            )
        self._backoff = min(self._backoff * 2, RETRY_MAX_SECONDS)
        self._schedule_retry()

    def _back_up(self) -> None:
        log.warning("database available again after %.1f s", time.monotonic() - self._down_since)
        self._down = None
        tell_quietly(self.supervisor, DatabaseUp())

    def _write(self, messages: list[Any]) -> list[Any]:
        """Each message's op results (or the exception that refused it)."""
        opsets = [_intents(m) for m in messages]
        started = time.perf_counter()
        try:
            flat = self.store.write_group([i for intents in opsets for i in intents], careful=False)
            self._metrics.wrote(time.perf_counter() - started)
        except Exception as error:
            if isinstance(error, UnsureCommit):  # each write's own share of the group's results
                return [UnsureCommit(error.transaction_id, part, error) for part in _split(opsets, error.results)]
            if is_outage(error):
                return [error] * len(messages)  # one at a time would only fail the same way
            if len(messages) > 1:
                log.info("group of %d writes failed (%r); redoing them one by one", len(messages), error)
            # Each write again, carefully: a duplicate fill is then answered False, and
            # any other failure is that write's own.
            results: list[Any] = []
            away: BaseException | None = None
            for intents in opsets:
                if away is not None:
                    # Once the database is away (or a COMMIT unanswered), the rest wait:
                    # written now, on another connection, they could overtake it.
                    results.append(away)
                    continue
                try:
                    results.append(self.store.write_group(intents, careful=True))
                except Exception as own:
                    results.append(own)
                    if is_outage(own):
                        away = own.cause if isinstance(own, UnsureCommit) else own
            return results
        return _split(opsets, flat)

    @handles(ReserveIds)
    def _reserve(self, message: ReserveIds) -> None:
        try:
            ids = self.store.reserve_ids(message.count)
        except Exception as error:  # the database is away: the supervisor asks again later
            log.error("could not reserve order ids: %r", error)
            tell_quietly(message.reply_to, IdsReserved((), repr(error)))
            return
        tell_quietly(message.reply_to, IdsReserved(tuple(ids)))

    # The asked writes below are committed alone, after the group before them, and
    # answered only then: their askers act on what they know was stored (the reconciler
    # corrects, the supervisor changes the trading state, the validator counts the day).

    def _write_now(self, write: Callable[[], T]) -> T:
        if self._down is not None:
            raise OMSUnavailable(f"not recorded: the database is unavailable ({self._down})")
        try:
            return write()
        except UnsureCommit as unsure:
            settled = self._settle_asked(unsure)
            if isinstance(settled, BaseException):
                if is_outage(settled):
                    self._going_down(settled)
                    raise OMSUnavailable(f"not recorded: the database is unavailable ({self._down})") from unsure
                raise settled from unsure
            return None  # written (these writes answer nothing but that)
        except Exception as error:
            if is_outage(error):
                self._going_down(error)
                raise OMSUnavailable(f"not recorded: the database is unavailable ({self._down})") from error
            raise

    @handles(RecordFinding)
    def _finding(self, message: RecordFinding) -> None:
        fields = {name: getattr(message, name) for name in RecordFinding.__slots__ if name not in ("at", "issue_type")}
        self._write_now(lambda: self.store.record_finding(message.at, message.issue_type, **fields))

    @handles(RecordTradingState)
    def _trading_state(self, message: RecordTradingState) -> None:
        self._write_now(lambda: self.store.record_trading_state(message.state, message.reason, message.at))

    @handles(RecordDayBaseline)
    def _day_baseline(self, message: RecordDayBaseline) -> tuple:
        return self._write_now(lambda: self.store.record_day_baseline(
            message.day, message.realized, message.unrealized, message.charges, message.at,
        ))

    @handles(Load)
    def _load(self, message: Load):
        if message.what not in READS:
            raise ValueError(f"journal has no read named {message.what!r}")
        return getattr(self.store, message.what)(*message.args)


def _split(opsets: list[list[Any]], flat: list[Any]) -> list[list[Any]]:
    """A group's flat results, cut back into each write's own."""
    results, at = [], 0
    for ops in opsets:
        results.append(flat[at : at + len(ops)])
        at += len(ops)
    return results


# Broker news waits out a database outage (the journal holds it); an intent is answered
# at once, committed or refused.
NEWS_TIMEOUT = 600.0
INTENT_TIMEOUT = 60.0
# An intent whose unsure COMMIT is confirmed written later than this is not acted on
# (RecordedLate): a new order a strategy placed seconds ago is stale, and its placer may
# have stopped waiting.
STALE_INTENT_SECONDS = 5.0


def write(journal: pykka.ActorRef, message: Any, timeout: float = NEWS_TIMEOUT) -> Any:
    """Tell ``journal`` a write with a reply future and wait for its commit: the write
    joins a group commit with whatever else is queued. Raises what the write raised
    (OMSUnavailable for an intent while the database is away)."""
    reply: pykka.Future = pykka.ThreadingFuture()
    journal.tell(replace(message, reply=reply))
    return reply.get(timeout=timeout)
