"""Writing the paper exchange's book: each operation's changes in one transaction.

The exchange hands over the rows one operation changed (before it reports anything);
``BookWriter`` commits them. When the database cannot take them (it is away, or the
disk is full), the exchange does not stop: it is the broker's far side, and a broker
stays up while the OMS's database is down (the OMS holds the broker's news meanwhile).
So the rows are held, merged by key (an order or a price is written whole, as it now
stands), and written with a later operation's once the database answers again, retried
with backoff so a database that is away does not slow every price move. What is still
held when the exchange's book is closed is lost from the book, and said so in the log.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from persistence.paper_book import (
    PaperBookStore,
    PaperCounters,
    PaperOrderRecord,
    PaperPriceRecord,
    PaperTradeRecord,
)

log = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 0.2
LAST_RETRY_SECONDS = 5.0


@dataclass
class BookChanges:
    """The rows one or more operations changed, by key: the latest version of each."""

    orders: dict[str, PaperOrderRecord] = field(default_factory=dict)
    trades: list[PaperTradeRecord] = field(default_factory=list)
    prices: dict[tuple[str, str], PaperPriceRecord] = field(default_factory=dict)
    counters: PaperCounters | None = None

    def __bool__(self) -> bool:
        return bool(self.orders or self.trades or self.prices or self.counters is not None)

    def merge(self, later: BookChanges) -> None:
        self.orders.update(later.orders)
        self.trades.extend(later.trades)
        self.prices.update(later.prices)
        if later.counters is not None:
            self.counters = later.counters

    def describe(self) -> str:
        return f"{len(self.orders)} orders, {len(self.trades)} trades, {len(self.prices)} prices"


class BookWriter:
    """Owns the book store and the changes not yet written to it."""

    def __init__(self, store: PaperBookStore) -> None:
        self.store = store
        self._held = BookChanges()
        self._retry_at = 0.0  # time.monotonic(): pacing retries is not the exchange's clock
        self._delay = FIRST_RETRY_SECONDS

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def write(self, changes: BookChanges, *, now: bool = False) -> bool:
        """Commit ``changes`` (after anything held from before, in one transaction).
        True once written; False if held for later. Never raises. ``now`` skips the
        backoff (a last try before closing)."""
        if changes:
            self._held.merge(changes)
        if not self._held:
            return True
        if not now and time.monotonic() < self._retry_at:
            return False  # the database was away a moment ago: held, tried again later
        held = self._held
        try:
            self.store.save(
                orders=held.orders.values(), trades=held.trades, prices=held.prices.values(), counters=held.counters
            )
        except Exception as error:  # noqa: BLE001 - whatever it was, the change is held, not lost
            self._failed(error)
            return False
        if self._retry_at:
            log.warning("paper exchange (account %s): its book is written again (%s held meanwhile)",
                        self.store.account, held.describe())
        self._held = BookChanges()
        self._retry_at = 0.0
        self._delay = FIRST_RETRY_SECONDS
        return True

    def _failed(self, error: Exception) -> None:
        if not self._retry_at:  # said once per outage, not at every price move
            log.warning(
                "paper exchange (account %s): its book cannot be written (%s); the exchange goes on "
                "from memory and writes what it holds once the database answers",
                self.store.account, _first_line(error),
            )
        else:
            log.debug("paper exchange: book still not written: %r", error)
        self._retry_at = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, LAST_RETRY_SECONDS)

    def close(self) -> None:
        """Write what is held (one last try), then close the store."""
        if self._held and not self.write(BookChanges(), now=True):
            log.error(
                "paper exchange (account %s): closed with %s never written; after a restart the "
                "exchange will not know them", self.store.account, self._held.describe(),
            )
        self.store.close()


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
