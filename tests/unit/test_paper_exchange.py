"""Specifications of the paper exchange: the simulated far side of the broker."""
from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from actors.brokers import PaperExchange
from domain.broker import (
    BrokerAmbiguous,
    BrokerOrderRequest,
    BrokerOrderUpdate,
    BrokerRejected,
    BrokerTrade,
    BrokerUnavailable,
)
from domain.enums import Exchange, OrderType, Product, Side, Validity, Variety

T0 = datetime(2026, 11, 25, 4, 0, tzinfo=timezone.utc)
D = Decimal


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[BrokerOrderUpdate | BrokerTrade] = []

    def on_order_update(self, update: BrokerOrderUpdate) -> None:
        self.events.append(update)

    def on_trade(self, trade: BrokerTrade) -> None:
        self.events.append(trade)

    @property
    def updates(self) -> list[BrokerOrderUpdate]:
        return [e for e in self.events if isinstance(e, BrokerOrderUpdate)]

    @property
    def trades(self) -> list[BrokerTrade]:
        return [e for e in self.events if isinstance(e, BrokerTrade)]

    def kinds(self) -> list[str]:
        return [
            "trade" if isinstance(e, BrokerTrade) else e.status for e in self.events
        ]

    def clear(self) -> None:
        self.events.clear()


def req(
    tag: str = "T1",
    side: Side = Side.BUY,
    quantity: int = 10,
    order_type: OrderType = OrderType.MARKET,
    price: str | None = None,
    trigger: str | None = None,
    symbol: str = "RELIANCE",
    validity: Validity = Validity.DAY,
    exchange: Exchange = Exchange.NSE,
) -> BrokerOrderRequest:
    return BrokerOrderRequest(
        tag=tag,
        exchange=exchange,
        symbol=symbol,
        side=side,
        quantity=quantity,
        order_type=order_type,
        product=Product.MIS,
        validity=validity,
        price=None if price is None else D(price),
        trigger_price=None if trigger is None else D(trigger),
    )


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def ex(sink: RecordingSink) -> PaperExchange:
    exchange = PaperExchange(clock=lambda: T0)
    exchange.connect(sink)
    exchange.set_price("RELIANCE", D("2450.50"))
    return exchange


# ---------------------------------------------------------------- market orders


def test_market_order_fills_at_last_price_with_a_trade_then_a_complete_update(ex, sink):
    order_id = ex.place(req(tag="ORD1", quantity=10))

    assert sink.kinds() == ["OPEN", "trade", "COMPLETE"]
    accepted, trade, done = sink.events
    assert accepted.broker_order_id == order_id and accepted.filled_quantity == 0
    assert accepted.tag == "ORD1" and accepted.at == T0
    assert trade.broker_order_id == order_id and trade.tag == "ORD1"
    assert (trade.quantity, trade.price, trade.side) == (10, D("2450.50"), Side.BUY)
    assert (trade.exchange, trade.symbol, trade.product) == (Exchange.NSE, "RELIANCE", Product.MIS)
    assert trade.at == T0
    assert done.filled_quantity == 10 and done.average_price == D("2450.50")
    assert done.tag == "ORD1"
    assert ex.trades(order_id) == [trade]
    assert ex.orders() == [done]


def test_ids_are_digit_strings_of_16_to_19_chars_and_differ_between_instances(ex):
    ids = [ex.place(req(tag=f"T{i}")) for i in range(5)]
    trade_ids = [t.trade_id for t in ex.trades()]
    for value in ids + trade_ids:
        assert value.isdigit() and 16 <= len(value) <= 19
    assert len(set(ids)) == 5 and len(set(trade_ids)) == 5

    other = PaperExchange(clock=lambda: T0)
    other.set_price("RELIANCE", D("2450.50"))
    assert other.place(req()) not in ids  # random prefix per instance


