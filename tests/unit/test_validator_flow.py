"""The Validator's running state for the order-flow rules, driven by message with an
injected clock: order rates, duplicates, trades a day, gross exposure, circuit limits,
the day's net P&L and the daily loss limit told to the supervisor once a day."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from actors.messages import (
    CheckModification,
    CheckOrder,
    DailyLossLimitHit,
    GetRiskState,
    MarkPrice,
    OrderClosed,
    PositionChanged,
    RestoreRisk,
)
from actors.validator import Validator
from domain.enums import Exchange, Product
from domain.market_hours import MarketCalendar
from domain.order_request import OrderRequest
from domain.position import Position
from domain.risk import RiskLimits
from tests.actor_probes import T0, WAIT, actor_group

D = Decimal
CAPITAL = D("1000000")


class Clock:
    """Time that moves only when a test says so."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def actors():
    yield from actor_group()


def request(**overrides) -> OrderRequest:
    fields = dict(symbol="INFY", exchange="NSE", side="BUY", quantity=1, order_type="LIMIT", price=D("1500"),
                  stop_loss=D("1490"), product="MIS", strategy_id=1)
    fields.update(overrides)
    return OrderRequest(**fields)


def start(actors, clock: Clock, supervisor=None, **overrides):
    limits = RiskLimits(capital=CAPITAL, max_open_orders=None, **overrides)
    return actors.start(Validator, limits, supervisor=supervisor, clock=clock, calendar=MarketCalendar())


def check(validator, order_id: int, req: OrderRequest):
    return validator.ask(CheckOrder(order_id, req), timeout=WAIT)


def test_the_order_rate_counts_accepted_orders_in_a_sliding_second(actors):
    clock = Clock()
    validator = start(actors, clock, max_orders_per_second=2)

    assert check(validator, 1, request()).passed
    assert check(validator, 2, request(quantity=2)).passed
    third = check(validator, 3, request(quantity=3))
    assert third.failed.name == "order_rate"
    assert third.failed.reason == "order rate: this would be 3 orders a second, above the limit of 2 (max_orders_per_second)"
    clock.advance(0.999)
    assert not check(validator, 4, request(quantity=4)).passed  # the first is still inside the second
    clock.advance(0.001)
    assert check(validator, 5, request(quantity=5)).passed  # a second after the first: it has left the window


def test_a_strategys_rate_is_its_own(actors):
    clock = Clock()
    validator = start(actors, clock, max_strategy_orders_per_minute=1)

    assert check(validator, 1, request(strategy_id=1)).passed
    assert check(validator, 2, request(strategy_id=2)).passed
    refused = check(validator, 3, request(strategy_id=1, quantity=2))
    assert refused.failed.reason == (
        "order rate: this would be 2 orders a minute from strategy 1, above the limit of 1 (max_strategy_orders_per_minute)"
    )
    clock.advance(60)
    assert check(validator, 4, request(strategy_id=1, quantity=2)).passed


def test_a_refused_order_does_not_count_toward_the_rate(actors):
    validator = start(actors, Clock(), max_orders_per_second=1)

    assert not check(validator, 1, request(stop_loss=None)).passed
    assert check(validator, 2, request()).passed


def test_the_same_order_again_within_the_window_is_refused_and_after_it_passes(actors):
    clock = Clock()
    validator = start(actors, clock, duplicate_window_seconds=D(2))

    assert check(validator, 1, request()).passed
    clock.advance(1.5)
    again = check(validator, 2, request())
    assert again.failed.name == "duplicate"
    assert "was accepted 1.5s ago, within the 2s duplicate window" in again.failed.reason
    assert check(validator, 3, request(quantity=2)).passed  # not the same order
    clock.advance(0.5)
    assert check(validator, 4, request()).passed  # 2 s after the first: outside the window


def test_trades_a_day_are_counted_per_ist_day(actors):
    clock = Clock(datetime.fromisoformat("2026-12-01T18:29:00+00:00"))  # 23:59 IST
    validator = start(actors, clock, max_trades_per_day=2)

    assert check(validator, 1, request()).passed
    assert check(validator, 2, request(quantity=2)).passed
    assert check(validator, 3, request(quantity=3)).failed.name == "max_trades_per_day"
    clock.advance(60)  # 00:00 IST: a new day
    assert check(validator, 4, request(quantity=3)).passed
    assert validator.ask(GetRiskState(), timeout=WAIT).orders_today == 1


