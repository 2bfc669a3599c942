"""start_oms and the handle it returns: the blocking API for scripts and tests.

The handle holds no order state; it sends messages to the supervisor and waits on
futures. Strategies that are actors can message the supervisor directly.
"""
from __future__ import annotations

import logging
import sys
import threading
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterator, Mapping

import pykka
from pydantic import SecretStr

from actors.alerter import Alerter
from actors.brokers.kite import KiteBroker
from actors.brokers.kite_prices import KitePrices
from actors.brokers.kite_token_watch import TokenFileWatcher
from actors.brokers.paper import PaperExchange
from actors.cpu_pin import process_pin
from actors.instruments import InstrumentMaster
from actors.kill_switch import close_all_positions
from actors.messages import (
    AwaitRecovery,
    Boot,
    CancelOrder,
    EvaluateAlerts,
    GetActiveOrders,
    GetAlerts,
    GetEvents,
    GetFills,
    GetHealth,
    GetOrder,
    GetOrders,
    GetPositions,
    GetTradingState,
    MarkPrice,
    ModifyOrder,
    PlaceOrder,
    Reconcile,
    Resume,
    SetAccessToken,
    SetTradingState,
    Subscribe,
)
from actors.settings import OMSSettings
from actors.square_off import MisSquareOff
from actors.supervisor import Health, Supervisor, TradingState
from domain.broker import BrokerOrderRequest
from domain.enums import Exchange, OrderStatus, OrderType, Product, Side, Validity
from domain.errors import OrderSubmissionFailed
from domain.fill import Fill
from domain.money import parse_money
from domain.monitoring import Alert, AlertChanges
from domain.order import Order, OrderEvent
from domain.order_request import OrderRequest
from domain.position import Position
from domain.reconciliation import ReconciliationReport
from domain.results import OrderResult
from observability.exposition import MetricsServer
from observability.logs import redact, secrets_of
from observability.metrics import OMSMetrics
from observability.sinks import AlertSink, TelegramSink, WebhookSink
from persistence.account_lock import AccountLock
from persistence.instrument_store import InstrumentStore
from persistence.paper_book import PaperBookStore
from persistence.preflight import prepare_database

log = logging.getLogger("oms")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def last_price(
    symbol: str, price: Decimal | float | int | str, exchange: str | Exchange, at: datetime,
    lower_circuit: Decimal | float | int | str | None = None, upper_circuit: Decimal | float | int | str | None = None,
) -> MarkPrice:
    """A last price as the OMS takes it: a float by its shortest repr, like everywhere;
    positive, or a ValueError naming the price. Circuit limits come both or neither."""
    amount = parse_money(price, "price")
    if amount <= 0:
        raise ValueError(f"price: must be positive, got {amount}")
    if (lower_circuit is None) != (upper_circuit is None):
        raise ValueError("lower_circuit, upper_circuit: give both circuit limits or neither")
    lower = upper = None
    if lower_circuit is not None and upper_circuit is not None:
        lower, upper = parse_money(lower_circuit, "lower_circuit"), parse_money(upper_circuit, "upper_circuit")
        if not 0 < lower <= upper:
            raise ValueError(f"lower_circuit, upper_circuit: need 0 < lower <= upper, got {lower} and {upper}")
    return MarkPrice(Exchange(exchange), symbol, amount, at, lower, upper)


class OMSTimeout(TimeoutError):
    """The OMS did not answer in time; the order may still be in progress."""


class OMSStopped(OrderSubmissionFailed):
    """The OMS is not running (stopped, or never started): nothing was sent."""


