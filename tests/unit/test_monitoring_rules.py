"""The KPIs' arithmetic, the guide's thresholds and an alert's life (domain/monitoring.py),
and the counters they are read from (observability/metrics.py)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from domain.enums import OrderStatus as S
from domain.monitoring import (
    LATENCY_BUCKETS,
    AlertName,
    Kpis,
    OMSAlertsConfig,
    OrderTotals,
    Severity,
    bucket_quantile,
    conditions,
    kpis,
    step,
)
from observability.metrics import OMSMetrics

T0 = datetime(2026, 3, 2, 4, 0, tzinfo=timezone.utc)
CONFIG = OMSAlertsConfig()


def figures(**changes) -> Kpis:
    """KPIs where everything is well, with enough samples for every alert to speak."""
    base = dict(
        order_success_ratio=1.0, placements=100, order_fill_ratio=1.0, orders_ended=100,
        latency_p95_seconds=0.02, latency_p99_seconds=0.03, latency_watched_seconds=0.02, latencies=100,
        reconciliation_mismatches=0, position_accuracy_ratio=1.0, reconciliations=100,
    )
    base.update(changes)
    return Kpis(**base)


def names(found) -> list[tuple[str, str]]:
    return [(c.name.value, c.severity.value) for c in found]


# --------------------------------------------------------------------------- the guide's numbers


def test_alert_config_defaults_are_the_guides_thresholds():
    assert (CONFIG.order_success_rate_warning, CONFIG.order_success_rate_critical) == (0.98, 0.95)
    assert (CONFIG.reconciliation_mismatch_warning, CONFIG.reconciliation_mismatch_critical) == (1, 5)
    assert (CONFIG.order_latency_warning_ms, CONFIG.order_latency_critical_ms) == (500, 1000)
    assert CONFIG.position_accuracy_critical == 0.99


def test_alert_config_refuses_a_critical_threshold_milder_than_its_warning():
    with pytest.raises(ValidationError, match="order_success_rate_critical"):
        OMSAlertsConfig(order_success_rate_warning=0.9, order_success_rate_critical=0.95)
    with pytest.raises(ValidationError, match="order_latency_critical_ms"):
        OMSAlertsConfig(order_latency_warning_ms=800, order_latency_critical_ms=700)
    with pytest.raises(ValidationError, match="extra"):
        OMSAlertsConfig(success_warning=0.9)


# --------------------------------------------------------------------------- KPI arithmetic


def test_quantile_of_a_histogram_is_interpolated_within_its_bucket_like_prometheus():
    bounds = (0.1, 0.5, 1.0)
    # 10 at or below 0.1, 10 more up to 0.5, none above.
    assert bucket_quantile(0.5, bounds, (10, 20, 20, 20)) == pytest.approx(0.1)
    assert bucket_quantile(0.75, bounds, (10, 20, 20, 20)) == pytest.approx(0.1 + 0.4 * 0.5)
    assert bucket_quantile(0.25, bounds, (10, 20, 20, 20)) == pytest.approx(0.05)
    assert bucket_quantile(0.99, bounds, (0, 0, 0, 5)) == 1.0  # all in +Inf: the highest bound
    assert bucket_quantile(0.95, bounds, (0, 0, 0, 0)) is None
    with pytest.raises(ValueError, match="4 counts expected"):
        bucket_quantile(0.5, bounds, (1, 2, 3))


def test_kpis_over_a_window_of_counts():
    # 97 placements accepted, 3 not; 40 filled of 50 ended; 100 latencies: 96 within 50 ms, 4 at 600 ms.
    cumulative = tuple(96 if bound >= 0.05 else 0 for bound in LATENCY_BUCKETS)
    cumulative = tuple(c + (4 if bound >= 0.75 else 0) for c, bound in zip(cumulative, LATENCY_BUCKETS)) + (100,)
    window = OrderTotals(accepted=97, not_accepted=3, filled=40, ended_unfilled=10, latency_buckets=cumulative)

    k = kpis(window, last_mismatches=2, passes=(True,) * 9 + (False,), config=CONFIG)

    assert (k.order_success_ratio, k.placements) == (pytest.approx(0.97), 100)
    assert (k.order_fill_ratio, k.orders_ended) == (pytest.approx(0.8), 50)
    assert 0.5 < k.latency_p99_seconds <= 0.75  # in the bucket of the slow ones
    assert k.latency_p95_seconds <= 0.05
    assert (k.reconciliation_mismatches, k.position_accuracy_ratio, k.reconciliations) == (2, pytest.approx(0.9), 10)


def test_kpis_with_nothing_to_measure_are_none_not_zero():
    k = kpis(OrderTotals(latency_buckets=(0,) * (len(LATENCY_BUCKETS) + 1)), 0, (), CONFIG)
    assert (k.order_success_ratio, k.order_fill_ratio, k.latency_p95_seconds, k.position_accuracy_ratio) == (None,) * 4


def test_totals_minus_an_earlier_snapshot_is_what_happened_between():
    later = OrderTotals(10, 2, 5, 1, (3, 7))
    earlier = OrderTotals(4, 1, 5, 0, (1, 2))
    assert later.minus(earlier) == OrderTotals(6, 1, 0, 1, (2, 5))


# --------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize("success, expected", [
    (0.99, []), (0.98, []), (0.979, [("order_success_rate", "warning")]),
    (0.95, [("order_success_rate", "warning")]), (0.949, [("order_success_rate", "critical")]),
])
def test_success_rate_warns_below_98_percent_and_is_critical_below_95(success, expected):
    assert names(conditions(figures(order_success_ratio=success), CONFIG)) == expected


def test_success_rate_stays_quiet_on_too_few_placements_with_few_failures():
    # 19 placements, 4 failed: 79% but four failures alone say little.
    assert conditions(figures(order_success_ratio=15 / 19, placements=CONFIG.min_orders - 1), CONFIG) == []
    assert conditions(figures(order_success_ratio=0.5, placements=8), CONFIG) == []  # 4 of 8 failed


@pytest.mark.parametrize("placed, failed, expected", [
    (8, 8, [("order_success_rate", "critical")]),   # an expired token: every order of a quiet hour fails
    (5, 5, [("order_success_rate", "critical")]),
    (10, 5, [("order_success_rate", "critical")]),
    (19, 1, []),                                     # 94.7%, one failure: a small sample is only heard when critical
    (19, 4, []),
])
def test_enough_failures_are_critical_however_few_the_orders(placed, failed, expected):
    assert names(conditions(figures(order_success_ratio=(placed - failed) / placed, placements=placed), CONFIG)) == expected


@pytest.mark.parametrize("mismatches, expected", [
    (0, []), (1, [("reconciliation_mismatch", "warning")]), (4, [("reconciliation_mismatch", "warning")]),
    (5, [("reconciliation_mismatch", "critical")]),
])
def test_any_mismatch_warns_and_five_are_critical(mismatches, expected):
    assert names(conditions(figures(reconciliation_mismatches=mismatches), CONFIG)) == expected


@pytest.mark.parametrize("seconds, expected", [
    (0.5, []), (0.501, [("order_latency", "warning")]), (1.0, [("order_latency", "warning")]),
    (1.001, [("order_latency", "critical")]),
])
def test_latency_warns_above_500_ms_and_is_critical_above_1000(seconds, expected):
    assert names(conditions(figures(latency_watched_seconds=seconds), CONFIG)) == expected


def test_position_accuracy_is_critical_below_99_percent_once_the_window_can_say_so():
    assert names(conditions(figures(position_accuracy_ratio=0.98), CONFIG)) == [("position_accuracy", "critical")]
    assert conditions(figures(position_accuracy_ratio=0.99), CONFIG) == []
    # Fewer passes than 1/(1 - 0.99): one bad pass is the mismatch alert's, not this one's.
    assert conditions(figures(position_accuracy_ratio=0.9, reconciliations=10), CONFIG) == []


def test_each_condition_says_its_figures():
    (found,) = conditions(figures(order_success_ratio=0.9, placements=40), CONFIG)
    assert "90.00%" in found.summary and "40 placements" in found.summary and "95.00%" in found.summary
    assert (found.value, found.threshold) == (0.9, 0.95)


# --------------------------------------------------------------------------- an alert's life


def test_an_alert_fires_once_while_its_condition_holds_and_is_resolved_once_when_it_ends():
    mismatch = conditions(figures(reconciliation_mismatches=1), CONFIG)
    first = step({}, mismatch, T0)
    assert [a.key for a in first.fired] == [(AlertName.RECONCILIATION_MISMATCH, Severity.WARNING)]
    again = step(first.active, mismatch, T0 + timedelta(seconds=5))
    assert again.fired == () and again.resolved == ()
    assert again.active == first.active  # same alert, same since
    over = step(again.active, [], T0 + timedelta(seconds=10))
    assert [a.key for a in over.resolved] == [(AlertName.RECONCILIATION_MISMATCH, Severity.WARNING)]
    assert over.active == {} and over.fired == ()
    assert step(over.active, [], T0 + timedelta(seconds=15)) == step({}, [], T0)


def test_a_warning_that_becomes_critical_resolves_the_warning_and_fires_the_critical():
    warning = step({}, conditions(figures(reconciliation_mismatches=2), CONFIG), T0)
    critical = step(warning.active, conditions(figures(reconciliation_mismatches=7), CONFIG), T0 + timedelta(seconds=5))
    assert [a.severity for a in critical.fired] == [Severity.CRITICAL]
    assert [a.severity for a in critical.resolved] == [Severity.WARNING]
    assert list(critical.active) == [(AlertName.RECONCILIATION_MISMATCH, Severity.CRITICAL)]


def test_while_an_alert_holds_its_figures_follow_the_kpi():
    first = step({}, conditions(figures(order_success_ratio=0.97), CONFIG), T0)
    later = step(first.active, conditions(figures(order_success_ratio=0.96), CONFIG), T0 + timedelta(seconds=5))
    (alert,) = later.active.values()
    assert alert.value == 0.96 and alert.since == T0 and later.fired == ()


# --------------------------------------------------------------------------- the counters


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_metrics_count_an_orders_transitions_into_the_kpis():
    metrics = OMSMetrics(clock=Clock())
    # accepted, then filled
    for old, new in ((None, S.PENDING), (S.PENDING, S.SUBMITTED), (S.SUBMITTED, S.OPEN), (S.OPEN, S.FILLED)):
        metrics.order_moved(old, new)
    # rejected by the broker at once
    for old, new in ((None, S.PENDING), (S.PENDING, S.SUBMITTED), (S.SUBMITTED, S.REJECTED)):
        metrics.order_moved(old, new)
    # accepted, then rejected by the broker's risk checks (as Kite's RMS does)
    for old, new in ((None, S.PENDING), (S.PENDING, S.SUBMITTED), (S.SUBMITTED, S.OPEN), (S.OPEN, S.REJECTED)):
        metrics.order_moved(old, new)
    metrics.refused("risk_per_trade")  # a pre-trade refusal: not a placement
    metrics.order_moved(S.OPEN, S.OPEN)  # a fill or a modification in place: no transition

    k = metrics.kpis()
    assert (k.order_success_ratio, k.placements) == (pytest.approx(1 / 3), 3)
    assert (k.order_fill_ratio, k.orders_ended) == (pytest.approx(1 / 3), 3)
    text = metrics.text().decode()
    assert 'oms_orders_total{status="REJECTED"} 3.0' in text
    assert 'oms_order_rejections_total{check="broker"} 2.0' in text
    assert 'oms_order_rejections_total{check="risk_per_trade"} 1.0' in text


def test_kpis_forget_what_happened_before_the_window():
    clock = Clock()
    metrics = OMSMetrics(OMSAlertsConfig(window_seconds=60), clock=clock)
    for _ in range(5):
        metrics.order_moved(S.SUBMITTED, S.FAILED)
    assert metrics.kpis().order_success_ratio == 0.0
    for _ in range(14):  # 70 s go by, the KPIs read every 5 s (the alerter's tick)
        clock.now += 5
        metrics.kpis()
    metrics.order_moved(S.SUBMITTED, S.OPEN)
    k = metrics.kpis()
    assert (k.order_success_ratio, k.placements) == (1.0, 1)


def test_latency_quantiles_come_from_the_histogram():
    metrics = OMSMetrics(clock=Clock())
    for _ in range(98):
        metrics.placed_in(0.004)  # in (2.5 ms, 5 ms]
    for _ in range(2):
        metrics.placed_in(2.0)  # in (1 s, 2.5 s]
    k = metrics.kpis()
    assert k.latencies == 100
    assert k.latency_p95_seconds == pytest.approx(0.0025 + 0.0025 * 95 / 98)
    assert k.latency_p99_seconds == pytest.approx(1.0 + 1.5 * (99 - 98) / 2)
    assert k.latency_watched_seconds == k.latency_p95_seconds


def test_reconciliation_passes_make_the_accuracy_and_the_mismatch_count():
    metrics = OMSMetrics(OMSAlertsConfig(position_accuracy_window=4, min_reconciliations=4), clock=Clock())
    metrics.reconciled(True, 0, [])
    metrics.reconciled(False, 2, ["QUANTITY_MISMATCH", "UNKNOWN_POSITION", "UNTAGGED_ORDER"])
    k = metrics.kpis()
    assert (k.reconciliation_mismatches, k.position_accuracy_ratio, k.reconciliations) == (2, 0.5, 2)
    for _ in range(4):  # the window keeps the last four passes
        metrics.reconciled(True, 0, [])
    k = metrics.kpis()
    assert (k.reconciliation_mismatches, k.position_accuracy_ratio, k.reconciliations) == (0, 1.0, 4)
    assert 'oms_reconciliation_issues_total{type="QUANTITY_MISMATCH"} 1.0' in metrics.text().decode()


def test_two_oms_metrics_never_share_a_registry():
    one, two = OMSMetrics(), OMSMetrics()
    one.order_moved(S.SUBMITTED, S.OPEN)
    assert one.kpis().placements == 1 and two.kpis().placements == 0
