"""Kite's instrument master in the OMS: loaded at start, cached in the database (a
restart the same day does not fetch it again), used by the order checks (the
instrument's tick, lots for F&O); when it cannot be loaded the OMS says so, falls back to
the built-in tick table and refuses only F&O orders."""
from __future__ import annotations

from decimal import Decimal

import pytest

from actors.supervisor import HealthState
from domain import OrderRejected, OrderStatus
from tests.kite_helpers import kite_emulator, start_kite_oms
from tests.oms_helpers import buy, rows

S = OrderStatus
OPTION = "NIFTY26DEC24000CE"


@pytest.fixture
def emulator():
    with kite_emulator() as emu:
        emu.set_price("INFY", "1500", tick_size="0.50")  # coarser than the built-in table's 0.10
        emu.set_price(OPTION, "100", exchange="NFO", tick_size="0.05", lot_size=75)
        yield emu


def option_buy(quantity: int):
    return buy(OPTION, quantity, exchange="NFO", order_type="LIMIT", price="100.05", product="NRML", stop_loss="90")


def infy_buy(price: str):
    return buy("INFY", 10, order_type="LIMIT", price=price, product="MIS", stop_loss="1480")


def refused_by(oms, request) -> OrderRejected:
    with pytest.raises(OrderRejected) as refused:
        oms.place_order(request)
    return refused.value


def test_the_master_is_loaded_used_by_the_checks_and_cached_for_a_restart(emulator, database_url):
    oms = start_kite_oms(emulator, database_url)
    try:
        assert emulator.count("instruments") == 1 and oms.health().state is HealthState.RUNNING
        oms.mark_price("INFY", "1500")
        oms.mark_price(OPTION, "100", exchange="NFO")
        off_tick = refused_by(oms, infy_buy("1490.10"))
        assert off_tick.failed_check == "instrument"
        assert off_tick.reason == "price: 1490.10 is not a multiple of NSE:INFY's tick size 0.5"
        odd_lot = refused_by(oms, option_buy(50))
        assert (odd_lot.failed_check, odd_lot.reason) == ("instrument", f"quantity: 50 is not a multiple of NFO:{OPTION}'s lot size 75")
        assert emulator.count("place") == 0  # refused here, not by Kite
        assert oms.place_order(option_buy(150)).status is S.OPEN
        assert oms.place_order(infy_buy("1490.50")).status is S.OPEN
    finally:
        oms.stop()
    cached = rows(database_url, "SELECT exchange, tradingsymbol, tick_size, lot_size FROM instruments ORDER BY exchange")
    assert {(r["exchange"], r["tradingsymbol"], str(Decimal(str(r["tick_size"])).normalize()), r["lot_size"]) for r in cached} >= {
        ("NFO", OPTION, "0.05", 75), ("NSE", "INFY", "0.5", 1)}

    emulator.faults.fail(500, "instruments", times=None)  # the restart must not need it
    oms = start_kite_oms(emulator, database_url)
    try:
        assert emulator.count("instruments") == 1 and oms.health().state is HealthState.RUNNING
        oms.mark_price(OPTION, "100", exchange="NFO")
        assert refused_by(oms, option_buy(60)).failed_check == "instrument"
        assert oms.place_order(option_buy(75)).status is S.OPEN
    finally:
        oms.stop()


def test_without_a_master_the_oms_says_so_and_refuses_only_fno(emulator, sqlite_url, caplog):
    emulator.faults.fail(503, "instruments", times=None)
    oms = start_kite_oms(emulator, sqlite_url)
    try:
        health = oms.health()
        assert health.state is HealthState.DEGRADED
        assert "the instrument master could not be loaded" in health.reason
        assert "derivative (F&O) orders are refused" in health.reason and health.reason in caplog.text
        oms.mark_price("INFY", "1500")
        oms.mark_price(OPTION, "100", exchange="NFO")
        fo = refused_by(oms, option_buy(75))
        assert fo.failed_check == "instrument" and f"NFO:{OPTION} is a derivative, refused without its lot and tick sizes" in fo.reason
        cash = oms.place_order(infy_buy("1490.50"))  # the built-in table's 0.10 tick
        assert cash.status is S.OPEN
    finally:
        oms.stop()