class PaperMarket:
    """The simulated exchange's controls (the far side of the paper broker)."""

    def __init__(self, exchange: PaperExchange, supervisor: pykka.ActorRef, clock: Callable[[], datetime], timeout: float) -> None:
        self.exchange = exchange
        self._supervisor = supervisor
        self._clock = clock
        self._timeout = timeout

    def set_price(self, symbol: str, price: Decimal | float | int | str, exchange: str | Exchange = "NSE") -> None:
        """Move the last price. The OMS learns it first (for valuing MARKET orders and
        positions), then the exchange matches resting orders against it."""
        mark = last_price(symbol, price, exchange, self._clock())
        self._supervisor.ask(mark, timeout=self._timeout)
        self.exchange.set_price(symbol, mark.price, mark.exchange)

    def set_liquidity(self, symbol: str, quantity: int | None, exchange: str | Exchange = "NSE") -> None:
        self.exchange.set_liquidity(symbol, quantity, exchange)

    def trade_outside(
        self, symbol: str, side: str | Side, quantity: int, product: str | Product = "MIS",
        exchange: str | Exchange = "NSE", tag: str = "MANUAL",
    ) -> str:
        """A MARKET order placed at the exchange behind the OMS's back (by hand at the
        broker's terminal, say), under a tag that is not the OMS's; it fills at the last
        price. Answers its exchange order id. Reconciliation finds what it did."""
        request = BrokerOrderRequest(
            tag, Exchange(exchange), symbol, Side(side), quantity, OrderType.MARKET, Product(product), Validity.DAY,
        )
        return self.exchange.place(request)

    def orders(self):
        """Every order the simulated exchange has received."""
        return self.exchange.orders()

    def trades(self, broker_order_id: str | None = None):
        return self.exchange.trades(broker_order_id)

    def __getattr__(self, name: str) -> Any:  # fault injection and the rest
        return getattr(self.exchange, name)