def test_fixed_id_prefix_gives_reproducible_ids():
    a = PaperExchange(clock=lambda: T0, id_prefix="4242")
    b = PaperExchange(clock=lambda: T0, id_prefix="4242")
    for exchange in (a, b):
        exchange.set_price("INFY", D("1500"))
    assert a.place(req(symbol="INFY")) == b.place(req(symbol="INFY"))
    assert a.orders()[0].broker_order_id.startswith("4242")
    with pytest.raises(ValueError):
        PaperExchange(clock=lambda: T0, id_prefix="12ab")


# ---------------------------------------------------------------- limit orders


def test_limit_buy_rests_until_the_price_crosses_then_fills_at_the_last_price(ex, sink):
    order_id = ex.place(req(order_type=OrderType.LIMIT, price="2400"))
    assert sink.kinds() == ["OPEN"]
    assert sink.events[0].price == D("2400")

    ex.set_price("RELIANCE", D("2410"))
    assert sink.kinds() == ["OPEN"]

    ex.set_price("RELIANCE", D("2395.05"))
    assert sink.kinds() == ["OPEN", "trade", "COMPLETE"]
    assert sink.trades[0].price == D("2395.05")
    assert ex.find_by_tag("T1").status == "COMPLETE"
    assert ex.trades(order_id)[0].quantity == 10


def test_limit_sell_fills_when_the_price_rises_to_the_limit(ex, sink):
    ex.place(req(side=Side.SELL, order_type=OrderType.LIMIT, price="2500"))
    ex.set_price("RELIANCE", D("2499.95"))
    assert sink.kinds() == ["OPEN"]
    ex.set_price("RELIANCE", D("2500"))
    assert sink.kinds() == ["OPEN", "trade", "COMPLETE"]


def test_marketable_limit_fills_at_once(ex, sink):
    ex.place(req(order_type=OrderType.LIMIT, price="2460"))
    assert sink.kinds() == ["OPEN", "trade", "COMPLETE"]
    assert sink.trades[0].price == D("2450.50")


def test_prices_only_match_orders_of_their_own_instrument(ex, sink):
    ex.set_price("INFY", D("1500"))
    ex.set_price("INFY", D("1500"), exchange="BSE")
    ex.place(req(symbol="INFY", order_type=OrderType.LIMIT, price="1450"))
    ex.set_price("RELIANCE", D("1400"))
    ex.set_price("INFY", D("1400"), exchange=Exchange.BSE)
    assert sink.kinds() == ["OPEN"]
    ex.set_price("INFY", D("1440"), exchange="NSE")
    assert sink.kinds() == ["OPEN", "trade", "COMPLETE"]


def test_orders_at_one_instrument_fill_in_arrival_order(ex, sink):
    first = ex.place(req(tag="A", order_type=OrderType.LIMIT, price="2400"))
    second = ex.place(req(tag="B", order_type=OrderType.LIMIT, price="2420"))
    ex.set_price("RELIANCE", D("2390"))
    assert [t.broker_order_id for t in sink.trades] == [first, second]


# ---------------------------------------------------------------- stop orders


def test_sl_m_sell_triggers_when_the_price_falls_to_the_trigger(ex, sink):
    order_id = ex.place(req(side=Side.SELL, order_type=OrderType.SL_M, trigger="2400"))
    assert sink.kinds() == ["TRIGGER PENDING"]
    assert sink.events[0].trigger_price == D("2400")

    ex.set_price("RELIANCE", D("2400.05"))
    assert sink.kinds() == ["TRIGGER PENDING"]

    ex.set_price("RELIANCE", D("2399"))
    assert sink.kinds() == ["TRIGGER PENDING", "trade", "COMPLETE"]
    assert sink.trades[0].price == D("2399")
    assert sink.trades[0].side is Side.SELL
    assert ex.find_by_tag("T1").broker_order_id == order_id


