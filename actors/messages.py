"""Every message the actors exchange among themselves. All are immutable; replies
travel either as the return value of an ``ask`` or through a ``reply`` future carried in
the message (when the answer comes later, from another actor). The messages strategies
use are in ``actors.trading`` (re-exported here)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pykka
from pydantic import SecretStr

from actors.trading import (  # the public part, re-exported for the actors' use
    CancelOrder,
    ModifyOrder,
    OrderChanged,
    OrderFilled,
    PlaceOrder,
    Reply,
    Subscribe,
)
from domain.broker import BrokerOrderRequest, BrokerOrderUpdate, BrokerPosition, BrokerTrade
from domain.enums import Exchange, OrderStatus, Product, Variety
from domain.fill import Fill
from domain.order import Modification, Order, OrderEvent
from domain.order_request import OrderRequest
from domain.position import Position
from domain.reconciliation import Difference

__all__ = ["CancelOrder", "ModifyOrder", "OrderChanged", "OrderFilled", "PlaceOrder", "Reply", "Subscribe"]


# --- to the supervisor (from strategies, the OMS handle and children) -------------

@dataclass(frozen=True, slots=True)
class GetOrder:
    order_id: int


@dataclass(frozen=True, slots=True)
class GetActiveOrders:
    """Every order still working (not yet terminal)."""


# Lists are read on the reader's own connection, a page at a time: ``after_id`` is a
# cursor (the last row id seen), ``limit`` the page size (MAX_PAGE at most).
MAX_PAGE = 10_000


@dataclass(frozen=True, slots=True)
class GetOrders:
    """Orders in id order, optionally only of some statuses or one strategy."""

    statuses: tuple[OrderStatus, ...] | None = None
    strategy_id: int | None = None
    after_id: int = 0
    limit: int = 1000
    reply: Reply | None = field(default=None, compare=False)
    newest_first: bool = False  # the ``limit`` newest, newest first (a dashboard's view)


@dataclass(frozen=True, slots=True)
class GetHealth:
    """RUNNING, DEGRADED (with the reason) or HALTED."""


@dataclass(frozen=True, slots=True)
class GetTradingState:
    """Answered with (state, reason)."""


@dataclass(frozen=True, slots=True)
class SetTradingState:
    """RUNNING, REDUCE_ONLY or HALTED, with the reason; recorded before it takes effect.
    Answered with the state."""

    state: str
    reason: str
    # The kill switch's: the OMS's own exits stand down while it flattens (until RUNNING).
    stand_down_exits: bool = False


@dataclass(frozen=True, slots=True)
class StandDownExits:
    """To the Protector: place, resize and cancel nothing (True) until told False."""

    stand_down: bool


@dataclass(frozen=True, slots=True)
class RecordDayBaseline:
    """Asked of the journal: the totals when ``day`` began, kept unless the day has them
    already; answered with the day's baseline as stored (realized, unrealized, charges)."""

    day: date
    realized: Decimal
    unrealized: Decimal
    charges: Decimal
    at: datetime


@dataclass(frozen=True, slots=True)
class RecordTradingState:
    """Asked of the journal: one row of ``trading_states``."""

    state: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class GetPositions:
    """Every position the keeper holds, flat ones included."""


@dataclass(frozen=True, slots=True)
class Reconcile:
    """Compare positions (and orders) with the broker's now; answered with the
    ReconciliationReport through ``reply``."""

    reply: Reply | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class GetFills:
    """Fills (``trades`` rows) in the order recorded, of one order or all."""

    order_id: int | None = None
    after_id: int = 0
    limit: int = 1000
    reply: Reply | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class GetEvents:
    """The audit trail in the order written, of one order or all."""

    order_id: int | None = None
    after_id: int = 0
    limit: int = 1000
    reply: Reply | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class LoadOrder:
    """One order as the database holds it (asked of a reader)."""

    order_id: int


@dataclass(frozen=True, slots=True)
class LoadOrderByClientId:
    """The account's order placed with this client order id, or None (asked of a reader)."""

    client_order_id: str


@dataclass(frozen=True, slots=True)
class ForgetClientOrder:
    """A placement with a client order id ended without an order the OMS can vouch for
    (it was not recorded, or not sent): the supervisor forgets the id, so a retry reads
    the database's word for it. ``placement`` is the placement's shared reply."""

    client_order_id: str
    placement: Any = field(compare=False)