class OMS:
    """A running OMS. Every call blocks until the OMS has answered."""

    def __init__(
        self, supervisor: pykka.ActorRef, settings: OMSSettings, paper: PaperMarket | None, lock: AccountLock | None = None,
        clock: Callable[[], datetime] = utc_now, metrics: OMSMetrics | None = None,
    ) -> None:
        self.supervisor = supervisor
        """The supervisor's ref: strategy actors send it the messages of ``actors.trading``."""
        self.settings = settings
        self.paper = paper
        """The paper exchange's controls; None when trading on Kite."""
        self._clock = clock
        self._lock = lock
        self._stopped = False
        self._switching = False  # holds the GIL switch interval (see _SwitchInterval)
        self._pinned = False  # holds the process on settings.pin_to_cpu (actors.cpu_pin)
        self._helpers: list[Any] = []  # threads of the handle's own (stopped first)
        self._postback_url: Callable[[], str | None] = lambda: None
        self._prices: KitePrices | None = None  # Kite's live prices (paper on them, or kite_market_prices)
        self.metrics: OMSMetrics = metrics or OMSMetrics(settings.alerts)
        """This OMS's metrics (its own Prometheus registry: ``metrics.registry``; the KPIs
        now: ``metrics.kpis()``)."""
        self.metrics_server: MetricsServer | None = None
        """The loopback HTTP server of the metrics, when ``metrics_port`` is set."""
        self._alerter: pykka.ActorRef | None = None

    @property
    def metrics_url(self) -> str | None:
        """Where the metrics are served (``http://127.0.0.1:PORT/metrics``), or None."""
        return self.metrics_server.url if self.metrics_server is not None else None

    def metrics_text(self) -> bytes:
        """The metrics in Prometheus's text format (what ``/metrics`` answers)."""
        return self.metrics.text()

    @property
    def alerts(self) -> list[Alert]:
        """The alerts active now, most severe first (empty when all is well)."""
        if self._alerter is None:
            return []
        try:
            return self._alerter.ask(GetAlerts(), timeout=self.settings.request_timeout)
        except pykka.ActorDeadError:
            raise OMSStopped("alerts: the OMS is not running") from None

    def evaluate_alerts(self) -> AlertChanges:
        """Evaluate the alert thresholds now rather than at the next tick; answers what
        fired and what was resolved (each already sent to the sinks)."""
        if self._alerter is None:
            raise OMSStopped("evaluate_alerts: the OMS has no alerter")
        try:
            return self._alerter.ask(EvaluateAlerts(), timeout=self.settings.request_timeout)
        except pykka.ActorDeadError:
            raise OMSStopped("evaluate_alerts: the OMS is not running") from None

    @property
    def postback_url(self) -> str | None:
        """Where this OMS takes Kite's postbacks (a loopback URL, behind your proxy), or
        None when it takes none (kite_postback_port unset, or paper trading)."""
        return self._postback_url()

    def _watch_secrets_file(self) -> None:
        """Take each new access token written to the secrets file (by oms-login)."""
        settings = self.settings
        assert settings.kite_secrets_file is not None
        current = settings.kite_access_token.get_secret_value() if settings.kite_access_token else None
        watcher = TokenFileWatcher(
            settings.kite_secrets_file, self.set_access_token, interval=settings.kite_secrets_poll, current=current,
        )
        watcher.start()
        self._helpers.append(watcher)

    def _wait(self, future: pykka.Future, what: str) -> Any:
        try:
            return future.get(timeout=self.settings.request_timeout)
        except pykka.Timeout:
            raise OMSTimeout(f"{what}: no answer within {self.settings.request_timeout}s") from None
        except pykka.ActorDeadError as error:
            raise OMSStopped(f"{what}: the OMS is not running ({error})") from None

    def _call(self, make: Callable[[pykka.Future], Any], what: str) -> Any:
        reply: pykka.Future = pykka.ThreadingFuture()
        try:
            self.supervisor.tell(make(reply))
        except pykka.ActorDeadError:
            raise OMSStopped(f"{what}: the OMS is not running") from None
        return self._wait(reply, what)

    def _ask(self, message: Any) -> Any:
        try:
            future = self.supervisor.ask(message, block=False)
        except pykka.ActorDeadError:
            raise OMSStopped(f"{type(message).__name__}: the OMS is not running") from None
        return self._wait(future, type(message).__name__)

    def place_order(self, request: OrderRequest) -> OrderResult:
        """Validate, record, send; return once the broker acknowledged (or the outcome
        is known to be unknown: status SUBMITTED). Raises OrderRejected (a pre-trade
        check or the broker refused), OrderSubmissionFailed (never reached the broker).
        A request whose ``client_order_id`` this account used before answers that order
        (or its refusal) and sends nothing, also concurrently and after a restart."""
        if not isinstance(request, OrderRequest):
            raise TypeError(f"request: expected an OrderRequest, got {type(request).__name__}")
        if self._prices is not None:
            # Kite's live prices: an instrument's first price is read before its first
            # order is checked (a MARKET order is valued at it).
            self._prices.follow(Exchange(request.exchange).value, request.symbol)
        return self._call(lambda r: PlaceOrder(request, reply=r), f"place_order {request.symbol}")

    def cancel_order(self, order_id: int) -> bool:
        """Ask the broker to cancel; True once it accepted the request. The status
        becomes CANCELLED as the broker's update arrives (``get_order_status`` shows it).
        Raises OrderNotFound, or OrderNotCancellable (it ended first, or the broker said no)."""
        return self._call(lambda r: CancelOrder(order_id, reply=r), f"cancel_order {order_id}")

    def modify_order(
        self,
        order_id: int,
        new_price: Decimal | float | int | str | None = None,
        new_quantity: int | None = None,
        new_trigger_price: Decimal | float | int | str | None = None,
    ) -> bool:
        """Change a working order's price, quantity or trigger (re-checked for risk);
        True once the broker accepted it. Raises ValueError naming a bad field,
        OrderRejected (a risk check), OrderNotFound or OrderNotModifiable."""
        return self._call(
            lambda r: ModifyOrder(order_id, new_price, new_quantity, new_trigger_price, reply=r),
            f"modify_order {order_id}",
        )

    def get_order_status(self, order_id: int) -> Order:
        return self._ask(GetOrder(order_id))

    get_order = get_order_status

    def get_active_orders(self) -> list[Order]:
        return self._ask(GetActiveOrders())

    def get_orders(
        self,
        statuses: tuple[OrderStatus, ...] | None = None,
        strategy_id: int | None = None,
        after_id: int = 0,
        limit: int = 1000,
        newest_first: bool = False,
    ) -> list[Order]:
        """One page of orders in id order: those above ``after_id`` (pass the last id of
        the previous page), at most ``limit`` (10,000 at most). ``iter_orders`` pages
        through them all. ``newest_first``: the ``limit`` newest, newest first."""
        return self._call(
            lambda r: GetOrders(statuses, strategy_id, after_id, limit, r, newest_first), "get_orders")

    def iter_orders(
        self, statuses: tuple[OrderStatus, ...] | None = None, strategy_id: int | None = None, page: int = 1000,
    ) -> Iterator[Order]:
        """Every matching order, read a page at a time."""
        after_id = 0
        while True:
            batch = self.get_orders(statuses, strategy_id, after_id, page)
            yield from batch
            if len(batch) < page:
                return
            after_id = batch[-1].order_id

    def health(self) -> Health:
        """RUNNING; DEGRADED with the reason (the database is away: broker news is held,
        new orders, cancels and modifications are refused with OMSUnavailable); or HALTED."""
        return self._ask(GetHealth())

    @property
    def trading_state(self) -> TradingState:
        """RUNNING, REDUCE_ONLY (only orders that shrink a position) or HALTED (nothing
        new; cancels and queries still work). Kept in ``trading_states``: a restart
        starts in the state the last run left."""
        return self._ask(GetTradingState())[0]

    def halt(self, reason: str) -> TradingState:
        """Refuse every new order until ``resume()``; cancels still work. Recorded with
        ``reason`` (an audited change that outlives a restart)."""
        return self._ask(SetTradingState(TradingState.HALTED.value, reason))

    def reduce_only(self, reason: str) -> TradingState:
        """Accept only orders that shrink a position until ``resume()``. Recorded with ``reason``."""
        return self._ask(SetTradingState(TradingState.REDUCE_ONLY.value, reason))

    def resume(self, reason: str = "resumed by the operator") -> TradingState:
        """Leave HALTED or REDUCE_ONLY (after a fault the restart budget could not cure,
        once the cause is understood); answers the trading state."""
        return self._ask(Resume(reason))

    def close_all_positions(self, timeout: float = 60.0) -> Mapping[str, Any]:
        """The kill switch: trading goes REDUCE_ONLY, every open order is cancelled,
        every position is flattened with MARKET orders (sent again for what a partial fill
        left, up to three rounds), the fills are waited for (up to ``timeout`` seconds),
        and trading is left HALTED until ``resume()``. Answers what it did: ``cancelled``
        and ``not_cancelled`` orders, ``exit_orders``, ``refused`` exits, the positions
        still ``remaining``, ``all_closed`` and the ``state``."""
        return close_all_positions(self, timeout)

    def set_access_token(self, token: str | SecretStr) -> None:
        """Give the broker the day's fresh access token (after Kite's login, see
        ``oms-login``): orders are sent again, without a restart. The token is never
        logged or stored by the OMS."""
        secret = token if isinstance(token, SecretStr) else SecretStr(token)
        if not secret.get_secret_value().strip():
            raise ValueError("access token: empty")
        redact(secret.get_secret_value())
        if self._prices is not None:
            self._prices.set_access_token(secret.get_secret_value())
            if self.paper is not None:  # paper trading: only the prices come from Kite
                log.warning("a fresh Kite access token was set; Kite's prices are read with it")
                return
        if not self._call(lambda r: SetAccessToken(secret, r), "set_access_token"):
            raise ValueError("access token: this broker has no sessions (paper trading)")
        log.warning("a fresh broker access token was set; new orders go to the broker again")

    def mark_price(
        self, symbol: str, price: Decimal | float | int | str, exchange: str | Exchange = "NSE",
        lower_circuit: Decimal | float | int | str | None = None, upper_circuit: Decimal | float | int | str | None = None,
    ) -> None:
        """Tell the OMS an instrument's last price: what a MARKET order is valued at by
        the risk checks, and what open positions are marked to. With no market-data feed
        yet, a strategy trading on Kite passes on the prices it sees; with the day's
        circuit limits (Kite's quote() has them), orders priced outside are refused."""
        self._ask(last_price(symbol, price, exchange, self._clock(), lower_circuit, upper_circuit))

    def get_positions(self) -> list[Position]:
        return self._ask(GetPositions())

    def reconcile_positions(self) -> ReconciliationReport:
        """Compare positions and orders with the broker's now, correct ours where the
        broker differs (logged in ``reconciliation_log``), and return the report:
        ``report["all_clear"]``, ``["mismatches"]``, ``["unknown_positions"]``,
        ``["timestamp"]`` (and ``["deferred"]``, ``["untagged_orders"]``). A difference
        with fills still on their way is left for the next pass. The same pass runs at
        start and every ``reconcile_interval`` seconds."""
        return self._call(lambda r: Reconcile(r), "reconcile_positions")

    def get_trades(self, order_id: int | None = None, after_id: int = 0, limit: int = 1000) -> list[Fill]:
        """One page of fills in the order recorded, of one order or all: those after
        ``after_id`` (the ``id`` of the last fill of the previous page)."""
        return self._call(lambda r: GetFills(order_id, after_id, limit, r), "get_trades")

    def get_order_events(self, order_id: int | None = None, after_id: int = 0, limit: int = 1000) -> list[OrderEvent]:
        """One page of the audit trail in the order written, of one order or all: events
        after ``after_id`` (the ``id`` of the last event of the previous page)."""
        return self._call(lambda r: GetEvents(order_id, after_id, limit, r), "get_order_events")

    def subscribe(self, subscriber: pykka.ActorRef, strategy_id: int | None = None) -> None:
        """Send ``subscriber`` OrderChanged for every committed order change and
        OrderFilled for every fill (of every order, or of ``strategy_id``'s)."""
        self._ask(Subscribe(subscriber, strategy_id))

    def stop(self) -> None:
        """Stop every actor (children in reverse start order) and wait for them."""
        if self._stopped:
            return
        self._stopped = True
        if self._switching:
            _switch_interval.release()
        for helper in reversed(self._helpers):
            helper.stop()
        try:
            self.supervisor.stop(block=True, timeout=60)
        except pykka.ActorDeadError:
            pass  # it had stopped already
        finally:
            try:
                if self.paper is not None:
                    # Before the account lock goes: the next OMS's exchange owns the book.
                    self.paper.exchange.release_book()
            finally:
                try:
                    if self._lock is not None:
                        self._lock.release()
                finally:
                    if self._pinned:  # last: its threads have ended, none is left to start another
                        process_pin.release()

    def __enter__(self) -> "OMS":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _SwitchInterval:
    """The interpreter's GIL switch interval while any OMS runs. Python lets a busy
    thread keep the GIL for 5 ms before another may run; every hop of an order (about
    thirty, on as many threads) may wait that long behind a thread that is merely busy,
    such as a reader turning 10,000 rows into orders (a place then took 108 ms, p50,
    instead of 7). The OMS shortens it while it runs (measured: 23 ms beside the same
    reader) and gives back the interval it found when the last OMS stops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._found = 0.0

    def take(self, seconds: float) -> None:
        with self._lock:
            if self._users == 0:
                self._found = sys.getswitchinterval()
            self._users += 1
            sys.setswitchinterval(min(seconds, sys.getswitchinterval()) if self._users > 1 else seconds)

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                sys.setswitchinterval(self._found)


_switch_interval = _SwitchInterval()


def start_oms(*, clock: Callable[[], datetime] | None = None, **overrides: Any) -> OMS:
    """Start the whole OMS and return its handle once live orders are recovered.

    Raises pydantic's ValidationError (a ValueError) for a bad setting, DatabaseUnavailable
    when the database cannot be reached or opened, and AccountInUse when another OMS
    already runs for this account on this database; each says what to fix in one line
    (``actors.settings.describe_settings_error`` words a settings error for people).

    Keywords override settings (OMS_* environment, then the TOML file): for example
    ``start_oms(database_url="sqlite:///oms.db", broker="paper", capital=Decimal("1000000"))``.
    ``clock`` (tz-aware UTC) is for tests and replays.
    """
    settings = OMSSettings(**overrides)
    logging.getLogger("oms").setLevel(settings.log_level.upper())
    redact(*secrets_of(settings))  # never in a line of the log (observability.logs)
    now = clock or utc_now
    metrics = OMSMetrics(settings.alerts)
    # First: a port taken is a setting to fix, found before anything has started.
    server = MetricsServer(metrics, settings.metrics_port) if settings.metrics_port is not None else None
    pinned = False
    try:
        if settings.pin_to_cpu is not None:
            process_pin.take(settings.pin_to_cpu)  # before the OMS's threads start: they inherit it
            pinned = True
        oms = _start(settings, now, metrics)
    except BaseException:
        if pinned:
            process_pin.release()
        if server is not None:
            server.stop()
        raise
    oms._pinned = pinned
    if server is not None:
        oms.metrics_server = server
        oms._helpers.insert(0, server)  # stopped last of the helpers
    return oms


def alert_sinks(settings: OMSSettings) -> list[AlertSink]:
    """The sinks the settings configure (the log is always one, see Alerter)."""
    sinks: list[AlertSink] = []
    if settings.alert_webhook_url is not None:
        sinks.append(WebhookSink(settings.alert_webhook_url, timeout=settings.alert_timeout))
    if settings.alert_telegram_bot_token is not None and settings.alert_telegram_chat_id is not None:
        sinks.append(TelegramSink(
            settings.alert_telegram_bot_token, settings.alert_telegram_chat_id,
            api_root=settings.alert_telegram_api_root, timeout=settings.alert_timeout,
        ))
    return sinks


def _start(settings: OMSSettings, now: Callable[[], datetime], metrics: OMSMetrics) -> OMS:

    prepare_database(settings.database_url)  # a bad URL or a down server: one clear line
    lock = AccountLock(settings.database_url, settings.account).acquire()
    exchange: PaperExchange | None = None
    master: InstrumentMaster | None = None
    try:
        if settings.broker == "kite":
            # Kite keeps its own book: after a restart every live order is found there by tag.
            broker: Any = kite_broker(settings, now, metrics)
            if settings.kite_instruments:
                master = InstrumentMaster(broker.fetch_instruments, InstrumentStore(settings.database_url))
                master.load()  # before the first order is checked; from the database if today's is there
                master.start()
        else:
            # The simulated exchange keeps its book in the database (its own tables, this
            # account's rows), so after a restart it still has every order and trade, and
            # the recovering trackers settle theirs from it by tag, as from a real broker.
            book = PaperBookStore.open(settings.database_url, settings.account)
            try:
                exchange = broker = PaperExchange(now, band_percent=settings.paper_band_percent, book=book)
            except BaseException:
                book.close()
                raise
        supervisor = Supervisor.start(
            database_url=settings.database_url,
            broker=broker,
            limits=settings.risk_limits(),
            clock=now,
            account=settings.account,
            on_database_up=lock.ensure_held,
            max_modifications=settings.kite_modifications_per_order,
            instruments=master,
            tracker_threads=settings.tracker_threads,
            reconcile_interval=settings.reconcile_interval,
            reconcile_settle=settings.reconcile_settle,
            reconcile_fill_grace=settings.reconcile_fill_grace,
            managed_exits=settings.managed_exits,
            calendar=settings.market_calendar(),
            metrics=metrics,
        )
        try:
            resumed = supervisor.ask(Boot(), timeout=120)
        except BaseException:
            supervisor.stop(block=True, timeout=60)
            raise
    except BaseException:
        if exchange is not None:
            exchange.release_book()
        if master is not None:
            master.stop()
        lock.release()
        raise
    paper = None if exchange is None else PaperMarket(exchange, supervisor, now, settings.request_timeout)
    oms = OMS(supervisor, settings, paper, lock, clock=now, metrics=metrics)
    if settings.gil_switch_interval:
        _switch_interval.take(settings.gil_switch_interval)
        oms._switching = True
    if master is not None:
        oms._helpers.append(master)
    if settings.market_hours_enforced:
        square_off = MisSquareOff(oms, now, settings.mis_square_off_time, settings.market_calendar())
        oms._helpers.append(square_off)
        square_off.start()
    if exchange is not None and settings.paper_prices == "kite":
        _follow_kite_prices(oms, exchange, settings, now)
    elif settings.broker == "kite" and settings.kite_market_prices:
        _follow_kite_prices(oms, None, settings, now)
        for position in oms.get_positions():  # what is held is marked from the start
            if not position.is_flat:
                oms._prices.follow(position.exchange.value, position.symbol)  # type: ignore[union-attr]
    if isinstance(broker, KiteBroker):
        oms._postback_url = lambda: broker.postback_url
    if settings.broker == "kite" and settings.kite_secrets_file is not None:
        oms._watch_secrets_file()
    oms._alerter = Alerter.start(metrics, settings.alerts, alert_sinks(settings), clock=now, account=settings.account)
    oms._helpers.append(oms._alerter)
    if resumed:
        _await_recovery(oms, resumed)
    _reconcile_at_start(oms)
    return oms


def _follow_kite_prices(
    oms: OMS, exchange: PaperExchange | None, settings: OMSSettings, clock: Callable[[], datetime],
) -> None:
    """Kite's live prices: each price Kite streams (or, while its websocket is off or
    down, answers to ltp()) is told to the OMS (the risk checks' last price, the
    positions' mark). Paper trading on them (``exchange``), it then moves the paper
    exchange, as ``oms.paper.set_price`` does, and orders never go to Kite."""
    assert settings.kite_api_key is not None and settings.kite_access_token is not None
    supervisor = oms.supervisor

    def price(venue: str, symbol: str, last: Decimal) -> None:
        try:
            supervisor.tell(last_price(symbol, last, venue, clock()))
        except pykka.ActorDeadError:
            return  # stopping
        if exchange is not None:
            exchange.set_price(symbol, last, venue)

    prices = KitePrices(
        api_key=settings.kite_api_key.get_secret_value(), access_token=settings.kite_access_token.get_secret_value(),
        on_price=price, root=settings.kite_root, ws_root=settings.kite_ws_root, ticker=settings.kite_ticker,
        interval=settings.paper_prices_interval, timeout=settings.kite_timeout, rate_limits=settings.kite_rate_limits(),
    )
    prices.start(settings.paper_watched)
    if exchange is not None:
        exchange.price_source = prices.follow
    oms._prices = prices
    oms._helpers.append(prices)


def _await_recovery(oms: OMS, resumed: int) -> None:
    """Every order the last run left live is looked up at the broker by its tag and
    settled (with the fills it had meanwhile) before start_oms returns; past the
    ``recovery_timeout`` the OMS starts anyway, and those orders settle as the broker
    answers."""
    reply: pykka.Future = pykka.ThreadingFuture()
    oms.supervisor.tell(AwaitRecovery(reply))
    try:
        statuses = reply.get(timeout=oms.settings.recovery_timeout)
    except pykka.Timeout:
        log.warning("%d orders resumed from the last run are still being looked up at the broker after %s s; "
                    "starting anyway, they settle as the broker answers", resumed, oms.settings.recovery_timeout)
        return
    log.warning("recovered %d orders left live by the last run: %s", resumed,
                ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())))


def _reconcile_at_start(oms: OMS) -> None:
    """Positions compared with the broker's before the first new order; what was
    corrected is logged. A broker that cannot be read now does not keep the OMS from
    starting: the periodic pass tries again."""
    try:
        result = oms.reconcile_positions()
    except Exception as error:
        log.error("reconciliation at start could not run (%s); it runs again every %s s",
                  error, oms.settings.reconcile_interval or "(never: reconcile_interval is 0)")
        return
    if not result["all_clear"]:
        log.warning("at start, reconciliation corrected %d positions and found %d untagged broker orders",
                    len(result["mismatches"]) + len(result["unknown_positions"]), len(result["untagged_orders"]))


def kite_broker(settings: OMSSettings, clock: Callable[[], datetime], metrics: OMSMetrics | None = None) -> KiteBroker:
    """The Kite broker the settings describe (their validation ensured the credentials)."""
    assert settings.kite_api_key is not None and settings.kite_access_token is not None
    return KiteBroker(
        api_key=settings.kite_api_key.get_secret_value(),
        access_token=settings.kite_access_token,
        clock=clock,
        root=settings.kite_root,
        timeout=settings.kite_timeout,
        poll_interval=settings.kite_poll_interval,
        market_protection=settings.kite_market_protection,
        algo_id=settings.kite_algo_id,
        lookup_misses=settings.kite_lookup_misses,
        lookup_pause=settings.kite_lookup_pause,
        rate_limits=settings.kite_rate_limits(),
        api_secret=settings.kite_api_secret,
        postback_port=settings.kite_postback_port,
        postback_path=settings.kite_postback_path,
        ticker=settings.kite_ticker,
        ws_root=settings.kite_ws_root,
        rate_observer=metrics.rate_limited if metrics is not None else None,
    )
