"""When each exchange takes orders, in its own clock (Asia/Kolkata), and its holidays.

Pure: the time is passed in, and the holiday list is parsed from text the caller reads
(``domain/data/holidays.csv`` ships with the package), so the calendar is data a trader
can update without touching code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Mapping

IST = timezone(timedelta(hours=5, minutes=30), "IST")


@dataclass(frozen=True, slots=True)
class Session:
    """The window in which orders are taken: ``opens`` inclusive, ``closes`` exclusive
    (an order at 15:30:00 on NSE is after the close)."""

    opens: time
    closes: time


# The normal market of each segment (shared/ZERODHA.md: NSE 9:15-15:30). Pre-open
# (9:00-9:08) and the closing session (15:40-16:00) are left out on purpose: orders
# placed there behave differently, and a strategy that means to use them should ask for
# it. Currency derivatives trade 9:00-17:00; MCX 9:00-23:30 (it closes at 23:55 while
# the US is on winter time: 23:30 is the safe side).
SESSIONS: Mapping[str, Session] = {
    "NSE": Session(time(9, 15), time(15, 30)),
    "BSE": Session(time(9, 15), time(15, 30)),
    "NFO": Session(time(9, 15), time(15, 30)),
    "BFO": Session(time(9, 15), time(15, 30)),
    "CDS": Session(time(9, 0), time(17, 0)),
    "BCD": Session(time(9, 0), time(17, 0)),
    "MCX": Session(time(9, 0), time(23, 30)),
}


@dataclass(frozen=True, slots=True)
class MarketCalendar:
    """Sessions per exchange and the holidays (date -> name) per exchange."""

    holidays: Mapping[str, Mapping[date, str]] = field(default_factory=dict)
    sessions: Mapping[str, Session] = field(default_factory=lambda: dict(SESSIONS))

    def holiday(self, exchange: str, day: date) -> str | None:
        return self.holidays.get(exchange, {}).get(day)

    def is_open(self, exchange: str, now: datetime) -> tuple[bool, str]:
        """Whether ``exchange`` takes orders at ``now`` (aware), and why not in words."""
        local = now.astimezone(IST)
        session = self.sessions.get(exchange)
        if session is None:
            return False, f"no trading hours are known for {exchange}"
        day = local.date()
        stamp = local.strftime("%a %d %b %Y %H:%M:%S IST")
        if local.weekday() >= 5:
            return False, f"{exchange} is closed on weekends (now {stamp})"
        name = self.holiday(exchange, day)
        if name is not None:
            return False, f"{exchange} is closed for {name} (now {stamp})"
        hours = f"{session.opens:%H:%M}-{session.closes:%H:%M} IST"
        if not session.opens <= local.time() < session.closes:
            return False, f"{exchange} is open {hours}; now is {stamp}"
        return True, f"{exchange} is open {hours} (now {stamp})"


def ist_date(now: datetime) -> date:
    """The trading day ``now`` (aware) falls in: the calendar day in Asia/Kolkata."""
    return now.astimezone(IST).date()


def parse_holidays(text: str) -> dict[str, dict[date, str]]:
    """``date,exchanges,name`` lines (``#`` comments and the header skipped) as
    exchange -> {date: name}. A malformed line raises ValueError naming it."""
    holidays: dict[str, dict[date, str]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("date,"):
            continue
        parts = line.split(",", 2)
        if len(parts) != 3:
            raise ValueError(f"holidays line {number}: expected date,exchanges,name, got {line!r}")
        try:
            day = date.fromisoformat(parts[0].strip())
        except ValueError:
            raise ValueError(f"holidays line {number}: {parts[0]!r} is not a YYYY-MM-DD date") from None
        for exchange in parts[1].split():
            holidays.setdefault(exchange, {})[day] = parts[2].strip()
    return holidays