def test_sl_m_buy_triggers_when_the_price_rises_to_the_trigger(ex, sink):
    ex.place(req(order_type=OrderType.SL_M, trigger="2500"))
    ex.set_price("RELIANCE", D("2499"))
    assert sink.kinds() == ["TRIGGER PENDING"]
    ex.set_price("RELIANCE", D("2500"))
    assert sink.kinds() == ["TRIGGER PENDING", "trade", "COMPLETE"]


def test_sl_buy_triggers_then_rests_as_a_limit_when_the_price_gaps_past_it(ex, sink):
    ex.place(req(order_type=OrderType.SL, trigger="2500", price="2510"))
    assert sink.kinds() == ["TRIGGER PENDING"]

    ex.set_price("RELIANCE", D("2520"))  # triggered, but above the limit
    assert sink.kinds() == ["TRIGGER PENDING", "OPEN"]
    assert ex.find_by_tag("T1").status == "OPEN"

    ex.set_price("RELIANCE", D("2505"))
    assert sink.kinds() == ["TRIGGER PENDING", "OPEN", "trade", "COMPLETE"]
    assert sink.trades[0].price == D("2505")


def test_stop_order_already_past_its_trigger_fills_at_placement(ex, sink):
    ex.place(req(side=Side.SELL, order_type=OrderType.SL_M, trigger="2460"))
    assert sink.kinds() == ["TRIGGER PENDING", "trade", "COMPLETE"]


def test_sl_with_trigger_on_the_wrong_side_of_its_limit_is_rejected(ex):
    with pytest.raises(BrokerRejected, match="above the limit price"):
        ex.place(req(order_type=OrderType.SL, trigger="2500", price="2490"))


# ---------------------------------------------------------------- liquidity


def test_partial_fills_under_limited_liquidity(ex, sink):
    ex.set_liquidity("RELIANCE", 40)
    order_id = ex.place(req(quantity=100))
    assert sink.kinds() == ["OPEN", "trade", "OPEN"]
    assert sink.updates[-1].filled_quantity == 40

    ex.set_price("RELIANCE", D("2451"))
    ex.set_price("RELIANCE", D("2452"))

    assert sink.kinds() == ["OPEN", "trade", "OPEN", "trade", "OPEN", "trade", "COMPLETE"]
    assert [t.quantity for t in sink.trades] == [40, 40, 20]
    assert [u.filled_quantity for u in sink.updates] == [0, 40, 80, 100]
    assert len({t.trade_id for t in sink.trades}) == 3
    expected_avg = (D("2450.50") * 40 + D("2451") * 40 + D("2452") * 20) / 100
    assert sink.updates[-1].average_price == expected_avg
    assert sum(t.quantity for t in ex.trades(order_id)) == 100


def test_liquidity_applies_to_each_order_and_can_be_lifted(ex, sink):
    ex.set_liquidity("RELIANCE", 5)
    a = ex.place(req(tag="A", quantity=8, order_type=OrderType.LIMIT, price="2400"))
    b = ex.place(req(tag="B", quantity=8, order_type=OrderType.LIMIT, price="2400"))
    ex.set_price("RELIANCE", D("2400"))
    assert [(t.broker_order_id, t.quantity) for t in sink.trades] == [(a, 5), (b, 5)]
    ex.set_liquidity("RELIANCE", None)
    ex.set_price("RELIANCE", D("2399"))
    assert [u.status for u in ex.orders()] == ["COMPLETE", "COMPLETE"]


def test_zero_liquidity_keeps_a_market_order_working(ex, sink):
    ex.set_liquidity("RELIANCE", 0)
    ex.place(req())
    assert sink.kinds() == ["OPEN"]


# ---------------------------------------------------------------- IOC


def test_ioc_remainder_is_cancelled_at_placement(ex, sink):
    ex.set_liquidity("RELIANCE", 40)
    ex.place(req(quantity=100, validity=Validity.IOC))
    assert sink.kinds() == ["OPEN", "trade", "OPEN", "CANCELLED"]
    cancelled = sink.updates[-1]
    assert cancelled.filled_quantity == 40 and cancelled.average_price == D("2450.50")

    ex.set_price("RELIANCE", D("2440"))  # nothing left working
    assert len(sink.trades) == 1


