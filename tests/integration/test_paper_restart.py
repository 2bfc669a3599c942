"""A paper restart loses nothing: the simulated exchange keeps its book in the database
(paper_orders, paper_trades, paper_prices, paper_counters), so after stop() and
start_oms on the same database its answers are still authoritative. An order it took
while the OMS still had it SUBMITTED comes back with exactly its fills; an order it
cancelled stays cancelled and never trades again; a stop in the middle of a burst loses
no fill and trades nothing twice; prices and ids go on. SQLite and PostgreSQL."""
from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from decimal import Decimal

import pytest

from actors import OMSTimeout, start_oms
from actors.position_keeper import PositionKeeper
from domain import (
    OrderNotCancellable,
    OrderNotFound,
    OrderRejected,
    OrderStatus,
    OrderSubmissionFailed,
)
from domain.kite_status import map_kite_status
from tests.oms_helpers import buy, rows, sell, wait_for

D = Decimal
S = OrderStatus
SETTINGS = dict(
    broker="paper", capital=D("100000000"), max_order_value=None, max_position_value=None,
    max_open_orders=None, request_timeout=10,
)


def start(database_url: str, **overrides):
    return start_oms(database_url=database_url, **{**SETTINGS, **overrides})


def slow_places(exchange, seconds: float, after: int = 0) -> threading.Event:
    """From the ``after``-th place on, the exchange's place takes ``seconds`` before it
    does its work (a slow broker); the event is set when such a place begins."""
    real_place = exchange.place
    entered = threading.Event()
    count = [0]

    def place(request):
        count[0] += 1
        if count[0] > after:
            entered.set()
            time.sleep(seconds)
        return real_place(request)

    exchange.place = place
    return entered


def settle(oms, timeout: float = 60.0) -> dict[str, object]:
    """Wait until every order at the exchange is in the OMS with the same status and
    filled quantity (the recovering trackers adopt them by tag), no order of the OMS is
    left in doubt, and the OMS's live view of its orders shows what its rows show; answer
    the OMS's orders by tag.

    The rows (get_orders, read on the readers' own connections) and the live view
    (get_active_orders, the supervisor's) are two reads of the OMS: a fill is committed
    with its order's row first, and the view shows it only once the PositionKeeper has
    moved the position (positions never lag the view). Between the two the rows may
    already say FILLED while the view still says OPEN, so the view is waited for too."""
    deadline = time.monotonic() + timeout
    while True:
        ours = {o.tag: o for o in oms.iter_orders()}
        behind = [
            b for b in oms.paper.orders()
            if b.tag not in ours
            or ours[b.tag].status is not map_kite_status(b.status)
            or ours[b.tag].filled_quantity != b.filled_quantity
        ] + [o for o in ours.values() if o.status in (S.PENDING, S.SUBMITTED)]
        live = {o.order_id: o for o in oms.get_active_orders()}
        behind += [
            o for o in ours.values()
            if (o.order_id in live) == o.is_terminal
            or (o.order_id in live and (live[o.order_id].status, live[o.order_id].filled_quantity)
                != (o.status, o.filled_quantity))
        ]
        if not behind:
            return ours
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(behind)} orders never settled in the OMS, e.g. {behind[0]}")
        time.sleep(0.02)


def test_settle_waits_for_the_oms_view_of_a_fill_not_only_for_its_row(database_url, monkeypatch):
    """The order tracker commits a fill with its order's row (what get_orders reads), then
    has the PositionKeeper move the position, and only then is the order's view (what
    get_active_orders, get_order_status and subscribers see) the filled one: a moment in
    which the row says FILLED while the view still says OPEN. settle must outwait it."""
    gate = threading.Event()
    gate.set()
    real_apply = PositionKeeper._apply

    def held_apply(self, fills):
        assert gate.wait(30), "the keeper was never let go"
        return real_apply(self, fills)

    monkeypatch.setattr(PositionKeeper, "_apply", held_apply)
    oms = start(database_url)
    try:
        oms.paper.set_price("INFY", D("1500.00"))
        placed = oms.place_order(buy("INFY", 10, order_type="LIMIT", price=D("1490.00"), stop_loss=D("1450.00")))
        settle(oms)
        gate.clear()  # the keeper takes its time with the next fill
        oms.paper.set_price("INFY", D("1489.00"))
        deadline = time.monotonic() + 10
        while next(oms.iter_orders()).status is not S.FILLED:  # the row ...
            assert time.monotonic() < deadline, "the fill was never recorded"
            time.sleep(0.005)
        assert [o.order_id for o in oms.get_active_orders()] == [placed.order_id]  # ... before the view
        with pytest.raises(AssertionError, match="never settled"):
            settle(oms, timeout=0.5)
        gate.set()
        settle(oms)
        assert oms.get_active_orders() == []
        assert [p.quantity for p in oms.get_positions()] == [10]
    finally:
        gate.set()
        oms.stop()


