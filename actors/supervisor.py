"""Supervisor: the OMS's front door and the parent of every other actor."""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Callable

import pykka

from actors.base import OMSActor, answer, dispatch, fail, handles, tell_quietly
from actors.broker_gateway import BrokerGateway
from actors.journal import Journal
from actors.messages import (
    AwaitRecovery,
    Boot,
    Cancel,
    CancelOrder,
    Checked,
    CheckModification,
    CheckOrder,
    ChildFailed,
    ChildRestarted,
    DailyLossLimitHit,
    DatabaseDown,
    DatabaseUp,
    ForgetClientOrder,
    GetActiveOrders,
    GetEvents,
    GetFills,
    GetHealth,
    GetOrder,
    GetOrders,
    GetPositions,
    GetTradingState,
    IdsReserved,
    Load,
    LoadOrder,
    LoadOrderByClientId,
    MarkPrice,
    Modify,
    ModifyNotSent,
    ModifyOrder,
    OrderChanged,
    OrderClosed,
    OrderFilled,
    PlaceOrder,
    Ready,
    Reconcile,
    RecordRefusal,
    RecordTradingState,
    Recover,
    Recovered,
    ReplayUnappliedFills,
    Reply,
    ReserveIds,
    RestartTracker,
    RestoreRisk,
    Resume,
    ResumeOrder,
    Route,
    SetAccessToken,
    SetTradingState,
    StandDownExits,
    Submit,
    Subscribe,
    TrackerFinished,
)
from actors.order_tracker import MAX_MODIFICATIONS, OrderTracker
from actors.placements import ClientOrderIds, SharedReply, answer_retry, reused_for_another_order
from actors.position_keeper import PositionKeeper
from actors.protector import Protector
from actors.reader import Reader
from actors.reconciler import Reconciler
from actors.runtime import DEFAULT_THREADS, ActorPool
from actors.trading import reply_of
from actors.validator import Validator
from domain.broker import Broker
from domain.enums import OrderStatus
from domain.errors import (
    InsufficientBalance,
    OMSUnavailable,
    OrderNotCancellable,
    OrderNotFound,
    OrderNotModifiable,
    OrderRejected,
    OrderSubmissionFailed,
)
from domain.instruments import InstrumentBook
from domain.market_hours import MarketCalendar
from domain.money import parse_money
from domain.order import Modification, Order, check_modification, refused
from domain.order_request import OrderRequest
from domain.order_tag import broker_tag
from domain.risk import RiskLimits
from observability.metrics import OMSMetrics
from persistence.schema import DEFAULT_ACCOUNT
from persistence.store import is_outage

log = logging.getLogger("oms.supervisor")
RECENT_ORDERS = 10_000
# A shared actor restarted this many times within the window halts trading.
RESTART_BUDGET = 3
RESTART_WINDOW_SECONDS = 60.0
# One order's tracker restarted more often than this within the window is given up.
TRACKER_RESTARTS = 5
# Order ids are reserved from the database this many at a time, and the next block is
# asked for when fewer than half remain, so a new order never waits for its id.
ID_BLOCK = 1000
READERS = 2
ASK_TIMEOUT = 30.0


class TradingState(str, Enum):
    RUNNING = "RUNNING"
    REDUCE_ONLY = "REDUCE_ONLY"  # only orders that shrink a position; cancels always
    HALTED = "HALTED"  # nothing new; cancels and queries still work


class HealthState(str, Enum):
    RUNNING = "RUNNING"
    DEGRADED = "DEGRADED"  # working, but something is wrong (the reason says what)
    REDUCE_ONLY = "REDUCE_ONLY"
    HALTED = "HALTED"


@dataclass(frozen=True, slots=True)
class Health:
    """What ``oms.health()`` answers: the state, and why when it is not RUNNING."""

    state: HealthState
    reason: str


