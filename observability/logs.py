"""The OMS's log as people or machines read it, with its secrets taken out.

* ``JsonFormatter``: one JSON object a line: ``ts`` (UTC, ISO 8601), ``level``,
  ``logger``, ``message``, and ``order_id`` and ``strategy_id`` where they apply (from
  ``extra=``, or from the order whose tracker is handling a message), ``exception``
  with the traceback, and any other ``extra=`` fields.
* ``RedactingFilter``: on a handler, it takes every known secret out of the message,
  its arguments and its traceback before any formatter sees them: the values
  registered with ``redact`` (the settings' credentials, a token set later), and
  whatever looks like one (``token KEY:TOKEN`` headers, ``access_token=...``, a URL's
  password, a Telegram bot token in a path).
* ``configure_logging(level, fmt)``: the launcher's: one stderr handler on the root
  logger with the chosen format and the filter.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import IO, Any

REDACTED = "***"

# The order whose tracker is handling a message on this thread: (order_id, strategy_id).
order_context: ContextVar[tuple[int, int] | None] = ContextVar("oms_order_context", default=None)

_secrets: set[str] = set()
_secrets_pattern: re.Pattern[str] | None = None
_secrets_lock = threading.Lock()
# A secret shorter than this is not matched by value (it would blank ordinary words).
MIN_SECRET_LENGTH = 6

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # an Authorization header, whatever its scheme: the rest of the line
    (re.compile(r"(?i)\b(authorization[\"']?\s*[:=]\s*)[^\r\n]+"), r"\1" + REDACTED),
    # Kite's Authorization header: "token api_key:access_token"
    (re.compile(r"(?i)\b(token\s+)[A-Za-z0-9]+:[A-Za-z0-9]+"), r"\1" + REDACTED),
    # key=value and "key": "value" for names that hold credentials
    (re.compile(
        r"(?i)\b((?:access_token|api_secret|api_key|request_token|password|passwd|secret|checksum|bot_token|x-api-key)"
        r"[\"']?\s*[:=]\s*[\"']?)([^\s\"'&,;)}]+)"
    ), r"\1" + REDACTED),
    # a URL's user:password@
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
    # a Telegram bot token in a path: /bot123456:ABC-def...
    (re.compile(r"/bot\d+:[A-Za-z0-9_-]+"), "/bot" + REDACTED),
    # an OMS API key's shape (oms_...)
    (re.compile(r"\boms_[A-Za-z0-9_-]{16,}"), REDACTED),
)


def redact(*values: str | None) -> None:
    """Register secret values: they never appear in a line the filter has seen."""
    global _secrets_pattern
    with _secrets_lock:
        for value in values:
            if value and len(value) >= MIN_SECRET_LENGTH:
                _secrets.add(value)
        if _secrets:
            longest_first = sorted(_secrets, key=len, reverse=True)
            _secrets_pattern = re.compile("|".join(re.escape(s) for s in longest_first))


def redacted(text: str) -> str:
    """``text`` with every registered secret and every credential-shaped string hidden."""
    pattern = _secrets_pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    for shape, replacement in _PATTERNS:
        text = shape.sub(replacement, text)
    return text


def secrets_of(settings: Any) -> list[str]:
    """The secret values an OMSSettings holds: every SecretStr, and the database password."""
    from pydantic import SecretStr
    from sqlalchemy.engine import make_url

    found = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
    try:
        password = make_url(settings.database_url).password
    except Exception:  # not a URL SQLAlchemy reads: nothing to take from it
        password = None
    if password:
        found.append(str(password))
    return found


class RedactingFilter(logging.Filter):
    """Put it on a handler: every record that handler emits is redacted first (message,
    arguments, traceback), and carries the order it is about (see ``order_context``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is
            message = str(record.msg)
        record.msg, record.args = redacted(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redacted(record.exc_text)
        if record.stack_info:
            record.stack_info = redacted(record.stack_info)
        if getattr(record, "order_id", None) is None:
            current = order_context.get()
            if current is not None:
                record.order_id, record.strategy_id = current
        return True


# LogRecord's own attributes: the rest came with extra= and go into the JSON as fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("order_id", "strategy_id"):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in entry and not name.startswith("_"):
                entry[name] = value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: str = "WARNING", fmt: str = "text", stream: IO[str] | None = None,
                      secrets: Iterable[str | None] = ()) -> logging.Handler:
    """Log to ``stream`` (stderr) at ``level`` in ``fmt`` (text or json), redacted. Replaces
    a handler this function installed before; other handlers are left alone."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log_format: text or json, got {fmt!r}")
    redact(*secrets)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_oms_handler", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._oms_handler = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