@dataclass(frozen=True, slots=True)
class MarkPrice:
    exchange: Exchange
    symbol: str
    price: Decimal
    at: datetime
    # The day's circuit limits, when the price's source knows them (Kite's quote()).
    lower_circuit: Decimal | None = None
    upper_circuit: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Boot:
    """Start the children and recover live state; answered when ready."""


@dataclass(frozen=True, slots=True)
class TrackerFinished:
    order_id: int


@dataclass(frozen=True, slots=True)
class Recovered:
    """From a tracker resumed at start-up: its order has been looked up at the broker
    and settled by what the broker said (filled, cancelled, still working, or failed)."""

    order_id: int


@dataclass(frozen=True, slots=True)
class AwaitRecovery:
    """Answered through ``reply`` (with the orders' statuses by count) once every order
    resumed at start-up has been looked up at the broker."""

    reply: Reply | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Checked:
    """From the validator: the outcome of a CheckOrder told with ``reply_to``."""

    order_id: int
    request: OrderRequest
    result: Any
    reply: Reply = field(compare=False)


@dataclass(frozen=True, slots=True)
class ChildRestarted:
    """A shared actor failed on a message and was restarted in place (see OMSActor)."""

    actor: str
    message: str
    error: str


@dataclass(frozen=True, slots=True)
class RestartTracker:
    """To the supervisor from its own timer: start the failed tracker of this order again."""

    order_id: int


@dataclass(frozen=True, slots=True)
class Resume:
    """Leave HALTED or REDUCE_ONLY: trading starts again, with a fresh restart budget."""

    reason: str = "resumed by the operator"


@dataclass(frozen=True, slots=True)
class SetAccessToken:
    """The broker's fresh session token (after the daily login); a SecretStr, so no
    repr of the message (a failure's log line) ever shows it. ``reply`` hears whether
    the broker has sessions at all (the paper exchange has none)."""

    token: SecretStr
    reply: pykka.Future


@dataclass(frozen=True, slots=True)
class ChildFailed:
    actor: str
    order_id: int | None
    message: str
    error: str


# --- to the validator ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CheckOrder:
    """Run the pre-trade checks; a passing order's margin is reserved at once. Asked, the
    answer is the ValidationResult; told with ``reply_to``, the answer is a Checked
    message to it (carrying ``reply`` along)."""

    order_id: int
    request: OrderRequest
    reply_to: pykka.ActorRef | None = field(default=None, compare=False)
    reply: Reply | None = field(default=None, compare=False)
    # Trading is REDUCE_ONLY (this says why): only an order that shrinks a position passes.
    reduce_only: str | None = None


@dataclass(frozen=True, slots=True)
class CheckModification:
    order_id: int
    request: OrderRequest
    filled_quantity: int


@dataclass(frozen=True, slots=True)
class OrderWorking:
    """The order's current working state (after an ack, fill or modification)."""

    order: Order


@dataclass(frozen=True, slots=True)
class OrderClosed:
    order_id: int


@dataclass(frozen=True, slots=True)
class PositionChanged:
    before: Position
    after: Position
    fill: Fill | None


@dataclass(frozen=True, slots=True)
class DailyLossLimitHit:
    """From the validator to the supervisor: the day's net loss reached the limit; trading
    is to move to ``action`` (REDUCE_ONLY or HALTED) for ``reason``."""

    day: Any
    limit: Decimal
    action: str
    reason: str


@dataclass(frozen=True, slots=True)
class RestoreRisk:
    """Live orders and positions read back at start-up."""

    orders: tuple[Order, ...]
    positions: tuple[Position, ...]


@dataclass(frozen=True, slots=True)
class GetRiskState:
    """The validator's running totals (for operators and tests)."""


# --- to an order tracker ----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Submit:
    reply: Reply = field(compare=False)
    placed_at: float = 0.0
    """time.perf_counter() when the supervisor took the PlaceOrder (the latency's start)."""


@dataclass(frozen=True, slots=True)
class Recover:
    """Resume an order read back from the database (never re-sends it)."""


@dataclass(frozen=True, slots=True)
class Cancel:
    reply: Reply = field(compare=False)


@dataclass(frozen=True, slots=True)
class Modify:
    change: Modification
    reply: Reply = field(compare=False)


