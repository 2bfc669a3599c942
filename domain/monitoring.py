"""The guide's five KPIs, the thresholds its alerts watch, and an alert's life: pure.

The KPIs, as this OMS defines them (README, "Monitoring"):

* order success rate: of the orders the OMS tried to place at the broker, the share the
  broker accepted (it gave the order an id). A pre-trade refusal is the OMS doing its job
  and is not counted; a broker rejection, a broker that could not be reached, an order
  that could not be recorded and was not sent, and an unsure order later found missing
  are failures. Counted when the placement's outcome is known.
* order fill rate: of the orders the broker accepted that have ended, the share that
  ended FILLED (a partly filled order that was cancelled did not fill).
* order latency: from the supervisor taking PlaceOrder to the broker's answer to the
  place (acknowledged, refused or timed out), as the placing caller is answered.
* reconciliation mismatches: the positions the last reconciliation found different from
  the broker's (and corrected); every finding is also counted by type, all day.
* position accuracy: the guide's "reconciliations with all_clear=True", as a share of
  the last ``position_accuracy_window`` passes.

Ratios and quantiles are over the last ``window_seconds`` (since start until the OMS has
run that long); with nothing to measure they are None.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class OMSAlertsConfig(BaseModel):
    """The guide's alert thresholds (OMS_GUIDE.md, Monitoring & Alerts), and how the
    KPIs they watch are measured. A setting of its own: ``alerts`` (``OMS_ALERTS`` as
    JSON, an ``[alerts]`` table in TOML, ``start_oms(alerts={...})``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_success_rate_warning: float = Field(default=0.98, gt=0, le=1)
    order_success_rate_critical: float = Field(default=0.95, gt=0, le=1)
    reconciliation_mismatch_warning: int = Field(default=1, ge=1)
    reconciliation_mismatch_critical: int = Field(default=5, ge=1)
    order_latency_warning_ms: float = Field(default=500, gt=0)
    order_latency_critical_ms: float = Field(default=1000, gt=0)
    position_accuracy_critical: float = Field(default=0.99, gt=0, le=1)

    latency_quantile: float = Field(default=0.95, gt=0, lt=1, description="the quantile of order latency the latency alert watches")
    window_seconds: float = Field(default=300, gt=0, le=86400, description="the window of the success rate, fill rate and latency")
    min_orders: int = Field(
        default=20, ge=1,
        description="placements (for the success rate) or latencies in the window below which their alerts stay quiet: "
        "with fewer, one broker rejection alone is several percent",
    )
    min_failures: int = Field(
        default=5, ge=1,
        description="failed placements in the window at which the success rate's critical alert speaks, however few "
        "orders there were: a trader placing a handful an hour still hears of an expired token or a refusing broker",
    )
    position_accuracy_window: int = Field(default=100, ge=1, description="reconciliation passes the position accuracy is taken over")
    min_reconciliations: int = Field(
        default=100, ge=1,
        description="passes in that window before the accuracy alert speaks: with fewer than 1/(1 - threshold), "
        "one pass with a mismatch is already below it, and that is the mismatch alert's to say",
    )
    evaluate_every: float = Field(default=5.0, gt=0, le=3600, description="seconds between evaluations of the alerts")

    @model_validator(mode="after")
    def _ordered(self) -> "OMSAlertsConfig":
        if self.order_success_rate_critical > self.order_success_rate_warning:
            raise ValueError("order_success_rate_critical must not be above order_success_rate_warning")
        if self.reconciliation_mismatch_critical < self.reconciliation_mismatch_warning:
            raise ValueError("reconciliation_mismatch_critical must not be below reconciliation_mismatch_warning")
        if self.order_latency_critical_ms < self.order_latency_warning_ms:
            raise ValueError("order_latency_critical_ms must not be below order_latency_warning_ms")
        return self


# --- the figures ------------------------------------------------------------------------

# Upper bounds (seconds) of the latency histogram: the guide's target (100 ms) and both
# thresholds (500 ms, 1 s) are bounds, so a quantile is never interpolated across them.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0,
)


