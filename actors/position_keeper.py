"""PositionKeeper: positions, average prices, realized and unrealized P&L, charges."""
from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import datetime
from typing import Any, Callable

import pykka

from actors.base import OMSActor, answer, dispatch, fail, handles, tell_quietly
from actors.journal import write
from actors.messages import (
    ApplyFill,
    CorrectPosition,
    GetPositions,
    Load,
    MarkPrice,
    PositionChanged,
    RecordFinding,
    RecordPosition,
    RecordPositions,
    ReplayUnappliedFills,
)
from domain.enums import Exchange, Product
from domain.fill import Fill
from domain.position import Position, PositionChange, apply_fill, mark
from domain.reconciliation import RESOLUTION, StalePosition, corrected
from persistence.group_write import TradeNotUnapplied

log = logging.getLogger("oms.positions")
PositionKey = tuple[Exchange, str, Product]
# Bounds one group, so the first tracker in it never waits long.
MAX_GROUP = 500
# Trade ids remembered in memory; a duplicate older than these is caught by the database.
RECENT_TRADE_IDS = 50_000


class RecentIds:
    """The last ``capacity`` ids added, for a quick "seen it?"; older ones fall out."""

    def __init__(self, capacity: int) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def __contains__(self, item: object) -> bool:
        return item in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, item: str) -> None:
        self._ids[item] = None
        self._ids.move_to_end(item)
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