@dataclass(frozen=True, slots=True)
class ModifyNotSent:
    """The supervisor refused a modification before the tracker saw it (a pre-trade
    check, or a change this order cannot take): the tracker records it in the order's
    audit trail. The caller has been answered already."""

    change: Modification
    reason: str
    check: str


@dataclass(frozen=True, slots=True)
class BrokerAccepted:
    broker_order_id: str


@dataclass(frozen=True, slots=True)
class BrokerRefused:
    reason: str
    broker_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class BrokerUnreachable:
    reason: str


@dataclass(frozen=True, slots=True)
class BrokerUnsure:
    reason: str


@dataclass(frozen=True, slots=True)
class BrokerCancelAccepted:
    """The broker took the cancel request; a CANCELLED update confirms it."""


@dataclass(frozen=True, slots=True)
class BrokerCancelRefused:
    reason: str


@dataclass(frozen=True, slots=True)
class BrokerModifyAccepted:
    change: Modification


@dataclass(frozen=True, slots=True)
class BrokerModifyRefused:
    reason: str
    # The request may have been carried out (a timeout, a 5xx after Kite took it): the
    # broker's next update of the order says which.
    unsure: bool = False


@dataclass(frozen=True, slots=True)
class LookupResult:
    """What the broker holds under our tag (None: it has no such order)."""

    found: BrokerOrderUpdate | None
    trades: tuple[BrokerTrade, ...] = ()
    # Whether "not found" is final: true for the in-process paper exchange; a real
    # broker's reads lag, so one miss there proves nothing.
    authoritative: bool = False


# --- to the broker gateway --------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PlaceAtBroker:
    order_id: int
    request: BrokerOrderRequest
    tracker: pykka.ActorRef = field(compare=False)


@dataclass(frozen=True, slots=True)
class CancelAtBroker:
    order_id: int
    broker_order_id: str
    tracker: pykka.ActorRef = field(compare=False)
    variety: Variety = Variety.REGULAR


@dataclass(frozen=True, slots=True)
class ModifyAtBroker:
    order_id: int
    broker_order_id: str
    change: Modification
    tracker: pykka.ActorRef = field(compare=False)
    variety: Variety = Variety.REGULAR


@dataclass(frozen=True, slots=True)
class FindByTag:
    order_id: int
    tag: str
    tracker: pykka.ActorRef = field(compare=False)


@dataclass(frozen=True, slots=True)
class Route:
    """Deliver the broker's events for this order (recovered with a broker id) here."""

    order_id: int
    tag: str
    broker_order_id: str | None
    tracker: pykka.ActorRef = field(compare=False)


@dataclass(frozen=True, slots=True)
class Forget:
    order_id: int


@dataclass(frozen=True, slots=True)
class FromBroker:
    """An update or trade pushed by the broker (through its event sink)."""

    event: BrokerOrderUpdate | BrokerTrade


# --- to the position keeper -------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ApplyFill:
    """Move the position by one committed fill. With a ``reply`` future, the future is
    completed once the position is committed (the keeper itself does not wait), with the
    PositionChange this fill made (None when the fill had moved it already)."""

    fill: Fill
    reply: Reply | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ReplayUnappliedFills:
    """Apply the fills the database holds but no position reflects yet (after a tracker
    failed between recording a fill and handing it over)."""


# --- to the journal ---------------------------------------------------------------
# A write told with a ``reply`` future joins the next group commit and is answered after
# it; a write asked without one is committed on its own before the ask returns.

@dataclass(frozen=True, slots=True)
class RecordNewOrder:
    order: Order
    event: OrderEvent
    reply: Reply | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class RecordSubmission:
    """A new order's PENDING row and its SUBMITTED transition, in one transaction:
    both are durable before the broker is called."""

    pending: Order
    created: OrderEvent
    submitted: Order
    sent: OrderEvent
    reply: Reply | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class RecordRefusal:
    """Store a refused order, tell ``notify`` (the supervisor) OrderChanged, then fail
    the strategy's reply with ``error``."""

    order: Order
    event: OrderEvent
    error: Exception = field(compare=False)
    reply: Reply = field(compare=False)
    notify: pykka.ActorRef | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class RecordTransition:
    """``intent``: the change records something about to be asked of the broker (a
    cancel, a modification); refused rather than held while the database is away."""

    order: Order
    event: OrderEvent
    reply: Reply | None = field(default=None, compare=False)
    intent: bool = False


