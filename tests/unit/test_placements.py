"""The shared reply of a placement with a client order id, and the supervisor's book of
ids: one answer for the placer and every retry that joined it; a failure to record or
send forgets the id (the database then has the word), a refusal keeps it."""
from __future__ import annotations

import pykka
import pytest

from actors.placements import ClientOrderIds, SharedReply
from actors.trading import PlaceOrder
from domain.enums import OrderStatus
from domain.errors import OMSUnavailable, OrderRejected, OrderSubmissionFailed
from domain.results import OrderResult
from tests.oms_helpers import buy


def futures(n: int) -> list[pykka.ThreadingFuture]:
    return [pykka.ThreadingFuture() for _ in range(n)]


def test_every_joined_retry_hears_the_first_placements_answer():
    first, second, third = futures(3)
    forgotten = []
    shared = SharedReply(first, forgotten.append)
    assert shared.join(second) and shared.join(third)
    result = OrderResult(7, "B1", OrderStatus.OPEN, "accepted by the broker")
    shared.set(result)
    assert [f.get(timeout=1) for f in (first, second, third)] == [result] * 3
    assert shared.done and not shared.forgotten and forgotten == []
    late = pykka.ThreadingFuture()
    assert shared.join(late) is False  # answered already: the caller answers from the order
    with pytest.raises(RuntimeError):
        shared.set(result)


def test_a_refusal_is_kept_and_a_failure_to_send_is_forgotten():
    placer, retry = futures(2)
    forgotten = []
    refused = SharedReply(placer, forgotten.append)
    refused.join(retry)
    refused.set_exception(OrderRejected("no stop loss", "stop_loss_required", 3))
    for future in (placer, retry):
        with pytest.raises(OrderRejected):
            future.get(timeout=1)
    assert not refused.forgotten and forgotten == []

    failed = SharedReply(pykka.ThreadingFuture(), forgotten.append)
    failed.set_exception(OrderSubmissionFailed("not recorded, not sent"))
    assert failed.forgotten and forgotten == [failed]


def test_the_book_forgets_only_the_placement_it_is_told_of_and_keeps_those_in_flight():
    book = ClientOrderIds(limit=2)
    in_flight = SharedReply(pykka.ThreadingFuture(), lambda _: None)
    book.claim("a", PlaceOrder(buy("INFY", 1, client_order_id="a")), in_flight)
    book.forget("a", SharedReply(pykka.ThreadingFuture(), lambda _: None))  # another placement's: ignored
    assert book.get("a").reply is in_flight
    book.known("b", 2)
    book.known("c", 3)  # over the limit: the settled "b" goes, "a" (in flight) stays
    assert book.get("a") is not None and book.get("b") is None and book.get("c").order_id == 3
    book.forget("a", in_flight)
    assert book.get("a") is None


def test_a_second_answer_does_not_turn_a_settled_placement_into_a_forgotten_one():
    forgotten: list[object] = []
    reply = SharedReply(None, forgotten.append)
    reply.set_exception(OrderRejected("risk per trade", "risk_per_trade", 7))
    with pytest.raises(RuntimeError, match="already answered"):
        reply.set_exception(OMSUnavailable("the group's write failed"))
    assert reply.done and not reply.forgotten and forgotten == []
