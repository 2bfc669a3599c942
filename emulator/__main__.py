"""The Kite emulator as a process of its own: ``python -m emulator [options]``.

It listens on 127.0.0.1 (a free port unless ``--port``), prints one line,
``KITE_EMULATOR_URL http://127.0.0.1:PORT``, on stdout once it is listening (then
``KITE_EMULATOR_WS_URL ws://127.0.0.1:PORT2``, its websocket), and serves
until SIGTERM or SIGINT; it then stops cleanly (saving its book to ``--state-file`` when
given) and exits 0. Tests that must run the broker apart from the OMS (a crash of the one
must not take the other down) start it like this and read that line.

The credentials it honours come from the environment, never the command line (where
``ps`` would show them): ``KITE_EMULATOR_API_KEY``, ``KITE_EMULATOR_API_SECRET`` and
``KITE_EMULATOR_ACCESS_TOKEN`` (the emulator's own made-up defaults otherwise).

``--tick SECONDS`` makes the market move on its own: every tick one instrument's price
steps by a few ticks, at random (``--seed`` makes the walk repeatable), staying within
``--wander`` percent of its starting price. Each move is a matching event, so resting
orders fill, and partially fill under ``--liquidity``, while nobody is watching.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import threading
from decimal import Decimal

from emulator.server import KiteEmulator

_TICK = Decimal("0.05")  # NSE's tick for the prices the walk uses


def _pairs(values: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        symbol, sep, amount = value.partition("=")
        if not sep or not symbol or not amount:
            raise SystemExit(f"{what}: expected SYMBOL=VALUE, got {value!r}")
        pairs[symbol] = amount
    return pairs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--price", action="append", default=[], metavar="SYMBOL=PRICE", help="an NSE instrument and its last price (repeatable)")
    parser.add_argument("--liquidity", action="append", default=[], metavar="SYMBOL=UNITS", help="units of each order that fill per matching event (repeatable)")
    parser.add_argument("--state-file", help="keep the book here across restarts of the emulator")
    parser.add_argument("--tick", type=float, default=0.0, metavar="SECONDS", help="move one price every SECONDS (0: prices move only when told)")
    parser.add_argument("--wander", type=Decimal, default=Decimal("0.5"), metavar="PERCENT", help="how far from its starting price a moving price may go")
    parser.add_argument("--seed", type=int, default=0, help="seed of the price walk")
    return parser


def _walk(emulator: KiteEmulator, start: dict[str, Decimal], args: argparse.Namespace, stop: threading.Event) -> None:
    rng = random.Random(args.seed)
    last = dict(start)
    symbols = sorted(start)
    while not stop.wait(args.tick):
        symbol = rng.choice(symbols)
        low = start[symbol] * (1 - args.wander / 100)
        high = start[symbol] * (1 + args.wander / 100)
        price = last[symbol] + _TICK * rng.randint(-4, 4)
        if low <= price <= high:
            last[symbol] = price
        emulator.set_price(symbol, last[symbol])  # the same price again is still a matching event


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    prices = {symbol: Decimal(price) for symbol, price in _pairs(args.price, "--price").items()}
    liquidity = {symbol: int(units) for symbol, units in _pairs(args.liquidity, "--liquidity").items()}
    credentials = {
        name: value for name, value in (
            ("api_key", os.environ.get("KITE_EMULATOR_API_KEY")),
            ("api_secret", os.environ.get("KITE_EMULATOR_API_SECRET")),
            ("access_token", os.environ.get("KITE_EMULATOR_ACCESS_TOKEN")),
        ) if value
    }
    stop = threading.Event()
    # Set before anything starts, so a SIGTERM that comes early still stops us cleanly.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    emulator = KiteEmulator(**credentials, port=args.port, state_file=args.state_file).start()
    walker = None
    try:
        for symbol, price in prices.items():
            emulator.set_price(symbol, price)
        for symbol, units in liquidity.items():
            emulator.set_liquidity(symbol, units)
        if args.tick > 0 and prices:
            walker = threading.Thread(target=_walk, args=(emulator, prices, args, stop), name="price-walk", daemon=True)
            walker.start()
        print(f"KITE_EMULATOR_URL {emulator.url}", flush=True)
        print(f"KITE_EMULATOR_WS_URL {emulator.ws_url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        stop.set()
        if walker is not None:
            walker.join(5)
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