@dataclass(frozen=True, slots=True)
class RecordFill:
    fill: Fill
    order: Order
    event: OrderEvent
    reply: Reply | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class RecordPosition:
    position: Position
    applied_trade_id: str | None = None
    reply: Reply | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class RecordPositions:
    """Several positions, each with the trade that moved it, in one transaction."""

    changes: tuple[tuple[Position, str | None], ...]
    reply: Reply | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class ReserveIds:
    """Reserve ``count`` order ids from the database's sequence; answered by telling
    ``reply_to`` IdsReserved (the supervisor never waits on the database for an id)."""

    count: int
    reply_to: pykka.ActorRef = field(compare=False)


@dataclass(frozen=True, slots=True)
class IdsReserved:
    ids: tuple[int, ...]
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Ready:
    """Asked once an actor is started: answered after its on_start has run (pykka runs
    on_start before any message), so the caller knows it is connected."""


@dataclass(frozen=True, slots=True)
class RetryHeld:
    """To the journal from its own timer: try the held writes again."""


@dataclass(frozen=True, slots=True)
class DatabaseDown:
    """From the journal: the database is unavailable; broker news is held."""

    reason: str


@dataclass(frozen=True, slots=True)
class DatabaseUp:
    """From the journal: the database answers again and every held write is in."""


@dataclass(frozen=True, slots=True)
class ReconcileTick:
    """The reconciler's own timer: time for the periodic pass."""


@dataclass(frozen=True, slots=True)
class GetBrokerBook:
    """Asked of the gateway: the broker's positions and orders, read now."""


@dataclass(frozen=True, slots=True)
class FetchMissedFills:
    """Asked of the gateway: read one order's trades from the broker and hand them, then
    ``update`` (the order as the broker last listed it), to its tracker, which applies
    each trade once, by id. Answers whether the order has a live tracker to take them."""

    update: BrokerOrderUpdate


@dataclass(frozen=True, slots=True)
class SettleByBook:
    """Asked of the gateway by the reconciler: an order whose placement is still unsure
    long after it was sent is settled by the broker's order book, read just now: ``found``
    (with its trades) or, None, never taken. Answers whether its tracker was told."""

    order_id: int
    tag: str
    found: BrokerOrderUpdate | None


@dataclass(frozen=True, slots=True)
class ResumeOrder:
    """Asked of the supervisor by the reconciler: give an order that has ended a tracker
    again, to look it up by tag and record the fills the broker has and the OMS missed
    (a fill of a CANCELLED order that arrived after a restart). Answers whether one runs."""

    order_id: int


@dataclass(frozen=True, slots=True)
class BrokerBook:
    positions: tuple[BrokerPosition, ...]
    orders: tuple[BrokerOrderUpdate, ...]
    delivery_moves_to_holdings: bool = False


@dataclass(frozen=True, slots=True)
class CorrectPosition:
    """Asked of the position keeper: set the position to the broker's quantity, if it
    still holds ``difference.internal_quantity`` (else StalePosition: a fill moved it
    meanwhile, and the next pass looks again). Answers the corrected Position."""

    difference: Difference
    at: datetime


@dataclass(frozen=True, slots=True)
class RecordFinding:
    """Asked of the journal: one ``reconciliation_log`` row, and the position it
    corrected (if any), in one transaction."""

    at: datetime
    issue_type: str
    symbol: str
    exchange: Exchange | str | None = None
    product: Product | str | None = None
    internal_quantity: int | None = None
    broker_quantity: int | None = None
    resolved: bool = False
    resolution: str | None = None
    order_id: int | None = None
    metadata: Any = None
    position: Position | None = None


@dataclass(frozen=True, slots=True)
class Load:
    """A read: ``what`` names a Store read method, ``args`` its arguments."""

    what: str
    args: tuple[Any, ...] = ()


# --- to the alerter ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EvaluateAlerts:
    """Evaluate the thresholds now (the alerter's timer tells it; asked, it answers the
    AlertChanges of this evaluation)."""


@dataclass(frozen=True, slots=True)
class GetAlerts:
    """Asked of the alerter: the alerts active now, most severe first."""
