"""The end-of-demo summary: read back from the database apart from the OMS, printed, and
cross-checked against what the OMS reported through its handle before it stopped.

The database is read with SQLAlchemy Core on the ``persistence.schema`` tables, on a
connection of its own: the point is to check the OMS against what it durably wrote.
"""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TextIO

from sqlalchemy import func, select

from domain.money import natural
from persistence.database import create_engine_for, safe_url
from persistence.schema import orders, positions, trades
from strategies.figures import money, price, signed_qty

ZERO = Decimal(0)
PositionRow = tuple[int, Decimal, Decimal, Decimal]  # quantity, average price, realized P&L, charges


@dataclass
class Summary:
    orders_by_status: dict[str, int] = field(default_factory=dict)
    fills: int = 0
    filled_quantity: int = 0
    charges: Decimal = ZERO
    positions: dict[tuple[str, str, str], PositionRow] = field(default_factory=dict)
    """(exchange, symbol, product) -> (quantity, average price, realized P&L, charges)"""

    @property
    def realized_pnl(self) -> Decimal:
        return sum((p[2] for p in self.positions.values()), ZERO)


def summary_from_database(url: str, account: str) -> Summary:
    """Orders by status, fills and positions of ``account``, read from the tables."""
    summary = Summary()
    engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            by_status = select(orders.c.status, func.count()).where(orders.c.account == account).group_by(orders.c.status)
            for status, count in conn.execute(by_status):
                summary.orders_by_status[status] = int(count)
            # Money is summed here, not in SQL: SQLite stores it as exact text, and SUM()
            # there would go through floating point.
            for quantity, charges in conn.execute(
                select(trades.c.quantity, trades.c.total_charges).where(trades.c.account == account)
            ):
                summary.fills += 1
                summary.filled_quantity += quantity
                summary.charges += charges
            for row in conn.execute(
                select(positions.c.exchange, positions.c.symbol, positions.c.product, positions.c.quantity,
                       positions.c.average_price, positions.c.realized_pnl, positions.c.charges)
                .where(positions.c.account == account)
            ):
                summary.positions[(row.exchange, row.symbol, row.product)] = (
                    row.quantity, row.average_price, row.realized_pnl, row.charges)
    finally:
        engine.dispose()
    return summary


def summary_from_oms(oms: Any) -> Summary:
    """The same figures as the running OMS reports them through its handle."""
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
        diffs.append(f"charges on fills: database {natural(db.charges)}, OMS {natural(live.charges)}")
    names = ("quantity", "average price", "realized P&L", "charges")
    for key in sorted(set(db.positions) | set(live.positions)):
        stored, reported = db.positions.get(key), live.positions.get(key)
        label = ":".join(key)
        if stored is None or reported is None:
            diffs.append(f"position {label}: {'missing from the database' if stored is None else 'unknown to the OMS'}")
            continue
        for name, x, y in zip(names, stored, reported):
            if x != y:
                # Every digit, so that a difference is never rounded out of sight.
                x, y = (natural(v) if isinstance(v, Decimal) else v for v in (x, y))
                diffs.append(f"position {label} {name}: database {x}, OMS {y}")
    return diffs


def print_summary(summary: Summary, url: str, out: TextIO = sys.stdout) -> None:
    def p(line: str = "") -> None:
        print(line, file=out)

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


def report(url: str, account: str, live: Summary, surprises: list[str], out: TextIO = sys.stdout) -> bool:
    """Print the database's summary, the steps that did not go as scripted, and whether
    the database matches ``live`` (what the OMS reported). True if it does."""
    database = summary_from_database(url, account)
    print_summary(database, url, out)
    if surprises:
        print(f"note: {len(surprises)} demo step(s) did not go as scripted "
              "(the limits in force may differ from the demo's defaults):", file=out)
        for surprise in surprises:
            print(f"  - {surprise}", file=out)
    diffs = differences(database, live)
    if diffs:
        print("SUMMARY MISMATCH: the database disagrees with what the OMS reported:", file=out)
        for diff in diffs:
            print(f"  - {diff}", file=out)
        return False
    print("summary matches the database (orders by status, fills, charges and positions, "
          "as reported by the OMS before it stopped)", file=out, flush=True)
    return True
