"""The paper exchange with a kept book (persistence.paper_book), apart from the OMS: a
new exchange on the same book answers exactly as the old one did; changes the database
cannot take are held and written later; a released book refuses changes; one account's
book is not another's. SQLite and PostgreSQL."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Iterator

import pytest
from sqlalchemy.exc import OperationalError

from actors.brokers import PaperExchange
from actors.brokers.paper_writer import FIRST_RETRY_SECONDS
from domain.broker import (
    BrokerOrderRequest,
    BrokerOrderUpdate,
    BrokerRejected,
    BrokerTrade,
)
from domain.enums import Exchange, OrderType, Product, Side, Validity
from persistence.migrate import upgrade
from persistence.paper_book import PaperBookStore

T0 = datetime(2026, 12, 2, 4, 0, tzinfo=timezone.utc)
D = Decimal


class Sink:
    def __init__(self) -> None:
        self.events: list[BrokerOrderUpdate | BrokerTrade] = []

    def on_order_update(self, update: BrokerOrderUpdate) -> None:
        self.events.append(update)

    def on_trade(self, trade: BrokerTrade) -> None:
        self.events.append(trade)


def req(tag: str, side: Side = Side.BUY, quantity: int = 10, order_type: OrderType = OrderType.MARKET,
        price: str | None = None, trigger: str | None = None, symbol: str = "INFY") -> BrokerOrderRequest:
    return BrokerOrderRequest(
        tag=tag, exchange=Exchange.NSE, symbol=symbol, side=side, quantity=quantity, order_type=order_type,
        product=Product.MIS, validity=Validity.DAY,
        price=None if price is None else D(price), trigger_price=None if trigger is None else D(trigger),
    )


@pytest.fixture
def url(database_url: str) -> str:
    upgrade(database_url)
    return database_url


@pytest.fixture
def opened(url: str) -> Iterator:
    """Opens exchanges on the book of an account; releases them all afterwards."""
    made: list[PaperExchange] = []

    def open_exchange(account: str = "default", **kwargs) -> PaperExchange:
        exchange = PaperExchange(lambda: T0, book=PaperBookStore.open(url, account), **kwargs)
        made.append(exchange)
        return exchange

    yield open_exchange
    for exchange in made:
        exchange.release_book()


def view(exchange: PaperExchange) -> tuple:
    return exchange.orders(), exchange.trades(), exchange.price("INFY"), exchange.price("TCS")


def trade_a_little(ex: PaperExchange) -> dict[str, str]:
    ex.set_price("INFY", D("1500.05"))
    ex.set_price("TCS", D("3400"))
    ex.set_liquidity("INFY", 4)
    ids = {
        "partial": ex.place(req("P", quantity=10)),  # 4 filled, 6 working
        "resting": ex.place(req("R", order_type=OrderType.LIMIT, price="1450.5")),
        "stop": ex.place(req("S", side=Side.SELL, order_type=OrderType.SL_M, trigger="3300", symbol="TCS")),
        "cancelled": ex.place(req("C", order_type=OrderType.LIMIT, price="1400")),
    }
    ex.modify(ids["resting"], price=D("1460.25"))
    ex.set_price("INFY", D("1499.95"))  # the partial order fills 4 more
    ex.cancel(ids["cancelled"])
    with pytest.raises(BrokerRejected, match="outside the circuit band"):
        ex.place(req("X", order_type=OrderType.LIMIT, price="100"))
    malformed = BrokerOrderRequest(
        tag="M", exchange=Exchange.NSE, symbol="INFY", side="SIDEWAYS", quantity=5,  # type: ignore[arg-type]
        order_type=OrderType.MARKET, product=Product.MIS, validity=Validity.DAY,
    )
    with pytest.raises(BrokerRejected):
        ex.place(malformed)
    return ids


def test_a_new_exchange_on_the_kept_book_answers_as_the_old_one_did(opened, url):
    first = opened()
    ids = trade_a_little(first)
    before = view(first)
    first.release_book()

    second = opened()
    assert view(second) == before
    assert second.find_by_tag("M").status == "REJECTED"
    assert second.find_by_tag("C").status == "CANCELLED"
    # The working orders work on, in their time priority, and ids never repeat.
    sink = Sink()
    second.connect(sink)
    second.set_price("INFY", D("1460.25"))
    filled = [e.broker_order_id for e in sink.events if isinstance(e, BrokerTrade)]
    assert filled == [ids["partial"], ids["resting"]]
    assert second.find_by_tag("P").status == "COMPLETE" and second.find_by_tag("R").status == "COMPLETE"
    new_id = second.place(req("N", quantity=1))
    every_order = [o.broker_order_id for o in second.orders()]
    every_trade = [t.trade_id for t in second.trades()]
    assert len(set(every_order)) == len(every_order) and new_id == every_order[-1]
    assert len(set(every_trade)) == len(every_trade)
    assert new_id[:9] == ids["partial"][:9]  # the book's prefix
    store = PaperBookStore.open(url)
    try:
        with pytest.raises(ValueError, match="differs from the kept book"):
            PaperExchange(lambda: T0, id_prefix="42", book=store)
    finally:
        store.close()


def test_changes_the_database_cannot_take_are_held_and_written_with_a_later_one(opened, url, monkeypatch):
    store = PaperBookStore.open(url)
    ex = PaperExchange(lambda: T0, book=store)
    ex.set_price("INFY", D("1500"))
    sink = Sink()
    ex.connect(sink)
    real_save = store.save
    refused: list[int] = []

    def away(**rows):
        refused.append(1)
        raise OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(store, "save", away)
    held = ex.place(req("H", quantity=3))  # the exchange goes on from memory ...
    ex.set_price("INFY", D("1501"))
    assert refused and [e.status for e in sink.events if isinstance(e, BrokerOrderUpdate)] == ["OPEN", "COMPLETE"]

    monkeypatch.setattr(store, "save", real_save)
    time.sleep(FIRST_RETRY_SECONDS + 0.05)
    ex.set_price("INFY", D("1502"))  # ... and writes what it held with the next change
    before = view(ex)
    ex.release_book()
    again = opened()
    assert view(again) == before
    assert again.find_by_tag("H").broker_order_id == held
    assert again.price("INFY") == D("1502")


def test_a_released_book_refuses_changes_and_still_answers(opened):
    ex = opened()
    ex.set_price("INFY", D("1500"))
    order_id = ex.place(req("A", order_type=OrderType.LIMIT, price="1490"))
    ex.release_book()
    ex.release_book()  # idempotent
    for change in (
        lambda: ex.set_price("INFY", D("1489")),
        lambda: ex.place(req("B")),
        lambda: ex.cancel(order_id),
        lambda: ex.modify(order_id, price=D("1495")),
    ):
        with pytest.raises(RuntimeError, match="released"):
            change()
    assert ex.find_by_tag("A").status == "OPEN" and ex.price("INFY") == D("1500")


def test_each_account_has_a_book_of_its_own(opened):
    a = opened("acct_a")
    a.set_price("INFY", D("1500"))
    a.place(req("A1"))
    b = opened("acct_b")
    assert b.orders() == [] and b.trades() == [] and b.price("INFY") is None
    b.set_price("INFY", D("1600"))
    b.place(req("A1"))  # the same tag in another account is another order
    a.release_book()
    b.release_book()
    assert opened("acct_a").price("INFY") == D("1500")
    assert [t.price for t in opened("acct_b").trades()] == [D("1600")]


def test_what_the_book_could_not_hold_exactly_is_refused_not_rounded(opened):
    ex = opened()
    with pytest.raises(ValueError, match="decimal places"):
        ex.set_price("INFY", D("1500.123456789"))
    with pytest.raises(ValueError, match="characters"):
        ex.set_price("X" * 41, D("1"))
    ex.set_price("INFY", D("1500"))
    with pytest.raises(BrokerRejected, match="decimal places"):
        ex.place(req("F", order_type=OrderType.LIMIT, price="1499.000000001"))
    with pytest.raises(BrokerRejected, match="at most 2147483647"):
        ex.place(req("Q", quantity=2**31))
    assert [o.status for o in ex.orders()] == ["REJECTED", "REJECTED"]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # SQLite commits in the process: no answer to lose
def test_on_postgresql_a_save_commits_in_its_own_query_and_one_whose_answer_is_lost_is_written_again(opened, monkeypatch):
    # One round trip a save (no COMMIT of its own), which is safe only because a save
    # can be made twice: whole orders, prices and counters again, a trade once.
    import psycopg
    from sqlalchemy.engine.default import DefaultDialect

    from persistence import one_query

    status_at_commit = []
    real_commit = DefaultDialect.do_commit

    def do_commit(dialect, dbapi_connection):
        status_at_commit.append(dbapi_connection.dbapi_connection.info.transaction_status)
        real_commit(dialect, dbapi_connection)

    real_exchange, lost = one_query._exchange, []

    def committed_then_cut(raw, query):
        results = real_exchange(raw, query)  # the server committed ...
        if not lost:
            lost.append(query)
            raw.close()  # ... and the answer never arrived
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return results

    ex = opened()  # (its book read in a transaction of its own)
    monkeypatch.setattr(DefaultDialect, "do_commit", do_commit)
    ex.set_price("INFY", D("1500"))  # a save
    assert status_at_commit == [psycopg.pq.TransactionStatus.IDLE]  # nothing left for the COMMIT

    monkeypatch.setattr(one_query, "_exchange", committed_then_cut)
    placed = ex.place(req("L", quantity=3))  # filled at once: an order, a trade, the counters
    assert lost and b"COMMIT" in lost[0]
    time.sleep(FIRST_RETRY_SECONDS + 0.05)
    ex.set_price("INFY", D("1501"))  # the held save goes again, with this change
    before = view(ex)
    ex.release_book()
    again = opened()
    assert view(again) == before
    assert again.find_by_tag("L").broker_order_id == placed
    assert len([t for t in again.trades() if t.broker_order_id == placed]) == 1
