"""What the demo shows while it runs, fed by the driver from the strategy's reports.

Three displays with one interface (a context manager with scene, show, refresh, scene_over):

- LiveBoard, on a terminal: one board redrawn in place with ``rich.live.Live``: the recent
  lines, this run's orders and the positions. At most 80 columns wide and always shorter
  than the terminal, so nothing scrolls away; it pauses ``pace`` seconds after each of
  the strategy's steps (and each scene that has none) so a person can follow the session.
- LineLog, when stdout is not a terminal (CI logs): one line per step, outcome and order
  event, and a positions line after each scene. It never pauses.
- Silent (--quiet): nothing.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TextIO

from domain.enums import OrderStatus
from domain.order import Order
from domain.position import Position
from strategies.demo_messages import OrderSeen, Outcome, StepDone, Surprise
from strategies.figures import money, price, signed_qty

DEFAULT_PACE_SECONDS = 0.8  # on a terminal: long enough to read what a step did
MAX_WIDTH = 80
# Rows of the board besides the log lines, the orders and the positions: the title, three
# blank lines, and a title and a header row for each table; one more row stays free so
# that the board never reaches the terminal's last line (it would scroll).
BOARD_ROWS = 9
STATUS_STYLE = {
    OrderStatus.FILLED: "green", OrderStatus.OPEN: "cyan", OrderStatus.CANCELLED: "yellow",
    OrderStatus.REJECTED: "red", OrderStatus.FAILED: "red",
}


def open_display(*, quiet: bool, pace: float | None, title: str, out: TextIO = sys.stdout) -> "Silent":
    """The display for this run: Silent when quiet, LiveBoard on a terminal, else LineLog.
    ``pace`` (None: the default) applies to the LiveBoard only."""
    if quiet:
        return Silent()
    if out.isatty() and os.environ.get("TERM") != "dumb":
        return LiveBoard(title, DEFAULT_PACE_SECONDS if pace is None else pace, out)
    return LineLog(out)


def text_of(report: Any) -> tuple[str, str] | None:
    """(kind, text) of a report worth a line: kind is "outcome", "event", "surprise" or
    "abandoned"; None for a report that is not."""
    if isinstance(report, Outcome):
        return "outcome", report.text
    if isinstance(report, OrderSeen) and report.text is not None:
        return "event", report.text
    if isinstance(report, Surprise):
        return "surprise", f"UNEXPECTED: {report.text}"
    if isinstance(report, StepDone) and report.abandoned is not None:
        return "abandoned", f"step abandoned: {report.abandoned}"
    return None


def positions_text(positions: list[Position]) -> str | None:
    """RELIANCE MIS +40 @ 1412.30 (ltp 1426.80, unrealized +580.00) | INFY MIS 0 realized -408.00"""
    held = [p for p in positions if p.quantity or p.realized_pnl]
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
    return " | ".join(parts) or None


class Silent:
    """Shows nothing (--quiet); the base of the other displays."""

    def __enter__(self) -> "Silent":
        return self

    def __exit__(self, *exc: object) -> None:
        """Nothing to close."""

    def scene(self, number: int, title: str) -> None:
        """A scene begins."""

    def show(self, report: Any) -> None:
        """A report from the strategy."""

    def refresh(self, positions: list[Position]) -> None:
        """A step has settled."""

    def scene_over(self, positions: list[Position]) -> None:
        """The scene is over."""


class LineLog(Silent):
    """One line per step, outcome and order event, for logs and CI; never pauses."""

    INDENT: ClassVar[Mapping[str, str]] = {"outcome": "     ", "event": "       . ", "surprise": "     ", "abandoned": "     "}

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def scene(self, number: int, title: str) -> None:
        self._print(f"[{number:2d}] {title}")

    def show(self, report: Any) -> None:
        line = text_of(report)
        if line is not None:
            self._print(self.INDENT[line[0]] + line[1])

    def scene_over(self, positions: list[Position]) -> None:
        text = positions_text(positions)
        if text is not None:
            self._print(f"     positions: {text}")


class LiveBoard(Silent):
    """The board on a terminal, redrawn in place after every report and paused after each step."""

    INDENT: ClassVar[Mapping[str, str]] = {"outcome": "  ", "event": "    . ", "surprise": "  ", "abandoned": "  "}
    STYLE: ClassVar[Mapping[str, str]] = {"surprise": "bold red", "abandoned": "yellow", "event": "dim"}

    def __init__(self, title: str, pace: float, out: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        width = min(MAX_WIDTH, Console(file=out).size.width)
        self.console = Console(file=out, width=width)
        self.title = title
        self.pace = pace
        self.lines: list[tuple[str, str]] = []  # (text, style)
        self.orders: dict[int, Order] = {}
        self.positions: list[Position] = []
        self._live = Live(console=self.console, auto_refresh=False, transient=False)

    def __enter__(self) -> "LiveBoard":
        self._live.start()
        self._redraw()
        return self

    def __exit__(self, *exc: object) -> None:
        self._redraw()
        self._live.stop()

    def scene(self, number: int, title: str) -> None:
        self._add(f"[{number:2d}] {title}", "bold")

    def show(self, report: Any) -> None:
        if isinstance(report, OrderSeen):
            self.orders[report.order.order_id] = report.order
        line = text_of(report)
        if line is not None:
            self._add(self.INDENT[line[0]] + line[1], self.STYLE.get(line[0], ""))
        else:
            self._redraw()

    def refresh(self, positions: list[Position]) -> None:
        self.positions = positions
        self._redraw()
        if self.pace > 0:
            time.sleep(self.pace)  # the reader's time; the OMS and the strategy do not wait on it

    def _add(self, text: str, style: str) -> None:
        self.lines.append((text, style))
        del self.lines[:-200]  # only the last screenful is ever shown
        self._redraw()

    def _redraw(self) -> None:
        self._live.update(self._board(), refresh=True)

    def _board(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        room = max(6, self.console.size.height - BOARD_ROWS - len(self.positions))
        orders = list(self.orders.values())
        orders = orders[len(orders) - min(len(orders), max(3, room // 2)):]
        log = self.lines[-max(3, room - len(orders)):]
        return Group(
            Text(self.title, style="bold", no_wrap=True, overflow="ellipsis"),
            Text(""),
            *(Text(text, style=style, no_wrap=True, overflow="ellipsis") for text, style in log),
            Text(""),
            self._orders_table(orders),
            Text(""),
            self._positions_table(),
        )

    def _table(self, title: str, *columns: tuple[str, Literal["left", "right"]]) -> Any:
        from rich.table import Table

        table = Table(title=title, title_justify="left", title_style="bold", box=None,
                      padding=(0, 1), pad_edge=False, header_style="bold")
        for name, justify in columns:
            table.add_column(name, justify=justify, no_wrap=True)
        return table

    def _orders_table(self, orders: list[Order]) -> Any:
        from rich.text import Text

        table = self._table(
            "ORDERS (this run)", ("ID", "right"), ("SYMBOL", "left"), ("PROD", "left"), ("SIDE", "left"),
            ("TYPE", "left"), ("FILLED", "right"), ("PRICE", "right"), ("AVG", "right"), ("STATUS", "left"),
        )
        for o in orders:
            table.add_row(
                str(o.order_id), o.symbol, o.product.value, o.side.value, o.order_type.value,
                f"{o.filled_quantity}/{o.quantity}", price(o.price), price(o.average_price),
                Text(o.status.value, style=STATUS_STYLE.get(o.status, "")),
            )
        return table

    def _positions_table(self) -> Any:
        table = self._table(
            "POSITIONS", ("SYMBOL", "left"), ("PROD", "left"), ("QTY", "right"), ("AVG", "right"),
            ("LTP", "right"), ("REALIZED", "right"), ("UNREAL.", "right"), ("CHARGES", "right"),
        )
        for p in sorted(self.positions, key=lambda p: (p.symbol, p.product.value)):
            table.add_row(
                p.symbol, p.product.value, signed_qty(p.quantity), price(p.average_price) if p.quantity else "-",
                price(p.last_price), money(p.realized_pnl, sign=True), money(p.unrealized_pnl, sign=True),
                money(p.charges),
            )
        return table
