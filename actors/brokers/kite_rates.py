"""Kite's request limits, kept on our side so Kite never has to refuse us for the rate.

Kite counts per account (orders) and per API key (everything else): order requests
(place, modify, cancel) 10 a second, 400 a minute, 5,000 a day; other calls 10 a second;
quotes 1 a second (shared/ZERODHA.md). Zerodha changes these, so every number comes
from the settings (``KiteRateLimits``).

A ``RateGate`` guards one family of calls. A call takes its turn (callers are served one
after another, in the order they came) and waits until every window has room; when the
wait would be longer than ``wait_max`` it is refused at once with ``RateRefused``,
naming the limit, and nothing is sent. The windows of seconds and minutes are a sliding
log kept in a pyrate-limiter bucket; the day is a count per Asia/Kolkata calendar day,
because Kite's day starts at midnight there, not 24 hours after our first order.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from pyrate_limiter import InMemoryBucket, Rate, RateItem

from domain.broker import BrokerUnavailable

IST = timezone(timedelta(hours=5, minutes=30), "IST")
# Requests leave here spaced by the window plus this much: they reach Kite a little
# later and not always equally late, and it is Kite's clock that counts them.
JITTER_GUARD = 0.1  # seconds
# After Kite answers 429 the family waits this long before its next request.
BACKOFF_AFTER_429 = 1.0  # seconds


class RateRefused(BrokerUnavailable):
    """Not sent: Kite's limit would have made the request wait longer than allowed."""


@dataclass(frozen=True, slots=True)
class KiteRateLimits:
    """The limits in force (None: no such limit) and the longest a request may wait."""

    orders_per_second: int | None = 10
    orders_per_minute: int | None = 400
    orders_per_day: int | None = 5000
    calls_per_second: int | None = 10
    quotes_per_second: int | None = 1
    wait_max: float = 5.0  # seconds


@dataclass(frozen=True, slots=True)
class Window:
    limit: int
    seconds: float
    label: str  # "10 order requests a second": how a refusal names it