# --------------------------------------------------------------------------- (a) the issue


def test_an_order_the_exchange_took_while_the_oms_had_it_submitted_comes_back_with_exactly_its_fills(database_url):
    oms = start(database_url)
    try:
        oms.paper.set_price("INFY", D("1500.00"))
        oms.paper.set_liquidity("INFY", 4)  # the order part-fills at once: 4 of 10
        entered = slow_places(oms.paper.exchange, 1.0)
        answers: list = []
        waiting = threading.Thread(target=lambda: answers.append(oms.place_order(buy("INFY", 10, stop_loss=D("1450.00")))))
        waiting.start()
        assert entered.wait(10)
    finally:
        oms.stop()  # while the exchange is taking the order
    waiting.join(10)
    [answer] = answers
    assert answer.status is S.SUBMITTED and "stopped" in answer.message

    # The OMS stopped with the order SUBMITTED; the exchange took it and part-filled it.
    [ours] = rows(database_url, "SELECT status, filled_quantity, broker_order_id FROM orders")
    assert (ours["status"], ours["filled_quantity"], ours["broker_order_id"]) == ("SUBMITTED", 0, None)
    [kept] = rows(database_url, "SELECT broker_order_id, status, filled_quantity FROM paper_orders")
    assert (kept["status"], kept["filled_quantity"]) == ("OPEN", 4)
    assert rows(database_url, "SELECT count(*) AS n FROM trades") == [{"n": 0}]

    oms = start(database_url)
    try:
        order = wait_for(oms, answer.order_id, lambda o: o.filled_quantity == 4)
        assert order.status is S.OPEN and order.broker_order_id == kept["broker_order_id"]
        [first] = oms.paper.trades()
        assert [(f.trade_id, f.quantity, f.price) for f in oms.get_trades(answer.order_id)] == [
            (first.trade_id, 4, D("1500.00"))
        ]
        [position] = oms.get_positions()
        assert position.quantity == 4

        # It is still working at the exchange: the rest fills, each trade counted once.
        oms.paper.set_price("INFY", D("1499.00"))
        order = wait_for(oms, answer.order_id, lambda o: o.status is S.FILLED)
        exchange_trades = oms.paper.trades()
        assert [t.quantity for t in exchange_trades] == [4, 6]
        assert sorted(f.trade_id for f in oms.get_trades(answer.order_id)) == sorted(t.trade_id for t in exchange_trades)
        assert order.filled_quantity == 10
        assert order.average_price == (D("1500.00") * 4 + D("1499.00") * 6) / 10
        [position] = oms.get_positions()
        assert position.quantity == 10
        assert len(oms.paper.orders()) == 1  # found by its tag, never sent again
    finally:
        oms.stop()
    assert len(rows(database_url, "SELECT broker_trade_id FROM trades")) == 2


# --------------------------------------------------------------------------- (b) cancelled


def test_an_order_cancelled_at_the_exchange_stays_cancelled_across_a_restart_and_never_trades_again(database_url):
    oms = start(database_url)
    try:
        oms.paper.set_price("INFY", D("1500.00"))
        oms.paper.set_liquidity("INFY", 3)
        placed = oms.place_order(buy("INFY", 10, order_type="LIMIT", price=D("1490.00"), stop_loss=D("1450.00")))
        oms.paper.set_price("INFY", D("1489.00"))
        wait_for(oms, placed.order_id, lambda o: o.filled_quantity == 3)
        # The cancellation's confirmation never reaches the OMS (its connection dropped):
        # the exchange cancels the order, the OMS still has it OPEN when it stops.
        oms.paper.exchange.close()
        assert oms.cancel_order(placed.order_id) is True
        tag = oms.get_order_status(placed.order_id).tag
        assert oms.paper.exchange.find_by_tag(tag).status == "CANCELLED"
        assert oms.get_order_status(placed.order_id).status is S.OPEN
    finally:
        oms.stop()

    oms = start(database_url)
    try:
        order = wait_for(oms, placed.order_id, lambda o: o.status is S.CANCELLED)
        assert order.filled_quantity == 3
        oms.paper.set_price("INFY", D("1480.00"))  # well through its limit again
        assert [t.quantity for t in oms.paper.trades()] == [3]
        assert oms.paper.exchange.find_by_tag(tag).status == "CANCELLED"
        assert oms.get_active_orders() == []
        [position] = oms.get_positions()
        assert position.quantity == 3
        assert oms.get_order_status(placed.order_id).filled_quantity == 3
    finally:
        oms.stop()
    assert [r["quantity"] for r in rows(database_url, "SELECT quantity FROM trades")] == [3]


