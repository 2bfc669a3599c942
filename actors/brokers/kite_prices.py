"""KitePrices: Kite's live last prices for the paper exchange, so a strategy can paper
trade at the market's real prices before it risks money. Reads only: no order ever
goes to Kite from here.

An instrument is followed from the moment it is asked for (``follow``: a watchlist at
start, or the first order for it). Its first price, and its instrument token, come
from one ``ltp()`` read at once (the order needs a price now, and Kite's LTP answer
names the token the ticker streams it under, so the paper OMS need not download the
whole instrument master). From then on:

- with the websocket on (``ticker``), the token is subscribed in LTP mode and every
  tick's last price is handed on;
- while the websocket is off, not yet connected, or down, a thread reads ``ltp()`` for
  every followed instrument every ``interval`` seconds (one call for all of them,
  through the quote limit of 1 a second that every Kite read of this account obeys).

A price is handed to ``on_price(exchange, symbol, price)`` only when it changed.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from kiteconnect import KiteConnect

from actors.brokers import kite_parsing as parse
from actors.brokers.kite_calls import KiteCalls, TokenState
from actors.brokers.kite_rates import KiteGates, KiteRateLimits
from actors.brokers.kite_ticker import DEFAULT_WS_ROOT, TickerClient
from actors.brokers.kite_ticks import MODE_LTP, Tick

log = logging.getLogger("oms.kite.prices")


class KitePrices:
    """Owns the followed instruments ("NSE:INFY" -> token), the last price handed on
    for each, a Kite client for ``ltp()`` (one call at a time), the websocket client in
    LTP mode (when ``ticker``) and the polling thread that stands in for it."""

    def __init__(
        self,
        *,
        api_key: str,
        access_token: str,
        on_price: Callable[[str, str, Decimal], None],
        root: str = "https://api.kite.trade",
        ws_root: str = DEFAULT_WS_ROOT,
        ticker: bool = True,
        interval: float = 1.0,
        timeout: float = 7.0,
        rate_limits: KiteRateLimits | None = None,
        client_factory: Callable[..., Any] = KiteConnect,
    ) -> None:
        self._on_price = on_price
        self._interval = interval
        self._token = TokenState()
        self._stop = threading.Event()
        self._client = client_factory(api_key, access_token, root=root, timeout=timeout)
        self._calls = KiteCalls(self._client, self._token, gates=KiteGates.from_limits(rate_limits or KiteRateLimits()),
                                sleep=self._stop.wait)
        self._reading = threading.Lock()  # one ltp() at a time: one client, one session
        self._lock = threading.Lock()
        self._tokens: dict[str, int] = {}  # "NSE:INFY" -> instrument token
        self._keys: dict[int, str] = {}  # and back
        self._last: dict[str, Decimal] = {}
        self._ticker = TickerClient(ws_root, api_key, access_token, on_ticks=self._ticks, name="kite-prices-ticker") if ticker else None
        self._poller: threading.Thread | None = None

    def __repr__(self) -> str:  # never the credentials
        return "KitePrices()"

    def start(self, watchlist: Iterable[tuple[str, str]] = ()) -> None:
        """Follow ``watchlist`` ((exchange, symbol) pairs) and start streaming."""
        wanted = [f"{exchange}:{symbol}" for exchange, symbol in watchlist]
        if wanted:
            try:
                self._read(wanted)
            except Exception as error:  # noqa: BLE001 - the polling thread tries again
                log.warning("could not read Kite's prices of the watchlist at start (%s)", error)
                with self._lock:
                    self._tokens.update((key, 0) for key in wanted if key not in self._tokens)
        if self._ticker is not None:
            self._ticker.start()
        self._poller = threading.Thread(target=self._poll, name="kite-prices-poller", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.stop()
        if self._poller is not None:
            self._poller.join(15)
        self._poller = None

    def set_access_token(self, access_token: str) -> None:
        """Read and stream with the day's fresh token."""
        with self._reading:
            self._client.set_access_token(access_token)
        self._token.renew()
        if self._ticker is not None:
            self._ticker.set_access_token(access_token)

    @property
    def followed(self) -> dict[str, int]:
        """The followed instruments and their tokens (0: not read yet)."""
        with self._lock:
            return dict(self._tokens)

    @property
    def streaming(self) -> bool:
        """True while prices come by the websocket (else by polling)."""
        return self._ticker is not None and self._ticker.connected

    # ------------------------------------------------------------------ following

    def follow(self, exchange: str, symbol: str) -> Decimal | None:
        """Follow an instrument from now on; answers its last price (read now if it
        has none yet; None when Kite does not know it or cannot be read)."""
        key = f"{exchange}:{symbol}"
        with self._lock:
            if self._tokens.get(key):
                return self._last.get(key)
        try:
            self._read([key])
        except Exception as error:  # noqa: BLE001 - the order goes on; unpriced, the paper exchange refuses it
            log.warning("could not read Kite's price of %s (%s)", key, error)
            return None
        with self._lock:
            return self._last.get(key)

    def _read(self, keys: list[str]) -> None:
        """ltp() of ``keys``: their tokens learnt (and subscribed), their prices handed on."""
        with self._reading:
            quotes = parse.last_prices_with_tokens(self._calls.ltp(*keys))
        fresh = []
        with self._lock:
            for key in keys:
                if key not in quotes:
                    log.warning("Kite has no last price for %s", key)
                    continue
                token = quotes[key][0]
                if not self._tokens.get(key):
                    fresh.append(token)
                self._tokens[key] = token
                self._keys[token] = key
        for key, (_, price) in quotes.items():
            self._hand_on(key, price)
        if fresh and self._ticker is not None:
            self._ticker.subscribe(fresh, MODE_LTP)

    def _ticks(self, ticks: list[Tick]) -> None:
        for tick in ticks:
            with self._lock:
                key = self._keys.get(tick.instrument_token)
            if key is not None and tick.last_price > 0:
                self._hand_on(key, tick.last_price)

    def _hand_on(self, key: str, price: Decimal) -> None:
        with self._lock:
            if self._last.get(key) == price:
                return
            self._last[key] = price
        exchange, symbol = key.split(":", 1)
        try:
            self._on_price(exchange, symbol, price)
        except Exception:  # the next price is tried all the same
            log.exception("the price %s of %s could not be handed on", price, key)

    def _poll(self) -> None:
        failing = False
        while not self._stop.wait(self._interval):
            if self.streaming:
                continue
            keys = list(self.followed)
            if not keys:
                continue
            try:
                self._read(keys)
            except Exception as error:  # noqa: BLE001 - a flaky read: keep trying
                log.log(logging.DEBUG if failing else logging.WARNING, "reading Kite's prices failed: %s", error)
                failing = True
            else:
                failing = False
