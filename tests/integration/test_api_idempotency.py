"""Idempotent placement over HTTP: the same client order id (in the body, or as an
Idempotency-Key header) sent again, at once, concurrently, or after the OMS restarted,
answers the one order and never sends a second."""
from __future__ import annotations

import threading

from tests.api_helpers import count, served

ORDER = {"symbol": "INFY", "side": "BUY", "quantity": 4, "stop_loss": "1450"}


def test_concurrent_retries_with_one_idempotency_key_make_one_broker_order(database_url):
    with served(database_url) as s:
        s.oms.paper.set_price("INFY", "1500")
        key = s.key("desk")
        answers: list = []
        start = threading.Barrier(10)

        def post() -> None:
            with s.http(key) as http:
                start.wait()
                answers.append(http.post("/orders", json=ORDER, headers={"Idempotency-Key": "entry-2024-11-25-001"}))

        threads = [threading.Thread(target=post) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert [a.status_code for a in answers] == [201] * 10
        assert len({a.json()["order_id"] for a in answers}) == 1
        assert {a.json()["client_order_id"] for a in answers} == {"entry-2024-11-25-001"}
        assert len(s.oms.paper.orders()) == 1
    assert count(database_url, "orders") == 1


def test_a_retry_after_a_restart_answers_the_first_order(database_url):
    with served(database_url) as s:
        s.oms.paper.set_price("INFY", "1500")
        key = s.key("desk")
        with s.http(key) as http:
            first = http.post("/orders", json={**ORDER, "client_order_id": "after-restart"}).json()
    with served(database_url) as s, s.http(key) as http:
        again = http.post("/orders", json={**ORDER, "client_order_id": "after-restart"})
        assert again.status_code == 201
        assert again.json()["order_id"] == first["order_id"] and again.json()["status"] == "FILLED"
        by_header = http.post("/orders", json=ORDER, headers={"Idempotency-Key": "after-restart"})
        assert by_header.json()["order_id"] == first["order_id"]
        assert len(s.oms.paper.orders()) == 1
    assert count(database_url, "orders") == 1


def test_an_idempotency_key_that_contradicts_the_body_or_is_malformed_is_refused(sqlite_url):
    with served(sqlite_url) as s, s.http(s.key("desk")) as http:
        s.oms.paper.set_price("INFY", "1500")
        both = http.post("/orders", json={**ORDER, "client_order_id": "a"}, headers={"Idempotency-Key": "b"})
        assert (both.status_code, both.json()["error"]["code"]) == (422, "invalid_request")
        bad = http.post("/orders", json=ORDER, headers={"Idempotency-Key": "no spaces please"})
        assert (bad.status_code, bad.json()["error"]["field"]) == (422, "client_order_id")
        assert count(sqlite_url, "orders") == 0 and s.oms.paper.orders() == []
