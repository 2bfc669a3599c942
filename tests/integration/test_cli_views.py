"""``oms status``, ``orders``, ``positions``, ``trades`` and ``audit`` read what the OMS
wrote, from the same settings, without a running OMS and without writing; a missing
database, an unreachable server, a database the OMS never ran on and a wrong id are
each one clear line and a failing exit code."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from actors import start_oms
from cli.main import main
from domain import OrderRejected, OrderStatus
from tests.oms_helpers import buy, sell, wait_for

S = OrderStatus


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def as_json(capsys, *argv: str):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def traded(database_url, monkeypatch):
    """A database with a filled round trip, a cancelled resting order and a refusal."""
    monkeypatch.setenv("OMS_DATABASE_URL", database_url)
    oms = start_oms(database_url=database_url)
    try:
        oms.paper.set_price("INFY", "1500")
        bought = oms.place_order(buy("INFY", 10, stop_loss="1450", strategy_id=1))
        wait_for(oms, bought.order_id, lambda o: o.status is S.FILLED)
        oms.paper.set_price("INFY", "1510")
        sold = oms.place_order(sell("INFY", 10, strategy_id=1))
        wait_for(oms, sold.order_id, lambda o: o.status is S.FILLED)
        resting = oms.place_order(buy("INFY", 2, order_type="LIMIT", price="1400", stop_loss="1350", strategy_id=2))
        oms.cancel_order(resting.order_id)
        wait_for(oms, resting.order_id, lambda o: o.status is S.CANCELLED)
        with pytest.raises(OrderRejected) as refused:
            oms.place_order(buy("INFY", 1, stop_loss="1600", strategy_id=2))
        ids = {"bought": bought.order_id, "sold": sold.order_id, "resting": resting.order_id, "refused": refused.value.order_id}
    finally:
        oms.stop()
    return ids


def test_the_views_show_what_the_oms_recorded(traded, capsys):
    status = as_json(capsys, "status")
    assert status["running"] is None and status["trading_state"] == "RUNNING"
    assert status["orders"]["FILLED"] == 2 and status["orders"]["CANCELLED"] == 1 and status["orders"]["REJECTED"] == 1
    assert status["live_orders"] == 0 and status["open_positions"] == 0
    assert status["realized_pnl"] == "100.00"  # (1510 - 1500) x 10, charges apart
    assert float(status["charges"]) > 0 and status["database"].startswith(("sqlite", "postgresql"))

    newest = as_json(capsys, "orders")
    assert [o["order_id"] for o in newest] == sorted(traded.values(), reverse=True)
    filled = as_json(capsys, "orders", "--status", "FILLED")
    assert {o["order_id"] for o in filled} == {traded["bought"], traded["sold"]}
    second = as_json(capsys, "orders", "--strategy", "2", "--status", "CANCELLED", "--status", "REJECTED")
    assert {o["order_id"] for o in second} == {traded["resting"], traded["refused"]}
    assert len(as_json(capsys, "orders", "--limit", "1")) == 1

    assert as_json(capsys, "positions") == []  # flat
    flat = as_json(capsys, "positions", "--all")
    assert [(p["symbol"], p["quantity"], p["realized_pnl"]) for p in flat] == [("INFY", 0, "100.00")]

    trades = as_json(capsys, "trades")
    assert [(t["order_id"], t["side"], t["quantity"]) for t in trades] == [(traded["bought"], "BUY", 10), (traded["sold"], "SELL", 10)]
    assert all(t["charges_total"] == str(sum_charges(t)) for t in trades)
    assert [t["order_id"] for t in as_json(capsys, "trades", "--order", str(traded["sold"]))] == [traded["sold"]]

    # The same for people: tables that name every order.
    code, out, _ = run(capsys, "orders")
    assert code == 0
    for order_id in traded.values():
        assert f"│ {order_id} " in out
    code, out, _ = run(capsys, "status")
    assert code == 0 and "trading state RUNNING" in out and "OMS running no" in out


def sum_charges(trade) -> object:
    from decimal import Decimal
    return sum((Decimal(v) for v in trade["charges"].values()), Decimal(0))


def test_audit_shows_an_orders_life_from_pending_to_its_end(traded, capsys):
    life = as_json(capsys, "audit", str(traded["resting"]))
    assert life["order"]["status"] == "CANCELLED"
    steps = [(e["from_status"], e["to_status"]) for e in life["events"]]
    assert steps[0] == (None, "PENDING") and steps[-1] == ("OPEN", "CANCELLED")
    assert ("PENDING", "SUBMITTED") in steps and ("SUBMITTED", "OPEN") in steps

    code, out, _ = run(capsys, "audit", str(traded["bought"]))
    assert code == 0
    assert "-> FILLED" in out and "PENDING" in out and "validated:" in out
    code, out, _ = run(capsys, "audit", str(traded["refused"]))
    assert code == 0 and "refused by protective_prices" in out

    code, out, err = run(capsys, "audit", "424242")
    assert code == 1 and out == "" and err.strip() == "oms audit: no order 424242 in account 'default'"


def test_status_sees_a_running_oms_and_its_trading_state(sqlite_url, monkeypatch, capsys):
    monkeypatch.setenv("OMS_DATABASE_URL", sqlite_url)
    oms = start_oms(database_url=sqlite_url)
    try:
        oms.halt("news pending")
        status = as_json(capsys, "status")
        assert status["running"] == f"pid {os.getpid()}"
        assert (status["trading_state"], status["trading_state_reason"]) == ("HALTED", "news pending")
    finally:
        oms.stop()
    assert as_json(capsys, "status")["running"] is None


def test_a_database_the_views_cannot_read_is_one_clear_line(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "nowhere.db"
    monkeypatch.setenv("OMS_DATABASE_URL", f"sqlite:///{missing}")
    code, out, err = run(capsys, "status")
    assert code == 1 and out == ""
    assert err.strip() == f"oms status: no database at {missing} (OMS_DATABASE_URL=sqlite:///{missing}); start the OMS once to create it"
    assert not missing.exists()  # a look never creates one

    empty = tmp_path / "empty.db"
    create_engine(f"sqlite:///{empty}").connect().close()
    monkeypatch.setenv("OMS_DATABASE_URL", f"sqlite:///{empty}")
    code, _, err = run(capsys, "orders")
    assert code == 1 and "holds no OMS tables; start the OMS once to create them" in err

    monkeypatch.setenv("OMS_DATABASE_URL", "postgresql+psycopg://oms:hunter2@127.0.0.1:1/oms")
    code, _, err = run(capsys, "positions")
    assert code == 1 and "Connection refused" in err and "hunter2" not in err and "***" in err

    monkeypatch.setenv("OMS_CAPITAL", "-5")
    code, _, err = run(capsys, "status")
    assert code == 2 and "OMS_CAPITAL" in err


def test_a_database_behind_this_oms_is_not_read_but_named(sqlite_url, monkeypatch, capsys):
    start_oms(database_url=sqlite_url).stop()
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0007_day_baselines'"))
    engine.dispose()
    monkeypatch.setenv("OMS_DATABASE_URL", sqlite_url)
    code, _, err = run(capsys, "trades")
    assert code == 1 and "is at schema revision 0007_day_baselines" in err and "start the OMS to migrate it" in err


def test_the_oms_console_script_is_installed(sqlite_url, tmp_path):
    start_oms(database_url=sqlite_url).stop()
    script = shutil.which("oms") or str(Path(sys.executable).with_name("oms"))
    env = {**os.environ, "OMS_DATABASE_URL": sqlite_url}
    done = subprocess.run([script, "status", "--json"], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["live_orders"] == 0
