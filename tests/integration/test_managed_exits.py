"""OMS-managed protective exits: an entry with a stop-loss and a take-profit is protected,
as it fills, by an OCO pair the OMS places and keeps sized: an SL-M at the stop and a
LIMIT at the target. One leg filling shrinks or cancels the other; the pair follows
partial fills, survives a restart, and goes when the strategy closes the position."""
from __future__ import annotations

import time

from actors import start_oms
from domain import OrderStatus
from tests.kite_helpers import eventually, kite_emulator, start_kite_oms
from tests.oms_helpers import buy, sell

S = OrderStatus


def legs(oms, entry_id: int) -> dict[str, object]:
    """The entry's working legs by role (the newest of each)."""
    found = {}
    for order in oms.get_orders():
        if order.metadata.get("exit_of") == entry_id and not order.is_terminal:
            found[order.metadata["exit_role"]] = order
    return found


def sizes(oms, entry_id: int) -> dict[str, int]:
    return {role: o.quantity - o.filled_quantity for role, o in legs(oms, entry_id).items()}


def held(oms) -> dict[str, int]:
    return {p.symbol: p.quantity for p in oms.get_positions() if p.quantity}


def until(check, what: str, timeout: float = 10.0):
    return eventually(check, timeout=timeout, what=what)


def test_the_pair_follows_the_entrys_partial_fills_and_the_targets(database_url):
    oms = start_oms(database_url=database_url, managed_exits=True)
    try:
        oms.paper.set_price("INFY", "1500")
        oms.paper.set_liquidity("INFY", 4)
        entry = oms.place_order(buy("INFY", 10, order_type="LIMIT", price="1500", stop_loss="1450", take_profit="1600"))
        until(lambda: sizes(oms, entry.order_id) == {"stop_loss": 4, "take_profit": 4}, "a pair for the first 4")
        stop = legs(oms, entry.order_id)["stop_loss"]
        assert (stop.side.value, stop.order_type.value, stop.trigger_price) == ("SELL", "SL-M", 1450)
        assert stop.metadata["exit_reason"] == "stop_loss"

        oms.paper.set_price("INFY", "1499")
        oms.paper.set_price("INFY", "1498")
        until(lambda: sizes(oms, entry.order_id) == {"stop_loss": 10, "take_profit": 10}, "the pair grown to 10")

        oms.paper.set_price("INFY", "1600")  # the target fills 4 of 10
        until(lambda: sizes(oms, entry.order_id) == {"stop_loss": 6, "take_profit": 6}, "the stop shrunk by 4")
        oms.paper.set_liquidity("INFY", None)
        oms.paper.set_price("INFY", "1601")
        until(lambda: legs(oms, entry.order_id) == {} and held(oms) == {}, "the stop cancelled once the target filled")
        target = next(o for o in oms.get_orders() if o.metadata.get("exit_role") == "take_profit")
        assert target.status is S.FILLED and target.metadata["exit_reason"] == "target"
        position = next(p for p in oms.get_positions() if p.symbol == "INFY")
        assert position.quantity == 0 and position.realized_pnl > 0
    finally:
        oms.stop()


def test_the_stop_filling_cancels_the_target(sqlite_url):
    oms = start_oms(database_url=sqlite_url, managed_exits=True)
    try:
        oms.paper.set_price("RELIANCE", "2450")
        entry = oms.place_order(sell("RELIANCE", 5, stop_loss="2500", take_profit="2300"))
        until(lambda: sizes(oms, entry.order_id) == {"stop_loss": 5, "take_profit": 5}, "a pair on the short")
        oms.paper.set_price("RELIANCE", "2510")  # the stop triggers and buys back
        until(lambda: legs(oms, entry.order_id) == {} and held(oms) == {}, "the target cancelled")
        roles = {o.metadata.get("exit_role"): o.status for o in oms.get_orders() if o.metadata.get("exit_of")}
        assert roles == {"stop_loss": S.FILLED, "take_profit": S.CANCELLED}
    finally:
        oms.stop()


def test_an_order_can_leave_its_exits_to_the_strategy_and_by_default_the_oms_manages_none(sqlite_url):
    oms = start_oms(database_url=sqlite_url, managed_exits=True)
    try:
        oms.paper.set_price("INFY", "1500")
        own = oms.place_order(buy("INFY", 3, stop_loss="1450", take_profit="1600", managed_exits=False))
        until(lambda: held(oms) == {"INFY": 3}, "the entry filled")
        time.sleep(0.2)
        assert legs(oms, own.order_id) == {}
        assert oms.get_order_status(own.order_id).validation_result["managed_exits"] is False
    finally:
        oms.stop()
    oms = start_oms(database_url=sqlite_url)
    try:
        entry = oms.place_order(buy("INFY", 2, stop_loss="1450", take_profit="1600"))
        until(lambda: held(oms) == {"INFY": 5}, "the entry filled")
        time.sleep(0.2)
        assert legs(oms, entry.order_id) == {}
    finally:
        oms.stop()


