"""What the OMS answers a strategy that placed, modified or cancelled an order."""
from __future__ import annotations

from dataclasses import dataclass

from domain.enums import OrderStatus


@dataclass(frozen=True, slots=True)
class OrderResult:
    order_id: int
    broker_order_id: str | None
    status: OrderStatus
    message: str
