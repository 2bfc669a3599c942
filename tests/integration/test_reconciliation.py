"""Reconciliation: the OMS's positions converge on the broker's. A broker whose positions
were changed behind the OMS's back is reconciled, every difference is found and logged in
``reconciliation_log`` in the guide's columns, and the next pass is all_clear; a fill
still on its way is never "corrected"."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from kiteconnect import KiteConnect

from actors import start_oms
from domain import Exchange, Product
from domain.position import Position
from persistence.store import Store
from tests.kite_helpers import KEY, SECRET, TOKEN, eventually, kite_emulator, start_kite_oms
from tests.oms_helpers import buy, rows, wait_for

D = Decimal
GUIDE_COLUMNS = {
    "symbol", "issue_type", "internal_quantity", "broker_quantity", "resolved", "resolution",
    "detected_at", "resolved_at", "metadata",
}


def quantities(oms) -> dict[str, int]:
    return {p.symbol: p.quantity for p in oms.get_positions() if p.quantity}


def test_positions_changed_behind_the_oms_back_are_found_logged_corrected_and_then_all_clear(database_url):
    oms = start_oms(database_url=database_url, reconcile_settle=0.1)
    try:
        oms.paper.set_price("RELIANCE", "2450")
        oms.paper.set_price("INFY", "1500")
        placed = oms.place_order(buy("RELIANCE", 10, order_type="MARKET", product="MIS", stop_loss="2400"))
        wait_for(oms, placed.order_id, lambda o: o.status.value == "FILLED")
        assert oms.reconcile_positions()["all_clear"] is True

        # Someone trades at the broker's terminal: 2 RELIANCE sold, 5 INFY bought.
        oms.paper.trade_outside("RELIANCE", "SELL", 2)
        oms.paper.trade_outside("INFY", "BUY", 5)
        report = oms.reconcile_positions()

        assert report["all_clear"] is False
        (mismatch,) = report["mismatches"]
        assert (mismatch["symbol"], mismatch["internal_quantity"], mismatch["broker_quantity"]) == ("RELIANCE", 10, 8)
        assert mismatch["difference"] == -2 and mismatch["type"] == "QUANTITY_MISMATCH"
        (unknown,) = report["unknown_positions"]
        assert (unknown["symbol"], unknown["broker_quantity"], unknown["broker_avg_price"]) == ("INFY", 5, D("1500"))
        assert {o["side"] for o in report["untagged_orders"]} == {"SELL", "BUY"}
        assert report["timestamp"].endswith("+00:00")
        assert quantities(oms) == {"RELIANCE": 8, "INFY": 5}

        again = oms.reconcile_positions()
        assert again["all_clear"] is True and not again["mismatches"] and not again["untagged_orders"]
    finally:
        oms.stop()

    log = rows(database_url, "SELECT * FROM reconciliation_log ORDER BY id")
    assert GUIDE_COLUMNS <= set(log[0])
    by_type = {row["issue_type"]: row for row in log if row["issue_type"] != "UNTAGGED_ORDER"}
    assert set(by_type) == {"QUANTITY_MISMATCH", "UNKNOWN_POSITION"}
    fix = by_type["QUANTITY_MISMATCH"]
    assert (fix["symbol"], fix["internal_quantity"], fix["broker_quantity"]) == ("RELIANCE", 10, 8)
    assert fix["resolved"] and fix["resolution"].startswith("RECONCILIATION_FIX") and fix["resolved_at"] is not None
    untagged = [row for row in log if row["issue_type"] == "UNTAGGED_ORDER"]
    assert len(untagged) == 2 and not any(row["resolved"] for row in untagged)
    metadata = [row["metadata"] if isinstance(row["metadata"], dict) else json.loads(row["metadata"]) for row in untagged]
    assert {m["symbol"] for m in metadata} == {"RELIANCE", "INFY"}
    (position,) = rows(database_url, "SELECT quantity FROM positions WHERE symbol = 'RELIANCE'")
    assert position["quantity"] == 8


def test_a_phantom_position_is_closed_at_start_before_any_new_order(sqlite_url):
    """The database says we hold 7 TCS; the broker never saw a trade in it. Start-up
    reconciliation closes it before start_oms returns."""
    oms = start_oms(database_url=sqlite_url)
    oms.stop()
    store = Store.open(sqlite_url)
    try:
        at = datetime(2026, 11, 30, 4, 0, tzinfo=timezone.utc)
        store.record_position(Position(Exchange.NSE, "TCS", Product.MIS, 7, D("3500"), updated_at=at, opened_at=at))
    finally:
        store.close()

    oms = start_oms(database_url=sqlite_url, reconcile_settle=0.1)
    try:
        assert quantities(oms) == {}
        assert oms.reconcile_positions()["all_clear"] is True
    finally:
        oms.stop()
    (phantom,) = rows(sqlite_url, "SELECT * FROM reconciliation_log")
    assert (phantom["issue_type"], phantom["symbol"], phantom["internal_quantity"], phantom["broker_quantity"]) == (
        "PHANTOM_POSITION", "TCS", 7, 0,
    )
    (closed,) = rows(sqlite_url, "SELECT quantity, closed_at FROM positions WHERE symbol = 'TCS'")
    assert closed["quantity"] == 0 and closed["closed_at"] is not None


def test_reconciliation_runs_on_its_own_every_interval(sqlite_url):
    oms = start_oms(database_url=sqlite_url, reconcile_interval=0.2, reconcile_settle=0.05)
    try:
        oms.paper.set_price("INFY", "1500")
        oms.paper.trade_outside("INFY", "SELL", 3, product="NRML")
        eventually(lambda: quantities(oms) == {"INFY": -3}, what="the periodic pass adopting the broker's short")
    finally:
        oms.stop()
    kinds = [row["issue_type"] for row in rows(sqlite_url, "SELECT issue_type FROM reconciliation_log ORDER BY id")]
    assert kinds == ["UNTAGGED_ORDER", "UNKNOWN_POSITION"]


# --------------------------------------------------------------------------- Kite


@pytest.fixture
def emulator():
    with kite_emulator() as emu:
        yield emu


def test_on_kite_a_fill_on_its_way_is_left_for_the_next_pass_never_counted_twice(emulator, sqlite_url):
    """Kite has filled our order, but the OMS has not heard yet (Kite's trade book cannot
    be read for now). Reconciliation sees the broker ahead and waits: correcting now and
    then applying the fill when it comes would count it twice."""
    oms = start_kite_oms(emulator, sqlite_url, kite_poll_interval=0.1, reconcile_settle=0.1)
    try:
        emulator.faults.fail(503, routes="trades", times=None)
        oms.mark_price("INFY", "1500")
        placed = oms.place_order(buy("INFY", 10, order_type="LIMIT", price="1500", product="MIS", stop_loss="1480"))
        (at_kite,) = emulator.book.orders_tagged(oms.get_order_status(placed.order_id).tag)
        assert at_kite["status"] == "COMPLETE"

        report = oms.reconcile_positions()
        assert report["all_clear"] is True  # nothing corrected ...
        (waiting,) = report["deferred"]  # ... the difference is left for the next pass
        assert (waiting["symbol"], waiting["internal_quantity"], waiting["broker_quantity"]) == ("INFY", 0, 10)
        assert quantities(oms) == {}

        emulator.faults.clear()  # the news arrives
        eventually(lambda: quantities(oms) == {"INFY": 10}, what="the fill applied")
        after = oms.reconcile_positions()
        assert after["all_clear"] is True and not after["deferred"]
        assert quantities(oms) == {"INFY": 10}
    finally:
        oms.stop()
    assert rows(sqlite_url, "SELECT * FROM reconciliation_log") == []


def test_on_kite_a_fill_that_never_came_is_fetched_and_applied_once(emulator, sqlite_url):
    """No poll for 30 s and no postback: after the grace, reconciliation fetches the
    order's trades for its tracker. The position moves by the fill, once; nothing is
    "corrected" behind the tracker's back."""
    oms = start_kite_oms(emulator, sqlite_url, kite_poll_interval=30, reconcile_settle=0.05, reconcile_fill_grace=0.3)
    try:
        oms.mark_price("INFY", "1500")
        placed = oms.place_order(buy("INFY", 4, order_type="LIMIT", price="1500", product="MIS", stop_loss="1480"))
        assert oms.reconcile_positions()["deferred"]
        time.sleep(0.4)
        assert oms.reconcile_positions()["deferred"]  # fetched: on its way to the tracker now
        filled = wait_for(oms, placed.order_id, lambda o: o.status.value == "FILLED")
        assert filled.filled_quantity == 4 and quantities(oms) == {"INFY": 4}
        after = oms.reconcile_positions()
        assert after["all_clear"] is True and not after["deferred"]
        assert len(oms.get_trades(placed.order_id)) == len(emulator.book.trades())
    finally:
        oms.stop()
    log = rows(sqlite_url, "SELECT * FROM reconciliation_log")
    assert [(r["issue_type"], r["internal_quantity"], r["broker_quantity"], bool(r["resolved"])) for r in log] == [
        ("ORDER_DRIFT", 0, 4, True),
    ]


