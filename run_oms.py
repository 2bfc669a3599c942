#!/usr/bin/env python3
"""Launch the Kite OMS.

    python run_oms.py            a finite paper-trading demo on ./oms_demo.db, ending with a
                                 summary read back from the database and cross-checked
    python run_oms.py --serve    start the OMS from settings and run until SIGINT/SIGTERM

Everything the demo does goes through the public API: ``start_oms`` and the handle it
returns (``place_order``, ``modify_order``, ``cancel_order``, ``get_order_status``, ...)
plus ``oms.paper``, the controls of the simulated exchange.
"""
from __future__ import annotations

import argparse
import logging
import os
import queue
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable

D = Decimal
DEMO_DATABASE_FILE = "oms_demo.db"
DEMO_CAPITAL = D("200000")
WAIT_SECONDS = 5.0  # how long the demo waits for an asynchronous fill before giving up
TTY_PAUSE_SECONDS = 0.3  # time to read the live table between steps (terminal only)
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("oms.run")


# --------------------------------------------------------------------------- formatting
# Money is Decimal from end to end: these never go through float.


def money(value: Decimal | None, places: int = 2, sign: bool = False) -> str:
    """``value`` rounded half-up to ``places`` with Indian digit grouping (12,34,567.50)."""
    if value is None:
        return "-"
    quantum = D(1).scaleb(-places)
    rounded = D(value).quantize(quantum, rounding=ROUND_HALF_UP)
    text = f"{abs(rounded):f}"
    whole, _, fraction = text.partition(".")
    if len(whole) > 3:
        head, tail = whole[:-3], whole[-3:]
        groups = []
        while len(head) > 2:
            groups.insert(0, head[-2:])
            head = head[:-2]
        if head:
            groups.insert(0, head)
        whole = ",".join(groups + [tail])
    prefix = "-" if rounded < 0 else ("+" if sign and rounded > 0 else "")
    return prefix + whole + ("." + fraction if fraction else "")


def price(value: Decimal | None) -> str:
    """A price as traders write it: two decimals, up to four when it has them."""
    if value is None:
        return "-"
    value = D(value)
    if value == value.quantize(D("0.01")):
        return f"{value.quantize(D('0.01')):f}"
    return f"{value.quantize(D('0.0001'), rounding=ROUND_HALF_UP).normalize():f}"


def signed_qty(quantity: int) -> str:
    return f"{quantity:+d}" if quantity else "0"


def short_id(order_id: str | None) -> str:
    return (order_id or "-")[:8]


