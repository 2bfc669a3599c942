"""The HTTP and WebSocket API (FastAPI), under ``/api/v1``.

Every endpoint acts through the ``OMS`` handle, the same messages to the supervisor as
an in-process caller's, run on a worker thread so that a call waiting on the OMS never
holds up the event loop. Before a request reaches an endpoint, the ``Gatekeeper`` has
checked its key, its key's rate and its body's size. Refusals share one JSON shape
(``api.errors``).
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import Counter
from typing import Annotated, Any, Callable

import anyio
from fastapi import (
    Depends,
    FastAPI,
    Header,
    Path,
    Query,
    Request,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from actors.oms import OMS
from api.errors import CODES, error_body, field_of, refusal
from api.events import EventHub, matches
from api.keys import ApiKeys, Caller
from api.limits import TokenBuckets, retry_after
from api.status import CSP, STATUS_PAGE, STATUS_SCRIPT, PnlHistory, status_of
from api.wire import plain
from domain.enums import Exchange, OrderStatus
from domain.errors import OMSError, OrderNotFound
from domain.money import parse_money
from domain.order import Order
from domain.order_request import INT_COLUMN_MAX, SYMBOL_PATTERN, OrderRequest

log = logging.getLogger("oms.api")

PREFIX = "/api/v1"
MAX_PAGE = 1000
EVENT_WAIT = 1.0  # seconds a stream waits for news before it looks at its socket again
KEY_RECHECK = 5.0  # seconds between checks that a stream's key is still live
# Requests of one key being served at once: well under the worker threads (40), so that a
# strategy whose orders wait on a slow broker cannot keep the operator's halt or kill out.
MAX_IN_FLIGHT = 16

OrderId = Annotated[int, Path(ge=1, le=INT_COLUMN_MAX, description="the order's id (orders.id)")]
AfterId = Annotated[int, Query(ge=0, description="the last id of the previous page (0: from the start)")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="at most this many")]


class Modification(BaseModel):
    """A working order's new price, quantity or trigger price (omitted: unchanged). Money
    as a string ("2451.5") or a number read by its shortest repr."""

    model_config = ConfigDict(extra="forbid", strict=True)
    new_price: str | int | float | None = None
    new_quantity: int | None = None
    new_trigger_price: str | int | float | None = None


class PaperPrice(BaseModel):
    """A last price for the paper exchange: the OMS learns it, then resting orders match."""

    model_config = ConfigDict(extra="forbid", strict=True)
    symbol: str
    price: str | int | float
    exchange: str = "NSE"


class StateChange(BaseModel):
    """Why the trading state changes (kept with it in ``trading_states``)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    reason: str | None = Field(default=None, min_length=1, max_length=500)


class KillSwitch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout: float = Field(default=60.0, gt=0, le=600, description="seconds to wait for the exits' fills")


def problem(code: str, reason: str, check: str, **fields: Any) -> JSONResponse:
    headers = {}
    if code == "unauthorized":
        headers["WWW-Authenticate"] = 'Bearer realm="oms"'
    return JSONResponse(error_body(code, reason, check, **fields), status_code=CODES[code], headers=headers)


class Refused(Exception):
    """A refusal decided here (permissions, paper mode): answered as ``problem``."""

    def __init__(self, code: str, reason: str, check: str) -> None:
        super().__init__(reason)
        self.code, self.reason, self.check = code, reason, check


def caller_of(request: Request) -> Caller:
    return request.state.caller


def _writer(caller: Caller) -> None:
    if caller.read_only:
        raise Refused("forbidden", f"API key {caller.name!r} is read-only", "read_only")


def _unrestricted(caller: Caller, what: str) -> None:
    if caller.restricted:
        raise Refused("forbidden", f"{what} concerns the whole account; API key {caller.name!r} is limited to some strategies", "strategy")


def _operator(caller: Caller, what: str) -> None:
    _writer(caller)
    _unrestricted(caller, what)


