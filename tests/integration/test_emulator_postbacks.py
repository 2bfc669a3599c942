"""The emulator posts Kite's postbacks itself: each order update, signed with the API
secret in Kite's body shape, to the app's URL; and on request loses some, sends some
twice, and sends some after the update that followed them, as drawn from a seed."""
from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from domain import OrderStatus
from emulator import KiteEmulator
from tests.kite_helpers import SECRET, kite_emulator, start_kite_oms
from tests.oms_helpers import buy, wait_for

MOCKS = Path(__file__).resolve().parents[3] / "shared" / "kite-mocks"


class Inbox:
    """An app's postback URL on loopback: keeps every body it is posted."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                inbox.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/postback"

    def statuses(self, count: int, timeout: float = 5.0) -> list[tuple[str, int]]:
        deadline = time.monotonic() + timeout
        while len(self.bodies) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # and nothing more than that
        return [(b["status"], b["filled_quantity"]) for b in self.bodies]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def inbox():
    box = Inbox()
    yield box
    box.close()


@pytest.fixture
def emulator():
    with kite_emulator() as emu:
        yield emu


def fill_in_two(emulator: KiteEmulator) -> None:
    """One LIMIT order that rests, fills 4, then the rest: OPEN, OPEN 4, COMPLETE 10."""
    emulator.book.place("regular", dict(exchange="NSE", tradingsymbol="INFY", transaction_type="BUY", quantity="10",
                                        product="MIS", order_type="LIMIT", price="1490", tag="T1"))
    emulator.set_liquidity("INFY", 4)
    emulator.set_price("INFY", "1489")
    emulator.set_liquidity("INFY", None)
    emulator.set_price("INFY", "1488")


def test_each_update_is_posted_signed_in_kites_shape(emulator, inbox):
    emulator.postbacks.configure(inbox.url)
    fill_in_two(emulator)
    assert inbox.statuses(3) == [("OPEN", 0), ("OPEN", 4), ("COMPLETE", 10)]
    body = inbox.bodies[-1]
    expected = hashlib.sha256(f"{body['order_id']}{body['order_timestamp']}{SECRET}".encode()).hexdigest()
    assert body["checksum"] == expected
    assert set(json.loads((MOCKS / "postback.json").read_text())) <= set(body)
    assert (body["tag"], body["unfilled_quantity"], body["average_price"]) == ("T1", 0, 1488.4)


def test_nothing_is_posted_until_a_url_is_configured(emulator, inbox):
    fill_in_two(emulator)
    emulator.postbacks.configure(inbox.url)
    assert inbox.statuses(1, timeout=0.3) == []


def test_dropped_postbacks_never_come(emulator, inbox):
    emulator.postbacks.configure(inbox.url, drop=1.0)
    fill_in_two(emulator)
    assert inbox.statuses(1, timeout=0.5) == []
    assert emulator.postbacks.counts.dropped == 3


def test_duplicated_postbacks_come_twice(emulator, inbox):
    emulator.postbacks.configure(inbox.url, duplicate=1.0)
    fill_in_two(emulator)
    assert inbox.statuses(6) == [("OPEN", 0)] * 2 + [("OPEN", 4)] * 2 + [("COMPLETE", 10)] * 2


def test_a_reordered_postback_comes_after_the_next_one(emulator, inbox):
    emulator.postbacks.configure(inbox.url, reorder=1.0)
    fill_in_two(emulator)
    # Held, then sent after the next; the third is held too, and sent late once nothing follows.
    assert inbox.statuses(3) == [("OPEN", 4), ("OPEN", 0), ("COMPLETE", 10)]
    assert emulator.postbacks.counts.reordered == 2


def test_one_seed_misbehaves_the_same_way_every_time(inbox):
    runs = []
    for _ in range(2):
        with kite_emulator() as emulator:
            emulator.postbacks.configure(inbox.url, drop=0.3, duplicate=0.3, reorder=0.3, seed=16)
            for price in ("1490", "1491", "1492", "1493", "1494", "1495"):
                emulator.book.place("regular", dict(exchange="NSE", tradingsymbol="INFY", transaction_type="SELL",
                                                    quantity="1", product="MIS", order_type="LIMIT", price=price))
            time.sleep(1.0)
            counts = emulator.postbacks.counts
            runs.append([(b["status"], b["price"]) for b in inbox.bodies])
            inbox.bodies.clear()
        assert counts.dropped + counts.duplicated + counts.reordered > 0
    assert runs[0] == runs[1]


def test_the_oms_takes_the_emulators_postbacks(emulator, sqlite_url):
    # Polling every 30 s: the fill can only have come by postback.
    oms = start_kite_oms(emulator, sqlite_url, kite_poll_interval=30, kite_postback_port=0)
    try:
        emulator.postbacks.configure(oms.postback_url)
        oms.mark_price("INFY", "1500")
        placed = oms.place_order(buy("INFY", 10, order_type="LIMIT", price="1490", product="MIS", stop_loss="1480"))
        emulator.book.cancel("regular", placed.broker_order_id)
        assert wait_for(oms, placed.order_id, lambda o: o.status is OrderStatus.CANCELLED, timeout=5)
        assert emulator.postbacks.counts.failed == 0
    finally:
        oms.stop()
