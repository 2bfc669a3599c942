"""A peer figure: NautilusTrader's backtest engine doing the work of our throughput and
resting scenarios, run in the same session so that our rates can be read as a ratio to
it on the same machine and load.

Optional: ``nautilus_trader`` is a benchmark dependency only (``available()`` says
whether it is installed). What is measured is its whole in-process order path, the
strategy's order factory, the risk engine's pre-trade checks, the execution engine, the
simulated venue's matching engine, the cache and the portfolio, all in memory: ours
include durable writes, which a reader of the ratio should keep in mind.

``python -m bench.nautilus --orders 2000 --resting 1000``
"""
from __future__ import annotations

import argparse
import gc
import resource
import time
from typing import Any

# Far above any count a run submits at one instant: the default (100 a second of
# simulated time) would hold the resting scenario's burst back over later ticks.
_RATE = "1000000000/00:00:01"
_START_NS = 1_700_000_000_000_000_000
_SPARE_TICKS = 5


def available() -> bool:
    """Whether NautilusTrader can be imported (never raises)."""
    try:
        import nautilus_trader.backtest.engine  # noqa: F401
    except Exception:
        return False
    return True


def _engine() -> tuple[Any, Any]:
    """A backtest engine with one simulated cash venue and the test kit's AAPL equity."""
    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.config import LoggingConfig, RiskEngineConfig
    from nautilus_trader.model.currencies import USD
    from nautilus_trader.model.enums import AccountType, OmsType
    from nautilus_trader.model.identifiers import Venue
    from nautilus_trader.model.objects import Money
    from nautilus_trader.test_kit.providers import TestInstrumentProvider

    config = BacktestEngineConfig(
        # Logging off: writing to the console would be timed too. Nothing is lost, as
        # every scenario checks its orders' end states itself.
        logging=LoggingConfig(bypass_logging=True),
        # The risk engine stays in the path (our OMS validates too); only its rate limits go.
        risk_engine=RiskEngineConfig(max_order_submit_rate=_RATE, max_order_modify_rate=_RATE),
        # The post-run performance report is statistics, not order handling.
        run_analysis=False,
    )
    engine = BacktestEngine(config=config)
    instrument = TestInstrumentProvider.equity("AAPL", "XNAS")
    engine.add_venue(
        venue=Venue("XNAS"),
        oms_type=OmsType.NETTING,
        account_type=AccountType.CASH,
        starting_balances=[Money(1_000_000_000, USD)],
    )
    engine.add_instrument(instrument)
    return engine, instrument


def _quotes(instrument: Any, count: int) -> list[Any]:
    """``count`` identical quotes one second apart: 150.00 / 150.01, 1e6 on each side."""
    from nautilus_trader.model.data import QuoteTick

    bid, ask, size = instrument.make_price(150.00), instrument.make_price(150.01), instrument.make_qty(1_000_000)
    return [
        QuoteTick(instrument.id, bid, ask, size, size, ts, ts)
        for ts in (_START_NS + i * 1_000_000_000 for i in range(count))
    ]


def throughput(orders: int) -> dict[str, float]:
    """MARKET orders per second, one per quote, alternately BUY and SELL 1 share, each
    filled by the simulated venue before the next quote: wall time of ``engine.run()``
    (which also starts and stops the kernel) and the process's CPU per filled order."""
    from nautilus_trader.model.enums import OrderSide, OrderStatus
    from nautilus_trader.trading.strategy import Strategy

    class MarketPerTick(Strategy):
        def __init__(self, instrument: Any) -> None:
            super().__init__()
            self.instrument = instrument
            self.quantity = instrument.make_qty(1)
            self.submitted = 0

        def on_start(self) -> None:
            self.subscribe_quote_ticks(self.instrument.id)

        def on_quote_tick(self, tick: Any) -> None:
            if self.submitted < orders:
                side = OrderSide.SELL if self.submitted % 2 else OrderSide.BUY
                self.submit_order(self.order_factory.market(self.instrument.id, side, self.quantity))
                self.submitted += 1

    engine, instrument = _engine()
    try:
        engine.add_data(_quotes(instrument, orders + _SPARE_TICKS))
        engine.add_strategy(MarketPerTick(instrument))
        gc.collect()  # the set-up's garbage is not the run's work (the harness does the same)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        engine.run()
        wall = time.perf_counter() - started
        used = resource.getrusage(resource.RUSAGE_SELF)
        filled = sum(1 for o in engine.cache.orders() if o.status == OrderStatus.FILLED)
        if filled != orders:
            raise RuntimeError(f"NautilusTrader filled {filled} of {orders} market orders")
        cpu = used.ru_utime + used.ru_stime - usage.ru_utime - usage.ru_stime
        return {"orders": filled, "orders_per_s": filled / wall, "cpu_ms_per_order": cpu / filled * 1000}
    finally:
        engine.dispose()