def create_app(oms: OMS, keys: ApiKeys, hub: EventHub) -> FastAPI:
    """The API for ``oms``: its keys checked by ``keys``, its events from ``hub``."""
    settings = oms.settings
    app = FastAPI(
        title="Kite OMS", version="1", docs_url="/docs", redoc_url=None, openapi_url="/openapi.json",
        description="The OMS's HTTP API. Every /api/v1 call needs an API key as a bearer token (oms keys create).",
    )
    app.add_middleware(
        Gatekeeper, keys=keys, max_body=settings.api_max_body_bytes,
        buckets=TokenBuckets(float(settings.api_requests_per_second), settings.api_burst),
    )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """The Prometheus text format: open to this host's Prometheus (loopback), behind
        a key from anywhere else (``authorization: {credentials: KEY}``)."""
        return Response(oms.metrics_text(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/status", include_in_schema=False)
    async def status_page() -> HTMLResponse:
        """The live status page: a shell with no data in it; its script reads
        ``/api/v1/status`` with the API key the operator gives it."""
        return HTMLResponse(STATUS_PAGE, headers={"Cache-Control": "no-store", "Content-Security-Policy": CSP})

    @app.get("/status.js", include_in_schema=False)
    async def status_script() -> Response:
        return Response(STATUS_SCRIPT, media_type="text/javascript", headers={"Cache-Control": "no-store"})

    async def call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(function, *args, **kwargs)

    async def visible_order(caller: Caller, order_id: int) -> Order:
        """The order, if this key may see it; another strategy's order is not found (its
        existence is not told)."""
        order = await call(oms.get_order_status, order_id)
        if not caller.sees(order.strategy_id):
            raise OrderNotFound(order_id)
        return order

    # --- errors -----------------------------------------------------------------------

    @app.exception_handler(Refused)
    async def _refused(request: Request, error: Refused) -> JSONResponse:
        return problem(error.code, error.reason, error.check, field=field_of(error.reason))

    @app.exception_handler(OMSError)
    @app.exception_handler(ValueError)
    async def _oms_error(request: Request, error: Exception) -> JSONResponse:
        body = refusal(error)
        return JSONResponse(body, status_code=body["error"]["status"])

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return problem("malformed_json", "the body is not valid JSON", "input")
        first = problems[0] if problems else {"msg": "invalid request", "loc": ()}
        message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
        field = field_of(message) or ".".join(location) or None
        if location and not message.startswith(location[0] + ":"):
            message = f"{'.'.join(location)}: {message}"
        return problem("invalid_request", message, "input", field=field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "invalid_request")
        body = error_body(code, str(error.detail), "route")
        body["error"]["status"] = error.status_code
        return JSONResponse(body, status_code=error.status_code)

    # --- orders -----------------------------------------------------------------------

    @app.post(f"{PREFIX}/orders", status_code=201, tags=["orders"])
    async def place_order(
        request: OrderRequest, caller: Annotated[Caller, Depends(caller_of)],
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=64)] = None,
    ) -> JSONResponse:
        """Place an order (validated, recorded, sent). With a ``client_order_id`` (or an
        ``Idempotency-Key`` header), a retry answers the order placed first and sends nothing."""
        _writer(caller)
        if not caller.sees(request.strategy_id):
            raise Refused("forbidden", f"API key {caller.name!r} may not act for strategy {request.strategy_id}", "strategy")
        if idempotency_key is not None:
            if request.client_order_id is not None and request.client_order_id != idempotency_key:
                raise Refused("invalid_request", "Idempotency-Key: differs from the body's client_order_id", "input")
            request = OrderRequest(**{**request.model_dump(), "client_order_id": idempotency_key})
        result = await call(oms.place_order, request)
        body = {**plain(result), "client_order_id": request.client_order_id}
        return JSONResponse(body, status_code=201, headers={"Location": f"{PREFIX}/orders/{result.order_id}"})

    @app.get(f"{PREFIX}/orders/{{order_id}}", tags=["orders"])
    async def get_order_status(order_id: OrderId, caller: Annotated[Caller, Depends(caller_of)]) -> dict[str, Any]:
        """The order as the OMS holds it now."""
        return plain(await visible_order(caller, order_id))

    @app.patch(f"{PREFIX}/orders/{{order_id}}", tags=["orders"])
    async def modify_order(order_id: OrderId, change: Modification, caller: Annotated[Caller, Depends(caller_of)]) -> dict[str, Any]:
        """Change a working order's price, quantity or trigger (re-checked for risk);
        answered once the broker accepted the change."""
        _writer(caller)
        await visible_order(caller, order_id)
        accepted = await call(oms.modify_order, order_id, change.new_price, change.new_quantity, change.new_trigger_price)
        return {"order_id": order_id, "accepted": bool(accepted)}

    @app.delete(f"{PREFIX}/orders/{{order_id}}", tags=["orders"])
    async def cancel_order(order_id: OrderId, caller: Annotated[Caller, Depends(caller_of)]) -> dict[str, Any]:
        """Ask the broker to cancel; answered once it accepted (CANCELLED follows)."""
        _writer(caller)
        await visible_order(caller, order_id)
        accepted = await call(oms.cancel_order, order_id)
        return {"order_id": order_id, "accepted": bool(accepted)}

    @app.get(f"{PREFIX}/orders", tags=["orders"])
    async def get_orders(
        caller: Annotated[Caller, Depends(caller_of)],
        status: Annotated[
            list[str] | None, Query(description="only these statuses: repeat the parameter, or separate them with commas"),
        ] = None,
        strategy_id: Annotated[int | None, Query(ge=0, le=INT_COLUMN_MAX)] = None,
        after_id: AfterId = 0, limit: Limit = 100,
    ) -> dict[str, Any]:
        """A page of orders in id order; ``next_after_id`` reads the next page (null: no more)."""
        if caller.strategies is not None:
            if strategy_id is None:
                if len(caller.strategies) != 1:
                    allowed = ", ".join(str(s) for s in sorted(caller.strategies))
                    raise Refused("invalid_request", f"strategy_id: API key {caller.name!r} acts for strategies {allowed}; name one", "input")
                strategy_id = next(iter(caller.strategies))
            elif not caller.sees(strategy_id):
                raise Refused("forbidden", f"API key {caller.name!r} may not see strategy {strategy_id}", "strategy")
        statuses = _statuses(status) if status else None
        orders = await call(oms.get_orders, statuses, strategy_id, after_id, limit)
        return {"orders": plain(orders), "next_after_id": orders[-1].order_id if len(orders) == limit else None}

    @app.get(f"{PREFIX}/orders/{{order_id}}/events", tags=["orders"])
    async def get_order_events(
        order_id: OrderId, caller: Annotated[Caller, Depends(caller_of)], after_id: AfterId = 0, limit: Limit = 100,
    ) -> dict[str, Any]:
        """The order's audit trail, in the order written."""
        await visible_order(caller, order_id)
        events = await call(oms.get_order_events, order_id, after_id, limit)
        return {"events": plain(events), "next_after_id": events[-1].id if len(events) == limit else None}

    @app.get(f"{PREFIX}/trades", tags=["trades and positions"])
    async def get_trades(
        caller: Annotated[Caller, Depends(caller_of)],
        order_id: Annotated[int | None, Query(ge=1, le=INT_COLUMN_MAX)] = None,
        after_id: AfterId = 0, limit: Limit = 100,
    ) -> dict[str, Any]:
        """A page of fills in the order recorded (of one order, or of every order this key sees)."""
        if order_id is not None:
            await visible_order(caller, order_id)
        fills = await call(oms.get_trades, order_id, after_id, limit)
        next_after = fills[-1].id if len(fills) == limit else None
        if caller.restricted and order_id is None:
            strategies: dict[int, int] = {}
            for fill in fills:
                if fill.order_id not in strategies:
                    strategies[fill.order_id] = (await call(oms.get_order_status, fill.order_id)).strategy_id
            fills = [f for f in fills if caller.sees(strategies[f.order_id])]
        return {"trades": plain(fills), "next_after_id": next_after}

    @app.get(f"{PREFIX}/positions", tags=["trades and positions"])
    async def get_positions(caller: Annotated[Caller, Depends(caller_of)]) -> dict[str, Any]:
        """The account's positions (a key limited to strategies may not read them: a
        position is the account's, whichever strategies built it)."""
        _unrestricted(caller, "positions")
        return {"positions": plain(await call(oms.get_positions))}

    @app.get(f"{PREFIX}/state", tags=["service"])
    async def get_state(caller: Annotated[Caller, Depends(caller_of)]) -> dict[str, Any]:
        """The trading state (RUNNING, REDUCE_ONLY, HALTED) and the OMS's health."""
        health = await call(oms.health)
        state = await call(lambda: oms.trading_state)
        return {"trading_state": state.value, "health": plain(health), "broker": settings.broker, "account": settings.account}

    @app.post(f"{PREFIX}/reconcile", tags=["service"])
    async def reconcile_positions(caller: Annotated[Caller, Depends(caller_of)]) -> dict[str, Any]:
        """Reconcile positions and orders with the broker now; answers the report."""
        _writer(caller)
        _unrestricted(caller, "reconciliation")
        return plain(await call(oms.reconcile_positions))

    # --- the operator's controls -------------------------------------------------------

    @app.post(f"{PREFIX}/halt", tags=["operator"])
    async def halt(change: StateChange, caller: Annotated[Caller, Depends(caller_of)]) -> dict[str, Any]:
        """HALTED: nothing new is accepted (cancels still are) until ``/resume``."""
        _operator(caller, "halting trading")
        return {"trading_state": (await call(oms.halt, change.reason or f"halted through the API by {caller.name}")).value}

    @app.post(f"{PREFIX}/reduce-only", tags=["operator"])
    async def reduce_only(change: StateChange, caller: Annotated[Caller, Depends(caller_of)]) -> dict[str, Any]:
        """REDUCE_ONLY: only orders that shrink a position are accepted."""
        _operator(caller, "restricting trading")
        reason = change.reason or f"reduce-only through the API by {caller.name}"
        return {"trading_state": (await call(oms.reduce_only, reason)).value}

    @app.post(f"{PREFIX}/resume", tags=["operator"])
    async def resume(change: StateChange, caller: Annotated[Caller, Depends(caller_of)]) -> dict[str, Any]:
        """RUNNING again."""
        _operator(caller, "resuming trading")
        return {"trading_state": (await call(oms.resume, change.reason or f"resumed through the API by {caller.name}")).value}

    @app.post(f"{PREFIX}/kill", tags=["operator"])
    async def close_all_positions(kill: KillSwitch, caller: Annotated[Caller, Depends(caller_of)]) -> dict[str, Any]:
        """The kill switch: cancel every open order, flatten every position, leave trading
        HALTED; answers what was done (``all_closed``, ``remaining``, ...)."""
        _operator(caller, "the kill switch")
        log.warning("kill switch pulled through the API by key %r", caller.name)
        return plain(await call(oms.close_all_positions, kill.timeout))

    @app.get(f"{PREFIX}/status", tags=["operator"])
    async def status(caller: Annotated[Caller, Depends(caller_of)]) -> dict[str, Any]:
        """What the status page shows: the trading state and health, the latest orders,
        positions with P&L net of charges, the five KPIs with their thresholds, the
        active alerts, and the P&L's recent course."""
        _unrestricted(caller, "the status")
        return await call(status_of, oms, pnl_history)

    pnl_history = PnlHistory()

    @app.post(f"{PREFIX}/paper/prices", tags=["paper"])
    async def set_price(price: PaperPrice, caller: Annotated[Caller, Depends(caller_of)]) -> dict[str, Any]:
        """Paper trading only: move an instrument's last price (``oms.paper.set_price``)."""
        _writer(caller)
        paper = oms.paper
        if paper is None:
            raise Refused("not_found", "paper prices: this OMS trades on Kite, not on the paper exchange", "paper")
        if not SYMBOL_PATTERN.fullmatch(price.symbol):
            raise Refused("invalid_request", f"symbol: {price.symbol[:40]!r} is not a Kite trading symbol", "input")
        exchange = Exchange(price.exchange)  # ValueError (422) names a bad one
        amount = parse_money(price.price, "price")
        await call(paper.set_price, price.symbol, amount, exchange)
        return {"symbol": price.symbol, "exchange": exchange.value, "price": str(amount)}

    # --- events -----------------------------------------------------------------------

    @app.websocket(f"{PREFIX}/events")
    async def events(
        websocket: WebSocket,
        strategy_id: Annotated[list[int] | None, Query()] = None,
        last_event_id: Annotated[str | None, Query(max_length=64)] = None,
    ) -> None:
        """Order, trade, position and tradeExecuted events as JSON text messages (of
        ``strategy_id``'s orders, repeatable; a key limited to strategies hears only
        theirs). Reconnect with ``last_event_id`` (or a Last-Event-ID header) to get what
        was missed."""
        caller: Caller = websocket.state.caller
        wanted: frozenset[int] | None = frozenset(strategy_id) if strategy_id else None
        if caller.strategies is not None:
            if wanted is not None and not wanted <= caller.strategies:
                await websocket.close(code=1008, reason="strategy not allowed for this key")
                return
            wanted = wanted or caller.strategies
        resume = last_event_id or websocket.headers.get("last-event-id")
        seq, gap = hub.resume_point(resume)
        await websocket.accept()
        closed = asyncio.Event()

        async def watch() -> None:
            try:
                while True:
                    if (await websocket.receive())["type"] == "websocket.disconnect":
                        break
            except Exception:  # noqa: BLE001 - any failure to read is the end of the client
                pass
            closed.set()

        watcher = asyncio.create_task(watch())
        try:
            if gap:
                await websocket.send_json({"id": None, "type": "gap", "strategy_id": None, "data": {
                    "reason": "some events after the id given are no longer kept; read the orders, their events and the trades to catch up",
                    "last_event_id": resume,
                }})
            checked = time.monotonic()
            while not closed.is_set():
                if time.monotonic() - checked >= KEY_RECHECK:  # a key revoked meanwhile ends its streams
                    checked = time.monotonic()
                    if await anyio.to_thread.run_sync(keys.caller, websocket.state.token) is None:
                        await websocket.close(code=1008, reason="the API key was revoked")
                        break
                batch = hub.after(seq)
                for event in batch:
                    seq = event.seq
                    # A position is the account's, whichever strategy's fill moved it: a
                    # key limited to strategies hears their orders and trades, not positions.
                    if matches(event, wanted) and not (caller.restricted and event.type == "position"):
                        await websocket.send_json(hub.as_json(event))
                if not batch:
                    await hub.wait_beyond(seq, EVENT_WAIT)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client went away
        finally:
            watcher.cancel()

    return app


