"""TickerClient: Kite's websocket (the KiteTicker's protocol), on a thread of its own,
reconnecting with backoff.

Why not kiteconnect's own ``KiteTicker``: it runs on Twisted, whose process-wide reactor
cannot be restarted once stopped, and an OMS is started and stopped many times in one
process (every test does); it is also known to miss dead connections. This client
speaks the same wire protocol (``kite_ticks``) over the ``websockets`` package's
threaded client: a maintained library (RFC 6455, keep-alive pings with a timeout, TLS
through the standard ``ssl`` module), with no event loop to share, so each OMS owns its
connection and its thread and stops them cleanly.

What it does:
- connects to ``root?api_key=...&access_token=...`` (the access token travels in the
  URL's query, so the URL is never logged: logs and errors name the root only, and
  every message the client or the library logs is scrubbed of the key and tokens);
- sends the subscriptions (token -> mode) again after every reconnection;
- hands each order update (``{"type": "order"}``) to ``on_order`` and each frame of
  ticks to ``on_ticks``; logs Kite's "error" and "message" frames; ignores heartbeats;
- treats silence (not even a heartbeat) for ``silence_timeout`` seconds as a dead
  connection, as it does an unanswered ping;
- reconnects after ``reconnect_min`` seconds, doubling up to ``reconnect_max`` while it
  fails; a refused session (HTTP 403: the token expired) waits ``reconnect_max``, and
  a fresh token (``set_access_token``) reconnects at once. ``on_open`` is called on
  every (re)connection, so the caller can re-read what it may have missed.

Nothing here is relied on for correctness: the websocket only makes updates faster;
polling is the safety net.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from actors.brokers import kite_ticks as wire

log = logging.getLogger("oms.kite.ticker")
DEFAULT_WS_ROOT = "wss://ws.kite.trade"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class _Scrubbed(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The websockets library's logger, with the key and tokens taken out of every
    message (it logs the request line, which holds the access token, at DEBUG)."""

    def __init__(self, logger: logging.Logger, secrets: Callable[[], Iterable[str]]) -> None:
        super().__init__(logger, {})
        self._secrets = secrets

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            kwargs.pop("exc_info", None)  # a traceback's text is not scrubbed: leave it out
            self.logger.log(level, "%s", _scrub(text, self._secrets()), **kwargs)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class TickerClient:
    """Owns one websocket connection to Kite's ticker, its thread, the subscriptions
    and the credentials it connects with. Callbacks run on its thread: they must be
    quick (hand the news on), and an exception in one is logged, never fatal."""

    def __init__(
        self,
        root: str,
        api_key: str,
        access_token: str,
        *,
        on_order: Callable[[Mapping[str, Any]], None] | None = None,
        on_ticks: Callable[[list[wire.Tick]], None] | None = None,
        on_open: Callable[[], None] | None = None,
        on_close: Callable[[str], None] | None = None,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        silence_timeout: float = 10.0,
        open_timeout: float = 10.0,
        ping_interval: float = 5.0,
        name: str = "kite-ticker",
    ) -> None:
        if not root.startswith(("wss://", "ws://")):
            raise ValueError(f"the websocket root is a ws:// or wss:// URL, got {root!r}")
        self._root = root.rstrip("/")
        self._api_key = api_key
        self._token = access_token
        self._secrets = {api_key, access_token}  # every token ever used: scrubbed from logs
        self._on_order = on_order
        self._on_ticks = on_ticks
        self._on_open = on_open
        self._on_close = on_close
        self._reconnect = (reconnect_min, max(reconnect_min, reconnect_max))
        self._silence = silence_timeout
        self._open_timeout = open_timeout
        self._ping_interval = ping_interval
        self._name = name
        self._lock = threading.Lock()
        self._modes: dict[int, str] = {}  # token -> mode
        self._ws: ClientConnection | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # a fresh token: reconnect now
        self._thread: threading.Thread | None = None
        self._problem: str | None = "not connected yet"
        self._library_log = _Scrubbed(logging.getLogger("oms.kite.ticker.websockets"), self._known_secrets)
        self.connections = 0  # connections opened so far

    def __repr__(self) -> str:  # never the key or the token
        return f"TickerClient({self._root!r})"

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._close_connection()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(15)
        self._thread = None

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._ws is not None

    @property
    def problem(self) -> str | None:
        """Why the websocket is not connected now (None while it is)."""
        with self._lock:
            return self._problem

    def set_access_token(self, access_token: str) -> None:
        """Connect again with a fresh token, at once."""
        with self._lock:
            self._token = access_token
            self._secrets.add(access_token)
        self._wake.set()
        self._close_connection()

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, tokens: Iterable[int], mode: str = wire.MODE_LTP) -> None:
        """Stream ``tokens`` in ``mode`` (now if connected, and after every reconnection)."""
        fresh = [int(t) for t in tokens]
        if mode not in wire.MODES:
            raise ValueError(f"mode: one of {wire.MODES}, got {mode!r}")
        with self._lock:
            self._modes.update((token, mode) for token in fresh)
            ws = self._ws
        if ws is not None and fresh:
            self._send(ws, [wire.subscribe_message(fresh), wire.mode_message(mode, fresh)])

    def unsubscribe(self, tokens: Iterable[int]) -> None:
        gone = [int(t) for t in tokens]
        with self._lock:
            for token in gone:
                self._modes.pop(token, None)
            ws = self._ws
        if ws is not None and gone:
            self._send(ws, [wire.unsubscribe_message(gone)])

    # ------------------------------------------------------------------ the thread

    def _known_secrets(self) -> list[str]:
        with self._lock:
            return sorted(self._secrets, key=len, reverse=True)

    def _url(self) -> str:
        with self._lock:
            query = urlencode({"api_key": self._api_key, "access_token": self._token})
        return f"{self._root}/?{query}"

    def _run(self) -> None:
        delay, failing, refused_token = self._reconnect[0], False, None
        while not self._stop.is_set():
            self._wake.clear()
            opened = self.connections
            refused = False
            try:
                self._session()
                problem = "the connection closed"
            except InvalidStatus as error:
                status = error.response.status_code
                if status == 403:
                    problem = (f"Kite refused the websocket session (HTTP 403) at {self._root}: the access token has "
                               "expired or was invalidated; order updates come by polling until a fresh token is set")
                    delay, refused = self._reconnect[1], True
                else:
                    problem = f"Kite's websocket at {self._root} answered HTTP {status}"
            except (OSError, TimeoutError, WebSocketException) as error:
                problem = f"Kite's websocket at {self._root}: {type(error).__name__}: {self._scrubbed(error)}"
            except Exception as error:  # noqa: BLE001 - the thread must live on; polling covers meanwhile
                problem = f"Kite's websocket at {self._root} failed unexpectedly: {type(error).__name__}: {self._scrubbed(error)}"
            if self._stop.is_set():
                return
            if self.connections > opened:  # it was up: come back quickly
                delay, failing = self._reconnect[0], False
            with self._lock:
                self._problem = problem
                token = self._token
            if refused and refused_token != token:
                log.error("%s; trying again in %.1fs", problem, delay)  # once per token
                refused_token = token
            else:
                log.log(logging.DEBUG if failing else logging.WARNING, "%s; reconnecting in %.1fs", problem, delay)
            failing = True
            self._wake.wait(delay)
            delay = min(delay * 2, self._reconnect[1])

    def _session(self) -> None:
        """One connection, from opening to its end (an exception says how it ended)."""
        host = urlsplit(self._root).hostname or ""
        with connect(
            self._url(), open_timeout=self._open_timeout, ping_interval=self._ping_interval,
            ping_timeout=self._silence, close_timeout=1.0, compression=None, logger=self._library_log,
            proxy=None if host in _LOOPBACK else True,
        ) as ws:
            with self._lock:
                if self._stop.is_set():
                    return
                self._ws, self._problem = ws, None
                modes = dict(self._modes)
            self.connections += 1
            log.info("connected to Kite's websocket at %s", self._root)
            try:
                by_mode: dict[str, list[int]] = {}
                for token, mode in modes.items():
                    by_mode.setdefault(mode, []).append(token)
                if modes:
                    self._send(ws, [wire.subscribe_message(sorted(modes))]
                               + [wire.mode_message(mode, tokens) for mode, tokens in by_mode.items()])
                self._call(self._on_open)
                while not self._stop.is_set():
                    try:
                        message = ws.recv(timeout=self._silence)
                    except TimeoutError:
                        raise TimeoutError(f"nothing heard for {self._silence}s, not even a heartbeat") from None
                    self._take(message)
            except ConnectionClosed as closed:
                if not self._stop.is_set():
                    raise ConnectionError(f"closed by Kite (code {closed.rcvd.code if closed.rcvd else 'none'})") from None
            finally:
                with self._lock:
                    self._ws = None
                if not self._stop.is_set():
                    self._call(self._on_close, "the websocket closed")

    def _take(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            if len(message) < 2:
                return  # a heartbeat
            try:
                ticks = wire.parse_ticks(message)
            except wire.TickerParseError as error:
                log.warning("skipping a tick frame Kite sent: %s", error)
                return
            if ticks:
                self._call(self._on_ticks, ticks)
            return
        try:
            text = wire.parse_text(message)
        except wire.TickerParseError as error:
            log.warning("skipping a text frame Kite sent: %s", error)
            return
        if text.kind == "order":
            if isinstance(text.data, Mapping):
                self._call(self._on_order, text.data)
            else:
                log.warning("skipping an order update without an order")
        elif text.kind == "error":
            log.warning("Kite's websocket reports an error: %s", _scrub(str(text.data), self._known_secrets()))
        else:
            log.info("Kite's websocket says (%s): %s", text.kind, _scrub(str(text.data), self._known_secrets()))

    def _call(self, callback: Callable[..., None] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:  # a bad callback must not cut the connection
            log.exception("a websocket callback failed")

    def _send(self, ws: ClientConnection, messages: list[str]) -> None:
        try:
            for message in messages:
                ws.send(message)
        except (ConnectionClosed, OSError):
            pass  # it reconnects, and sends the subscriptions again then

    def _close_connection(self) -> None:
        with self._lock:
            ws = self._ws
        if ws is not None:
            ws.close()

    def _scrubbed(self, error: BaseException) -> str:
        return _scrub(str(error), self._known_secrets())
