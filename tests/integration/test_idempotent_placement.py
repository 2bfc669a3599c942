"""Idempotent placement in-process: a request carrying a client_order_id is placed once
per account, whether retried at once, concurrently or after a restart; the database's
unique index is the last guard."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy.exc import IntegrityError

from actors import start_oms
from domain.enums import OrderStatus
from domain.errors import OrderRejected
from domain.order import created
from domain.order_request import OrderRequest
from persistence.store import Store
from tests.oms_helpers import buy, rows


def broker_orders(oms) -> int:
    return len(oms.paper.orders())


def test_a_retry_with_the_same_client_order_id_answers_the_first_order_and_sends_nothing(sqlite_url):
    with start_oms(database_url=sqlite_url) as oms:
        oms.paper.set_price("INFY", "1500")
        first = oms.place_order(buy("INFY", 3, stop_loss="1450", client_order_id="s7-entry-1"))
        again = oms.place_order(buy("INFY", 3, stop_loss="1450", client_order_id="s7-entry-1"))
        other = oms.place_order(buy("INFY", 3, stop_loss="1450", client_order_id="s7-entry-2"))
        assert again.order_id == first.order_id != other.order_id
        assert "already placed" in again.message
        assert broker_orders(oms) == 2
        assert oms.get_order_status(first.order_id).client_order_id == "s7-entry-1"
    assert [r["client_order_id"] for r in rows(sqlite_url, "SELECT client_order_id FROM orders ORDER BY id")] == [
        "s7-entry-1", "s7-entry-2",
    ]


def test_concurrent_retries_make_one_order_and_all_hear_it(database_url):
    with start_oms(database_url=database_url) as oms:
        oms.paper.set_price("TCS", "3500")
        results, errors = [], []
        start = threading.Barrier(12)

        def place() -> None:
            start.wait()
            try:
                results.append(oms.place_order(buy("TCS", 2, stop_loss="3400", client_order_id="burst-1")))
            except Exception as error:  # noqa: BLE001 - asserted below
                errors.append(error)

        threads = [threading.Thread(target=place) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        assert len({r.order_id for r in results}) == 1 and len(results) == 12
        assert broker_orders(oms) == 1
    assert rows(database_url, "SELECT count(*) AS n FROM orders")[0]["n"] == 1


def test_a_retry_after_a_restart_answers_the_order_recorded_before(database_url):
    with start_oms(database_url=database_url) as oms:
        oms.paper.set_price("INFY", "1500")
        first = oms.place_order(buy("INFY", 5, stop_loss="1450", client_order_id="restart-1"))
    with start_oms(database_url=database_url) as oms:
        again = oms.place_order(buy("INFY", 5, stop_loss="1450", client_order_id="restart-1"))
        assert again.order_id == first.order_id
        assert again.status is OrderStatus.FILLED
        assert len(oms.paper.orders()) == 1  # the book outlives the restart; nothing new in it
    assert rows(database_url, "SELECT count(*) AS n FROM orders")[0]["n"] == 1


def test_a_retry_of_a_refused_order_meets_the_same_refusal(sqlite_url):
    with start_oms(database_url=sqlite_url) as oms:
        oms.paper.set_price("INFY", "1500")
        with pytest.raises(OrderRejected) as first:
            oms.place_order(buy("INFY", 5, client_order_id="no-stop"))  # a stop loss is required
        with pytest.raises(OrderRejected) as again:
            oms.place_order(buy("INFY", 5, client_order_id="no-stop"))
        assert again.value.order_id == first.value.order_id
        assert again.value.failed_check == first.value.failed_check == "stop_loss_required"
        assert broker_orders(oms) == 0
    assert rows(sqlite_url, "SELECT count(*) AS n FROM orders")[0]["n"] == 1


def test_a_client_order_id_must_be_short_plain_text():
    with pytest.raises(ValueError, match="client_order_id"):
        buy("INFY", 1, client_order_id="has space")
    with pytest.raises(ValueError, match="client_order_id"):
        buy("INFY", 1, client_order_id="x" * 65)
    with pytest.raises(ValueError, match="client_order_id"):
        buy("INFY", 1, client_order_id="")
    assert buy("INFY", 1, client_order_id="A1._:-z").client_order_id == "A1._:-z"


def test_the_database_refuses_a_second_order_with_one_client_order_id_in_an_account(database_url):
    from datetime import datetime, timezone

    from domain.order import Order

    at = datetime(2024, 11, 25, 4, 0, tzinfo=timezone.utc)
    store = Store.open(database_url)
    other = Store(store.engine, account="other")
    try:
        first = created(Order.from_request(1, buy("INFY", 1, client_order_id="dup"), at, tag="T1"))
        second = created(Order.from_request(2, buy("INFY", 1, client_order_id="dup"), at, tag="T2"))
        store.record_new_order(*first)
        with pytest.raises(IntegrityError):
            store.record_new_order(*second)
        elsewhere = created(Order.from_request(3, buy("INFY", 1, client_order_id="dup"), at, tag="T3"))
        other.record_new_order(*elsewhere)  # another account may use the same id
        assert store.load_order_by_client_id("dup").order_id == 1
        assert other.load_order_by_client_id("dup").order_id == 3
    finally:
        store.close()


def test_a_client_order_id_reused_for_a_different_order_is_refused_and_sends_nothing(database_url):
    with start_oms(database_url=database_url) as oms:
        oms.paper.set_price("INFY", "1500")
        oms.paper.set_price("TCS", "3500")
        first = oms.place_order(buy("INFY", 3, stop_loss="1450", client_order_id="entry-9"))
        with pytest.raises(ValueError, match="client_order_id: entry-9 names order .* with symbol INFY, not TCS"):
            oms.place_order(buy("TCS", 3, stop_loss="3450", client_order_id="entry-9"))
        with pytest.raises(ValueError, match="with side BUY, not SELL"):
            oms.place_order(OrderRequest(symbol="INFY", side="SELL", quantity=3, client_order_id="entry-9"))
        # Yesterday's id again for today's order (another quantity, price or stop): refused, not answered as a retry.
        with pytest.raises(ValueError, match="with quantity 3, not 50"):
            oms.place_order(buy("INFY", 50, stop_loss="1450", client_order_id="entry-9"))
        with pytest.raises(ValueError, match="with stop_loss 1450, not 1440"):
            oms.place_order(buy("INFY", 3, stop_loss="1440", client_order_id="entry-9"))
        assert oms.place_order(buy("INFY", 3, stop_loss="1450", client_order_id="entry-9")).order_id == first.order_id
        assert len(oms.paper.orders()) == 1
    with start_oms(database_url=database_url) as oms:  # the same from the database after a restart
        with pytest.raises(ValueError, match="with quantity 3, not 4"):
            oms.place_order(buy("INFY", 4, stop_loss="1450", client_order_id="entry-9"))
        # Another strategy's order is not described to it.
        with pytest.raises(ValueError, match="^client_order_id: entry-9 is already used by another order; a new order"):
            oms.place_order(buy("INFY", 3, stop_loss="1450", strategy_id=4, client_order_id="entry-9"))
    assert rows(database_url, "SELECT count(*) AS n FROM orders")[0]["n"] == 1