def _statuses(given: list[str]) -> tuple[OrderStatus, ...]:
    names = [name.strip() for text in given for name in text.split(",") if name.strip()]
    known = {s.value: s for s in OrderStatus}
    for name in names:
        if name not in known:
            raise Refused("invalid_request", f"status: {name[:20]!r} is not one of {', '.join(known)}", "input")
    return tuple(known[name] for name in names)


GUARDED = ("/api/", "/metrics")


class Gatekeeper:
    """ASGI middleware before every ``/api/`` and ``/metrics`` request and stream: a live key as a bearer
    token (else 401), within its rate (else 429), a body no larger than ``max_body``
    (else 413, read no further). The key's caller is put in the request's state."""

    def __init__(self, app: Any, keys: ApiKeys, buckets: TokenBuckets, max_body: int) -> None:
        self.app = app
        self._keys = keys
        self._buckets = buckets
        self._max_body = max_body
        self._in_flight: Counter[str] = Counter()  # touched only on the event loop's thread

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket") or not scope["path"].startswith(GUARDED):
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/metrics" and _from_loopback(scope):
            # A Prometheus on this host scrapes as it scrapes any exporter; the figures are
            # counts, not orders. From anywhere else (api_allow_remote) a key is needed.
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            first = await receive()  # websocket.connect: replayed to the endpoint below
            receive = _replaying([first], receive)
        token = _bearer(scope)
        caller = None
        if token is not None:
            try:
                caller = await anyio.to_thread.run_sync(self._keys.caller, token)
            except Exception:  # the key store unreachable: refuse, say why without the key
                log.exception("API key look-up failed")
                await self._deny(scope, send, problem("unavailable", "API keys cannot be checked now", "auth"))
                return
        if caller is None:
            why = "no API key (send Authorization: Bearer <key>)" if token is None else "the API key is not valid (unknown or revoked)"
            await self._deny(scope, send, problem("unauthorized", why, "auth"))
            return
        wait = self._buckets.take(caller.name)
        if wait > 0:
            response = problem("rate_limited", f"API key {caller.name!r} is over its rate; retry later", "rate_limit")
            response.headers["Retry-After"] = retry_after(wait)
            await self._deny(scope, send, response)
            return
        scope.setdefault("state", {})["caller"] = caller
        scope["state"]["token"] = token  # for a stream's later checks that the key still lives
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        if self._in_flight[caller.name] >= MAX_IN_FLIGHT:
            response = problem("rate_limited", f"API key {caller.name!r} has {MAX_IN_FLIGHT} requests in flight; retry later",
                               "in_flight")
            response.headers["Retry-After"] = "1"
            await self._deny(scope, send, response)
            return
        self._in_flight[caller.name] += 1
        try:
            scope["headers"] = _as_json(scope.get("headers", []))
            body = await self._body(scope, receive)
            if body is None:
                await problem("payload_too_large", f"the body exceeds {self._max_body} bytes", "body_size")(scope, receive, send)
                return
            receive = _replaying([{"type": "http.request", "body": body, "more_body": False}], receive)
            await self.app(scope, receive, send)
        finally:
            self._in_flight[caller.name] -= 1

    async def _body(self, scope: dict, receive: Callable) -> bytes | None:
        """The whole body, or None once it is surely too large (read no further)."""
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    if int(value) > self._max_body:
                        return None
                except ValueError:
                    return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b""
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _deny(self, scope: dict, send: Callable, response: JSONResponse) -> None:
        if scope["type"] == "http":
            await response(scope, _nothing, send)
            return
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": response.status_code, "headers": response.raw_headers})
            await send({"type": "websocket.http.response.body", "body": response.body, "more_body": False})
        else:
            await send({"type": "websocket.close", "code": 1008})


def _from_loopback(scope: dict) -> bool:
    client = scope.get("client") or ("", 0)
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


def _bearer(scope: dict) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def _as_json(headers: list) -> list:
    """Every body here is JSON: one sent as curl -d sends it (form-encoded, by default) or
    with no type is read as the JSON it is."""
    kept = [(name, value) for name, value in headers if name != b"content-type"]
    types = [value for name, value in headers if name == b"content-type"]
    if not types or types[0].split(b";")[0].strip().lower() == b"application/x-www-form-urlencoded":
        return [*kept, (b"content-type", b"application/json")]
    return headers


def _replaying(messages: list[dict], receive: Callable) -> Callable:
    pending = list(messages)

    async def replay() -> dict:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _nothing() -> dict:
    return {"type": "http.disconnect"}

