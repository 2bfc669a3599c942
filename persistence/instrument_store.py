"""InstrumentStore: the cached instrument master in the ``instruments`` table.

It writes on a connection of its own, apart from the Journal (the writer of every
order's state): the master is reference data from the broker, replaced whole once a
day, and a load of ~100,000 rows must never hold up an order's write behind it. The
replacement is one transaction, so a reader sees the old master or the new one, never
a mix; a failure leaves the old one in place.
"""
from __future__ import annotations

from datetime import date

from sqlalchemy import delete, func, insert, select

from domain.instruments import Instrument
from persistence.database import create_engine_for
from persistence.schema import instruments

CHUNK = 5000  # rows per INSERT: bounded statements whatever the master's size


class InstrumentStore:
    """Owns an engine on the OMS database for the ``instruments`` table."""

    def __init__(self, database_url: str) -> None:
        self._engine = create_engine_for(database_url)

    def close(self) -> None:
        self._engine.dispose()

    def loaded_on(self) -> date | None:
        """The day of the master held, or None when none is."""
        with self._engine.connect() as connection:
            return connection.execute(select(func.max(instruments.c.loaded_on))).scalar()

    def load(self) -> tuple[date | None, list[Instrument]]:
        """The master held, and its day."""
        with self._engine.connect() as connection:
            rows = connection.execute(select(instruments)).mappings().all()
        if not rows:
            return None, []
        return max(r["loaded_on"] for r in rows), [
            Instrument(
                exchange=r["exchange"], symbol=r["tradingsymbol"], tick_size=r["tick_size"], lot_size=r["lot_size"],
                instrument_type=r["instrument_type"], segment=r["segment"], name=r["name"],
                token=r["instrument_token"], expiry=r["expiry"], strike=r["strike"],
            )
            for r in rows
        ]

    def replace(self, loaded_on: date, rows: list[Instrument]) -> None:
        """Put ``rows`` in place of the master held, in one transaction."""
        values = [
            {
                "exchange": i.exchange, "tradingsymbol": i.symbol, "instrument_token": i.token, "name": i.name[:128],
                "instrument_type": i.instrument_type, "segment": i.segment, "expiry": i.expiry, "strike": i.strike,
                "tick_size": i.tick_size, "lot_size": i.lot_size, "loaded_on": loaded_on,
            }
            for i in rows
        ]
        with self._engine.begin() as connection:
            connection.execute(delete(instruments))
            for start in range(0, len(values), CHUNK):
                connection.execute(insert(instruments), values[start:start + CHUNK])