def test_gross_exposure_counts_positions_at_the_last_price_and_working_orders(actors):
    validator = start(actors, Clock(), max_gross_exposure=D("30000"))
    flat = Position(Exchange.NSE, "TCS", Product.CNC)
    validator.tell(PositionChanged(flat, replace(flat, quantity=5, average_price=D("3000"), last_price=D("3000")), None))

    assert check(validator, 1, request(quantity=6, stop_loss=None)).failed.name != "max_gross_exposure"
    assert validator.ask(GetRiskState(), timeout=WAIT).gross_exposure == D("15000")
    assert check(validator, 2, request(quantity=10)).passed  # 15,000 + 15,000
    refused = check(validator, 3, request(quantity=1, price=D("0.05"), stop_loss=D("0.01"), tick_size=D("0.01")))
    assert refused.failed.name == "max_gross_exposure"
    validator.tell(MarkPrice(Exchange.NSE, "TCS", D("2990"), T0))  # the position is worth 50 less
    assert check(validator, 4, request(quantity=1, price=D("50"), stop_loss=D("49"))).passed
    validator.tell(OrderClosed(2))
    assert validator.ask(GetRiskState(), timeout=WAIT).gross_exposure == D("14950") + D("50")


def test_circuit_limits_from_a_mark_price_refuse_prices_outside_them(actors):
    validator = start(actors, Clock())
    validator.tell(MarkPrice(Exchange.NSE, "INFY", D("1500"), T0, D("1350"), D("1650")))

    assert check(validator, 1, request(price=D("1650"), stop_loss=D("1640"))).passed
    refused = check(validator, 2, request(price=D("1650.10"), stop_loss=D("1640")))
    assert refused.failed.reason == "limit price 1650.10 is above the upper circuit limit 1650 of NSE:INFY today"


def test_a_modification_is_not_held_to_the_rate_or_the_duplicate_window(actors):
    validator = start(actors, Clock(), max_orders_per_second=1, duplicate_window_seconds=D(10))

    assert check(validator, 1, request()).passed
    changed = validator.ask(CheckModification(1, request(price=D("1499")), 0), timeout=WAIT)
    assert changed.passed, changed.failed


# --- the day's net P&L and the daily loss limit -------------------------------------------------


LONG = Position(Exchange.NSE, "INFY", Product.MIS, quantity=100, average_price=D("1500"), last_price=D("1500"), charges=D("10"))


def test_the_days_net_pnl_is_realized_plus_unrealized_minus_charges_since_the_day_began(actors):
    clock = Clock()
    validator = start(actors, clock)
    flat = Position(Exchange.NSE, "INFY", Product.MIS)
    validator.tell(PositionChanged(flat, LONG, None))
    validator.tell(MarkPrice(Exchange.NSE, "INFY", D("1490"), T0))

    day = validator.ask(GetRiskState(), timeout=WAIT).day
    assert (day.realized, day.unrealized, day.charges, day.net) == (D(0), D("-1000"), D("10"), D("-1010"))

    clock.advance(86400)  # the next day: yesterday's loss is yesterday's
    validator.tell(MarkPrice(Exchange.NSE, "INFY", D("1480"), clock.now))
    day = validator.ask(GetRiskState(), timeout=WAIT).day
    assert (day.realized, day.unrealized, day.charges, day.net) == (D(0), D("-1000"), D(0), D("-1000"))


def test_restored_positions_start_the_day_at_zero(actors):
    validator = start(actors, Clock())
    validator.ask(RestoreRisk((), (replace(LONG, realized_pnl=D("-20000")),)), timeout=WAIT)

    assert validator.ask(GetRiskState(), timeout=WAIT).day.net == 0


def test_the_daily_loss_limit_tells_the_supervisor_once_and_refuses_new_risk(actors):
    supervisor = actors.probe("supervisor")
    validator = start(actors, Clock(), supervisor=supervisor.ref, daily_loss_limit=D("1010"), daily_loss_action="HALTED")
    flat = Position(Exchange.NSE, "INFY", Product.MIS)
    validator.tell(PositionChanged(flat, LONG, None))
    validator.tell(MarkPrice(Exchange.NSE, "INFY", D("1490.05"), T0))  # net -1005: inside the limit
    assert check(validator, 1, request(symbol="TCS", price=D("3000"), stop_loss=D("2990"))).passed
    assert not supervisor.settle()

    validator.tell(MarkPrice(Exchange.NSE, "INFY", D("1490"), T0))  # net -1010: at the limit
    hit = supervisor.wait_for(DailyLossLimitHit)
    assert (hit.action, hit.limit, hit.day.net) == ("HALTED", D("1010"), D("-1010"))
    assert hit.reason == ("daily loss limit: net P&L today -1010.00 (realized 0.00, unrealized -1000.00, charges 10.00) "
                          "reached the limit of -1010.00")
    refused = check(validator, 2, request(symbol="TCS", price=D("3000"), stop_loss=D("2990")))
    assert refused.failed.name == "daily_loss"
    assert check(validator, 3, request(side="SELL", quantity=100, price=D("1490"), stop_loss=None)).passed  # an exit
    validator.tell(MarkPrice(Exchange.NSE, "INFY", D("1480"), T0))
    assert len(supervisor.settle()) == 1  # told once a day
