"""PostbackListener: Kite's HTTP postbacks (order updates pushed to the app's postback
URL), taken only when their checksum proves they came from Kite.

Kite signs each postback with checksum = hex SHA-256(order_id + order_timestamp +
api_secret), which only Kite and we can compute. A postback whose checksum does not
match is refused (HTTP 403) and logged as forged; anyone can post to a public URL. A
valid one becomes an order update for the broker's sink, like a polled one (the
tracker takes each state once, whichever way it came first); the Kite broker hands it
to ``kite_pushes``, which brings the order's trades with it when its fills grew.

The listener binds to loopback only: put it behind the reverse proxy or tunnel that
Kite's postback URL points at.
"""
from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from actors.brokers import kite_parsing as parse
from domain.broker import BrokerEventSink

log = logging.getLogger("oms.kite.postbacks")

LOOPBACK = ("127.0.0.1", "::1", "localhost")
MAX_BODY = 64 * 1024  # a postback is one order: a few KiB


class ForgedPostback(ValueError):
    """A postback whose checksum does not match: not from Kite."""


def verified(body: Any, api_secret: str) -> dict[str, Any]:
    """``body`` (a postback's JSON object), once its checksum is proven Kite's."""
    if not isinstance(body, dict):
        raise ForgedPostback("a postback is a JSON object")
    expected = parse.postback_checksum(str(body.get("order_id")), str(body.get("order_timestamp")), api_secret)
    if not hmac.compare_digest(str(body.get("checksum", "")), expected):
        raise ForgedPostback(f"checksum does not match for order {str(body.get('order_id'))[:32]!r}")
    return body


class PostbackListener:
    """Owns the HTTP server on loopback and its thread; hands each verified postback's
    order to ``sink`` as an update."""

    def __init__(
        self,
        sink: BrokerEventSink,
        api_secret: str,
        clock: Callable[[], datetime],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/kite/postback",
    ) -> None:
        if host not in LOOPBACK:
            raise ValueError(f"the postback listener binds to loopback only, not {host!r}")
        self._sink = sink
        self._secret = api_secret
        self._clock = clock
        self._path = path
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # never the secret
        return f"PostbackListener({self._address!r}, {self._path!r})"

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the postback listener is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self._path}"

    def start(self) -> None:
        listener = self

        class Handler(_Handler):
            owner = listener

        self._server = ThreadingHTTPServer(self._address, Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="kite-postbacks", kwargs={"poll_interval": 0.1})
        self._thread.start()
        log.info("taking Kite's postbacks at %s", self.url)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)
        self._server = self._thread = None

    def receive(self, raw: bytes, sender: str) -> int:
        """One postback's body: the HTTP status to answer."""
        try:
            body = verified(json.loads(raw), self._secret)
        except (ValueError, UnicodeDecodeError) as error:
            forged = isinstance(error, ForgedPostback)
            log.warning("refused a %s postback from %s: %s", "forged" if forged else "malformed", sender,
                        error if forged else type(error).__name__)
            return 403 if forged else 400
        try:
            update = parse.order_update(body, now=self._clock())
        except parse.KiteParseError as error:
            log.warning("a postback from Kite could not be read: %s", error)
            return 400
        self._sink.on_order_update(update)
        return 200


class _Handler(BaseHTTPRequestHandler):
    owner: PostbackListener
    server_version = "OMSPostbacks/1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), getattr(self, "command", "-"))

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != self.owner._path:
            self._answer(404)
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY:
            self._answer(413 if length > MAX_BODY else 400)
            return
        self._answer(self.owner.receive(self.rfile.read(length), self.address_string()))

    def _answer(self, status: int) -> None:
        body = b"{}" if status == 200 else json.dumps({"status": "error", "code": status}).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # Kite hung up before hearing us: it posts again, and polling catches up anyway.
            log.debug("postback sender hung up before the %d answer", status)
