"""Does a large read slow the front door? ``place_order`` round trips with no read
running, then while another thread pages through every order again and again."""
from __future__ import annotations

import statistics
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal

from actors import start_oms
from domain import OrderRequest
from domain.enums import OrderStatus
from domain.order import Order, created, transition
from domain.order_tag import broker_tag
from persistence.store import Store, op_new_order, op_transition

D = Decimal


def seed_finished_orders(url: str, count: int) -> None:
    """``count`` FILLED orders written straight to the database (finished, so a restart
    does not track them: only reads meet them)."""
    at = datetime.now(timezone.utc)
    store = Store.open(url)
    try:
        prefix, ops = store.tag_prefix(), []
        for order_id in store.reserve_ids(count):
            request = OrderRequest(symbol="INFY", side="BUY", quantity=1, order_type="LIMIT", price=D("1300.00"))
            order = Order.from_request(order_id, request, at, {"passed": True}, tag=broker_tag(prefix, order_id))
            pending, first = created(order)
            submitted, second = transition(pending, OrderStatus.SUBMITTED, at)
            cancelled, third = transition(submitted, OrderStatus.CANCELLED, at)
            ops += [op_new_order(pending, first), op_transition(submitted, second), op_transition(cancelled, third)]
            if len(ops) >= 3000:
                store.write_many(ops)
                ops = []
        if ops:
            store.write_many(ops)
    finally:
        store.close()


def reads_beside_orders(url: str, stored: int, probes: int = 300, limits: dict | None = None) -> dict[str, float]:
    seed_finished_orders(url, stored)
    oms = start_oms(database_url=url, **(limits or {}))
    try:
        oms.paper.set_price("INFY", D("1500.00"))

        def probe() -> list[float]:
            samples = []
            for i in range(probes):
                t0 = time.perf_counter()
                oms.place_order(OrderRequest(symbol="INFY", side="BUY" if i % 2 else "SELL", quantity=1))
                samples.append((time.perf_counter() - t0) * 1000)
            return sorted(samples)

        idle = probe()
        stop, pages, rows = threading.Event(), [0], [0]

        def read_everything() -> None:
            while not stop.is_set():
                for _order in oms.iter_orders(page=10_000):
                    rows[0] += 1
                    if stop.is_set():
                        return
                pages[0] += 1

        reader = threading.Thread(target=read_everything, name="bench-reader")
        reader.start()
        try:
            busy = probe()
        finally:
            stop.set()
            reader.join(60)
        return {
            "stored_orders": stored,
            "place_p50_ms_idle": statistics.median(idle),
            "place_p99_ms_idle": idle[int(len(idle) * 0.99) - 1],
            "place_p50_ms_reading": statistics.median(busy),
            "place_p99_ms_reading": busy[int(len(busy) * 0.99) - 1],
            "orders_read": rows[0],
        }
    finally:
        oms.stop()
