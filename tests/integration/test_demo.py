"""run_oms.py as a user runs it: the demo end to end, --help, and --serve with SIGTERM.

Each test runs the script in a subprocess and then reads the database on its own,
apart from the OMS, to check what the demo claims it did.
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_OMS = REPO_ROOT / "run_oms.py"
DEMO_TIMEOUT_S = 60  # the demo itself takes a second or two; it must stay well under 30 s


def clean_env() -> dict[str, str]:
    """The environment without any OMS_* configuration, so the defaults apply."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def run(*args: str, cwd: Path, timeout: float = DEMO_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RUN_OMS), *args],
        cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout,
    )


def read(url: str, sql: str) -> list[dict]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(row) for row in conn.execute(text(sql)).mappings()]
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[subprocess.CompletedProcess, str, float]:
    """One run of the demo (shared by the checks below): result, database URL, seconds."""
    tmp = tmp_path_factory.mktemp("demo")
    url = f"sqlite:///{tmp / 'demo.db'}"
    started = time.monotonic()
    result = run("--database-url", url, "--quiet", cwd=tmp)
    return result, url, time.monotonic() - started


def test_demo_exits_zero_quickly_and_its_summary_matches_the_database(demo):
    result, url, seconds = demo
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "summary matches the database" in result.stdout
    assert "SUMMARY" in result.stdout and "total realized P&L" in result.stdout
    assert "UNEXPECTED" not in result.stdout and "did not go as scripted" not in result.stdout
    assert seconds < 30, f"the demo took {seconds:.1f}s"


def test_demo_database_holds_every_kind_of_outcome(demo):
    result, url, _ = demo
    assert result.returncode == 0, result.stderr
    orders = read(url, "SELECT * FROM orders")
    statuses = {o["status"] for o in orders}
    assert {"FILLED", "CANCELLED", "REJECTED"} <= statuses

    # the partial fill whose remainder was cancelled
    assert any(o["status"] == "CANCELLED" and 0 < o["filled_quantity"] < o["quantity"] for o in orders)
    # the modified order
    assert any(o["modification_count"] >= 1 for o in orders)
    # rejections of several kinds, each stored with its reason
    rejected = [o for o in orders if o["status"] == "REJECTED"]
    assert len(rejected) >= 4 and all(o["status_message"] for o in rejected)
    messages = " | ".join(o["status_message"] for o in rejected)
    for phrase in ("risk per trade", "stop-loss required", "maximum order value", "available balance", "circuit band"):
        assert phrase in messages, f"no rejection mentioning {phrase!r}: {messages}"

    positions = read(url, "SELECT * FROM positions")
    realized = [Decimal(str(p["realized_pnl"])) for p in positions]
    assert any(r > 0 for r in realized), "no position closed at a profit"
    assert any(r < 0 for r in realized), "no position closed at a loss"


def test_demo_audit_trail_and_trades_agree_with_the_orders(demo):
    result, url, _ = demo
    assert result.returncode == 0, result.stderr
    orders = read(url, "SELECT order_id, status, quantity, filled_quantity FROM orders")
    events = read(url, "SELECT order_id FROM order_events")
    trades = read(url, "SELECT order_id, quantity FROM trades")

    events_per_order: dict[str, int] = defaultdict(int)
    for e in events:
        events_per_order[e["order_id"]] += 1
    traded: dict[str, int] = defaultdict(int)
    for t in trades:
        traded[t["order_id"]] += t["quantity"]

    assert orders
    for o in orders:
        assert events_per_order[o["order_id"]] >= 1, f"order {o['order_id']} has no order_events row"
        assert o["filled_quantity"] == traded[o["order_id"]], f"order {o['order_id']}: filled != sum of its trades"
        if o["status"] == "FILLED":
            assert o["filled_quantity"] == o["quantity"] == traded[o["order_id"]]


def test_demo_with_no_arguments_recreates_oms_demo_db_in_the_current_directory(tmp_path):
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"oms_demo.db{suffix}").write_bytes(b"left over from an older run")
    result = run("--quiet", cwd=tmp_path)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "summary matches the database" in result.stdout
    url = f"sqlite:///{tmp_path / 'oms_demo.db'}"
    assert read(url, "SELECT COUNT(*) AS n FROM orders")[0]["n"] > 0


def test_help_documents_the_options():
    result = subprocess.run(
        [sys.executable, str(RUN_OMS), "--help"], env=clean_env(), capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    for option in ("--serve", "--database-url", "--config", "--capital", "--quiet", "--log-level"):
        assert option in result.stdout
    assert "oms_demo.db" in result.stdout


def _lines(stream, into: "queue.Queue[str]") -> None:
    for line in iter(stream.readline, ""):
        into.put(line)
    stream.close()


def test_serve_runs_until_sigterm_and_exits_cleanly(tmp_path):
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    process = subprocess.Popen(
        [sys.executable, str(RUN_OMS), "--serve", "--database-url", url],
        cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    out: queue.Queue[str] = queue.Queue()
    err: queue.Queue[str] = queue.Queue()
    readers = [threading.Thread(target=_lines, args=(process.stdout, out), daemon=True),
               threading.Thread(target=_lines, args=(process.stderr, err), daemon=True)]
    for reader in readers:
        reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while not any("OMS running" in line for line in seen):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"--serve never said it was running (exit {process.poll()}): {seen} {list(err.queue)}")
            try:
                seen.append(out.get(timeout=0.1))
            except queue.Empty:
                pass
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0, list(err.queue)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        for reader in readers:
            reader.join(timeout=5)
    while not out.empty():
        seen.append(out.get())
    assert any("OMS stopped" in line for line in seen), seen
    # it migrated the database and placed no orders
    assert read(url, "SELECT COUNT(*) AS n FROM orders")[0]["n"] == 0
