"""Every refusal of the API, on the real server: no key, a wrong key, a revoked key,
another strategy's order, a read-only key, an oversized body, malformed JSON and a
flood. Each gets its status and the one error shape; none writes a row or reaches the
broker, and no answer echoes the key it was sent."""
from __future__ import annotations

import json

import pytest

from api.client import APIAuthError
from domain.errors import OrderNotFound
from tests.api_helpers import count, served
from tests.oms_helpers import buy

ORDER = {"symbol": "INFY", "side": "BUY", "quantity": 1, "stop_loss": "1450", "strategy_id": 1}


def assert_error(response, status: int, code: str, *secrets: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status and error["code"] == code
    for secret in secrets:
        assert secret not in response.text and all(secret not in v for v in response.headers.values())
    return error


@pytest.fixture
def desk(sqlite_url):
    with served(sqlite_url) as s:
        s.oms.paper.set_price("INFY", "1500")
        yield s


def nothing_written(s) -> None:
    assert count(s.database_url, "orders") == 0
    assert s.oms.paper.orders() == []


def test_no_key_a_wrong_key_and_a_malformed_header_are_401(desk):
    real = desk.key("desk")
    wrong = "oms_" + "A" * 43
    with desk.http() as anonymous:
        error = assert_error(anonymous.post("/orders", json=ORDER), 401, "unauthorized")
        assert error["check"] == "auth" and "Bearer" in anonymous.get("/orders").headers["WWW-Authenticate"]
        for path in ("/orders", "/orders/1", "/trades", "/positions", "/state", "/orders/1/events"):
            assert_error(anonymous.get(path), 401, "unauthorized")
        assert_error(anonymous.delete("/orders/1"), 401, "unauthorized")
        assert_error(anonymous.post("/reconcile"), 401, "unauthorized")
        assert_error(anonymous.post("/orders", json=ORDER, headers={"Authorization": f"Basic {real}"}), 401, "unauthorized", real)
        assert_error(anonymous.post("/orders", json=ORDER, headers={"Authorization": f"Bearer {real}x"}), 401, "unauthorized", real)
    with desk.http(wrong) as guessing:
        assert_error(guessing.post("/orders", json=ORDER), 401, "unauthorized", wrong)
        assert_error(guessing.post("/paper/prices", json={"symbol": "INFY", "price": 1}), 401, "unauthorized", wrong)
    nothing_written(desk)
    assert desk.oms.paper.exchange.price("INFY") == 1500


def test_a_revoked_key_is_refused_from_the_next_request(desk):
    key = desk.key("leaver")
    with desk.http(key) as http:
        assert http.get("/state").status_code == 200
        desk.revoke("leaver")
        assert_error(http.post("/orders", json=ORDER), 401, "unauthorized", key)
        assert_error(http.get("/state"), 401, "unauthorized", key)
    nothing_written(desk)


def test_a_key_for_one_strategy_neither_sees_nor_touches_another_strategys_orders(desk):
    mine, theirs = desk.key("one", strategies=[1]), desk.key("two", strategies=[2])
    with desk.client(theirs) as other:
        placed = other.place_order(buy("INFY", 1, order_type="LIMIT", price="1400", stop_loss="1350", strategy_id=2))
    with desk.http(mine) as http:
        for response in (
            http.get(f"/orders/{placed.order_id}"), http.get(f"/orders/{placed.order_id}/events"),
            http.delete(f"/orders/{placed.order_id}"), http.patch(f"/orders/{placed.order_id}", json={"new_price": "1401"}),
            http.get("/trades", params={"order_id": placed.order_id}),
        ):
            error = assert_error(response, 404, "not_found")
            assert error["reason"] == f"no order with id {placed.order_id}"  # as for an order that never was
        assert_error(http.get("/orders/999999"), 404, "not_found")
        assert http.get("/orders").json()["orders"] == []  # its own strategy's, by default
        assert_error(http.get("/orders", params={"strategy_id": 2}), 403, "forbidden")
        assert_error(http.post("/orders", json={**ORDER, "strategy_id": 2}), 403, "forbidden")
        assert_error(http.get("/positions"), 403, "forbidden")
        assert_error(http.post("/reconcile"), 403, "forbidden")
    with desk.client(mine) as client, pytest.raises(OrderNotFound):
        client.get_order_status(placed.order_id)
    order = desk.oms.get_order_status(placed.order_id)
    assert (order.status.value, order.price, order.modification_count) == ("OPEN", 1400, 0)
    assert count(desk.database_url, "orders") == 1


def test_a_read_only_key_reads_and_may_not_write(desk):
    reader = desk.key("auditor", read_only=True)
    with desk.http(reader) as http:
        assert http.get("/orders").status_code == 200 and http.get("/positions").status_code == 200
        for response in (
            http.post("/orders", json=ORDER), http.delete("/orders/1"), http.patch("/orders/1", json={"new_price": "1"}),
            http.post("/reconcile"), http.post("/paper/prices", json={"symbol": "INFY", "price": 1}),
        ):
            assert assert_error(response, 403, "forbidden")["check"] == "read_only"
    with desk.client(reader) as client, pytest.raises(APIAuthError) as refused:
        client.place_order(buy("INFY", 1, stop_loss="1450"))
    assert refused.value.status == 403
    nothing_written(desk)


def test_an_oversized_body_is_413_and_malformed_json_is_400(sqlite_url):
    with served(sqlite_url, api_max_body_bytes=4096) as s:
        s.oms.paper.set_price("INFY", "1500")
        key = s.key("desk")
        with s.http(key) as http:
            huge = {**ORDER, "metadata": {"blob": "x" * 10_000}}
            assert_error(http.post("/orders", json=huge), 413, "payload_too_large", key)

            def chunks():
                yield b'{"symbol": "INFY", "metadata": {"blob": "'
                for _ in range(10):
                    yield b"y" * 1000
                yield b'"}}'

            chunked = http.post("/orders", content=chunks(), headers={"Content-Type": "application/json"})
            assert_error(chunked, 413, "payload_too_large")
            for text in ('{"symbol": "INFY", "side": ', "not json", '{"symbol": "INFY",}'):
                error = assert_error(http.post("/orders", content=text, headers={"Content-Type": "application/json"}), 400, "malformed_json")
                assert error["check"] == "input"
            error = assert_error(http.post("/orders", json=[ORDER]), 422, "invalid_request")
            assert error["check"] == "input"
            error = assert_error(http.post("/orders", json={**ORDER, "quantity": "10"}), 422, "invalid_request")
            assert error["field"] == "quantity"
            assert_error(http.post("/orders", json={**ORDER, "surprise": 1}), 422, "invalid_request")
            assert_error(http.patch("/orders/1", content="{", headers={"Content-Type": "application/json"}), 400, "malformed_json")
            assert_error(http.put("/orders/1", json={}), 405, "method_not_allowed")
            assert_error(http.get("/nowhere"), 404, "not_found")
            assert assert_error(http.post("/paper/prices", json={"symbol": "in fy", "price": 1}), 422, "invalid_request")["field"] == "symbol"
        nothing_written(s)


def test_a_flood_from_one_key_is_held_to_its_rate_with_retry_after_and_other_keys_go_on(sqlite_url):
    with served(sqlite_url, api_requests_per_second="2", api_burst=5) as s:
        flooder, calm = s.key("flooder"), s.key("calm")
        with s.http(flooder) as http:
            statuses = [http.get("/state").status_code for _ in range(20)]
            assert statuses[:5] == [200] * 5 and statuses.count(429) >= 14
            limited = http.post("/orders", json={**ORDER, "quantity": 1})
            error = assert_error(limited, 429, "rate_limited", flooder)
            assert error["check"] == "rate_limit" and int(limited.headers["Retry-After"]) >= 1
        with s.http(calm) as http:
            assert http.get("/state").status_code == 200
        nothing_written(s)


def test_the_server_binds_loopback_unless_told_otherwise():
    from pydantic import ValidationError

    from actors.settings import OMSSettings

    with pytest.raises(ValidationError, match="api_allow_remote"):
        OMSSettings(api_host="0.0.0.0")
    assert OMSSettings().api_host == "127.0.0.1" and OMSSettings().api_port == 8700
    assert OMSSettings(api_host="0.0.0.0", api_allow_remote=True).api_host == "0.0.0.0"


def test_keys_are_stored_only_as_hashes(desk):
    key = desk.key("desk", strategies=[3, 1], read_only=True)
    from tests.oms_helpers import rows

    stored = rows(desk.database_url, "SELECT * FROM api_keys")
    assert len(stored) == 1 and key not in json.dumps(stored, default=str)
    assert stored[0]["name"] == "desk" and json.loads(stored[0]["strategies"]) == [1, 3]
    assert key.startswith("oms_") and len(key) == 47


def test_one_key_cannot_hold_every_worker_so_the_operator_still_gets_in(sqlite_url, monkeypatch):
    """A strategy's orders waiting on a slow broker occupy at most MAX_IN_FLIGHT of the
    API's workers; past that its requests are refused at once (429), and another key's
    halt still goes through."""
    import threading
    import time as clock

    monkeypatch.setattr("api.app.MAX_IN_FLIGHT", 2)
    with served(sqlite_url) as s, s.http(s.key("busy")) as busy, s.client(s.key("ops")) as ops:
        ops.paper.set_price("INFY", "1500")
        exchange = s.oms.paper.exchange
        real_place = exchange.place
        exchange.place = lambda request: (clock.sleep(1.0), real_place(request))[1]  # a slow broker
        answers: list[int] = []
        body = {"symbol": "INFY", "side": "BUY", "quantity": 1, "order_type": "LIMIT", "price": "1400", "stop_loss": "1350"}
        threads = [threading.Thread(target=lambda: answers.append(busy.post("/orders", json=body).status_code)) for _ in range(5)]
        for thread in threads:
            thread.start()
        clock.sleep(0.3)
        assert ops.halt("operator gets in").value == "HALTED"
        for thread in threads:
            thread.join(30)
    assert sorted(answers).count(201) == 2 and sorted(answers).count(429) == 3, answers
