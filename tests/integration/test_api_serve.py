"""The done-when of the API, end to end: ``oms serve`` (which is ``run_oms.py --serve``,
whose own test is in test_demo.py) runs in its own process;
keys are made with the ``oms`` console script; a strategy in this process places,
modifies and cancels orders and hears their fills, through curl and the Python client;
a revoked key is refused; SIGTERM stops it all cleanly."""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from api.client import OMSClient
from tests.oms_helpers import buy

ROOT = Path(__file__).resolve().parents[2]
CURL = shutil.which("curl")


def environment(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
    env.update(OMS_DATABASE_URL=url, OMS_API_PORT="0", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    return env


def oms_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def curl(*args: str) -> tuple[int, dict]:
    assert CURL, "curl is needed (.ci/test.sh installs it)"
    done = subprocess.run([CURL, "-sS", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=30)
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body) if body else {}


def oms_here(monkeypatch, capsys, env: dict[str, str], *args: str) -> tuple[int, str]:
    """The same console script's ``main``, in this process (a subprocess costs seconds)."""
    from cli.main import main

    monkeypatch.setenv("OMS_DATABASE_URL", env["OMS_DATABASE_URL"])
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().out


def test_a_strategy_in_another_process_trades_through_curl_and_the_client(tmp_path, monkeypatch, capsys):
    env = environment(f"sqlite:///{tmp_path / 'served.db'}")
    created = oms_cli(env, "keys", "create", "strategy-7", "--strategy", "7")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"oms_[A-Za-z0-9_-]{43}", key)
    admin = oms_here(monkeypatch, capsys, env, "keys", "create", "desk")[1].strip().splitlines()[-1]

    server = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--log-level", "WARNING"], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in iter(server.stdout.readline, "")], daemon=True)
    reader.start()
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"--serve never said where its API is (exit {server.poll()}): {server.stderr.read() if server.poll() is not None else ''}")
            try:
                found = re.search(r"API on (http://127\.0\.0\.1:\d+)/api/v1", lines.get(timeout=0.2))
            except queue.Empty:
                continue
            url = found.group(1) if found else None
        api = f"{url}/api/v1"
        bearer = ["-H", f"Authorization: Bearer {key}"]
        as_json = ["-H", "Content-Type: application/json"]

        with OMSClient(url, admin) as desk, OMSClient(url, key) as client, client.events() as stream:
            desk.paper.set_price("INFY", "1500")
            # curl: place (retried with the same key: one order), modify, cancel
            order = {"symbol": "INFY", "side": "BUY", "quantity": 5, "order_type": "LIMIT", "price": "1490",
                     "stop_loss": "1450", "strategy_id": 7}
            status, placed = curl("-X", "POST", f"{api}/orders", *bearer, *as_json, "-H", "Idempotency-Key: curl-1", "-d", json.dumps(order))
            assert status == 201 and placed["status"] == "OPEN", placed
            status, again = curl("-X", "POST", f"{api}/orders", *bearer, *as_json, "-H", "Idempotency-Key: curl-1", "-d", json.dumps(order))
            assert (status, again["order_id"]) == (201, placed["order_id"])
            # curl -d without a Content-Type (form-encoded, curl's default) is read as JSON too
            status, changed = curl("-X", "PATCH", f"{api}/orders/{placed['order_id']}", *bearer, "-d", '{"new_price": "1491"}')
            assert (status, changed["accepted"]) == (200, True)
            status, seen = curl(f"{api}/orders/{placed['order_id']}", *bearer)
            assert (status, seen["price"]) == (200, "1491")
            status, cancelled = curl("-X", "DELETE", f"{api}/orders/{placed['order_id']}", *bearer)
            assert (status, cancelled["accepted"]) == (200, True)
            status, refused = curl(f"{api}/orders/{placed['order_id']}")
            assert (status, refused["error"]["code"]) == (401, "unauthorized")

            # the client: a market order that fills, heard on the stream
            bought = client.place_order(buy("INFY", 3, stop_loss="1450", strategy_id=7, client_order_id="client-1"))
            heard = []
            while not any(e["type"] == "trade" and e["data"]["order_id"] == bought.order_id for e in heard):
                heard.append(stream.receive(timeout=10))
            assert any(e["type"] == "order" and e["data"]["order"]["status"] == "CANCELLED" for e in heard)
            assert client.get_order_status(bought.order_id).filled_quantity == 3
            assert client.place_order(buy("INFY", 3, stop_loss="1450", strategy_id=7, client_order_id="client-1")).order_id == bought.order_id
            assert len(desk.get_trades()) == 1

        code, listed = oms_here(monkeypatch, capsys, env, "keys", "list")
        assert code == 0 and "strategy-7" in listed and "desk" in listed and key not in listed
        assert oms_here(monkeypatch, capsys, env, "keys", "revoke", "strategy-7")[0] == 0
        status, refused = curl(f"{api}/orders", *bearer)
        assert (status, refused["error"]["code"]) == (401, "unauthorized")

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0, server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
        reader.join(timeout=5)
    assert key not in server.stderr.read()
