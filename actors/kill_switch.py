"""The kill switch: every open order cancelled, every position flattened with marketable
orders, the fills waited for, and trading left HALTED (``flatten`` does the middle part,
for the MIS square-off too). It drives the OMS through its
public handle, with the same messages a strategy sends, so every exit is recorded,
checked (as a reducing order) and tracked like any other order."""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from actors.messages import SetTradingState
from actors.supervisor import TradingState
from domain.enums import OrderType, Product, Side
from domain.errors import OMSError
from domain.frozen import freeze
from domain.order_request import OrderRequest

if TYPE_CHECKING:
    from actors.oms import OMS

log = logging.getLogger("oms.kill_switch")

# Market orders are re-sent for what is still open this many times (a partial fill, a
# refusal the next try may not meet) before the kill switch reports what is left.
ROUNDS = 3
POLL_SECONDS = 0.05


def close_all_positions(oms: OMS, timeout: float) -> Mapping[str, Any]:
    """See ``OMS.close_all_positions``."""
    # No new exposure from here on, and the OMS's own exits stand down: the kill switch's
    # orders close the positions, and exits placed beside them would close them twice.
    oms._ask(SetTradingState(TradingState.REDUCE_ONLY.value, "kill switch: closing all positions", stand_down_exits=True))
    done = flatten(oms, timeout, "kill_switch")
    remaining = done["remaining"]
    why = "kill switch: every position closed" if not remaining else f"kill switch: {len(remaining)} positions still open"
    state = oms.halt(why)
    log.critical("%s; %d orders cancelled, %d exit orders", why, len(done["cancelled"]), len(done["exit_orders"]))
    report: Mapping[str, Any] = freeze({**done, "state": state.value})
    return report


def flatten(oms: OMS, timeout: float, reason: str, products: frozenset[Product] | None = None) -> dict[str, Any]:
    """Cancel the open orders and close the positions (of ``products``, or all) with
    MARKET orders tagged ``exit_reason = reason``; what a partial fill leaves is cancelled
    and sent again, up to ROUNDS times, within ``timeout`` seconds. Answers what it did."""
    deadline = time.monotonic() + timeout

    def ours(product: Product) -> bool:
        return products is None or product in products

    cancelled, not_cancelled = [], []
    working = [o for o in oms.get_active_orders() if ours(o.product)]
    for order in working:
        try:
            oms.cancel_order(order.order_id)
            cancelled.append(order.order_id)
        except OMSError as error:  # it ended first, or the broker said no
            not_cancelled.append({"order_id": order.order_id, "reason": str(error)})
    # Exits go out once the cancels are confirmed: a resting order that filled meanwhile
    # changes what has to be flattened.
    _wait(lambda: all(oms.get_order_status(o.order_id).is_terminal for o in working), deadline)

    exits, refused = [], []
    for round_number in range(ROUNDS):
        open_positions = [p for p in oms.get_positions() if p.quantity != 0 and ours(p.product)]
        if not open_positions or time.monotonic() > deadline:
            break
        # Each round gets its share of what is left of the time; what an exit could not
        # fill in it is cancelled and sent again, for what is then still open.
        round_end = time.monotonic() + (deadline - time.monotonic()) / (ROUNDS - round_number)
        placed = []
        for position in open_positions:
            if position.last_price is not None:  # a MARKET order is valued at the last price
                oms.mark_price(position.symbol, position.last_price, position.exchange)
            request = OrderRequest(
                symbol=position.symbol, exchange=position.exchange, product=position.product,
                side=Side.SELL if position.quantity > 0 else Side.BUY, quantity=abs(position.quantity),
                order_type=OrderType.MARKET, metadata={"exit_reason": reason},
            )
            try:
                placed.append(oms.place_order(request).order_id)
            except OMSError as error:
                refused.append({"symbol": position.symbol, "product": position.product.value, "reason": str(error)})
        exits += placed
        if _wait(lambda ids=tuple(placed): all(oms.get_order_status(i).is_terminal for i in ids), round_end):
            continue
        for order_id in placed:
            with suppress(OMSError):  # it ended first: nothing left to cancel
                oms.cancel_order(order_id)
        _wait(lambda ids=tuple(placed): all(oms.get_order_status(i).is_terminal for i in ids), deadline)

    remaining = [
        {"exchange": p.exchange.value, "symbol": p.symbol, "product": p.product.value, "quantity": p.quantity}
        for p in oms.get_positions() if p.quantity != 0 and ours(p.product)
    ]
    return {
        "cancelled": cancelled, "not_cancelled": not_cancelled, "exit_orders": exits, "refused": refused,
        "remaining": remaining, "all_closed": not remaining,
    }


def _wait(done, deadline: float) -> bool:
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True
