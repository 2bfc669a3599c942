"""TrackerNursery: starts order trackers, and stops the ones still alive at shutdown."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable

import pykka

from actors.base import OMSActor, dispatch, handles, tell_quietly
from actors.messages import StartTracker, StartTrackers, StopTrackers, TrackerDone, TrackerStarted
from actors.order_tracker import OrderTracker

log = logging.getLogger("oms.nursery")


@dispatch
class TrackerNursery(OMSActor):
    """Owns the lifecycle of every order tracker: which are alive.

    Takes StartTracker (start one, hand it its first message, tell the supervisor
    TrackerStarted), StartTrackers (asked at start-up: many at once), TrackerDone (forget one that stopped itself) and StopTrackers
    (asked at shutdown: stop every tracker still alive and wait for each).

    Starting a thread costs a fraction of a millisecond; doing it here keeps that off
    the supervisor, which every strategy's next order waits on.
    """

    def __init__(self, *, journal, gateway, keeper, validator, supervisor, clock: Callable[[], datetime]) -> None:
        super().__init__()
        self.supervisor = supervisor
        self._collaborators = dict(
            journal=journal, gateway=gateway, keeper=keeper, validator=validator, supervisor=supervisor, clock=clock,
        )
        self._live: dict[str, pykka.ActorRef] = {}

    def _spawn(self, message: StartTracker) -> pykka.ActorRef:
        tracker = OrderTracker.start(message.order, applied_trade_ids=message.applied_trade_ids, **self._collaborators)
        self._live[message.order.order_id] = tracker
        tracker.tell(message.first)
        return tracker

    @handles(StartTracker)
    def _start(self, message: StartTracker) -> None:
        tracker = self._spawn(message)
        if not tell_quietly(self.supervisor, TrackerStarted(message.order.order_id, tracker)):
            tracker.stop()  # the supervisor is shutting down: nobody will route to it

    @handles(StartTrackers)
    def _start_many(self, message: StartTrackers) -> list[tuple[str, pykka.ActorRef]]:
        return [(start.order.order_id, self._spawn(start)) for start in message.starts]

    @handles(TrackerDone)
    def _done(self, message: TrackerDone) -> None:
        self._live.pop(message.order_id, None)

    @handles(StopTrackers)
    def _stop_all(self, message: StopTrackers) -> int:
        trackers, self._live = list(self._live.values()), {}
        for future in [t.stop(block=False) for t in trackers]:
            try:
                future.get(timeout=10)
            except Exception:
                log.exception("a tracker did not stop cleanly")
        return len(trackers)