def test_on_kite_a_fill_whose_trades_cannot_be_read_is_never_guessed(emulator, sqlite_url):
    """Kite's trade book down: the fill stays "on its way" however long, and the position
    is not corrected (correcting it and then applying the fill would count it twice)."""
    oms = start_kite_oms(emulator, sqlite_url, kite_poll_interval=0.1, reconcile_settle=0.05, reconcile_fill_grace=0.1)
    try:
        emulator.faults.fail(503, routes=("trades", "order_trades"), times=None)
        oms.mark_price("INFY", "1500")
        oms.place_order(buy("INFY", 4, order_type="LIMIT", price="1500", product="MIS", stop_loss="1480"))
        for _ in range(3):
            report = oms.reconcile_positions()
            assert report["deferred"] and not report["unknown_positions"]
            time.sleep(0.15)
        assert quantities(oms) == {}
        emulator.faults.clear()
        eventually(lambda: quantities(oms) == {"INFY": 4}, what="the fill applied once Kite answers")
        assert oms.reconcile_positions()["all_clear"] is True
    finally:
        oms.stop()


def test_on_kite_an_order_placed_outside_the_oms_is_reported_once_and_its_position_adopted(emulator, sqlite_url):
    oms = start_kite_oms(emulator, sqlite_url, reconcile_settle=0.1)
    try:
        kite = KiteConnect(KEY, TOKEN, root=emulator.url, timeout=2)
        kite.place_order("regular", "NSE", "RELIANCE", "BUY", 3, "MIS", "MARKET", market_protection=-1)
        report = oms.reconcile_positions()
        (untagged,) = report["untagged_orders"]
        assert (untagged["symbol"], untagged["side"], untagged["quantity"], untagged["tag"]) == ("RELIANCE", "BUY", 3, None)
        (unknown,) = report["unknown_positions"]
        assert (unknown["symbol"], unknown["broker_quantity"], unknown["broker_avg_price"]) == ("RELIANCE", 3, D("2450"))
        assert oms.reconcile_positions()["all_clear"] is True
        assert SECRET not in repr(report)
    finally:
        oms.stop()
    kinds = sorted(r["issue_type"] for r in rows(sqlite_url, "SELECT issue_type FROM reconciliation_log"))
    assert kinds == ["UNKNOWN_POSITION", "UNTAGGED_ORDER"]
    # Restarted, the same untagged order is not reported again.
    oms = start_kite_oms(emulator, sqlite_url, reconcile_settle=0.1)
    try:
        assert oms.reconcile_positions()["untagged_orders"] == ()
    finally:
        oms.stop()