def safe_url(url: str) -> str:
    """The URL with its password hidden; credentials are never printed."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy understands: show nothing secret
        return url.split("@")[-1] if "@" in url else url


def describe(order: Any) -> str:
    """BUY 30 INFY LIMIT @ 1522.00 MIS"""
    side = getattr(order.side, "value", order.side)
    kind = getattr(order.order_type, "value", order.order_type)
    product = getattr(order.product, "value", order.product)
    text = f"{side} {order.quantity} {order.symbol} {kind}"
    if order.price is not None:
        text += f" @ {price(order.price)}"
    if order.trigger_price is not None:
        text += f" trigger {price(order.trigger_price)}"
    return f"{text} {product}"


# --------------------------------------------------------------------------- live display


class Display:
    """What the demo shows while it runs.

    ``tty``: the screen is redrawn (ANSI clear) after each step with the recent log, this
    run's orders and the positions. ``lines``: one line per step, outcome and order event,
    for logs and CI. ``off`` (--quiet): nothing.
    """

    def __init__(self, mode: str, out=sys.stdout) -> None:
        self.mode = mode
        self.out = out
        self.recent: list[str] = []
        self.step_no = 0
        self.title = ""

    def _emit(self, line: str) -> None:
        if self.mode == "lines":
            print(line, file=self.out, flush=True)
        elif self.mode == "tty":
            self.recent.append(line)
            del self.recent[:-12]

    def step(self, text: str) -> None:
        self.step_no += 1
        self._emit(f"[{self.step_no:2d}] {text}")

    def note(self, text: str) -> None:
        self._emit(f"     {text}")

    def event(self, text: str) -> None:
        self._emit(f"       . {text}")

    def positions_line(self, positions: list[Any]) -> None:
        if self.mode != "lines":
            return
        held = [p for p in positions if p.quantity or p.realized_pnl]
        if not held:
            return
        parts = []
        for p in sorted(held, key=lambda p: (p.symbol, p.product.value)):
            part = f"{p.symbol} {p.product.value} {signed_qty(p.quantity)}"
            if p.quantity:
                part += f" @ {price(p.average_price)}"
                if p.last_price is not None and p.last_price != p.average_price:
                    part += f" (ltp {price(p.last_price)}, unrealized {money(p.unrealized_pnl, sign=True)})"
            if p.realized_pnl:
                part += f" realized {money(p.realized_pnl, sign=True)}"
            parts.append(part)
        self.note("positions: " + " | ".join(parts))

    def redraw(self, orders: list[Any], positions: list[Any], pause: bool = True) -> None:
        if self.mode != "tty":
            return
        # Fit the screen: the positions in full, the rest shared by the log and the orders.
        rows = shutil.get_terminal_size((100, 40)).lines
        room = max(8, rows - 10 - len(positions))
        shown_orders = min(len(orders), max(3, room // 2))
        shown_log = max(3, room - shown_orders)
        lines = ["\x1b[H\x1b[2J" + self.title, ""]
        lines += self.recent[-shown_log:]
        lines += ["", "ORDERS (this run)"]
        lines.append(f"  {'ID':8}  {'SYMBOL':9} {'PROD':4} {'SIDE':4} {'TYPE':6} {'QTY':>4} {'FILLED':>6} "
                     f"{'PRICE':>9} {'AVG':>9} {'MODS':>4}  STATUS")
        for o in orders[len(orders) - shown_orders:]:
            lines.append(
                f"  {short_id(o.order_id):8}  {o.symbol:9} {o.product.value:4} {o.side.value:4} "
                f"{o.order_type.value:6} {o.quantity:>4} {o.filled_quantity:>6} {price(o.price):>9} "
                f"{price(o.average_price):>9} {o.modification_count:>4}  {o.status.value}"
            )
        lines += ["", "POSITIONS"]
        lines.append(f"  {'SYMBOL':9} {'PROD':4} {'QTY':>5} {'AVG':>9} {'LTP':>9} {'REALIZED':>10} "
                     f"{'UNREALIZED':>10} {'CHARGES':>8}")
        for p in sorted(positions, key=lambda p: (p.symbol, p.product.value)):
            lines.append(
                f"  {p.symbol:9} {p.product.value:4} {signed_qty(p.quantity):>5} "
                f"{price(p.average_price) if p.quantity else '-':>9} {price(p.last_price):>9} "
                f"{money(p.realized_pnl, sign=True):>10} {money(p.unrealized_pnl, sign=True):>10} "
                f"{money(p.charges):>8}"
            )
        print("\n".join(lines), file=self.out, flush=True)
        if pause:
            time.sleep(TTY_PAUSE_SECONDS)


def start_listener(oms: Any, sink: "queue.Queue[Any]") -> Any:
    """A tiny actor subscribed to the OMS: every committed order change lands in ``sink``."""
    import pykka

    from actors.messages import OrderChanged

    class OrderListener(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> None:
            if isinstance(message, OrderChanged):
                sink.put(message.order)

    ref = OrderListener.start()
    oms.subscribe(ref)
    return ref


# --------------------------------------------------------------------------- the demo strategy


class DemoFailed(Exception):
    """The OMS did not do in time what the demo waited for."""


class StepAbandoned(Exception):
    """An order the step needed was refused (the limits in force differ from the demo's)."""


class DemoStrategy:
    """A scripted strategy that walks the OMS through the life of an intraday session.

    Four NSE stocks, prices on their ticks (RELIANCE, INFY and TCS in 0.10 steps; HDFCBANK,
    below 1000, in 0.05 steps). Orders that open or add to a position carry a stop-loss;
    orders that reduce one need none. Sizes of the orders meant to be refused are derived
    from the risk limits in force, so the refusals hold for any --capital.
    """

    def __init__(self, oms: Any, display: Display, events: "queue.Queue[Any] | None") -> None:
        self.oms = oms
        self.show = display
        self.events = events
        self.order_ids: list[str] = []
        self.seen: dict[str, tuple] = {}
        self.surprises: list[str] = []
        self.limits = oms.settings.risk_limits()

    # --- plumbing -----------------------------------------------------------------------

    def request(self, symbol: str, side: str, quantity: int, order_type: str = "MARKET", *,
                price: str | None = None, stop_loss: str | None = None, product: str = "MIS") -> Any:
        from domain import OrderRequest

        return OrderRequest(
            symbol=symbol, side=side, quantity=quantity, order_type=order_type, product=product,
            price=None if price is None else D(price),
            stop_loss=None if stop_loss is None else D(stop_loss),
            strategy_id="demo",
        )

    def place(self, request: Any, expect_refusal: str | None = None) -> str | None:
        """Place ``request``; print its outcome. Returns the order id (None if the call
        failed without one). A refusal is printed with its check and reason."""
        from domain import InsufficientBalance, OrderRejected

        what = describe(request) + (f" stop-loss {price(request.stop_loss)}" if request.stop_loss else "")
        self.say(f"place {what}")
        try:
            result = self.oms.place_order(request)
        except OrderRejected as e:
            detail = ""
            if isinstance(e, InsufficientBalance):
                detail = f" (required {money(e.required)}, available {money(e.available)})"
            self.say(f"REJECTED [{e.failed_check}] {e.reason}{detail}")
            self._track(e.order_id)
            self.expect(expect_refusal == e.failed_check,
                        f"{what}: refused by {e.failed_check}, expected {expect_refusal or 'acceptance'}")
            return e.order_id
        self._track(result.order_id)
        self.say(f"-> order {short_id(result.order_id)} {result.status.value} "
                 f"(broker id {result.broker_order_id}): {result.message}")
        self.expect(expect_refusal is None, f"{what}: accepted, expected a refusal by {expect_refusal}")
        return result.order_id

    def _track(self, order_id: str | None) -> None:
        if order_id and order_id not in self.order_ids:
            self.order_ids.append(order_id)

    def set_price(self, symbol: str, last: str) -> None:
        self.oms.paper.set_price(symbol, D(last))

    def wait(self, order_id: str | None, done: Callable[[Any], bool], what: str) -> Any:
        """Poll until the order satisfies ``done``: fills arrive asynchronously."""
        if order_id is None:
            raise DemoFailed(f"no order to wait for ({what})")
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            order = self.oms.get_order_status(order_id)
            if done(order):
                return order
            if time.monotonic() > deadline:
                raise DemoFailed(f"order {order_id} not {what} after {WAIT_SECONDS}s; it is "
                                 f"{order.status.value} with {order.filled_quantity}/{order.quantity} filled")
            time.sleep(0.01)

    def filled(self, order_id: str | None) -> Any:
        from domain import OrderStatus

        order = self.wait(order_id, lambda o: o.status in (OrderStatus.FILLED, OrderStatus.CANCELLED,
                                                           OrderStatus.REJECTED, OrderStatus.FAILED), "done")
        self.expect(order.status is OrderStatus.FILLED, f"order {short_id(order_id)} ended {order.status.value}, expected FILLED")
        self.say(f"-> {short_id(order_id)} {order.status.value} "
                 f"{order.filled_quantity}/{order.quantity} @ {price(order.average_price)}")
        return order

    def say(self, text: str) -> None:
        """An outcome line, after the order events that led to it."""
        self.drain_events(0.01)
        self.show.note(text)

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            self.surprises.append(message)
            self.say(f"UNEXPECTED: {message}")

    def position(self, symbol: str, product: str = "MIS") -> Any | None:
        return next((p for p in self.oms.get_positions()
                     if p.symbol == symbol and p.product.value == product), None)

    def settle(self) -> None:
        """After a step: show the order events that came in, then the tables."""
        self.drain_events()
        positions = self.oms.get_positions()
        self.show.positions_line(positions)
        if self.show.mode == "tty":
            orders = [self.oms.get_order_status(i) for i in self.order_ids]
            self.show.redraw(orders, positions)

    def drain_events(self, quiet_for: float = 0.02) -> None:
        if self.events is None:
            return
        while True:
            try:
                order = self.events.get(timeout=quiet_for)
            except queue.Empty:
                return
            self.show.event(self._event_text(order))

    def _event_text(self, order: Any) -> str:
        state = (order.status, order.filled_quantity, order.modification_count)
        before = self.seen.get(order.order_id)
        self.seen[order.order_id] = state
        head = f"{short_id(order.order_id)} {order.side.value} {order.quantity} {order.symbol}:"
        if before is None:
            return f"{head} {order.status.value}"
        changes = []
        if before[0] is not order.status:
            changes.append(f"{before[0].value} -> {order.status.value}")
        if order.filled_quantity != before[1]:
            changes.append(f"filled {order.filled_quantity}/{order.quantity} avg {price(order.average_price)}")
        if order.modification_count != before[2]:
            changes.append(f"modified (price {price(order.price)})")
        return f"{head} {', '.join(changes) or order.status.value + ' (updated)'}"

    # --- the session --------------------------------------------------------------------

    def run(self) -> None:
        steps = [
            self.market_opens, self.market_buy, self.limit_buy, self.partial_fill_then_cancel,
            self.modify, self.cancel, self.risk_per_trade, self.missing_stop_loss,
            self.max_order_value, self.insufficient_balance, self.broker_rejection,
            self.close_at_profit, self.close_at_loss, self.square_off, self.close_of_demo,
        ]
        for step in steps:
            try:
                step()
            except StepAbandoned as why:
                self.say(f"step abandoned: {why}")
            self.settle()

    def accepted(self, request: Any) -> str:
        """Place an order the script needs working; abandon the step if it was refused."""
        order_id = self.place(request)
        order = self.oms.get_order_status(order_id) if order_id else None
        if order is None or order.status.value in ("REJECTED", "FAILED"):
            raise StepAbandoned(f"{describe(request)} was not accepted")
        return order_id

    def market_opens(self) -> None:
        self.show.step("Market opens: RELIANCE 1412.30, INFY 1523.40, TCS 3045.60, HDFCBANK 987.45")
        for symbol, last in (("RELIANCE", "1412.30"), ("INFY", "1523.40"), ("TCS", "3045.60"), ("HDFCBANK", "987.45")):
            self.set_price(symbol, last)

    def market_buy(self) -> None:
        self.show.step("MARKET buy RELIANCE, fills at the last price")
        self.filled(self.accepted(self.request("RELIANCE", "BUY", 40, stop_loss="1395.00")))

    def limit_buy(self) -> None:
        self.show.step("LIMIT buy INFY below the market; it rests until INFY trades at 1521.80")
        infy = self.accepted(self.request("INFY", "BUY", 30, "LIMIT", price="1522.00", stop_loss="1505.00"))
        self.wait(infy, lambda o: o.status.value == "OPEN", "resting")
        self.set_price("INFY", "1521.80")
        self.filled(infy)

    def partial_fill_then_cancel(self) -> None:
        self.show.step("Partial fill: TCS has only 8 shares on offer per price move; cancel the rest")
        self.oms.paper.set_liquidity("TCS", 8)
        try:
            tcs = self.accepted(self.request("TCS", "BUY", 20, "LIMIT", price="3040.00", stop_loss="3010.00"))
            self.set_price("TCS", "3039.50")
            order = self.wait(tcs, lambda o: o.filled_quantity >= 8, "partly filled")
            self.say(f"-> {short_id(tcs)} {order.status.value} {order.filled_quantity}/{order.quantity} filled")
            self.set_price("TCS", "3038.00")
            order = self.wait(tcs, lambda o: o.filled_quantity >= 16, "partly filled")
            self.say(f"-> {short_id(tcs)} {order.status.value} {order.filled_quantity}/{order.quantity} "
                     f"filled @ {price(order.average_price)}; cancelling the remaining {order.remaining_quantity}")
            result = self.oms.cancel_order(tcs)
            order = self.oms.get_order_status(tcs)
            self.say(f"-> {short_id(tcs)} {result.status.value} with {order.filled_quantity}/{order.quantity} "
                     f"filled: {result.message}")
            self.expect(order.status.value == "CANCELLED" and order.filled_quantity == 16,
                        "TCS: expected CANCELLED with 16 of 20 filled")
        finally:
            self.oms.paper.set_liquidity("TCS", None)

    def modify(self) -> None:
        self.show.step("Modify: HDFCBANK delivery (CNC) bid raised from 980.00 to 985.00, then filled")
        hdfc = self.accepted(self.request("HDFCBANK", "BUY", 50, "LIMIT", price="980.00", stop_loss="965.00", product="CNC"))
        self.wait(hdfc, lambda o: o.status.value == "OPEN", "resting")
        result = self.oms.modify_order(hdfc, new_price=D("985.00"))
        order = self.oms.get_order_status(hdfc)
        self.say(f"-> {short_id(hdfc)} {result.status.value}: {result.message}; price now "
                 f"{price(order.price)}, modifications {order.modification_count}")
        self.set_price("HDFCBANK", "984.70")
        self.filled(hdfc)

    def cancel(self) -> None:
        self.show.step("Cancel: an INFY bid at 1500.00 that the strategy no longer wants")
        spare = self.accepted(self.request("INFY", "BUY", 20, "LIMIT", price="1500.00", stop_loss="1480.00"))
        self.wait(spare, lambda o: o.status.value == "OPEN", "resting")
        result = self.oms.cancel_order(spare)
        self.say(f"-> {short_id(spare)} {result.status.value}: {result.message}")
        self.expect(result.status.value == "CANCELLED", "INFY bid: expected CANCELLED")

    def risk_per_trade(self) -> None:
        limits = self.limits
        allowed = limits.capital * limits.risk_per_trade_percent / 100
        self.show.step(f"Risk check: risk per trade above {limits.risk_per_trade_percent.normalize():f}% "
                       f"of capital ({money(allowed)})")
        quantity = int(allowed // D(15)) + 1  # 15.00 between entry and stop
        quantity += -quantity % 10
        self.place(self.request("RELIANCE", "BUY", quantity, "LIMIT", price="1410.00", stop_loss="1395.00"),
                   expect_refusal="risk_per_trade")

    def missing_stop_loss(self) -> None:
        self.show.step("Risk check: adding to TCS without a stop-loss")
        self.place(self.request("TCS", "BUY", 5), expect_refusal="stop_loss_required")

    def max_order_value(self) -> None:
        limit = self.limits.max_order_value
        if limit is None:
            self.show.step("Risk check: maximum order value")
            self.say("skipped: no maximum order value is configured")
            return
        self.show.step(f"Risk check: one order worth more than the maximum order value ({money(limit)})")
        quantity = int(limit // D("3035.00")) + 1
        self.place(self.request("TCS", "BUY", quantity, "LIMIT", price="3035.00", stop_loss="3034.00"),
                   expect_refusal="max_order_value")

    def insufficient_balance(self) -> None:
        limits = self.limits
        self.show.step("Balance check: a delivery (CNC) buy needing more cash than the account has")
        quantity = int(limits.capital * D("1.25") // D("1515.00")) + 1
        value = quantity * D("1515.00")
        if (limits.max_order_value is not None and value > limits.max_order_value) or (
            limits.max_position_value is not None and value > limits.max_position_value
        ):
            self.say(f"skipped: with capital {money(limits.capital)} an order that exceeds the balance "
                     "would first break the maximum order or position value")
            return
        self.place(self.request("INFY", "BUY", quantity, "LIMIT", price="1515.00", stop_loss="1514.00", product="CNC"),
                   expect_refusal="balance")

    def broker_rejection(self) -> None:
        self.show.step("Broker rejection: a bid at 1200.00, outside INFY's circuit band")
        self.place(self.request("INFY", "BUY", 10, "LIMIT", price="1200.00", stop_loss="1190.00"),
                   expect_refusal="broker")

    def close_at_profit(self) -> None:
        self.show.step("Take profit: RELIANCE rallies to 1426.80; LIMIT sell at 1425.00 fills at once")
        self.set_price("RELIANCE", "1426.80")
        held = self.position("RELIANCE")
        if held is None or held.quantity <= 0:
            raise StepAbandoned("no long RELIANCE position to sell")
        self.filled(self.accepted(self.request("RELIANCE", "SELL", held.quantity, "LIMIT", price="1425.00")))
        after = self.position("RELIANCE")
        self.expect(after is not None and after.quantity == 0 and after.realized_pnl > 0,
                    "RELIANCE: expected closed at a profit")

    def close_at_loss(self) -> None:
        self.show.step("Stop out: INFY slips to 1508.20; MARKET sell closes the position at a loss")
        self.set_price("INFY", "1508.20")
        held = self.position("INFY")
        if held is None or held.quantity <= 0:
            raise StepAbandoned("no long INFY position to sell")
        self.filled(self.accepted(self.request("INFY", "SELL", held.quantity)))
        after = self.position("INFY")
        self.expect(after is not None and after.quantity == 0 and after.realized_pnl < 0,
                    "INFY: expected closed at a loss")

    def square_off(self) -> None:
        self.show.step("Intraday square-off: TCS at 3051.20, every open MIS position closed")
        self.set_price("TCS", "3051.20")
        for p in self.oms.get_positions():
            if p.product.value == "MIS" and p.quantity != 0:
                side = "SELL" if p.quantity > 0 else "BUY"
                self.filled(self.accepted(self.request(p.symbol, side, abs(p.quantity))))

    def close_of_demo(self) -> None:
        self.show.step("Close of the demo: HDFCBANK marked at 986.10; the delivery (CNC) holding stays open")
        self.set_price("HDFCBANK", "986.10")


# --------------------------------------------------------------------------- the summary


@dataclass
class Summary:
    orders_by_status: dict[str, int] = field(default_factory=dict)
    fills: int = 0
    filled_quantity: int = 0
    charges: Decimal = D(0)
    # (exchange, symbol, product) -> (quantity, average price, realized P&L, charges)
    positions: dict[tuple[str, str, str], tuple[int, Decimal, Decimal, Decimal]] = field(default_factory=dict)

    @property
    def realized_pnl(self) -> Decimal:
        return sum((p[2] for p in self.positions.values()), D(0))


def _dec(value: Any) -> Decimal:
    """A value read from the database as an exact Decimal (SQLite keeps money as text)."""
    if value is None:
        return D(0)
    return value if isinstance(value, Decimal) else D(str(value))


def _engine(url: str):
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed)


def summary_from_database(url: str) -> Summary:
    """Read the tables directly with SQLAlchemy, apart from the OMS."""
    from sqlalchemy import text

    summary = Summary()
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            for status, count in conn.execute(text("SELECT status, COUNT(*) FROM orders GROUP BY status")):
                summary.orders_by_status[status] = int(count)
            for quantity, charges in conn.execute(text("SELECT quantity, charges FROM trades")):
                summary.fills += 1
                summary.filled_quantity += int(quantity)
                summary.charges += _dec(charges)
            for row in conn.execute(text(
                "SELECT exchange, symbol, product, quantity, average_price, realized_pnl, charges FROM positions"
            )):
                summary.positions[(row[0], row[1], row[2])] = (int(row[3]), _dec(row[4]), _dec(row[5]), _dec(row[6]))
    finally:
        engine.dispose()
    return summary


def summary_from_oms(oms: Any) -> Summary:
    """What the running OMS reports through its handle."""
    summary = Summary()
    summary.orders_by_status = dict(Counter(o.status.value for o in oms.get_orders()))
    for fill in oms.get_trades():
        summary.fills += 1
        summary.filled_quantity += fill.quantity
        summary.charges += fill.charges.total
    for p in oms.get_positions():
        summary.positions[(p.exchange.value, p.symbol, p.product.value)] = (
            p.quantity, p.average_price, p.realized_pnl, p.charges)
    return summary


def differences(db: Summary, live: Summary) -> list[str]:
    """Every way the database disagrees with the OMS (Decimals compared by value)."""
    diffs = []
    for status in sorted(set(db.orders_by_status) | set(live.orders_by_status)):
        a, b = db.orders_by_status.get(status, 0), live.orders_by_status.get(status, 0)
        if a != b:
            diffs.append(f"orders {status}: database {a}, OMS {b}")
    if (db.fills, db.filled_quantity) != (live.fills, live.filled_quantity):
        diffs.append(f"fills: database {db.fills} ({db.filled_quantity} shares), "
                     f"OMS {live.fills} ({live.filled_quantity} shares)")
    if db.charges != live.charges:
        diffs.append(f"charges on fills: database {db.charges}, OMS {live.charges}")
    names = ("quantity", "average price", "realized P&L", "charges")
    for key in sorted(set(db.positions) | set(live.positions)):
        a, b = db.positions.get(key), live.positions.get(key)
        label = ":".join(key)
        if a is None or b is None:
            diffs.append(f"position {label}: {'missing from the database' if a is None else 'unknown to the OMS'}")
            continue
        for name, x, y in zip(names, a, b):
            if x != y:
                diffs.append(f"position {label} {name}: database {x}, OMS {y}")
    return diffs


def print_summary(summary: Summary, url: str, out=sys.stdout) -> None:
    p = lambda line="": print(line, file=out)  # noqa: E731
    p()
    p(f"SUMMARY (read back from {safe_url(url)})")
    total = sum(summary.orders_by_status.values())
    by_status = ", ".join(f"{s} {n}" for s, n in sorted(summary.orders_by_status.items()))
    p(f"  orders:  {total} ({by_status})")
    p(f"  fills:   {summary.fills} trades, {summary.filled_quantity} shares")
    p("  positions:")
    p(f"    {'SYMBOL':10} {'PRODUCT':7} {'QTY':>5} {'AVERAGE':>10} {'REALIZED P&L':>13} {'CHARGES':>9}")
    for (exchange, symbol, product), (qty, avg, realized, charges) in sorted(
        summary.positions.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])
    ):
        name = symbol if exchange == "NSE" else f"{exchange}:{symbol}"
        p(f"    {name:10} {product:7} {signed_qty(qty):>5} {price(avg) if qty else '-':>10} "
          f"{money(realized, sign=True):>13} {money(charges):>9}")
    p(f"  total realized P&L:  {money(summary.realized_pnl, sign=True)}")
    p(f"  total charges:       {money(summary.charges)}")
    p(f"  realized net of charges: {money(summary.realized_pnl - summary.charges, sign=True)}")
    out.flush()


# --------------------------------------------------------------------------- modes


def remove_sqlite_file(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        candidate = Path(str(path) + suffix)
        if candidate.exists():
            candidate.unlink()


def run_demo(args: argparse.Namespace, overrides: dict[str, Any], configured: set[str]) -> int:
    from actors import start_oms

    recreate = "database_url" not in configured
    if recreate:
        path = Path.cwd() / DEMO_DATABASE_FILE
        overrides["database_url"] = f"sqlite:///{path}"
        remove_sqlite_file(path)
    if "capital" not in configured:
        overrides["capital"] = DEMO_CAPITAL
    overrides["broker"] = "paper"
    url = overrides.get("database_url")

    oms = start_oms(**overrides)
    url = oms.settings.database_url
    print(f"Paper-trading demo: database {safe_url(url)}"
          f"{' (recreated)' if recreate else ' (used as it is)'}, capital {money(oms.settings.capital)}", flush=True)

    interactive = not args.quiet and sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
    display = Display("off" if args.quiet else ("tty" if interactive else "lines"))
    display.title = f"Kite OMS paper-trading demo  |  {safe_url(url)}  |  capital {money(oms.settings.capital)}"
    events: queue.Queue[Any] | None = None
    listener = None
    strategy = None
    live: Summary | None = None
    try:
        if display.mode != "off":
            events = queue.Queue()
            listener = start_listener(oms, events)
        strategy = DemoStrategy(oms, display, events)
        strategy.run()
        strategy.drain_events()
        live = summary_from_oms(oms)
    finally:
        oms.stop()
        if listener is not None:
            listener.stop()

    database = summary_from_database(url)
    print_summary(database, url)
    if strategy.surprises:
        print(f"note: {len(strategy.surprises)} demo step(s) did not go as scripted "
              "(the limits in force may differ from the demo's defaults):")
        for surprise in strategy.surprises:
            print(f"  - {surprise}")
    diffs = differences(database, live)
    if diffs:
        print("SUMMARY MISMATCH: the database disagrees with what the OMS reported:")
        for diff in diffs:
            print(f"  - {diff}")
        return EXIT_FAILED
    print("summary matches the database (orders by status, fills, charges and positions, "
          "as reported by the OMS before it stopped)", flush=True)
    return EXIT_OK


def run_service(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from actors import start_oms

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    oms = start_oms(**overrides)
    try:
        s = oms.settings
        live = len(oms.get_active_orders())
        print(f"OMS running: broker {s.broker}, database {safe_url(s.database_url)}, capital {money(s.capital)}, "
              f"{live} live order(s) recovered; stop with SIGINT (Ctrl-C) or SIGTERM", flush=True)
        log.info("OMS running")
        while not stop.wait(0.2):
            continue  # wakes now and then so that the signal handlers get to run
        print("stopping the OMS ...", flush=True)
    finally:
        oms.stop()
    print("OMS stopped", flush=True)
    return EXIT_OK


# --------------------------------------------------------------------------- command line


def _capital(text: str) -> Decimal:
    try:
        value = D(text.strip())
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of rupees") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError(f"capital must be a positive number of rupees, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_oms.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Order Management System for Zerodha Kite traders.\n\n"
            "Without --serve it runs a finite paper-trading demo: a scripted strategy sends\n"
            "market and limit orders on RELIANCE, INFY, TCS and HDFCBANK to the OMS, which\n"
            "validates, records and tracks them against a simulated exchange (fills, a partial\n"
            "fill, a modify, cancels, risk and broker rejections, a profit and a loss), then\n"
            "prints a summary read back from the database and cross-checks it against what\n"
            "the OMS reported. Exit status 0 when they agree."
        ),
        epilog=(
            "database of the demo:\n"
            f"  With no --database-url and no OMS_DATABASE_URL (or database_url in the config\n"
            f"  file) the demo uses ./{DEMO_DATABASE_FILE} in the current directory and RECREATES\n"
            "  it at the start of each run (the file and its -wal/-shm side files are deleted).\n"
            "  A database given any other way is used as it is; nothing is deleted.\n\n"
            "configuration:\n"
            "  Every setting of actors/settings.py can be given as an OMS_* environment variable\n"
            "  (OMS_CAPITAL, OMS_MAX_ORDER_VALUE, ...) or a key in the TOML file of --config /\n"
            "  OMS_CONFIG_FILE; command-line options win over both. Keep secrets (a database\n"
            "  password) in the environment or the file rather than on the command line; the\n"
            "  password in a database URL is never printed.\n\n"
            "examples:\n"
            "  python run_oms.py\n"
            "  python run_oms.py --quiet --database-url sqlite:////tmp/demo.db\n"
            "  OMS_DATABASE_URL=postgresql+psycopg://oms@127.0.0.1:5432/oms python run_oms.py --serve"
        ),
    )
    parser.add_argument(
        "--database-url", metavar="URL",
        help="SQLAlchemy URL of the database: sqlite:///file.db or postgresql+psycopg://user@host/db. "
             "Overrides OMS_DATABASE_URL and the config file; the demo then uses that database "
             f"and deletes nothing (default for the demo: sqlite:///./{DEMO_DATABASE_FILE}, recreated; "
             "for --serve: the settings' default sqlite:///oms.db)",
    )
    parser.add_argument(
        "--capital", metavar="RUPEES", type=_capital,
        help="trading capital in rupees, the base of the risk limits (default: OMS_CAPITAL or the "
             f"config file; otherwise {DEMO_CAPITAL} for the demo and 1000000 for --serve)",
    )
    parser.add_argument(
        "--config", metavar="FILE", type=Path,
        help="TOML file with settings (the keys of OMSSettings, e.g. capital = \"500000\"); "
             "same as OMS_CONFIG_FILE",
    )
    parser.add_argument(
        "--serve", action="store_true",
        help="service mode: start the OMS from the settings (environment, --config, options), "
             "recover live orders from the database, log that it is running and wait until "
             "SIGINT or SIGTERM, then stop cleanly. No demo orders are sent",
    )
    parser.add_argument(
        "--quiet", action="store_true",
        help="no live display of orders and positions while the demo runs (the summary is still printed)",
    )
    parser.add_argument(
        "--log-level", metavar="LEVEL", type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="logging level for the OMS's log on stderr: DEBUG, INFO, WARNING, ERROR or CRITICAL "
             "(default: OMS_LOG_LEVEL or WARNING)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    overrides: dict[str, Any] = {}
    if args.config is not None:
        overrides["config_file"] = args.config
    if args.database_url:
        overrides["database_url"] = args.database_url
    if args.capital is not None:
        overrides["capital"] = args.capital
    if args.log_level:
        overrides["log_level"] = args.log_level

    try:
        from pydantic import ValidationError

        from actors.settings import OMSSettings

        settings = OMSSettings(**overrides)
    except (ValidationError, ValueError) as exc:
        print(f"run_oms.py: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    level = settings.log_level.upper()
    if level not in logging.getLevelNamesMapping():
        print(f"run_oms.py: invalid log level {settings.log_level!r}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    log.setLevel(level)

    try:
        if args.serve:
            return run_service(args, overrides)
        return run_demo(args, overrides, set(settings.model_fields_set))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (| head): stop writing, quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except DemoFailed as exc:
        print(f"run_oms.py: demo failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - one readable line, the traceback in the log
        log.debug("run_oms.py failed", exc_info=True)
        print(f"run_oms.py: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