# --------------------------------------------------------------------------- (c) a burst

SYMBOLS = {"INFY": D("1500.00"), "TCS": D("3400.00")}
PLACERS = 3
REFUSED = (OrderRejected, OrderNotCancellable, OrderNotFound)
GONE = (OrderSubmissionFailed, OMSTimeout)  # the OMS stopping under us (OMSStopped is one)


def place_and_cancel(oms, seed: int, done: threading.Event, placed: list, errors: list) -> None:
    rng = random.Random(seed)
    mine: list[int] = []
    try:
        while not done.is_set():
            try:
                if mine and rng.random() < 0.3:
                    oms.cancel_order(rng.choice(mine))
                    continue
                symbol = rng.choice(list(SYMBOLS))
                mid = SYMBOLS[symbol]
                side = rng.choice(("BUY", "SELL"))
                quantity = rng.randint(1, 20)
                if rng.random() < 0.3:
                    fields = {}  # MARKET
                else:
                    # Some cross at once, some rest beyond where the market goes (to be cancelled).
                    fields = {"order_type": "LIMIT", "price": mid + D(rng.randint(-30, 30)) / 2}
                entry = fields.get("price", mid)
                if side == "BUY":
                    request = buy(symbol, quantity, stop_loss=entry - 50, **fields)
                else:
                    request = sell(symbol, quantity, stop_loss=entry + 50, **fields)
                result = oms.place_order(request)
                mine.append(result.order_id)
                placed.append(result.order_id)
            except REFUSED:
                pass
    except GONE:
        pass  # stopped: the burst ends here
    except BaseException as error:  # surfaced by the test body
        errors.append(error)


def move_prices(exchange, done: threading.Event, errors: list) -> None:
    """The market moves on its own, straight at the exchange, while the OMS stops too;
    it ends when the exchange's book is released (the OMS stopped)."""
    rng = random.Random(7)
    try:
        while not done.is_set():
            symbol = rng.choice(list(SYMBOLS))
            exchange.set_price(symbol, SYMBOLS[symbol] + D(rng.randint(-12, 12)) / 2)
            time.sleep(0.002)
    except RuntimeError as released:
        if "released" not in str(released):
            errors.append(released)
    except BaseException as error:
        errors.append(error)


