"""The Prometheus alerting rules shipped in deploy/prometheus/oms_alerts.yml carry the same
thresholds as the OMS's own alerts (OMSAlertsConfig's defaults), over metrics it exports."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from domain.monitoring import OMSAlertsConfig
from observability.metrics import OMSMetrics
from observability.rules import render

RULES_FILE = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "oms_alerts.yml"
DEFAULTS = OMSAlertsConfig()


@pytest.fixture(scope="module")
def rules() -> dict[str, dict]:
    document = yaml.safe_load(RULES_FILE.read_text())
    (group,) = document["groups"]
    assert group["name"] == "kite-oms"
    return {rule["alert"]: rule for rule in group["rules"]}


def test_the_shipped_file_is_the_generators_output_for_the_defaults():
    assert RULES_FILE.read_text() == render(DEFAULTS), "regenerate: python -m observability.rules > deploy/prometheus/oms_alerts.yml"


def test_every_alert_of_the_oms_has_its_rules_at_each_severity(rules):
    by_kpi = {(rule["labels"]["kpi"], rule["labels"]["severity"]) for rule in rules.values()}
    assert by_kpi == {
        ("order_success_rate", "warning"), ("order_success_rate", "critical"),
        ("reconciliation_mismatch", "warning"), ("reconciliation_mismatch", "critical"),
        ("order_latency", "warning"), ("order_latency", "critical"),
        ("position_accuracy", "critical"),
    }
    assert all(rule["annotations"]["summary"] for rule in rules.values())


def test_the_rules_thresholds_are_the_guides(rules):
    assert "oms_order_success_ratio < 0.98 and oms_order_success_ratio >= 0.95" in rules["OMSOrderSuccessRateLow"]["expr"]
    assert "oms_order_success_ratio < 0.95" in rules["OMSOrderSuccessRateCritical"]["expr"]
    assert "oms_reconciliation_mismatches >= 1 and oms_reconciliation_mismatches < 5" in rules["OMSReconciliationMismatch"]["expr"]
    assert "oms_reconciliation_mismatches >= 5" in rules["OMSReconciliationMismatchCritical"]["expr"]
    warning, critical = rules["OMSOrderLatencyHigh"]["expr"], rules["OMSOrderLatencyCritical"]["expr"]
    assert "histogram_quantile(0.95," in warning and "> 0.5 and" in warning and "<= 1 and" in warning
    assert "histogram_quantile(0.95," in critical and "> 1 and" in critical
    assert "oms_position_accuracy_ratio < 0.99" in rules["OMSPositionAccuracyLow"]["expr"]
    # ... and the numbers are the config's, not copies that could drift.
    numbers = {float(n) for rule in rules.values() for n in re.findall(r"[<>]=? (\d+(?:\.\d+)?)", rule["expr"])}
    assert {DEFAULTS.order_success_rate_warning, DEFAULTS.order_success_rate_critical,
            float(DEFAULTS.reconciliation_mismatch_warning), float(DEFAULTS.reconciliation_mismatch_critical),
            DEFAULTS.order_latency_warning_ms / 1000, DEFAULTS.order_latency_critical_ms / 1000,
            DEFAULTS.position_accuracy_critical} <= numbers


def test_the_rules_stand_on_the_same_minimum_samples_as_the_oms(rules):
    assert f'oms_kpi_samples{{kpi="order_success_ratio"}} >= {DEFAULTS.min_orders}' in rules["OMSOrderSuccessRateLow"]["expr"]
    assert f"increase(oms_order_latency_seconds_count[300s])) >= {DEFAULTS.min_orders}" in rules["OMSOrderLatencyHigh"]["expr"]
    assert (f'oms_kpi_samples{{kpi="position_accuracy_ratio"}} >= {DEFAULTS.min_reconciliations}'
            in rules["OMSPositionAccuracyLow"]["expr"])


def test_every_metric_the_rules_read_is_exported(rules):
    metrics = OMSMetrics()
    metrics.placed_in(0.01)
    exported = {line.split("{")[0].split(" ")[0] for line in metrics.text().decode().splitlines() if not line.startswith("#")}
    read = {name for rule in rules.values() for name in re.findall(r"\boms_[a-z_]+", rule["expr"])}
    assert read and read <= exported, read - exported
