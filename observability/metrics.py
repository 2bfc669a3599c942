"""OMSMetrics: one OMS's Prometheus metrics, in a registry of its own.

Every update is an in-process counter increment (prometheus-client's, behind a lock
of its own): no message, no database round trip. The actors that see a fact count it:
the order trackers their orders' transitions and latencies, the supervisor refusals
and live orders, the gateway broker errors, Kite's rate gates their waits, the journal
its commits, the reconciler its passes. The five KPIs are computed from those counters
when read (a scrape, the alerter's tick), over ``OMSAlertsConfig.window_seconds``.

Names (README, "Monitoring"): every metric starts with ``oms_``.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from domain.enums import OrderStatus
from domain.monitoring import LATENCY_BUCKETS, Alert, Kpis, OMSAlertsConfig, OrderTotals, kpis

S = OrderStatus
_TERMINAL = (S.FILLED, S.CANCELLED, S.REJECTED, S.FAILED)
_SENT = (S.SUBMITTED, S.OPEN)  # an order in one of these has been handed to the broker
DB_WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
# A snapshot of the counters is kept at most this often (seconds) for the KPI window.
SNAPSHOT_EVERY = 5.0


class OMSMetrics:
    """One OMS's metrics. Thread-safe: every actor of the OMS counts into it."""

    def __init__(self, config: OMSAlertsConfig | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or OMSAlertsConfig()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._clock = clock
        self.orders = Counter("oms_orders", "Orders that reached each status (refusals included)", ["status"], registry=r)
        self.placements = Counter(
            "oms_order_placements",
            "Orders the OMS tried to place at the broker, by the first outcome: accepted (the broker gave it an id), "
            "rejected (by the broker), failed (unreachable, not recorded so not sent, or never found by its tag)",
            ["outcome"], registry=r,
        )
        self.rejected_after_acceptance = Counter(
            "oms_order_rejected_after_acceptance", "Orders the broker accepted, then rejected (Kite's RMS checks answer so)",
            registry=r,
        )
        self.ended = Counter(
            "oms_orders_ended", "Orders sent to the broker that ended, by their final status", ["status"], registry=r,
        )
        self.rejections = Counter(
            "oms_order_rejections", "Orders refused, by the check that refused them ('broker': by the broker)", ["check"], registry=r,
        )
        self.latency = Histogram(
            "oms_order_latency_seconds",
            "From the supervisor taking PlaceOrder to the broker's answer to the place (acknowledged, refused or timed out)",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.fills = Counter("oms_fills", "Fills recorded (each broker trade once)", registry=r)
        self.broker_errors = Counter(
            "oms_broker_errors", "Broker calls that failed other than by a refusal, by call and kind", ["operation", "kind"], registry=r,
        )
        self.rate_limit_waits = Counter(
            "oms_rate_limit_waits", "Broker requests that waited for the broker's rate limits, by family", ["family"], registry=r,
        )
        self.rate_limit_wait_seconds = Histogram(
            "oms_rate_limit_wait_seconds", "How long a request waited for the broker's rate limits", ["family"],
            buckets=WAIT_BUCKETS, registry=r,
        )
        self.rate_limit_refusals = Counter(
            "oms_rate_limit_refusals", "Broker requests refused because the rate limits would hold them too long", ["family"], registry=r,
        )
        self.live_orders = Gauge("oms_live_orders", "Orders being tracked (not yet ended)", registry=r)
        self.db_write_seconds = Histogram(
            "oms_db_write_seconds", "Database write latency: one group commit of the journal", buckets=DB_WRITE_BUCKETS, registry=r,
        )
        self.reconciliations = Counter(
            "oms_reconciliations", "Reconciliation passes, by result: all_clear, issues, failed", ["result"], registry=r,
        )
        self.reconciliation_issues = Counter(
            "oms_reconciliation_issues", "Reconciliation findings (reconciliation_log rows), by type", ["type"], registry=r,
        )
        self.reconciliation_mismatches = Gauge(
            "oms_reconciliation_mismatches", "Positions the last reconciliation found differing from the broker's", registry=r,
        )
        self.alerts_firing = Gauge("oms_alerts_firing", "Alerts firing now (1), by alert and severity", ["alert", "severity"], registry=r)
        # Children bound once: a label look-up per order would cost a lock and a dict.
        self._status = {status: self.orders.labels(status.value) for status in S}
        self._outcome = {outcome: self.placements.labels(outcome) for outcome in ("accepted", "rejected", "failed")}
        self._ended = {status: self.ended.labels(status.value) for status in _TERMINAL}
        self._broker_rejections = self.rejections.labels("broker")
        for name in ("all_clear", "issues", "failed"):
            self.reconciliations.labels(name)
        self._passes: deque[bool] = deque(maxlen=self.config.position_accuracy_window)
        self._lock = threading.Lock()
        self._snapshots: deque[tuple[float, OrderTotals]] = deque([(clock(), OrderTotals(latency_buckets=(0,) * (len(LATENCY_BUCKETS) + 1)))])
        self._firing: set[tuple[str, str]] = set()
        r.register(_KpiCollector(self))

    # --- counting (called by the actors) ------------------------------------------------

    def order_moved(self, old: OrderStatus | None, new: OrderStatus) -> None:
        """An order's committed transition (``old`` None: just created)."""
        if old is new:
            return
        self._status[new].inc()
        if old is S.SUBMITTED:
            self._outcome["rejected" if new is S.REJECTED else "failed" if new is S.FAILED else "accepted"].inc()
        elif old is S.OPEN and new is S.REJECTED:
            self.rejected_after_acceptance.inc()
        if new in _TERMINAL and old in _SENT:
            self._ended[new].inc()
            if new is S.REJECTED:
                self._broker_rejections.inc()

    def not_sent(self) -> None:
        """An order that passed its checks could not be recorded, so was never sent."""
        self._status[S.FAILED].inc()
        self._outcome["failed"].inc()

    def refused(self, check: str) -> None:
        """An order refused before the broker (a pre-trade check, the trading state)."""
        self._status[S.REJECTED].inc()
        self.rejections.labels(check).inc()

    def placed_in(self, seconds: float) -> None:
        self.latency.observe(seconds)

    def filled(self) -> None:
        self.fills.inc()

    def broker_error(self, operation: str, kind: str) -> None:
        self.broker_errors.labels(operation, kind).inc()

    def rate_limited(self, family: str, waited: float, refused: bool) -> None:
        """A rate gate's news: a request waited ``waited`` seconds (then went, or was refused)."""
        if waited > 0:
            self.rate_limit_waits.labels(family).inc()
            self.rate_limit_wait_seconds.labels(family).observe(waited)
        if refused:
            self.rate_limit_refusals.labels(family).inc()

    def tracking(self, live: int) -> None:
        self.live_orders.set(live)

    def wrote(self, seconds: float) -> None:
        self.db_write_seconds.observe(seconds)

    def reconciled(self, all_clear: bool, differing: int, findings: Iterable[str]) -> None:
        """One pass ended: all clear or not, the positions it found different, and the
        type of every finding it recorded."""
        self.reconciliations.labels("all_clear" if all_clear else "issues").inc()
        for issue in findings:
            self.reconciliation_issues.labels(issue).inc()
        self.reconciliation_mismatches.set(differing)
        with self._lock:
            self._passes.append(all_clear)

    def finding(self, issue: str) -> None:
        """A finding recorded outside the tally of a pass (a missed fill)."""
        self.reconciliation_issues.labels(issue).inc()

    def reconciliation_failed(self) -> None:
        self.reconciliations.labels("failed").inc()

    def firing(self, alerts: Iterable[Alert]) -> None:
        """The alerts active now (the alerter's)."""
        now = {(a.name.value, a.severity.value) for a in alerts}
        with self._lock:
            for gone in self._firing - now:
                self.alerts_firing.labels(*gone).set(0)
            for key in now:
                self.alerts_firing.labels(*key).set(1)
            self._firing = now

    # --- reading ----------------------------------------------------------------------------

    def order_totals(self) -> OrderTotals:
        """The counters the KPIs come from, as they stand."""
        # Placements before latencies: a tracker times the broker's answer before it
        # counts the placement, so this order never shows a placement without its latency.
        outcome = _by_label(self.placements, "outcome")
        ended = _by_label(self.ended, "status")
        [family] = self.latency.collect()
        buckets = tuple(int(s.value) for s in family.samples if s.name.endswith("_bucket"))
        return OrderTotals(
            accepted=int(outcome.get("accepted", 0) - _value(self.rejected_after_acceptance)),
            not_accepted=int(outcome.get("rejected", 0) + outcome.get("failed", 0) + _value(self.rejected_after_acceptance)),
            filled=int(ended.get(S.FILLED.value, 0)),
            ended_unfilled=int(sum(v for k, v in ended.items() if k != S.FILLED.value)),
            latency_buckets=buckets,
        )

    def kpis(self) -> Kpis:
        """The five KPIs now: success, fill and latency over the window, mismatches of the
        last pass, accuracy over the last passes."""
        now = self._clock()
        totals = self.order_totals()
        window = self.config.window_seconds
        with self._lock:
            snapshots = self._snapshots
            if now - snapshots[-1][0] >= min(SNAPSHOT_EVERY, window / 10):
                snapshots.append((now, totals))
            # The baseline: the newest snapshot at least a window old (until the OMS has
            # run that long, the first one: since start).
            while len(snapshots) > 1 and now - snapshots[1][0] >= window:
                snapshots.popleft()
            baseline = snapshots[0][1]
            passes = tuple(self._passes)
        mismatches = int(_value(self.reconciliation_mismatches))
        return kpis(totals.minus(baseline), mismatches, passes, self.config)

    def text(self) -> bytes:
        """The Prometheus text exposition of every metric (what ``/metrics`` serves)."""
        return generate_latest(self.registry)


def _value(metric: Any) -> float:
    for family in metric.collect():
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                return float(sample.value)
    return 0.0


def _by_label(counter: Counter, label: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                values[sample.labels[label]] = values.get(sample.labels[label], 0.0) + sample.value
    return values


class _KpiCollector(Collector):
    """The five KPIs' gauges (and the sample each stands on), computed at each scrape.
    NaN: nothing to measure yet in the window."""

    def __init__(self, metrics: OMSMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Sequence[GaugeMetricFamily]:
        return list(self._families(None))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return self._families(self._metrics.kpis())

    def _families(self, figures: Kpis | None) -> Iterator[GaugeMetricFamily]:
        def gauge(name: str, text: str, value: float | None) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, text)
            if figures is not None:
                family.add_metric([], float("nan") if value is None else value)
            return family

        window = f"{self._metrics.config.window_seconds:g} s"
        f = figures
        yield gauge("oms_order_success_ratio",
                    f"KPI: placements the broker accepted (and did not reject later) / placements, over the last {window}",
                    f and f.order_success_ratio)
        yield gauge("oms_order_fill_ratio",
                    f"KPI: orders sent to the broker that ended FILLED / orders sent that ended, over the last {window}",
                    f and f.order_fill_ratio)
        yield gauge("oms_position_accuracy_ratio",
                    "KPI: reconciliation passes that were all clear / passes, over the last position_accuracy_window passes",
                    f and f.position_accuracy_ratio)
        quantiles = GaugeMetricFamily(
            "oms_order_latency_quantile_seconds", f"KPI: order latency quantiles over the last {window}", labels=["quantile"],
        )
        samples = GaugeMetricFamily(
            "oms_kpi_samples", f"What each KPI stands on: placements, orders ended and latencies over the last {window}; "
            "reconciliation passes in the accuracy window", labels=["kpi"],
        )
        if f is not None:
            for q, value in (("0.95", f.latency_p95_seconds), ("0.99", f.latency_p99_seconds)):
                quantiles.add_metric([q], float("nan") if value is None else value)
            for kpi, count in (("order_success_ratio", f.placements), ("order_fill_ratio", f.orders_ended),
                               ("order_latency", f.latencies), ("position_accuracy_ratio", f.reconciliations)):
                samples.add_metric([kpi], count)
        yield quantiles
        yield samples
