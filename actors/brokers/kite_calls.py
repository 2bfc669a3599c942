"""Calls to Kite through the official client, and what each failure means to the OMS.

``KiteCalls`` owns one ``kiteconnect.KiteConnect`` (one HTTP session: use one per
thread) and turns the client's exceptions into the Broker port's outcomes:

- InputException, OrderException (and other refusals with a 4xx code): BrokerRejected,
  in Kite's words; nothing was placed or changed.
- TokenException, PermissionException: BrokerUnavailable, and the shared ``TokenState``
  remembers it, so nothing more is sent until a fresh access token is set.
- 429 on a write: BrokerUnavailable (Kite refused it for the rate; it was not placed),
  never retried. Reads after a 429 back off and try again. Either way the gate of its
  family pauses, so the next request does not meet the same 429.
- Before any call, the gate of its family (``kite_rates``: order requests, other calls,
  quotes) waits for room under Kite's limits, or refuses (RateRefused, a
  BrokerUnavailable: nothing sent) when the wait would be too long.
- A timeout or a connection lost after sending, a 5xx, or a body the client cannot
  read: BrokerAmbiguous, since the request may have taken effect. A connection that
  could not even be opened: BrokerUnavailable.

Messages never carry credentials: the client sends them in a header, and no header,
URL query or request body is put into a message here.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from kiteconnect import exceptions as kex
from urllib3.exceptions import NewConnectionError

from actors.brokers.kite_rates import KiteGates, KiteRateLimits, RateGate
from domain.broker import BrokerAmbiguous, BrokerRejected, BrokerUnavailable

log = logging.getLogger("oms.kite")
T = TypeVar("T")

_REFUSALS = (kex.InputException, kex.OrderException)
_AUTH = (kex.TokenException, kex.PermissionException)


class TokenState:
    """Whether Kite still takes the access token; shared by every KiteCalls of one
    broker, so a refusal seen by the poller also stops the next order.

    Each fresh token starts a new ``generation``: a refusal of a request sent with an
    older token (a read still in flight when the new token was set) is ignored, or it
    would refuse the fresh token too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refused: str | None = None
        self._generation = 0

    @property
    def generation(self) -> int:
        with self._lock:
            return self._generation

    def refuse(self, reason: str, generation: int | None = None) -> None:
        with self._lock:
            if generation is not None and generation != self._generation:
                return  # sent with a token that has been replaced since
            first = self._refused is None
            self._refused = reason
        if first:
            log.error("Kite refused the access token: %s; no order is sent until a fresh token is set", reason)

    def renew(self) -> None:
        with self._lock:
            was, self._refused = self._refused, None
            self._generation += 1
        if was is not None:
            log.warning("Kite access token renewed: orders are sent again")

    @property
    def refused(self) -> str | None:
        with self._lock:
            return self._refused


def _token_reason(error: Exception) -> str:
    return (
        f"Kite refused the session ({type(error).__name__}: {error}); the access token has expired or "
        "was invalidated: log in again (oms-login) and set the fresh token (oms.set_access_token, "
        "or the secrets file the OMS watches)"
    )


def _never_connected(error: Exception) -> bool:
    """True when the connection itself could not be made (refused, unresolvable, timed
    out while connecting), so nothing was sent."""
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return True
    if not isinstance(error, requests.exceptions.ConnectionError) or not error.args:
        return False
    # requests wraps urllib3's MaxRetryError, whose reason says what failed.
    return isinstance(getattr(error.args[0], "reason", None), NewConnectionError)


