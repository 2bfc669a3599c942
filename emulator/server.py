"""KiteEmulator: a Kite Connect v3 REST server on 127.0.0.1 for the official client.

It answers the calls ``kiteconnect.KiteConnect`` makes (same paths, form fields and
headers) with Kite's JSON envelopes: ``{"status": "success", "data": ...}``, or
``{"status": "error", "message": ..., "error_type": ...}`` with the HTTP status the
client turns into its exception classes. Orders go to a ``KiteBook``; ``faults`` makes
it misbehave. Kite's websocket (order updates, ticks) is served on a second port by
``emulator.ticker`` (``ws_url``). The standard library and the ``websockets`` package
only: it is the broker's far side and knows nothing of the OMS.

Every request needs ``X-Kite-Version: 3`` and ``Authorization: token api_key:access_token``
(except POST /session/token, which makes an access token from a request token).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from emulator.book import KiteBook, KiteError, kite_time
from emulator.faults import ErrorReply, Faults
from emulator.postbacks import Postbacks
from emulator.ticker import TickerServer

log = logging.getLogger("emulator")

LOOPBACK = ("127.0.0.1", "::1", "localhost")
INSTRUMENT_COLUMNS = (
    "instrument_token", "exchange_token", "tradingsymbol", "name", "last_price", "expiry",
    "strike", "tick_size", "lot_size", "instrument_type", "segment", "exchange",
)

# (method, path pattern, route): the paths of kiteconnect 5.2.2's _routes.
_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(pattern), route)
    for method, pattern, route in (
        ("POST", r"/session/token", "session"),
        ("DELETE", r"/session/token", "session"),
        ("GET", r"/user/profile", "profile"),
        ("GET", r"/user/margins(?:/(?P<segment>equity|commodity))?", "margins"),
        ("GET", r"/orders", "orders"),
        ("GET", r"/orders/(?P<order_id>\d+)", "order_history"),
        ("GET", r"/orders/(?P<order_id>\d+)/trades", "order_trades"),
        ("POST", r"/orders/(?P<variety>[a-z]+)", "place"),
        ("PUT", r"/orders/(?P<variety>[a-z]+)/(?P<order_id>\d+)", "modify"),
        ("DELETE", r"/orders/(?P<variety>[a-z]+)/(?P<order_id>\d+)", "cancel"),
        ("GET", r"/trades", "trades"),
        ("GET", r"/portfolio/positions", "positions"),
        ("GET", r"/quote/ltp", "ltp"),
        ("GET", r"/instruments(?:/(?P<exchange>[A-Z]+))?", "instruments"),
    )
)


def _jsonable(value: Any) -> Any:
    # Kite's JSON carries numbers; money leaves the book as Decimal.
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


class KiteEmulator:
    """Owns the HTTP server, its thread, the access tokens it honours, the book and the
    fault plan. Start it, point ``KiteConnect(root=emulator.url)`` at it, stop it.

    ``calls`` records (route, params) of every request that reached a route, secrets left
    out, so tests can count what the client really sent; ``arrivals`` records (monotonic
    seconds, route) of each as it arrived, so tests can see the rate Kite would count.
    """

    def __init__(
        self,
        api_key: str = "emulator_key",
        api_secret: str = "emulator_secret",
        access_token: str = "emulator_token",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ws_port: int = 0,
        book: KiteBook | None = None,
        clock: Callable[[], datetime] | None = None,
        state_file: str | Path | None = None,
    ) -> None:
        if host not in LOOPBACK:
            raise ValueError(f"the emulator listens on loopback only, not {host!r}")
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self.book = book or KiteBook(self._clock)
        # Kite's day survives a restart of the emulator: the book is read from here at
        # start (when the file exists) and written here at stop.
        self._state_file = None if state_file is None else Path(state_file)
        self.faults = Faults()
        # Off until configured: postbacks.configure(url, drop=..., duplicate=..., reorder=..., seed=...)
        self.postbacks = Postbacks(api_secret, _jsonable)
        # Kite's websocket (order updates and ticks), on a port of its own: ws_url.
        self.ticker = TickerServer(self._ticker_authorized, self.book.price_of, _jsonable, host=host, port=ws_port)
        self.book.observer = self._order_changed
        self.book.price_observer = self.ticker.price_changed
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.arrivals: list[tuple[float, str]] = []
        self._api_key = api_key
        self._api_secret = api_secret
        self._tokens = {access_token}
        self._request_tokens: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ life

    def start(self) -> "KiteEmulator":
        emulator = self
        self._stopping.clear()
        if self._state_file is not None and self._state_file.exists():
            self.book.load(self._state_file)

        class Handler(_Handler):
            owner = emulator

        self._server = ThreadingHTTPServer(self._address, Handler)
        self._server.daemon_threads = True  # a withheld answer must not hold up stop()
        self._thread = threading.Thread(target=self._server.serve_forever, name="kite-emulator", kwargs={"poll_interval": 0.05})
        self._thread.start()
        self.ticker.start()
        log.info("Kite emulator listening on %s (websocket %s)", self.url, self.ws_url)
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases withheld answers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)
        self._server = self._thread = None
        # A request being served may still change the book: the saved book must hold
        # whatever a client was told (Kite never forgets an order it acknowledged).
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=10)
        self.postbacks.stop()
        self.ticker.stop()
        if self._state_file is not None:
            self.book.save(self._state_file)

    def __enter__(self) -> "KiteEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def ws_url(self) -> str:
        """The websocket's root (Kite's wss://ws.kite.trade), ws://127.0.0.1:<port>."""
        return self.ticker.url

    def _order_changed(self, order: dict[str, Any]) -> None:
        self.postbacks.order_changed(order)
        self.ticker.order_changed(order)

    def _ticker_authorized(self, api_key: str, access_token: str) -> bool:
        with self._lock:
            return secrets.compare_digest(api_key.encode(), self._api_key.encode()) and access_token in self._tokens

    # ------------------------------------------------------------------ the market and the session

    def set_price(self, symbol: str, price: Decimal | int | str, exchange: str = "NSE", **instrument: Any) -> None:
        self.book.set_price(symbol, price, exchange, **instrument)

    def set_liquidity(self, symbol: str, quantity: int | None, exchange: str = "NSE") -> None:
        self.book.set_liquidity(symbol, quantity, exchange)

    def reject_next(self, reason: str = "RMS:Margin Exceeds, Required:0, Available:0") -> None:
        self.book.reject_next(reason)

    def open_amos(self) -> list[str]:
        """The exchange opens: the AMOs held as AMO REQ RECEIVED go to it and match."""
        return self.book.open_amos()

    def expire_tokens(self) -> None:
        """Every access token stops working (Kite's sessions end every morning)."""
        with self._lock:
            self._tokens.clear()

    def add_access_token(self, token: str) -> None:
        with self._lock:
            self._tokens.add(token)

    def issue_request_token(self) -> str:
        """What Kite's login page would hand back: a one-time request token."""
        token = secrets.token_hex(16)
        with self._lock:
            self._request_tokens.add(token)
        return token

    def count(self, route: str) -> int:
        return sum(1 for name, _ in self.calls if name == route)

    # ------------------------------------------------------------------ serving (handler threads)

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("token "):
            return False
        key, _, token = header[len("token "):].partition(":")
        with self._lock:
            return key == self._api_key and token in self._tokens

    def _visible_before(self) -> datetime | None:
        lag = self.faults.read_lag
        return self._clock() - timedelta(seconds=lag) if lag else None

    def _session(self, method: str, form: dict[str, str]) -> Any:
        if method == "DELETE":
            with self._lock:
                self._tokens.discard(form.get("access_token", ""))
            return True
        request_token = form.get("request_token", "")
        expected = hashlib.sha256((self._api_key + request_token + self._api_secret).encode()).hexdigest()
        with self._lock:
            known = request_token in self._request_tokens
            if form.get("api_key") != self._api_key or not known or not secrets.compare_digest(form.get("checksum", ""), expected):
                raise KiteError("Token is invalid or has expired.", "TokenException", 403)
            self._request_tokens.discard(request_token)
            access_token = secrets.token_hex(16)
            self._tokens.add(access_token)
        return {
            "user_type": "individual", "email": "emulator@example.invalid", "user_name": "Kite Emulator",
            "user_shortname": "Emulator", "broker": "ZERODHA",
            "exchanges": ["NSE", "NFO", "BFO", "CDS", "BSE", "MCX", "BCD", "MF"],
            "products": ["CNC", "NRML", "MIS", "BO", "CO"], "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
            "avatar_url": None, "user_id": "EM0001", "api_key": self._api_key, "access_token": access_token,
            "public_token": secrets.token_hex(8), "enctoken": "", "refresh_token": "", "silo": "",
            "login_time": kite_time(self._clock()), "meta": {"demat_consent": "physical"},
        }

    def _serve(self, method: str, route: str, args: dict[str, str], form: dict[str, str], query: dict[str, list[str]]) -> Any:
        book = self.book
        before = self._visible_before()
        if route == "place":
            return {"order_id": book.place(args["variety"], form)}
        if route == "modify":
            return {"order_id": book.modify(args["variety"], args["order_id"], form)}
        if route == "cancel":
            return {"order_id": book.cancel(args["variety"], args["order_id"])}
        if route == "orders":
            return book.orders(before)
        if route == "order_history":
            return book.history(args["order_id"], before)
        if route == "order_trades":
            return book.trades(args["order_id"], before)
        if route == "trades":
            return book.trades(None, before)
        if route == "positions":
            return book.positions()
        if route == "margins":
            margins = book.margins()
            return margins[args["segment"]] if args.get("segment") else margins
        if route == "ltp":
            return book.ltp(query.get("i", []))
        if route == "profile":
            return {
                "user_id": "EM0001", "user_type": "individual", "email": "emulator@example.invalid",
                "user_name": "Kite Emulator", "user_shortname": "Emulator", "broker": "ZERODHA",
                "exchanges": ["NSE", "NFO", "BFO", "CDS", "BSE", "MCX", "BCD"], "products": ["CNC", "NRML", "MIS"],
                "order_types": ["MARKET", "LIMIT", "SL", "SL-M"], "avatar_url": None, "meta": {"demat_consent": "physical"},
            }
        raise KiteError("Route not found", "GeneralException", 404)

    def _instruments_csv(self, exchange: str | None) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(INSTRUMENT_COLUMNS)
        for i in self.book.instruments():
            if exchange is None or i.exchange == exchange:
                segment = i.exchange if i.exchange in ("NSE", "BSE", "MCX") else f"{i.exchange}-FUT"
                writer.writerow((i.token, i.token // 256 or i.token, i.symbol, i.symbol, i.last_price, "", "0",
                                 i.tick_size, i.lot_size, "EQ" if i.exchange in ("NSE", "BSE") else "FUT", segment, i.exchange))
        return out.getvalue()


