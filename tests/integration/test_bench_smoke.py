"""The benchmark harness keeps working: CI runs it once at its tiny size."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness import machine_cpu_s, server_cpu_s

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = {"throughput", "latency @1000/min", "latency @10000/min", "latency @100000/min", "resting", "recovery"}


def _bench(tmp_path: Path, name: str, *options: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / f"{name}.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--size", "quick", "--repeat", "1", "--json", str(out), "--workdir", str(tmp_path),
         *options],
        cwd=ROOT, capture_output=True, text=True, timeout=540, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run, json.loads(out.read_text())


@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_bench_runs_every_scenario_and_on_both_databases_and_writes_json(postgres_url, tmp_path):
    """Every scenario on SQLite; on PostgreSQL the two that exercise its own paths (the
    group write under load, a restart), which keeps CI's time down."""
    run, report = _bench(tmp_path, "sqlite", "--db", "sqlite")
    seen = {r["scenario"] for r in report["results"] if r["database"] == "sqlite"}
    for scenario in SCENARIOS:
        assert any(s.startswith(scenario) for s in seen), scenario
    assert "throughput" in run.stdout and "p99_ms" in run.stdout
    assert "[1/" in run.stderr and "so far" in run.stderr  # progress, on stderr (--quiet: none)
    cpu = max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    pin = ("--pin-to-cpu", str(cpu)) if cpu is not None else ()
    _, on_postgres = _bench(tmp_path, "postgres", "--db", "postgres", "--postgres-url", postgres_url,
                            "--only", "throughput", "--only", "recovery", *pin)
    assert on_postgres["pin_to_cpu"] == cpu and report["pin_to_cpu"] is None
    by_name = {(r["scenario"].split(" ")[0], r["database"]): r["metrics"] for r in report["results"] + on_postgres["results"]}
    assert by_name[("throughput", "postgres")]["filled_per_s"] > 0
    # What each order costs the whole machine, and the local server alone
    assert by_name[("throughput", "postgres")]["machine_cpu_ms_per_order"] > 0
    if server_cpu_s(postgres_url) is not None:  # the server runs on this machine (CI's does)
        assert by_name[("throughput", "postgres")]["database_cpu_ms_per_order"] > 0
    assert by_name[("throughput", "sqlite")]["machine_cpu_ms_per_order"] > 0
    assert "database_cpu_ms_per_order" not in by_name[("throughput", "sqlite")]  # it runs in our process
    assert by_name[("recovery", "postgres")]["live_orders"] == 200
    assert by_name[("recovery", "sqlite")]["live_orders"] == 200


def test_bench_help_documents_its_options():
    run = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0
    for option in ("--db", "--size", "--repeat", "--json", "--postgres-url", "--pin-to-cpu"):
        assert option in run.stdout


@pytest.mark.postgres
def test_the_database_servers_cpu_counts_a_connection_that_has_ended(postgres_url):
    """A server process that burned CPU and ended between two readings is still counted
    (its parent reaped it), so a run's figure holds every connection it opened."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    before, machine_before = server_cpu_s(postgres_url), machine_cpu_s()
    if before is None:
        pytest.skip("the test server runs on another machine: its processes cannot be read here")
    with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database) as conn:
        conn.execute("SELECT count(*) FROM generate_series(1, 5000000)").fetchone()
    after = server_cpu_s(postgres_url)
    assert after - before >= 0.1  # the query alone takes a few tenths of a second
    # /proc/stat counts by ticks and leaves steal time out: the machine's figure may fall
    # a little short of a part of it
    assert machine_cpu_s() - machine_before >= (after - before) * 0.8
