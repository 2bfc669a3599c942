"""The instrument master in the order checks (domain.risk.check_instrument) and its
loading (actors.instruments.InstrumentMaster): cache first, broker next, an older cache
or the built-in table when the broker fails, and a new day's master each morning."""
from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal

from actors.brokers.kite_rates import IST
from actors.instruments import InstrumentMaster, next_refresh
from domain import OrderRequest
from domain.instruments import Instrument, InstrumentBook
from domain.risk import check_instrument

D = Decimal
OPTION = Instrument("NFO", "NIFTY26DEC24000CE", D("0.05"), 75, "CE", "NFO-OPT")
STOCK = Instrument("NSE", "INFY", D("0.50"), 1, "EQ", "NSE")
BOOK = InstrumentBook.of([OPTION, STOCK], date(2026, 11, 26))


def order(symbol: str = "INFY", exchange: str = "NSE", quantity: int = 10, price: str = "1490.50", **fields) -> OrderRequest:
    fields = {"order_type": "LIMIT", **fields}
    return OrderRequest(symbol=symbol, exchange=exchange, side="BUY", quantity=quantity, price=price, stop_loss="1", **fields)


def test_the_instruments_own_tick_and_lot_sizes_are_checked():
    assert check_instrument(order(price="1490.50"), BOOK).passed
    off_tick = check_instrument(order(price="1490.10"), BOOK)
    assert not off_tick.passed and off_tick.reason == "price: 1490.10 is not a multiple of NSE:INFY's tick size 0.50"
    assert check_instrument(order(OPTION.symbol, "NFO", 150, "100.05"), BOOK).passed
    odd_lot = check_instrument(order(OPTION.symbol, "NFO", 50, "100.05"), BOOK)
    assert not odd_lot.passed and "quantity: 50 is not a multiple of NFO:NIFTY26DEC24000CE's lot size 75" == odd_lot.reason
    stop = order(price="1490.50", order_type="SL", trigger_price="1490.20")
    assert "trigger_price: 1490.20" in check_instrument(stop, BOOK).reason


def test_an_instrument_the_master_lacks_falls_back_unless_it_is_a_derivative():
    assert check_instrument(order("TCS", price="3500"), BOOK).passed
    unknown = check_instrument(order("NIFTY26DEC25000CE", "NFO", 75, "10.05"), BOOK)
    assert not unknown.passed and unknown.reason == "NFO:NIFTY26DEC25000CE is not in the instrument master of 2026-11-26"


def test_without_a_master_only_derivatives_are_refused():
    none = InstrumentBook(problem="the instrument master could not be loaded (ConnectionError)")
    cash = check_instrument(order(), none)
    assert cash.passed and "the built-in tick table applies" in cash.reason
    fo = check_instrument(order(OPTION.symbol, "NFO", 75, "100.05"), none)
    assert not fo.passed
    assert fo.reason == ("the instrument master is not loaded (the instrument master could not be loaded (ConnectionError)): "
                         "NFO:NIFTY26DEC24000CE is a derivative, refused without its lot and tick sizes")


class FakeStore:
    def __init__(self, day: date | None = None, rows: list[Instrument] | None = None) -> None:
        self.day, self.rows, self.replaced = day, rows or [], 0

    def load(self):
        return self.day, list(self.rows)

    def replace(self, day, rows):
        self.day, self.rows = day, list(rows)
        self.replaced += 1

    def close(self):
        pass


class Broker:
    def __init__(self, rows=None, error: Exception | None = None) -> None:
        self.rows, self.error, self.calls = [STOCK, OPTION] if rows is None else rows, error, 0

    def fetch(self):
        self.calls += 1
        if self.error:
            raise self.error
        return self.rows


def master(store, broker, day=date(2026, 11, 26)) -> InstrumentMaster:
    return InstrumentMaster(broker.fetch, store, today=lambda: day)


def test_todays_master_in_the_database_is_used_without_asking_the_broker():
    store, broker = FakeStore(date(2026, 11, 26), [STOCK]), Broker()
    book = master(store, broker).load()
    assert broker.calls == 0 and book.get("NSE", "INFY") == STOCK and book.problem is None


def test_an_old_master_is_replaced_by_the_brokers_and_cached():
    store, broker = FakeStore(date(2026, 11, 25), [STOCK]), Broker()
    m = master(store, broker)
    book = m.load()
    assert broker.calls == 1 and len(book) == 2 and m() is book
    assert (store.day, store.replaced) == (date(2026, 11, 26), 1)


def test_a_broker_that_fails_leaves_the_older_master_in_force_and_says_so():
    store = FakeStore(date(2026, 11, 25), [STOCK, OPTION])
    book = master(store, Broker(error=ConnectionError("no route"))).load()
    assert book.loaded and book.get("NFO", OPTION.symbol) == OPTION
    assert book.problem == "today's instrument master could not be loaded (ConnectionError: no route); using the one of 2026-11-25"


def test_with_no_master_at_all_the_problem_says_what_follows(caplog):
    book = master(FakeStore(), Broker(rows=[])).load()
    assert not book.loaded
    assert "the broker's instrument list was empty" in book.problem and "F&O) orders are refused" in book.problem
    assert book.problem in caplog.text


def test_the_next_load_is_the_next_morning_in_kolkata():
    assert next_refresh(datetime(2026, 11, 26, 7, 0, tzinfo=IST)) == datetime(2026, 11, 26, 8, 45, tzinfo=IST)
    assert next_refresh(datetime(2026, 11, 26, 9, 0, tzinfo=IST)) == datetime(2026, 11, 27, 8, 45, tzinfo=IST)
    assert next_refresh(datetime(2026, 11, 26, 3, 0, tzinfo=IST), time(8, 45)).date() == date(2026, 11, 26)


def test_the_refresh_thread_loads_the_new_days_master_and_stops():
    days = iter([date(2026, 11, 26), date(2026, 11, 27)])
    store, broker = FakeStore(), Broker()
    m = InstrumentMaster(broker.fetch, store, today=lambda: next(days, date(2026, 11, 27)),
                         now=lambda: datetime(2026, 11, 27, 8, 44, 59, 500_000, tzinfo=IST))
    m.load()
    m.start()
    try:
        deadline = datetime.now().timestamp() + 10
        while m().loaded_on != date(2026, 11, 27) and datetime.now().timestamp() < deadline:
            pass
        assert m().loaded_on == date(2026, 11, 27) and store.day == date(2026, 11, 27)
    finally:
        m.stop()
