"""After-market orders (variety amo) through the whole OMS in Kite mode, the real
kiteconnect client and the Kite emulator, with the market-hours rule on and the clock
outside the session: a regular order is refused and told to use amo; an AMO is placed,
modified and cancelled with variety amo, rests working (OPEN) while Kite holds it as
AMO REQ RECEIVED, and fills into the position when the exchange opens."""
from __future__ import annotations

from decimal import Decimal

import pytest

from domain import OrderRejected, OrderStatus
from domain.enums import Variety
from tests.kite_helpers import eventually, kite_emulator, start_kite_oms
from tests.oms_helpers import Clock, buy, ist, rows, wait_for

D = Decimal
S = OrderStatus




def test_an_amo_rests_at_kite_is_modified_and_cancelled_as_amo_and_fills_when_the_exchange_opens(sqlite_url):
    clock = Clock(ist("2026-12-01T18:00:00"))  # a Tuesday evening: NSE closed
    with kite_emulator() as emulator:
        oms = start_kite_oms(emulator, sqlite_url, clock=clock, enforce_market_hours=True, require_stop_loss=False)
        try:
            oms.mark_price("INFY", "1500")
            with pytest.raises(OrderRejected) as refused:
                oms.place_order(buy("INFY", 5, order_type="LIMIT", price="1490", product="CNC"))
            assert refused.value.failed_check == "market_hours"
            assert refused.value.reason.endswith('; to place it for the next session use variety "amo"')
            assert emulator.count("place") == 0

            # An AMO: taken by Kite, held, working in the OMS; modified and cancelled as amo.
            first = oms.place_order(buy("INFY", 5, order_type="LIMIT", price="1490", product="CNC", variety="amo"))
            resting = wait_for(oms, first.order_id, lambda o: o.status is S.OPEN)
            assert resting.variety is Variety.AMO and resting.filled_quantity == 0
            (at_kite,) = emulator.book.orders_tagged(resting.tag)
            assert (at_kite["variety"], at_kite["status"]) == ("amo", "AMO REQ RECEIVED")
            emulator.set_price("INFY", "1480")  # no session: an AMO never matches before the open
            assert oms.modify_order(first.order_id, new_price="1495")
            eventually(lambda: emulator.book.orders_tagged(resting.tag)[0]["price"] == D("1495"), what="the AMO modified at Kite")
            assert emulator.book.orders_tagged(resting.tag)[0]["status"] == "AMO REQ RECEIVED"
            assert oms.cancel_order(first.order_id)
            cancelled = wait_for(oms, first.order_id, lambda o: o.status is S.CANCELLED)
            assert cancelled.filled_quantity == 0
            assert emulator.book.orders_tagged(resting.tag)[0]["status"] == "CANCELLED AMO"
            assert rows(sqlite_url, "SELECT variety FROM orders WHERE id = :id", id=first.order_id) == [{"variety": "amo"}]

            # Another AMO, and the exchange opens: it goes to the exchange and fills.
            second = oms.place_order(buy("INFY", 5, order_type="LIMIT", price="1500", product="CNC", variety="amo"))
            wait_for(oms, second.order_id, lambda o: o.status is S.OPEN)
            assert oms.get_positions() == [] or all(p.quantity == 0 for p in oms.get_positions())
            clock.now = ist("2026-12-02T09:15:00")
            assert emulator.open_amos() == [second.broker_order_id]
            filled = wait_for(oms, second.order_id, lambda o: o.status is S.FILLED)
            assert (filled.filled_quantity, filled.average_price) == (5, D("1480"))
            eventually(lambda: {p.symbol: p.quantity for p in oms.get_positions()} == {"INFY": 5}, what="the AMO's position")

            # In the session Kite refuses AMOs, and so does the OMS, before sending anything.
            placed = emulator.count("place")
            with pytest.raises(OrderRejected, match="Kite refuses it during market hours") as in_hours:
                oms.place_order(buy("INFY", 1, order_type="LIMIT", price="1480", product="CNC", variety="amo"))
            assert in_hours.value.failed_check == "market_hours"
            assert emulator.count("place") == placed
        finally:
            oms.stop()
