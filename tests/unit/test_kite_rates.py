"""Kite's limits kept on our side (kite_rates): a gate waits for room, in turn, and
refuses, naming the limit, when the wait would be too long. A fake clock: no sleeping."""
from __future__ import annotations

import threading
import time
from datetime import date

import pytest

from actors.brokers.kite_rates import JITTER_GUARD, KiteGates, KiteRateLimits, RateGate, RateRefused, Window, _effective
from domain.broker import BrokerUnavailable


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self.day = date(2026, 11, 26)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def gate(t: FakeTime, *windows: Window, per_day: int | None = None, wait_max: float = 5.0) -> RateGate:
    return RateGate("order requests", windows, per_day=per_day, wait_max=wait_max, clock=t.clock, today=lambda: t.day)


def test_ten_a_second_pass_at_once_and_the_eleventh_waits_for_the_first_to_leave():
    t = FakeTime()
    g = gate(t, Window(10, 1, "10 order requests a second"))
    assert [g.admit("place", t.sleep) for _ in range(10)] == [0.0] * 10
    waited = g.admit("place", t.sleep)
    assert waited == pytest.approx(1 + JITTER_GUARD + 0.001)
    assert t.slept == [waited]


def test_requests_spread_out_never_wait():
    t = FakeTime()
    g = gate(t, Window(10, 1, "10 a second"))
    for _ in range(50):
        assert g.admit("place", t.sleep) == 0.0
        t.now += 0.2
    assert t.slept == []


def test_no_window_of_a_second_ever_holds_more_than_the_limit():
    t = FakeTime()
    g = gate(t, Window(10, 1, "10 a second"), Window(30, 60, "30 a minute"), wait_max=120)
    sent = []
    for _ in range(45):
        g.admit("place", t.sleep)
        sent.append(t.now)
    for i in range(len(sent) - 10):
        assert sent[i + 10] - sent[i] >= 1.0
    for i in range(len(sent) - 30):
        assert sent[i + 30] - sent[i] >= 60.0


def test_a_wait_over_the_bound_is_refused_naming_the_limit_and_counts_nothing():
    t = FakeTime()
    g = gate(t, Window(10, 1, "10 order requests a second"), Window(20, 60, "20 order requests a minute"), wait_max=2)
    for _ in range(20):
        g.admit("place", t.sleep)
    with pytest.raises(RateRefused, match=r"place not sent: Kite's limit of 20 order requests a minute would hold it .*longer than the 2s allowed \(kite_rate_wait_max\)") as refused:
        g.admit("place", t.sleep)
    assert isinstance(refused.value, BrokerUnavailable)  # never sent
    slept = list(t.slept)
    t.now += 61
    assert g.admit("place", t.sleep) == 0.0  # the refused one took no room
    assert t.slept == slept


def test_the_day_limit_is_per_calendar_day_in_kolkata():
    t = FakeTime()
    g = gate(t, per_day=3)
    for _ in range(3):
        g.admit("place", t.sleep)
    with pytest.raises(RateRefused, match="limit of 3 order requests a day is used up"):
        g.admit("modify", t.sleep)
    t.day = date(2026, 11, 27)
    assert g.admit("place", t.sleep) == 0.0


def test_after_a_429_the_family_pauses():
    t = FakeTime()
    g = gate(t, Window(10, 1, "10 a second"))
    g.hold_off(1.5)
    assert g.admit("orders", t.sleep) == pytest.approx(1.5)
    g.hold_off(9)
    with pytest.raises(RateRefused, match="429"):
        g.admit("orders", t.sleep)


def test_an_interrupted_wait_refuses():
    t = FakeTime()
    g = gate(t, Window(1, 1, "1 a second"))
    g.admit("orders", t.sleep)
    with pytest.raises(RateRefused, match="stopping"):
        g.admit("orders", lambda seconds: True)


def test_windows_that_can_never_bind_are_left_out():
    second, minute = Window(10, 1, "s"), Window(400, 60, "m")
    assert _effective([minute, second]) == [second, minute]
    assert _effective([second, Window(900, 60, "m")]) == [second]  # 10/s already allows fewer
    assert _effective([Window(5, 1, "s"), Window(5, 60, "m")]) == [Window(5, 60, "m")]


def test_the_gates_come_from_the_settings_numbers():
    gates = KiteGates.from_limits(KiteRateLimits(orders_per_second=2, orders_per_minute=None, quotes_per_second=None))
    assert [g.family for g in (gates.orders, gates.calls, gates.quotes)] == ["order requests", "calls", "quotes"]
    gates.orders.admit("place")
    gates.orders.admit("place")
    for _ in range(20):
        gates.quotes.admit("ltp")  # no quote limit configured


def test_waiting_callers_are_served_in_the_order_they_came():
    g = RateGate("calls", [Window(1, 0.05, "1 a tick")], wait_max=10)
    g.admit("first")
    order: list[int] = []
    started = []

    def call(i: int) -> None:
        started.append(i)
        g.admit(f"call {i}")
        order.append(i)

    threads = []
    for i in range(5):
        threads.append(threading.Thread(target=call, args=(i,)))
        threads[-1].start()
        while len(started) <= i:
            time.sleep(0.001)
        time.sleep(0.01)  # let it take its ticket
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2, 3, 4]


def test_a_gate_started_mid_day_counts_on_from_what_was_sent_before_it():
    t = FakeTime()
    g = gate(t, per_day=5)
    g.count_today(4)
    g.admit("place", t.sleep)
    with pytest.raises(RateRefused, match="limit of 5 order requests a day is used up"):
        g.admit("place", t.sleep)
    g.count_today(2)  # never lowers what was counted
    with pytest.raises(RateRefused):
        g.admit("place", t.sleep)
    t.day = date(2026, 11, 27)
    assert g.admit("place", t.sleep) == 0.0
