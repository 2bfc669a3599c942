"""Helpers for tests that drive the whole OMS through its public API."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Callable

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from domain import Order, OrderRequest
from domain.market_hours import IST

D = Decimal


class Clock:
    """A clock the test moves by hand: ``clock.now = ...``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def raw_connection(url: str, **kwargs) -> psycopg.Connection:
    """A psycopg connection of its own to the PostgreSQL database of SQLAlchemy ``url``."""
    return psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False), **kwargs)


def ist(text: str) -> datetime:
    """A wall-clock time in India (``"2026-12-07 09:14:59"``), as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=IST).astimezone(timezone.utc)


def wait_for(oms, order_id: str, predicate: Callable[[Order], bool], timeout: float = 10.0) -> Order:
    """Poll the OMS until the order satisfies ``predicate``: fills arrive asynchronously."""
    deadline = time.monotonic() + timeout
    while True:
        order = oms.get_order_status(order_id)
        if predicate(order):
            return order
        if time.monotonic() > deadline:
            raise AssertionError(f"order {order_id} never satisfied the condition; last seen {order}")
        time.sleep(0.005)


def buy(symbol: str = "RELIANCE", quantity: int = 10, **fields) -> OrderRequest:
    return OrderRequest(symbol=symbol, side="BUY", quantity=quantity, **fields)


def sell(symbol: str = "RELIANCE", quantity: int = 10, **fields) -> OrderRequest:
    return OrderRequest(symbol=symbol, side="SELL", quantity=quantity, **fields)


def rows(url: str, sql: str, **params) -> list[dict]:
    """Read the database directly, apart from the OMS."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [_decoded(dict(r._mapping)) for r in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


_JSON_COLUMNS = {"validation_result", "payload", "metadata", "charges_detail", "details", "oms_value", "broker_value"}


def _decoded(row: dict) -> dict:
    # SQLite hands JSON columns back as text; PostgreSQL's JSONB as Python values.
    return {k: json.loads(v) if k in _JSON_COLUMNS and isinstance(v, str) else v for k, v in row.items()}