def test_ioc_limit_that_cannot_fill_is_cancelled_with_nothing_filled(ex, sink):
    ex.place(req(order_type=OrderType.LIMIT, price="2400", validity=Validity.IOC))
    assert sink.kinds() == ["OPEN", "CANCELLED"]
    assert sink.updates[-1].filled_quantity == 0


def test_ioc_fully_filled_is_complete(ex, sink):
    ex.place(req(validity=Validity.IOC))
    assert sink.kinds() == ["OPEN", "trade", "COMPLETE"]


# ---------------------------------------------------------------- rejections


def test_unknown_instrument_is_rejected_and_kept_in_the_book(ex, sink):
    with pytest.raises(BrokerRejected) as info:
        ex.place(req(tag="BAD", symbol="FOO"))
    assert info.value.reason == "instrument NSE:FOO not found"
    assert info.value.broker_order_id is not None

    [order] = ex.orders()
    assert order.broker_order_id == info.value.broker_order_id
    assert order.status == "REJECTED" and order.message == "instrument NSE:FOO not found"
    assert ex.find_by_tag("BAD") == order
    assert sink.kinds() == ["REJECTED"]


def test_an_after_market_order_is_refused_naming_the_variety(ex, sink):
    """The paper exchange has no sessions: it refuses variety amo rather than fill it now."""
    amo = BrokerOrderRequest(
        tag="AMO1", exchange=Exchange.NSE, symbol="RELIANCE", side=Side.BUY, quantity=1,
        order_type=OrderType.LIMIT, product=Product.CNC, validity=Validity.DAY, price=D("2400"), variety=Variety.AMO,
    )
    with pytest.raises(BrokerRejected) as info:
        ex.place(amo)
    assert info.value.reason == (
        "variety: 'amo' is not taken by the paper exchange, which has no after-market session (only 'regular')"
    )
    assert [o.status for o in ex.orders()] == ["REJECTED"] and sink.kinds() == ["REJECTED"]


def test_limit_price_outside_the_circuit_band_is_rejected(ex):
    with pytest.raises(BrokerRejected) as info:
        ex.place(req(order_type=OrderType.LIMIT, price="3000"))
    assert info.value.reason == (
        "price 3000.00 outside the circuit band 1960.40-2940.60 for NSE:RELIANCE"
    )
    assert [o.status for o in ex.orders()] == ["REJECTED"]


def test_band_edges_are_inside_and_trigger_is_checked_too(ex):
    ex.place(req(tag="lo", order_type=OrderType.LIMIT, price="1960.40"))
    ex.place(req(tag="hi", side=Side.SELL, order_type=OrderType.LIMIT, price="2940.60"))
    with pytest.raises(BrokerRejected, match="trigger price 1900.00 outside the circuit band"):
        ex.place(req(side=Side.SELL, order_type=OrderType.SL_M, trigger="1900"))


def test_narrower_band_is_configurable(sink):
    ex = PaperExchange(clock=lambda: T0, band_percent=D("5"))
    ex.set_price("INFY", D("100"))
    with pytest.raises(BrokerRejected, match="outside the circuit band 95.00-105.00"):
        ex.place(req(symbol="INFY", order_type=OrderType.LIMIT, price="94.95"))


@pytest.mark.parametrize(
    "request_, reason",
    [
        (req(quantity=0), "quantity must be a positive"),
        (req(order_type=OrderType.LIMIT), "needs a price"),
        (req(order_type=OrderType.SL_M), "needs a trigger price"),
        (req(order_type=OrderType.SL, trigger="2400"), "needs a price"),
        (req(order_type=OrderType.LIMIT, price="-1"), "must be positive"),
    ],
)
def test_malformed_orders_are_rejected(ex, request_, reason):
    with pytest.raises(BrokerRejected, match=reason):
        ex.place(request_)
    assert ex.orders()[-1].status == "REJECTED"


