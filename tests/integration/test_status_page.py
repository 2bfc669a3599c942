"""The live status page, rendered by a real headless Chromium (Debian's ``chromium``)
against the real API server: with a key it shows the orders, positions, P&L, the five
KPIs with their thresholds, the alerts and the trading state, and draws the P&L chart;
without one, or with a wrong one, it shows nothing but a place to give a key."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from domain.enums import OrderStatus
from tests.api_helpers import served
from tests.oms_helpers import buy, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH, HEIGHT = 1400, 1000


def chromium(tmp_path: Path, url: str, *what: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM, "headless Chromium is needed: apt-get install chromium (.ci/test.sh installs it)"
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    flags = [
        CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        # No calls home: this machine's network is closed, and a test talks to loopback only.
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
        f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars",
        "--virtual-time-budget=5000",  # lets the page's script fetch and draw before the capture
    ]
    done = subprocess.run([*flags, *what, url], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def share(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 12) -> float:
    """The share of the image's pixels within ``tolerance`` of ``colour``."""
    counts = image.convert("RGB").getcolors(maxcolors=1 << 24) or []
    near = sum(n for n, p in counts if all(abs(a - b) <= tolerance for a, b in zip(p, colour)))
    return near / (image.width * image.height)


def test_the_status_page_renders_the_orders_positions_kpis_and_chart(sqlite_url, tmp_path):
    with served(sqlite_url) as s, s.client(s.key("ops")) as ops:
        ops.paper.set_price("TCS", "3500")
        bought = ops.place_order(buy("TCS", 4, stop_loss="3400", strategy_id=3))
        wait_for(ops, bought.order_id, lambda o: o.status is OrderStatus.FILLED)
        ops.paper.set_price("INFY", "1500")
        resting = ops.place_order(buy("INFY", 2, order_type="LIMIT", price="1400", stop_loss="1350", strategy_id=5))
        for price in ("3510", "3525"):  # the P&L moves: the chart has a course to draw
            ops.paper.set_price("TCS", price)
            ops.status()
            time.sleep(1.05)  # the P&L history takes a point a second at most
        viewer = s.key("wall-screen", read_only=True)
        page = f"{s.url}/status#key={viewer}"

        dom = chromium(tmp_path, page, "--dump-dom").stdout
        shot = tmp_path / "status.png"
        chromium(tmp_path, page, f"--screenshot={shot}")

    # What it shows: each order, the position, the P&L, the KPIs with their thresholds.
    board = dom[dom.index('<div id="board"'):]
    assert '<div id="board">' in dom and '<div id="login" hidden="">' in dom
    assert f'<td class="num">{bought.order_id}</td>' in board and f'<td class="num">{resting.order_id}</td>' in board
    assert "NSE:TCS" in board and "NSE:INFY" in board and "FILLED" in board and "OPEN" in board
    for kpi in ("Order success rate", "Order fill rate", "Reconciliation mismatches", "Order latency p95", "Position accuracy"):
        assert f"<td>{kpi}</td>" in board
    assert "98.00%" in board and "95.00%" in board and "500.0 ms" in board and "1000.0 ms" in board and "99.00%" in board
    assert '<span id="state" class="badge RUNNING">RUNNING</span>' in board
    assert "none active" in board  # no alerts
    assert '<td class="num pos">100.00</td>' in board  # TCS: (3525 - 3500) x 4 unrealized
    assert "<polyline" in board and board.count("<polyline") == 1
    assert viewer not in dom  # the key left the address and is in no element

    # What it looks like: the whole window, drawn on the dark board, a green RUNNING
    # badge and a green P&L line (the P&L is up), and a good deal more than one colour.
    image = Image.open(shot)
    assert image.size == (WIDTH, HEIGHT)
    assert share(image, (0x0F, 0x14, 0x19)) > 0.3  # the page's background
    assert share(image, (0x3F, 0xB9, 0x50), tolerance=30) > 0.0005  # green: the state badge, the gains, the line
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 200  # text, tables and a chart, not a blank page
    top_left_panel = image.crop((20, 60, 470, 380)).convert("RGB")
    assert share(top_left_panel, (0x3F, 0xB9, 0x50), tolerance=30) > 0.001  # the chart's line and the net figure


@pytest.mark.parametrize("key", [None, "oms_not-a-key-at-all-000000000000000000000000"])
def test_without_a_valid_key_the_page_shows_only_where_to_give_one(sqlite_url, tmp_path, key):
    with served(sqlite_url) as s, s.client(s.key("ops")) as ops:
        ops.paper.set_price("TCS", "3500")
        ops.place_order(buy("TCS", 4, stop_loss="3400"))
        page = f"{s.url}/status" + (f"#key={key}" if key else "")
        dom = chromium(tmp_path, page, "--dump-dom").stdout
    assert '<div id="login">' in dom and '<div id="board" hidden="">' in dom
    assert "NSE:TCS" not in dom and "FILLED" not in dom
    assert ("That key was refused." in dom) is (key is not None)
