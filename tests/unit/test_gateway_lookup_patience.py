"""A broker whose reads lag (Kite) is asked again before "not found" is believed: the
gateway re-asks ``lookup_misses`` times, ``lookup_pause`` apart, and only then answers
a final miss; a hit in between is answered at once, and nothing is ever re-sent."""
from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Iterator

import pytest

from actors.broker_gateway import BrokerGateway
from actors.messages import FindByTag, LookupResult
from domain.broker import BrokerOrderUpdate, BrokerUnavailable
from tests.actor_probes import ActorGroup, actor_group, tag_of

T0 = datetime(2026, 11, 30, 4, 0, tzinfo=timezone.utc)
TAG = tag_of(1)


class LaggingBroker:
    """Lists an order only from its ``shows_from``-th look-up; counts the look-ups."""

    lookups_are_authoritative = False
    lookup_pause = 0.02

    def __init__(self, misses: int, shows_from: int | None, fails: int = 0) -> None:
        self.lookup_misses = misses
        self.shows_from = shows_from
        self.fails = fails
        self.lookups = 0
        self.placed = 0
        self._lock = threading.Lock()

    def connect(self, sink) -> None:
        pass

    def close(self) -> None:
        pass

    def find_by_tag(self, tag: str):
        with self._lock:
            self.lookups += 1
            if self.lookups <= self.fails:
                raise BrokerUnavailable("read timed out")
            if self.shows_from is None or self.lookups < self.shows_from:
                return None
        return BrokerOrderUpdate("900", tag, "OPEN", 10, 0, T0)

    def trades(self, broker_order_id=None):
        return []

    def place(self, request):
        self.placed += 1
        raise AssertionError("a look-up never places")


@pytest.fixture
def actors() -> Iterator[ActorGroup]:
    yield from actor_group()


def look_up(actors: ActorGroup, broker: LaggingBroker) -> list[LookupResult]:
    tracker = actors.probe("tracker")
    gateway = actors.start(BrokerGateway, broker, supervisor=actors.probe("supervisor").ref)
    gateway.tell(FindByTag(1, TAG, tracker.ref))
    tracker.wait_for(LookupResult)
    tracker.settle()
    return tracker.of_type(LookupResult)


def test_an_order_listed_late_is_found_by_asking_again(actors):
    broker = LaggingBroker(misses=5, shows_from=3)
    (result,) = look_up(actors, broker)
    assert result.found.broker_order_id == "900"
    assert broker.lookups == 3 and broker.placed == 0


def test_only_misses_in_a_row_over_the_window_make_a_final_not_found(actors):
    broker = LaggingBroker(misses=4, shows_from=None)
    (result,) = look_up(actors, broker)
    assert (result.found, result.authoritative) == (None, True)
    assert broker.lookups == 4


def test_failed_reads_are_retried_but_never_count_as_not_found(actors):
    broker = LaggingBroker(misses=3, shows_from=None, fails=10)
    (result,) = look_up(actors, broker)
    assert (result.found, result.authoritative) == (None, False)  # unknown, not absent
    assert broker.lookups == 3


def test_a_broker_without_patience_answers_the_first_miss_as_before(actors):
    broker = LaggingBroker(misses=1, shows_from=None)
    (result,) = look_up(actors, broker)
    assert (result.found, result.authoritative) == (None, False)
    assert broker.lookups == 1
