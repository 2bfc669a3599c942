"""The OMS process of the crash test (tests/integration/test_kite_crash.py): it is killed
with SIGKILL while it trades, so it runs apart from the test.

``python -m tests.crash_child KITE_ROOT SEED ROUND`` starts the OMS in Kite mode against
the emulator at KITE_ROOT, on the database in ``OMS_DATABASE_URL``, with the Kite
credentials in ``OMS_KITE_API_KEY``/``_API_SECRET``/``_ACCESS_TOKEN`` (the environment, so
that no credential is on a command line). It recovers what the last, killed, run left,
then plays a burst of orders from several strategy threads, repeatable by SEED and ROUND:
MARKET and LIMIT orders (marketable or resting), buys and sells, and cancels and
modifications of the thread's own resting orders.

It speaks to the test on stdout, one flushed line each, and nothing else goes there:

    READY <orders recovered>       start_oms returned; the burst begins
    ACCEPTED <order id> <status>   place_order returned this order to a strategy
    DONE                           the burst is over (it then idles until killed)

An ACCEPTED line is written only after ``place_order`` returned, so every id the test
reads is one a strategy was told about. Logs go to stderr.
"""
from __future__ import annotations

import logging
import random
import sys
import threading
import time
from decimal import Decimal

from actors import start_oms
from actors.oms import OMSTimeout
from domain import OMSError, OrderRequest

# Starting prices, kept by the test's emulator too (see the test); the market wanders
# within half a percent of them, so a LIMIT order 1% through the price always crosses,
# and one 0.3% away rests until the market comes to it, or not.
PRICES = {"INFY": Decimal("1500"), "RELIANCE": Decimal("2450"), "TCS": Decimal("3500")}
PRODUCTS = ("MIS", "NRML")
THREADS = 4
ORDERS_PER_THREAD = 15
TICK = Decimal("1")  # whole rupees are on the NSE tick at any of these prices

# Kite mode as the other Kite tests run it (fast polling, a short look-up window), with
# Kite's own rate limits off: the burst is meant to be dense, and the emulator does not
# count. Capital and limits leave room for every order: only the crash may get in the way.
SETTINGS = dict(
    broker="kite", kite_ticker=False, kite_timeout=1.0, kite_poll_interval=0.05, kite_lookup_misses=4, kite_lookup_pause=0.1,
    kite_orders_per_second=None, kite_orders_per_minute=None, kite_orders_per_day=None,
    kite_calls_per_second=None, capital=Decimal("100000000"), max_order_value=None,
    max_position_value=None, max_open_orders=None,
    enforce_market_hours=False,  # the emulator trades at any hour: the test must not depend on the time of day
)

_out = threading.Lock()


def say(line: str) -> None:
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def on_tick(price: Decimal) -> Decimal:
    return (price / TICK).to_integral_value() * TICK


def request(rng: random.Random) -> OrderRequest:
    symbol = rng.choice(sorted(PRICES))
    base = PRICES[symbol]
    side = rng.choice(("BUY", "SELL"))
    sign = 1 if side == "BUY" else -1
    # The stop is 3% away: beyond anywhere the market goes, on the right side of any entry.
    fields = dict(
        symbol=symbol, exchange="NSE", side=side, quantity=rng.randint(1, 12), product=rng.choice(PRODUCTS),
        stop_loss=on_tick(base * (1 - sign * Decimal("0.03"))), strategy_id=1 + rng.randrange(3),
    )
    kind = rng.random()
    if kind < 0.35:
        return OrderRequest(order_type="MARKET", **fields)
    through = Decimal("0.01") if kind < 0.65 else Decimal("-0.003")  # marketable, else resting
    return OrderRequest(order_type="LIMIT", price=on_tick(base * (1 + sign * through)), **fields)


def strategy(oms, rng: random.Random) -> None:
    """Places its orders; now and then cancels or moves one of its resting ones. Every
    refusal is an answer the strategy hears: it goes on with the next order."""
    mine: list[tuple[int, str, str]] = []  # (order id, symbol, side) of accepted LIMIT orders
    for _ in range(ORDERS_PER_THREAD):
        order = request(rng)
        try:
            result = oms.place_order(order)
        except (OMSError, OMSTimeout) as refusal:
            logging.getLogger("crash_child").info("place refused: %s", refusal)
            continue
        say(f"ACCEPTED {result.order_id} {result.status.value}")
        if order.order_type.value == "LIMIT":
            mine.append((result.order_id, order.symbol, order.side.value))
        action = rng.random()
        if mine and action < 0.2:
            order_id, _, _ = mine.pop(rng.randrange(len(mine)))
            try:
                oms.cancel_order(order_id)
            except (OMSError, OMSTimeout):
                pass  # it ended first, or is not acknowledged yet: both fine
        elif mine and action < 0.35:
            order_id, symbol, side = rng.choice(mine)
            sign = 1 if side == "BUY" else -1
            new_price = on_tick(PRICES[symbol] * (1 + sign * Decimal(rng.choice(("0.01", "-0.002")))))
            try:
                oms.modify_order(order_id, new_price=new_price)
            except (OMSError, OMSTimeout, ValueError):
                pass


def main(argv: list[str]) -> int:
    kite_root, seed, round_ = argv[0], int(argv[1]), int(argv[2])
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    oms = start_oms(kite_root=kite_root, **SETTINGS)
    recovered = len(oms.get_active_orders())
    for symbol, price in PRICES.items():
        oms.mark_price(symbol, price)
    say(f"READY {recovered}")
    threads = [
        threading.Thread(target=strategy, args=(oms, random.Random(f"{seed}/{round_}/{n}")), name=f"strategy-{n}")
        for n in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    say("DONE")
    # Left running: the test kills it (now or sooner). The OMS goes on tracking its orders.
    while True:
        time.sleep(60)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
