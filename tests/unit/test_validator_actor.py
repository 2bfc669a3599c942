"""The Validator actor, driven by message: checks reserve, closures release, fills and
positions move the running totals, and a restart rebuilds them."""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from actors.messages import (
    CheckModification,
    CheckOrder,
    GetRiskState,
    MarkPrice,
    OrderClosed,
    OrderWorking,
    PositionChanged,
    RestoreRisk,
)
from actors.validator import RiskState, Validator
from domain.enums import Exchange, OrderStatus, Product
from domain.order import Order
from domain.order_request import OrderRequest
from domain.position import Position
from domain.risk import RiskLimits, ValidationResult
from tests.actor_probes import T0, WAIT, ActorGroup, actor_group, new_order

D = Decimal
CAPITAL = D("100000")


@pytest.fixture
def actors():
    yield from actor_group()


def limits(**overrides) -> RiskLimits:
    fields = dict(capital=CAPITAL, risk_per_trade_percent=D(2), max_open_orders=10)
    fields.update(overrides)
    return RiskLimits(**fields)


def request(**overrides) -> OrderRequest:
    fields = dict(
        symbol="INFY",
        exchange="NSE",
        side="BUY",
        quantity=10,
        order_type="LIMIT",
        price=D("1500"),
        stop_loss=D("1490"),
        product="MIS",
    )
    fields.update(overrides)
    return OrderRequest(**fields)


def check(validator, order_id: int, req: OrderRequest) -> ValidationResult:
    return validator.ask(CheckOrder(order_id, req), timeout=WAIT)


def state(validator) -> RiskState:
    return validator.ask(GetRiskState(), timeout=WAIT)


def working(order_id: int, req: OrderRequest, **changes) -> Order:
    """The order ``req`` would become, as an order tracker would publish it."""
    order = replace(new_order(order_id, req, T0), status=OrderStatus.OPEN, broker_order_id=f"B-{order_id}")
    return replace(order, **changes)


def start(actors: ActorGroup, **limit_overrides):
    return actors.start(Validator, limits(**limit_overrides))


# --------------------------------------------------------------------------- checks reserve


def test_a_passing_check_reserves_its_margin_at_once(actors):
    validator = start(actors)

    result = check(validator, 1, request())

    assert result.passed, result.failed
    assert result.required_margin == D("3000")  # 1500 x 10 / MIS leverage 5
    risk = state(validator)
    assert risk.open_orders == 1
    assert risk.reserved_margin == D("3000")
    assert risk.available == CAPITAL - D("3000")


def test_a_failing_check_reserves_nothing(actors):
    validator = start(actors)

    result = check(validator, 1, request(stop_loss=None))

    assert not result.passed
    assert result.failed.name == "stop_loss_required"
    assert state(validator) == RiskState(0, D(0), D(0), D(0), D(0), CAPITAL)


def test_the_first_order_reserved_so_a_second_exceeds_max_open_orders(actors):
    validator = start(actors, max_open_orders=1)

    first = check(validator, 1, request())
    second = check(validator, 2, request(symbol="TCS", price=D("4000"), stop_loss=D("3990")))

    assert first.passed
    assert not second.passed
    assert second.failed.name == "max_open_orders"
    assert state(validator).open_orders == 1


def test_the_first_order_reserved_so_a_second_exceeds_the_balance(actors):
    # capital 10,000: the first order blocks 6,000 (1500 x 20 / 5), leaving 4,000.
    validator = start(actors, capital=D("10000"))
    order = request(quantity=20, stop_loss=D("1499"))

    first = check(validator, 1, order)
    second = check(validator, 2, order)

    assert first.passed, first.failed
    assert not second.passed
    assert second.failed.name == "balance"
    assert second.failed.numbers["available"] == "4000.00"
    assert second.failed.numbers["required"] == "6000.00"
    risk = state(validator)
    assert (risk.open_orders, risk.reserved_margin) == (1, D("6000"))


def test_order_closed_releases_the_reservation(actors):
    validator = start(actors, max_open_orders=1)
    check(validator, 1, request())

    validator.tell(OrderClosed(1))

    risk = state(validator)
    assert (risk.open_orders, risk.reserved_margin) == (0, D(0))
    assert check(validator, 2, request()).passed  # the slot is free again


def test_order_closed_twice_or_for_an_unknown_order_changes_nothing(actors):
    validator = start(actors)
    check(validator, 1, request())

    validator.tell(OrderClosed(999))
    validator.tell(OrderClosed(1))
    validator.tell(OrderClosed(1))

    risk = state(validator)
    assert (risk.open_orders, risk.reserved_margin) == (0, D(0))


def test_order_working_with_a_partial_fill_shrinks_the_reservation(actors):
    validator = start(actors)
    req = request()
    check(validator, 1, req)

    validator.tell(OrderWorking(working(1, req, filled_quantity=4, average_price=D("1500"))))

    risk = state(validator)
    assert risk.open_orders == 1
    assert risk.reserved_margin == D("1800")  # 3000 x 6 remaining / 10


