"""The API's one error shape, and which status each refusal gets.

Every refusal is a JSON object ``{"error": {...}}`` with ``status`` (the HTTP status),
``code`` (what kind of refusal, stable: see ``CODES``), ``reason`` (for people),
``check`` (the check that failed: a pre-trade check's name, ``broker``, ``input``,
``auth``, ...), and where known ``order_id`` and ``field``. A reason never contains a
key or a header's value.
"""
from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from actors.oms import OMSStopped, OMSTimeout
from domain.errors import (
    OMSUnavailable,
    OrderNotCancellable,
    OrderNotFound,
    OrderNotModifiable,
    OrderRejected,
    OrderSubmissionFailed,
)

# code -> HTTP status
CODES: dict[str, int] = {
    "malformed_json": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "not_cancellable": 409,
    "not_modifiable": 409,
    "payload_too_large": 413,
    "invalid_request": 422,
    "order_rejected": 422,
    "rate_limited": 429,
    "internal_error": 500,
    "submission_failed": 502,
    "unavailable": 503,
    "timeout": 504,
}

_FIELD = re.compile(r"^([a-z_]+(?:, [a-z_]+)*): ")


def error_body(code: str, reason: str, check: str, order_id: int | None = None, field: str | None = None) -> dict[str, Any]:
    return {"error": {
        "status": CODES[code], "code": code, "check": check, "reason": reason, "order_id": order_id, "field": field,
    }}


def field_of(reason: str) -> str | None:
    """The field an OMS error message names first ("price: must be positive")."""
    match = _FIELD.match(reason)
    return match.group(1) if match else None


def validation_reason(error: ValidationError) -> tuple[str, str | None]:
    """One line for a pydantic error (the first problem; they name their field), and the field."""
    problem = error.errors(include_input=False, include_url=False)[0]
    message = str(problem["msg"]).removeprefix("Value error, ")
    location = ".".join(str(part) for part in problem["loc"] if part != "body")
    field = field_of(message) or (location or None)
    if location and not message.startswith(location.split(".")[0] + ":"):
        message = f"{location}: {message}"
    return message, field


def refusal(error: BaseException) -> dict[str, Any]:
    """The error body for an exception the OMS raised."""
    order_id = getattr(error, "order_id", None)
    order_id = order_id if isinstance(order_id, int) and not isinstance(order_id, bool) else None
    if isinstance(error, OrderRejected):
        return error_body("order_rejected", error.reason, error.failed_check, order_id)
    if isinstance(error, OrderNotFound):
        return error_body("not_found", f"no order with id {order_id}" if order_id is not None else "no such order", "not_found", order_id)
    if isinstance(error, OrderNotCancellable):
        return error_body("not_cancellable", str(error), "not_cancellable", order_id)
    if isinstance(error, OrderNotModifiable):
        return error_body("not_modifiable", str(error), "not_modifiable", order_id)
    if isinstance(error, (OMSUnavailable, OMSStopped)):
        return error_body("unavailable", str(error), "unavailable", order_id)
    if isinstance(error, OMSTimeout):
        return error_body("timeout", str(error), "timeout", order_id)
    if isinstance(error, OrderSubmissionFailed):
        return error_body("submission_failed", str(error), "submission", order_id)
    if isinstance(error, ValidationError):
        reason, field = validation_reason(error)
        return error_body("invalid_request", reason, "input", field=field)
    if isinstance(error, ValueError):
        reason = str(error)
        return error_body("invalid_request", reason, "input", order_id, field_of(reason))
    return error_body("internal_error", "the OMS failed to answer; see its log", "internal")
