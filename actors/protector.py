"""Protector: the OMS's own protective exits, an OCO pair per protected entry."""
from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta
from typing import Any

import pykka

from actors.base import OMSActor, dispatch, handles, tell_quietly
from actors.messages import GetPositions, Load, StandDownExits
from actors.trading import (
    CancelAccepted,
    CancelOrder,
    ModifyAccepted,
    ModifyOrder,
    OrderAccepted,
    OrderChanged,
    OrderFilled,
    OrderRefused,
    PlaceOrder,
)
from domain.exits import Cancel, Place, Resize, exit_of, exit_request, is_protected_entry, plan_exits
from domain.order import Order
from domain.position import PositionKey

log = logging.getLogger("oms.exits")

ASK_TIMEOUT = 30.0
# A step the OMS refuses this many times in a row (a risk check, the broker) is not tried
# again until something changes; the log says the entry is unprotected.
GIVE_UP_AFTER = 3


@dispatch
class Protector(OMSActor):
    """Owns, per instrument, the protected entries that have filled and their exit legs
    (the latest view of each), and the steps it has in flight (one per entry and role).

    Takes OrderChanged and OrderFilled (it subscribes to every order), the answers to
    its own commands (OrderAccepted, ModifyAccepted, CancelAccepted, OrderRefused) and
    StandDownExits (the kill switch's: nothing is done while it flattens). It
    sends PlaceOrder, ModifyOrder and CancelOrder to the supervisor, as a strategy does,
    so every leg is checked, recorded and tracked like any order. It keeps each
    instrument's position as the orders' fills add up to it (from the keeper's at start),
    and at start reads the orders of each open position. The sizing rules are
    ``domain.exits``.
    """

    def __init__(self, *, supervisor: pykka.ActorRef, keeper: pykka.ActorRef, journal: pykka.ActorRef) -> None:
        super().__init__()
        self.supervisor = supervisor
        self._keeper = keeper
        self._journal = journal
        self._entries: dict[PositionKey, dict[int, Order]] = {}
        self._legs: dict[PositionKey, dict[int, Order]] = {}
        # (entry id, role) -> the instrument, and for a resize or a cancel the leg and what
        # it should show once done: the step is in flight until the leg's own view shows
        # it (the broker's "accepted" can come before the order's committed change).
        self._in_flight: dict[tuple[int, str], tuple[PositionKey, int | None, int | None]] = {}
        self._refusals: Counter[tuple[int, str]] = Counter()
        # The position per instrument as the orders' own views add up to it: the legs are
        # sized from these views, so the position must come from the same views (the
        # keeper's moves a moment before the order that filled is seen, and sizing from
        # the one with the other would shrink a leg for a fill it does not yet show).
        self._position: dict[PositionKey, int] = {}
        self._counted: dict[int, int] = {}  # order id -> its fills already in _position
        self._standing_down = False  # the kill switch is flattening: its orders close the positions

    heals = True

    def on_start(self) -> None:
        self._rebuild()

    def restart(self) -> None:
        self._entries, self._legs, self._in_flight, self._position, self._counted = {}, {}, {}, {}, {}
        self._rebuild()

    def _rebuild(self) -> None:
        """The positions, the fills of the live orders (which are in them already), and
        the entries and legs of every open position: the orders in its instrument since
        it opened. Legs that went missing while the OMS was down are placed again. (At
        start-up this runs before any order's tracker, so nothing moves meanwhile.)"""
        positions = self._keeper.ask(GetPositions(), timeout=ASK_TIMEOUT)
        self._position = {p.key: p.quantity for p in positions}
        for order in self._journal.ask(Load("load_live_orders"), timeout=ASK_TIMEOUT):
            self._counted[order.order_id] = order.filled_quantity
        for position in positions:
            if position.quantity == 0:
                continue
            since = (position.opened_at or position.updated_at)
            if since is None:
                continue
            orders = self._journal.ask(
                Load("load_orders_in", (position.exchange, position.symbol, position.product, since - timedelta(seconds=1))),
                timeout=ASK_TIMEOUT,
            )
            for order in orders:
                self._keep(order)
            # An entry may be older than its position (a LIMIT that rested overnight).
            known = set(self._entries.get(position.key, {}))
            for entry_id in {exit_of(leg) for leg in self._legs.get(position.key, {}).values()} - known:
                entry = self._journal.ask(Load("load_order", (entry_id,)), timeout=ASK_TIMEOUT)
                if entry is not None:
                    self._keep(entry)
            self._ensure(position.key)

    # --- what happens to orders ---------------------------------------------------------

    @handles(OrderChanged, OrderFilled)
    def _seen(self, message: OrderChanged | OrderFilled) -> None:
        order = message.order
        key = order.position_key
        counted = self._counted.get(order.order_id, 0)
        moved = order.filled_quantity > counted
        if moved:
            self._position[key] = self._position.get(key, 0) + order.side.sign * (order.filled_quantity - counted)
            self._counted[order.order_id] = order.filled_quantity
        if exit_of(order) is not None:
            self._settle_steps(order)
        # Any fill in a protected instrument may change what the legs should cover (the
        # strategy closing part of the position itself, say).
        if self._keep(order) or (moved and self._entries.get(key)):
            self._ensure(key)

    def _settle_steps(self, leg: Order) -> None:
        """A resize is done once the leg shows its new quantity, a cancel once the leg
        has ended (a leg that ended settles any step on it)."""
        for correlation, (_, leg_id, expected) in list(self._in_flight.items()):
            if leg_id == leg.order_id and (leg.is_terminal or leg.quantity == expected):
                del self._in_flight[correlation]

    def _keep(self, order: Order) -> bool:
        """Keep ``order`` if it is a leg or a protected entry that has filled."""
        key = order.position_key
        if exit_of(order) is not None:
            self._legs.setdefault(key, {})[order.order_id] = order
            return True
        if order.filled_quantity > 0 and is_protected_entry(order):
            self._entries.setdefault(key, {})[order.order_id] = order
            return True
        return False

    # --- the answers to its own commands ------------------------------------------------

    @handles(OrderAccepted)
    def _placed(self, message: OrderAccepted) -> None:
        # The new leg's view came first (committed before the broker's answer is told).
        step = self._in_flight.pop(message.correlation_id, None)
        self._refusals.pop(message.correlation_id, None)
        if step is not None:
            self._ensure(step[0])

    @handles(ModifyAccepted, CancelAccepted)
    def _accepted(self, message: Any) -> None:
        # Settled when the leg's view shows the change (``_settle_steps``).
        self._refusals.pop(message.correlation_id, None)

    @handles(OrderRefused)
    def _refused(self, message: OrderRefused) -> None:
        self._in_flight.pop(message.correlation_id, None)
        entry_id, role = message.correlation_id
        self._refusals[message.correlation_id] += 1
        if message.failed_check in ("not_modifiable", "not_cancellable"):
            # The leg moved on (it filled, or ended) as the step went out: its news follows.
            log.info("exit %s of entry %s: %s", role, entry_id, message.reason)
            return
        level = logging.CRITICAL if self._refusals[message.correlation_id] >= GIVE_UP_AFTER else logging.ERROR
        log.log(level, "entry %s: its %s exit was refused (%s: %s); %s", entry_id, role, message.failed_check,
                message.reason, "it stays UNPROTECTED until its position changes"
                if level == logging.CRITICAL else "tried again at the next change")

    @handles(StandDownExits)
    def _stand_down(self, message: StandDownExits) -> None:
        if message.stand_down == self._standing_down:
            return
        self._standing_down = message.stand_down
        log.warning("the OMS's exits %s", "stand down (kill switch)" if message.stand_down else "are managed again")
        if not message.stand_down:
            for key in list(self._entries):
                self._ensure(key)

    # --- bringing the legs to what the entries need -------------------------------------

    def _ensure(self, key: PositionKey) -> None:
        if self._standing_down:
            return
        entries = sorted(self._entries.get(key, {}).values(), key=lambda o: o.order_id)
        if not entries:
            self._legs.pop(key, None)
            return
        legs = list(self._legs.get(key, {}).values())
        steps = plan_exits(entries, legs, self._position.get(key, 0))
        for step in steps:
            entry_id = step.entry.order_id if isinstance(step, Place) else exit_of(step.leg)
            correlation = (entry_id, step.role)
            if correlation in self._in_flight or self._refusals[correlation] >= GIVE_UP_AFTER:
                continue
            me = self.actor_ref
            if isinstance(step, Place):
                self._in_flight[correlation] = (key, None, None)
                log.info("entry %s filled %d: placing its %s exit for %d", entry_id, step.entry.filled_quantity,
                         step.role, step.quantity)
                command: Any = PlaceOrder(exit_request(step.entry, step.role, step.quantity), reply_to=me,
                                          correlation_id=correlation)
            elif isinstance(step, Resize):
                self._in_flight[correlation] = (key, step.leg.order_id, step.quantity)
                command = ModifyOrder(step.leg.order_id, new_quantity=step.quantity, reply_to=me, correlation_id=correlation)
            else:
                assert isinstance(step, Cancel)
                self._in_flight[correlation] = (key, step.leg.order_id, None)
                command = CancelOrder(step.leg.order_id, reply_to=me, correlation_id=correlation)
            if not tell_quietly(self.supervisor, command):
                self._in_flight.pop(correlation, None)
        self._forget_settled(key, entries, legs, steps)

    def _forget_settled(self, key: PositionKey, entries: list[Order], legs: list[Order], steps: list) -> None:
        """An entry that has ended, with no leg working and nothing to do, is done: its
        views are let go, so memory follows the open positions, not the day."""
        busy = {entry_id for entry_id, _ in self._in_flight}
        working = {exit_of(leg) for leg in legs if not leg.is_terminal}
        planned = {s.entry.order_id if isinstance(s, Place) else exit_of(s.leg) for s in steps}
        for entry in entries:
            if entry.is_terminal and entry.order_id not in busy | working | planned:
                del self._entries[key][entry.order_id]
                for leg in legs:
                    if exit_of(leg) == entry.order_id:
                        self._legs[key].pop(leg.order_id, None)
