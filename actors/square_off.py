"""The MIS square-off: once a trading day reaches the square-off time, the OMS cancels
the open MIS orders and closes the MIS positions on NSE/BSE/NFO/BFO, once that day."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any

from actors.kill_switch import flatten
from actors.messages import StandDownExits
from domain.enums import Product
from domain.market_hours import MarketCalendar, ist_date
from domain.square_off import square_off_due

if TYPE_CHECKING:
    from actors.oms import OMS

log = logging.getLogger("oms.square_off")


class MisSquareOff:
    """Owns a thread that reads the trading clock every ``poll`` seconds (the clock is
    the OMS's, so a test moves time rather than waiting for it) and the day it last
    squared off. Closing goes through the OMS's public handle, like the kill switch, with
    the OMS's own exits standing down meanwhile."""

    def __init__(
        self, oms: OMS, clock: Callable[[], datetime], at: time, calendar: MarketCalendar,
        poll: float = 1.0, timeout: float = 60.0,
    ) -> None:
        self._oms = oms
        self._clock = clock
        self._at = at
        self._calendar = calendar
        self._poll = poll
        self._timeout = timeout
        self._done_on: date | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mis-square-off", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self._timeout + 5)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self._clock()
            if square_off_due(now, self._at, self._done_on, self._calendar):
                try:
                    self.square_off(now)
                except Exception:  # the OMS stopping, a broker away: logged, tried again next poll
                    log.exception("MIS square-off failed; trying again")
            self._stop.wait(self._poll)

    def square_off(self, now: datetime) -> Mapping[str, Any]:
        log.warning("MIS square-off at %s IST: cancelling open MIS orders, closing MIS positions", f"{self._at:%H:%M}")
        self._oms.supervisor.tell(StandDownExits(True))
        try:
            done = flatten(self._oms, self._timeout, "mis_square_off", frozenset({Product.MIS}))
        finally:
            self._oms.supervisor.tell(StandDownExits(False))
        self._done_on = ist_date(now)
        level = logging.WARNING if done["all_closed"] else logging.CRITICAL
        log.log(level, "MIS square-off: %d orders cancelled, %d exit orders, %d MIS positions still open",
                len(done["cancelled"]), len(done["exit_orders"]), len(done["remaining"]))
        return done
