"""Kite's websocket (the KiteTicker's far side), served by the emulator on a port of its
own: order updates as text frames and the book's prices as binary ticks.

It speaks Kite's ticker protocol: the client connects to the root with ``api_key`` and
``access_token`` in the query (refused with HTTP 403 unless the emulator honours them);
it sends ``{"a": "subscribe", "v": [tokens]}``, ``{"a": "unsubscribe", ...}`` and
``{"a": "mode", "v": [mode, [tokens]]}``; it receives ``{"type": "order", "data":
{...}}`` for every order update (the postback's body, without the checksum: the
websocket is authenticated), a binary frame of ticks for its subscribed instruments
whenever their price is set (and at once on subscribing or changing mode), in the mode
it asked for (quote until told otherwise, as on Kite), and a one-byte heartbeat every
``heartbeat`` seconds.

Order updates misbehave on request, as postbacks do (``configure(drop=..., duplicate=...,
reorder=..., seed=...)``, see ``emulator.delivery``); an update sent while no client is
connected is lost, as on Kite. ``disconnect()`` drops every connection (the network
failing), ``refuse(n)`` refuses the next ``n`` connections with HTTP 503.

Built on the ``websockets`` package (its threaded server): the emulator knows nothing
of the OMS.
"""
from __future__ import annotations

import json
import logging
import queue
import re
import struct
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from emulator.delivery import DeliveryCounts, UnreliableDelivery

log = logging.getLogger("emulator.ticker")

# What prices are counted in, by the segment in an instrument token's low byte (CDS, BCD).
_DIVISORS = {3: Decimal(10_000_000), 6: Decimal(10_000)}
MODES = ("ltp", "quote", "full")
# Kite sends order updates for these statuses (not the transient ones).
STREAMED = frozenset({"OPEN", "TRIGGER PENDING", "COMPLETE", "CANCELLED", "REJECTED"})


class _NoQuery(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The websockets library's log, with the query (the client's key and token) cut
    from the request line it logs."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self.logger.log(level, "%s", re.sub(r"\?\S*", "?...", text) if "GET " in text else text, **kwargs)


def _units(token: int, price: Decimal) -> int:
    return int((price * _DIVISORS.get(token & 0xFF, Decimal(100))).to_integral_value())


def tick_packet(token: int, price: Decimal, mode: str) -> bytes:
    """One instrument's packet in ``mode``. The book has only a last price: the quote
    and full fields it does not have are that price (ohlc, average) or nought."""
    last = _units(token, price)
    if mode == "ltp":
        return struct.pack(">II", token, last)
    quote = struct.pack(">11I", token, last, 0, last, 0, 0, 0, last, last, last, last)
    if mode == "quote":
        return quote
    return quote + struct.pack(">5I", 0, 0, 0, 0, 0) + b"\x00" * 120  # full: times, open interest, empty depth


def tick_frame(packets: list[bytes]) -> bytes:
    return struct.pack(">H", len(packets)) + b"".join(struct.pack(">H", len(p)) + p for p in packets)


class _Client:
    """One connection and what it subscribed to (token -> mode)."""

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection
        self.modes: dict[int, str] = {}
        self.lock = threading.Lock()