@dataclass(frozen=True, slots=True)
class OrderTotals:
    """Counts since start, as the counters hold them at one moment."""

    accepted: int = 0
    """placements the broker accepted"""
    not_accepted: int = 0
    """placements that failed: broker rejection, unreachable, not recorded, never found"""
    filled: int = 0
    """orders the broker accepted that ended FILLED"""
    ended_unfilled: int = 0
    """... that ended otherwise (CANCELLED, REJECTED, FAILED)"""
    latency_buckets: tuple[int, ...] = ()
    """cumulative count of latencies at or below each bound of LATENCY_BUCKETS, then +Inf"""

    def minus(self, earlier: "OrderTotals") -> "OrderTotals":
        """What happened between ``earlier`` and these (counters only grow)."""
        before = earlier.latency_buckets or (0,) * len(self.latency_buckets)
        return OrderTotals(
            self.accepted - earlier.accepted,
            self.not_accepted - earlier.not_accepted,
            self.filled - earlier.filled,
            self.ended_unfilled - earlier.ended_unfilled,
            tuple(now - then for now, then in zip(self.latency_buckets, before, strict=True)),
        )


def ratio(part: int, whole: int) -> float | None:
    """part / whole, or None when there is nothing to measure."""
    return part / whole if whole > 0 else None