@dispatch
class Supervisor(OMSActor):
    """Owns the routing table (order id -> live tracker), the pool the trackers run on,
    the latest committed view of every order seen since start, the subscribers, the
    trading state (RUNNING, REDUCE_ONLY, HALTED; recorded in trading_states before it
    changes), which resumed orders are still being looked up, and the client order ids
    placed this run (idempotent placement, ``actors.placements``).

    Takes PlaceOrder, CancelOrder, ModifyOrder (replies through the message's future),
    the queries GetOrder, GetActiveOrders, GetOrders, GetPositions, GetFills, GetEvents,
    GetHealth, GetTradingState, MarkPrice, Subscribe; SetTradingState and Resume;
    Reconcile (handed to the reconciler), StandDownExits (to the protector),
    AwaitRecovery, ResumeOrder (the reconciler's: an ended order with missed fills), ForgetClientOrder
    (a placement's shared reply: see actors.placements); from the validator Checked and DailyLossLimitHit; from trackers
    OrderChanged, TrackerFinished, Recovered; from any child ChildFailed. Starts its
    children on Boot (journal, readers, validator, position keeper, gateway, the
    trackers' pool, the protector, a tracker per live order routed at the gateway before
    it connects, then the reconciler) and stops them in reverse on stop.

    A new order never makes the supervisor wait: the check is told to the validator
    (which answers Checked), and a tracker is an object on the trackers' pool, not a
    thread, so it is started here at once. Blocking asks go one way only: to the
    validator (modifications) and the journal (reads), neither of which ever waits on
    the supervisor.
    """

    # The supervisor never dies of a failure: a told message that fails is logged and its
    # caller answered (``give_up``); asked ones answer their asker with the error.
    heals = True
    retries_after_restart = False
    asked = (
        Boot, GetOrder, GetActiveOrders, GetPositions, GetHealth, Resume, Subscribe, MarkPrice, SetTradingState,
        GetTradingState, ResumeOrder,
    )

    def __init__(
        self,
        *,
        database_url: str,
        broker: Broker,
        limits: RiskLimits,
        clock: Callable[[], datetime],
        account: str = DEFAULT_ACCOUNT,
        on_database_up: Callable[[], str | None] | None = None,
        max_modifications: int = MAX_MODIFICATIONS,
        instruments: Callable[[], InstrumentBook] | None = None,
        tracker_threads: int = DEFAULT_THREADS,
        reconcile_interval: float = 0.0,
        reconcile_settle: float = 1.0,
        reconcile_fill_grace: float = 30.0,
        managed_exits: bool = False,
        calendar: MarketCalendar | None = None,
        metrics: OMSMetrics | None = None,
    ) -> None:
        super().__init__()
        self._metrics = metrics or OMSMetrics()
        self._calendar = calendar
        self._reconcile_fill_grace = reconcile_fill_grace
        self._managed_exits = managed_exits
        self._protector: pykka.ActorRef | None = None
        self._reconcile_interval = reconcile_interval
        self._reconcile_settle = reconcile_settle
        self._reconciler: pykka.ActorRef | None = None
        self._resumed: tuple[int, ...] = ()  # the live orders read back at start-up
        self._recovering: set[int] = set()  # ... not yet looked up at the broker
        self._recovery_waiters: list[Reply] = []
        self._max_modifications = max_modifications
        self._instruments = instruments
        self._tracker_threads = tracker_threads
        self._database_url = database_url
        self._account = account
        self._on_database_up = on_database_up
        self._broker = broker
        self._limits = limits
        self._clock = clock
        self._children: list[pykka.ActorRef] = []
        self._journal: pykka.ActorRef | None = None
        self._validator: pykka.ActorRef | None = None
        self._keeper: pykka.ActorRef | None = None
        self._gateway: pykka.ActorRef | None = None
        self._pool: ActorPool | None = None  # the trackers' threads
        self._tracker_kit: dict = {}  # what every tracker is started with
        self._trackers: dict[int, pykka.ActorRef] = {}
        self._checking: dict[int, float] = {}  # order ids at the validator -> when their PlaceOrder came
        self._views: dict[int, Order] = {}  # orders not yet finished
        # Finished orders stay at hand a while (a strategy usually asks right after);
        # older ones are read from the database, so memory stays bounded all day.
        self._recent: OrderedDict[int, Order] = OrderedDict()
        self._subscribers: list[Subscribe] = []
        self._client_orders = ClientOrderIds()  # idempotent placement (actors.placements)
        self._tag_prefix = ""
        self._readers: list[pykka.ActorRef] = []
        self._next_reader = 0
        self._ids: deque[int] = deque()  # reserved, not yet given to an order
        self._reserving = False
        self._waiting_for_ids: deque[PlaceOrder] = deque()
        self.state = TradingState.RUNNING
        self._database_down: str | None = None  # why, while the journal says so
        self._halt_reason: str | None = None
        self._restarts: dict[str, deque[float]] = {}
        self._restarting: dict[int, list] = {}  # order id -> commands held while its tracker restarts
        self._tracker_failures: dict[int, deque[float]] = {}
        self._timers: list[threading.Timer] = []

    # --- life -------------------------------------------------------------------------

    def _start_child(self, actor_class, *args, **kwargs) -> pykka.ActorRef:
        ref = actor_class.start(*args, **kwargs)
        self._children.append(ref)
        return ref

    @handles(Boot)
    def _boot(self, message: Boot) -> int:
        """Start the children in dependency order and resume every live order.
        Answers the number of orders recovered."""
        me = self.actor_ref
        self._journal = self._start_child(
            Journal, self._database_url, supervisor=me, account=self._account, metrics=self._metrics,
        )
        self._tag_prefix = self._journal.ask(Load("tag_prefix"))  # also surfaces a bad database now
        stored = self._journal.ask(Load("load_trading_state"))
        if stored is not None and stored[0] != TradingState.RUNNING.value:
            self.state, self._halt_reason = TradingState(stored[0]), stored[1]
            log.critical("trading is %s since %s, as the last run left it: %s (oms.resume() leaves it)",
                         stored[0], stored[2].isoformat(timespec="seconds"), stored[1])
        self._readers = [
            self._start_child(Reader, self._database_url, account=self._account, supervisor=me) for _ in range(READERS)
        ]
        self._journal.tell(ReserveIds(ID_BLOCK, me))
        self._reserving = True
        self._validator = self._start_child(
            Validator, self._limits, supervisor=me, reload=self._risk_as_stored, instruments=self._instruments,
            clock=self._clock, calendar=self._calendar, journal=self._journal,
        )
        self._keeper = self._start_child(PositionKeeper, self._journal, self._validator, self._clock, supervisor=me)
        positions = self._keeper.ask(GetPositions())
        live = self._journal.ask(Load("load_live_orders"))
        self._validator.ask(RestoreRisk(tuple(live), tuple(positions)))
        self._gateway = self._start_child(
            BrokerGateway, self._broker, supervisor=me, connect_on_start=False, metrics=self._metrics,
        )
        self._pool = ActorPool(self._tracker_threads, name="tracker", keep_threads=True)
        self._tracker_kit = dict(
            journal=self._journal, gateway=self._gateway, keeper=self._keeper, validator=self._validator,
            supervisor=me, clock=self._clock, pool=self._pool, max_modifications=self._max_modifications,
            metrics=self._metrics,
        )
        applied = self._journal.ask(Load("trade_ids_of_live_orders"))
        unanswered = self._journal.ask(Load("unanswered_modifications_of_live_orders")) if live else {}
        if self._managed_exits:  # before the trackers: it counts every fill they report
            self._protector = self._start_child(Protector, supervisor=me, keeper=self._keeper, journal=self._journal)
            self._subscribers.append(Subscribe(self._protector, None))
        self._resumed = tuple(order.order_id for order in live)
        self._recovering = set(self._resumed)
        for order in live:
            self._views[order.order_id] = order
            self._start_tracker(order, Recover(), applied.get(order.order_id, ()), unanswered.get(order.order_id))
            tracker = self._trackers.get(order.order_id)
            if tracker is not None:
                self._gateway.tell(Route(order.order_id, order.tag, order.broker_order_id, tracker))
        # Connected once every resumed order has its route (the broker's first news is
        # the whole day's), and before start_oms returns: polling and postbacks are up.
        self._gateway.ask(Ready(), timeout=ASK_TIMEOUT)
        if live:
            log.info("recovered %d live orders", len(live))
        self._reconciler = self._start_child(
            Reconciler, gateway=self._gateway, keeper=self._keeper, journal=self._journal, clock=self._clock,
            tag_prefix=self._tag_prefix, interval=self._reconcile_interval, settle=self._reconcile_settle,
            drift_grace=self._reconcile_fill_grace, supervisor=me, metrics=self._metrics,
        )
        return len(live)

    def on_stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
            timer.join(1)
        self._trackers.clear()
        stopping = OrderSubmissionFailed("the OMS is stopping; the command was not carried out")
        while self._waiting_for_ids:
            fail(self._place_reply(self._waiting_for_ids.popleft()), stopping)
        for held in self._restarting.values():
            for command in held:
                fail(reply_of(command), stopping)
        self._restarting.clear()
        if self._pool is not None:
            try:  # every live tracker, then the pool's threads
                self._pool.shutdown(timeout=60)
            except Exception:
                log.exception("stopping the order trackers")
        for child in reversed(self._children):
            try:
                child.stop(block=True, timeout=30)
            except pykka.ActorDeadError:
                continue  # it had stopped already (a failure): nothing to stop
            except Exception:
                log.exception("stopping %s", child)

    def _start_tracker(self, order: Order, first, applied_trade_ids=(), unanswered_modification=None) -> None:
        """Start the order's tracker on the trackers' pool and tell it ``first``."""
        try:
            tracker = OrderTracker.start(
                order, applied_trade_ids=applied_trade_ids, unanswered_modification=unanswered_modification, **self._tracker_kit,
            )
        except Exception as error:  # the pool is shut down: the OMS is stopping
            log.error("no tracker could be started for order %s: %r", order.order_id, error,
                      extra={"order_id": order.order_id, "strategy_id": order.strategy_id})
            if isinstance(first, Submit):  # never recorded, never sent: release and refuse it
                tell_quietly(self._validator, OrderClosed(order.order_id))
                fail(first.reply, OrderSubmissionFailed(f"order {order.order_id} not sent: no tracker could be started"))
            return
        self._trackers[order.order_id] = tracker
        self._metrics.tracking(len(self._trackers))
        tracker.tell(first)
        for command in self._restarting.pop(order.order_id, []):  # held while it restarted
            self.on_receive(command)

    def _halt(self, why: str) -> None:
        """Halt on a fault: in memory at once, and recorded when the database takes it
        (a fault that halts trading may be the database's own)."""
        if self.state is TradingState.HALTED:
            return
        log.critical("trading HALTED: %s", why)
        try:
            # Briefly: the supervisor must not hang on a database that hangs.
            self._record_state(TradingState.HALTED, why, timeout=2.0)
        except Exception as error:
            log.error("the halt could not be recorded (%r); trading is halted all the same", error)
        self.state, self._halt_reason = TradingState.HALTED, why

    def _record_state(self, state: TradingState, reason: str, timeout: float = ASK_TIMEOUT) -> None:
        self._journal.ask(RecordTradingState(state.value, reason, self._clock()), timeout=timeout)

    @handles(SetTradingState)
    def _set_state(self, message: SetTradingState) -> TradingState:
        """Recorded first (an audited change that outlives a restart), then in effect."""
        state = TradingState(message.state)
        reason = message.reason.strip()
        if not reason:
            raise ValueError("reason: say why the trading state changes (it is kept in trading_states)")
        self._record_state(state, reason)
        level = logging.WARNING if state is TradingState.RUNNING else logging.CRITICAL
        log.log(level, "trading %s: %s (was %s)", state.value, reason, self.state.value)
        self.state, self._halt_reason = state, (None if state is TradingState.RUNNING else reason)
        if state is TradingState.RUNNING:
            self._restarts.clear()
        if message.stand_down_exits or state is TradingState.RUNNING:
            tell_quietly(self._protector, StandDownExits(message.stand_down_exits))
        return state

    @handles(DailyLossLimitHit)
    def _daily_loss(self, message: DailyLossLimitHit) -> None:
        """The validator saw the day's net loss reach the limit: trading moves to the
        configured state, recorded with the figures like any change. Never loosens: a
        HALTED OMS stays HALTED, and REDUCE_ONLY is not asked to become it again."""
        target = TradingState(message.action)
        if self.state is TradingState.HALTED or self.state is target:
            log.warning("%s (trading stays %s)", message.reason, self.state.value)
            return
        try:
            self._set_state(SetTradingState(target.value, message.reason))
        except Exception as error:
            # A limit must bite even when the database cannot record it now.
            log.error("the daily loss limit's change could not be recorded (%r); trading is %s all the same", error, target.value)
            self.state, self._halt_reason = target, message.reason

    @handles(StandDownExits)
    def _stand_down_exits(self, message: StandDownExits) -> None:
        """Passed to the Protector (the MIS square-off's: its orders close the positions)."""
        tell_quietly(self._protector, message)

    @handles(GetTradingState)
    def _get_state(self, message: GetTradingState) -> tuple[TradingState, str | None]:
        return self.state, self._halt_reason

    # --- commands -------------------------------------------------------------------

    # --- order ids ----------------------------------------------------------------------

    def _next_id(self) -> int | None:
        if len(self._ids) < ID_BLOCK // 2 and not self._reserving:
            self._reserving = tell_quietly(self._journal, ReserveIds(ID_BLOCK, self.actor_ref))
        return self._ids.popleft() if self._ids else None

    @handles(IdsReserved)
    def _ids_reserved(self, message: IdsReserved) -> None:
        self._reserving = False
        self._ids.extend(message.ids)
        waiting, self._waiting_for_ids = self._waiting_for_ids, deque()
        if message.error is not None and not message.ids:
            for command in waiting:
                fail(self._place_reply(command), OrderSubmissionFailed(
                    f"order not recorded, not sent: no order id could be reserved ({message.error})"
                ))
            return
        for command in waiting:
            self._place(command)

    def _tag(self, order_id: int) -> str:
        return broker_tag(self._tag_prefix, order_id)

    # --- commands -------------------------------------------------------------------

    @handles(PlaceOrder)
    def _place(self, message: PlaceOrder) -> None:
        placed_at = time.perf_counter()
        reply = reply_of(message)
        if not isinstance(message.request, OrderRequest):
            fail(reply, ValueError(f"request: expected an OrderRequest, got {type(message.request).__name__}"))
            return
        client_order_id = message.request.client_order_id
        if client_order_id is not None:
            claimed = self._claimed_reply(message)
            if claimed is not None:
                reply = claimed  # back from waiting for an order id: already claimed
            else:
                shared = self._claim(message, reply)
                if shared is None:
                    return  # a retry, answered (or to be) with the order placed first
                reply = shared
        order_id = self._next_id()
        if order_id is None:  # the next block is on its way
            self._waiting_for_ids.append(message)
            return
        if client_order_id is not None:
            placement = self._client_orders.get(client_order_id)
            if placement is not None and placement.reply is reply:
                placement.order_id = order_id
        if self._database_down is not None:
            # Nothing can be recorded, so nothing is sent; the id is simply never used.
            fail(reply, OMSUnavailable(f"order not recorded, not sent: the database is unavailable ({self._database_down})"))
            return
        if self.state is TradingState.HALTED:
            order = Order.from_request(
                order_id, message.request, self._clock(),
                {"passed": False, "checks": [{"name": "trading_state", "passed": False, "reason": f"trading is {self.state.value}"}]},
                tag=self._tag(order_id),
            )
            reason = f"trading is {self.state.value}: no new orders"
            self._refuse(order, reason, reply, OrderRejected(reason, "trading_state", order_id), "trading_state")
            return
        # The supervisor does not wait for the check: the validator answers with Checked.
        self._checking[order_id] = placed_at
        reduce_only = self._halt_reason if self.state is TradingState.REDUCE_ONLY else None
        check = CheckOrder(order_id, message.request, reply_to=self.actor_ref, reply=reply, reduce_only=reduce_only)
        if not tell_quietly(self._validator, check):
            self._checking.pop(order_id, None)
            self._halt("the validator is not running")
            fail(reply, OrderSubmissionFailed(f"order {order_id} not sent: the validator is not running"))

    def _claimed_reply(self, message: PlaceOrder) -> SharedReply | None:
        """The shared reply of a placement that claimed its client order id already."""
        client_order_id = getattr(message.request, "client_order_id", None)
        claimed = self._client_orders.get(client_order_id) if client_order_id is not None else None
        if claimed is not None and claimed.command is message:
            return claimed.reply
        return None

    def _place_reply(self, message: PlaceOrder):
        """Where a placement's answer goes: its shared reply once it claimed a client id."""
        return self._claimed_reply(message) or reply_of(message)

    def _claim(self, message: PlaceOrder, reply) -> SharedReply | None:
        """Claim the request's client order id for this placement and answer the shared
        reply to use; or, when the id names an order already (this run's, or one in the
        database), answer ``reply`` with that order (joining its placement while it is in
        flight) and answer None: nothing new is recorded or sent."""
        client_order_id = message.request.client_order_id
        assert client_order_id is not None
        known = self._client_orders.get(client_order_id)
        if known is not None and known.reply is not None and known.reply.forgotten:
            known = None  # its placement failed before the broker: the database has the word
        if known is not None:
            if known.command is not None and known.reply is not None and not known.reply.done:
                conflict = reused_for_another_order(message.request, known.command.request)
                if conflict is not None:
                    fail(reply, conflict)
                    return None
                if known.reply.join(reply):
                    return None  # answered with the first placement's answer
            if known.order_id is not None:
                try:
                    first = self._find(known.order_id)
                except Exception as error:  # the database away: the caller hears it
                    fail(reply, error)
                    return None
                conflict = reused_for_another_order(message.request, first)
                if conflict is not None:
                    fail(reply, conflict)
                else:
                    answer_retry(first, reply)
                return None
        if self._database_down is not None:
            fail(reply, OMSUnavailable(
                f"client_order_id {client_order_id} could not be looked up: the database is unavailable ({self._database_down})"
            ))
            return None
        try:
            stored = self._reader().ask(LoadOrderByClientId(client_order_id), timeout=ASK_TIMEOUT)
        except Exception as error:
            if is_outage(error):
                error = OMSUnavailable(f"client_order_id {client_order_id} could not be looked up: the database is unavailable")
            fail(reply, error)
            return None
        if stored is not None:
            self._client_orders.known(client_order_id, stored.order_id)
            conflict = reused_for_another_order(message.request, stored)
            if conflict is not None:
                fail(reply, conflict)
            else:
                answer_retry(self._views.get(stored.order_id) or self._recent.get(stored.order_id) or stored, reply)
            return None
        me = self.actor_ref
        shared = SharedReply(reply, lambda placement: tell_quietly(me, ForgetClientOrder(client_order_id, placement)))
        self._client_orders.claim(client_order_id, message, shared)
        return shared

    @handles(ForgetClientOrder)
    def _forget_client_order(self, message: ForgetClientOrder) -> None:
        self._client_orders.forget(message.client_order_id, message.placement)

    @handles(Checked)
    def _checked(self, message: Checked) -> None:
        placed_at = self._checking.pop(message.order_id, 0.0)
        result = message.result
        order = Order.from_request(message.order_id, message.request, self._clock(), result, tag=self._tag(message.order_id))
        if not result.passed:
            failed = result.failed
            if failed.name == "balance":
                error = InsufficientBalance(
                    result.required_margin,
                    _number(failed.numbers.get("available")),
                    failed.reason,
                    message.order_id,
                )
            else:
                error = OrderRejected(failed.reason, failed.name, message.order_id)
            self._refuse(order, failed.reason, message.reply, error, failed.name)
            return
        self._views[order.order_id] = order
        self._start_tracker(order, Submit(message.reply, placed_at))

    def _refuse(self, order: Order, reason: str, reply, error: Exception, check: str) -> None:
        rejected, event = refused(order, reason)
        self._metrics.refused(check)
        log.info("order %s refused (%s): %s", order.order_id, check, reason,
                 extra={"order_id": order.order_id, "strategy_id": order.strategy_id})
        self._remember_finished(rejected)
        self._journal.tell(RecordRefusal(rejected, event, error, reply, notify=self.actor_ref))

    @handles(CancelOrder)
    def _cancel(self, message: CancelOrder) -> None:
        if message.order_id in self._restarting:  # its tracker restarts after a pause
            self._restarting[message.order_id].append(message)
            return
        reply = reply_of(message)
        tracker = self._trackers.get(message.order_id)
        if tracker is not None and tell_quietly(tracker, Cancel(reply)):
            return
        try:
            order = self._find(message.order_id)
        except Exception as error:  # not found, or the database away: the caller hears it
            fail(reply, error)
            return
        fail(reply, OrderNotCancellable(order.order_id, f"it is {order.status.value}"))

    @handles(ModifyOrder)
    def _modify(self, message: ModifyOrder) -> None:
        if message.order_id in self._restarting:
            self._restarting[message.order_id].append(message)
            return
        reply = reply_of(message)
        try:
            change = modification_of(message)
            order = self._find(message.order_id)
        except Exception as error:  # a bad field, not found, or the database away
            fail(reply, error)
            return
        tracker = self._trackers.get(message.order_id)
        if tracker is None or order.is_terminal:
            fail(reply, OrderNotModifiable(order.order_id, f"it is {order.status.value}"))
            return
        try:
            request = check_modification(order, change)
        except ValueError as error:
            fail(reply, error)
            tell_quietly(tracker, ModifyNotSent(change, str(error), "input"))
            return
        result = self._validator.ask(CheckModification(order.order_id, request, order.filled_quantity), timeout=ASK_TIMEOUT)
        if not result.passed:
            if result.failed.name == "order_working":
                fail(reply, OrderNotModifiable(order.order_id, "it has just ended"))
            else:
                fail(reply, OrderRejected(result.failed.reason, result.failed.name, order.order_id))
                tell_quietly(tracker, ModifyNotSent(change, result.failed.reason, result.failed.name))
            return
        if not tell_quietly(tracker, Modify(change, reply)):
            fail(reply, OrderNotModifiable(order.order_id, "it has just ended"))

    # --- queries ------------------------------------------------------------------------

    def _remember_finished(self, order: Order) -> None:
        self._views.pop(order.order_id, None)
        self._recent[order.order_id] = order
        self._recent.move_to_end(order.order_id)
        while len(self._recent) > RECENT_ORDERS:
            self._recent.popitem(last=False)

    def _find(self, order_id: int) -> Order:
        if isinstance(order_id, bool) or not isinstance(order_id, int):
            raise OrderNotFound(order_id)
        order = self._views.get(order_id) or self._recent.get(order_id)
        if order is None:  # one row by key, on a reader's connection: never behind writes
            try:
                order = self._reader().ask(LoadOrder(order_id), timeout=ASK_TIMEOUT)
            except Exception as error:
                if is_outage(error):  # the caller hears the OMS's word for it, not the driver's
                    raise OMSUnavailable(f"order {order_id} could not be read: the database is unavailable") from error
                raise
        if order is None:
            raise OrderNotFound(order_id)
        return order

    @handles(GetOrder)
    def _get_order(self, message: GetOrder) -> Order:
        return self._find(message.order_id)

    @handles(GetActiveOrders)
    def _active(self, message: GetActiveOrders) -> list[Order]:
        return [self._views[i] for i in self._trackers if i in self._views and not self._views[i].is_terminal]

    def _reader(self) -> pykka.ActorRef:
        self._next_reader = (self._next_reader + 1) % len(self._readers)
        return self._readers[self._next_reader]

    @handles(GetOrders, GetFills, GetEvents)
    def _read(self, message: GetOrders | GetFills | GetEvents) -> None:
        """Handed to a reader, which answers the message's reply: the supervisor never
        waits on a list, however long."""
        if not tell_quietly(self._reader(), message):
            fail(message.reply, OrderSubmissionFailed("the OMS is stopping; the query was not answered"))

    @handles(Reconcile)
    def _reconcile(self, message: Reconcile) -> None:
        """Handed to the reconciler, which answers the reply (a pass may wait on the
        broker's rate limits; the supervisor never does)."""
        if not tell_quietly(self._reconciler, message):
            fail(message.reply, OrderSubmissionFailed("the OMS is stopping; reconciliation did not run"))

    @handles(GetPositions)
    def _positions(self, message: GetPositions):
        return self._keeper.ask(message, timeout=ASK_TIMEOUT)

    @handles(MarkPrice)
    def _mark(self, message: MarkPrice) -> None:
        self._validator.tell(message)
        self._keeper.tell(message)

    @handles(DatabaseDown)
    def _database_is_down(self, message: DatabaseDown) -> None:
        self._database_down = message.reason

    @handles(DatabaseUp)
    def _database_is_up(self, message: DatabaseUp) -> None:
        self._database_down = None
        problem = self._on_database_up() if self._on_database_up is not None else None
        if problem is not None:  # e.g. the account lock went with the connection
            self._halt(problem)

    @handles(GetHealth)
    def _health(self, message: GetHealth) -> Health:
        if self.state is TradingState.HALTED:
            return Health(HealthState.HALTED, self._halt_reason or "halted")
        if self.state is TradingState.REDUCE_ONLY:
            return Health(HealthState.REDUCE_ONLY, self._halt_reason or "reduce only")
        if self._database_down is not None:
            return Health(HealthState.DEGRADED, f"database unavailable: {self._database_down}")
        # Read, never waited on: the broker keeps the session's state behind a lock.
        refusal = getattr(self._broker, "refusal", None)
        if refusal is not None:
            return Health(HealthState.DEGRADED, f"no new orders: {refusal}")
        book = self._instruments() if self._instruments is not None else None
        if book is not None and book.problem is not None:
            return Health(HealthState.DEGRADED, book.problem)
        return Health(HealthState.RUNNING, "")

    @handles(Subscribe)
    def _subscribe(self, message: Subscribe) -> None:
        self._subscribers.append(message)

    def _publish(self, order: Order, event: OrderChanged | OrderFilled) -> None:
        gone = []
        for subscription in self._subscribers:
            if subscription.strategy_id is not None and subscription.strategy_id != order.strategy_id:
                continue
            if not tell_quietly(subscription.subscriber, event):
                gone.append(subscription)  # a strategy that stopped hears nothing more
        for subscription in gone:
            self._subscribers.remove(subscription)

    # --- from children ------------------------------------------------------------------

    @handles(OrderChanged)
    def _changed(self, message: OrderChanged) -> None:
        order_id = message.order.order_id
        if order_id in self._recent:
            self._recent[order_id] = message.order
        else:
            self._views[order_id] = message.order
        self._publish(message.order, message)

    @handles(OrderFilled)
    def _filled(self, message: OrderFilled) -> None:
        self._publish(message.order, message)

    @handles(Recovered)
    def _recovered(self, message: Recovered) -> None:
        self._settled_at_start(message.order_id)

    def _settled_at_start(self, order_id: int) -> None:
        if order_id not in self._recovering:
            return
        self._recovering.discard(order_id)
        if self._recovering:
            return
        waiters, self._recovery_waiters = self._recovery_waiters, []
        for reply in waiters:
            answer(reply, self._recovery_summary())

    def _recovery_summary(self) -> dict[str, int]:
        """How the orders resumed at start-up stand, by status."""
        counts: dict[str, int] = {}
        for order_id in self._resumed:
            order = self._views.get(order_id) or self._recent.get(order_id)
            status = order.status.value if order is not None else "finished"
            counts[status] = counts.get(status, 0) + 1
        return counts

    @handles(AwaitRecovery)
    def _await_recovery(self, message: AwaitRecovery) -> None:
        if not self._recovering:
            answer(message.reply, self._recovery_summary())
        else:
            self._recovery_waiters.append(message.reply)

    @handles(TrackerFinished)
    def _finished(self, message: TrackerFinished) -> None:
        self._settled_at_start(message.order_id)
        self._trackers.pop(message.order_id, None)
        self._metrics.tracking(len(self._trackers))
        order = self._views.get(message.order_id)
        if order is not None:
            self._remember_finished(order)

    @handles(ChildFailed)
    def _child_failed(self, message: ChildFailed) -> None:
        if message.actor == OrderTracker.__name__ and message.order_id:
            # One order's tracker died: restart it from what the database holds and let
            # it catch up with the broker by tag. Other orders are unaffected. A tracker
            # that keeps failing is restarted with growing pauses, then given up.
            order_id = message.order_id
            self._trackers.pop(order_id, None)
            self._metrics.tracking(len(self._trackers))
            now = time.monotonic()
            failures = self._tracker_failures.setdefault(order_id, deque())
            failures.append(now)
            while failures and now - failures[0] > RESTART_WINDOW_SECONDS:
                failures.popleft()
            if len(failures) > TRACKER_RESTARTS:
                self._halt(
                    f"the tracker of order {order_id} failed {len(failures)} times within "
                    f"{RESTART_WINDOW_SECONDS:.0f} s ({message.error} while handling {message.message}); "
                    "it is left as stored"
                )
                self._settle_without_tracker(order_id, None)
                return
            self._restarting.setdefault(order_id, [])  # commands for it wait for the new tracker
            pause = 0.0 if len(failures) == 1 else min(0.05 * 2 ** (len(failures) - 1), 5.0)
            log.error("tracker of %s failed (%s); restarting it from the database in %.2f s", order_id, message.error, pause,
                      extra={"order_id": order_id})
            if pause == 0:
                self._restart_tracker(RestartTracker(order_id))
                return
            me = self.actor_ref
            timer = threading.Timer(pause, lambda: tell_quietly(me, RestartTracker(order_id)))
            timer.daemon = True
            self._timers = [t for t in self._timers if t.is_alive()] + [timer]
            timer.start()
            return
        # A shared actor died outright (it could not be restarted in place): its state
        # cannot be trusted, so no new orders; cancels and queries go on.
        self._halt(f"{message.actor} stopped ({message.error} while handling {message.message})")

    @handles(RestartTracker)
    def _restart_tracker(self, message: RestartTracker) -> None:
        order_id = message.order_id
        try:
            order, applied = self._stored(order_id)
        except Exception as error:  # the database away: carry on from the last committed view
            log.error("could not reload order %s (%r); resuming it from its last committed state", order_id, error,
                      extra={"order_id": order_id})
            order, applied = self._views.get(order_id), ()
        # A fill it recorded but never handed over would otherwise wait for a restart.
        tell_quietly(self._keeper, ReplayUnappliedFills())
        if order is not None and not order.is_terminal:
            self._views[order.order_id] = order
            self._start_tracker(order, Recover(), applied, self._unanswered(order))
        else:
            self._settle_without_tracker(order_id, order)

    def _unanswered(self, order: Order) -> dict | None:
        """The order's modification request that was never answered, if any (its tracker
        must not take a fill at the old quantity as final)."""
        if order.status is not OrderStatus.OPEN:
            return None
        try:
            return self._journal.ask(Load("unanswered_modification", (order.order_id,)), timeout=ASK_TIMEOUT)
        except Exception as error:  # the database away: started without it, as before the request
            log.warning("could not read order %s's unanswered modification: %r", order.order_id, error)
            return None

    def _stored(self, order_id: int) -> tuple[Order | None, set[str]]:
        """The order as the database holds it and the trade ids recorded for it: what a
        tracker is started again from."""
        order = self._journal.ask(Load("load_order", (order_id,)), timeout=ASK_TIMEOUT)
        applied = self._journal.ask(Load("trade_ids", (order_id,)), timeout=ASK_TIMEOUT) if order is not None else set()
        return order, applied

    @handles(ResumeOrder)
    def _resume_order(self, message: ResumeOrder) -> bool:
        if message.order_id in self._trackers:
            return True
        order, applied = self._stored(message.order_id)
        if order is None:
            return False
        log.warning("order %s (%s) resumed: the broker has fills of it the OMS has not recorded",
                    order.order_id, order.status.value, extra={"order_id": order.order_id, "strategy_id": order.strategy_id})
        self._start_tracker(order, Recover(), applied, self._unanswered(order))
        return message.order_id in self._trackers

    def _settle_without_tracker(self, order_id: int, order: Order | None) -> None:
        """No tracker will run for this order (it ended before its tracker could say so,
        or it is given up): settle its view, release its risk reservation and open-order
        slot, and answer the commands parked for it from the view."""
        if order is not None:
            self._views[order.order_id] = order
            self._remember_finished(order)
        tell_quietly(self._validator, OrderClosed(order_id))
        self._settled_at_start(order_id)
        for command in self._restarting.pop(order_id, []):
            self.on_receive(command)

    @handles(ChildRestarted)
    def _child_restarted(self, message: ChildRestarted) -> None:
        """One restart is a hiccup; several within the window are a fault that restarting
        does not cure, and trading halts until an operator resumes it."""
        now = time.monotonic()
        recent = self._restarts.setdefault(message.actor, deque())
        recent.append(now)
        while recent and now - recent[0] > RESTART_WINDOW_SECONDS:
            recent.popleft()
        if len(recent) >= RESTART_BUDGET:
            self._halt(
                f"{message.actor} failed {len(recent)} times within {RESTART_WINDOW_SECONDS:.0f} s "
                f"(last: {message.error} while handling {message.message})"
            )

    @handles(SetAccessToken)
    def _set_access_token(self, message: SetAccessToken) -> None:
        """Handed to the gateway, the one actor that talks to the broker, which answers
        the message's reply (told, so a gateway waiting on Kite's limits never holds up
        the supervisor)."""
        if not tell_quietly(self._gateway, message):
            fail(message.reply, OrderSubmissionFailed("the broker gateway is not running; the token was not set"))

    @handles(Resume)
    def _resume(self, message: Resume) -> TradingState:
        if self.state is TradingState.RUNNING:
            return self.state
        return self._set_state(SetTradingState(TradingState.RUNNING.value, message.reason))

    def _risk_as_stored(self) -> RestoreRisk:
        """What the validator rebuilds its totals from after a restart (called on the
        validator's thread; neither actor asked ever waits on the validator)."""
        live = self._journal.ask(Load("load_live_orders"), timeout=ASK_TIMEOUT)
        positions = self._keeper.ask(GetPositions(), timeout=ASK_TIMEOUT)
        return RestoreRisk(tuple(live), tuple(positions))


def modification_of(message: ModifyOrder) -> Modification:
    """The change a ModifyOrder asks for, read at the boundary (ValueError names the field)."""

    def price(value: object, name: str) -> Decimal | None:
        if value is None:
            return None
        number = parse_money(value, name)
        if number <= 0:
            raise ValueError(f"{name}: must be positive, got {number}")
        return number

    quantity = message.new_quantity
    if quantity is not None and (isinstance(quantity, bool) or not isinstance(quantity, int)):
        raise ValueError(f"new_quantity: must be an int, got {type(quantity).__name__}")
    if quantity is not None and quantity <= 0:
        raise ValueError(f"new_quantity: must be positive, got {quantity}")
    return Modification(
        quantity=quantity,
        price=price(message.new_price, "new_price"),
        trigger_price=price(message.new_trigger_price, "new_trigger_price"),
    )


def _number(text: str | None) -> Decimal:
    return Decimal(text) if text is not None else Decimal(0)