def test_float_prices_are_refused():
    ex = PaperExchange(clock=lambda: T0)
    with pytest.raises(ValueError, match="floats"):
        ex.set_price("INFY", 1500.5)  # type: ignore[arg-type]
    assert ex.price("INFY") is None


# ---------------------------------------------------------------- cancel


def test_cancel_of_a_working_order_keeps_its_partial_fill(ex, sink):
    ex.set_liquidity("RELIANCE", 3)
    order_id = ex.place(req(quantity=10))
    ex.cancel(order_id)
    assert sink.kinds() == ["OPEN", "trade", "OPEN", "CANCELLED"]
    assert sink.updates[-1].filled_quantity == 3
    ex.set_price("RELIANCE", D("2400"))
    assert len(sink.trades) == 1


def test_cancel_of_a_trigger_pending_order(ex, sink):
    order_id = ex.place(req(order_type=OrderType.SL_M, trigger="2500"))
    ex.cancel(order_id)
    assert sink.kinds() == ["TRIGGER PENDING", "CANCELLED"]
    ex.set_price("RELIANCE", D("2600"))
    assert sink.kinds() == ["TRIGGER PENDING", "CANCELLED"]


def test_cancel_of_a_completed_order_is_refused(ex, sink):
    order_id = ex.place(req())
    sink.clear()
    with pytest.raises(BrokerRejected) as info:
        ex.cancel(order_id)
    assert info.value.reason == f"order {order_id} is COMPLETE and cannot be cancelled"
    assert sink.events == []
    assert ex.find_by_tag("T1").status == "COMPLETE"


def test_cancel_twice_and_cancel_unknown_are_refused(ex):
    order_id = ex.place(req(order_type=OrderType.LIMIT, price="2400"))
    ex.cancel(order_id)
    with pytest.raises(BrokerRejected, match="is CANCELLED and cannot be cancelled"):
        ex.cancel(order_id)
    with pytest.raises(BrokerRejected, match="order 123 not found"):
        ex.cancel("123")


# ---------------------------------------------------------------- modify


def test_modify_moves_the_limit_and_can_fill_at_once(ex, sink):
    order_id = ex.place(req(order_type=OrderType.LIMIT, price="2400"))
    ex.modify(order_id, price=D("2405"))
    assert sink.kinds() == ["OPEN", "OPEN"]
    assert sink.updates[-1].price == D("2405")

    ex.modify(order_id, price=D("2455"), quantity=12)
    assert sink.kinds() == ["OPEN", "OPEN", "OPEN", "trade", "COMPLETE"]
    confirmation = sink.updates[2]
    assert (confirmation.price, confirmation.quantity) == (D("2455"), 12)
    assert sink.trades[0].quantity == 12 and sink.trades[0].price == D("2450.50")


def test_modify_trigger_of_a_pending_stop(ex, sink):
    order_id = ex.place(req(side=Side.SELL, order_type=OrderType.SL_M, trigger="2400"))
    ex.modify(order_id, trigger_price=D("2450.50"))
    assert sink.kinds() == ["TRIGGER PENDING", "TRIGGER PENDING", "trade", "COMPLETE"]
    assert sink.updates[1].trigger_price == D("2450.50")


