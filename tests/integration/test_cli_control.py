"""``oms halt``, ``resume``, ``reconcile`` and ``kill`` act through a running OMS's API
(never behind its back); with no OMS running, halt and resume record the state for the
next one; an OMS that runs without an answering API is left untouched."""
from __future__ import annotations

import json
import socket

import pytest

from actors import start_oms
from cli.main import main
from domain.enums import OrderStatus
from tests.api_helpers import served
from tests.oms_helpers import buy, rows, wait_for


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_controls_go_through_the_running_oms(sqlite_url, monkeypatch, capsys):
    monkeypatch.setenv("OMS_DATABASE_URL", sqlite_url)
    with served(sqlite_url) as s:
        monkeypatch.setenv("OMS_API_KEY", s.key("ops"))
        s.oms.paper.set_price("INFY", "1500")
        long = s.oms.place_order(buy("INFY", 10, stop_loss="1450"))
        wait_for(s.oms, long.order_id, lambda o: o.status is OrderStatus.FILLED)

        code, out, err = run(capsys, "halt", "--url", s.url, "--reason", "news at 2pm", "--json")
        assert code == 0, err
        assert json.loads(out) == {"trading_state": "HALTED", "reason": "news at 2pm", "through": "api"}
        assert s.oms.trading_state.value == "HALTED"
        code, out, _ = run(capsys, "resume", "--url", s.url)
        assert code == 0 and "trading state RUNNING" in out and s.oms.trading_state.value == "RUNNING"

        code, out, _ = run(capsys, "reconcile", "--url", s.url, "--json")
        assert code == 0 and json.loads(out)["all_clear"] is True

        code, out, err = run(capsys, "kill", "--url", s.url, "--timeout", "30")
        assert code == 0, err
        assert "every position is flat" in out and "trading HALTED" in out
        assert [p.quantity for p in s.oms.get_positions()] == [0] and s.oms.trading_state.value == "HALTED"
    states = [(r["state"], r["reason"]) for r in rows(sqlite_url, "SELECT state, reason FROM trading_states ORDER BY id")]
    assert states[:2] == [("HALTED", "news at 2pm"), ("RUNNING", "resumed by the operator (oms resume)")]


def test_a_key_that_may_not_act_is_told_so_and_nothing_changes(sqlite_url, monkeypatch, capsys):
    monkeypatch.setenv("OMS_DATABASE_URL", sqlite_url)
    with served(sqlite_url) as s:
        monkeypatch.delenv("OMS_API_KEY", raising=False)
        code, _, err = run(capsys, "halt", "--url", s.url)
        assert code == 1 and "needs an API key: set OMS_API_KEY" in err
        monkeypatch.setenv("OMS_API_KEY", s.key("wall", read_only=True))
        code, _, err = run(capsys, "kill", "--url", s.url)
        assert code == 1 and "refused: API key 'wall' is read-only" in err
        monkeypatch.setenv("OMS_API_KEY", "oms_wrong")
        code, _, err = run(capsys, "halt", "--url", s.url)
        assert code == 1 and "refused" in err and "oms_wrong" not in err
        assert s.oms.trading_state.value == "RUNNING"


def test_with_no_oms_running_halt_and_resume_are_kept_for_the_next_one(sqlite_url, monkeypatch, capsys):
    start_oms(database_url=sqlite_url).stop()  # the database exists, no OMS runs
    monkeypatch.setenv("OMS_DATABASE_URL", sqlite_url)
    url = f"http://127.0.0.1:{dead_port()}"
    code, out, err = run(capsys, "halt", "--url", url, "--reason", "weekend", "--json")
    assert code == 0, err
    assert json.loads(out)["through"] == "database"
    oms = start_oms(database_url=sqlite_url)
    try:
        assert oms.trading_state.value == "HALTED"
    finally:
        oms.stop()
    code, out, _ = run(capsys, "resume", "--url", url)
    assert code == 0 and "no OMS is running: RUNNING" in out

    for command in (["reconcile"], ["kill", "--yes"]):
        code, _, err = run(capsys, *command, "--url", url)
        assert code == 1 and "no OMS is running for account 'default'" in err and "oms serve" in err


def test_an_oms_without_an_answering_api_is_never_written_behind(sqlite_url, monkeypatch, capsys):
    monkeypatch.setenv("OMS_DATABASE_URL", sqlite_url)
    oms = start_oms(database_url=sqlite_url)
    try:
        code, _, err = run(capsys, "halt", "--url", f"http://127.0.0.1:{dead_port()}")
        assert code == 1 and "an OMS runs for account 'default'" in err and "nothing was changed" in err
        assert oms.trading_state.value == "RUNNING"
    finally:
        oms.stop()
    assert rows(sqlite_url, "SELECT count(*) AS n FROM trading_states")[0]["n"] == 0


@pytest.mark.parametrize("command", ["halt", "reconcile"])
def test_a_missing_database_with_no_api_is_one_clear_line(tmp_path, monkeypatch, capsys, command):
    monkeypatch.setenv("OMS_DATABASE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    code, _, err = run(capsys, command, "--url", f"http://127.0.0.1:{dead_port()}")
    assert code == 1 and len(err.strip().splitlines()) == 1
