"""OrderTracker: one actor per order, from PENDING to its end."""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping

import pykka

from actors.base import PooledOMSActor, answer, dispatch, fail, handles, tell_quietly
from actors.messages import (
    ApplyFill,
    BrokerAccepted,
    BrokerCancelAccepted,
    BrokerCancelRefused,
    BrokerModifyAccepted,
    BrokerModifyRefused,
    BrokerRefused,
    BrokerUnreachable,
    BrokerUnsure,
    Cancel,
    CancelAtBroker,
    FindByTag,
    Forget,
    Load,
    LookupResult,
    Modify,
    ModifyAtBroker,
    ModifyNotSent,
    OrderChanged,
    OrderClosed,
    OrderFilled,
    OrderWorking,
    PlaceAtBroker,
    RecordFill,
    RecordSubmission,
    RecordTransition,
    Recover,
    Recovered,
    Submit,
    TrackerFinished,
)
from actors.runtime import ActorPool, Await
from domain.broker import BrokerOrderRequest, BrokerOrderUpdate, BrokerTrade
from domain.charges import charges_for_fill
from domain.enums import OrderStatus
from domain.errors import (
    IllegalTransition,
    OMSUnavailable,
    OrderNotCancellable,
    OrderNotModifiable,
    OrderRejected,
    OrderSubmissionFailed,
    RecordedLate,
)
from domain.fill import Fill
from domain.kite_status import map_kite_status
from domain.order import Modification, Order, OrderEvent, annotate, apply_fill, check_modification, created, transition
from domain.results import OrderResult
from observability.logs import order_context
from observability.metrics import OMSMetrics

S = OrderStatus
log = logging.getLogger("oms.tracker")

# Kite refuses the 26th modification of an order (kite_modifications_per_order).
MAX_MODIFICATIONS = 25


def broker_request(order: Order) -> BrokerOrderRequest:
    return BrokerOrderRequest(
        tag=order.tag,
        exchange=order.exchange,
        symbol=order.symbol,
        side=order.side,
        quantity=order.quantity,
        order_type=order.order_type,
        product=order.product,
        validity=order.validity,
        price=order.price,
        trigger_price=order.trigger_price,
        variety=order.variety,
    )