class TickerServer:
    """Owns the websocket server, its threads, the connections with their
    subscriptions, and the order updates' misbehaving sender.

    ``authorized(api_key, access_token)`` says whether a connection may open;
    ``price_of(token)`` answers an instrument's last price (None: unknown)."""

    def __init__(
        self,
        authorized: Callable[[str, str], bool],
        price_of: Callable[[int], Decimal | None],
        encode: Callable[[Any], Any],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat: float = 1.0,
    ) -> None:
        self._authorized = authorized
        self._price_of = price_of
        self._encode = encode
        self._address = (host, port)
        self._heartbeat = heartbeat
        self._lock = threading.Lock()
        self._clients: list[_Client] = []
        self._refuse = 0
        self._server: Server | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._orders = UnreliableDelivery(self._broadcast_order, "kite-emulator-ticker")
        self._ticks: queue.Queue[tuple[int, Decimal] | None] = queue.Queue()
        self.refused = 0  # connections refused (bad credentials, or refuse())
        self.connections = 0  # connections ever opened

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        self._server = serve(
            self._serve, *self._address, process_request=self._handshake, compression=None,
            logger=_NoQuery(logging.getLogger("emulator.ticker.websockets"), {}),
        )
        self._orders.start()
        for target, name in (
            (self._server.serve_forever, "kite-emulator-ws"), (self._beat, "kite-emulator-heartbeat"), (self._tick, "kite-emulator-ticks"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        self._orders.stop()
        self._ticks.put(None)
        if self._server is not None:
            self._server.shutdown()  # closes the connections too
        for thread in self._threads:
            thread.join(10)
        self._server, self._threads = None, []

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the ticker is not started")
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}"

    # ------------------------------------------------------------------ controls (tests)

    @property
    def counts(self) -> DeliveryCounts:
        """Order updates handed to the websocket, sent, and how they misbehaved."""
        return self._orders.counts

    def configure(
        self, *, drop: float = 0.0, duplicate: float = 0.0, reorder: float = 0.0, seed: int | None = None, hold: float = 0.5,
    ) -> None:
        """Lose, double and delay order updates as drawn from ``seed``."""
        self._orders.configure(drop=drop, duplicate=duplicate, reorder=reorder, seed=seed, hold=hold)

    def disconnect(self) -> int:
        """Drop every connection at once (the network failing); answers how many."""
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            client.connection.close(code=1011, reason="emulator: connection dropped")
        return len(clients)

    def refuse(self, connections: int = 1) -> None:
        """Refuse the next ``connections`` connections with HTTP 503."""
        with self._lock:
            self._refuse += connections

    @property
    def connected(self) -> int:
        with self._lock:
            return len(self._clients)

    def subscriptions(self) -> dict[int, str]:
        """Every token some connection subscribed to, with its mode."""
        with self._lock:
            return {token: mode for client in self._clients for token, mode in client.modes.items()}

    # ------------------------------------------------------------------ the book's side (under its lock: queue only)

    def order_changed(self, order: dict[str, Any]) -> None:
        if order.get("status") in STREAMED:
            self._orders.put(order)

    def price_changed(self, token: int, price: Decimal) -> None:
        # Sent by the ticks' thread, in the order the prices were set: the book's lock
        # must not wait on a socket.
        self._ticks.put((token, price))

    # ------------------------------------------------------------------ serving

    def _handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        query = parse_qs(urlsplit(request.path).query)
        key = (query.get("api_key") or [""])[-1]
        token = (query.get("access_token") or [""])[-1]
        with self._lock:
            if self._refuse:
                self._refuse -= 1
                self.refused += 1
                return connection.respond(503, "Service unavailable\n")
        if not self._authorized(key, token):
            with self._lock:
                self.refused += 1
            return connection.respond(403, "Forbidden: incorrect api_key or access_token\n")
        return None

    def _serve(self, connection: ServerConnection) -> None:
        client = _Client(connection)
        with self._lock:
            self._clients.append(client)
            self.connections += 1
        try:
            for message in connection:
                if isinstance(message, str):
                    self._request(client, message)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._clients.remove(client)

    def _request(self, client: _Client, text: str) -> None:
        try:
            body = json.loads(text)
            action, value = body["a"], body["v"]
            if action == "mode":
                mode, tokens = value[0], [int(t) for t in value[1]]
                if mode not in MODES:
                    raise ValueError(mode)
            else:
                mode, tokens = "quote", [int(t) for t in value]
        except (ValueError, KeyError, TypeError, IndexError):
            self._send(client, json.dumps({"type": "error", "data": "Invalid message"}))
            return
        with client.lock:
            if action == "unsubscribe":
                for token in tokens:
                    client.modes.pop(token, None)
                return
            if action == "subscribe":
                fresh = [t for t in tokens if t not in client.modes]
                client.modes.update((t, "quote") for t in fresh)
            elif action == "mode":
                fresh = [t for t in tokens if t in client.modes]
                client.modes.update((t, mode) for t in fresh)
            else:
                return
            packets = [tick_packet(t, price, client.modes[t]) for t in fresh if (price := self._price_of(t)) is not None]
        if packets:
            self._send(client, tick_frame(packets))  # the snapshot Kite sends on subscribing

    def _tick(self) -> None:
        while (item := self._ticks.get()) is not None:
            self._send_tick(*item)

    def _send_tick(self, token: int, price: Decimal) -> None:
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            with client.lock:
                mode = client.modes.get(token)
            if mode is not None:
                self._send(client, tick_frame([tick_packet(token, price, mode)]))

    def _broadcast_order(self, order: dict[str, Any]) -> bool:
        body = dict(order)
        body.update(user_id=order.get("placed_by"), app_id=1, unfilled_quantity=order["quantity"] - order["filled_quantity"])
        text = json.dumps({"type": "order", "data": body}, default=self._encode)
        with self._lock:
            clients = list(self._clients)
        return sum(self._send(client, text) for client in clients) > 0

    def _beat(self) -> None:
        while not self._stopping.wait(self._heartbeat):
            with self._lock:
                clients = list(self._clients)
            for client in clients:
                self._send(client, b"\x00")

    @staticmethod
    def _send(client: _Client, message: str | bytes) -> bool:
        try:
            client.connection.send(message)
        except (ConnectionClosed, OSError, RuntimeError):
            return False
        return True