def test_modify_rules(ex, sink):
    ex.set_liquidity("RELIANCE", 4)
    order_id = ex.place(req(quantity=10, order_type=OrderType.LIMIT, price="2460"))
    assert ex.find_by_tag("T1").filled_quantity == 4
    sink.clear()

    with pytest.raises(BrokerRejected, match="must exceed the filled quantity 4"):
        ex.modify(order_id, quantity=4)
    with pytest.raises(BrokerRejected, match="outside the circuit band"):
        ex.modify(order_id, price=D("1000"))
    with pytest.raises(BrokerRejected, match="no trigger price"):
        ex.modify(order_id, trigger_price=D("2400"))
    with pytest.raises(BrokerRejected, match="not found"):
        ex.modify("999", price=D("2400"))
    assert sink.events == []
    assert ex.find_by_tag("T1").price == D("2460")

    ex.modify(order_id, quantity=5, price=D("2400"))  # 4 filled, 1 left, not crossing
    assert sink.kinds() == ["OPEN"]
    ex.set_price("RELIANCE", D("2400"))
    assert ex.find_by_tag("T1").status == "COMPLETE"
    with pytest.raises(BrokerRejected, match="is COMPLETE and cannot be modified"):
        ex.modify(order_id, quantity=50)


# ---------------------------------------------------------------- queries


def test_find_by_tag(ex):
    assert ex.find_by_tag("nope") is None
    order_id = ex.place(req(tag="ABC123", order_type=OrderType.LIMIT, price="2400"))
    found = ex.find_by_tag("ABC123")
    assert found.broker_order_id == order_id and found.status == "OPEN"
    assert found.tag == "ABC123"


def test_orders_lists_every_order_in_arrival_order_and_trades_filter(ex):
    a = ex.place(req(tag="A"))
    with pytest.raises(BrokerRejected):
        ex.place(req(tag="B", symbol="NOPE"))
    c = ex.place(req(tag="C", order_type=OrderType.LIMIT, price="2400"))
    assert [o.tag for o in ex.orders()] == ["A", "B", "C"]
    assert [o.status for o in ex.orders()] == ["COMPLETE", "REJECTED", "OPEN"]
    assert [t.broker_order_id for t in ex.trades()] == [a]
    assert ex.trades(c) == [] and ex.trades("unknown") == []


def test_events_before_connect_and_after_close_are_dropped():
    ex = PaperExchange(clock=lambda: T0)
    sink = RecordingSink()
    ex.set_price("INFY", D("1500"))
    ex.place(req(symbol="INFY"))
    ex.connect(sink)
    ex.place(req(symbol="INFY", order_type=OrderType.LIMIT, price="1400"))
    ex.close()
    ex.set_price("INFY", D("1399"))
    assert sink.kinds() == ["OPEN"]
    assert [o.status for o in ex.orders()] == ["COMPLETE", "COMPLETE"]


def test_event_times_come_from_the_injected_clock(sink):
    now = [T0]
    ex = PaperExchange(clock=lambda: now[0])
    ex.connect(sink)
    ex.set_price("INFY", D("1500"))
    ex.place(req(symbol="INFY", order_type=OrderType.LIMIT, price="1400"))
    now[0] = T0 + timedelta(seconds=5)
    ex.set_price("INFY", D("1400"))
    assert [e.at for e in sink.events] == [T0, now[0], now[0]]
    assert ex.orders()[0].at == now[0]


def test_naive_clock_is_refused():
    ex = PaperExchange(clock=lambda: datetime(2026, 1, 1))
    ex.set_price("INFY", D("1500"))
    with pytest.raises(ValueError, match="timezone-aware"):
        ex.place(req(symbol="INFY"))


# ---------------------------------------------------------------- faults


def test_ambiguous_fault_places_the_order_yet_raises(ex, sink):
    ex.fail_next_place("ambiguous", "read timed out")
    with pytest.raises(BrokerAmbiguous, match="read timed out"):
        ex.place(req(tag="AMB1"))
    found = ex.find_by_tag("AMB1")
    assert found is not None and found.status == "COMPLETE"
    assert sink.kinds() == ["OPEN", "trade", "COMPLETE"]
    ex.place(req(tag="NEXT"))  # one-shot
    assert ex.find_by_tag("NEXT").status == "COMPLETE"


