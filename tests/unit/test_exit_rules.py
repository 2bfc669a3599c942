"""The sizing of OMS-managed exits (domain.exits), as a pure function: a pair sized to
what the entry filled, growing with it, shrinking as either leg fills, cancelled once
there is nothing left to cover, and never covering more than the position holds."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal

from domain.enums import OrderStatus, OrderType, Side
from domain.exits import Cancel, Place, Resize, exit_request, is_protected_entry, plan_exits
from domain.order import Order
from domain.order_request import OrderRequest

D = Decimal
AT = datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)
S = OrderStatus


def entry(order_id=1, filled=10, quantity=10, side="BUY", stop="1450", target="1600", **fields) -> Order:
    request = OrderRequest(
        symbol="INFY", side=side, quantity=quantity, order_type="LIMIT", price=D("1500"),
        stop_loss=D(stop) if stop else None, take_profit=D(target) if target else None, **fields,
    )
    order = Order.from_request(order_id, request, AT, {"passed": True})
    status = S.FILLED if filled == quantity else S.OPEN
    return replace(order, status=status, filled_quantity=filled)


def leg(of: Order, role: str, order_id: int, quantity: int, filled=0, status=S.OPEN) -> Order:
    order = Order.from_request(order_id, exit_request(of, role, quantity), AT, {"passed": True})
    return replace(order, status=status, filled_quantity=filled)


def test_a_filled_entry_gets_a_stop_and_a_target_for_what_it_filled():
    first = entry(filled=4, quantity=10)
    steps = plan_exits([first], [], position_quantity=4)
    assert steps == [Place(first, "stop_loss", 4), Place(first, "take_profit", 4)]
    stop = exit_request(first, "stop_loss", 4)
    target = exit_request(first, "take_profit", 4)
    assert (stop.side, stop.order_type, stop.trigger_price) == (Side.SELL, OrderType.SL_M, D("1450"))
    assert (target.side, target.order_type, target.price) == (Side.SELL, OrderType.LIMIT, D("1600"))
    assert dict(target.metadata) == {"exit_of": 1, "exit_role": "take_profit", "exit_reason": "target"}


def test_only_the_legs_asked_for_are_placed():
    only_stop = entry(target=None)
    assert plan_exits([only_stop], [], 10) == [Place(only_stop, "stop_loss", 10)]


def test_the_pair_grows_with_the_entry():
    grown = entry(filled=8, quantity=10)
    stop, target = leg(grown, "stop_loss", 2, 4), leg(grown, "take_profit", 3, 4)
    assert plan_exits([grown], [stop, target], 8) == [Resize(stop, "stop_loss", 8), Resize(target, "take_profit", 8)]


def test_a_partly_filled_target_shrinks_the_stop_and_a_full_one_cancels_it():
    done = entry()
    target = leg(done, "take_profit", 3, 10, filled=4)
    stop = leg(done, "stop_loss", 2, 10)
    assert plan_exits([done], [stop, target], 6) == [Resize(stop, "stop_loss", 6)]
    target = replace(target, filled_quantity=10, status=S.FILLED)
    assert plan_exits([done], [stop, target], 0) == [Cancel(stop, "stop_loss")]


def test_a_position_closed_by_the_strategy_takes_the_legs_with_it():
    done = entry()
    stop, target = leg(done, "stop_loss", 2, 10), leg(done, "take_profit", 3, 10)
    assert plan_exits([done], [stop, target], 0) == [Cancel(stop, "stop_loss"), Cancel(target, "take_profit")]
    assert plan_exits([done], [stop, target], 3) == [Resize(stop, "stop_loss", 3), Resize(target, "take_profit", 3)]


def test_the_position_is_shared_out_oldest_entry_first_and_by_direction():
    older, newer = entry(1, filled=6, quantity=6), entry(4, filled=6, quantity=6)
    steps = plan_exits([older, newer], [], 8)
    assert steps == [
        Place(older, "stop_loss", 6), Place(older, "take_profit", 6),
        Place(newer, "stop_loss", 2), Place(newer, "take_profit", 2),
    ]
    short = entry(5, side="SELL", stop="1550", target="1400")
    assert plan_exits([short], [], 10) == []  # a long position: nothing short to protect
    assert plan_exits([short], [], -10) == [Place(short, "stop_loss", 10), Place(short, "take_profit", 10)]


def test_a_second_working_leg_of_one_role_is_cancelled():
    done = entry()
    first, second = leg(done, "stop_loss", 2, 10), leg(done, "stop_loss", 3, 10)
    assert plan_exits([done], [first, second], 10)[0] == Cancel(second, "stop_loss")


def test_what_is_protected():
    assert is_protected_entry(entry())
    assert not is_protected_entry(entry(stop=None, target=None))
    assert not is_protected_entry(entry(managed_exits=False))
    assert not is_protected_entry(leg(entry(), "stop_loss", 2, 10))