@dispatch
class OrderTracker(PooledOMSActor):
    """Owns one order's state and applies its state machine; the only writer of it.

    Takes Submit (new order: record PENDING, then send), Recover (order read back at
    start-up: look it up by tag, never re-send), Cancel, Modify, ModifyNotSent (the
    supervisor's refusal of a modification, for the audit trail), the gateway's outcomes
    (BrokerAccepted/Refused/Unreachable/Unsure, Cancel*/Modify*, LookupResult) and the
    broker's BrokerOrderUpdate and BrokerTrade. Every change is committed (journal) before
    anyone hears of it; fills go to the PositionKeeper before the order shows them.
    Stops itself once the order is terminal and every fill the broker reported is in.

    It runs on a pool of threads shared by every tracker (``actors.runtime``) and never
    blocks one: a handler that needs a commit (or the keeper's word) yields an Await and
    goes on when the answer arrives as a message; the tracker's other messages wait, in
    order, until that handler is done, so each message is still handled to its end before
    the next begins.
    """

    # One tracker per live order: its own fields in slots, out of the instance dict,
    # which then stays small enough to share its keys with every other tracker's
    # (a dict past 30 keys does not; 1.5 KB more per live order, measured).
    __slots__ = (
        "order", "order_id", "supervisor", "_journal", "_gateway", "_keeper", "_validator", "_clock",
        "_max_modifications", "_place_reply", "_cancel_waiters", "_cancel_requested", "_cancel_in_flight",
        "_modifying", "_finished", "_trade_ids", "_broker_filled", "_recovering", "_unfitted", "_held", "_unsure_modify", "_last_update",
        "_metrics", "_placed_at",
    )

    def __init__(
        self,
        order: Order,
        *,
        journal: pykka.ActorRef,
        gateway: pykka.ActorRef,
        keeper: pykka.ActorRef,
        validator: pykka.ActorRef,
        supervisor: pykka.ActorRef,
        clock: Callable[[], datetime],
        applied_trade_ids: Iterable[str] = (),
        unanswered_modification: Mapping[str, str] | None = None,
        max_modifications: int = MAX_MODIFICATIONS,
        pool: ActorPool | None = None,
        metrics: OMSMetrics | None = None,
    ) -> None:
        super().__init__(pool=pool)
        self._metrics = metrics or OMSMetrics()
        self._max_modifications = max_modifications
        self.order: Order = order
        self.order_id = order.order_id
        self.supervisor = supervisor
        self._journal = journal
        self._gateway = gateway
        self._keeper = keeper
        self._validator = validator
        self._clock = clock
        self._place_reply: pykka.Future | None = None
        # Empty until used, and then small: a tracker per live order makes every byte count.
        self._cancel_waiters: tuple[pykka.Future, ...] = ()
        self._cancel_requested = False
        self._cancel_in_flight = False
        self._modifying: tuple[object, pykka.Future] | None = None
        self._finished = False
        self._trade_ids: frozenset[str] | set[str] = frozenset(applied_trade_ids)
        self._broker_filled = order.filled_quantity
        # Set on the trackers resuming an order at start-up only: the supervisor hears
        # Recovered once the look-up is settled.
        self._recovering = False
        # Fills that did not fit the order's quantity, until the broker's update says it
        # grew; and a modification whose answer was lost (Kite may have carried it out).
        self._unfitted: tuple[BrokerTrade, ...] = ()  # fills past the order's quantity
        self._held: tuple[BrokerTrade, ...] = ()  # fills completing it while a larger quantity is unanswered
        self._last_update: BrokerOrderUpdate | None = None  # the broker's latest word on the order
        # A modification asked for whose answer was lost (before a restart too: its
        # request is in the audit trail): the broker may have carried it out.
        self._unsure_modify: Modification | None = Modification.from_payload(unanswered_modification) if unanswered_modification else None
        # When the supervisor took the PlaceOrder (perf_counter), until the broker answers it.
        self._placed_at = 0.0

    def _run_slice(self, budget: int) -> None:
        # Every line logged while this tracker works names its order and strategy.
        token = order_context.set((self.order_id, self.order.strategy_id))
        try:
            super()._run_slice(budget)
        finally:
            order_context.reset(token)

    def on_stop(self) -> None:
        """Stopped with the OMS before the order ended: nobody is left waiting. The order
        is in the database and resumes, by tag, when the OMS starts again."""
        if self._finished:
            return
        if self._place_reply is not None:
            answer(self._place_reply, self._result("the OMS stopped before the broker answered; settled by tag on restart"))
        for reply in self._cancel_waiters:
            fail(reply, OrderNotCancellable(self.order_id, "the OMS is stopping"))
        if self._modifying is not None:
            fail(self._modifying[1], OrderNotModifiable(self.order_id, "the OMS is stopping"))

    def undelivered(self, message) -> None:
        """Stopped before handling ``message`` (or before finishing it): whoever waits on
        it hears why."""
        if isinstance(message, Submit):
            fail(message.reply, OrderSubmissionFailed(f"order {self.order_id} not sent: the OMS stopped first"))
        elif isinstance(message, Cancel):
            fail(message.reply, OrderNotCancellable(self.order_id, f"its tracker stopped (it is {self.order.status.value})"))
        elif isinstance(message, Modify):
            fail(message.reply, OrderNotModifiable(self.order_id, f"its tracker stopped (it is {self.order.status.value})"))

    # --- committing and telling -------------------------------------------------

    def _commit(self, change: tuple[Order, OrderEvent], intent: bool = False):
        """Commit, then tell. News waits out a database outage (the journal holds it);
        an ``intent`` (about to be asked of the broker) raises OMSUnavailable instead,
        and is then not sent."""
        order, event = change
        self._broker_answered_place(event)
        yield Await(self._journal, RecordTransition(order, event, intent=intent))
        self.order = order
        self._metrics.order_moved(event.from_status, event.to_status)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("order %s: %s -> %s %s", self.order_id, event.from_status, event.to_status.value, dict(event.payload))
        self._publish()

    def _publish(self) -> None:
        tell_quietly(self.supervisor, OrderChanged(self.order))
        tell_quietly(self._validator, OrderWorking(self.order))

    def _result(self, message: str) -> OrderResult:
        return OrderResult(self.order_id, self.order.broker_order_id, self.order.status, message)

    # --- a new order --------------------------------------------------------------

    @handles(Submit)
    def _submit(self, message: Submit):
        pending, first = created(self.order)
        submitted = transition(pending, S.SUBMITTED, self._clock())
        try:
            yield Await(self._journal, RecordSubmission(pending, first, *submitted))
        except RecordedLate as late:
            # Recorded, but only confirmed once the database came back: whoever placed
            # it has long stopped waiting, and the market has moved. Not sent; it ends
            # FAILED, and the record says so.
            log.error("order %s not sent: %s", self.order_id, late, extra={"order_id": self.order_id})
            self.order = submitted[0]
            self._place_reply = message.reply
            yield from self._end(S.FAILED, f"not sent: {late}")
            self._metrics.not_sent()
            self._maybe_finish()
            return
        except Exception as error:
            # Write-ahead: an order that is not durably recorded is never sent.
            log.error("order %s not recorded, not sent: %r", self.order_id, error)
            # Nothing durable exists to contradict it: the views show it FAILED, and a
            # PENDING row that did land would be settled FAILED by a lookup on restart.
            why = f"not recorded, not sent: {error}"
            self.order = replace(self.order, status=S.FAILED, status_message=why, error_message=why)
            tell_quietly(self.supervisor, OrderChanged(self.order))
            if isinstance(error, OMSUnavailable):
                refusal: Exception = OMSUnavailable(f"order {self.order_id} {error}")
            else:
                refusal = OrderSubmissionFailed(f"order {self.order_id} could not be recorded and was not sent: {error}")
            fail(message.reply, refusal)
            self._metrics.not_sent()
            self._finish()
            return
        self.order = submitted[0]
        self._metrics.order_moved(None, S.PENDING)
        self._metrics.order_moved(S.PENDING, S.SUBMITTED)
        log.debug("order %s: recorded and sent to the broker (%s %s %s)", self.order_id,
                  self.order.side.value, self.order.quantity, self.order.symbol)
        self._place_reply = message.reply
        self._placed_at = message.placed_at
        self._publish()
        self._gateway.tell(PlaceAtBroker(self.order_id, broker_request(self.order), self.actor_ref))

    def _broker_answered_place(self, event: OrderEvent | None = None) -> None:
        """The latency metric: from PlaceOrder to the broker's answer, once per order.
        Given the ``event`` about to be committed, only if it takes the order out of
        SUBMITTED: news that outran the answer is the broker's first word too. Timed
        before the commit, so a placement is never counted without its latency."""
        if event is not None and (event.from_status is not S.SUBMITTED or event.to_status is S.SUBMITTED):
            return
        if self._placed_at:
            self._metrics.placed_in(time.perf_counter() - self._placed_at)
            self._placed_at = 0.0

    @handles(Recover)
    def _recover(self, message: Recover) -> None:
        self._recovering = True
        self._gateway.tell(FindByTag(self.order_id, self.order.tag, self.actor_ref))

    # --- the place outcome ------------------------------------------------------------

    def _learn_broker_id(self, broker_order_id: str, why: str):
        if self.order.broker_order_id == broker_order_id:
            return
        if self.order.status is S.SUBMITTED:
            yield from self._commit(transition(self.order, S.OPEN, self._clock(), {"broker_order_id": broker_order_id, "by": why}, broker_order_id=broker_order_id))
        else:
            yield from self._commit(annotate(self.order, self._clock(), {"broker_order_id": broker_order_id, "by": why}, broker_order_id=broker_order_id))
        if self._cancel_requested and not self.order.is_terminal:
            yield from self._send_cancel()

    @handles(BrokerAccepted)
    def _accepted(self, message: BrokerAccepted):
        self._broker_answered_place()
        if not self.order.is_terminal or self.order.broker_order_id is None:
            yield from self._learn_broker_id(message.broker_order_id, "ack")
        if self._place_reply is not None:
            answer(self._place_reply, self._result("accepted by the broker"))
            self._place_reply = None
        self._maybe_finish()

    def _end(self, status: OrderStatus, reason: str, broker_order_id: str | None = None):
        if self.order.is_terminal:
            return
        changes = {"status_message": reason}
        if broker_order_id and not self.order.broker_order_id:
            changes["broker_order_id"] = broker_order_id
        yield from self._commit(transition(self.order, status, self._clock(), {"reason": reason}, **changes))

    @handles(BrokerRefused)
    def _refused(self, message: BrokerRefused):
        self._broker_answered_place()
        yield from self._end(S.REJECTED, message.reason, message.broker_order_id)
        self._maybe_finish()

    @handles(BrokerUnreachable)
    def _unreachable(self, message: BrokerUnreachable):
        self._broker_answered_place()
        yield from self._end(S.FAILED, f"broker unreachable: {message.reason}")
        self._maybe_finish()

    @handles(BrokerUnsure)
    def _unsure(self, message: BrokerUnsure):
        # A timeout is not a rejection: the order stays SUBMITTED until the broker,
        # asked by our tag, says whether it has it.
        self._broker_answered_place()
        yield from self._commit(annotate(self.order, self._clock(), {"outcome_unknown": message.reason}, status_message=f"outcome unknown: {message.reason}"))
        if self._place_reply is not None:
            answer(self._place_reply, self._result(f"outcome unknown ({message.reason}); looking the order up at the broker by its tag"))
            self._place_reply = None
        self._gateway.tell(FindByTag(self.order_id, self.order.tag, self.actor_ref))

    @handles(LookupResult)
    def _looked_up(self, message: LookupResult):
        yield from self._settle_by_lookup(message)
        if self._recovering:
            self._recovering = False
            tell_quietly(self.supervisor, Recovered(self.order_id))

    def _settle_by_lookup(self, message: LookupResult):
        found = message.found
        if found is None:
            if self.order.broker_order_id is None and not self.order.is_terminal and message.authoritative:
                yield from self._end(S.FAILED, f"the broker has no order tagged {self.order.tag}")
            elif self.order.broker_order_id is None:
                # Never FAILED on one miss at a broker whose reads lag: the order stays
                # SUBMITTED (unsettled) until the broker shows it or reconciliation rules.
                log.warning("order %s not (yet) found at the broker by tag; left SUBMITTED", self.order_id)
            else:
                log.warning("broker no longer knows order %s (%s)", self.order_id, self.order.broker_order_id)
            self._maybe_finish()
            return
        if self.order.broker_order_id is None and not self.order.is_terminal:
            yield from self._learn_broker_id(found.broker_order_id, "lookup")
        for trade in message.trades:
            yield from self._trade(trade)
        yield from self._update(found)

    # --- what the broker reports ------------------------------------------------------

    @handles(BrokerTrade)
    def _trade(self, trade: BrokerTrade):
        if trade.trade_id in self._trade_ids:
            return
        if self.order.broker_order_id is None and not self.order.is_terminal:
            # A fill that reached us by our tag names the broker's order: an unsure
            # placement is settled by it as much as by a look-up (which may come later).
            yield from self._learn_broker_id(trade.broker_order_id, "trade")
        order = self.order
        asked = self._unsure_modify
        if asked is not None and self._done_at_our_quantity(self._last_update, sum(t.quantity for t in self._held) + trade.quantity):
            # Kite already said COMPLETE at the quantity we have (its status often comes
            # before its trades): the larger quantity was never taken.
            log.info("order %s: the broker filled it at %d; the unanswered modification was not carried out", self.order_id, order.quantity)
            self._unsure_modify = asked = None
        if (asked is not None and asked.quantity is not None and asked.quantity > order.quantity
                and order.filled_quantity + trade.quantity >= order.quantity and order.status is S.OPEN):
            # It would fill the order at its old quantity, but a larger one was asked for
            # and the answer was lost: FILLED now could be wrong for good (a terminal
            # order takes no more fills). Kept until the broker's update says which.
            log.warning("fill %s would complete order %s at %d, but %d was asked for (unanswered); kept until the broker's update",
                        trade.trade_id, self.order_id, order.quantity, asked.quantity)
            self._held = (*self._held, trade)
            return
        charges = charges_for_fill(
            order.exchange, order.symbol, order.product, order.side, trade.quantity, trade.price,
            prior_filled_value=order.filled_value,
        ).rounded()
        try:
            filled, event = apply_fill(order, trade.quantity, trade.price, trade.at, trade.trade_id)
        except IllegalTransition as error:
            # More filled than the order holds: Kite carried out a modification the OMS
            # never heard of (its answer was lost). Kept until the broker's next update
            # says the order's quantity, then applied.
            log.warning("fill %s does not fit order %s (%s); kept until the broker's update", trade.trade_id, self.order_id, error)
            self._unfitted = (*self._unfitted, trade)
            return
        fill = Fill(
            trade.trade_id, self.order_id, trade.broker_order_id, order.exchange, order.symbol,
            order.product, order.side, trade.quantity, trade.price, trade.at, charges,
            stop_loss=order.stop_loss, take_profit=order.take_profit,
        )
        self._broker_answered_place(event)
        inserted = yield Await(self._journal, RecordFill(fill, filled, event))
        if isinstance(self._trade_ids, frozenset):
            self._trade_ids = set(self._trade_ids)
        self._trade_ids.add(trade.trade_id)
        if not inserted:
            # The database already had this trade, so it knows this order better than
            # memory does: take its word rather than drift from it.
            log.warning("fill %s of %s was already recorded; reloading the order", trade.trade_id, self.order_id)
            stored = yield Await(self._journal, Load("load_order", (self.order_id,)), reply_field=None)
            self.order = stored or self.order
            self._publish()
            return
        self.order = filled
        self._metrics.filled()
        log.debug("order %s: fill %s of %s at %s", self.order_id, trade.trade_id, trade.quantity, trade.price)
        self._metrics.order_moved(event.from_status, event.to_status)
        # The position moves before anyone sees the order filled, so a strategy that
        # saw FILLED and asks for positions or places the exit sees the fill there too
        # (the keeper's write waits out an outage too).
        moved = yield Await(self._keeper, ApplyFill(fill))
        self._broker_filled = max(self._broker_filled, filled.filled_quantity)
        self._publish()
        tell_quietly(self.supervisor, OrderFilled(filled, fill, moved))
        self._maybe_finish()

    @handles(BrokerOrderUpdate)
    def _update(self, update: BrokerOrderUpdate):
        try:
            status = map_kite_status(update.status)
        except ValueError:
            log.warning("order %s: ignoring update with unknown status %r", self.order_id, update.status)
            return
        self._broker_filled = max(self._broker_filled, update.filled_quantity)
        if update.broker_order_id == self.order.broker_order_id:
            self._last_update = update
        yield from self._take_broker_terms(update)
        if status is S.REJECTED:
            yield from self._end(S.REJECTED, update.message or "rejected by the broker", update.broker_order_id)
        elif status is S.CANCELLED:
            yield from self._end(S.CANCELLED, update.message or "cancelled", update.broker_order_id)
        elif self.order.broker_order_id is None and status is not S.SUBMITTED and not self.order.is_terminal:
            yield from self._learn_broker_id(update.broker_order_id, "update")
        # OPEN needs nothing more (an ack by update was handled above); FILLED is
        # settled by the trades themselves, never by the status alone.
        self._maybe_finish()

    def _done_at_our_quantity(self, update: BrokerOrderUpdate | None, held: int) -> bool:
        """Whether ``update`` is Kite's COMPLETE at the quantity we have, covering the
        fills we record plus ``held``: done as it was, so no larger quantity was taken."""
        order = self.order
        return (update is not None and update.broker_order_id == order.broker_order_id
                and update.quantity == order.quantity and update.filled_quantity == update.quantity
                and update.filled_quantity >= order.filled_quantity + held)

    def _take_broker_terms(self, update: BrokerOrderUpdate):
        """Terms the broker has that the OMS did not hear of: a modification whose answer
        was lost, once the broker's update shows exactly what was asked; or a quantity
        grown past ours, proven by fills that did not fit. Recorded as a modification;
        fills kept for want of room are applied then. (Updates can come late and out of
        order, so the broker's terms are never taken on their own word alone.)"""
        order = self.order
        if self._modifying is not None or order.status is not S.OPEN or update.broker_order_id != order.broker_order_id:
            return
        changes: dict[str, Any] = {}
        asked = self._unsure_modify
        if asked is not None and all(
            wanted is None or wanted == seen
            for wanted, seen in ((asked.quantity, update.quantity), (asked.price, update.price),
                                 (asked.trigger_price, update.trigger_price))
        ):
            changes = asked.changes()
            self._unsure_modify = None
        elif self._unfitted and update.quantity > order.quantity:
            changes = {"quantity": update.quantity}
        elif asked is not None and self._held and self._done_at_our_quantity(update, sum(t.quantity for t in self._held)):
            # Done at the quantity it had (Kite's last word, and newer than every fill we
            # hold): the broker never carried the modification out.
            log.info("order %s: the broker filled it at %d; the unanswered modification was not carried out", self.order_id, order.quantity)
            self._unsure_modify = None
        elif (update.quantity != order.quantity and update.filled_quantity == update.quantity
              and order.filled_quantity <= update.quantity and map_kite_status(update.status) is S.FILLED):
            # COMPLETE is Kite's last word on an order, never followed by another: it was
            # done at Kite's quantity. A modification whose answer was lost, and which a
            # restart then forgot was ever asked, leaves just this to tell.
            changes = {"quantity": update.quantity}
        if changes:
            log.warning("order %s: the broker has %s; taken as a modification the OMS did not hear of", self.order_id, changes)
            quantity = changes.get("quantity", order.quantity)
            done = order.filled_quantity >= quantity  # its fills are all in already: FILLED now
            yield from self._commit(transition(
                order, S.FILLED if done else S.OPEN, self._clock(),
                {"modified_at_broker": {k: str(v) for k, v in changes.items()}},
                modification_count=order.modification_count + 1, **changes,
            ))
            tell_quietly(self._validator, OrderWorking(self.order))
        kept, self._unfitted, self._held = (*self._held, *self._unfitted), (), ()
        for trade in kept:
            yield from self._trade(trade)

    # --- cancel -----------------------------------------------------------------------

    @handles(Cancel)
    def _cancel(self, message: Cancel):
        if self.order.is_terminal:
            fail(message.reply, OrderNotCancellable(self.order_id, f"it is already {self.order.status.value}"))
            return
        self._cancel_waiters = (*self._cancel_waiters, message.reply)
        if self._cancel_in_flight:
            return
        if self.order.broker_order_id is None:
            self._cancel_requested = True  # sent as soon as the broker acknowledges
            return
        yield from self._send_cancel()

    def _send_cancel(self):
        self._cancel_requested = False
        try:
            yield from self._commit(annotate(self.order, self._clock(), {"cancel_requested": True}), intent=True)
        except Exception as error:  # not recorded, so not sent
            log.warning("cancel of %s not sent: %r", self.order_id, error)
            waiters, self._cancel_waiters = self._cancel_waiters, ()
            for reply in waiters:
                fail(reply, error if isinstance(error, OMSUnavailable) else OrderNotCancellable(self.order_id, f"not recorded: {error}"))
            return
        self._cancel_in_flight = True
        self._gateway.tell(CancelAtBroker(self.order_id, self.order.broker_order_id, self.actor_ref, self.order.variety))

    @handles(BrokerCancelAccepted)
    def _cancel_accepted(self, message: BrokerCancelAccepted) -> None:
        """The broker took the request: the caller hears True now, and the CANCELLED
        update (or a fill that beat it) settles the order."""
        waiters, self._cancel_waiters = self._cancel_waiters, ()
        for reply in waiters:
            answer(reply, True)

    @handles(BrokerCancelRefused)
    def _cancel_refused(self, message: BrokerCancelRefused) -> None:
        self._cancel_in_flight = False
        waiters, self._cancel_waiters = self._cancel_waiters, ()
        for reply in waiters:
            fail(reply, OrderNotCancellable(self.order_id, message.reason))
        self._maybe_finish()

    # --- modify -----------------------------------------------------------------------

    @handles(Modify)
    def _modify(self, message: Modify):
        order = self.order
        problem = None
        if order.status is not S.OPEN or order.broker_order_id is None:
            problem = f"it is {order.status.value}" + ("" if order.broker_order_id else " and not yet acknowledged")
        elif self._modifying is not None:
            problem = "another modification is in flight"
        elif self._held:
            problem = "its quantity is unsettled (an earlier modification went unanswered); the broker's next update settles it"
        elif self._cancel_in_flight or self._cancel_requested:
            problem = "a cancellation is in flight"
        elif order.modification_count >= self._max_modifications:
            problem = f"it has been modified {order.modification_count} times, the broker's limit; cancel and place anew"
        if problem is None:
            try:
                check_modification(order, message.change)
            except ValueError as error:
                problem = str(error)
        if problem is not None:
            fail(message.reply, OrderNotModifiable(self.order_id, problem))
            tell_quietly(self._validator, OrderWorking(self.order))  # undo the tentative reservation
            yield from self._record_not_sent(message.change, problem, "order_state")
            return
        try:  # the intent is recorded before the broker hears it
            yield from self._commit(annotate(order, self._clock(), {"modify_requested": message.change.as_payload()}), intent=True)
        except Exception as error:
            log.warning("modification of %s not sent: %r", self.order_id, error)
            fail(message.reply, error if isinstance(error, OMSUnavailable) else OrderNotModifiable(self.order_id, f"not recorded: {error}"))
            tell_quietly(self._validator, OrderWorking(self.order))  # undo the tentative reservation
            return
        self._modifying = (message.change, message.reply)
        self._gateway.tell(ModifyAtBroker(self.order_id, order.broker_order_id, message.change, self.actor_ref, order.variety))

    @handles(BrokerModifyAccepted)
    def _modify_accepted(self, message: BrokerModifyAccepted):
        if self._modifying is None:
            return
        change, reply = self._modifying
        self._modifying = None
        if self.order.status is not S.OPEN:
            fail(reply, OrderNotModifiable(self.order_id, f"it became {self.order.status.value} first"))
            return
        yield from self._commit(transition(
            self.order, S.OPEN, self._clock(), {"modified": change.as_payload()},
            modification_count=self.order.modification_count + 1, **change.changes(),
        ))
        if self._unsure_modify is not None:  # what this one set, the broker has now for certain
            left = {k: v for k, v in self._unsure_modify.changes().items() if k not in change.changes()}
            self._unsure_modify = Modification(**left) if left else None
        answer(reply, True)
        self._maybe_finish()

    @handles(BrokerModifyRefused)
    def _modify_refused(self, message: BrokerModifyRefused):
        tell_quietly(self._validator, OrderWorking(self.order))
        if self._modifying is not None:
            change, reply = self._modifying
            self._modifying = None
            if message.unsure:
                self._unsure_modify = change
            fail(reply, OrderNotModifiable(self.order_id, message.reason))
            # The trail answers its modify_requested: refused (a restart then knows it was
            # not carried out), or unanswered (the broker's next update settles it).
            outcome = "modify_unanswered" if message.unsure else "modify_refused"
            yield from self._commit(annotate(self.order, self._clock(), {outcome: message.reason}))
        self._maybe_finish()

    @handles(ModifyNotSent)
    def _modify_not_sent(self, message: ModifyNotSent):
        yield from self._record_not_sent(message.change, message.reason, message.check)

    def _record_not_sent(self, change: Modification, reason: str, check: str):
        """A modification refused before the broker, in the audit trail (its caller has
        heard already; the order is unchanged)."""
        payload = {"modify_not_sent": {"requested": change.as_payload(), "reason": reason, "check": check}}
        yield from self._commit(annotate(self.order, self._clock(), payload))

    # --- the end ----------------------------------------------------------------------

    def _maybe_finish(self) -> None:
        order = self.order
        if self._finished or not order.is_terminal or order.filled_quantity < self._broker_filled:
            return  # still working, or the broker reported fills whose trades are not in yet
        if self._place_reply is not None:
            if order.status is S.REJECTED:
                fail(self._place_reply, OrderRejected(order.status_message or "rejected by the broker", "broker", self.order_id))
            elif order.status is S.FAILED:
                fail(self._place_reply, OrderSubmissionFailed(f"order {self.order_id} failed: {order.status_message}"))
            else:
                answer(self._place_reply, self._result(f"order {order.status.value.lower()}"))
            self._place_reply = None
        waiters, self._cancel_waiters = self._cancel_waiters, ()
        for reply in waiters:
            if order.status is S.CANCELLED:
                answer(reply, True)  # cancelled before the request reached the broker
            else:
                fail(reply, OrderNotCancellable(self.order_id, f"it ended {order.status.value} first"))
        if self._modifying is not None:
            fail(self._modifying[1], OrderNotModifiable(self.order_id, f"it became {order.status.value}"))
            self._modifying = None
        self._finish()

    def _finish(self) -> None:
        self._finished = True
        tell_quietly(self._validator, OrderClosed(self.order_id))
        tell_quietly(self._gateway, Forget(self.order_id))
        tell_quietly(self.supervisor, TrackerFinished(self.order_id))
        self.stop()