def bucket_quantile(q: float, bounds: Sequence[float], cumulative: Sequence[int]) -> float | None:
    """The ``q``-quantile of a histogram, as Prometheus's ``histogram_quantile`` takes it:
    linear within the bucket that holds it (from 0 in the first); a quantile in the +Inf
    bucket is the highest finite bound. ``cumulative`` has one count per bound, then the
    +Inf count (the total). None when the histogram is empty."""
    if len(cumulative) != len(bounds) + 1:
        raise ValueError(f"cumulative: {len(bounds) + 1} counts expected (bounds and +Inf), got {len(cumulative)}")
    total = cumulative[-1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0
    for bound, count in zip(bounds, cumulative, strict=False):
        if count >= rank:
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return bounds[-1] if bounds else None


@dataclass(frozen=True, slots=True)
class Kpis:
    """The five KPIs at one moment, with the sample each stands on."""

    order_success_ratio: float | None
    placements: int
    order_fill_ratio: float | None
    orders_ended: int
    latency_p95_seconds: float | None
    latency_p99_seconds: float | None
    latency_watched_seconds: float | None
    """the ``latency_quantile`` the latency alert watches"""
    latencies: int
    reconciliation_mismatches: int
    """positions found different from the broker's by the last pass"""
    position_accuracy_ratio: float | None
    reconciliations: int
    """passes the accuracy is taken over"""


def kpis(
    window: OrderTotals, last_mismatches: int, passes: Sequence[bool], config: OMSAlertsConfig,
) -> Kpis:
    """The KPIs from what happened in the window, the last reconciliation's count of
    differences and the latest passes (True: all clear)."""
    buckets = window.latency_buckets
    latencies = buckets[-1] if buckets else 0

    def quantile(q: float) -> float | None:
        return bucket_quantile(q, LATENCY_BUCKETS, buckets) if buckets else None

    placements = window.accepted + window.not_accepted
    ended = window.filled + window.ended_unfilled
    return Kpis(
        order_success_ratio=ratio(window.accepted, placements),
        placements=placements,
        order_fill_ratio=ratio(window.filled, ended),
        orders_ended=ended,
        latency_p95_seconds=quantile(0.95),
        latency_p99_seconds=quantile(0.99),
        latency_watched_seconds=quantile(config.latency_quantile),
        latencies=latencies,
        reconciliation_mismatches=last_mismatches,
        position_accuracy_ratio=ratio(sum(1 for clear in passes if clear), len(passes)),
        reconciliations=len(passes),
    )


# --- alerts -----------------------------------------------------------------------------

class Severity(str, Enum):
    WARNING = "warning"
    CRITICAL = "critical"


class AlertName(str, Enum):
    ORDER_SUCCESS_RATE = "order_success_rate"
    RECONCILIATION_MISMATCH = "reconciliation_mismatch"
    ORDER_LATENCY = "order_latency"
    POSITION_ACCURACY = "position_accuracy"


@dataclass(frozen=True, slots=True)
class Condition:
    """A threshold crossed now: the alert it raises, with its figures."""

    name: AlertName
    severity: Severity
    summary: str
    value: float
    threshold: float


def _percent(value: float) -> str:
    return f"{value * 100:.2f}%"


def conditions(figures: Kpis, config: OMSAlertsConfig) -> list[Condition]:
    """Every threshold crossed now, at most one per alert (the more severe)."""
    found: list[Condition] = []
    success = figures.order_success_ratio
    failures = 0 if success is None else round(figures.placements * (1 - success))
    if success is not None and (figures.placements >= config.min_orders or failures >= config.min_failures):
        for severity, limit in ((Severity.CRITICAL, config.order_success_rate_critical),
                                (Severity.WARNING, config.order_success_rate_warning)):
            if severity is Severity.WARNING and figures.placements < config.min_orders:
                break  # a small sample speaks only when it is critical
            if success < limit:
                found.append(Condition(
                    AlertName.ORDER_SUCCESS_RATE, severity,
                    f"order success rate {_percent(success)} over the last {figures.placements} placements "
                    f"is below {_percent(limit)}",
                    success, limit,
                ))
                break
    mismatches = figures.reconciliation_mismatches
    for severity, count in ((Severity.CRITICAL, config.reconciliation_mismatch_critical),
                            (Severity.WARNING, config.reconciliation_mismatch_warning)):
        if mismatches >= count:
            found.append(Condition(
                AlertName.RECONCILIATION_MISMATCH, severity,
                f"the last reconciliation found {mismatches} position(s) differing from the broker's "
                f"(alert at {count} or more)",
                mismatches, count,
            ))
            break
    latency = figures.latency_watched_seconds
    if latency is not None and figures.latencies >= config.min_orders:
        for severity, limit_ms in ((Severity.CRITICAL, config.order_latency_critical_ms),
                                   (Severity.WARNING, config.order_latency_warning_ms)):
            if latency * 1000 > limit_ms:
                found.append(Condition(
                    AlertName.ORDER_LATENCY, severity,
                    f"order latency p{config.latency_quantile * 100:g} {latency * 1000:.0f} ms over the last "
                    f"{figures.latencies} orders is above {limit_ms:g} ms",
                    latency, limit_ms / 1000,
                ))
                break
    accuracy = figures.position_accuracy_ratio
    if accuracy is not None and figures.reconciliations >= config.min_reconciliations:
        if accuracy < config.position_accuracy_critical:
            found.append(Condition(
                AlertName.POSITION_ACCURACY, Severity.CRITICAL,
                f"position accuracy {_percent(accuracy)} (all-clear reconciliations of the last "
                f"{figures.reconciliations}) is below {_percent(config.position_accuracy_critical)}",
                accuracy, config.position_accuracy_critical,
            ))
    return found


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert that fired, and while it holds, its latest figures."""

    name: AlertName
    severity: Severity
    summary: str
    value: float
    threshold: float
    since: datetime

    @property
    def key(self) -> tuple[AlertName, Severity]:
        return self.name, self.severity


@dataclass(frozen=True, slots=True)
class AlertChanges:
    """One evaluation's outcome: the alerts active now, and what to tell the sinks."""

    active: Mapping[tuple[AlertName, Severity], Alert]
    fired: tuple[Alert, ...] = ()
    resolved: tuple[Alert, ...] = field(default=())


def step(active: Mapping[tuple[AlertName, Severity], Alert], now_holding: Sequence[Condition], at: datetime) -> AlertChanges:
    """An alert fires once when its condition (name and severity) begins to hold, and is
    resolved once when it stops holding; while it holds, only its figures are updated.
    A warning that becomes critical resolves the warning and fires the critical."""
    holding = {(c.name, c.severity): c for c in now_holding}
    nxt: dict[tuple[AlertName, Severity], Alert] = {}
    fired: list[Alert] = []
    for key, condition in holding.items():
        before = active.get(key)
        if before is None:
            alert = Alert(condition.name, condition.severity, condition.summary, condition.value, condition.threshold, at)
            fired.append(alert)
        else:
            alert = replace(before, summary=condition.summary, value=condition.value)
        nxt[key] = alert
    resolved = tuple(alert for key, alert in active.items() if key not in holding)
    return AlertChanges(nxt, tuple(fired), resolved)
