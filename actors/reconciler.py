"""Reconciler: the OMS's positions and orders compared with the broker's, at start-up,
every ``interval`` seconds and on request; the broker's word wins."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime

import pykka

from actors.base import NextTick, OMSActor, answer, dispatch, fail, handles
from actors.messages import (
    BrokerBook,
    CorrectPosition,
    FetchMissedFills,
    GetActiveOrders,
    GetBrokerBook,
    GetPositions,
    Load,
    Reconcile,
    ReconcileTick,
    RecordFinding,
    ResumeOrder,
    SettleByBook,
)
from domain.broker import BrokerOrderUpdate, BrokerPosition
from domain.enums import OrderStatus
from domain.order_tag import order_id_in_tag
from domain.position import Position, PositionKey
from domain.reconciliation import (
    Difference,
    IssueType,
    ReconciliationReport,
    StalePosition,
    carried_delivery,
    differences,
    report,
)
from observability.metrics import OMSMetrics

log = logging.getLogger("oms.reconciler")

# Reads of the broker wait their turn behind its rate limits; a pass never waits longer.
ASK_TIMEOUT = 60.0
# How long one of our orders may differ from the broker's copy (fills the broker has and
# we have not) before it is a missed fill rather than an update still on its way.
DRIFT_GRACE_SECONDS = 30.0


@dispatch
class Reconciler(OMSActor):
    """Owns the schedule (a timer that tells it ReconcileTick every ``interval``
    seconds; 0: none), the differences in our orders' fills seen but not yet overdue
    (broker order id -> when first seen) and the broker orders already classified
    (reported as carrying no tag of ours, or found ours under a tag of an older form).

    Takes Reconcile (answered through its reply with a ReconciliationReport) and
    ReconcileTick. Asks the gateway for the broker's book (GetBrokerBook), the position
    keeper for ours (GetPositions) and the journal for our orders; corrections go to the
    keeper (CorrectPosition, which stores each with its reconciliation_log row), other
    findings to the journal (RecordFinding).

    A difference is corrected only when it holds through ``settle`` seconds with both
    sides unchanged and none of our orders in that instrument has fills on their way
    (the broker has more than we recorded, for less than ``drift_grace`` seconds). The
    rest is left for the next pass and reported as ``deferred``: reconciliation never
    fights a fill in flight.
    """

    def __init__(
        self,
        *,
        gateway: pykka.ActorRef,
        keeper: pykka.ActorRef,
        journal: pykka.ActorRef,
        clock: Callable[[], datetime],
        tag_prefix: str,
        interval: float,
        settle: float,
        drift_grace: float = DRIFT_GRACE_SECONDS,
        supervisor: pykka.ActorRef | None = None,
        metrics: OMSMetrics | None = None,
    ) -> None:
        super().__init__()
        self._metrics = metrics or OMSMetrics()
        self.supervisor = supervisor
        self._gateway = gateway
        self._keeper = keeper
        self._journal = journal
        self._clock = clock
        self._prefix = tag_prefix
        self._settle = settle
        self._drift_grace = drift_grace
        self._drifting: dict[str, tuple[int, float]] = {}  # broker order id -> (its fills, first seen)
        self._drift_reported: set[tuple[str, int]] = set()
        self._classified: set[str] = set()
        self._tick = NextTick(interval, "oms-reconcile-timer")
        self._stopping = threading.Event()  # cuts short a pass's settling wait

    def on_start(self) -> None:
        self._classified = set(self._journal.ask(Load("untagged_broker_orders")))
        self._schedule()

    def on_stop(self) -> None:
        self._stopping.set()
        self._tick.stop()

    def _schedule(self) -> None:
        self._tick.after(self.actor_ref, ReconcileTick())

    # --- messages -----------------------------------------------------------------------

    @handles(Reconcile)
    def _on_request(self, message: Reconcile) -> None:
        try:
            result = self._pass()
        except Exception as error:
            self._metrics.reconciliation_failed()
            log.error("reconciliation could not run: %r", error)
            if message.reply is not None:
                fail(message.reply, error)
            return
        if message.reply is not None:
            answer(message.reply, result)

    @handles(ReconcileTick)
    def _on_tick(self, message: ReconcileTick) -> None:
        try:
            self._pass()
        except Exception as error:  # the broker or the database away: the next tick tries again
            self._metrics.reconciliation_failed()
            log.error("periodic reconciliation could not run: %r", error)
        finally:
            self._schedule()

    # --- one pass -----------------------------------------------------------------------

    def _pass(self) -> ReconciliationReport:
        now = self._clock()
        ours, theirs, book = self._read(now)
        candidates = differences(ours, theirs)
        untagged = self._report_untagged(book.orders, now)
        self._settle_unsure(book.orders, now)
        confirmed: list[Difference] = []
        deferred: list[Difference] = []
        if candidates:
            if self._settle > 0 and self._stopping.wait(self._settle):
                raise RuntimeError("the OMS is stopping")
            now = self._clock()
            ours, theirs, book = self._read(now)
            first = {d.key: d for d in candidates}
            arriving = self._arriving(book.orders, {d.key for d in candidates}, now)
            for difference in differences(ours, theirs):
                if first.get(difference.key) != difference or difference.key in arriving:
                    deferred.append(difference)  # moved, or fills on their way: next pass
                    continue
                try:
                    self._keeper.ask(CorrectPosition(difference, now), timeout=ASK_TIMEOUT)
                except StalePosition:
                    deferred.append(difference)
                    continue
                confirmed.append(difference)
        result = report(now, confirmed, deferred, untagged)
        self._log(result)
        self._metrics.reconciled(
            result.all_clear, len(confirmed),
            [d.issue_type.value for d in confirmed] + [IssueType.UNTAGGED_ORDER.value] * len(untagged),
        )
        return result

    def _read(self, now: datetime) -> tuple[dict[PositionKey, Position], dict[PositionKey, BrokerPosition], BrokerBook]:
        """Ours first, then the broker's: a fill that lands in between shows at the
        broker (and in its orders) before it reaches us, never the other way round."""
        positions = self._keeper.ask(GetPositions(), timeout=ASK_TIMEOUT)
        book: BrokerBook = self._gateway.ask(GetBrokerBook(), timeout=ASK_TIMEOUT)
        ours = {p.key: p for p in positions}
        theirs = {p.key: p for p in book.positions}
        if book.delivery_moves_to_holdings:
            # A delivery position we hold from an earlier day is in the holdings, and
            # today's trades in it show in the positions as a part of it only.
            for key in [k for k, p in ours.items() if carried_delivery(p, now)]:
                del ours[key]
                theirs.pop(key, None)
        return ours, theirs, book

    def _arriving(self, orders: Iterable[BrokerOrderUpdate], keys: set[PositionKey], now: datetime) -> set[PositionKey]:
        """Instruments in which one of our orders has fills at the broker that we have
        not recorded: on their way for the grace, then missed (reported once, and
        fetched)."""
        arriving: set[PositionKey] = set()
        seen: set[str] = set()
        instruments = {(k[0].value, k[1], k[2].value) for k in keys}
        ours: list[tuple[int, BrokerOrderUpdate]] = []
        for update in orders:
            order_id = order_id_in_tag(self._prefix, update.tag)
            if order_id is not None and (update.exchange, update.symbol, update.product) in instruments:
                ours.append((order_id, update))
        # One read for the day's orders in these instruments, not one per order: the
        # journal is the busiest thread, and a busy day has thousands of them.
        filled = self._journal.ask(Load("filled_quantities", ([i for i, _ in ours],)), timeout=ASK_TIMEOUT) if ours else {}
        for order_id, update in ours:
            if order_id not in filled or filled[order_id] == update.filled_quantity:
                continue
            order = self._journal.ask(Load("load_order", (order_id,)), timeout=ASK_TIMEOUT)
            if order is None or order.filled_quantity == update.filled_quantity:
                continue  # it caught up meanwhile
            seen.add(update.broker_order_id)
            fills, since = self._drifting.get(update.broker_order_id, (update.filled_quantity, time.monotonic()))
            if fills != update.filled_quantity:
                since = time.monotonic()  # still moving: on its way
            self._drifting[update.broker_order_id] = (update.filled_quantity, since)
            if time.monotonic() - since < self._drift_grace:
                arriving.add(order.position_key)
                continue
            # Overdue: fetch the order's trades and hand them to its tracker, which
            # applies each once, by trade id; the position follows the fills, so it is
            # left alone meanwhile. Only an order no tracker follows any more has its
            # position taken from the broker's as it stands.
            try:
                fetched = self._gateway.ask(FetchMissedFills(update), timeout=ASK_TIMEOUT)
            except Exception as error:  # the broker's trade book cannot be read now
                log.warning("could not fetch the trades of order %s: %r; next pass", order_id, error)
                arriving.add(order.position_key)
                continue
            if not fetched and self.supervisor is not None:
                # No tracker follows it (it ended, and the OMS restarted before its fills
                # came): one is given it again, to fetch them by tag and record them once.
                fetched = bool(self.supervisor.ask(ResumeOrder(order_id), timeout=ASK_TIMEOUT))
            if fetched:
                arriving.add(order.position_key)
                self._drifting[update.broker_order_id] = (update.filled_quantity, time.monotonic())
            if (update.broker_order_id, update.filled_quantity) in self._drift_reported:
                continue
            self._drift_reported.add((update.broker_order_id, update.filled_quantity))
            log.error(
                "order %s (broker %s): the broker has %d filled, the OMS recorded %d; %s",
                order_id, update.broker_order_id, update.filled_quantity, order.filled_quantity,
                "its trades were fetched for its tracker" if fetched else "no tracker follows it; its position is taken from the broker",
            )
            self._metrics.finding(IssueType.ORDER_DRIFT.value)
            self._journal.ask(RecordFinding(
                now, IssueType.ORDER_DRIFT.value, order.symbol, exchange=order.exchange, product=order.product,
                internal_quantity=order.filled_quantity, broker_quantity=update.filled_quantity, order_id=order_id,
                resolved=fetched,
                resolution="missed fills fetched from the broker, applied once by trade id" if fetched else None,
                metadata={"broker_order_id": update.broker_order_id, "broker_status": update.status,
                          "status": order.status.value},
            ), timeout=ASK_TIMEOUT)
        for broker_order_id in set(self._drifting) - seen:
            del self._drifting[broker_order_id]  # caught up
        return arriving

    def _settle_unsure(self, orders: Iterable[BrokerOrderUpdate], now: datetime) -> None:
        """An order still SUBMITTED with no broker id long after it was sent (its place
        timed out and every look-up by tag failed, say while the session had expired) is
        settled by the broker's order book as just read: adopted with its trades if the
        broker has it under our tag, FAILED if it does not (the book has long caught up)."""
        if self.supervisor is None:
            return
        unsure = [
            o for o in self.supervisor.ask(GetActiveOrders(), timeout=ASK_TIMEOUT)
            if o.status is OrderStatus.SUBMITTED and o.broker_order_id is None
            and (now - (o.submitted_at or o.created_at)).total_seconds() >= self._drift_grace
        ]
        if not unsure:
            return
        by_tag = {u.tag: u for u in orders if u.tag}
        for order in unsure:
            found = by_tag.get(order.tag)
            log.warning("order %s has been unsure since %s: %s", order.order_id, order.created_at.isoformat(timespec="seconds"),
                        f"the broker has it ({found.broker_order_id})" if found else "the broker never took it")
            self._gateway.ask(SettleByBook(order.order_id, order.tag, found), timeout=ASK_TIMEOUT)

    def _report_untagged(self, orders: Iterable[BrokerOrderUpdate], now: datetime) -> list[dict]:
        """Broker orders with no tag of ours, the first time each is seen: logged and
        recorded, never adopted (the OMS did not place them and does not manage them)."""
        found = []
        unseen = [
            u for u in orders
            if u.broker_order_id not in self._classified and order_id_in_tag(self._prefix, u.tag) is None
        ]
        if not unseen:
            return found
        older = self._journal.ask(Load("known_tags", (tuple({u.tag for u in unseen if u.tag}),)), timeout=ASK_TIMEOUT)
        for update in unseen:
            if update.tag in older:  # one of ours, from before tags had their present form
                self._classified.add(update.broker_order_id)  # (not asked about again)
                continue
            entry = {
                "broker_order_id": update.broker_order_id, "tag": update.tag, "exchange": update.exchange,
                "symbol": update.symbol, "product": update.product, "side": update.side,
                "quantity": update.quantity, "filled_quantity": update.filled_quantity, "status": update.status,
            }
            log.warning(
                "order %s at the broker (%s %s %s:%s, %s) carries no tag of this OMS; not adopted",
                update.broker_order_id, update.side, update.quantity, update.exchange, update.symbol, update.status,
            )
            self._journal.ask(RecordFinding(
                now, IssueType.UNTAGGED_ORDER.value, update.symbol or "?", exchange=update.exchange, product=update.product,
                broker_quantity=update.filled_quantity, metadata=entry,
            ), timeout=ASK_TIMEOUT)
            self._classified.add(update.broker_order_id)
            found.append(entry)
        return found

    @staticmethod
    def _log(result: ReconciliationReport) -> None:
        if result.all_clear and not result.deferred:
            log.info("reconciliation: all positions match the broker's")
            return
        log.warning(
            "reconciliation: %d mismatches, %d unknown positions corrected; %d new untagged orders; %d left for the next pass",
            len(result.mismatches), len(result.unknown_positions), len(result.untagged_orders), len(result.deferred),
        )
