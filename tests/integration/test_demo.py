"""run_oms.py as a user runs it: the demo end to end (quiet, as a log, on a terminal),
--help, and --serve with SIGTERM.

Each test runs the script in a subprocess and then reads the database on its own,
apart from the OMS, to check what the demo claims it did.
"""
from __future__ import annotations

import os
import pty
import queue
import re
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


def test_demo_shows_values_as_a_trader_reads_them(demo):
    result, _, _ = demo
    assert result.returncode == 0, result.stderr
    assert "0E-" not in result.stdout
    assert not re.search(r"\d\.\d{5,}", result.stdout), "a value shown at the database's scale"


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

    # every order came from the demo strategy: its integer id, its name in the metadata
    assert {o["strategy_id"] for o in orders} == {1}
    assert all('"strategy": "demo"' in o["metadata"].replace(" ", "").replace('":"', '": "') for o in orders)

    positions = read(url, "SELECT * FROM positions")
    realized = [Decimal(str(p["realized_pnl"])) for p in positions]
    assert any(r > 0 for r in realized), "no position closed at a profit"
    assert any(r < 0 for r in realized), "no position closed at a loss"
    # the MIS positions were squared off; the HDFCBANK delivery holding stays open
    held = {(p["symbol"], p["product"]): p["quantity"] for p in positions}
    assert held.pop(("HDFCBANK", "CNC")) == 50
    assert set(held.values()) == {0}


def test_demo_audit_trail_and_trades_agree_with_the_orders(demo):
    result, url, _ = demo
    assert result.returncode == 0, result.stderr
    orders = read(url, "SELECT id, status, quantity, filled_quantity FROM orders")
    events = read(url, "SELECT order_id FROM order_events")
    trades = read(url, "SELECT order_id, quantity FROM trades")

    events_per_order: dict[int, int] = defaultdict(int)
    for e in events:
        events_per_order[e["order_id"]] += 1
    traded: dict[int, int] = defaultdict(int)
    for t in trades:
        traded[t["order_id"]] += t["quantity"]

    assert orders
    for o in orders:
        assert events_per_order[o["id"]] >= 1, f"order {o['id']} has no order_events row"
        assert o["filled_quantity"] == traded[o["id"]], f"order {o['id']}: filled != sum of its trades"
        if o["status"] == "FILLED":
            assert o["filled_quantity"] == o["quantity"] == traded[o["id"]]


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
    for option in ("--serve", "--database-url", "--config", "--capital", "--quiet", "--pace", "--log-level"):
        assert option in result.stdout
    assert "oms_demo.db" in result.stdout
    assert "not a terminal" in result.stdout  # --pace never pauses a log