def resting(count: int) -> dict[str, float]:
    """Seconds to have ``count`` LIMIT BUYs far below the market accepted by the venue,
    and then to cancel them one by one (as our OMS does), timed from the strategy's own
    callbacks: one ``engine.run()`` holds both phases and the kernel's start and stop.

    Both grow as the square of ``count``: on every order event the portfolio recomputes
    the venue account's locked balance over all the instrument's open orders (a venue
    added with ``frozen_account=True`` skips that, and all balance bookkeeping with it)."""
    from nautilus_trader.model.enums import OrderSide, OrderStatus
    from nautilus_trader.trading.strategy import Strategy

    class RestThenCancel(Strategy):
        def __init__(self, instrument: Any) -> None:
            super().__init__()
            self.instrument = instrument
            self.resting: list[Any] = []
            self.accepted = self.canceled = 0
            self.marks: dict[str, float] = {}

        def on_start(self) -> None:
            self.subscribe_quote_ticks(self.instrument.id)

        def on_quote_tick(self, tick: Any) -> None:
            # First quote: place them all. The first quote after all were accepted:
            # cancel them all, so the two phases are timed apart.
            if not self.resting:
                self.marks["submit"] = time.perf_counter()
                price = self.instrument.make_price(tick.bid_price.as_double() * 2 / 3)
                quantity = self.instrument.make_qty(1)
                for _ in range(count):
                    order = self.order_factory.limit(self.instrument.id, OrderSide.BUY, quantity, price)
                    self.resting.append(order)
                    self.submit_order(order)
            elif self.accepted == count and "cancel" not in self.marks:
                self.marks["cancel"] = time.perf_counter()
                for order in self.resting:
                    self.cancel_order(order)

        def on_order_accepted(self, event: Any) -> None:
            self.accepted += 1
            if self.accepted == count:
                self.marks["accepted"] = time.perf_counter()

        def on_order_canceled(self, event: Any) -> None:
            self.canceled += 1
            if self.canceled == count:
                self.marks["canceled"] = time.perf_counter()

    engine, instrument = _engine()
    try:
        engine.add_data(_quotes(instrument, _SPARE_TICKS))
        strategy = RestThenCancel(instrument)
        engine.add_strategy(strategy)
        gc.collect()
        engine.run()
        canceled = sum(1 for o in engine.cache.orders() if o.status == OrderStatus.CANCELED)
        marks = strategy.marks
        if canceled != count or "canceled" not in marks:
            raise RuntimeError(
                f"NautilusTrader accepted {strategy.accepted} and canceled {canceled} of {count} limit orders",
            )
        return {
            "resting": count,
            "accept_s": marks["accepted"] - marks["submit"],
            "cancel_s": marks["canceled"] - marks["cancel"],
        }
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.nautilus", description="NautilusTrader peer figures.")
    parser.add_argument("--orders", type=int, default=2000, help="market orders of the throughput run")
    parser.add_argument("--resting", type=int, default=1000, help="limit orders of the resting run")
    args = parser.parse_args(argv)
    if not available():
        raise SystemExit("nautilus_trader is not installed (pip install nautilus_trader)")
    print("throughput", throughput(args.orders))
    print("resting", resting(args.resting))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