@dispatch
class PositionKeeper(OMSActor):
    """Owns every position, keyed by (exchange, symbol, product), and a window of the
    trade ids most recently applied to them (the database's ``position_applied`` mark is
    the judge for older ones, so memory stays bounded all day).

    Takes ApplyFill, MarkPrice (revalues in memory; written at the next fill or at stop),
    GetPositions, ReplayUnappliedFills and CorrectPosition (the reconciler's: the
    broker's quantity, stored with its reconciliation_log row). Tells the validator PositionChanged.

    A fill moves its position exactly once: fills queued together are applied as one
    group, committed in ONE transaction with their trades' "applied" marks, and only
    then kept in memory, told to the validator and answered (a tracker's reply future,
    or the ask's return value). If the commit fails, memory is left as it was and the
    fills are tried one by one, so one bad fill fails alone. A trade already applied is
    not applied again.
    """

    def __init__(self, journal: pykka.ActorRef, validator: pykka.ActorRef, clock: Callable[[], datetime], supervisor=None) -> None:
        super().__init__()
        self.supervisor = supervisor
        self._journal = journal
        self._validator = validator
        self._clock = clock
        self._positions: dict[PositionKey, Position] = {}
        self._applied = RecentIds(RECENT_TRADE_IDS)
        self._marked: set[PositionKey] = set()  # revalued since last written
        self._waiting: list[ApplyFill] = []

    heals = True
    asked = (GetPositions, CorrectPosition)

    def on_start(self) -> None:
        for position in self._journal.ask(Load("load_positions")):
            self._positions[position.key] = position
        self._replay()

    def restart(self) -> None:
        """Positions as the database holds them, then every fill it holds that no
        position reflects yet; fills waiting for the next group stay waiting. (Last
        prices newer than the database's are kept: they are the market's.)"""
        marked = {key: self._positions[key] for key in self._marked if key in self._positions}
        self._positions = {p.key: p for p in self._journal.ask(Load("load_positions"))}
        for key, position in marked.items():
            if key in self._positions and position.last_price is not None:
                self._positions[key] = mark(self._positions[key], position.last_price, position.updated_at)
        self._applied = RecentIds(RECENT_TRADE_IDS)  # the database judges duplicates meanwhile
        self._replay()

    def on_stop(self) -> None:
        self._apply_waiting()
        for key in sorted(self._marked, key=str):
            try:
                self._journal.ask(RecordPosition(self._positions[key]))
            except Exception:
                log.exception("could not write the last price of %s", key)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ApplyFill) and message.reply is not None:
            self._waiting.append(message)
            if len(self._waiting) >= MAX_GROUP or self.actor_inbox.empty():
                self._apply_waiting()
            return None
        self._apply_waiting()
        return super().on_receive(message)

    # --- applying fills ---------------------------------------------------------------

    def _apply(self, fills: list[Fill]) -> dict[str, PositionChange]:
        """Apply ``fills`` as one committed group, or raise leaving everything as it was.
        Answers what each fill did (by trade id)."""
        staged: dict[PositionKey, Position] = {}
        changes: list[tuple[PositionChange, Fill]] = []
        seen: set[str] = set()
        for fill in fills:
            if fill.trade_id in self._applied or fill.trade_id in seen:
                continue
            seen.add(fill.trade_id)
            key = fill.position_key
            before = staged.get(key) or self._positions.get(key) or Position(fill.exchange, fill.symbol, fill.product)
            change = apply_fill(
                before, fill.side, fill.quantity, fill.price, fill.charges.total, fill.at, fill.stop_loss, fill.take_profit,
            )
            staged[key] = change.after
            changes.append((change, fill))
        if not changes:
            return {}
        # Joins the journal's group commit with the trackers' writes queued beside it.
        write(self._journal, RecordPositions(tuple((c.after, f.trade_id) for c, f in changes)))
        for change, fill in changes:
            self._positions[change.after.key] = change.after
            self._applied.add(fill.trade_id)
            self._marked.discard(change.after.key)
            tell_quietly(self._validator, PositionChanged(change.before, change.after, fill))
        return {fill.trade_id: change for change, fill in changes}

    def _apply_waiting(self) -> None:
        group, self._waiting = self._waiting, []
        if not group:
            return
        try:
            changes = self._apply([m.fill for m in group])
        except Exception as error:
            if len(group) == 1:
                fill = group[0].fill
                if isinstance(error, TradeNotUnapplied) and self._already_applied(fill):
                    answer(group[0].reply, None)  # applied before: this time it changed nothing
                    return
                log.error("fill %s not applied: %r", fill.trade_id, error)
                fail(group[0].reply, error)
                return
            for message in group:  # find the one that fails; the others go through
                self._waiting = [message]
                self._apply_waiting()
            return
        for message in group:  # each hears what its own fill did, whatever came after it
            answer(message.reply, changes.get(message.fill.trade_id))

    def _already_applied(self, fill: Fill) -> bool:
        """A trade older than the window, applied before: the database says so. Memory
        did not know it, so its position is taken from the database, the judge: a write
        whose answer was lost may have moved it there and not here."""
        if not self._journal.ask(Load("trade_applied", (fill.trade_id,))):
            return False
        log.info("fill %s was applied to its position already; not again", fill.trade_id)
        self._applied.add(fill.trade_id)
        key = fill.position_key
        stored = next((p for p in self._journal.ask(Load("load_positions")) if p.key == key), None)
        before = self._positions.get(key)
        if stored is not None and (before is None or _booked(stored) != _booked(before)):
            log.warning("position %s:%s %s is %d in the database, %d here; taking the database's",
                        key[0].value, key[1], key[2].value, stored.quantity, before.quantity if before else 0)
            if before is not None and before.last_price is not None and key in self._marked:
                stored = mark(stored, before.last_price, before.updated_at)
            self._positions[key] = stored
            tell_quietly(self._validator, PositionChanged(before or Position(*key), stored, None))
        return True

    @handles(ApplyFill)
    def _apply_fill(self, message: ApplyFill) -> PositionChange | None:
        return self._apply([message.fill]).get(message.fill.trade_id)

    def _replay(self) -> None:
        # Fills committed with their trade but not with their position (a crash or a
        # failed tracker in between) are applied now; the marks make it exactly once.
        for fill in self._journal.ask(Load("load_unapplied_fills")):
            if fill.trade_id not in self._applied:
                log.warning("applying fill %s recorded but not yet applied", fill.trade_id)
                self._apply([fill])

    @handles(ReplayUnappliedFills)
    def _replay_unapplied(self, message: ReplayUnappliedFills) -> None:
        self._replay()

    # --- corrections from reconciliation ---------------------------------------------

    @handles(CorrectPosition)
    def _correct(self, message: CorrectPosition) -> Position:
        """The broker's quantity, if ours is still what the reconciler compared (fills
        waiting in the inbox were applied first): a fill that arrived meanwhile is never
        overwritten. Stored with its reconciliation_log row, then kept and told."""
        difference = message.difference
        # A fill recorded with its trade but not yet with its position is no difference
        # from the broker: applied first, it makes the comparison stale.
        self._replay()
        before = self._positions.get(difference.key)
        held = before.quantity if before is not None else 0
        if held != difference.internal_quantity:
            raise StalePosition(
                f"{difference.symbol} is now {held}, not the {difference.internal_quantity} compared with the broker's"
            )
        after = corrected(before, difference, message.at)
        log.warning(
            "%s %s:%s %s: ours %d, the broker's %d; set to the broker's",
            difference.issue_type.value, difference.exchange.value, difference.symbol, difference.product.value,
            held, difference.broker_quantity,
        )
        self._journal.ask(RecordFinding(
            message.at, difference.issue_type.value, difference.symbol, exchange=difference.exchange,
            product=difference.product, internal_quantity=held, broker_quantity=difference.broker_quantity,
            resolved=True, resolution=f"{RESOLUTION}: position set to the broker's quantity",
            metadata={"broker_average_price": difference.broker_average_price, "average_price_before":
                      before.average_price if before is not None else None},
            position=after,
        ))
        self._positions[difference.key] = after
        self._marked.discard(difference.key)
        tell_quietly(self._validator, PositionChanged(before or Position(*difference.key), after, None))
        return after

    # --- prices and queries -----------------------------------------------------------

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


def _booked(position: Position) -> tuple:
    """What fills move in a position (not the market's last price)."""
    return position.quantity, position.average_price, position.realized_pnl, position.charges
