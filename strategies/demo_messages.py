"""What the demo's driver and the DemoStrategy actor tell each other.

The driver tells the strategy NextStep; the strategy reports the rest to the driver's
queue, in the order things happened: Outcome and OrderSeen lines, Surprise when a step
did not go as scripted, StepDone once the step has settled, StrategyFailed if it died.
"""
from __future__ import annotations

from dataclasses import dataclass

from domain.order import Order
from strategies.demo_script import StrategyStep


@dataclass(frozen=True, slots=True)
class NextStep:
    """Carry out ``step``, then report StepDone once it has settled."""

    step: StrategyStep


@dataclass(frozen=True, slots=True)
class Outcome:
    """A line about what the strategy did or what the OMS answered it."""

    text: str


@dataclass(frozen=True, slots=True)
class OrderSeen:
    """One of the strategy's orders as last committed, and a line about the change
    (None when the change is not worth a line of its own)."""

    order: Order
    text: str | None


@dataclass(frozen=True, slots=True)
class Surprise:
    """The OMS did not do what the script expected (the limits in force may differ)."""

    text: str


@dataclass(frozen=True, slots=True)
class StepDone:
    """The step has settled; ``abandoned`` says why the rest of its scene is skipped."""

    abandoned: str | None = None


@dataclass(frozen=True, slots=True)
class StrategyFailed:
    """The strategy actor died of an error; it will report nothing more."""

    error: str
