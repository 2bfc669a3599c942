"""``oms status``, ``oms orders``, ``oms positions``, ``oms trades`` and ``oms audit``:
what the OMS's database holds, read without writing and without a running OMS."""
from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from cli.common import CommandFailed, add_common, console, emit, open_store, plain, settings_from
from domain.enums import TERMINAL_STATUSES, OrderStatus
from domain.order import Order, OrderEvent
from persistence.account_lock import lock_holder
from persistence.database import safe_url
from persistence.store import Store

ORDER_COLUMNS = [
    ("id", lambda o: o.order_id), ("strategy", lambda o: o.strategy_id), ("symbol", lambda o: o.symbol),
    ("side", lambda o: o.side), ("qty", lambda o: o.quantity), ("type", lambda o: o.order_type),
    ("price", lambda o: o.price), ("status", lambda o: o.status), ("filled", lambda o: o.filled_quantity),
    ("avg", lambda o: o.average_price), ("broker id", lambda o: o.broker_order_id), ("updated", lambda o: o.updated_at),
]


def register(commands: Any) -> None:
    status = commands.add_parser("status", help="the account's trading state, orders, positions and P&L")
    add_common(status)
    status.set_defaults(run=run_status)

    orders = commands.add_parser("orders", help="orders, newest first")
    add_common(orders)
    orders.add_argument("--status", action="append", choices=[s.value for s in OrderStatus], metavar="S",
                        help="only orders in status S (PENDING, SUBMITTED, OPEN, FILLED, CANCELLED, REJECTED, FAILED); "
                             "repeat for several")
    orders.add_argument("--strategy", type=int, metavar="N", help="only strategy N's orders")
    orders.add_argument("--limit", type=_positive, default=100, metavar="N", help="at most the N newest (default 100)")
    orders.set_defaults(run=run_orders)

    positions = commands.add_parser("positions", help="positions with average price and P&L")
    add_common(positions)
    positions.add_argument("--all", action="store_true", help="flat positions too")
    positions.set_defaults(run=run_positions)

    trades = commands.add_parser("trades", help="fills with their charges, newest last")
    add_common(trades)
    trades.add_argument("--order", type=int, metavar="ORDER_ID", help="only this order's fills")
    trades.add_argument("--limit", type=_positive, default=100, metavar="N", help="at most the N newest (default 100)")
    trades.set_defaults(run=run_trades)

    audit = commands.add_parser("audit", help="one order's full history, from PENDING to its end")
    add_common(audit)
    audit.add_argument("order_id", type=int, metavar="ORDER_ID")
    audit.set_defaults(run=run_audit)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[tuple[Any, Store]]:
    settings = settings_from(args)
    store = open_store(settings)
    try:
        yield settings, store
    finally:
        store.close()


def status_of(settings: Any, store: Store) -> dict[str, Any]:
    """The account at a glance, as the database has it now."""
    state = store.load_trading_state()
    counts = store.count_orders_by_status()
    positions = store.load_positions()
    log = store.load_reconciliation_log()
    realized = sum((p.realized_pnl for p in positions), Decimal(0))
    unrealized = sum((p.unrealized_pnl for p in positions), Decimal(0))
    charges = sum((p.charges for p in positions), Decimal(0))
    return {
        "account": settings.account,
        "database": safe_url(settings.database_url),
        "broker": settings.broker,
        "running": lock_holder(settings.database_url, settings.account),
        "trading_state": state[0] if state else "RUNNING",
        "trading_state_reason": state[1] if state else None,
        "trading_state_since": state[2] if state else None,
        "orders": {status.value: n for status, n in counts.items()},
        "live_orders": sum(n for status, n in counts.items() if status not in TERMINAL_STATUSES),
        "open_positions": sum(1 for p in positions if not p.is_flat),
        "realized_pnl": realized,
        "unrealized_pnl": unrealized,
        "charges": charges,
        "net_pnl": realized + unrealized - charges,
        "last_reconciliation": log[-1] if log else None,
    }


def run_status(args: argparse.Namespace) -> int:
    with _store(args) as (settings, store):
        status = status_of(settings, store)
    if args.json:
        print(json.dumps(plain(status), indent=2))
        return 0
    out = console()
    running = f"yes ({status['running']})" if status["running"] else "no"
    out.print(f"[bold]account[/] {status['account']}  [bold]database[/] {status['database']}  "
              f"[bold]broker[/] {status['broker']}  [bold]OMS running[/] {running}")
    reason = f" ({status['trading_state_reason']})" if status["trading_state_reason"] else ""
    out.print(f"[bold]trading state[/] {status['trading_state']}{reason}")
    counts = "  ".join(f"{name} {n}" for name, n in status["orders"].items())
    out.print(f"[bold]orders[/] {counts}  (live {status['live_orders']})")
    out.print(f"[bold]positions open[/] {status['open_positions']}  [bold]P&L[/] realized {status['realized_pnl']}  "
              f"unrealized {status['unrealized_pnl']}  charges {status['charges']}  net {status['net_pnl']}")
    last = status["last_reconciliation"]
    if last:
        out.print(f"[bold]last reconciliation finding[/] {last['issue_type']} {last['symbol']} at {last['detected_at']}"
                  f" ({'resolved' if last['resolved'] else 'open'})")
    return 0