def test_unavailable_and_rejected_faults_place_nothing(ex, sink):
    ex.fail_next_place("unavailable", "connection refused")
    with pytest.raises(BrokerUnavailable, match="connection refused"):
        ex.place(req(tag="U"))
    ex.fail_next_place("rejected", "insufficient margin")
    with pytest.raises(BrokerRejected) as info:
        ex.place(req(tag="R"))
    assert info.value.reason == "insufficient margin"
    assert info.value.broker_order_id is None
    assert ex.orders() == [] and sink.events == []
    assert ex.find_by_tag("U") is None and ex.find_by_tag("R") is None


def test_fail_next_cancel(ex, sink):
    order_id = ex.place(req(order_type=OrderType.LIMIT, price="2400"))
    ex.fail_next_cancel("cancel window closed")
    with pytest.raises(BrokerRejected, match="cancel window closed"):
        ex.cancel(order_id)
    assert ex.find_by_tag("T1").status == "OPEN"
    ex.cancel(order_id)
    assert ex.find_by_tag("T1").status == "CANCELLED"


def test_unknown_fault_kind_is_refused(ex):
    with pytest.raises(ValueError):
        ex.fail_next_place("timeout")  # type: ignore[arg-type]


# ---------------------------------------------------------------- adopt


def test_adopted_order_continues_silently_after_an_oms_restart(sink):
    ex = PaperExchange(clock=lambda: T0)
    ex.connect(sink)
    request = req(tag="OLD1", quantity=10, order_type=OrderType.LIMIT, price="1400", symbol="INFY")
    ex.adopt(request, "1234567890123456", filled_quantity=4, average_price=D("1395"))
    assert sink.events == []
    [order] = ex.orders()
    assert (order.broker_order_id, order.status, order.filled_quantity) == (
        "1234567890123456", "OPEN", 4,
    )
    assert ex.find_by_tag("OLD1") == order

    ex.set_price("INFY", D("1390"))
    assert sink.kinds() == ["trade", "COMPLETE"]
    assert sink.trades[0].quantity == 6
    assert sink.updates[-1].filled_quantity == 10
    assert sink.updates[-1].average_price == (D("1395") * 4 + D("1390") * 6) / 10


def test_adopted_stop_without_fills_is_trigger_pending_and_cancellable(sink):
    ex = PaperExchange(clock=lambda: T0)
    ex.connect(sink)
    ex.adopt(req(tag="S", order_type=OrderType.SL_M, trigger="90", symbol="X"), "77", 0, None)
    assert ex.find_by_tag("S").status == "TRIGGER PENDING"
    ex.cancel("77")
    assert sink.kinds() == ["CANCELLED"]


def test_adopt_refuses_duplicates_and_finished_orders(ex):
    ex.adopt(req(tag="A", order_type=OrderType.LIMIT, price="2400"), "55", 0, None)
    with pytest.raises(ValueError, match="already in the book"):
        ex.adopt(req(tag="A", order_type=OrderType.LIMIT, price="2400"), "55", 0, None)
    with pytest.raises(ValueError):
        ex.adopt(req(tag="B", quantity=5), "56", 5, D("2400"))
    with pytest.raises(ValueError, match="average_price"):
        ex.adopt(req(tag="C", quantity=5), "57", 2, None)


def test_new_ids_never_collide_with_adopted_ones():
    ex = PaperExchange(clock=lambda: T0, id_prefix="9")
    first_id = "9" + "1" + "1".rjust(16, "0")
    ex.adopt(req(tag="A", order_type=OrderType.LIMIT, price="10", symbol="X"), first_id, 0, None)
    ex.set_price("X", D("20"))
    assert ex.place(req(tag="B", symbol="X")) != first_id


# ---------------------------------------------------------------- sink misuse


