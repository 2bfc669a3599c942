"""The demo session as data: scene by scene, what the market does and what the strategy does.

Pure values, no I/O. The driver (``strategies.demo_driver``) carries out the market's
beats (SetPrice, SetLiquidity) with ``oms.paper``, and hands each of the strategy's steps
to the DemoStrategy actor in a NextStep message. Four NSE stocks, every price on its tick
(RELIANCE, INFY and TCS in 0.10 steps; HDFCBANK, below 1000, in 0.05 steps). Orders that
open or add to a position carry a stop-loss; orders that reduce one need none. The sizes
of the orders meant to be refused are derived from the limits in force, so each refusal
comes from the check it shows, whatever the capital.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from domain.enums import OrderStatus
from domain.order import Order
from domain.risk import RiskLimits
from strategies.figures import money, price

D = Decimal
S = OrderStatus


# --- the market's beats (the driver carries them out) ------------------------------------

@dataclass(frozen=True, slots=True)
class SetPrice:
    """The symbol trades at ``price``: resting orders that it crosses fill."""

    symbol: str
    price: Decimal


@dataclass(frozen=True, slots=True)
class SetLiquidity:
    """At most ``quantity`` shares of the symbol trade per price move (None: no limit)."""

    symbol: str
    quantity: int | None


# --- the strategy's steps (the DemoStrategy actor carries them out) ------------------------

@dataclass(frozen=True, slots=True)
class OrderSpec:
    """An order as the script writes it; the strategy turns it into an OrderRequest
    carrying its own strategy_id and name."""

    symbol: str
    side: Literal["BUY", "SELL"]
    quantity: int
    order_type: str = "MARKET"
    price: Decimal | None = None
    stop_loss: Decimal | None = None
    product: str = "MIS"

    def describe(self) -> str:
        """BUY 30 INFY LIMIT @ 1522.00 MIS stop-loss 1505.00"""
        text = f"{self.side} {self.quantity} {self.symbol} {self.order_type}"
        if self.price is not None:
            text += f" @ {price(self.price)}"
        text += f" {self.product}"
        if self.stop_loss is not None:
            text += f" stop-loss {price(self.stop_loss)}"
        return text


@dataclass(frozen=True, slots=True)
class Until:
    """The state a step waits for an order to reach: a status, at least some shares
    filled, at least some modifications (each optional)."""

    status: OrderStatus | None = None
    filled_at_least: int = 0
    modifications_at_least: int = 0

    def met(self, order: Order) -> bool:
        return ((self.status is None or order.status is self.status)
                and order.filled_quantity >= self.filled_at_least
                and order.modification_count >= self.modifications_at_least)

    def describe(self) -> str:
        parts = [self.status.value] if self.status is not None else []
        if self.filled_at_least:
            parts.append(f"{self.filled_at_least} filled")
        if self.modifications_at_least:
            parts.append(f"modified {self.modifications_at_least}x")
        return " with ".join(parts) or "seen"


RESTING = Until(S.OPEN)
FILLED = Until(S.FILLED)
CANCELLED = Until(S.CANCELLED)


@dataclass(frozen=True, slots=True)
class PlaceStep:
    """Place ``order`` (known to later steps as ``label``) and wait until it is ``until``;
    or, with ``refused_by``, expect that check to refuse it."""

    label: str
    order: OrderSpec
    until: Until = FILLED
    refused_by: str | None = None


@dataclass(frozen=True, slots=True)
class AwaitStep:
    """Wait until the order ``label`` is ``until`` (the market moved before this step)."""

    label: str
    until: Until


@dataclass(frozen=True, slots=True)
class ModifyStep:
    """Move the working order ``label`` to ``new_price``; settled once the change is committed."""

    label: str
    new_price: Decimal


@dataclass(frozen=True, slots=True)
class CancelStep:
    """Cancel the rest of the order ``label``; settled once it is ``until``."""

    label: str
    until: Until = CANCELLED


@dataclass(frozen=True, slots=True)
class CloseStep:
    """Close the strategy's whole holding in ``symbol``/``product`` and expect the round
    trip to have made a ``profit`` or a ``loss`` (before charges)."""

    symbol: str
    expect: Literal["profit", "loss"]
    order_type: str = "MARKET"
    price: Decimal | None = None
    product: str = "MIS"


@dataclass(frozen=True, slots=True)
class SquareOffStep:
    """Close every holding of ``product`` at market (the intraday square-off)."""

    product: str = "MIS"


StrategyStep = PlaceStep | AwaitStep | ModifyStep | CancelStep | CloseStep | SquareOffStep
MarketBeat = SetPrice | SetLiquidity


@dataclass(frozen=True, slots=True)
class Scene:
    """One numbered step of the demo as the reader sees it: a title and its beats, in order.
    ``skipped`` says why a scene does nothing under the limits in force."""

    title: str
    beats: tuple[MarketBeat | StrategyStep, ...] = ()
    skipped: str | None = None


def demo_session(limits: RiskLimits) -> tuple[Scene, ...]:
    """The whole session: fills, a partial fill, a modify, a cancel, four risk refusals,
    a broker rejection, a profit, a loss, the MIS square-off; the CNC holding stays open."""
    return (
        Scene("Market opens: RELIANCE 1412.30, INFY 1523.40, TCS 3045.60, HDFCBANK 987.45", (
            SetPrice("RELIANCE", D("1412.30")), SetPrice("INFY", D("1523.40")),
            SetPrice("TCS", D("3045.60")), SetPrice("HDFCBANK", D("987.45")),
        )),
        Scene("MARKET buy RELIANCE, fills at the last price", (
            PlaceStep("reliance", OrderSpec("RELIANCE", "BUY", 40, stop_loss=D("1395.00"))),
        )),
        Scene("LIMIT buy INFY below the market; it rests until INFY trades at 1521.80", (
            PlaceStep("infy", OrderSpec("INFY", "BUY", 30, "LIMIT", D("1522.00"), D("1505.00")), RESTING),
            SetPrice("INFY", D("1521.80")),
            AwaitStep("infy", FILLED),
        )),
        Scene("Partial fill: TCS has only 8 shares on offer per price move; cancel the rest", (
            SetLiquidity("TCS", 8),
            PlaceStep("tcs", OrderSpec("TCS", "BUY", 20, "LIMIT", D("3040.00"), D("3010.00")), RESTING),
            SetPrice("TCS", D("3039.50")),
            AwaitStep("tcs", Until(S.OPEN, filled_at_least=8)),
            SetPrice("TCS", D("3038.00")),
            AwaitStep("tcs", Until(S.OPEN, filled_at_least=16)),
            CancelStep("tcs", Until(S.CANCELLED, filled_at_least=16)),
            SetLiquidity("TCS", None),  # a market beat: it runs even if the scene is abandoned
        )),
        Scene("Modify: HDFCBANK delivery (CNC) bid raised from 980.00 to 985.00, then filled", (
            PlaceStep("hdfc", OrderSpec("HDFCBANK", "BUY", 50, "LIMIT", D("980.00"), D("965.00"), "CNC"), RESTING),
            ModifyStep("hdfc", D("985.00")),
            SetPrice("HDFCBANK", D("984.70")),
            AwaitStep("hdfc", FILLED),
        )),
        Scene("Cancel: an INFY bid at 1500.00 that the strategy no longer wants", (
            PlaceStep("spare", OrderSpec("INFY", "BUY", 20, "LIMIT", D("1500.00"), D("1480.00")), RESTING),
            CancelStep("spare"),
        )),
        _risk_per_trade(limits),
        Scene("Risk check: adding to TCS without a stop-loss", (
            PlaceStep("no stop", OrderSpec("TCS", "BUY", 5), refused_by="stop_loss_required"),
        )),
        _max_order_value(limits),
        _insufficient_balance(limits),
        Scene("Broker rejection: a bid at 1200.00, outside INFY's circuit band", (
            PlaceStep("outside band", OrderSpec("INFY", "BUY", 10, "LIMIT", D("1200.00"), D("1190.00")),
                      refused_by="broker"),
        )),
        Scene("Take profit: RELIANCE rallies to 1426.80; LIMIT sell at 1425.00 fills at once", (
            SetPrice("RELIANCE", D("1426.80")),
            CloseStep("RELIANCE", "profit", "LIMIT", D("1425.00")),
        )),
        Scene("Stop out: INFY slips to 1508.20; MARKET sell closes the position at a loss", (
            SetPrice("INFY", D("1508.20")),
            CloseStep("INFY", "loss"),
        )),
        Scene("Intraday square-off: TCS at 3051.20, every open MIS position closed", (
            SetPrice("TCS", D("3051.20")),
            SquareOffStep("MIS"),
        )),
        Scene("Close of the demo: HDFCBANK marked at 986.10; the delivery (CNC) holding stays open", (
            SetPrice("HDFCBANK", D("986.10")),
        )),
    )


def _risk_per_trade(limits: RiskLimits) -> Scene:
    allowed = limits.capital * limits.risk_per_trade_percent / 100
    quantity = int(allowed // D(15)) + 1  # 15.00 between entry and stop
    quantity += -quantity % 10
    return Scene(
        f"Risk check: risk per trade above {limits.risk_per_trade_percent.normalize():f}% "
        f"of capital ({money(allowed)})",
        (PlaceStep("too risky", OrderSpec("RELIANCE", "BUY", quantity, "LIMIT", D("1410.00"), D("1395.00")),
                   refused_by="risk_per_trade"),),
    )


def _max_order_value(limits: RiskLimits) -> Scene:
    limit = limits.max_order_value
    if limit is None:
        return Scene("Risk check: maximum order value", skipped="no maximum order value is configured")
    quantity = int(limit // D("3035.00")) + 1
    return Scene(
        f"Risk check: one order worth more than the maximum order value ({money(limit)})",
        (PlaceStep("too big", OrderSpec("TCS", "BUY", quantity, "LIMIT", D("3035.00"), D("3034.00")),
                   refused_by="max_order_value"),),
    )


def _insufficient_balance(limits: RiskLimits) -> Scene:
    title = "Balance check: a delivery (CNC) buy needing more cash than the account has"
    quantity = int(limits.capital * D("1.25") // D("1515.00")) + 1
    value = quantity * D("1515.00")
    if any(limit is not None and value > limit for limit in (limits.max_order_value, limits.max_position_value)):
        return Scene(title, skipped=f"with capital {money(limits.capital)} an order that exceeds the balance "
                                    "would first break the maximum order or position value")
    return Scene(title, (
        PlaceStep("beyond balance", OrderSpec("INFY", "BUY", quantity, "LIMIT", D("1515.00"), D("1514.00"), "CNC"),
                  refused_by="balance"),
    ))
