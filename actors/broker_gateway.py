"""BrokerGateway: the only actor that talks to the broker."""
from __future__ import annotations

import logging
import threading

import pykka

from actors.base import OMSActor, answer, dispatch, handles, tell_quietly
from actors.messages import (
    BrokerAccepted,
    BrokerBook,
    BrokerCancelAccepted,
    BrokerCancelRefused,
    BrokerModifyAccepted,
    BrokerModifyRefused,
    BrokerRefused,
    BrokerUnreachable,
    BrokerUnsure,
    CancelAtBroker,
    FetchMissedFills,
    FindByTag,
    Forget,
    FromBroker,
    GetBrokerBook,
    LookupResult,
    ModifyAtBroker,
    PlaceAtBroker,
    Ready,
    Route,
    SetAccessToken,
    SettleByBook,
)
from domain.broker import (
    Broker,
    BrokerAmbiguous,
    BrokerOrderUpdate,
    BrokerRejected,
    BrokerTrade,
    BrokerUnavailable,
)
from observability.metrics import OMSMetrics

log = logging.getLogger("oms.gateway")


def _kind(error: Exception) -> str:
    """An error's kind for the broker-errors metric."""
    if isinstance(error, BrokerRejected):
        return "refused"
    if isinstance(error, BrokerUnavailable):
        return "unavailable"
    if isinstance(error, BrokerAmbiguous):
        return "ambiguous"
    return "unexpected"


def _reason(error: Exception) -> str:
    """The broker's own words for a refusal; otherwise what went wrong."""
    return error.reason if isinstance(error, BrokerRejected) else f"{type(error).__name__}: {error}"


class _Sink:
    """The broker's event sink: turns each pushed event into a message to the gateway,
    so events are handled on the gateway's thread, in the order they came."""

    def __init__(self, gateway: pykka.ActorRef) -> None:
        self._gateway = gateway

    def on_order_update(self, update: BrokerOrderUpdate) -> None:
        tell_quietly(self._gateway, FromBroker(update))

    def on_trade(self, trade: BrokerTrade) -> None:
        tell_quietly(self._gateway, FromBroker(trade))