def test_on_kite_a_broker_that_cannot_be_read_fails_the_pass_and_changes_nothing(emulator, sqlite_url):
    oms = start_kite_oms(emulator, sqlite_url, reconcile_settle=0.05, reconcile_interval=0.1)
    try:
        oms.mark_price("INFY", "1500")
        oms.place_order(buy("INFY", 2, order_type="MARKET", product="MIS", stop_loss="1480"))
        eventually(lambda: quantities(oms) == {"INFY": 2}, what="the fill applied")
        emulator.faults.fail(503, routes="positions", times=None)
        with pytest.raises(Exception, match="(?i)unavailable|503|service"):
            oms.reconcile_positions()
        time.sleep(0.3)  # periodic passes fail too, quietly for the OMS
        assert quantities(oms) == {"INFY": 2}
        assert oms.health().state.value == "RUNNING"
        emulator.faults.clear()
        assert oms.reconcile_positions()["all_clear"] is True
    finally:
        oms.stop()
    assert rows(sqlite_url, "SELECT * FROM reconciliation_log") == []


# --------------------------------------------------------------------------- recovery


def test_on_kite_start_returns_with_what_happened_while_down_settled_and_reconciled(emulator, sqlite_url, caplog):
    """Orders left working are filled and cancelled at Kite while the OMS is down. When
    start_oms returns they are settled, their fills applied once, and the positions
    already agree with Kite's: the start-up pass finds nothing to correct."""
    caplog.set_level("WARNING", logger="oms")
    oms = start_kite_oms(emulator, sqlite_url, kite_poll_interval=30)
    try:
        oms.mark_price("INFY", "1500")
        filling = oms.place_order(buy("INFY", 6, order_type="LIMIT", price="1490", product="MIS", stop_loss="1480"))
        cancelled = oms.place_order(buy("INFY", 3, order_type="LIMIT", price="1450", product="MIS", stop_loss="1440"))
    finally:
        oms.stop()
    emulator.set_price("INFY", "1489")  # fills the first, not the second
    emulator.book.cancel("regular", cancelled.broker_order_id)

    oms = start_kite_oms(emulator, sqlite_url, kite_poll_interval=30)
    try:
        assert oms.get_order_status(filling.order_id).status.value == "FILLED"
        assert oms.get_order_status(cancelled.order_id).status.value == "CANCELLED"
        assert quantities(oms) == {"INFY": 6}
        assert len(oms.get_trades(filling.order_id)) == len(emulator.book.trades())
    finally:
        oms.stop()
    assert "recovered 2 orders left live by the last run: 1 CANCELLED, 1 FILLED" in caplog.text
    assert rows(sqlite_url, "SELECT * FROM reconciliation_log") == []