def test_demo_as_a_log_prints_a_line_per_step_and_event_and_never_pauses(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    started = time.monotonic()
    # stdout is a pipe here: even a long --pace must not slow the demo down.
    result = run("--database-url", url, "--pace", "5", cwd=tmp_path)
    seconds = time.monotonic() - started
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert seconds < 30, f"the demo paused when stdout was not a terminal ({seconds:.1f}s)"
    lines = result.stdout.splitlines()
    assert "\x1b" not in result.stdout, "terminal control codes in a log"
    steps = [line for line in lines if re.match(r"\[\s*\d+\] ", line)]
    assert len(steps) == 15, steps
    for wanted in ("REFUSED [risk_per_trade]", "REFUSED [stop_loss_required]", "REFUSED [max_order_value]",
                   "REFUSED [balance]", "REFUSED [broker]", "OPEN -> CANCELLED", "modified: price 985.00",
                   "closed: +", "closed: -", "positions: "):
        assert any(wanted in line for line in lines), f"no line with {wanted!r}"
    assert any(re.search(r"\. #\d+ fill 8 @ 3039\.50", line) for line in lines), "no line for the partial fill"
    assert "summary matches the database" in result.stdout


def _read_all(fd: int, into: list[bytes]) -> None:
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the other side of the terminal closed
            return
        if not data:
            return
        into.append(data)


def test_demo_on_a_terminal_redraws_one_board_in_place_within_80_columns(tmp_path):
    rows = 24
    url = f"sqlite:///{tmp_path / 'tty.db'}"
    master, slave = pty.openpty()
    env = {**clean_env(), "TERM": "xterm", "COLUMNS": "120", "LINES": str(rows)}
    process = subprocess.Popen(
        [sys.executable, str(RUN_OMS), "--database-url", url, "--pace", "0"],
        cwd=tmp_path, env=env, stdin=slave, stdout=slave, stderr=subprocess.PIPE,
    )
    os.close(slave)
    chunks: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(master, chunks), daemon=True)
    reader.start()
    try:
        assert process.wait(timeout=DEMO_TIMEOUT_S) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        reader.join(timeout=10)
        os.close(master)
        process.stderr.close()
    out = b"".join(chunks).decode("utf-8", "replace")
    assert "summary matches the database" in out
    # Redrawn in place: rich moves the cursor up over the last frame (erase line, up one).
    moves = [len(m) // len("\x1b[2K\x1b[1A") for m in re.findall(r"(?:\x1b\[2K\x1b\[1A)+", out)]
    assert len(moves) > 15, "the board was not redrawn in place"
    assert max(moves) < rows - 1, f"a frame of {max(moves) + 1} rows on a {rows}-row terminal would scroll"
    # A frame's last line ends where the cursor moves up: a line break, once it is seen.
    visible = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.replace("\x1b[1A", "\n"))
    board = visible[visible.index("Kite OMS paper-trading demo"): visible.index("SUMMARY")]
    widest = max(len(line) for line in board.replace("\r", "").split("\n"))
    assert widest <= 80, f"a board line of {widest} columns"


def _lines(stream, into: "queue.Queue[str]") -> None:
    for line in iter(stream.readline, ""):
        into.put(line)
    stream.close()


def test_serve_runs_until_sigterm_and_exits_cleanly(tmp_path):
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    process = subprocess.Popen(
        [sys.executable, str(RUN_OMS), "--serve", "--database-url", url],
        cwd=tmp_path, env={**clean_env(), "OMS_API_PORT": "0"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
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
    assert any("API on http://127.0.0.1:" in line for line in seen), seen  # loopback, by default
    # it migrated the database and placed no orders
    assert read(url, "SELECT COUNT(*) AS n FROM orders")[0]["n"] == 0


def test_every_oms_command_works_against_the_demos_database(demo, monkeypatch, capsys):
    """What an operator does after the demo: look with each view, audit an order from
    PENDING to its end, and halt and resume (no OMS runs: kept for the next one)."""
    import json

    from cli.main import main

    result, url, _ = demo
    assert result.returncode == 0, result.stderr
    monkeypatch.setenv("OMS_DATABASE_URL", url)
    monkeypatch.setenv("OMS_API_PORT", "1")  # nothing listens there: the controls see no running OMS

    def oms(*argv: str):
        code = main([*argv, "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        return json.loads(out)

    status = oms("status")
    assert status["running"] is None and status["orders"]["FILLED"] >= 1 and status["orders"]["REJECTED"] >= 4
    orders = oms("orders")
    assert len(orders) == sum(status["orders"].values())
    cancelled = [o for o in orders if o["status"] == "CANCELLED" and 0 < o["filled_quantity"] < o["quantity"]]
    assert cancelled and oms("orders", "--status", "REJECTED", "--strategy", "1")
    assert oms("positions", "--all") and oms("trades")
    life = oms("audit", str(cancelled[0]["order_id"]))
    steps = [(e["from_status"], e["to_status"]) for e in life["events"]]
    assert steps[0] == (None, "PENDING") and steps[-1][1] == "CANCELLED" and life["trades"]
    assert oms("halt", "--reason", "after the demo")["through"] == "database"
    assert oms("status")["trading_state"] == "HALTED"
    assert oms("resume")["trading_state"] == "RUNNING"
