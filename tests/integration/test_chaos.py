"""The seeded chaos run (bench/chaos.py) on a short budget: a few seeds of strategies
trading against the Kite emulator while faults are injected, each ending with the OMS
equal to Kite and a clean reconciliation. The long run is `python -m bench.chaos
--seeds 1000`; the README has its figures and the seeds it found bugs with."""
from __future__ import annotations

import random

import pytest

from bench import chaos

# Few seeds (CI's time is bounded), whose fault schedules cover every kind between them:
# 11 restarts the emulator and the OMS and expires the token, 28 restarts the emulator and
# answers 5xx, 45 answers 429, lags the books, times out after accept and restarts the OMS;
# 17 restarts PostgreSQL. The long run is bench.chaos.
SQLITE_SEEDS = (11, 28, 45)
POSTGRES_SEEDS = (17,)


@pytest.mark.parametrize("seed", SQLITE_SEEDS)
def test_a_seed_of_chaos_on_sqlite_ends_equal_to_kite(seed):
    result = chaos.run_seed(seed, "sqlite")
    assert result.violations == [], chaos.replay_command(seed, "sqlite", 2.0)
    assert result.orders and result.fills and sum(result.faults.values())  # it traded: the check is not vacuous


@pytest.mark.postgres
@pytest.mark.parametrize("seed", POSTGRES_SEEDS)
def test_a_seed_of_chaos_on_postgres_ends_equal_to_kite(seed, postgres_url):
    result = chaos.run_seed(seed, "postgres", postgres_url=postgres_url)
    assert result.violations == [], chaos.replay_command(seed, "postgres", 2.0)
    assert result.orders and result.fills  # it traded: the check is not vacuous


def test_a_seed_draws_the_same_faults_every_time():
    plans = [chaos._schedule(random.Random(7), 2.0, "postgres", False) for _ in range(2)]
    assert plans[0] == plans[1]
    drawn = {kind for seed in range(200) for _, kind, _ in chaos._schedule(random.Random(seed), 2.0, "postgres", False)}
    assert drawn == set(chaos.FAULT_KINDS)
    on_sqlite = {kind for seed in range(200) for _, kind, _ in chaos._schedule(random.Random(seed), 2.0, "sqlite", False)}
    assert "database_restart" not in on_sqlite


def test_a_failing_seed_prints_the_command_that_replays_it(monkeypatch, capsys):
    def broken(seed, database, **options):
        result = chaos.SeedResult(seed, database)
        result.violations.append("positions differ")
        return result

    monkeypatch.setattr(chaos, "run_seed", broken)
    assert chaos.main(["--seeds", "1", "--start", "42"]) == 1
    out = capsys.readouterr().out
    assert "VIOLATION: positions differ" in out
    assert "python -m bench.chaos --seeds 1 --start 42 --database sqlite --duration 2" in out


def test_a_chaos_run_shows_its_progress_and_ends_with_a_summary_or_keeps_quiet(monkeypatch, capsys):
    def clean(seed, database, **options):
        result = chaos.SeedResult(seed, database)
        result.orders, result.fills = 10, 4
        return result

    monkeypatch.setattr(chaos, "run_seed", clean)
    assert chaos.main(["--seeds", "3", "--start", "5"]) == 0
    shown = capsys.readouterr()
    assert [line.split(":")[0] for line in shown.out.splitlines() if line.startswith("seed ")] == ["seed 5", "seed 6", "seed 7"]
    assert "[1/3]" in shown.err and "[2/3]" in shown.err and "to go" in shown.err
    assert "3 seeds (sqlite)" in shown.out and "30 orders" in shown.out and "violations: 0 in 0 seeds" in shown.out

    assert chaos.main(["--seeds", "3", "--start", "5", "--quiet"]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == "" and "seed 5" not in quiet.out
    assert "3 seeds (sqlite)" in quiet.out