@dispatch
class BrokerGateway(OMSActor):
    """Owns the broker client and the routes from our orders' tags and the broker's
    order ids to order trackers.

    Takes PlaceAtBroker, CancelAtBroker, ModifyAtBroker, FindByTag, Route, Forget,
    FromBroker, GetBrokerBook, FetchMissedFills and SettleByBook (the reconciler's:
    the broker's positions and orders, one order's trades, an unsure order settled by
    the order book) and SetAccessToken (a broker with sessions takes the fresh token). Each call's outcome goes back to the tracker that asked, as a message;
    a place that fails in an unexpected way is reported as unsure, never as refused,
    because the order may exist at the broker.

    A broker whose reads lag (``lookups_are_authoritative`` false) may say how patient a
    look-up must be: ``lookup_misses`` look-ups in a row, ``lookup_pause`` seconds apart.
    The gateway asks again on its own timer and only then answers "not found", as final;
    one miss proves nothing there (an order placed a moment ago may not be listed yet).
    """

    def __init__(
        self, broker: Broker, supervisor=None, connect_on_start: bool = True, metrics: OMSMetrics | None = None,
    ) -> None:
        super().__init__()
        self._metrics = metrics or OMSMetrics()
        self.supervisor = supervisor
        self._broker = broker
        # The supervisor connects at its first Ready, once every order resumed from the
        # last run has its route: the broker's first news (a poll delivers the whole day)
        # then reaches their trackers instead of being dropped as no one's.
        self._connect_on_start = connect_on_start
        self._connected = False
        self._trackers: dict[int, pykka.ActorRef] = {}
        self._by_tag: dict[str, int] = {}  # our tag -> our order id
        self._tags: dict[int, str] = {}  # our order id -> our tag
        self._order_ids: dict[str, int] = {}  # broker order id -> our order id
        self._broker_ids: dict[int, str] = {}  # our order id -> broker order id
        self._authoritative = bool(getattr(broker, "lookups_are_authoritative", False))
        self._patience = max(1, int(getattr(broker, "lookup_misses", 1)))
        self._pause = getattr(broker, "lookup_pause", 0.0)  # seconds
        self._misses: dict[int, int] = {}  # our order id -> look-ups in a row that missed
        self._failures: dict[int, int] = {}  # our order id -> look-ups in a row that failed
        self._timers: list[threading.Timer] = []

    # Its only state is the routes to live trackers, which stay right across a failure
    # (they are taken from trackers, not derived), so a restart keeps them and the broker.
    heals = True
    asked = (Ready, GetBrokerBook, FetchMissedFills, SettleByBook)

    def on_start(self) -> None:
        if self._connect_on_start:
            self._connect()

    def _connect(self) -> None:
        if not self._connected:
            self._broker.connect(_Sink(self.actor_ref))
            self._connected = True

    def on_stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
            timer.join(1)
        self._broker.close()

    def _route(self, order_id: int, tag: str, broker_order_id: str | None, tracker: pykka.ActorRef) -> None:
        self._trackers[order_id] = tracker
        self._by_tag[tag] = order_id
        self._tags[order_id] = tag
        if broker_order_id:
            self._order_ids[broker_order_id] = order_id
            self._broker_ids[order_id] = broker_order_id

    @handles(Ready)
    def _ready(self, message: Ready) -> bool:
        """Connects the broker if it is not yet: its listeners are up on return."""
        self._connect()
        return True

    @handles(Route)
    def _on_route(self, message: Route) -> None:
        self._route(message.order_id, message.tag, message.broker_order_id, message.tracker)

    @handles(Forget)
    def _forget(self, message: Forget) -> None:
        self._trackers.pop(message.order_id, None)
        tag = self._tags.pop(message.order_id, None)
        if tag is not None:
            self._by_tag.pop(tag, None)
        broker_order_id = self._broker_ids.pop(message.order_id, None)
        if broker_order_id is not None:
            self._order_ids.pop(broker_order_id, None)
        self._misses.pop(message.order_id, None)
        self._failures.pop(message.order_id, None)

    @handles(PlaceAtBroker)
    def _place(self, message: PlaceAtBroker) -> None:
        tag = message.request.tag
        self._route(message.order_id, tag, None, message.tracker)
        try:
            broker_order_id = self._broker.place(message.request)
        except BrokerRejected as refusal:
            outcome = BrokerRefused(refusal.reason, refusal.broker_order_id)
        except BrokerUnavailable as error:
            self._metrics.broker_error("place", _kind(error))
            outcome = BrokerUnreachable(str(error))
        except BrokerAmbiguous as error:
            self._metrics.broker_error("place", _kind(error))
            outcome = BrokerUnsure(str(error))
        except Exception as error:  # unknown failure: the order may exist
            log.exception("place of %s failed unexpectedly", message.order_id, extra={"order_id": message.order_id})
            self._metrics.broker_error("place", _kind(error))
            outcome = BrokerUnsure(f"{type(error).__name__}: {error}")
        else:
            self._route(message.order_id, tag, broker_order_id, message.tracker)
            outcome = BrokerAccepted(broker_order_id)
        tell_quietly(message.tracker, outcome)

    @handles(CancelAtBroker)
    def _cancel(self, message: CancelAtBroker) -> None:
        try:
            self._broker.cancel(message.broker_order_id, variety=message.variety)
        except Exception as error:
            if not isinstance(error, BrokerRejected):
                self._metrics.broker_error("cancel", _kind(error))
            tell_quietly(message.tracker, BrokerCancelRefused(_reason(error)))
        else:
            tell_quietly(message.tracker, BrokerCancelAccepted())

    @handles(ModifyAtBroker)
    def _modify(self, message: ModifyAtBroker) -> None:
        change = message.change
        try:
            self._broker.modify(
                message.broker_order_id,
                quantity=change.quantity,
                price=change.price,
                trigger_price=change.trigger_price,
                variety=message.variety,
            )
        except Exception as error:
            if not isinstance(error, BrokerRejected):
                self._metrics.broker_error("modify", _kind(error))
            tell_quietly(message.tracker, BrokerModifyRefused(_reason(error), unsure=isinstance(error, BrokerAmbiguous)))
        else:
            tell_quietly(message.tracker, BrokerModifyAccepted(change))

    @handles(FindByTag)
    def _find(self, message: FindByTag) -> None:
        try:
            found = self._broker.find_by_tag(message.tag)
            trades: tuple[BrokerTrade, ...] = ()
            if found is not None:
                self._route(message.order_id, message.tag, found.broker_order_id, message.tracker)
                trades = tuple(self._broker.trades(found.broker_order_id))
        except Exception as error:
            # A flaky broker is exactly when lookups happen: the order stays unsettled
            # (a non-authoritative miss) and the gateway lives on for every other order.
            log.warning("lookup of %s failed: %r", message.order_id, error, extra={"order_id": message.order_id})
            self._metrics.broker_error("lookup", _kind(error))
            if not self._again(message, self._failures):
                tell_quietly(message.tracker, LookupResult(None, (), authoritative=False))
            return
        self._failures.pop(message.order_id, None)
        authoritative = self._authoritative
        if found is None and not authoritative:
            if self._again(message, self._misses):
                return
            # Missed this many times in a row, over the broker's window: that is final.
            authoritative = self._patience > 1
        self._misses.pop(message.order_id, None)
        tell_quietly(message.tracker, LookupResult(found, trades, authoritative))

    def _again(self, message: FindByTag, counts: dict[int, int]) -> bool:
        """Ask the broker again later, unless patience is spent (then False)."""
        count = counts.get(message.order_id, 0) + 1
        if count >= self._patience:
            counts.pop(message.order_id, None)
            return False
        if not message.tracker.is_alive():
            counts.pop(message.order_id, None)
            return True  # nobody is waiting for the answer any more
        counts[message.order_id] = count
        me = self.actor_ref
        timer = threading.Timer(self._pause, lambda: tell_quietly(me, message))
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()
        return True

    @handles(SetAccessToken)
    def _set_access_token(self, message: SetAccessToken) -> None:
        renew = getattr(self._broker, "set_access_token", None)
        if renew is not None:
            renew(message.token)
        answer(message.reply, renew is not None)

    @handles(GetBrokerBook)
    def _book(self, message: GetBrokerBook) -> BrokerBook:
        """The broker's positions, then its orders (a fill between the two reads shows
        in the orders, so the reconciler sees it as still arriving)."""
        try:
            positions = tuple(self._broker.positions())
            orders = tuple(self._broker.orders())
        except Exception as error:
            self._metrics.broker_error("read_book", _kind(error))
            raise
        return BrokerBook(positions, orders, bool(getattr(self._broker, "delivery_moves_to_holdings", False)))

    @handles(FetchMissedFills)
    def _fetch_missed(self, message: FetchMissedFills) -> bool:
        update = message.update
        order_id = self._by_tag.get(update.tag) if update.tag else None
        if order_id is None:
            order_id = self._order_ids.get(update.broker_order_id)
        tracker = self._trackers.get(order_id) if order_id else None
        if tracker is None:
            return False
        for trade in self._broker.trades(update.broker_order_id):
            tell_quietly(tracker, trade)
        return tell_quietly(tracker, update)

    @handles(SettleByBook)
    def _settle_by_book(self, message: SettleByBook) -> bool:
        tracker = self._trackers.get(message.order_id)
        if tracker is None:
            return False
        trades: tuple[BrokerTrade, ...] = ()
        if message.found is not None:
            self._route(message.order_id, message.tag, message.found.broker_order_id, tracker)
            trades = tuple(self._broker.trades(message.found.broker_order_id))
        self._misses.pop(message.order_id, None)
        self._failures.pop(message.order_id, None)
        return tell_quietly(tracker, LookupResult(message.found, trades, authoritative=True))

    @handles(FromBroker)
    def _from_broker(self, message: FromBroker) -> None:
        event = message.event
        order_id = self._by_tag.get(event.tag) if event.tag else None
        if order_id is None:
            order_id = self._order_ids.get(event.broker_order_id)
        tracker = self._trackers.get(order_id) if order_id else None
        if tracker is None or not tell_quietly(tracker, event):
            # Not ours, or its tracker has finished: reconciliation settles it.
            level = logging.WARNING if isinstance(event, BrokerTrade) else logging.DEBUG
            log.log(level, "no live tracker for broker event %r", event)
