"""SQLite on a disk that fills up: the same outage as a database that went away. The
OMS holds the broker's news and writes it once space is back, and refuses what it
cannot record. The disk is a real, small tmpfs, filled to the last byte by the test."""
from __future__ import annotations

import os
import subprocess
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from actors import start_oms
from actors.supervisor import HealthState
from domain.enums import OrderStatus as S
from domain.errors import OMSUnavailable
from tests.oms_helpers import buy, rows, wait_for

D = Decimal


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:8]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16M", "tmpfs", str(mount)], capture_output=True, text=True)
    assert done.returncode == 0, f"this test needs to mount a small tmpfs (run as root): {done.stderr.strip()}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_up(disk: Path) -> Path:
    """Write until the disk has no byte left."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512, 1):  # down to the very last bytes
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


def wait_until(condition, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_full_disk_holds_fills_refuses_intents_and_recovers(small_disk):
    url = f"sqlite:///{small_disk / 'oms.db'}"
    oms = start_oms(database_url=url, broker="paper", capital=D("10000000"))
    try:
        oms.paper.set_price("INFY", D("1500.00"))
        to_fill = oms.place_order(buy("INFY", 10, order_type="LIMIT", price=D("1490.00"), stop_loss=D("1450.00")))
        to_cancel = oms.place_order(buy("INFY", 10, order_type="LIMIT", price=D("1470.00"), stop_loss=D("1450.00")))
        filler = fill_up(small_disk)

        with pytest.raises(OMSUnavailable, match="full"):
            for _ in range(200):  # until SQLite needs a page it cannot have
                oms.place_order(buy("INFY", 1, order_type="LIMIT", price=D("1400.00"), stop_loss=D("1350.00"), metadata={"pad": "x" * 4000}))
        oms.paper.set_price("INFY", D("1489.00"))  # a fill arrives while nothing can be written
        with pytest.raises(OMSUnavailable):
            oms.cancel_order(to_cancel.order_id)
        assert oms.health().state is HealthState.DEGRADED

        os.remove(filler)
        wait_until(lambda: oms.health().state is HealthState.RUNNING, what="RUNNING again")
        assert wait_for(oms, to_fill.order_id, lambda o: o.status is S.FILLED).filled_quantity == 10
        assert oms.cancel_order(to_cancel.order_id) is True
        wait_for(oms, to_cancel.order_id, lambda o: o.status is S.CANCELLED)
        broker_tags = sorted(o.tag for o in oms.paper.orders())
        broker_trades = sorted(t.trade_id for t in oms.paper.trades())
    finally:
        oms.stop()
    assert broker_tags == sorted(r["tag"] for r in rows(url, "SELECT tag FROM orders"))
    assert broker_trades == sorted(r["broker_trade_id"] for r in rows(url, "SELECT broker_trade_id FROM trades"))
