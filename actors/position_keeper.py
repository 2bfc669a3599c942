"""PositionKeeper: positions, average prices, realized and unrealized P&L, charges."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable

import pykka

from actors.base import OMSActor, dispatch, handles, tell_quietly
from actors.messages import ApplyFill, GetPositions, Load, MarkPrice, PositionChanged, RecordPosition
from domain.enums import Exchange, Product
from domain.fill import Fill
from domain.position import Position, apply_fill, mark

log = logging.getLogger("oms.positions")
PositionKey = tuple[Exchange, str, Product]


@dispatch
class PositionKeeper(OMSActor):
    """Owns every position, keyed by (exchange, symbol, product).

    Takes ApplyFill (from an order tracker, whose reply future is completed once the
    position is committed together with the trade's "applied" mark, so a fill moves a
    position exactly once even across a crash; asked without a future, it answers the
    new Position after the commit), MarkPrice (revalues positions in memory;
    written at the next fill or at stop) and GetPositions. Tells the validator
    PositionChanged after every committed change.
    """

    def __init__(self, journal: pykka.ActorRef, validator: pykka.ActorRef, clock: Callable[[], datetime], supervisor=None) -> None:
        super().__init__()
        self.supervisor = supervisor
        self._journal = journal
        self._validator = validator
        self._clock = clock
        self._positions: dict[PositionKey, Position] = {}
        self._marked: set[PositionKey] = set()  # revalued since last written

    def on_start(self) -> None:
        for position in self._journal.ask(Load("load_positions")):
            self._positions[position.key] = position
        # Fills committed with their trade but not yet with their position (a crash in
        # between) are applied now; the "applied" mark makes this exactly once.
        for fill in self._journal.ask(Load("load_unapplied_fills")):
            log.warning("applying fill %s recorded before a restart", fill.trade_id)
            self._apply(fill)

    def on_stop(self) -> None:
        for key in sorted(self._marked, key=str):
            try:
                self._journal.ask(RecordPosition(self._positions[key]))
            except Exception:
                log.exception("could not write the last price of %s", key)

    def _apply(self, fill: Fill, reply=None) -> Position:
        before = self._positions.get(fill.position_key) or Position(fill.exchange, fill.symbol, fill.product)
        after = apply_fill(before, fill.side, fill.quantity, fill.price, fill.charges.total, fill.at).after
        if reply is None:
            self._journal.ask(RecordPosition(after, fill.trade_id))
        else:
            # The journal answers the tracker after the commit; the keeper moves on, so
            # fills of many orders are committed together instead of one after another.
            self._journal.tell(RecordPosition(after, fill.trade_id, reply))
        self._positions[after.key] = after
        self._marked.discard(after.key)
        tell_quietly(self._validator, PositionChanged(before, after, fill))
        return after

    @handles(ApplyFill)
    def _apply_fill(self, message: ApplyFill) -> Position:
        return self._apply(message.fill, message.reply)

    @handles(MarkPrice)
    def _mark(self, message: MarkPrice) -> None:
        for product in Product:
            key = (message.exchange, message.symbol, product)
            position = self._positions.get(key)
            if position is not None:
                self._positions[key] = mark(position, message.price, message.at)
                self._marked.add(key)

    @handles(GetPositions)
    def _get(self, message: GetPositions) -> list[Position]:
        return sorted(self._positions.values(), key=lambda p: (p.exchange.value, p.symbol, p.product.value))
