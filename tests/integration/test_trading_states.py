"""Trading states and the kill switch. HALTED accepts nothing new but always cancels;
REDUCE_ONLY accepts only orders that shrink a position; every change is recorded with its
reason in ``trading_states`` and outlives a restart. ``close_all_positions()`` cancels
every open order, flattens every position (again for what a partial fill left) and leaves
the OMS HALTED, on the paper exchange and on Kite."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from actors import TradingState, start_oms
from domain import OrderRejected, OrderStatus
from tests.kite_helpers import eventually, kite_emulator, start_kite_oms
from tests.oms_helpers import buy, rows, sell, wait_for

S = OrderStatus


def held(oms) -> dict[str, int]:
    return {p.symbol: p.quantity for p in oms.get_positions() if p.quantity}


def test_halted_refuses_new_orders_but_cancels_and_the_state_outlives_a_restart(database_url):
    oms = start_oms(database_url=database_url)
    try:
        oms.paper.set_price("INFY", "1500")
        resting = oms.place_order(buy("INFY", 5, order_type="LIMIT", price="1400", stop_loss="1350"))
        assert oms.halt("risk desk: news pending") is TradingState.HALTED
        with pytest.raises(OrderRejected, match="trading is HALTED") as refused:
            oms.place_order(buy("INFY", 1, order_type="LIMIT", price="1400", stop_loss="1350"))
        assert refused.value.failed_check == "trading_state"
        assert oms.cancel_order(resting.order_id) is True
        wait_for(oms, resting.order_id, lambda o: o.status is S.CANCELLED)
        health = oms.health()
        assert (health.state.value, health.reason) == ("HALTED", "risk desk: news pending")
    finally:
        oms.stop()

    oms = start_oms(database_url=database_url)
    try:
        assert oms.trading_state is TradingState.HALTED
        with pytest.raises(OrderRejected, match="trading is HALTED"):
            oms.place_order(buy("INFY", 1, order_type="LIMIT", price="1400", stop_loss="1350"))
        assert oms.resume("news out, risk desk agrees") is TradingState.RUNNING
        assert oms.place_order(buy("INFY", 1, order_type="LIMIT", price="1400", stop_loss="1350")).order_id
    finally:
        oms.stop()
    history = [(r["state"], r["reason"]) for r in rows(database_url, "SELECT * FROM trading_states ORDER BY id")]
    assert history == [("HALTED", "risk desk: news pending"), ("RUNNING", "news out, risk desk agrees")]


def test_reduce_only_lets_through_only_what_shrinks_a_position(sqlite_url):
    oms = start_oms(database_url=sqlite_url)
    try:
        oms.paper.set_price("INFY", "1500")
        long = oms.place_order(buy("INFY", 10, stop_loss="1450"))
        wait_for(oms, long.order_id, lambda o: o.status is S.FILLED)
        oms.reduce_only("daily loss limit near")
        assert oms.health().state.value == "REDUCE_ONLY"

        with pytest.raises(OrderRejected, match=r"REDUCE_ONLY \(daily loss limit near\)") as grows:
            oms.place_order(buy("INFY", 1, stop_loss="1450"))
        assert grows.value.failed_check == "trading_state"
        with pytest.raises(OrderRejected, match="REDUCE_ONLY"):
            oms.place_order(sell("INFY", 11))  # past flat: it would open a short
        with pytest.raises(OrderRejected, match="REDUCE_ONLY"):
            oms.place_order(buy("TCS", 1, stop_loss="3000", order_type="LIMIT", price="3100"))

        shrink = oms.place_order(sell("INFY", 4))
        wait_for(oms, shrink.order_id, lambda o: o.status is S.FILLED)
        assert held(oms) == {"INFY": 6}
        assert oms.trading_state is TradingState.REDUCE_ONLY
    finally:
        oms.stop()


def test_a_reason_is_required_and_the_audit_trail_cannot_be_rewritten(database_url):
    oms = start_oms(database_url=database_url)
    try:
        with pytest.raises(ValueError, match="reason"):
            oms.halt("  ")
        assert oms.trading_state is TradingState.RUNNING
        oms.halt("testing the trail")
    finally:
        oms.stop()
    engine = create_engine(database_url)
    try:
        with pytest.raises(DBAPIError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(text("UPDATE trading_states SET reason = 'nothing happened'"))
        with pytest.raises(DBAPIError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM trading_states"))
    finally:
        engine.dispose()


def test_the_kill_switch_cancels_flattens_through_partial_fills_and_leaves_trading_halted(database_url):
    oms = start_oms(database_url=database_url)
    try:
        oms.paper.set_price("RELIANCE", "2450")
        oms.paper.set_price("INFY", "1500")
        for request in (buy("RELIANCE", 10, stop_loss="2400"), sell("INFY", 6, stop_loss="1550")):
            placed = oms.place_order(request)
            wait_for(oms, placed.order_id, lambda o: o.status is S.FILLED)
        resting = oms.place_order(buy("INFY", 3, order_type="LIMIT", price="1400", stop_loss="1350"))
        oms.paper.set_liquidity("RELIANCE", 4)  # the exit fills 4 at a time

        report = oms.close_all_positions(timeout=6)  # three rounds of 2 s at most

        assert report["all_closed"] is True and report["remaining"] == ()
        assert report["state"] == "HALTED" and oms.trading_state is TradingState.HALTED
        assert report["cancelled"] == (resting.order_id,)
        assert oms.get_order_status(resting.order_id).status is S.CANCELLED
        assert len(report["exit_orders"]) >= 3  # RELIANCE took more than one round
        assert held(oms) == {}
        exits = [oms.get_order_status(i) for i in report["exit_orders"]]
        assert {o.metadata["exit_reason"] for o in exits} == {"kill_switch"}
        assert sum(o.filled_quantity for o in exits if o.symbol == "RELIANCE") == 10
    finally:
        oms.stop()
    oms = start_oms(database_url=database_url)
    try:
        assert oms.trading_state is TradingState.HALTED
        assert oms.health().reason == "kill switch: every position closed"
    finally:
        oms.stop()


def test_the_kill_switch_on_kite(sqlite_url):
    with kite_emulator() as emulator:
        oms = start_kite_oms(emulator, sqlite_url)
        try:
            oms.mark_price("INFY", "1500")
            oms.place_order(buy("INFY", 8, order_type="MARKET", product="MIS", stop_loss="1450"))
            eventually(lambda: held(oms) == {"INFY": 8}, what="the entry filled")
            resting = oms.place_order(buy("INFY", 2, order_type="LIMIT", price="1400", product="MIS", stop_loss="1350"))

            report = oms.close_all_positions(timeout=20)

            assert report["all_closed"] is True and report["cancelled"] == (resting.order_id,)
            assert held(oms) == {}
            net = {row["tradingsymbol"]: row["quantity"] for row in emulator.book.positions()["net"]}
            assert net == {"INFY": 0}
            assert oms.reconcile_positions()["all_clear"] is True
            assert oms.trading_state is TradingState.HALTED
        finally:
            oms.stop()
