"""PostgreSQL goes away for a while (every connection dropped, new ones refused) and
comes back, while orders rest, fills arrive, and cancels, modifications and new orders
are sent. The OMS keeps running: it refuses clearly what it cannot record, holds the
broker's news and writes it exactly once afterwards, and ends equal to the broker."""
from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from sqlalchemy.engine import make_url

from actors import start_oms
from actors.supervisor import HealthState
from domain.enums import OrderStatus as S
from domain.errors import OMSUnavailable, OrderSubmissionFailed
from persistence.account_lock import AccountInUse
from tests.fault_proxy import FaultProxy
from tests.oms_helpers import buy, rows, wait_for

D = Decimal
OUTAGE_SECONDS = 10

pytestmark = pytest.mark.postgres


@pytest.fixture
def proxied(fresh_postgres_url):
    """The test database, reached through a proxy the test can cut."""
    url = make_url(fresh_postgres_url)
    proxy = FaultProxy(url.host or "127.0.0.1", url.port or 5432)
    yield proxy, url.set(port=proxy.port).render_as_string(hide_password=False), fresh_postgres_url
    proxy.close()


def wait_until(condition, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_an_outage_is_survived_and_ends_equal_to_the_broker(proxied):
    proxy, url, direct_url = proxied
    oms = start_oms(database_url=url, broker="paper", capital=D("10000000"))
    try:
        oms.paper.set_price("INFY", D("1500.00"))
        to_fill = oms.place_order(buy("INFY", 10, order_type="LIMIT", price=D("1490.00"), stop_loss=D("1450.00")))
        to_cancel = oms.place_order(buy("INFY", 10, order_type="LIMIT", price=D("1470.00"), stop_loss=D("1450.00")))
        to_modify = oms.place_order(buy("INFY", 10, order_type="LIMIT", price=D("1460.00"), stop_loss=D("1450.00")))

        proxy.cut()
        started = time.monotonic()
        oms.paper.set_price("INFY", D("1489.00"))  # the broker fills one while we cannot write
        with pytest.raises(OMSUnavailable, match="database"):
            oms.cancel_order(to_cancel.order_id)
        wait_until(lambda: oms.health().state is HealthState.DEGRADED, what="DEGRADED")
        assert "database unavailable" in oms.health().reason
        with pytest.raises(OMSUnavailable, match="database"):
            oms.modify_order(to_modify.order_id, new_price=D("1465.00"))
        with pytest.raises(OMSUnavailable, match="not sent"):
            oms.place_order(buy("INFY", 1, stop_loss=D("1450.00")))
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - started)))
        proxy.restore()

        wait_until(lambda: oms.health().state is HealthState.RUNNING, what="RUNNING again")
        filled = wait_for(oms, to_fill.order_id, lambda o: o.status is S.FILLED, timeout=30)
        assert filled.filled_quantity == 10
        # After the outage everything works again: the cancel and the modification go through.
        assert oms.cancel_order(to_cancel.order_id) is True
        assert oms.modify_order(to_modify.order_id, new_price=D("1465.00")) is True
        wait_for(oms, to_cancel.order_id, lambda o: o.status is S.CANCELLED)
        wait_for(oms, to_modify.order_id, lambda o: o.price == D("1465.00"))
        after = oms.place_order(buy("INFY", 2, stop_loss=D("1450.00")))
        wait_for(oms, after.order_id, lambda o: o.status is S.FILLED)
        broker_orders = {o.tag: o for o in oms.paper.orders()}
        broker_trades = sorted(t.trade_id for t in oms.paper.trades())
        positions = {p.symbol: p for p in oms.get_positions()}
        # The account lock died with its connection and was taken again: a second OMS
        # for the account still cannot start.
        with pytest.raises(AccountInUse):
            start_oms(database_url=direct_url, broker="paper")
    finally:
        oms.stop()

    # Nothing unrecorded reached the broker: exactly the four recorded orders are there.
    ours = rows(direct_url, "SELECT id, tag, status, price, filled_quantity FROM orders ORDER BY id")
    assert sorted(broker_orders) == sorted(r["tag"] for r in ours)
    assert {r["id"]: r["status"] for r in ours} == {
        to_fill.order_id: "FILLED", to_cancel.order_id: "CANCELLED", to_modify.order_id: "OPEN", after.order_id: "FILLED",
    }
    assert broker_orders[next(r["tag"] for r in ours if r["id"] == to_modify.order_id)].price == D("1465.00")
    # Every broker fill is recorded exactly once, and the position is the fills folded.
    trades = rows(direct_url, "SELECT broker_trade_id, quantity, position_applied FROM trades ORDER BY id")
    assert sorted(t["broker_trade_id"] for t in trades) == broker_trades
    assert all(t["position_applied"] for t in trades)
    assert positions["INFY"].quantity == sum(t["quantity"] for t in trades) == 12
    # The audit trail shows the refused intents never happened: no cancel or modify was
    # recorded during the outage, only after it.
    events = rows(direct_url, "SELECT order_id, payload FROM order_events ORDER BY id")
    assert sum(1 for e in events if e["order_id"] == to_cancel.order_id and "cancel_requested" in (e["payload"] or {})) == 1
    assert sum(1 for e in events if e["order_id"] == to_modify.order_id and "modify_requested" in (e["payload"] or {})) == 1


