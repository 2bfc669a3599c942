"""During the demo (python run_oms.py), a scrape of its metrics port shows the guide's
five KPIs with sensible values, and the demo ends with them in its summary."""
from __future__ import annotations

import re
import subprocess
import sys
import threading
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_demo import DEMO_TIMEOUT_S, RUN_OMS, clean_env

KPIS = ("oms_order_success_ratio", "oms_order_fill_ratio", "oms_position_accuracy_ratio", "oms_reconciliation_mismatches")


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def test_a_scrape_during_the_demo_shows_the_five_kpis(tmp_path):
    demo = subprocess.Popen(
        [sys.executable, str(RUN_OMS), "--quiet", "--metrics-port", "0", "--database-url", f"sqlite:///{tmp_path / 'demo.db'}"],
        cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    scrapes: list[dict] = []
    output: list[str] = []
    try:
        for line in demo.stdout:
            output.append(line)
            found = re.search(r"metrics at (http://127\.0\.0\.1:\d+/metrics)", line)
            if found:
                url = found.group(1)
                break
        else:
            raise AssertionError("the demo never said where its metrics are: " + "".join(output))

        def scrape_until_it_ends() -> None:
            while demo.poll() is None:
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        scrapes.append(samples(response.read().decode()))
                except OSError:
                    return  # the OMS has stopped: the demo is printing its summary

        scraper = threading.Thread(target=scrape_until_it_ends)
        scraper.start()
        output.extend(demo.stdout)
        demo.wait(DEMO_TIMEOUT_S)
        scraper.join(10)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 0, "".join(output) + demo.stderr.read()

    assert scrapes, "no scrape succeeded while the demo ran"
    last = max(scrapes, key=lambda s: s[("oms_kpi_samples", (("kpi", "order_success_ratio"),))])
    for name in KPIS:
        assert (name, ()) in last, name
    # The demo places 9 orders at the exchange; one is refused by it (a bid outside the
    # circuit band): the success rate is between 0 and 1 and most orders fill.
    placements = last[("oms_kpi_samples", (("kpi", "order_success_ratio"),))]
    assert placements >= 3
    assert 0.5 <= last[("oms_order_success_ratio", ())] <= 1
    assert 0 < last[("oms_order_latency_quantile_seconds", (("quantile", "0.95"),))] < 1
    # Every placement counted has its latency timed first (at the broker's answer, before
    # the commit that counts it), so the KPIs, read in one pass, never show fewer latencies.
    assert last[("oms_kpi_samples", (("kpi", "order_latency"),))] >= placements
    assert last[("oms_order_latency_seconds_count", ())] >= 1
    assert 0 < last[("oms_order_fill_ratio", ())] <= 1
    assert last[("oms_position_accuracy_ratio", ())] == 1.0
    assert last[("oms_reconciliation_mismatches", ())] == 0
    summary = "".join(output)
    assert "Monitoring (the guide's KPIs):" in summary
    assert re.search(r"order success rate \d+\.\d% of \d+ placements; fill rate \d+\.\d% of \d+ ended", summary)
    assert "alerts: none" in summary