def test_order_working_terminal_releases_and_a_late_update_after_close_changes_nothing(actors):
    validator = start(actors)
    req = request()
    check(validator, 1, req)

    validator.tell(OrderWorking(working(1, req, status=OrderStatus.FILLED, filled_quantity=10, average_price=D("1500"))))
    assert state(validator).reserved_margin == D(0)

    validator.tell(OrderWorking(working(1, req, filled_quantity=4, average_price=D("1500"))))
    risk = state(validator)
    assert (risk.open_orders, risk.reserved_margin) == (0, D(0))


# --------------------------------------------------------------------------- positions and prices


def test_position_changed_moves_position_margin_realized_pnl_and_charges(actors):
    validator = start(actors)
    flat = Position(Exchange.NSE, "INFY", Product.MIS)
    long = replace(flat, quantity=10, average_price=D("1500"), charges=D("5.50"))
    closed = replace(long, quantity=0, average_price=D(0), realized_pnl=D("100"), charges=D("11.25"))

    validator.tell(PositionChanged(flat, long, None))
    risk = state(validator)
    assert risk.position_margin == D("3000")
    assert (risk.realized_pnl, risk.charges) == (D(0), D("5.50"))
    assert risk.available == CAPITAL - D("3000") - D("5.50")

    validator.tell(PositionChanged(long, closed, None))
    risk = state(validator)
    assert risk.position_margin == D(0)
    assert (risk.realized_pnl, risk.charges) == (D("100"), D("11.25"))
    assert risk.available == CAPITAL + D("100") - D("11.25")


def test_cnc_positions_take_full_margin_and_mis_is_leveraged(actors):
    validator = start(actors)
    cnc = Position(Exchange.NSE, "INFY", Product.CNC)
    mis = Position(Exchange.NSE, "INFY", Product.MIS)

    validator.tell(PositionChanged(cnc, replace(cnc, quantity=2, average_price=D("1500")), None))
    validator.tell(PositionChanged(mis, replace(mis, quantity=10, average_price=D("1500")), None))

    assert state(validator).position_margin == D("3000") + D("3000")


def test_a_market_order_cannot_be_valued_until_a_mark_price_arrives(actors):
    validator = start(actors)
    market = request(order_type="MARKET", price=None, stop_loss=D("1490"))

    before = check(validator, 1, market)
    assert not before.passed
    assert before.failed.name == "reference_price"
    assert state(validator).open_orders == 0

    validator.tell(MarkPrice(Exchange.NSE, "INFY", D("1500"), T0))
    after = check(validator, 2, market)

    assert after.passed, after.failed
    assert after.entry_price == D("1500")
    assert after.required_margin == D("3000")
    assert state(validator).reserved_margin == D("3000")


def test_a_mark_price_of_another_exchange_does_not_value_the_order(actors):
    validator = start(actors)
    validator.tell(MarkPrice(Exchange.BSE, "INFY", D("1500"), T0))

    result = check(validator, 1, request(order_type="MARKET", price=None))

    assert result.failed.name == "reference_price"


def test_a_reducing_sell_needs_no_stop_loss_once_a_long_is_known(actors):
    validator = start(actors)
    sell = request(side="SELL", price=D("1510"), stop_loss=None)

    assert check(validator, 1, sell).failed.name == "stop_loss_required"

    flat = Position(Exchange.NSE, "INFY", Product.MIS)
    validator.tell(PositionChanged(flat, replace(flat, quantity=10, average_price=D("1500")), None))
    result = check(validator, 2, sell)

    assert result.passed, result.failed
    assert result.reduces_position
    assert result.required_margin == D(0)
    risk = state(validator)
    assert (risk.open_orders, risk.reserved_margin) == (1, D(0))


def test_a_second_sell_against_the_same_long_is_not_reducing(actors):
    """The first sell's working quantity already reduces the long."""
    validator = start(actors)
    flat = Position(Exchange.NSE, "INFY", Product.MIS)
    validator.tell(PositionChanged(flat, replace(flat, quantity=10, average_price=D("1500")), None))
    sell = request(side="SELL", price=D("1510"), stop_loss=None)

    assert check(validator, 1, sell).passed
    second = check(validator, 2, sell)

    assert not second.passed
    assert second.failed.name == "stop_loss_required"


def test_the_long_of_another_product_does_not_make_a_sell_reducing(actors):
    validator = start(actors)
    cnc = Position(Exchange.NSE, "INFY", Product.CNC)
    validator.tell(PositionChanged(cnc, replace(cnc, quantity=10, average_price=D("1500")), None))

    result = check(validator, 1, request(side="SELL", price=D("1510"), stop_loss=None, product="MIS"))

    assert result.failed.name == "stop_loss_required"


# --------------------------------------------------------------------------- modifications


