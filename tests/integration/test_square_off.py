"""The MIS square-off: with the clock rules on, at 15:15 IST (configurable) the OMS cancels
the open MIS orders and closes the MIS positions of NSE/BSE/NFO/BFO, once that day, and
refuses new MIS positions after it; CNC and NRML are left alone. The clock is the OMS's
own, moved by the test (never slept until)."""
from __future__ import annotations

from datetime import datetime, time, timezone

import pytest

from actors import start_oms
from domain import OrderRejected, OrderStatus
from domain.enums import Exchange
from domain.market_hours import MarketCalendar
from domain.square_off import past_square_off, square_off_due
from tests.kite_helpers import eventually
from tests.oms_helpers import buy, sell, wait_for

S = OrderStatus
UTC = timezone.utc
TUESDAY_1030_IST = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)
TUESDAY_1515_IST = datetime(2026, 12, 1, 9, 45, tzinfo=UTC)


def held(oms) -> dict[tuple[str, str], int]:
    return {(p.symbol, p.product.value): p.quantity for p in oms.get_positions() if p.quantity}


@pytest.mark.parametrize(("now", "due"), [
    (datetime(2026, 12, 1, 9, 44, 59, tzinfo=UTC), False),  # 15:14:59 IST
    (TUESDAY_1515_IST, True),
    (datetime(2026, 12, 1, 9, 59, 59, tzinfo=UTC), True),  # 15:29:59
    (datetime(2026, 12, 1, 10, 0, tzinfo=UTC), False),  # 15:30: closed, nothing can be sent
    (datetime(2026, 12, 5, 9, 50, tzinfo=UTC), False),  # a Saturday
    (datetime(2026, 12, 25, 9, 50, tzinfo=UTC), False),  # Christmas
])
def test_when_the_square_off_is_due(now, due):
    from actors.settings import OMSSettings

    calendar = OMSSettings(broker="paper").market_calendar()
    assert square_off_due(now, time(15, 15), None, calendar) is due
    assert square_off_due(now, time(15, 15), now.date(), MarketCalendar()) is False  # done today already
    assert past_square_off(Exchange.MCX, now, time(15, 15)) is False  # commodities run later


def test_mis_is_squared_off_at_its_time_and_no_new_mis_opens_after(sqlite_url):
    clock = [TUESDAY_1030_IST]
    oms = start_oms(database_url=sqlite_url, clock=lambda: clock[0], enforce_market_hours=True)
    try:
        oms.paper.set_price("RELIANCE", "2450")
        oms.paper.set_price("INFY", "1500")
        intraday = oms.place_order(buy("RELIANCE", 10, product="MIS", stop_loss="2400"))
        wait_for(oms, intraday.order_id, lambda o: o.status is S.FILLED)
        delivery = oms.place_order(buy("INFY", 5, product="CNC", stop_loss="1450"))
        wait_for(oms, delivery.order_id, lambda o: o.status is S.FILLED)
        resting = oms.place_order(sell("INFY", 2, order_type="LIMIT", price="1600", product="MIS", stop_loss="1650"))
        assert resting.status is S.OPEN or oms.get_order_status(resting.order_id).status is S.OPEN

        clock[0] = TUESDAY_1515_IST
        eventually(lambda: held(oms) == {("INFY", "CNC"): 5}, timeout=15, what="the MIS book closed")
        assert oms.get_order_status(resting.order_id).status is S.CANCELLED
        exit_order = next(o for o in oms.get_orders() if o.metadata.get("exit_reason") == "mis_square_off")
        assert (exit_order.symbol, exit_order.side.value, exit_order.quantity) == ("RELIANCE", "SELL", 10)

        with pytest.raises(OrderRejected, match="squared off at 15:15 IST") as refused:
            oms.place_order(buy("RELIANCE", 1, product="MIS", stop_loss="2400"))
        assert refused.value.failed_check == "market_hours"
        assert oms.place_order(buy("RELIANCE", 1, product="CNC", stop_loss="2400")).order_id
        assert oms.trading_state.value == "RUNNING"
    finally:
        oms.stop()
