"""Kite's session: an expired token halts new orders and says why (log, health), and a
fresh one (oms.set_access_token, or the secrets file the OMS watches, written by
oms-login) resumes trading without a restart. No credential ever shows: not in the log,
the output, an exception's message, or the database."""
from __future__ import annotations

import io
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from kiteconnect import KiteConnect
from sqlalchemy import create_engine, inspect, text

from actors import start_oms
from actors.brokers.kite_login import LoginFailed, exchange, main
from actors.brokers.kite_secrets import read_secrets, write_secret
from actors.supervisor import HealthState
from domain import OrderStatus, OrderSubmissionFailed
from tests.kite_helpers import KEY, SECRET, TOKEN, assert_no_credentials, eventually, kite_emulator, start_kite_oms
from tests.oms_helpers import buy, wait_for

S = OrderStatus
REPO = Path(__file__).resolve().parents[2]
FRESH = "kite-fresh-token-2c77"


@pytest.fixture
def emulator():
    with kite_emulator() as emu:
        yield emu


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("OMS_KITE"):
            monkeypatch.delenv(name)


def resting_buy(price: str = "1490"):
    return buy("INFY", 10, order_type="LIMIT", price=price, product="MIS", stop_loss="1480")


def database_text(url: str) -> str:
    """Every row of every table, as text."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return "\n".join(
                repr(row) for table in inspect(connection).get_table_names()
                for row in connection.execute(text(f'SELECT * FROM "{table}"'))
            )
    finally:
        engine.dispose()


def test_an_expired_token_degrades_the_oms_until_a_fresh_one_is_set(emulator, database_url, caplog):
    caplog.set_level(logging.DEBUG)
    oms = start_kite_oms(emulator, database_url)
    try:
        oms.mark_price("INFY", "1500")
        resting = oms.place_order(resting_buy())
        assert oms.health().state is HealthState.RUNNING
        emulator.expire_tokens()
        with pytest.raises(OrderSubmissionFailed, match="log in again") as refused:
            oms.place_order(resting_buy("1485"))
        health = oms.health()
        assert health.state is HealthState.DEGRADED
        assert "no new orders: Kite refused the session" in health.reason and "oms-login" in health.reason
        assert "Kite refused the access token" in caplog.text
        emulator.set_price("INFY", "1489")  # the resting order fills while the OMS cannot see it

        emulator.add_access_token(FRESH)
        oms.set_access_token(FRESH)
        assert oms.health().state is HealthState.RUNNING
        assert wait_for(oms, resting.order_id, lambda o: o.status is S.FILLED)  # polling resumed
        after = oms.place_order(resting_buy("1482"))
        assert after.status is S.OPEN and after.broker_order_id
        assert "Kite access token renewed" in caplog.text
    finally:
        oms.stop()
    stored = database_text(database_url)
    assert_no_credentials(caplog.text, str(refused.value), stored, health.reason)
    assert FRESH not in caplog.text and FRESH not in stored


def test_the_oms_takes_a_new_token_from_the_secrets_file(emulator, sqlite_url, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    secrets = tmp_path / "kite.env"
    for name, value in (("kite_api_key", KEY), ("kite_api_secret", SECRET), ("kite_access_token", TOKEN)):
        write_secret(secrets, name, value)
    oms = start_oms(broker="kite", database_url=sqlite_url, kite_root=emulator.url, kite_ws_root=emulator.ws_url, kite_timeout=1.0,
                    kite_poll_interval=0.05, kite_secrets_file=str(secrets), kite_secrets_poll=0.05,
                    enforce_market_hours=False)
    try:
        oms.mark_price("INFY", "1500")
        assert oms.place_order(resting_buy()).status is S.OPEN  # the file's credentials work
        emulator.expire_tokens()
        with pytest.raises(OrderSubmissionFailed):
            oms.place_order(resting_buy())
        emulator.add_access_token(FRESH)
        write_secret(secrets, "kite_access_token", FRESH)
        eventually(lambda: oms.health().state is HealthState.RUNNING, what="the new token taken from the file")
        assert oms.place_order(resting_buy()).status is S.OPEN
    finally:
        oms.stop()
    assert_no_credentials(caplog.text)
    assert FRESH not in caplog.text and "took the new Kite access token" in caplog.text


def test_oms_login_exchanges_the_request_token_and_writes_the_secrets_file(emulator, tmp_path, monkeypatch, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OMS_KITE_API_KEY", KEY)
    monkeypatch.setenv("OMS_KITE_API_SECRET", SECRET)
    secrets = tmp_path / "kite.toml"
    request_token = emulator.issue_request_token()
    redirect = f"https://example.invalid/callback?action=login&type=login&status=success&request_token={request_token}"
    assert main(["--secrets-file", str(secrets), "--root", emulator.url, "--login-root", f"{emulator.url}/connect/login", redirect]) == 0
    out = capsys.readouterr()
    token = read_secrets(secrets)["kite_access_token"]
    assert stat.S_IMODE(os.stat(secrets).st_mode) == 0o600
    assert KiteConnect(KEY, token, root=emulator.url).orders() == []  # Kite takes it
    login_line = f"{emulator.url}/connect/login?v=3&api_key={KEY}"
    assert login_line in out.out
    shown = out.out.replace(login_line, "") + out.err + caplog.text
    assert_no_credentials(shown)
    assert token not in shown and request_token not in shown

    # The request token is good once: a second use is refused, clearly and without secrets.
    answer = io.StringIO(redirect + "\n")
    assert main(["--secrets-file", str(secrets), "--root", emulator.url], stdin=answer) == 1
    out = capsys.readouterr()
    assert "Kite did not exchange the request token" in out.err
    with pytest.raises(LoginFailed) as failed:
        exchange(KEY, SECRET, request_token, emulator.url)
    for text_shown in (out.out.replace(f"api_key={KEY}", ""), out.err, str(failed.value), caplog.text):
        assert_no_credentials(text_shown)
        assert request_token not in text_shown and token not in text_shown
    assert read_secrets(secrets)["kite_access_token"] == token  # the file is left as it was


def test_oms_login_runs_as_a_module_with_credentials_from_the_secrets_file(emulator, tmp_path):
    secrets = tmp_path / "kite.env"
    write_secret(secrets, "kite_api_key", KEY)
    write_secret(secrets, "kite_api_secret", SECRET)
    request_token = emulator.issue_request_token()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
    environment["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-m", "actors.brokers.kite_login", "--secrets-file", str(secrets), "--root", emulator.url],
        input=f"{request_token}\n", capture_output=True, text=True, env=environment, timeout=60, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    stored = read_secrets(secrets)
    assert stored["kite_api_key"] == KEY and stored["kite_access_token"]
    assert "https://kite.zerodha.com/connect/login?v=3&api_key=" in done.stdout
    assert SECRET not in done.stdout + done.stderr and stored["kite_access_token"] not in done.stdout + done.stderr


def test_oms_login_says_which_credentials_are_missing(tmp_path, capsys):
    assert main(["--secrets-file", str(tmp_path / "kite.env"), "--root", "http://127.0.0.1:9", "Rt0123456"]) == 1
    assert "set OMS_KITE_API_KEY and OMS_KITE_API_SECRET" in capsys.readouterr().err


def test_paper_trading_has_no_session_to_renew(sqlite_url):
    with start_oms(database_url=sqlite_url, broker="paper") as oms:
        with pytest.raises(ValueError, match="no sessions"):
            oms.set_access_token("anything123")
        with pytest.raises(ValueError, match="empty"):
            oms.set_access_token(" ")
