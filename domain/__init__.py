"""The OMS's domain: values, rules and arithmetic, with no I/O and no threads."""
from domain.enums import Exchange, OrderStatus, OrderType, Product, Side, Validity
from domain.errors import (
    InsufficientBalance,
    OMSError,
    OMSUnavailable,
    OrderNotCancellable,
    OrderNotFound,
    OrderNotModifiable,
    OrderRejected,
    OrderSubmissionFailed,
)
from domain.order import Order, OrderEvent
from domain.order_request import OrderRequest
from domain.position import Position
from domain.results import OrderResult

__all__ = [
    "Exchange",
    "InsufficientBalance",
    "OMSError",
    "OMSUnavailable",
    "Order",
    "OrderEvent",
    "OrderNotCancellable",
    "OrderNotFound",
    "OrderNotModifiable",
    "OrderRejected",
    "OrderRequest",
    "OrderResult",
    "OrderStatus",
    "OrderSubmissionFailed",
    "OrderType",
    "Position",
    "Product",
    "Side",
    "Validity",
]
