"""The benchmark harness keeps working: CI runs it once at its tiny size."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = {"throughput", "latency @1000/min", "latency @10000/min", "latency @100000/min", "resting", "recovery"}


@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_bench_runs_every_scenario_on_both_databases_and_writes_json(postgres_url, tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--size", "quick", "--repeat", "1", "--db", "both",
         "--postgres-url", postgres_url, "--json", str(out), "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=540, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )

    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(out.read_text())
    seen = {(r["scenario"], r["database"]) for r in report["results"]}
    for database in ("sqlite", "postgres"):
        for scenario in SCENARIOS:
            assert any(s.startswith(scenario) and d == database for s, d in seen), (scenario, database)
    by_name = {(r["scenario"].split(" ")[0], r["database"]): r["metrics"] for r in report["results"]}
    assert by_name[("throughput", "postgres")]["filled_per_s"] > 0
    assert by_name[("recovery", "sqlite")]["live_orders"] == 200
    assert "throughput" in run.stdout and "p99_ms" in run.stdout


def test_bench_help_documents_its_options():
    run = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0
    for option in ("--db", "--size", "--repeat", "--json", "--postgres-url"):
        assert option in run.stdout
