"""What each failure of the kiteconnect client means to the OMS (kite_calls): a fake
client raises what the real one raises; the connection-refused case uses the real one."""
from __future__ import annotations

import socket

import pytest
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from actors.brokers.kite_calls import KiteCalls, TokenState
from actors.brokers.kite_rates import KiteGates, KiteRateLimits, RateRefused
from domain.broker import BrokerAmbiguous, BrokerRejected, BrokerUnavailable


class FakeClient:
    """Raises the queued errors in turn, then answers."""

    def __init__(self, *errors: Exception, answer=None) -> None:
        self.errors = list(errors)
        self.answer = answer
        self.calls = 0

    def _call(self, *args, **kwargs):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.answer

    place_order = modify_order = cancel_order = orders = trades = _call


class FakeTime:
    """The gates' clock, moved on by every pause, so nothing really sleeps."""

    def __init__(self, pauses: list | None) -> None:
        self.now = 0.0
        self.pauses = pauses if pauses is not None else []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def calls_on(client, token: TokenState | None = None, pauses: list | None = None, limits: KiteRateLimits | None = None) -> KiteCalls:
    time = FakeTime(pauses)
    gates = KiteGates.from_limits(limits or KiteRateLimits(), clock=lambda: time.now)
    return KiteCalls(client, token or TokenState(), gates=gates, read_attempts=3, backoff=0.1, sleep=time.sleep)


@pytest.mark.parametrize(
    ("error", "outcome", "words"),
    [
        (kex.InputException("Invalid `tradingsymbol`."), BrokerRejected, "Invalid `tradingsymbol`."),
        (kex.OrderException("Order cannot be modified", code=400), BrokerRejected, "Order cannot be modified"),
        (kex.NetworkException("Too many requests", code=429), BrokerUnavailable, "rate limit"),
        (kex.NetworkException("Service unavailable", code=503), BrokerAmbiguous, "may have taken effect"),
        (kex.GeneralException("Something went wrong", code=500), BrokerAmbiguous, "may have taken effect"),
        (kex.DataException("Unknown Content-Type (text/html)", code=502), BrokerAmbiguous, "may have taken effect"),
        (requests.exceptions.ReadTimeout("read timed out"), BrokerAmbiguous, "no answer from Kite"),
        (requests.exceptions.ConnectionError("Connection aborted. RemoteDisconnected"), BrokerAmbiguous, "no answer"),
        (requests.exceptions.ConnectTimeout("connect timed out"), BrokerUnavailable, "cannot connect"),
    ],
)
def test_each_place_failure_maps_to_a_port_outcome(error, outcome, words):
    with pytest.raises(outcome, match=words.replace("(", r"\(").replace(")", r"\)")) as raised:
        calls_on(FakeClient(error)).place({"tag": "T1"})
    assert type(raised.value) is outcome


@pytest.mark.parametrize("error", [kex.TokenException("Token is invalid or has expired."), kex.PermissionException("Not allowed")])
def test_a_refused_session_stops_every_later_write_without_a_call(error):
    token = TokenState()
    client = FakeClient(error, answer="1")
    calls = calls_on(client, token)
    with pytest.raises(BrokerUnavailable, match="log in again") as first:
        calls.place({})
    with pytest.raises(BrokerUnavailable, match="log in again"):
        calls.cancel("regular", "1")
    with pytest.raises(BrokerUnavailable):
        calls.orders()
    assert client.calls == 1 and token.refused is not None
    assert "Token" in str(first.value) or "Not allowed" in str(first.value)
    token.renew()
    assert calls.place({}) == "1"


def test_reads_wait_out_a_429_and_try_again():
    pauses: list[float] = []
    client = FakeClient(kex.NetworkException("Too many requests", code=429),
                        kex.NetworkException("Too many requests", code=429), answer=[{"order_id": "1"}])
    assert calls_on(client, pauses=pauses).orders() == [{"order_id": "1"}]
    assert pauses == [0.1, 0.2] and client.calls == 3


def test_a_read_that_keeps_failing_is_unavailable_and_a_bad_request_is_not_retried():
    pauses: list[float] = []
    with pytest.raises(BrokerUnavailable, match="HTTP 429"):
        calls_on(FakeClient(*[kex.NetworkException("Too many", code=429)] * 5), pauses=pauses).orders()
    assert len(pauses) == 2
    client = FakeClient(kex.InputException("Invalid `order_id`."))
    with pytest.raises(BrokerUnavailable, match="Invalid"):
        calls_on(client).trades()
    assert client.calls == 1


def test_order_requests_wait_their_turn_under_the_limit_and_are_refused_past_the_bound():
    pauses: list[float] = []
    client = FakeClient(answer="1")
    calls = calls_on(client, pauses=pauses, limits=KiteRateLimits(orders_per_second=2, orders_per_minute=3, wait_max=2))
    calls.place({})
    calls.modify({})
    calls.cancel("regular", "1")  # the third waits for the first to leave the second
    assert len(pauses) == 1 and 1 < pauses[0] < 1.2
    with pytest.raises(RateRefused, match="place not sent: Kite's limit of 3 order requests a minute") as refused:
        calls.place({})
    assert isinstance(refused.value, BrokerUnavailable) and client.calls == 3


def test_a_429_on_place_is_never_retried_and_the_next_order_request_waits():
    pauses: list[float] = []
    client = FakeClient(kex.NetworkException("Too many requests", code=429), answer="1")
    calls = calls_on(client, pauses=pauses)
    with pytest.raises(BrokerUnavailable, match="HTTP 429"):
        calls.place({})
    assert client.calls == 1 and pauses == []
    assert calls.place({}) == "1"
    assert pauses == [pytest.approx(1.0)]


def test_a_place_to_a_closed_port_never_reached_kite():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = KiteConnect("key", "token", root=f"http://127.0.0.1:{port}", timeout=1)
    with pytest.raises(BrokerUnavailable, match="cannot connect"):
        KiteCalls(client, TokenState()).place({"variety": "regular", "exchange": "NSE", "tradingsymbol": "INFY",
                                               "transaction_type": "BUY", "quantity": 1, "product": "MIS",
                                               "order_type": "MARKET"})


def test_a_refusal_of_a_request_sent_with_the_old_token_does_not_refuse_the_fresh_one():
    token = TokenState()
    in_flight = token.generation  # a read sent before the fresh token was set...
    token.refuse("expired")
    token.renew()
    token.refuse("expired", in_flight)  # ...answers 403 after it
    assert token.refused is None
    token.refuse("expired again", token.generation)
    assert token.refused == "expired again"
