"""The API through a database outage (PostgreSQL behind a proxy the test cuts): every
request is answered at once with a 503 that says why, nothing is written or sent, no
secret is echoed, and the same key works again once the database is back."""
from __future__ import annotations

import time

import pytest
from sqlalchemy.engine import make_url

from api.client import OMSClient
from domain.enums import OrderStatus
from tests.api_helpers import served
from tests.fault_proxy import FaultProxy
from tests.oms_helpers import buy, rows, wait_for

pytestmark = pytest.mark.postgres


def test_requests_during_an_outage_are_503_and_the_api_comes_back(fresh_postgres_url):
    url = make_url(fresh_postgres_url)
    proxy = FaultProxy(url.host or "127.0.0.1", url.port or 5432)
    through = url.set(port=proxy.port).render_as_string(hide_password=False)
    try:
        with served(through) as s:
            key = s.key("desk")
            with OMSClient(s.url, key) as oms, s.http(key) as http:
                oms.paper.set_price("INFY", "1500")
                first = oms.place_order(buy("INFY", 2, stop_loss="1450"))
                wait_for(oms, first.order_id, lambda o: o.status is OrderStatus.FILLED)

                proxy.cut()
                started = time.monotonic()
                body = {"symbol": "INFY", "side": "BUY", "quantity": 1, "stop_loss": "1450"}
                for method, path, kwargs in (("POST", "/orders", {"json": body}), ("GET", "/orders", {}),
                                             ("GET", f"/orders/{first.order_id}", {})):
                    answer = http.request(method, path, **kwargs)
                    assert answer.status_code == 503, (path, answer.text)
                    error = answer.json()["error"]
                    assert error["code"] == "unavailable" and key not in answer.text and "password" not in answer.text
                assert time.monotonic() - started < 20  # answered, not hung until a timeout
                time.sleep(3)  # a database restart takes seconds; the OMS wrote nothing meanwhile
                proxy.restore()

                deadline = time.monotonic() + 30
                while True:
                    answer = http.get("/state")
                    if answer.status_code == 200 and answer.json()["health"]["state"] == "RUNNING":
                        break
                    assert time.monotonic() < deadline, answer.text
                    time.sleep(0.2)
                again = oms.place_order(buy("INFY", 3, stop_loss="1450"))
                wait_for(oms, again.order_id, lambda o: o.status is OrderStatus.FILLED)
        assert [r["quantity"] for r in rows(fresh_postgres_url, "SELECT quantity FROM orders ORDER BY id")] == [2, 3]
    finally:
        proxy.close()
