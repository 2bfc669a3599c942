"""The journal's group write (``Store.write_group``): many intents in one transaction,
each answered as its own write would have been, all or nothing."""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Iterator

import pytest
from sqlalchemy.exc import IntegrityError

from domain.enums import OrderStatus
from domain.order import apply_fill, transition
from domain.position import Position
from domain.position import apply_fill as position_after
from persistence.group_write import NewFill, NewOrder, OrderNotFound, PositionUpdate, TradeNotUnapplied, Transition
from persistence.store import Store
from tests.integration.test_persistence import NO_SUCH_ORDER, at, fill_for, new_order

S = OrderStatus
D = Decimal


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with Store.open(database_url) as store:
        yield store


def opened(order_id: int):
    """An order through PENDING, SUBMITTED and OPEN, as intents."""
    pending = new_order(order_id, when=at(order_id))  # (order, its PENDING event)
    submitted = transition(pending[0], S.SUBMITTED, at(order_id + 0.1))
    acked = transition(submitted[0], S.OPEN, at(order_id + 0.2), broker_order_id=f"B-{order_id}")
    return acked[0], [NewOrder(*pending), Transition(*submitted), Transition(*acked)]


def position_of(fill) -> Position:
    return position_after(Position(*fill.position_key), fill.side, fill.quantity, fill.price, fill.charges.total, fill.at).after


def test_a_group_writes_every_intent_in_the_order_they_happened(store: Store) -> None:
    first, first_intents = opened(1)
    second, second_intents = opened(2)
    fill = fill_for(first, "T1", 4, D("1500.10"), at(5))
    filled = apply_fill(first, 4, fill.price, fill.at, "T1")
    position = position_of(fill)
    group = [*first_intents, *second_intents, NewFill(fill, *filled), PositionUpdate(position, "T1")]

    results = store.write_group(group, careful=False)

    assert results == [None, None, None, None, None, None, True, None]
    assert store.load_order(1) == filled[0] and store.load_order(2) == second
    assert [(e.order_id, e.to_status) for e in store.load_events()] == [
        (1, S.PENDING), (1, S.SUBMITTED), (1, S.OPEN), (2, S.PENDING), (2, S.SUBMITTED), (2, S.OPEN), (1, S.OPEN),
    ]
    assert store.load_fills() == [fill]
    # Written and applied in one group: the trade is written applied.
    assert store.load_unapplied_fills() == [] and store.load_positions() == [position]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # SQLite binds its parameters itself
def test_on_postgresql_every_value_of_a_group_is_quoted_on_our_side_not_by_psycopgs_adapters(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The group write's speed rests on this (persistence.one_query): a type it binds that
    # fell back to psycopg's quoting would still be written, only slower, unnoticed.
    import psycopg

    def refused(*args, **kwargs):
        raise AssertionError("a group value went to psycopg's quoting")

    first, intents = opened(1)
    fill = fill_for(first, "T1", 4, D("1500.10"), at(5))
    filled = apply_fill(first, 4, fill.price, fill.at, "T1")
    monkeypatch.setattr(psycopg.ClientCursor, "mogrify", refused)
    results = store.write_group([*intents, NewFill(fill, *filled), PositionUpdate(position_of(fill), "T1")], careful=False)
    monkeypatch.undo()
    assert results == [None, None, None, True, None]
    assert store.load_order(1) == filled[0]


def test_a_trade_already_stored_is_answered_false_carefully_and_fails_the_group_otherwise(store: Store) -> None:
    order, intents = opened(1)
    fill = fill_for(order, "T1", 4, D("1500.10"), at(5))
    filled = apply_fill(order, 4, fill.price, fill.at, "T1")
    store.write_group([*intents, NewFill(fill, *filled)])
    again = apply_fill(filled[0], 4, fill.price, at(6), "T1")

    assert store.write_group([NewFill(fill, *again)], careful=True) == [False]
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        store.write_group([NewFill(fill, *again)], careful=False)
    assert store.load_order(1) == filled[0] and len(store.load_events(1)) == 4


def test_an_update_of_an_order_that_is_not_there_refuses_the_whole_group(store: Store) -> None:
    order, intents = opened(1)
    stray = transition(order, S.CANCELLED, at(9))
    missing = (replace(stray[0], order_id=NO_SUCH_ORDER), replace(stray[1], order_id=NO_SUCH_ORDER))
    # Refused for the update that matched nothing, or (PostgreSQL sends the whole group at
    # once) for the event naming an order that does not exist: either way, whole.
    with pytest.raises((OrderNotFound, IntegrityError)):
        store.write_group([*intents, Transition(*missing)], careful=False)
    assert store.load_order(1) is None and store.load_events() == []  # nothing of it


def test_a_trade_applied_twice_refuses_the_whole_group(store: Store) -> None:
    order, intents = opened(1)
    fill = fill_for(order, "T1", 4, D("1500.10"), at(5))
    filled = apply_fill(order, 4, fill.price, fill.at, "T1")
    position = position_of(fill)
    store.write_group([*intents, NewFill(fill, *filled), PositionUpdate(position, "T1")])
    later, _ = opened(2)

    with pytest.raises(TradeNotUnapplied, match="1 applied trade"):
        store.write_group([*opened(2)[1], PositionUpdate(position, "T1")], careful=False)
    with pytest.raises(TradeNotUnapplied):
        store.write_group([PositionUpdate(position, "NO-SUCH-TRADE")])
    assert store.load_order(later.order_id) is None  # the group's other writes are undone too