class _Turns:
    """First come, first served: a ticket each, called in order (a plain Lock does
    not promise the order in which waiting threads get it)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next = 0
        self._serving = 0

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self._cond:
            ticket = self._next
            self._next += 1
            while ticket != self._serving:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._serving += 1
                self._cond.notify_all()


def _effective(windows: Sequence[Window]) -> list[Window]:
    """The windows that can ever bind, shortest first. A longer window that allows as
    much per second as a shorter one never binds, nor does a shorter one that allows
    as many as a longer one; pyrate-limiter wants neither in its list."""
    kept: list[Window] = []
    for window in sorted(windows, key=lambda w: w.seconds):
        while kept and kept[-1].limit >= window.limit:
            kept.pop()  # the shorter window allows as many as this longer one
        if kept and window.limit / (window.seconds + JITTER_GUARD) >= kept[-1].limit / (kept[-1].seconds + JITTER_GUARD):
            continue  # allows at least the shorter window's pace: never binds
        kept.append(window)
    return kept


def ist_today() -> date:
    return datetime.now(IST).date()


class RateGate:
    """Owns one family's record of recent requests (the sliding windows in a
    pyrate-limiter bucket, the count of the current Asia/Kolkata day), a pause after a
    429, and the turn in which callers wait."""

    def __init__(
        self,
        family: str,
        windows: Sequence[Window],
        *,
        per_day: int | None = None,
        wait_max: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], date] = ist_today,
        observer: Callable[[str, float, bool], object] | None = None,
    ) -> None:
        self.family = family
        # Told (family, seconds waited, refused) after a request waited or was refused.
        self._observer = observer
        self._windows = _effective(windows)
        self._rates = [Rate(w.limit, int((w.seconds + JITTER_GUARD) * 1000)) for w in self._windows]
        self._bucket = InMemoryBucket(self._rates) if self._rates else None
        self._per_day = per_day
        self._wait_max = wait_max
        self._clock = clock
        self._today = today
        self._day: date | None = None
        self._day_count = 0
        self._not_before = 0.0  # monotonic seconds: a 429's pause
        self._turns = _Turns()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _wait(self) -> tuple[float, str]:
        """Seconds until every window has room, and the limit that binds longest."""
        longest, why = max(0.0, self._not_before - self._clock()), "the pause after Kite's HTTP 429 (too many requests)"
        if self._bucket is not None:
            now = self._now_ms()
            for window, rate in zip(self._windows, self._rates):
                oldest = self._bucket.peek(rate.limit - 1)  # the limit-th newest leaves first
                if oldest is not None:
                    wait = (oldest.timestamp + rate.interval + 1 - now) / 1000
                    if wait > longest:
                        longest, why = wait, f"Kite's limit of {window.label}"
        return longest, why

    def _day_is_full(self) -> bool:
        today = self._today()
        if today != self._day:
            self._day, self._day_count = today, 0
        return self._per_day is not None and self._day_count >= self._per_day

    def admit(self, what: str, sleep: Callable[[float], object] = time.sleep) -> float:
        """Wait for room, in turn, then count the request; answer the seconds waited.
        Raises RateRefused (nothing is counted, nothing must be sent) when the wait
        would pass ``wait_max``, or when ``sleep`` says it was interrupted (truthy)."""
        try:
            waited = self._admit(what, sleep)
        except RateRefused:
            if self._observer is not None:
                self._observer(self.family, 0.0, True)
            raise
        if self._observer is not None and waited > 0:
            self._observer(self.family, waited, False)
        return waited

    def _admit(self, what: str, sleep: Callable[[float], object]) -> float:
        with self._turns.turn():
            waited = 0.0
            while True:
                if self._day_is_full():
                    raise RateRefused(
                        f"{what} not sent: Kite's limit of {self._per_day:,} {self.family} a day is used up "
                        "(it starts again at midnight, Asia/Kolkata)"
                    )
                wait, why = self._wait()
                if wait <= 0:
                    if self._take():
                        return waited
                    wait = 0.001  # the bucket saw it otherwise within the millisecond: look again
                if waited + wait > self._wait_max:
                    raise RateRefused(
                        f"{what} not sent: {why} would hold it {waited + wait:.1f}s, "
                        f"longer than the {self._wait_max:g}s allowed (kite_rate_wait_max)"
                    )
                if sleep(wait):
                    raise RateRefused(f"{what} not sent: stopping while waiting for {why}")
                waited += wait

    def _take(self) -> bool:
        """Count one request now; False if a window has no room after all."""
        if self._bucket is not None:
            now = self._now_ms()
            if not self._bucket.put(RateItem(self.family, now)):
                return False
            self._bucket.leak(now)  # forget what no window counts any more
        self._day_count += 1
        return True

    def count_today(self, already: int) -> None:
        """``already`` requests of this family were made today before this gate existed
        (an OMS started again mid-session): the day's count goes on from there."""
        with self._turns.turn():
            self._day_is_full()  # rolls the day over if it changed
            self._day_count = max(self._day_count, already)

    def hold_off(self, seconds: float = BACKOFF_AFTER_429) -> None:
        """Kite said 429: nothing more of this family until ``seconds`` from now."""
        self._not_before = max(self._not_before, self._clock() + seconds)


@dataclass(frozen=True, slots=True)
class KiteGates:
    """The gates one Kite account's calls go through, shared by all its clients."""

    orders: RateGate
    calls: RateGate
    quotes: RateGate

    @classmethod
    def from_limits(
        cls, limits: KiteRateLimits, clock: Callable[[], float] = time.monotonic,
        observer: Callable[[str, float, bool], object] | None = None,
    ) -> "KiteGates":
        def window(limit: int | None, seconds: float, label: str) -> list[Window]:
            return [] if limit is None else [Window(limit, seconds, label.format(n=f"{limit:,}"))]

        orders = window(limits.orders_per_second, 1, "{n} order requests a second") + window(
            limits.orders_per_minute, 60, "{n} order requests a minute"
        )
        return cls(
            orders=RateGate("order requests", orders, per_day=limits.orders_per_day, wait_max=limits.wait_max, clock=clock,
                            observer=observer),
            calls=RateGate("calls", window(limits.calls_per_second, 1, "{n} calls a second"), wait_max=limits.wait_max,
                           clock=clock, observer=observer),
            quotes=RateGate("quotes", window(limits.quotes_per_second, 1, "{n} quotes a second"), wait_max=limits.wait_max,
                            clock=clock, observer=observer),
        )