def test_strategies_placing_through_an_outage_lose_nothing_and_send_nothing_unrecorded(proxied):
    proxy, url, direct_url = proxied
    # No cap on the position: the strategies buy for as long as the test runs.
    oms = start_oms(database_url=url, broker="paper", capital=D("100000000"), max_position_value=None)
    accepted: list[int] = []
    refused: list[str] = []
    stop = threading.Event()

    def strategy(seed: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            limit = {} if n % 2 else {"order_type": "LIMIT", "price": D("1400.00")}
            try:
                accepted.append(oms.place_order(buy("INFY", 1 + seed, stop_loss=D("1350.00"), strategy_id=seed, **limit)).order_id)
            except (OMSUnavailable, OrderSubmissionFailed) as error:
                # Refused at once, or (its write on its way when the database went) not
                # sent because its record was confirmed only once the database was back.
                refused.append(str(error))
                time.sleep(0.05)

    try:
        oms.paper.set_price("INFY", D("1500.00"))
        threads = [threading.Thread(target=strategy, args=(seed,)) for seed in range(1, 5)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        proxy.cut()
        # A strategy whose order was already past its first write when the database went
        # waits for that order's news to be written; one that starts now must be refused.
        # (All four may be waiting: this one is certain to ask while the database is away.)
        latecomer = threading.Thread(target=strategy, args=(5,))
        latecomer.start()
        threads.append(latecomer)
        time.sleep(4.0)
        proxy.restore()
        wait_until(lambda: oms.health().state is HealthState.RUNNING, what="RUNNING again")
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(30)
        for order_id in accepted:
            wait_for(oms, order_id, lambda o: o.status in (S.OPEN, S.FILLED), timeout=30)
        broker_tags = sorted(o.tag for o in oms.paper.orders())
        broker_trades = sorted(t.trade_id for t in oms.paper.trades())
    finally:
        stop.set()
        oms.stop()

    assert refused, "the outage refused nothing: it did not happen"
    assert all("database" in reason for reason in refused)
    stored = rows(direct_url, "SELECT id, tag, status FROM orders")
    # Every order a strategy was told was accepted is in the database...
    assert set(accepted) <= {r["id"] for r in stored}
    # ...and the broker has exactly the orders the database recorded as sent: none twice,
    # none unrecorded.
    sent = sorted(r["tag"] for r in stored if r["status"] not in ("PENDING", "FAILED", "REJECTED"))
    assert broker_tags == sent
    trades = rows(direct_url, "SELECT broker_trade_id FROM trades")
    assert sorted(t["broker_trade_id"] for t in trades) == broker_trades
