"""The OMS in Kite mode against a Kite emulator that misbehaves. For every fault: the
order is never at the broker twice, and every order ends in a clear state whose reason
says what happened. Credentials never reach a log line or a message."""
from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from domain import OrderNotCancellable, OrderStatus, OrderSubmissionFailed
from tests.kite_helpers import assert_no_credentials, kite_emulator, start_kite_oms
from tests.oms_helpers import buy, wait_for

D = Decimal
S = OrderStatus


@pytest.fixture
def emulator():
    with kite_emulator() as emu:
        yield emu


@pytest.fixture
def oms(emulator, sqlite_url, caplog):
    caplog.set_level(logging.DEBUG)
    running = start_kite_oms(emulator, sqlite_url)
    running.mark_price("INFY", "1500")
    yield running
    running.stop()
    assert_no_credentials(caplog.text)


def market_buy(quantity: int = 10):
    return buy("INFY", quantity, order_type="MARKET", product="MIS", stop_loss="1490")


def resting_buy(price: str = "1490"):
    return buy("INFY", 10, order_type="LIMIT", price=price, product="MIS", stop_loss="1480")


def at_kite(emulator, tag: str) -> list[dict]:
    return emulator.book.orders_tagged(tag)


def test_a_timeout_after_accept_leaves_the_order_submitted_and_it_is_adopted_by_tag(emulator, oms):
    emulator.faults.timeout_after_accept("place", hold=3)
    result = oms.place_order(market_buy())
    assert (result.status, result.broker_order_id) == (S.SUBMITTED, None)
    assert "looking the order up at the broker by its tag" in result.message
    adopted = wait_for(oms, result.order_id, lambda o: o.status is S.FILLED)
    (kite_order,) = at_kite(emulator, adopted.tag)
    assert adopted.broker_order_id == kite_order["order_id"] and adopted.filled_quantity == 10
    assert emulator.count("place") == 1  # looked up, never sent again


def test_an_order_book_that_lags_is_asked_again_before_anything_is_decided(emulator, oms):
    emulator.faults.lag_reads(0.25)  # inside the 4 x 0.1 s look-up window
    emulator.faults.timeout_after_accept("place", hold=3)
    result = oms.place_order(resting_buy())
    adopted = wait_for(oms, result.order_id, lambda o: o.broker_order_id is not None)
    assert adopted.status is S.OPEN
    assert len(at_kite(emulator, adopted.tag)) == 1 and emulator.count("place") == 1


@pytest.mark.parametrize(("status", "html"), [(503, False), (500, False), (504, True)])
def test_a_5xx_on_place_is_looked_up_and_failed_when_kite_never_had_it(emulator, oms, status, html):
    emulator.faults.fail(status, "place", html=html)
    result = oms.place_order(market_buy())
    assert result.status is S.SUBMITTED  # a 5xx proves nothing either way
    failed = wait_for(oms, result.order_id, lambda o: o.status is S.FAILED)
    assert failed.status_message == f"the broker has no order tagged {failed.tag}"
    assert at_kite(emulator, failed.tag) == [] and emulator.count("place") == 1
    after = oms.place_order(market_buy())
    assert wait_for(oms, after.order_id, lambda o: o.status is S.FILLED)


def test_a_5xx_after_kite_took_the_order_is_adopted_not_resent(emulator, oms):
    emulator.faults.fail(504, "place", html=True, after_accept=True)
    result = oms.place_order(resting_buy())
    assert result.status is S.SUBMITTED
    adopted = wait_for(oms, result.order_id, lambda o: o.status is S.OPEN and o.broker_order_id is not None)
    assert len(at_kite(emulator, adopted.tag)) == 1 and emulator.count("place") == 1
    assert oms.cancel_order(result.order_id)
    assert wait_for(oms, result.order_id, lambda o: o.status is S.CANCELLED)


def test_a_429_on_place_fails_the_order_saying_try_later(emulator, oms):
    emulator.faults.fail(429, "place")
    with pytest.raises(OrderSubmissionFailed, match="rate limit") as refused:
        oms.place_order(market_buy())
    (failed,) = [o for o in oms.get_orders() if o.status is S.FAILED]
    assert "HTTP 429" in failed.status_message and at_kite(emulator, failed.tag) == []
    assert emulator.count("place") == 1
    retry = oms.place_order(market_buy())  # a new order, once the rate allows
    assert wait_for(oms, retry.order_id, lambda o: o.status is S.FILLED)
    assert_no_credentials(str(refused.value))


def test_reads_wait_out_429s_and_updates_still_arrive(emulator, oms):
    emulator.faults.fail(429, ("orders", "trades"), times=4)
    result = oms.place_order(resting_buy())
    emulator.set_price("INFY", "1489")
    assert wait_for(oms, result.order_id, lambda o: o.status is S.FILLED)


def test_an_expired_token_refuses_new_orders_with_a_clear_reason(emulator, oms, caplog):
    resting = oms.place_order(resting_buy("1485"))
    emulator.expire_tokens()
    with pytest.raises(OrderSubmissionFailed, match="log in again") as first:
        oms.place_order(market_buy())
    with pytest.raises(OrderSubmissionFailed, match="log in again") as second:
        oms.place_order(market_buy())
    # The resting order, and the first refused one unless a poll met the expired token
    # before it (then the OMS knew already and sent nothing): never the second.
    assert emulator.count("place") in (1, 2)
    with pytest.raises(OrderNotCancellable, match="log in again") as no_cancel:
        oms.cancel_order(resting.order_id)
    states = {o.order_id: o.status for o in oms.get_orders()}
    assert sorted(states.values()) == sorted([S.OPEN, S.FAILED, S.FAILED])  # the resting one still works at Kite
    assert "Kite refused the access token" in caplog.text
    assert_no_credentials(str(first.value), str(second.value), str(no_cancel.value))
