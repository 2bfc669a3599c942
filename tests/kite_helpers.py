"""Helpers for tests that run the whole OMS on Kite mode against the Kite emulator."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from actors import OMS, start_oms
from emulator import KiteEmulator

# Credentials the tests look for in logs and messages: none may ever show up there.
KEY, SECRET, TOKEN = "kite-key-test-5e2a", "kite-secret-test-8c1d", "kite-token-test-47b9"
CREDENTIALS = (KEY, SECRET, TOKEN)


@contextmanager
def kite_emulator(**prices: str) -> Iterator[KiteEmulator]:
    with KiteEmulator(KEY, SECRET, TOKEN) as emulator:
        for symbol, price in (prices or {"INFY": "1500", "RELIANCE": "2450"}).items():
            emulator.set_price(symbol, price)
        yield emulator


def start_kite_oms(emulator: KiteEmulator, database_url: str, **overrides: Any) -> OMS:
    """The OMS in Kite mode against ``emulator``: fast polling, a short client timeout,
    a short look-up window. The websocket is off unless asked for (``kite_ticker=True``):
    the tests of Kite mode are tests of the polling path, which must work on its own."""
    settings: dict[str, Any] = dict(
        broker="kite", database_url=database_url, kite_root=emulator.url, kite_ws_root=emulator.ws_url,
        kite_ticker=False, kite_api_key=KEY,
        kite_api_secret=SECRET, kite_access_token=TOKEN, kite_timeout=1.0, kite_poll_interval=0.05,
        kite_lookup_misses=4, kite_lookup_pause=0.1,
        enforce_market_hours=False,  # the emulator trades at any hour; the clock rules have tests of their own
    )
    settings.update(overrides)
    return start_oms(**settings)


def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "the condition") -> Any:
    """Poll ``check`` until it returns something truthy (the broker is polled too)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never held within {timeout}s")
        time.sleep(0.02)


def assert_no_credentials(*texts: str) -> None:
    for text in texts:
        for secret in CREDENTIALS:
            assert secret not in text, "a credential leaked"