class _Handler(BaseHTTPRequestHandler):
    owner: KiteEmulator
    server_version = "KiteEmulator/1"
    # HTTP/1.0: one request per connection, so a dropped (withheld) answer never leaves
    # the client a half-used keep-alive connection to trip over on the next call.
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        # The method and path only: never headers (the token) or a query (which may hold one).
        log.debug("%s %s %s", self.address_string(), getattr(self, "command", "-"), urlsplit(getattr(self, "path", "")).path)

    def _handle(self, method: str) -> None:
        owner = self.owner
        with owner._idle:
            if owner._stopping.is_set():
                # Read while the emulator stopped (accepted just before): the book may be
                # saved already, so acting now could tell a client of an order the next
                # emulator never heard of, and give its id out again. A server going down
                # answers nothing.
                self.close_connection = True
                return
            owner._in_flight += 1
        try:
            self._serve_request(method)
        finally:
            with owner._idle:
                owner._in_flight -= 1
                owner._idle.notify_all()

    def _serve_request(self, method: str) -> None:
        owner = self.owner
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        matched = next(((route, m) for verb, pattern, route in _ROUTES if verb == method and (m := pattern.fullmatch(parts.path))), None)
        if matched is None:
            self._error(ErrorReply(404, "GeneralException", f"Route not found: {method} {parts.path}"))
            return
        route, match = matched
        owner.arrivals.append((time.monotonic(), route))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        fields = parse_qs(body, keep_blank_values=True) if method in ("POST", "PUT") else query
        form = {key: values[-1] for key, values in fields.items()}
        owner.calls.append((route, {k: v for k, v in form.items() if k not in ("checksum", "access_token", "request_token")}))

        if self.headers.get("X-Kite-Version") != "3":
            self._error(ErrorReply(400, "InputException", "Invalid or missing X-Kite-Version header (expected 3)."))
            return
        if route != "session" and not owner._authorized(self.headers.get("Authorization")):
            self._error(ErrorReply(403, "TokenException", "Incorrect `api_key` or `access_token`."))
            return
        wait, error = owner.faults.before(route)
        if wait and owner._stopping.wait(wait):
            return  # stopping: drop the request
        if error is not None and not error.after_accept:
            self._error(error)
            return
        try:
            if route == "instruments":
                payload = owner._instruments_csv(match.groupdict().get("exchange"))
            elif route == "session":
                payload = owner._session(method, form)
            else:
                payload = owner._serve(method, route, match.groupdict(), form, query)
        except KiteError as refusal:
            self._error(ErrorReply(refusal.status, refusal.error_type, refusal.message))
            return
        if error is not None:  # carried out, and yet the client hears an error
            self._error(error)
            return
        hold = owner.faults.withhold(route)
        if hold is not None:
            # Done at the "exchange", but the answer never reaches the client in time.
            owner._stopping.wait(hold)
            self.close_connection = True
            return
        if route == "instruments":
            self._send(200, "text/csv", payload.encode())
        else:
            self._send(200, "application/json", json.dumps({"status": "success", "data": payload}, default=_jsonable).encode())

    def _error(self, error: ErrorReply) -> None:
        if error.html:
            page = f"<html><body><h1>{error.status}</h1><p>{error.message}</p></body></html>"
            self._send(error.status, "text/html", page.encode())
            return
        body = {"status": "error", "message": error.message, "data": None, "error_type": error.error_type}
        self._send(error.status, "application/json", json.dumps(body).encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting: that is its business


