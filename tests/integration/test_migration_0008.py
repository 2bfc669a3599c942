"""Migration 0008: a paper account's book gets the orders that traded before the book
kept them (0004 put in only the working ones), so the paper exchange's positions, which
reconciliation trusts, are the positions the OMS built; a Kite-only account is left alone."""
from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, text

from actors import start_oms
from persistence.migrate import alembic_config, current_revision, head_revision, upgrade
from tests.oms_helpers import buy, rows, wait_for


def test_a_book_missing_its_finished_orders_gets_them_back_and_reconciliation_finds_nothing(database_url):
    oms = start_oms(database_url=database_url)
    try:
        oms.paper.set_price("INFY", "1500")
        for quantity in (3, 4):
            placed = oms.place_order(buy("INFY", quantity, stop_loss="1450"))
            wait_for(oms, placed.order_id, lambda o: o.status.value == "FILLED")
    finally:
        oms.stop()
    book_before = rows(database_url, "SELECT broker_order_id, status, filled_quantity FROM paper_orders ORDER BY arrival")
    trades_before = rows(database_url, "SELECT trade_id, quantity FROM paper_trades ORDER BY seq")

    # As a book made by 0004 over an older database: its finished orders were never in it.
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM paper_trades"))
            conn.execute(text("DELETE FROM paper_orders"))
            command.stamp(alembic_config(conn), "0007_day_baselines")
        upgrade(engine, "0008_paper_book_history")
        assert current_revision(engine) == "0008_paper_book_history"
        with engine.begin() as conn:  # the later revisions' tables are there already
            command.stamp(alembic_config(conn), head_revision())
    finally:
        engine.dispose()

    assert rows(database_url, "SELECT broker_order_id, status, filled_quantity FROM paper_orders ORDER BY arrival") == book_before
    assert sorted((r["trade_id"], r["quantity"]) for r in rows(database_url, "SELECT trade_id, quantity FROM paper_trades")) == sorted(
        (r["trade_id"], r["quantity"]) for r in trades_before
    )
    oms = start_oms(database_url=database_url)
    try:
        assert {p.symbol: p.quantity for p in oms.get_positions()} == {"INFY": 7}
        assert oms.reconcile_positions()["all_clear"] is True
    finally:
        oms.stop()
    assert rows(database_url, "SELECT * FROM reconciliation_log") == []