class KiteCalls:
    """One client's calls, each through its rate gate and with its failures mapped
    (see the module's docstring). ``gates`` are shared by every KiteCalls of one account."""

    def __init__(
        self,
        client: Any,
        token: TokenState,
        *,
        gates: KiteGates | None = None,
        read_attempts: int = 4,
        backoff: float = 0.25,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self._client = client
        self._token = token
        self._gates = gates or KiteGates.from_limits(KiteRateLimits())
        self._read_attempts = read_attempts
        self._backoff = backoff
        self._sleep = sleep

    # ------------------------------------------------------------------ writes

    def place(self, params: dict[str, Any]) -> str:
        return str(self._write("place", lambda: self._client.place_order(**params)))

    def modify(self, params: dict[str, Any]) -> str:
        return str(self._write("modify", lambda: self._client.modify_order(**params)))

    def cancel(self, variety: str, order_id: str) -> str:
        return str(self._write("cancel", lambda: self._client.cancel_order(variety, order_id)))

    def _write(self, what: str, call: Callable[[], T]) -> T:
        refused = self._token.refused
        if refused is not None:
            raise BrokerUnavailable(f"{what} not sent: {refused}")
        self._gates.orders.admit(what, self._sleep)  # may wait its turn, or refuse
        generation = self._token.generation
        try:
            return call()
        except _AUTH as error:
            self._token.refuse(_token_reason(error), generation)
            raise BrokerUnavailable(f"{what} not sent: {_token_reason(error)}") from None
        except kex.NetworkException as error:
            if error.code == 429:
                self._gates.orders.hold_off()
                raise BrokerUnavailable(f"{what} not sent: Kite's rate limit (HTTP 429: {error}); try again later") from None
            raise BrokerAmbiguous(f"{what}: Kite answered HTTP {error.code} ({error}); it may have taken effect") from None
        except _REFUSALS as error:
            raise BrokerRejected(str(error)) from None
        except kex.KiteException as error:
            if 400 <= error.code < 500:
                raise BrokerRejected(f"{error} (HTTP {error.code})") from None
            raise BrokerAmbiguous(f"{what}: Kite answered {type(error).__name__} HTTP {error.code}; it may have taken effect") from None
        except requests.exceptions.RequestException as error:
            if _never_connected(error):
                raise BrokerUnavailable(f"{what} not sent: cannot connect to Kite ({type(error).__name__})") from None
            raise BrokerAmbiguous(f"{what}: no answer from Kite ({type(error).__name__}); it may have taken effect") from None

    # ------------------------------------------------------------------ reads

    def orders(self) -> list[dict[str, Any]]:
        return self._read("orders", self._client.orders)

    def order_history(self, order_id: str) -> list[dict[str, Any]]:
        return self._read("order_history", lambda: self._client.order_history(order_id))

    def order_trades(self, order_id: str) -> list[dict[str, Any]]:
        return self._read("order_trades", lambda: self._client.order_trades(order_id))

    def trades(self) -> list[dict[str, Any]]:
        return self._read("trades", self._client.trades)

    def positions(self) -> dict[str, Any]:
        return self._read("positions", self._client.positions)

    def margins(self, segment: str | None = None) -> dict[str, Any]:
        return self._read("margins", lambda: self._client.margins(segment))

    def ltp(self, *instruments: str) -> dict[str, Any]:
        return self._read("ltp", lambda: self._client.ltp(*instruments), self._gates.quotes)

    def instruments(self, exchange: str | None = None) -> list[dict[str, Any]]:
        return self._read("instruments", lambda: self._client.instruments(exchange))

    def _read(self, what: str, call: Callable[[], T], gate: RateGate | None = None) -> T:
        """A read changes nothing, so a 429 (or a 5xx) is waited out and tried again."""
        refused = self._token.refused
        if refused is not None:
            raise BrokerUnavailable(f"{what} not read: {refused}")
        gate = gate or self._gates.calls
        pause = self._backoff
        for attempt in range(1, self._read_attempts + 1):
            gate.admit(what, self._sleep)  # every attempt is a request Kite counts
            generation = self._token.generation
            try:
                return call()
            except _AUTH as error:
                self._token.refuse(_token_reason(error), generation)
                raise BrokerUnavailable(f"{what} not read: {_token_reason(error)}") from None
            except kex.KiteException as error:
                retry = error.code == 429 or error.code >= 500
                if error.code == 429:
                    gate.hold_off(pause)
                if not retry or attempt == self._read_attempts:
                    raise BrokerUnavailable(f"{what} not read: {type(error).__name__} HTTP {error.code}: {error}") from None
                log.info("Kite %s: HTTP %s (%s); trying again in %.2fs", what, error.code, error, pause)
            except requests.exceptions.RequestException as error:
                if attempt == self._read_attempts:
                    raise BrokerUnavailable(f"{what} not read: no answer from Kite ({type(error).__name__})") from None
                log.info("Kite %s: %s; trying again in %.2fs", what, type(error).__name__, pause)
            self._sleep(pause)
            pause *= 2
        raise AssertionError("unreachable")
