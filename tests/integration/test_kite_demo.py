"""run_oms.py --broker kite-emulator: the demo through Kite mode (the official client
against a Kite emulator on a free loopback port), and --broker kite's refusals."""
from __future__ import annotations

from pathlib import Path

from tests.integration.test_demo import read, run

EXIT_OK, EXIT_USAGE = 0, 2


def test_the_demo_runs_through_kite_mode_against_the_emulator(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'kite_demo.db'}"
    result = run("--broker", "kite-emulator", "--database-url", url, cwd=tmp_path)
    assert result.returncode == EXIT_OK, result.stderr
    assert "Kite mode: the official client against the emulator at http://127.0.0.1:" in result.stdout
    assert "summary matches the database" in result.stdout
    assert "UNEXPECTED" not in result.stdout
    statuses = {r["status"]: r["n"] for r in read(url, "SELECT status, COUNT(*) AS n FROM orders GROUP BY status")}
    assert statuses == {"FILLED": 6, "CANCELLED": 2, "REJECTED": 5}
    rows = read(url, "SELECT broker_order_id, tag FROM orders WHERE broker_order_id IS NOT NULL")
    assert len(rows) == 9 and all(len(r["broker_order_id"]) == 19 for r in rows)  # Kite-sized ids


def test_broker_kite_without_credentials_is_refused_naming_them(tmp_path: Path):
    result = run("--broker", "kite", "--serve", cwd=tmp_path)
    assert result.returncode == EXIT_USAGE
    assert "OMS_KITE_API_KEY" in result.stderr and "OMS_KITE_ACCESS_TOKEN" in result.stderr


def test_the_demo_will_not_move_real_kites_market(monkeypatch, capsys):
    import run_oms

    monkeypatch.setenv("OMS_KITE_API_KEY", "k-demo")
    monkeypatch.setenv("OMS_KITE_ACCESS_TOKEN", "t-demo")
    assert run_oms.main(["--broker", "kite"]) == EXIT_USAGE
    assert "use --broker kite-emulator" in capsys.readouterr().err