def test_a_passing_modification_replaces_the_reservation(actors):
    validator = start(actors)
    req = request()
    check(validator, 1, req)

    result = validator.ask(CheckModification(1, request(price=D("1400"), stop_loss=D("1390")), 0), timeout=WAIT)

    assert result.passed, result.failed
    risk = state(validator)
    assert risk.open_orders == 1
    assert risk.reserved_margin == D("2800")  # 1400 x 10 / 5, not 3000 + 2800


def test_a_passing_modification_of_a_partly_filled_order_reserves_only_the_remainder(actors):
    validator = start(actors)
    req = request()
    check(validator, 1, req)
    validator.tell(OrderWorking(working(1, req, filled_quantity=4, average_price=D("1500"))))

    result = validator.ask(CheckModification(1, request(quantity=20), 4), timeout=WAIT)

    assert result.passed, result.failed
    assert state(validator).reserved_margin == D("6000") * 16 / 20  # 16 of 20 remain


def test_a_failing_modification_keeps_the_old_reservation(actors):
    # capital 10,000; the order blocks 3,000. Growing it to 40 would need 12,000.
    validator = start(actors, capital=D("10000"))
    check(validator, 1, request(stop_loss=D("1499")))

    result = validator.ask(CheckModification(1, request(quantity=40, stop_loss=D("1499")), 0), timeout=WAIT)

    assert not result.passed
    assert result.failed.name == "balance"
    # Its own 3,000 was set aside while checking: available was the whole 10,000.
    assert result.failed.numbers["available"] == "10000.00"
    risk = state(validator)
    assert (risk.open_orders, risk.reserved_margin) == (1, D("3000"))


def test_a_modification_of_an_order_that_closed_meanwhile_reserves_nothing(actors):
    validator = start(actors)
    check(validator, 1, request())
    validator.tell(OrderClosed(1))

    # A change that would pass for a working order: the order is gone, so nothing is held.
    result = validator.ask(CheckModification(1, request(price=D("1495")), 0), timeout=WAIT)

    assert not result.passed
    risk = state(validator)
    assert (risk.open_orders, risk.reserved_margin) == (0, D(0))


def test_order_working_after_a_refused_modification_puts_the_old_reservation_back(actors):
    """The supervisor's check reserved for the modified order; the broker refused the
    change, and the tracker tells the order as it still stands."""
    validator = start(actors)
    req = request()
    check(validator, 1, req)
    assert validator.ask(CheckModification(1, request(quantity=20), 0), timeout=WAIT).passed
    assert state(validator).reserved_margin == D("6000")

    validator.tell(OrderWorking(working(1, req)))

    risk = state(validator)
    assert (risk.open_orders, risk.reserved_margin) == (1, D("3000"))


# --------------------------------------------------------------------------- restart


def test_restore_risk_rebuilds_reservations_positions_and_prices(actors):
    validator = start(actors, max_open_orders=4)
    key_req = request()
    partly_filled = working(1, key_req, filled_quantity=4, average_price=D("1500"))
    market = working(3, request(symbol="TCS", order_type="MARKET", price=None, stop_loss=D("3990")))
    reducing = working(
        4, request(symbol="TCS", side="SELL", price=D("4010"), stop_loss=None),
        validation_result={"passed": True, "reduces_position": True},
    )
    infy = Position(Exchange.NSE, "INFY", Product.MIS, quantity=4, average_price=D("1500"), charges=D("2"), realized_pnl=D("50"))
    tcs = Position(Exchange.NSE, "TCS", Product.MIS, quantity=5, average_price=D("4000"), last_price=D("4000"))

    validator.tell(RestoreRisk((partly_filled, market, reducing), (infy, tcs)))

    risk = state(validator)
    assert risk.open_orders == 3
    # 1: 1500 x 10 / 5 = 3000 for 6 of 10 -> 1800; 3 (MARKET): valued at TCS's last
    # price 4000 x 10 / 5 = 8000; 4 reduces the TCS long: nothing.
    assert risk.reserved_margin == D("1800") + D("8000")
    assert risk.position_margin == D("1200") + D("4000")
    assert (risk.realized_pnl, risk.charges) == (D("50"), D("2"))
    assert risk.available == CAPITAL + D("50") - D("2") - D("5200") - D("9800")

    # The restored state is live: the limit counts the restored orders...
    assert check(validator, 5, request()).passed
    assert check(validator, 6, request()).failed.name == "max_open_orders"
    # ... and closing a restored order releases exactly what it held.
    validator.tell(OrderClosed(3))
    assert state(validator).reserved_margin == D("1800") + D("3000")
    # ... and the restored price values a MARKET order.
    validator.tell(OrderClosed(5))
    assert check(validator, 7, request(symbol="TCS", order_type="MARKET", price=None, stop_loss=D("3990"))).entry_price == D("4000")


def test_restore_risk_positions_make_a_sell_reducing(actors):
    validator = start(actors)
    long = Position(Exchange.NSE, "INFY", Product.MIS, quantity=10, average_price=D("1500"))

    validator.tell(RestoreRisk((), (long,)))
    result = check(validator, 1, request(side="SELL", price=D("1510"), stop_loss=None))

    assert result.passed and result.reduces_position