def run_orders(args: argparse.Namespace) -> int:
    statuses = [OrderStatus(s) for s in args.status] if args.status else None
    with _store(args) as (_, store):
        found = store.load_orders(statuses=statuses, strategy_id=args.strategy, limit=args.limit, newest_first=True)
    emit(args, "orders (newest first)", found, ORDER_COLUMNS)
    return 0


def run_positions(args: argparse.Namespace) -> int:
    with _store(args) as (_, store):
        found = [p for p in store.load_positions() if args.all or not p.is_flat]

    def as_json(p: Any) -> Any:
        return {**plain(p), "unrealized_pnl": str(p.unrealized_pnl), "net_pnl": str(p.net_pnl)}

    emit(args, "positions", found, [
        ("exchange", lambda p: p.exchange), ("symbol", lambda p: p.symbol), ("product", lambda p: p.product),
        ("qty", lambda p: p.quantity), ("avg", lambda p: p.average_price), ("last", lambda p: p.last_price),
        ("unrealized", lambda p: p.unrealized_pnl), ("realized", lambda p: p.realized_pnl),
        ("charges", lambda p: p.charges), ("net", lambda p: p.net_pnl),
    ], as_json)
    return 0


def run_trades(args: argparse.Namespace) -> int:
    with _store(args) as (_, store):
        if args.order is not None and store.load_order(args.order) is None:
            raise CommandFailed(f"no order {args.order} in account {store.account!r}")
        found = store.load_fills(order_id=args.order)[-args.limit:]

    def as_json(f: Any) -> Any:
        return {**plain(f), "charges_total": str(f.charges.total)}

    emit(args, "trades", found, [
        ("trade id", lambda f: f.trade_id), ("order", lambda f: f.order_id), ("symbol", lambda f: f.symbol),
        ("side", lambda f: f.side), ("qty", lambda f: f.quantity), ("price", lambda f: f.price),
        ("charges", lambda f: f.charges.total), ("at", lambda f: f.at),
    ], as_json)
    return 0


def _change(event: OrderEvent) -> str:
    start = event.from_status.value if event.from_status else "-"
    return f"{start} -> {event.to_status.value}"


def _details(event: OrderEvent) -> str:
    payload = dict(plain(event.payload))
    result = payload.pop("validation_result", None)
    parts = []
    if isinstance(result, dict):
        checks = result.get("checks") or []
        failed = [c for c in checks if not c.get("passed")]
        parts.append("; ".join(f"refused by {c.get('name')}: {c.get('reason')}" for c in failed)
                     or f"validated: {len(checks)} checks passed")
        if any(payload.get("reason") == c.get("reason") for c in failed):
            del payload["reason"]  # said once already
    if payload:
        parts.append(json.dumps(payload, separators=(",", ":"), sort_keys=True))
    return "  ".join(parts)


def run_audit(args: argparse.Namespace) -> int:
    with _store(args) as (_, store):
        order: Order | None = store.load_order(args.order_id)
        if order is None:
            raise CommandFailed(f"no order {args.order_id} in account {store.account!r}")
        events = store.load_events(order_id=args.order_id)
        fills = store.load_fills(order_id=args.order_id)
    if args.json:
        print(json.dumps(plain({"order": order, "events": events, "trades": fills}), indent=2))
        return 0
    out = console()
    out.print(f"[bold]order {order.order_id}[/] strategy {order.strategy_id}: {order.side.value} {order.quantity} "
              f"{order.exchange.value}:{order.symbol} {order.order_type.value} {order.product.value}"
              f"{' @ ' + str(order.price) if order.price is not None else ''} -> [bold]{order.status.value}[/] "
              f"filled {order.filled_quantity}{' avg ' + str(order.average_price) if order.average_price else ''}"
              f"{'  broker ' + order.broker_order_id if order.broker_order_id else ''}")
    emit(args, "events", events, [
        ("event", lambda e: e.id), ("at", lambda e: e.at), ("change", _change),
        ("details", _details),
    ])
    return 0
