"""``OMSClient``: the OMS's HTTP API from another process, with the in-process handle's
method names and types.

    from api.client import OMSClient
    from domain import OrderRequest

    with OMSClient("http://127.0.0.1:8700", api_key) as oms:
        result = oms.place_order(OrderRequest(symbol="INFY", side="BUY", quantity=10,
                                              stop_loss="1450", client_order_id="entry-1"))
        oms.get_order_status(result.order_id)            # an Order, as in-process
        for event in oms.events(strategy_id=7): ...      # order, trade, position, tradeExecuted

Refusals raise what the handle raises (OrderRejected with ``failed_check``,
OrderNotFound, OrderNotCancellable, OrderNotModifiable, OMSUnavailable,
OrderSubmissionFailed, ValueError for bad input), and ``APIError`` (a PermissionError
when the key is refused) for what only the service refuses.
"""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Iterator, Mapping

import httpx

from actors.oms import OMSTimeout
from actors.supervisor import Health, TradingState
from api.wire import from_plain, plain
from domain.enums import OrderStatus
from domain.errors import (
    OMSUnavailable,
    OrderNotCancellable,
    OrderNotFound,
    OrderNotModifiable,
    OrderRejected,
    OrderSubmissionFailed,
)
from domain.fill import Fill
from domain.order import Order, OrderEvent
from domain.order_request import OrderRequest
from domain.position import Position
from domain.results import OrderResult

API = "/api/v1"


