"""Several strategies place, modify and cancel at once while prices move and fills
arrive; afterwards orders, trades, positions, the audit trail and the broker agree."""
from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from decimal import Decimal

import pykka
import pytest

from actors import start_oms
from actors.messages import GetRiskState
from actors.validator import Validator
from domain import (
    OrderNotCancellable,
    OrderNotModifiable,
    OrderRejected,
    OrderRequest,
    OrderStatus,
)
from domain.kite_status import map_kite_status
from domain.ticks import default_tick_size
from tests.oms_helpers import rows

D = Decimal
S = OrderStatus
SYMBOLS = {"INFY": D("1500.00"), "TCS": D("3400.00"), "ITC": D("450.00")}
STRATEGIES = 4
ACTIONS_PER_STRATEGY = 40
EXPECTED_REFUSALS = (OrderRejected, OrderNotModifiable, OrderNotCancellable)


def on_tick(symbol: str, price: Decimal) -> Decimal:
    tick = default_tick_size(__import__("domain").Exchange.NSE, symbol, price)
    return (price / tick).quantize(D(1)) * tick


def run_strategy(oms, seed: int, prices: dict, placed: list, errors: list) -> None:
    rng = random.Random(seed)
    mine: list[str] = []
    try:
        for _ in range(ACTIONS_PER_STRATEGY):
            action = rng.random()
            try:
                if action < 0.6 or not mine:
                    symbol = rng.choice(list(SYMBOLS))
                    last = prices[symbol]
                    side = rng.choice(["BUY", "SELL"])
                    quantity = rng.randint(1, 40)
                    if rng.random() < 0.5:
                        request = OrderRequest(symbol=symbol, side=side, quantity=quantity, product="MIS", strategy_id=seed + 1)
                    else:
                        offset = D(rng.randint(-8, 8)) / D(1000)
                        price = on_tick(symbol, last * (1 + offset))
                        request = OrderRequest(
                            symbol=symbol, side=side, quantity=quantity, order_type="LIMIT", price=price,
                            product="MIS", strategy_id=seed + 1,
                        )
                    result = oms.place_order(request)
                    mine.append(result.order_id)
                    placed.append(result.order_id)
                elif action < 0.8:
                    order_id = rng.choice(mine)
                    order = oms.get_order_status(order_id)
                    if order.price is not None:
                        new_price = on_tick(order.symbol, prices[order.symbol] * (1 + D(rng.randint(-5, 5)) / D(1000)))
                        oms.modify_order(order_id, new_price=new_price)
                else:
                    oms.cancel_order(rng.choice(mine))
            except EXPECTED_REFUSALS:
                pass
    except BaseException as error:  # surfaced by the test body
        errors.append(error)


def move_prices(oms, prices: dict, stop: threading.Event, errors: list) -> None:
    rng = random.Random(99)
    try:
        while not stop.is_set():
            symbol = rng.choice(list(SYMBOLS))
            step = D(rng.randint(-4, 4)) / D(1000)
            prices[symbol] = on_tick(symbol, prices[symbol] * (1 + step))
            oms.paper.set_price(symbol, prices[symbol])
    except BaseException as error:
        errors.append(error)


