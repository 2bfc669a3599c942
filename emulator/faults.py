"""Misbehaviour on demand: what a real Kite (or the network to it) does on a bad day.

Each fault names the routes it hits (``"place"``, ``"modify"``, ``"cancel"``,
``"orders"``, ``"order_history"``, ``"order_trades"``, ``"trades"``, ``"positions"``,
``"margins"``, ``"ltp"``, ``"instruments"``, ``"session"``; None: every route) and how
many requests it spoils (None: until cleared). The server asks the plan, per request,
what to do: wait, answer with an error without touching the book, or handle the
request and then withhold the answer (the order exists; the client never hears so).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterable

ROUTES = frozenset({
    "place", "modify", "cancel", "orders", "order_history", "order_trades", "trades",
    "positions", "margins", "ltp", "instruments", "session", "profile",
})

# What Kite sends with each status when no error type is given.
_DEFAULT_ERRORS = {
    429: ("NetworkException", "Too many requests"),
    500: ("GeneralException", "Something went wrong"),
    502: ("DataException", "Bad gateway: the order management system did not answer"),
    503: ("NetworkException", "Service unavailable"),
    504: ("NetworkException", "Gateway timed out"),
}


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error to answer with. ``html``: a load balancer's page rather than Kite's JSON."""

    status: int
    error_type: str
    message: str
    html: bool = False
    after_accept: bool = False  # the request is carried out first, then the error sent


@dataclass(slots=True)
class _Rule:
    kind: str  # "latency", "error" or "timeout"
    routes: frozenset[str] | None
    remaining: int | None
    seconds: float = 0.0
    error: ErrorReply | None = None

    def hits(self, route: str) -> bool:
        return (self.routes is None or route in self.routes) and (self.remaining is None or self.remaining > 0)

    def spend(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1


def _routes(routes: str | Iterable[str] | None) -> frozenset[str] | None:
    if routes is None:
        return None
    chosen = frozenset([routes] if isinstance(routes, str) else routes)
    unknown = chosen - ROUTES
    if unknown:
        raise ValueError(f"unknown route(s) {sorted(unknown)}; known: {sorted(ROUTES)}")
    return chosen


class Faults:
    """The fault plan of one emulator; thread-safe (requests are served in parallel)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self.read_lag = 0.0

    def delay(self, seconds: float, routes: str | Iterable[str] | None = None, times: int | None = None) -> None:
        """Answer matching requests ``seconds`` late (the work is done after the wait)."""
        self._add(_Rule("latency", _routes(routes), times, seconds=seconds))

    def fail(
        self,
        status: int,
        routes: str | Iterable[str] | None = "place",
        times: int | None = 1,
        error_type: str | None = None,
        message: str | None = None,
        html: bool = False,
        after_accept: bool = False,
    ) -> None:
        """Answer matching requests with HTTP ``status`` and touch nothing: 429 (rate
        limited), 5xx (Kite's back end down), 403 with TokenException, ... ``html`` sends
        a gateway's HTML page instead of Kite's JSON (the client then cannot read it).
        ``after_accept``: carry the request out first (a gateway that timed out while
        the order went through), then answer the error."""
        default_type, default_message = _DEFAULT_ERRORS.get(status, ("GeneralException", f"HTTP {status}"))
        error = ErrorReply(status, error_type or default_type, message or default_message, html, after_accept)
        self._add(_Rule("error", _routes(routes), times, error=error))

    def timeout_after_accept(self, routes: str | Iterable[str] | None = "place", times: int | None = 1, hold: float = 30.0) -> None:
        """Carry out matching requests (the order is placed) but withhold the answer for
        ``hold`` seconds (or until the emulator stops), then drop the connection: the
        client times out not knowing the order exists."""
        self._add(_Rule("timeout", _routes(routes), times, seconds=hold))

    def lag_reads(self, seconds: float) -> None:
        """Leave orders younger than ``seconds`` out of every read (orders, history,
        trades), as Kite's order book lags its order entry."""
        self.read_lag = seconds

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self.read_lag = 0.0

    # ------------------------------------------------------------------ for the server

    def before(self, route: str) -> tuple[float, ErrorReply | None]:
        """Seconds to wait, and the error to answer with instead of handling, if any."""
        wait = 0.0
        with self._lock:
            for rule in self._rules:
                if rule.kind == "latency" and rule.hits(route):
                    rule.spend()
                    wait += rule.seconds
            for rule in self._rules:
                if rule.kind == "error" and rule.hits(route):
                    rule.spend()
                    return wait, rule.error
        return wait, None

    def withhold(self, route: str) -> float | None:
        """Seconds to sit on the answer of a handled request before dropping it, or None."""
        with self._lock:
            for rule in self._rules:
                if rule.kind == "timeout" and rule.hits(route):
                    rule.spend()
                    return rule.seconds
        return None

    def _add(self, rule: _Rule) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if r.remaining is None or r.remaining > 0] + [rule]
