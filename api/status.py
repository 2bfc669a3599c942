"""What the live status page shows, read through the OMS handle: the trading state and
health, the latest orders, positions with P&L net of charges, the guide's five KPIs with
their targets and alert thresholds, the active alerts, and the P&L's recent course.

The page itself (``static/status.html`` and ``status.js``) holds no data: its script
reads ``/api/v1/status`` every second with the API key the operator gives it.
"""
from __future__ import annotations

import threading
from collections import deque
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from api.wire import plain

_STATIC = Path(__file__).with_name("static")
STATUS_PAGE = (_STATIC / "status.html").read_text(encoding="utf-8")
STATUS_SCRIPT = (_STATIC / "status.js").read_text(encoding="utf-8")
# The page runs only its own script, talks only to its own server, and cannot be framed.
CSP = ("default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

RECENT_ORDERS = 25


class PnlHistory:
    """The account's net P&L as the status was read, one point a second at most, the
    last hour of them (the page's chart). Kept by the API service, in memory."""

    def __init__(self, points: int = 3600, every: float = 1.0) -> None:
        self._points: deque[tuple[datetime, Decimal]] = deque(maxlen=points)
        self._every = every
        self._lock = threading.Lock()

    def note(self, at: datetime, net: Decimal) -> list[tuple[datetime, Decimal]]:
        with self._lock:
            if not self._points or (at - self._points[-1][0]).total_seconds() >= self._every:
                self._points.append((at, net))
            return list(self._points)


def _ratio(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def kpi_rows(kpis: Any, config: Any) -> list[dict[str, Any]]:
    """The five KPIs as the guide states them: value, target, and the thresholds its
    alerts fire at (OMSAlertsConfig)."""
    latency_ms = None if kpis.latency_p95_seconds is None else round(kpis.latency_p95_seconds * 1000, 3)
    return [
        {"name": "Order success rate", "metric": "oms_order_success_ratio", "value": _ratio(kpis.order_success_ratio),
         "unit": "ratio", "sample": kpis.placements, "target": "> 99.5%",
         "warning": config.order_success_rate_warning, "critical": config.order_success_rate_critical, "alert_below": True},
        {"name": "Order fill rate", "metric": "oms_order_fill_ratio", "value": _ratio(kpis.order_fill_ratio),
         "unit": "ratio", "sample": kpis.orders_ended, "target": "> 95%",
         "warning": None, "critical": None, "alert_below": True},
        {"name": "Reconciliation mismatches", "metric": "oms_reconciliation_issues_total", "value": kpis.reconciliation_mismatches,
         "unit": "count", "sample": kpis.reconciliations, "target": "0",
         "warning": config.reconciliation_mismatch_warning, "critical": config.reconciliation_mismatch_critical, "alert_below": False},
        {"name": "Order latency p95", "metric": "oms_order_latency_seconds", "value": latency_ms,
         "unit": "ms", "sample": kpis.latencies, "target": "< 100 ms",
         "warning": config.order_latency_warning_ms, "critical": config.order_latency_critical_ms, "alert_below": False,
         "p99": None if kpis.latency_p99_seconds is None else round(kpis.latency_p99_seconds * 1000, 3)},
        {"name": "Position accuracy", "metric": "oms_position_accuracy_ratio", "value": _ratio(kpis.position_accuracy_ratio),
         "unit": "ratio", "sample": kpis.reconciliations, "target": "100%",
         "warning": None, "critical": config.position_accuracy_critical, "alert_below": True},
    ]


def status_of(oms: Any, history: PnlHistory) -> dict[str, Any]:
    """The status page's document (blocking: run it off the event loop)."""
    at = datetime.now(timezone.utc)
    health = oms.health()
    positions = oms.get_positions()
    live = oms.get_active_orders()
    recent = oms.get_orders(limit=RECENT_ORDERS, newest_first=True)
    realized = sum((p.realized_pnl for p in positions), Decimal(0))
    unrealized = sum((p.unrealized_pnl for p in positions), Decimal(0))
    charges = sum((p.charges for p in positions), Decimal(0))
    net = realized + unrealized - charges
    course = history.note(at, net)
    return {
        "at": at.isoformat(),
        "account": oms.settings.account,
        "broker": oms.settings.broker,
        "trading_state": oms.trading_state.value,
        "health": plain(health),
        "pnl": {"realized": str(realized), "unrealized": str(unrealized), "charges": str(charges), "net": str(net)},
        "positions": [{**plain(p), "unrealized_pnl": str(p.unrealized_pnl), "net_pnl": str(p.net_pnl)}
                      for p in positions if not p.is_flat or p.realized_pnl or p.charges],
        "live_orders": len(live),
        "orders": plain(recent),
        "kpis": kpi_rows(oms.metrics.kpis(), oms.settings.alerts),
        "alerts": plain(oms.alerts),
        "pnl_history": [[when.isoformat(), str(value)] for when, value in course],
    }