def test_a_position_the_strategy_closes_itself_takes_the_exits_with_it(sqlite_url):
    oms = start_oms(database_url=sqlite_url, managed_exits=True)
    try:
        oms.paper.set_price("INFY", "1500")
        entry = oms.place_order(buy("INFY", 10, stop_loss="1450", take_profit="1600"))
        until(lambda: sizes(oms, entry.order_id) == {"stop_loss": 10, "take_profit": 10}, "a pair")
        oms.place_order(sell("INFY", 6))  # the strategy takes some profit on its own
        until(lambda: sizes(oms, entry.order_id) == {"stop_loss": 4, "take_profit": 4}, "the pair cut to the position")
        oms.place_order(sell("INFY", 4))
        until(lambda: legs(oms, entry.order_id) == {}, "no exits for a flat position")
        assert held(oms) == {}
    finally:
        oms.stop()


def test_exits_survive_a_restart_and_missing_ones_are_placed_at_start(database_url):
    oms = start_oms(database_url=database_url, managed_exits=False)  # the entry fills unprotected, as after a crash
    try:
        oms.paper.set_price("INFY", "1500")
        entry = oms.place_order(buy("INFY", 10, stop_loss="1450", take_profit="1600"))
        until(lambda: held(oms) == {"INFY": 10}, "the entry filled")
    finally:
        oms.stop()

    oms = start_oms(database_url=database_url, managed_exits=True)
    try:
        until(lambda: sizes(oms, entry.order_id) == {"stop_loss": 10, "take_profit": 10}, "the pair placed at start")
    finally:
        oms.stop()

    oms = start_oms(database_url=database_url, managed_exits=True)
    try:
        time.sleep(0.3)
        assert sizes(oms, entry.order_id) == {"stop_loss": 10, "take_profit": 10}  # the same pair, not a second
        assert sum(1 for o in oms.get_orders() if o.metadata.get("exit_of")) == 2
        oms.paper.set_liquidity("INFY", 3)
        oms.paper.set_price("INFY", "1601")
        until(lambda: sizes(oms, entry.order_id) == {"stop_loss": 7, "take_profit": 7}, "still an OCO after the restart")
    finally:
        oms.stop()


def test_on_kite_the_pair_is_placed_and_the_target_cancels_the_stop(sqlite_url):
    with kite_emulator() as emulator:
        oms = start_kite_oms(emulator, sqlite_url, managed_exits=True)
        try:
            oms.mark_price("INFY", "1500")
            entry = oms.place_order(buy("INFY", 6, order_type="MARKET", stop_loss="1450", take_profit="1550"))
            until(lambda: sizes(oms, entry.order_id) == {"stop_loss": 6, "take_profit": 6}, "a pair at Kite")
            def exits_at_kite():
                return {o["order_type"]: o for o in emulator.book.orders() if o["transaction_type"] == "SELL"}

            at_kite = until(lambda: len(exits_at_kite()) == 2 and exits_at_kite(), "both legs at Kite")
            assert at_kite["SL-M"]["trigger_price"] == 1450 and at_kite["LIMIT"]["price"] == 1550
            emulator.set_price("INFY", "1551")
            until(lambda: legs(oms, entry.order_id) == {} and held(oms) == {}, "the stop cancelled at Kite")
            assert oms.reconcile_positions()["all_clear"] is True
        finally:
            oms.stop()


def test_the_kill_switch_flattens_once_with_the_oms_exits_standing_down(sqlite_url):
    oms = start_oms(database_url=sqlite_url, managed_exits=True)
    try:
        oms.paper.set_price("INFY", "1500")
        entry = oms.place_order(buy("INFY", 10, stop_loss="1450", take_profit="1600"))
        until(lambda: sizes(oms, entry.order_id) == {"stop_loss": 10, "take_profit": 10}, "a pair")

        report = oms.close_all_positions(timeout=20)

        assert report["all_closed"] is True and len(report["exit_orders"]) == 1
        time.sleep(0.3)  # nothing follows: no exit is placed again behind the kill switch
        assert held(oms) == {} and legs(oms, entry.order_id) == {}
        assert [p.quantity for p in oms.get_positions()] == [0]
        oms.resume("after the kill switch")
        time.sleep(0.3)
        assert held(oms) == {} and legs(oms, entry.order_id) == {}
    finally:
        oms.stop()
