"""Supervision that heals: every shared actor, made to fail once, is restarted from
durable state and trading goes on with no event lost; made to fail again and again, it
halts trading, cancels still work, and resume() brings trading back. Every test ends
with no actor and no thread left (the conftest checks)."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest

import actors.position_keeper as position_keeper
from actors import start_oms
from actors.broker_gateway import BrokerGateway
from actors.journal import Journal
from actors.messages import CheckOrder, FromBroker, GetOrders
from actors.reader import Reader
from actors.supervisor import RESTART_BUDGET, HealthState
from actors.validator import Validator
from domain.enums import OrderStatus as S
from domain.errors import OrderRejected
from tests.oms_helpers import buy, rows, wait_for

D = Decimal


class FailingTimes:
    """Wraps a handler (or function) so that its first ``times`` calls raise."""

    def __init__(self, real, times: int = 1) -> None:
        self.real, self.left, self.raised = real, times, 0

    def __call__(self, *args, **kwargs):
        if self.left > 0:
            self.left -= 1
            self.raised += 1
            raise RuntimeError("injected failure")
        return self.real(*args, **kwargs)


@pytest.fixture
def oms(database_url):
    oms = start_oms(database_url=database_url, broker="paper", capital=D("10000000"))
    oms.paper.set_price("INFY", D("1500.00"))
    yield oms
    oms.stop()


def place_and_fill(oms, quantity: int = 5):
    result = oms.place_order(buy("INFY", quantity, stop_loss=D("1450.00")))
    return wait_for(oms, result.order_id, lambda o: o.status is S.FILLED)


def test_a_validator_that_fails_once_is_rebuilt_and_the_order_goes_through(database_url, monkeypatch):
    failing = FailingTimes(Validator.handlers[CheckOrder])
    monkeypatch.setitem(Validator.handlers, CheckOrder, failing)
    oms = start_oms(database_url=database_url, broker="paper", capital=D("10000000"))
    try:
        oms.paper.set_price("INFY", D("1500.00"))
        resting = oms.place_order(buy("INFY", 5, order_type="LIMIT", price=D("1400.00"), stop_loss=D("1350.00")))
        filled = place_and_fill(oms)
        assert failing.raised == 1
        assert filled.filled_quantity == 5
        assert oms.get_order_status(resting.order_id).status is S.OPEN
        assert oms.health().state is HealthState.RUNNING
    finally:
        oms.stop()


def test_a_position_keeper_that_fails_on_a_fill_counts_it_exactly_once(database_url, monkeypatch):
    failing = FailingTimes(position_keeper.apply_fill)
    monkeypatch.setattr(position_keeper, "apply_fill", failing)
    oms = start_oms(database_url=database_url, broker="paper", capital=D("10000000"))
    try:
        oms.paper.set_price("INFY", D("1500.00"))
        filled = place_and_fill(oms, 7)
        assert failing.raised == 1
        assert filled.filled_quantity == 7
        wait_for_position(oms, 7)
        more = place_and_fill(oms, 3)  # trading goes on
        assert more.filled_quantity == 3
        wait_for_position(oms, 10)
    finally:
        oms.stop()
    applied = rows(database_url, "SELECT quantity, position_applied FROM trades")
    assert sum(t["quantity"] for t in applied) == 10 and all(t["position_applied"] for t in applied)


def wait_for_position(oms, quantity: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sum(p.quantity for p in oms.get_positions() if p.symbol == "INFY") == quantity:
            return
        time.sleep(0.01)
    raise AssertionError(f"position never reached {quantity}: {oms.get_positions()}")


def test_a_gateway_that_fails_on_a_broker_event_redelivers_it(database_url, monkeypatch):
    failing = FailingTimes(BrokerGateway.handlers[FromBroker])
    monkeypatch.setitem(BrokerGateway.handlers, FromBroker, failing)
    oms = start_oms(database_url=database_url, broker="paper", capital=D("10000000"))
    try:
        oms.paper.set_price("INFY", D("1500.00"))
        filled = place_and_fill(oms)
        assert failing.raised == 1 and filled.filled_quantity == 5
        assert place_and_fill(oms, 2).filled_quantity == 2
    finally:
        oms.stop()


def test_a_journal_that_fails_on_a_group_is_reopened_and_trading_goes_on(database_url, monkeypatch):
    failing = FailingTimes(Journal._commit)
    monkeypatch.setattr(Journal, "_commit", lambda journal, group: failing(journal, group))
    oms = start_oms(database_url=database_url, broker="paper", capital=D("10000000"))
    try:
        oms.paper.set_price("INFY", D("1500.00"))
        first = oms.place_order(buy("INFY", 5, stop_loss=D("1450.00")))
        assert failing.raised == 1
    except Exception as refused:  # the order whose write failed is refused, never sent
        assert failing.raised == 1
        assert "injected failure" in str(refused)
        first = None
    try:
        second = place_and_fill(oms, 4)
        assert second.filled_quantity == 4
        if first is not None:
            wait_for(oms, first.order_id, lambda o: o.is_terminal or o.status is S.OPEN)
        tags = [o.tag for o in oms.paper.orders()]
        assert len(tags) == len(set(tags))
    finally:
        oms.stop()


def test_a_reader_that_fails_answers_after_its_restart(oms, monkeypatch):
    failing = FailingTimes(Reader.handlers[GetOrders])
    monkeypatch.setitem(Reader.handlers, GetOrders, failing)
    filled = place_and_fill(oms)

    assert [o.order_id for o in oms.get_orders()] == [filled.order_id]
    assert failing.raised == 1


def test_repeated_failures_halt_trading_cancels_still_work_and_resume_brings_it_back(oms, monkeypatch):
    resting = oms.place_order(buy("INFY", 5, order_type="LIMIT", price=D("1400.00"), stop_loss=D("1350.00")))
    failing = FailingTimes(Validator.handlers[CheckOrder], times=2 * RESTART_BUDGET)
    monkeypatch.setitem(Validator.handlers, CheckOrder, failing)

    for _ in range(RESTART_BUDGET):
        with pytest.raises(OrderRejected):
            oms.place_order(buy("INFY", 1, stop_loss=D("1450.00")))
    health = oms.health()
    assert health.state is HealthState.HALTED and "Validator failed" in health.reason
    with pytest.raises(OrderRejected, match="HALTED") as refused:
        oms.place_order(buy("INFY", 1, stop_loss=D("1450.00")))
    assert refused.value.failed_check == "trading_state"
    assert oms.cancel_order(resting.order_id) is True  # HALTED still serves cancels
    wait_for(oms, resting.order_id, lambda o: o.status is S.CANCELLED)

    monkeypatch.setitem(Validator.handlers, CheckOrder, failing.real)
    assert oms.resume() == "RUNNING"
    assert oms.health().state is HealthState.RUNNING
    assert place_and_fill(oms).filled_quantity == 5


def test_a_tracker_that_always_fails_is_restarted_with_pauses_then_given_up_and_trading_halts(database_url, monkeypatch):
    import actors.order_tracker as order_tracker

    failing = FailingTimes(order_tracker.charges_for_fill, times=10**6)
    monkeypatch.setattr(order_tracker, "charges_for_fill", failing)
    oms = start_oms(database_url=database_url, broker="paper", capital=D("10000000"))
    try:
        oms.paper.set_price("INFY", D("1500.00"))
        oms.place_order(buy("INFY", 5, stop_loss=D("1450.00")))
        deadline = time.monotonic() + 20
        while oms.health().state is not HealthState.HALTED and time.monotonic() < deadline:
            time.sleep(0.02)
        health = oms.health()
        assert health.state is HealthState.HALTED and "failed 6 times" in health.reason, health
        assert failing.raised == 6  # not thousands: restarts pause longer each time, then stop
        assert len(oms.paper.orders()) == 1  # each restart looked the order up; none re-sent it
    finally:
        oms.stop()