def test_a_sink_calling_back_into_the_exchange_is_refused_not_deadlocked(caplog):
    ex = PaperExchange(clock=lambda: T0)

    class ReentrantSink(RecordingSink):
        def on_order_update(self, update: BrokerOrderUpdate) -> None:
            super().on_order_update(update)
            ex.orders()

    sink = ReentrantSink()
    ex.connect(sink)
    ex.set_price("INFY", D("1500"))
    with caplog.at_level(logging.ERROR):
        ex.place(req(symbol="INFY"))
    assert sink.kinds() == ["OPEN", "trade", "COMPLETE"]
    assert "event sink failed" in caplog.text
    assert [o.status for o in ex.orders()] == ["COMPLETE"]


# ---------------------------------------------------------------- threads


@pytest.mark.timeout(60)
def test_concurrent_placing_and_price_moves_keep_the_book_consistent():
    ex = PaperExchange(clock=lambda: T0)
    sink = RecordingSink()  # called under the exchange's lock: no locking of its own
    ex.connect(sink)
    symbols = ["AAA", "BBB", "CCC"]
    for symbol in symbols:
        ex.set_price(symbol, D("100"))
        ex.set_liquidity(symbol, 7)
    placers, per_thread = 4, 500
    errors: list[BaseException] = []
    placed: list[str] = []
    done = threading.Event()

    def place(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for i in range(per_thread):
                side = rng.choice([Side.BUY, Side.SELL])
                kind = rng.choice([OrderType.MARKET, OrderType.LIMIT, OrderType.SL_M])
                offset = D(rng.randint(-200, 200)) / 100  # within +-2 of 100: inside band
                request = req(
                    tag=f"t{seed}x{i}",
                    side=side,
                    quantity=rng.randint(1, 30),
                    order_type=kind,
                    price=str(D(100) + offset) if kind is OrderType.LIMIT else None,
                    trigger=str(D(100) + offset) if kind is OrderType.SL_M else None,
                    symbol=rng.choice(symbols),
                    validity=Validity.IOC if rng.random() < 0.1 else Validity.DAY,
                )
                placed.append(ex.place(request))
                if i % 50 == 0:
                    candidates = [o for o in ex.orders() if o.status == "OPEN"]
                    if candidates:
                        try:
                            ex.cancel(rng.choice(candidates).broker_order_id)
                        except BrokerRejected:
                            pass  # filled or cancelled meanwhile: fine
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def move_prices() -> None:
        rng = random.Random(99)
        try:
            while not done.is_set():
                ex.set_price(rng.choice(symbols), D(rng.randint(9500, 10500)) / 100)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    mover = threading.Thread(target=move_prices)
    threads = [threading.Thread(target=place, args=(seed,)) for seed in range(placers)]
    mover.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=50)
    done.set()
    mover.join(timeout=10)
    assert not errors, errors
    assert not mover.is_alive() and not any(t.is_alive() for t in threads)

    orders = ex.orders()
    trades = ex.trades()
    assert len(orders) == placers * per_thread == len(set(placed))
    trade_ids = [t.trade_id for t in trades]
    assert len(trade_ids) == len(set(trade_ids))
    filled_by_trades = Counter()
    for trade in trades:
        filled_by_trades[trade.broker_order_id] += trade.quantity
    for order in orders:
        assert order.filled_quantity == filled_by_trades[order.broker_order_id]
        assert 0 <= order.filled_quantity <= order.quantity
        assert (order.status == "COMPLETE") == (order.filled_quantity == order.quantity)
        assert order.status in {"OPEN", "TRIGGER PENDING", "COMPLETE", "CANCELLED"}

    # The event stream tells the same story: every trade once, cumulative fills that
    # never go backward, and a last update per order equal to the book's.
    assert [t for t in sink.events if isinstance(t, BrokerTrade)] == trades
    last: dict[str, BrokerOrderUpdate] = {}
    for update in sink.updates:
        previous = last.get(update.broker_order_id)
        assert previous is None or update.filled_quantity >= previous.filled_quantity
        last[update.broker_order_id] = update
    assert {o.broker_order_id: (o.status, o.filled_quantity) for o in orders} == {
        k: (u.status, u.filled_quantity) for k, u in last.items()
    }
