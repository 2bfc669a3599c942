"""The MIS square-off: intraday (MIS) positions on the equity and F&O exchanges are
closed by the OMS at a set time of day (15:15 IST by default), before the broker's own
square-off (15:20 at Zerodha) closes them at whatever price and for a fee; after it, no
new MIS position is opened that day. Pure: the time is passed in."""
from __future__ import annotations

from datetime import date, datetime, time

from domain.enums import Exchange
from domain.market_hours import IST, MarketCalendar

# The exchanges whose MIS the square-off closes: those that close at 15:30. Currency and
# commodity MIS run later (the broker squares them off near their own close).
SQUARE_OFF_EXCHANGES = frozenset({Exchange.NSE, Exchange.BSE, Exchange.NFO, Exchange.BFO})


def past_square_off(exchange: Exchange, now: datetime, at: time) -> bool:
    """Whether ``now`` is at or after the day's square-off for ``exchange``'s MIS."""
    return exchange in SQUARE_OFF_EXCHANGES and now.astimezone(IST).time() >= at


def square_off_due(now: datetime, at: time, done_on: date | None, calendar: MarketCalendar) -> bool:
    """Whether the square-off should run now: a trading day, at or after ``at`` and
    before the close (after it, orders are not taken), and not yet run today."""
    local = now.astimezone(IST)
    day = local.date()
    if done_on == day or local.weekday() >= 5 or calendar.holiday(Exchange.NSE.value, day) is not None:
        return False
    session = calendar.sessions.get(Exchange.NSE.value)
    closes = session.closes if session is not None else time(15, 30)
    return at <= local.time() < closes