class APIError(Exception):
    """A refusal of the service itself (the key, its rate, the request's size or
    shape); ``status``, ``code``, ``check`` and ``reason`` are the error body's."""

    def __init__(self, status: int, code: str, check: str, reason: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {reason}")
        self.status, self.code, self.check, self.reason = status, code, check, reason
        self.retry_after = retry_after


class APIAuthError(APIError, PermissionError):
    """401 or 403: no valid key, or the key may not do this."""


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        code, check, reason = error["code"], error["check"], error["reason"]
        order_id = error.get("order_id")
    except (ValueError, KeyError, TypeError):
        raise APIError(response.status_code, "unexpected", "unexpected", response.text[:200]) from None
    if code == "order_rejected":
        raise OrderRejected(reason, check, order_id)
    if code == "not_found" and order_id is not None:
        raise OrderNotFound(order_id)
    if code == "not_cancellable":
        raise OrderNotCancellable(order_id, reason)
    if code == "not_modifiable":
        raise OrderNotModifiable(order_id, reason)
    if code == "unavailable" and check != "auth":
        raise OMSUnavailable(reason)
    if code == "submission_failed":
        raise OrderSubmissionFailed(reason)
    if code == "timeout":
        raise OMSTimeout(reason)
    if code == "invalid_request" and check == "input":
        raise ValueError(reason)
    retry = response.headers.get("Retry-After")
    kind = APIAuthError if response.status_code in (401, 403) else APIError
    raise kind(response.status_code, code, check, reason, float(retry) if retry else None)


class PaperControls:
    """The paper exchange's price, over the API (paper mode only)."""

    def __init__(self, client: "OMSClient") -> None:
        self._client = client

    def set_price(self, symbol: str, price: Decimal | float | int | str, exchange: str = "NSE") -> None:
        self._client._request("POST", "/paper/prices", json={"symbol": symbol, "price": _money(price), "exchange": exchange})


class OMSClient:
    """A running OMS's API. Thread-safe (one pooled HTTP client); close it, or use it
    as a context manager."""

    def __init__(self, url: str, api_key: str, timeout: float = 35.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._key = api_key
        self._http = httpx.Client(
            base_url=self.url + API, timeout=timeout, transport=transport,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
        )
        self.paper = PaperControls(self)

    def __repr__(self) -> str:  # never the key
        return f"OMSClient({self.url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "OMSClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        _raise_for(response)
        return response.json()

    # --- the handle's methods ---------------------------------------------------------

    def place_order(self, request: OrderRequest | Mapping[str, Any], idempotency_key: str | None = None) -> OrderResult:
        """Place; with a ``client_order_id`` (or ``idempotency_key``) a retry answers the
        same order and sends nothing, so a call that failed in transit can be repeated."""
        body = request.model_dump() if isinstance(request, OrderRequest) else dict(request)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return from_plain(OrderResult, self._request("POST", "/orders", json=plain(body), headers=headers))

    def cancel_order(self, order_id: int) -> bool:
        return bool(self._request("DELETE", f"/orders/{order_id}")["accepted"])

    def modify_order(
        self, order_id: int, new_price: Decimal | float | int | str | None = None, new_quantity: int | None = None,
        new_trigger_price: Decimal | float | int | str | None = None,
    ) -> bool:
        body = {"new_price": _money(new_price), "new_quantity": new_quantity, "new_trigger_price": _money(new_trigger_price)}
        return bool(self._request("PATCH", f"/orders/{order_id}", json=body)["accepted"])

    def get_order_status(self, order_id: int) -> Order:
        return from_plain(Order, self._request("GET", f"/orders/{order_id}"))

    get_order = get_order_status

    def get_orders(
        self, statuses: tuple[OrderStatus, ...] | None = None, strategy_id: int | None = None, after_id: int = 0, limit: int = 100,
    ) -> list[Order]:
        params: dict[str, Any] = {"after_id": after_id, "limit": limit}
        if statuses:
            params["status"] = [OrderStatus(s).value for s in statuses]
        if strategy_id is not None:
            params["strategy_id"] = strategy_id
        return [from_plain(Order, o) for o in self._request("GET", "/orders", params=params)["orders"]]

    def iter_orders(
        self, statuses: tuple[OrderStatus, ...] | None = None, strategy_id: int | None = None, page: int = 1000,
    ) -> Iterator[Order]:
        after_id = 0
        while True:
            batch = self.get_orders(statuses, strategy_id, after_id, page)
            yield from batch
            if len(batch) < page:
                return
            after_id = batch[-1].order_id

    def get_order_events(self, order_id: int, after_id: int = 0, limit: int = 100) -> list[OrderEvent]:
        page = self._request("GET", f"/orders/{order_id}/events", params={"after_id": after_id, "limit": limit})
        return [from_plain(OrderEvent, e) for e in page["events"]]

    def get_trades(self, order_id: int | None = None, after_id: int = 0, limit: int = 100) -> list[Fill]:
        params: dict[str, Any] = {"after_id": after_id, "limit": limit}
        if order_id is not None:
            params["order_id"] = order_id
        return [from_plain(Fill, f) for f in self._request("GET", "/trades", params=params)["trades"]]

    def get_positions(self) -> list[Position]:
        return [from_plain(Position, p) for p in self._request("GET", "/positions")["positions"]]

    def state(self) -> dict[str, Any]:
        """``GET /state``: the trading state, health, broker and account, as JSON."""
        return self._request("GET", "/state")

    def health(self) -> Health:
        return from_plain(Health, self._request("GET", "/state")["health"])

    @property
    def trading_state(self) -> TradingState:
        return TradingState(self._request("GET", "/state")["trading_state"])

    def reconcile_positions(self) -> dict[str, Any]:
        """The reconciliation report as JSON (``all_clear``, ``mismatches``, ...)."""
        return self._request("POST", "/reconcile")

    def halt(self, reason: str | None = None) -> TradingState:
        """HALTED: nothing new is accepted until ``resume``."""
        return TradingState(self._request("POST", "/halt", json={"reason": reason})["trading_state"])

    def reduce_only(self, reason: str | None = None) -> TradingState:
        return TradingState(self._request("POST", "/reduce-only", json={"reason": reason})["trading_state"])

    def resume(self, reason: str | None = None) -> TradingState:
        return TradingState(self._request("POST", "/resume", json={"reason": reason})["trading_state"])

    def close_all_positions(self, timeout: float = 60.0) -> dict[str, Any]:
        """The kill switch: cancel everything, flatten everything, leave trading HALTED."""
        return self._request("POST", "/kill", json={"timeout": timeout}, timeout=timeout + 30)

    def status(self) -> dict[str, Any]:
        """What the status page shows (state, P&L, KPIs, alerts, positions, latest orders)."""
        return self._request("GET", "/status")

    def events(
        self, strategy_id: int | list[int] | None = None, last_event_id: str | None = None, open_timeout: float = 10.0,
    ) -> "EventStream":
        """The event stream (a WebSocket): iterate it for dicts with ``id``, ``type``
        (order, trade, position, tradeExecuted, gap), ``strategy_id`` and ``data``. Pass
        the last ``id`` seen to a new stream to get what was missed meanwhile."""
        return EventStream(self.url, self._key, strategy_id, last_event_id, open_timeout)


class EventStream:
    """One connection to the event stream; a context manager and an iterator."""

    def __init__(
        self, url: str, api_key: str, strategy_id: int | list[int] | None, last_event_id: str | None, open_timeout: float,
    ) -> None:
        from websockets.sync.client import connect

        ws_url = url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + API + "/events"
        query = [("strategy_id", str(s)) for s in ([strategy_id] if isinstance(strategy_id, int) else strategy_id or [])]
        if last_event_id:
            query.append(("last_event_id", last_event_id))
        if query:
            ws_url += "?" + str(httpx.QueryParams(query))
        self.last_event_id = last_event_id
        # Entered at once: this object is the context manager its callers use.
        self._socket = connect(
            ws_url, additional_headers={"Authorization": f"Bearer {api_key}"}, open_timeout=open_timeout,
        ).__enter__()

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next event; TimeoutError when none came within ``timeout`` seconds."""
        event = json.loads(self._socket.recv(timeout=timeout))
        if event.get("id"):
            self.last_event_id = event["id"]
        return event

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            yield self.receive()

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _money(value: Decimal | float | int | str | None) -> str | int | float | None:
    """Decimal as its exact text; other forms as they are (the OMS reads a float by its
    shortest repr)."""
    return str(value) if isinstance(value, Decimal) else value
