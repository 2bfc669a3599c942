"""The pre-trade rules of issue 17 through the whole OMS on the paper broker, with the
clock injected: the daily loss limit moves trading to the configured state as an audited
change, the market-hours rule follows the exchange's clock in IST, a duplicate is refused
and every rule's outcome is stored in ``validation_result``."""
from __future__ import annotations

from datetime import timedelta

import pytest

from actors import TradingState, start_oms
from domain import OrderRejected, OrderStatus
from tests.kite_helpers import eventually
from tests.oms_helpers import Clock, buy, ist, rows, sell, wait_for

S = OrderStatus




@pytest.mark.parametrize("action", ["REDUCE_ONLY", "HALTED"])
def test_the_daily_loss_limit_moves_trading_to_the_configured_state_with_the_figures(sqlite_url, action):
    oms = start_oms(database_url=sqlite_url, daily_loss_limit="1000", daily_loss_action=action)
    try:
        oms.paper.set_price("INFY", "1500")
        entry = oms.place_order(buy("INFY", 10, stop_loss="1400"))
        wait_for(oms, entry.order_id, lambda o: o.status is S.FILLED)
        oms.paper.set_price("INFY", "1450")  # -500 and charges: inside the limit
        assert oms.trading_state is TradingState.RUNNING

        oms.paper.set_price("INFY", "1400")  # -1000 and charges: past it
        eventually(lambda: oms.trading_state is TradingState(action), what=f"trading {action}")
        history = rows(sqlite_url, "SELECT state, reason FROM trading_states ORDER BY id")
        assert [r["state"] for r in history] == [action]
        assert history[0]["reason"].startswith("daily loss limit: net P&L today -10")
        assert "unrealized -1000.00" in history[0]["reason"] and history[0]["reason"].endswith("reached the limit of -1000.00")
        assert oms.health().state.value == action

        with pytest.raises(OrderRejected) as refused:
            oms.place_order(buy("TCS", 1, order_type="LIMIT", price="3000", stop_loss="2990"))
        assert refused.value.failed_check == "trading_state"
        if action == "REDUCE_ONLY":  # the losing position can still be closed
            exit_ = oms.place_order(sell("INFY", 10))
            wait_for(oms, exit_.order_id, lambda o: o.status is S.FILLED)
    finally:
        oms.stop()

    oms = start_oms(database_url=sqlite_url, daily_loss_limit="1000", daily_loss_action=action)
    try:
        assert oms.trading_state is TradingState(action)  # it outlives a restart
    finally:
        oms.stop()


def test_after_resume_the_daily_loss_check_still_refuses_new_risk_but_not_exits(sqlite_url):
    oms = start_oms(database_url=sqlite_url, daily_loss_limit="1000")
    try:
        oms.paper.set_price("INFY", "1500")
        entry = oms.place_order(buy("INFY", 10, stop_loss="1400"))
        wait_for(oms, entry.order_id, lambda o: o.status is S.FILLED)
        oms.paper.set_price("INFY", "1390")
        eventually(lambda: oms.trading_state is TradingState.REDUCE_ONLY, what="REDUCE_ONLY")
        oms.resume("risk desk looked")

        with pytest.raises(OrderRejected, match="daily loss limit reached: net P&L today -11") as refused:
            oms.place_order(buy("TCS", 1, order_type="LIMIT", price="3000", stop_loss="2990"))
        assert refused.value.failed_check == "daily_loss"
        exit_ = oms.place_order(sell("INFY", 10))
        wait_for(oms, exit_.order_id, lambda o: o.status is S.FILLED)
        assert oms.trading_state is TradingState.RUNNING  # told once a day: no second change
    finally:
        oms.stop()


def test_market_hours_on_the_paper_broker_when_asked_follow_the_ist_clock(sqlite_url):
    clock = Clock(ist("2026-12-05T11:00:00"))  # a Saturday
    oms = start_oms(database_url=sqlite_url, clock=clock, enforce_market_hours=True)
    try:
        oms.paper.set_price("INFY", "1500")
        with pytest.raises(OrderRejected) as refused:
            oms.place_order(buy("INFY", 1, stop_loss="1400"))
        assert refused.value.failed_check == "market_hours"
        assert refused.value.reason == "outside market hours: NSE is closed on weekends (now Sat 05 Dec 2026 11:00:00 IST); to place it for the next session use variety \"amo\""

        clock.now = ist("2026-12-07T09:14:59")  # Monday, a second before the open
        with pytest.raises(OrderRejected, match="NSE is open 09:15-15:30 IST; now is Mon 07 Dec 2026 09:14:59 IST"):
            oms.place_order(buy("INFY", 1, stop_loss="1400"))
        clock.now += timedelta(seconds=1)
        placed = oms.place_order(buy("INFY", 1, stop_loss="1400"))
        wait_for(oms, placed.order_id, lambda o: o.status is S.FILLED)
    finally:
        oms.stop()


