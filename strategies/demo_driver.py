"""Runs the demo session against a started OMS: the market's beats through ``oms.paper``
(or the Kite emulator's ``EmulatorMarket``), the strategy's steps by message to a
DemoStrategy actor, what it reports to the display.

The driver is not an actor: it is the launcher's thread playing the market and the
audience. It may block (on the blocking handle, on the report queue); the strategy never does.
"""
from __future__ import annotations

import queue
import time
from typing import Any

from strategies.demo import DemoStrategy
from strategies.demo_display import Silent
from strategies.demo_messages import NextStep, Outcome, StepDone, StrategyFailed, Surprise
from strategies.demo_script import Scene, SetLiquidity, SetPrice, StrategyStep, demo_session

STEP_TIMEOUT_SECONDS = 10.0  # a step settles in milliseconds; this is for a stuck OMS


class DemoFailed(Exception):
    """The strategy did not settle a step in time, or died."""


class EmulatorMarket:
    """The Kite emulator's market as the demo's beats move it: the OMS hears each price
    first (there is no market-data feed on Kite yet), then the emulator matches on it."""

    def __init__(self, oms: Any, emulator: Any) -> None:
        self._oms = oms
        self._emulator = emulator

    def set_price(self, symbol: str, price: Any) -> None:
        self._oms.mark_price(symbol, price)
        self._emulator.set_price(symbol, price)

    def set_liquidity(self, symbol: str, quantity: int | None) -> None:
        self._emulator.set_liquidity(symbol, quantity)


def run_session(oms: Any, display: Silent, scenes: tuple[Scene, ...] | None = None, market: Any = None) -> list[str]:
    """Play ``scenes`` (by default the demo session under the OMS's limits) and return the
    surprises: what did not go as scripted. ``market`` takes the price and liquidity
    beats (by default the paper exchange, ``oms.paper``). The strategy actor is stopped
    before this returns, whatever happens. Raises DemoFailed if the strategy gets stuck or dies."""
    if scenes is None:
        scenes = demo_session(oms.settings.risk_limits())
    reports: queue.Queue[Any] = queue.Queue()
    strategy = DemoStrategy.start(oms.supervisor, reports)
    session = _Session(oms, strategy, reports, display, market or oms.paper)
    try:
        for number, scene in enumerate(scenes, 1):
            session.play(number, scene)
    finally:
        strategy.stop()
        session.show_the_rest()
    return session.surprises


class _Session:
    """One run of the scenes: the market, the strategy's ref and its reports, the display."""

    def __init__(self, oms: Any, strategy: Any, reports: "queue.Queue[Any]", display: Silent, market: Any) -> None:
        self.oms = oms
        self.market = market
        self.strategy = strategy
        self.reports = reports
        self.display = display
        self.surprises: list[str] = []

    def play(self, number: int, scene: Scene) -> None:
        self.display.scene(number, scene.title)
        if scene.skipped:
            self.display.show(Outcome(f"skipped: {scene.skipped}"))
        abandoned: str | None = None
        steps = 0
        for beat in scene.beats:
            if isinstance(beat, SetPrice):
                self.market.set_price(beat.symbol, beat.price)
            elif isinstance(beat, SetLiquidity):
                self.market.set_liquidity(beat.symbol, beat.quantity)
            elif abandoned is None:  # the market's beats still run: they leave it as scripted
                abandoned = self.step(beat, scene)
                steps += 1
                self.display.refresh(self.oms.get_positions())
        positions = self.oms.get_positions()
        if steps == 0:
            self.display.refresh(positions)
        self.display.scene_over(positions)

    def step(self, step: StrategyStep, scene: Scene) -> str | None:
        """Tell the strategy ``step`` and show what it reports until the step has settled.
        Returns why the rest of the scene is abandoned (None: it is not)."""
        self.strategy.tell(NextStep(step))
        deadline = time.monotonic() + STEP_TIMEOUT_SECONDS
        while True:
            try:
                report = self.reports.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise DemoFailed(f"the strategy did not settle {step} in {scene.title!r} "
                                 f"within {STEP_TIMEOUT_SECONDS:g}s") from None
            if isinstance(report, StrategyFailed):
                raise DemoFailed(f"the strategy failed during {scene.title!r}: {report.error}")
            self.show(report)
            if isinstance(report, StepDone):
                return report.abandoned

    def show(self, report: Any) -> None:
        if isinstance(report, Surprise):
            self.surprises.append(report.text)
        self.display.show(report)

    def show_the_rest(self) -> None:
        """Events that came in after the last step (the strategy has stopped: nothing more comes)."""
        while True:
            try:
                report = self.reports.get_nowait()
            except queue.Empty:
                return
            self.show(report)