@pytest.mark.timeout(240)
def test_concurrent_strategies_leave_orders_trades_positions_and_audit_consistent(database_url):
    oms = start_oms(
        database_url=database_url, capital=D("100000000"), require_stop_loss=False,
        max_order_value=None, max_position_value=None, max_open_orders=None,
    )
    try:
        prices = dict(SYMBOLS)
        for symbol, price in prices.items():
            oms.paper.set_price(symbol, price)
        oms.paper.set_liquidity("INFY", 7)  # partial fills
        placed: list[str] = []
        errors: list[BaseException] = []
        stop = threading.Event()
        mover = threading.Thread(target=move_prices, args=(oms, prices, stop, errors), name="price-mover")
        strategies = [
            threading.Thread(target=run_strategy, args=(oms, seed, prices, placed, errors), name=f"strategy-{seed}")
            for seed in range(STRATEGIES)
        ]
        mover.start()
        for thread in strategies:
            thread.start()
        for thread in strategies:
            thread.join(timeout=180)
        stop.set()
        mover.join(timeout=30)
        assert not errors, errors
        # One order certain to be partly filled when the sweep below cancels it.
        partial = oms.place_order(OrderRequest(symbol="INFY", side="BUY", quantity=30, product="MIS"))
        placed.append(partial.order_id)

        for order in oms.get_active_orders():
            try:
                oms.cancel_order(order.order_id)
            except OrderNotCancellable:
                pass  # it filled meanwhile
        # A cancel answers once the broker took it; the CANCELLED updates follow.
        deadline = time.monotonic() + 10
        while oms.get_active_orders() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert oms.get_active_orders() == []
        orders = {o.order_id: o for o in oms.get_orders()}
        positions = oms.get_positions()
        validator = pykka.ActorRegistry.get_by_class(Validator)[0]
        risk = validator.ask(GetRiskState())
    finally:
        oms.stop()

    assert set(placed) <= set(orders) and len(placed) >= STRATEGIES * ACTIONS_PER_STRATEGY // 2
    assert all(o.is_terminal for o in orders.values())

    # Orders and trades agree.
    trades = rows(database_url, "SELECT * FROM trades ORDER BY id")
    by_order = defaultdict(list)
    for trade in trades:
        by_order[trade["order_id"]].append(trade)
    for order_id, order in orders.items():
        fills = by_order.get(order_id, [])
        assert order.filled_quantity == sum(t["quantity"] for t in fills), order
        if fills:
            value = sum(D(t["price"]) * t["quantity"] for t in fills)
            assert abs(order.average_price - value / order.filled_quantity) < D("0.00000001")
        assert all(t["position_applied"] for t in fills)
    assert any(o.status is S.CANCELLED and o.filled_quantity > 0 for o in orders.values()), "no partial fill was cancelled"

    # The broker holds exactly one order per accepted request, and its trades are ours, once.
    broker_orders = oms.paper.orders()
    tags = [b.tag for b in broker_orders]
    assert len(tags) == len(set(tags))
    by_tag = {o.tag: o for o in orders.values()}
    for broker_order in broker_orders:
        ours = by_tag[broker_order.tag]
        assert ours.broker_order_id == broker_order.broker_order_id
        assert ours.status is map_kite_status(broker_order.status) or (
            ours.status is S.CANCELLED and broker_order.status == "CANCELLED"
        )
        assert ours.filled_quantity == broker_order.filled_quantity
    assert sorted(t.trade_id for t in oms.paper.trades()) == sorted(t["broker_trade_id"] for t in trades)

    # Positions are the trades folded: quantity exactly, P&L to the rounding of averages.
    for position in positions:
        mine = [t for t in trades if (t["exchange"], t["symbol"], t["product"]) == (position.exchange.value, position.symbol, position.product.value)]
        signed = sum(t["quantity"] if t["side"] == "BUY" else -t["quantity"] for t in mine)
        assert position.quantity == signed
        cash = sum(D(t["price"]) * t["quantity"] * (1 if t["side"] == "SELL" else -1) for t in mine)
        mark = position.last_price
        book = position.realized_pnl + (mark - position.average_price) * position.quantity
        assert abs(book - (cash + mark * position.quantity)) < D("0.0001") * sum(t["quantity"] for t in mine)
        assert position.charges == sum(D(t["total_charges"]) for t in mine)

    # The audit trail tells each order's whole story, and nothing else.
    events = rows(database_url, "SELECT order_id, from_status, to_status, payload FROM order_events ORDER BY id")
    chains = defaultdict(list)
    for event in events:
        chains[event["order_id"]].append(event)
    assert set(chains) == set(orders)
    for order_id, chain in chains.items():
        assert chain[0]["from_status"] is None
        for previous, event in zip(chain, chain[1:]):
            assert event["from_status"] == previous["to_status"], chain
        assert chain[-1]["to_status"] == orders[order_id].status.value
        fill_events = [e for e in chain if "trade_id" in (e["payload"] or {})]
        assert len(fill_events) == len(by_order.get(order_id, []))

    # Every reservation was released once its order ended.
    assert risk.open_orders == 0 and risk.reserved_margin == 0
