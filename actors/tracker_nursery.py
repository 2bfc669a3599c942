"""TrackerNursery: starts order trackers, and stops the ones still alive at shutdown."""
from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Callable

import pykka

from actors.base import OMSActor, dispatch, handles, tell_quietly
from actors.messages import Assign, StartTracker, StartTrackers, StopTrackers, TrackerDone, TrackerStarted
from actors.order_tracker import MAX_MODIFICATIONS, OrderTracker

log = logging.getLogger("oms.nursery")
# Trackers kept started and idle, so a new order does not wait for a thread to start.
SPARES = 16
# Starting a thread gets slower as threads multiply (~0.1 ms with a few alive, ~0.26 ms
# with 5,000) and holds the GIL meanwhile; measured with thousands of trackers alive, a
# spare started in the background costs the order in flight more than it saves.
SPARES_WHILE_FEWER_THAN = 1000
STARTERS = 4


@dispatch
class TrackerNursery(OMSActor):
    """Owns the lifecycle of every order tracker: which are alive, and a few spares
    started ahead of need (each still serves exactly one order, then stops).

    Takes StartTracker (give a spare, or a new tracker, its order and first message,
    then tell the supervisor TrackerStarted), StartTrackers (asked at start-up: many at
    once), TrackerDone (forget one that stopped itself) and StopTrackers (asked at
    shutdown: stop every tracker still alive, spares too, and wait for each).

    Starting a thread costs a fraction of a millisecond; doing it here keeps that off
    the supervisor, which every strategy's next order waits on.
    """

    # Its state is which trackers are alive (refs it was given, nothing derived), which
    # stays right across a failure: a restart keeps it and handles the message again.
    heals = True
    asked = (StartTrackers, StopTrackers)

    def __init__(
        self, *, journal, gateway, keeper, validator, supervisor, clock: Callable[[], datetime], spares: int = SPARES,
        max_modifications: int = MAX_MODIFICATIONS,
    ) -> None:
        super().__init__()
        self.supervisor = supervisor
        self._collaborators = dict(
            journal=journal, gateway=gateway, keeper=keeper, validator=validator, supervisor=supervisor, clock=clock,
            max_modifications=max_modifications,
        )
        self._live: dict[int, pykka.ActorRef] = {}
        self._spares: deque[pykka.ActorRef] = deque()
        self._target_spares = spares

    def on_start(self) -> None:
        self._top_up()

    def on_receive(self, message):
        result = super().on_receive(message)
        if self.actor_inbox.empty():
            self._top_up()  # idle moments start the next orders' threads ahead of need
        return result

    def _top_up(self) -> None:
        if len(self._live) >= SPARES_WHILE_FEWER_THAN:
            return
        while len(self._spares) < self._target_spares and self.actor_inbox.empty():
            self._spares.append(OrderTracker.start(None, **self._collaborators))

    def _spawn(self, message: StartTracker) -> pykka.ActorRef:
        if self._spares:
            tracker = self._spares.popleft()
            tracker.tell(Assign(message.order, message.first, message.applied_trade_ids))
        else:
            tracker = OrderTracker.start(message.order, applied_trade_ids=message.applied_trade_ids, **self._collaborators)
            tracker.tell(message.first)
        self._live[message.order.order_id] = tracker
        return tracker

    @handles(StartTracker)
    def _start(self, message: StartTracker) -> None:
        tracker = self._spawn(message)
        if not tell_quietly(self.supervisor, TrackerStarted(message.order.order_id, tracker)):
            tracker.stop()  # the supervisor is shutting down: nobody will route to it

    @handles(StartTrackers)
    def _start_many(self, message: StartTrackers) -> list[tuple[int, pykka.ActorRef]]:
        """Thousands of live orders at start-up: a thread start is mostly a wait on the
        OS (with the GIL released), so a few starters overlap those waits."""

        def start(item: StartTracker) -> pykka.ActorRef:
            return OrderTracker.start(item.order, applied_trade_ids=item.applied_trade_ids, **self._collaborators)

        with ThreadPoolExecutor(max_workers=STARTERS, thread_name_prefix="tracker-starter") as starters:
            trackers = list(starters.map(start, message.starts))
        for item, tracker in zip(message.starts, trackers):
            self._live[item.order.order_id] = tracker
            tracker.tell(item.first)
        return [(item.order.order_id, tracker) for item, tracker in zip(message.starts, trackers)]

    @handles(TrackerDone)
    def _done(self, message: TrackerDone) -> None:
        self._live.pop(message.order_id, None)

    @handles(StopTrackers)
    def _stop_all(self, message: StopTrackers) -> int:
        self._target_spares = 0
        trackers, self._live = [*self._live.values(), *self._spares], {}
        self._spares.clear()
        for future in [t.stop(block=False) for t in trackers]:
            try:
                future.get(timeout=10)
            except Exception:
                log.exception("a tracker did not stop cleanly")
        return len(trackers)