def test_the_paper_broker_runs_at_any_hour_by_default(sqlite_url):
    oms = start_oms(database_url=sqlite_url, clock=Clock(ist("2026-12-25T03:00:00")))
    try:
        oms.paper.set_price("INFY", "1500")
        assert oms.place_order(buy("INFY", 1, stop_loss="1400")).order_id
    finally:
        oms.stop()


def test_a_duplicate_is_refused_and_every_rule_is_in_the_stored_validation_result(sqlite_url):
    clock = Clock(ist("2026-12-07T10:00:00"))
    oms = start_oms(database_url=sqlite_url, clock=clock, duplicate_window_seconds="5", price_collar_percent="10")
    try:
        oms.paper.set_price("INFY", "1500")
        request = buy("INFY", 1, order_type="LIMIT", price="1400", stop_loss="1350", strategy_id=4)
        first = oms.place_order(request)
        clock.now += timedelta(seconds=4)
        with pytest.raises(OrderRejected, match="duplicate order: the same BUY of 1 NSE:INFY at 1400 from strategy 4") as dup:
            oms.place_order(request)
        assert dup.value.failed_check == "duplicate"
        with pytest.raises(OrderRejected, match="beyond the 10% price collar") as fat:
            oms.place_order(buy("INFY", 1, order_type="LIMIT", price="1000", stop_loss="990"))
        assert fat.value.failed_check == "price_collar"
    finally:
        oms.stop()
    stored = rows(sqlite_url, "SELECT id, validation_result FROM orders ORDER BY id")
    checks = {c["name"]: c for c in stored[0]["validation_result"]["checks"]}
    assert {"market_hours", "duplicate", "order_rate", "max_trades_per_day", "daily_loss", "price_collar",
            "circuit_limits", "protective_prices", "max_gross_exposure"} <= set(checks)
    assert checks["price_collar"]["limit_percent"] == "10" and checks["price_collar"]["last_price"] == "1500"
    # A rule that is off says so without figures (every order keeps its result).
    assert checks["daily_loss"] == {"name": "daily_loss", "passed": True, "reason": "no daily loss limit configured"}
    refused = {c["name"]: c for c in stored[1]["validation_result"]["checks"]}
    assert refused["duplicate"]["passed"] is False and refused["duplicate"]["seconds_since_same"] == "4"
    assert stored[0]["id"] == first.order_id


def test_a_restart_during_the_day_keeps_the_days_loss_and_a_new_day_starts_afresh(sqlite_url):
    """A loss booked before a restart still counts toward the day's limit afterwards (the
    day's starting totals are kept in day_baselines); the next IST day starts from zero."""
    clock = Clock(ist("2026-12-01T10:00:00"))
    oms = start_oms(database_url=sqlite_url, clock=clock, daily_loss_limit="1000")
    try:
        oms.paper.set_price("INFY", "1500")
        entry = oms.place_order(buy("INFY", 10, stop_loss="1400"))
        wait_for(oms, entry.order_id, lambda o: o.status is S.FILLED)
        oms.paper.set_price("INFY", "1440")
        closed = oms.place_order(sell("INFY", 10))  # -600 realized, plus charges
        wait_for(oms, closed.order_id, lambda o: o.status is S.FILLED)
        assert oms.trading_state is TradingState.RUNNING
    finally:
        oms.stop()

    clock.now = ist("2026-12-01T11:00:00")
    oms = start_oms(database_url=sqlite_url, clock=clock, daily_loss_limit="1000")
    try:
        entry = oms.place_order(buy("INFY", 10, stop_loss="1300"))
        wait_for(oms, entry.order_id, lambda o: o.status is S.FILLED)
        oms.paper.set_price("INFY", "1395")  # -450 more: over 1,000 for the day only with the first
        eventually(lambda: oms.trading_state is TradingState.REDUCE_ONLY, what="the day's loss counted across the restart")
        oms.resume("a new approach")
    finally:
        oms.stop()
    days = rows(sqlite_url, "SELECT day FROM day_baselines")
    assert [str(r["day"]) for r in days] == ["2026-12-01"]

    clock.now = ist("2026-12-02T09:30:00")
    oms = start_oms(database_url=sqlite_url, clock=clock, daily_loss_limit="1000")
    try:
        assert oms.trading_state is TradingState.RUNNING
        more = oms.place_order(buy("INFY", 1, stop_loss="1300"))  # a new day: the loss so far is yesterday's
        wait_for(oms, more.order_id, lambda o: o.status is S.FILLED)
    finally:
        oms.stop()
    assert len(rows(sqlite_url, "SELECT day FROM day_baselines")) == 2
