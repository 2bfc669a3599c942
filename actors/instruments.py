"""InstrumentMaster: the broker's instrument master the order checks use, loaded at
start and again every morning.

At start it takes today's master from the database if it is there (a restart needs no
download), else fetches it from the broker and caches it. Each morning, once the broker
has published the new day's list, a thread of its own fetches it again. When it cannot
be fetched, the OMS says so (log, and ``problem``, which ``health()`` shows): an older
cached master is used if there is one; without any, the built-in tick table applies and
derivative orders are refused (see ``domain.risk.check_instrument``).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import date, datetime, time, timedelta

from actors.brokers.kite_rates import IST, ist_today
from domain.instruments import Instrument, InstrumentBook
from persistence.instrument_store import InstrumentStore

log = logging.getLogger("oms.instruments")

# Kite publishes the day's instrument list before the market opens (it is regenerated
# around 08:30 Asia/Kolkata); loading it a little after that catches the new contracts.
REFRESH_AT = time(8, 45)
RETRY_SECONDS = 600.0


def ist_now() -> datetime:
    return datetime.now(IST)


def next_refresh(now: datetime, at: time = REFRESH_AT) -> datetime:
    """The next ``at`` (Asia/Kolkata) after ``now``."""
    now = now.astimezone(IST)
    candidate = datetime.combine(now.date(), at, tzinfo=IST)
    return candidate if candidate > now else candidate + timedelta(days=1)


class InstrumentMaster:
    """Owns the master in force (an InstrumentBook, swapped whole: call the master to
    read it, from any thread), its cache (an InstrumentStore) and the refresh thread."""

    def __init__(
        self,
        fetch: Callable[[], list[Instrument]],
        store: InstrumentStore,
        *,
        today: Callable[[], date] = ist_today,
        now: Callable[[], datetime] = ist_now,
        retry: float = RETRY_SECONDS,
    ) -> None:
        self._fetch = fetch
        self._store = store
        self._today = today
        self._now = now
        self._retry = retry
        self._book = InstrumentBook(problem="the instrument master is not loaded yet")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self) -> InstrumentBook:
        return self._book

    def load(self) -> InstrumentBook:
        """Put today's master in force: the cache's, or the broker's (then cached)."""
        day = self._today()
        try:
            cached_day, cached = self._store.load()
        except Exception as error:  # the cache is a convenience: the broker still has it
            log.warning("the cached instrument master cannot be read: %s", error)
            cached_day, cached = None, []
        if cached_day == day and cached:
            self._book = InstrumentBook.of(cached, day)
            log.info("instrument master of %s from the database: %d instruments", day, len(cached))
            return self._book
        try:
            rows = self._fetch()
            if not rows:
                raise ValueError("the broker's instrument list was empty")
        except Exception as error:
            self._book = self._without_today(f"{type(error).__name__}: {error}", cached_day, cached)
            log.error("%s", self._book.problem)
            return self._book
        try:
            self._store.replace(day, rows)
        except Exception as error:  # used all the same; the next start fetches it again
            log.warning("the instrument master could not be cached in the database: %s", error)
        self._book = InstrumentBook.of(rows, day)
        log.info("instrument master of %s loaded from the broker: %d instruments", day, len(rows))
        return self._book

    @staticmethod
    def _without_today(why: str, cached_day: date | None, cached: list[Instrument]) -> InstrumentBook:
        if cached_day is not None and cached:
            return InstrumentBook.of(
                cached, cached_day, f"today's instrument master could not be loaded ({why}); using the one of {cached_day}",
            )
        return InstrumentBook(problem=(
            f"the instrument master could not be loaded ({why}): the built-in tick table applies "
            "and derivative (F&O) orders are refused"
        ))

    # ------------------------------------------------------------------ the refresh thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="instrument-master")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self._thread = None
        self._store.close()

    def _seconds_to_next_load(self) -> float:
        if self._book.problem is not None:
            return self._retry
        now = self._now()
        return max(1.0, (next_refresh(now) - now).total_seconds())

    def _run(self) -> None:
        while not self._stop.wait(self._seconds_to_next_load()):
            try:
                self.load()
            except Exception:  # never let the thread die: the next morning tries again
                log.exception("loading the instrument master failed")