@pytest.mark.timeout(240)
def test_stop_in_the_middle_of_a_burst_and_a_restart_lose_no_fill_and_trade_nothing_twice(database_url):
    oms = start(database_url)
    done = threading.Event()
    placed: list[int] = []
    errors: list[BaseException] = []
    threads: list[threading.Thread] = []
    try:
        for symbol, price in SYMBOLS.items():
            oms.paper.set_price(symbol, price)
            oms.paper.set_liquidity(symbol, 5)  # partial fills
        exchange = oms.paper.exchange
        # After a while, places turn slow: stop() comes while one is at the exchange.
        midway = slow_places(exchange, 0.3, after=60)
        threads = [threading.Thread(target=move_prices, args=(exchange, done, errors), name="market")] + [
            threading.Thread(target=place_and_cancel, args=(oms, seed, done, placed, errors), name=f"placer-{seed}")
            for seed in range(PLACERS)
        ]
        for thread in threads:
            thread.start()
        assert midway.wait(60), "the burst never got going"
    finally:
        oms.stop()  # in the middle of the burst
        done.set()
        for thread in threads:
            thread.join(30)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert len(placed) >= 20

    # What the stop left: the exchange's book ahead of the OMS's tables.
    kept = {r["tag"]: r for r in rows(database_url, "SELECT tag, status, filled_quantity FROM paper_orders")}
    recorded = {r["tag"]: r for r in rows(database_url, "SELECT tag, status, filled_quantity FROM orders")}
    behind = [t for t, k in kept.items() if t not in recorded or recorded[t]["status"] != map_kite_status(k["status"]).value
              or recorded[t]["filled_quantity"] != k["filled_quantity"]]
    assert behind, "nothing was in flight at the stop: the test proved nothing"
    assert any(recorded[t]["status"] == "SUBMITTED" for t in behind if t in recorded)

    oms = start(database_url)
    try:
        settle(oms)
        cancelled = {b.tag: b.filled_quantity for b in oms.paper.orders() if b.status == "CANCELLED"}
        assert cancelled, "no order was cancelled in the burst"
        # Then the market sweeps through every limit: whatever still works fills (once).
        for symbol, mid in SYMBOLS.items():
            oms.paper.set_price(symbol, mid - 20)
            oms.paper.set_price(symbol, mid + 20)
        ours = settle(oms)
        broker_orders = oms.paper.orders()
        broker_trades = oms.paper.trades()
        active = oms.get_active_orders()
        positions = {(p.exchange.value, p.symbol, p.product.value): p.quantity for p in oms.get_positions()}
    finally:
        oms.stop()

    # Every broker order is in the OMS, with the same id, status and filled quantity.
    assert len({b.tag for b in broker_orders}) == len(broker_orders)
    for b in broker_orders:
        mine = ours[b.tag]
        assert mine.broker_order_id == b.broker_order_id
        assert mine.status is map_kite_status(b.status) and mine.filled_quantity == b.filled_quantity
    # An order of ours the exchange never got failed (or a check refused it); none is left in doubt.
    at_exchange = {b.tag for b in broker_orders}
    for tag, mine in ours.items():
        if tag not in at_exchange:
            assert mine.status in (S.FAILED, S.REJECTED) and mine.filled_quantity == 0, mine
    assert active == [] and all(map_kite_status(b.status).is_terminal for b in broker_orders)
    # A cancelled order stayed cancelled through the sweep, with the fills it had.
    assert {b.tag: (b.status, b.filled_quantity) for b in broker_orders if b.tag in cancelled} == {
        tag: ("CANCELLED", filled) for tag, filled in cancelled.items()
    }

    # Nothing traded twice: trade ids unique, each order's trades add up to its fill.
    trade_ids = [t.trade_id for t in broker_trades]
    assert len(trade_ids) == len(set(trade_ids)) and trade_ids
    traded = Counter()
    for t in broker_trades:
        traded[t.broker_order_id] += t.quantity
    for b in broker_orders:
        assert traded[b.broker_order_id] == b.filled_quantity <= b.quantity

    # No fill lost: every exchange trade is in `trades` exactly once, and nothing else is.
    recorded_trades = rows(database_url, "SELECT broker_trade_id, quantity, position_applied FROM trades")
    assert sorted(r["broker_trade_id"] for r in recorded_trades) == sorted(trade_ids)
    assert all(r["position_applied"] for r in recorded_trades)

    # Positions are the exchange's trades folded.
    folded: dict[tuple, int] = defaultdict(int)
    for t in broker_trades:
        folded[(t.exchange.value, t.symbol, t.product.value)] += t.quantity if t.side.value == "BUY" else -t.quantity
    assert {k: v for k, v in positions.items() if v} == {k: v for k, v in folded.items() if v}


# --------------------------------------------------------------------------- (d) prices, ids


def test_prices_and_ids_survive_a_restart_and_stay_the_accounts_own(database_url):
    oms = start(database_url)
    try:
        oms.paper.set_price("INFY", D("1500.25"))
        oms.paper.set_price("TCS", D("3400.50"), exchange="BSE")
        first = oms.place_order(buy("INFY", 1, order_type="LIMIT", price=D("1500.30"), stop_loss=D("1450.00")))
        wait_for(oms, first.order_id, lambda o: o.status is S.FILLED)
        before_orders = [o.broker_order_id for o in oms.paper.orders()]
        before_trades = [t.trade_id for t in oms.paper.trades()]
    finally:
        oms.stop()

    oms = start(database_url)
    try:
        assert oms.paper.price("INFY") == D("1500.25")
        assert oms.paper.price("TCS", exchange="BSE") == D("3400.50")
        assert oms.paper.price("TCS") is None  # NSE:TCS never had one
        # The instrument is known at once, at its kept price: an order placed before any
        # new price fills there.
        again = oms.place_order(buy("INFY", 2, order_type="LIMIT", price=D("1500.30"), stop_loss=D("1450.00")))
        order = wait_for(oms, again.order_id, lambda o: o.status is S.FILLED)
        assert order.average_price == D("1500.25")
        after_orders = [o.broker_order_id for o in oms.paper.orders()]
        after_trades = [t.trade_id for t in oms.paper.trades()]
    finally:
        oms.stop()
    # Ids go on from where they stopped: never repeated, same prefix.
    assert after_orders[: len(before_orders)] == before_orders and len(set(after_orders)) == 2
    assert after_trades[: len(before_trades)] == before_trades and len(set(after_trades)) == 2
    assert after_orders[1][:9] == before_orders[0][:9] and after_orders[1] > before_orders[0]

    # Another account's exchange on the same database has a book of its own.
    other = start(database_url, account="other")
    try:
        assert other.paper.price("INFY") is None and other.paper.orders() == []
    finally:
        other.stop()
