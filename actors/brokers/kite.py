"""KiteBroker: Zerodha Kite behind the ``domain.broker.Broker`` port, on the official
``kiteconnect`` client.

Calls (place, modify, cancel, look-ups) run on the broker gateway's thread through one
client; order updates and trades come from an ``OrderPoller`` on its own thread through
another (a requests session is not shared between threads). Order updates Kite pushes,
by its websocket (``TickerClient``, when ``ticker`` is on) and by postbacks, go through
``PushedUpdates``, which reads the order's trades when its fills grew (a third client),
so they arrive sooner; polling goes on beside them and is enough on its own. Both go through one set of
rate gates (``kite_rates``), so the account never passes Kite's limits whichever thread
calls; a wait there holds up only the thread making the call. Failures are mapped to the
port's outcomes in ``kite_calls``; Kite's bodies are read in ``kite_parsing``.

Every order is placed with its variety ("regular", or "amo" for an after-market order,
which Kite holds as AMO REQ RECEIVED until the exchange opens) and our tag, so it can be found again by
tag (Kite does not de-duplicate by tag: the OMS never re-sends, it looks up). MARKET and
SL-M orders carry ``market_protection`` (-1, automatic, unless configured): Kite refuses
them without it since 1 April 2026.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from kiteconnect import KiteConnect
from pydantic import SecretStr

from actors.brokers import kite_parsing as parse
from actors.brokers.kite_calls import KiteCalls, TokenState
from actors.brokers.kite_poller import OrderPoller
from actors.brokers.kite_postbacks import PostbackListener
from actors.brokers.kite_pushes import PushedUpdates
from actors.brokers.kite_rates import KiteGates, KiteRateLimits
from actors.brokers.kite_ticker import DEFAULT_WS_ROOT, TickerClient
from domain.broker import BrokerEventSink, BrokerOrderRequest, BrokerOrderUpdate, BrokerPosition, BrokerTrade
from domain.enums import Exchange, OrderType, Product, Side, Validity, Variety
from domain.instruments import Instrument

log = logging.getLogger("oms.kite")

DEFAULT_ROOT = "https://api.kite.trade"
_PRICED = (OrderType.LIMIT, OrderType.SL)
_STOPS = (OrderType.SL, OrderType.SL_M)
_PROTECTED = (OrderType.MARKET, OrderType.SL_M)
# Look-ups by tag come in bursts (every live order at a restart), and Kite answers
# 10 reads a second: one read of its order book, and one of the day's trades, serves
# every look-up asked within this many seconds, instead of a read (and a trades read)
# for each order. Shorter than any pause between look-ups of one order, so an order
# looked up again after a miss is always looked for in a fresh read.
BOOK_SHARED_SECONDS = 0.5


def _secret(value: str | SecretStr) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _amount(value: Decimal) -> str:
    # Form fields are text; Decimal's own text keeps the price exact ("2450.50").
    return format(value, "f")


class KiteBroker:
    """Owns the Kite clients (calls, polling, pushed updates' trades), the rate gates they
    share, the access token's state, the poller, the websocket client and the postback
    listener (if configured), the pushed updates' deliverer, and the tags of the orders
    it has read (Kite's trades carry none).

    ``lookup_misses`` and ``lookup_pause`` tell the broker gateway how patient a look-up
    by tag must be before "not found" is believed: Kite's order book can lag its order
    entry, so one miss proves nothing (``lookups_are_authoritative`` is False).
    """

    lookups_are_authoritative = False
    delivery_moves_to_holdings = True

    def __init__(
        self,
        *,
        api_key: str,
        access_token: str | SecretStr,
        clock: Callable[[], datetime],
        root: str = DEFAULT_ROOT,
        timeout: float = 7.0,
        poll_interval: float = 1.0,
        market_protection: Decimal | int = -1,
        algo_id: str | None = None,
        lookup_misses: int = 5,
        lookup_pause: float = 2.0,
        rate_limits: KiteRateLimits | None = None,
        api_secret: str | SecretStr | None = None,
        postback_port: int | None = None,
        postback_path: str = "/kite/postback",
        ticker: bool = False,
        ws_root: str = DEFAULT_WS_ROOT,
        client_factory: Callable[..., Any] = KiteConnect,
        rate_observer: Callable[[str, float, bool], object] | None = None,
    ) -> None:
        if not api_key or not _secret(access_token):
            raise ValueError("Kite needs an api_key and an access_token")
        self._api_key = api_key
        self._root = root
        self._timeout = timeout
        self._clock = clock
        self._poll_interval = poll_interval
        self._market_protection = market_protection
        self._algo_id = algo_id
        self.lookup_misses = lookup_misses
        self.lookup_pause = lookup_pause
        self._factory = client_factory
        self._token = TokenState()
        # rate_observer hears (family, seconds waited, refused) of each request held back.
        self._gates = KiteGates.from_limits(rate_limits or KiteRateLimits(), observer=rate_observer)
        self._client = self._new_client(access_token)
        self._calls = KiteCalls(self._client, self._token, gates=self._gates)
        self._poller: OrderPoller | None = None
        self._poll_client: Any = None
        self._tags: dict[str, str | None] = {}  # broker order id -> tag, from the order book
        self._book_shared_for = min(BOOK_SHARED_SECONDS, lookup_pause / 2)
        self._order_book: tuple[float, list[dict[str, Any]]] | None = None  # (read at, bodies)
        self._trade_book: tuple[float, list[dict[str, Any]]] | None = None
        if postback_port is not None and not api_secret:
            raise ValueError("Kite's postbacks can only be checked with the api_secret")
        self._api_secret = api_secret
        self._postback_port = postback_port
        self._postback_path = postback_path
        self._postbacks: PostbackListener | None = None
        self._ticker_on = ticker
        self._ws_root = ws_root
        self._ticker: TickerClient | None = None
        self._pushed: PushedUpdates | None = None
        self._push_client: Any = None

    def __repr__(self) -> str:  # never the token
        return f"KiteBroker(root={self._root!r})"

    def _new_client(self, access_token: str | SecretStr) -> Any:
        return self._factory(self._api_key, _secret(access_token), root=self._root, timeout=self._timeout)

    # ------------------------------------------------------------------ connection

    def connect(self, sink: BrokerEventSink) -> None:
        """Start polling Kite's order and trade books (and, when configured, taking its
        websocket's order updates and its postbacks); changes go to ``sink``."""
        self.close()
        self._count_todays_orders()
        self._poll_client = self._new_client(self._client.access_token)
        trade_ids: set[str] = set()  # delivered by the poller or with a pushed update
        if self._ticker_on or self._postback_port is not None:
            self._push_client = self._new_client(self._client.access_token)
            pushed_reads = KiteCalls(self._push_client, self._token, gates=self._gates)
            self._pushed = PushedUpdates(sink, pushed_reads.order_trades, trade_ids=trade_ids)
            self._pushed.start()
        stopping = threading.Event()
        # The poller's reads back off on its stop event, so close() never waits them out.
        reads = KiteCalls(self._poll_client, self._token, gates=self._gates, sleep=stopping.wait)
        self._poller = OrderPoller(
            reads.orders,
            reads.trades,
            sink,
            interval=self._poll_interval,
            clock=self._clock,
            paused=lambda: self._token.refused is not None,
            stopping=stopping,
            trade_ids=trade_ids,
        )
        self._poller.start()
        if self._postback_port is not None:
            assert self._api_secret is not None and self._pushed is not None
            self._postbacks = PostbackListener(
                self._pushed, _secret(self._api_secret), self._clock, port=self._postback_port, path=self._postback_path,
            )
            self._postbacks.start()
        if self._ticker_on:
            # Every (re)connection is followed by a poll at once: whatever the websocket
            # missed while it was down is read then, not a poll interval later.
            self._ticker = TickerClient(
                self._ws_root, self._api_key, self._client.access_token,
                on_order=self._pushed_order, on_open=self._poller.poll_soon,
            )
            self._ticker.start()

    def _pushed_order(self, body: Any) -> None:
        """An order update from the websocket (the postback's shape, unsigned: the
        websocket itself is authenticated)."""
        try:
            update = parse.order_update(body, now=self._clock())
        except parse.KiteParseError as error:
            log.warning("an order update from Kite's websocket could not be read: %s", error)
            return
        if self._pushed is not None:
            self._pushed.on_order_update(update)

    def _count_todays_orders(self) -> None:
        """Kite's 5,000 order requests a day count what the account sent before this
        start too: the orders Kite lists today start the day's count (the read also
        serves the look-ups of the orders recovering now). Unread, the count starts at
        nought, and says so."""
        try:
            self._order_book = self._shared(None, self._calls.orders)
        except Exception as error:  # noqa: BLE001 - a start is not refused for it
            log.warning("could not read Kite's order book at start (%s): today's order count starts at 0", error)
            return
        placed = len(self._order_book[1])
        self._gates.orders.count_today(placed)
        if placed:
            log.info("Kite lists %d orders placed today: the day's order requests are counted from there", placed)

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        if self._postbacks is not None:
            self._postbacks.stop()
            self._postbacks = None
        if self._pushed is not None:
            self._pushed.stop()
            self._pushed = None
        if self._poller is not None:
            self._poller.stop()
            self._poller = None

    @property
    def ticker(self) -> TickerClient | None:
        """The websocket's client while connected with ``ticker`` on; else None."""
        return self._ticker

    @property
    def postback_url(self) -> str | None:
        """Where Kite's postbacks are taken (on loopback), while connected; else None."""
        return self._postbacks.url if self._postbacks is not None else None

    def set_access_token(self, access_token: str | SecretStr) -> None:
        """Take the day's fresh token (after Kite's login); orders may be sent again."""
        for client in (self._client, self._poll_client, self._push_client):
            if client is not None:
                client.set_access_token(_secret(access_token))
        self._token.renew()
        if self._ticker is not None:
            self._ticker.set_access_token(_secret(access_token))

    @property
    def refusal(self) -> str | None:
        """Why Kite will take nothing now (its token was refused), or None."""
        return self._token.refused

    # ------------------------------------------------------------------ the Broker port

    def place(self, request: BrokerOrderRequest) -> str:
        order_type = OrderType(request.order_type)
        params: dict[str, Any] = {
            "variety": Variety(request.variety).value,
            "exchange": Exchange(request.exchange).value,
            "tradingsymbol": request.symbol,
            "transaction_type": Side(request.side).value,
            "quantity": request.quantity,
            "product": Product(request.product).value,
            "order_type": order_type.value,
            "validity": Validity(request.validity).value,
            "tag": request.tag,
        }
        if order_type in _PRICED and request.price is not None:
            params["price"] = _amount(request.price)
        if order_type in _STOPS and request.trigger_price is not None:
            params["trigger_price"] = _amount(request.trigger_price)
        if order_type in _PROTECTED:
            params["market_protection"] = str(self._market_protection)
        if self._algo_id:
            params["algo_id"] = self._algo_id
        self._books_stale()  # whatever happens to the call, a look-up after it reads afresh
        order_id = self._calls.place(params)
        self._tags[order_id] = request.tag
        return order_id

    def modify(
        self,
        broker_order_id: str,
        quantity: int | None = None,
        price: Decimal | None = None,
        trigger_price: Decimal | None = None,
        variety: Variety = Variety.REGULAR,
    ) -> None:
        params: dict[str, Any] = {"variety": Variety(variety).value, "order_id": broker_order_id}
        if quantity is not None:
            params["quantity"] = quantity
        if price is not None:
            params["price"] = _amount(price)
        if trigger_price is not None:
            params["trigger_price"] = _amount(trigger_price)
        self._books_stale()
        self._calls.modify(params)

    def cancel(self, broker_order_id: str, variety: Variety = Variety.REGULAR) -> None:
        self._books_stale()
        self._calls.cancel(Variety(variety).value, broker_order_id)

    def _books_stale(self) -> None:
        """A change we asked for: the shared reads no longer show Kite as it will be."""
        self._order_book = self._trade_book = None

    def find_by_tag(self, tag: str) -> BrokerOrderUpdate | None:
        """The order Kite lists with ``tag`` today, or None (which may only mean "not
        listed yet"). Two orders with one tag would mean something sent twice: it is
        logged as an error and the first placed is answered."""
        self._order_book = self._shared(self._order_book, self._calls.orders)
        matches = [body for body in self._order_book[1] if tag in parse.order_tags(body)]
        if not matches:
            return None
        matches.sort(key=lambda body: (str(body.get("order_timestamp") or ""), str(body.get("order_id"))))
        if len(matches) > 1:
            log.error("Kite holds %d orders tagged %s: %s", len(matches), tag, [b.get("order_id") for b in matches])
        found = parse.order_update(matches[0], now=self._clock())
        self._tags[found.broker_order_id] = tag
        return found

    def orders(self) -> list[BrokerOrderUpdate]:
        updates = parse.readable_orders(self._calls.orders(), now=self._clock())
        self._tags.update((u.broker_order_id, u.tag) for u in updates)
        return updates

    def trades(self, broker_order_id: str | None = None) -> Sequence[BrokerTrade]:
        if broker_order_id is None:
            bodies = self._calls.trades()
        else:
            # The order's trades from the day's (one read for a burst of look-ups).
            self._trade_book = self._shared(self._trade_book, self._calls.trades)
            bodies = [body for body in self._trade_book[1] if str(body.get("order_id")) == broker_order_id]
        return [parse.trade(body, tag=self._tags.get(str(body.get("order_id")))) for body in bodies]

    def _shared(
        self, book: tuple[float, list[dict[str, Any]]] | None, read: Callable[[], list[dict[str, Any]]]
    ) -> tuple[float, list[dict[str, Any]]]:
        """``book`` if it was read within the sharing window, else a fresh read."""
        now = time.monotonic()  # pacing reads, not the trading clock
        if book is not None and now - book[0] < self._book_shared_for:
            return book
        return now, read()

    # ------------------------------------------------------------------ account reads (not in the port)

    def positions(self) -> list[BrokerPosition]:
        """The net positions Kite reports, in the products the OMS trades (Kite also
        reports CO, BO and MTF ones, which the OMS never places: left out, with a note
        in the log). Flat ones are left out. CNC bought on an earlier day has moved to
        the holdings, so it is not here (``delivery_moves_to_holdings``)."""
        held = []
        for row in self.account_positions()["net"]:
            if row.quantity == 0:
                continue
            try:
                key = (Exchange(row.exchange), row.symbol, Product(row.product))
            except ValueError:
                log.info("Kite position %s:%s in %s is outside the OMS's products and exchanges; not reconciled",
                         row.exchange, row.symbol, row.product)
                continue
            held.append(BrokerPosition(*key, quantity=row.quantity, average_price=row.average_price))
        return held

    def account_positions(self) -> dict[str, tuple[parse.KitePosition, ...]]:
        """positions() as Kite gives it: {"net": (...), "day": (...)}."""
        return parse.positions(self._calls.positions())

    def margins(self, segment: str | None = None) -> dict[str, parse.SegmentMargins]:
        return parse.margins(self._calls.margins(segment))

    def last_prices(self, *instruments: str) -> dict[str, Decimal]:
        return parse.last_prices(self._calls.ltp(*instruments))

    def instruments(self, exchange: str | None = None) -> list[parse.KiteInstrument]:
        return [parse.instrument(row) for row in self._calls.instruments(exchange)]

    def fetch_instruments(self) -> list[Instrument]:
        """The whole instrument master, on a client of its own (it is fetched from the
        instrument master's thread while the gateway's client is in use), through the
        same rate gates and token state. Rows that cannot be read are left out."""
        client = self._new_client(self._client.access_token)
        rows, unreadable = [], 0
        for row in KiteCalls(client, self._token, gates=self._gates).instruments():
            try:
                i = parse.instrument(row)
            except parse.KiteParseError:
                unreadable += 1
                continue
            rows.append(Instrument(
                exchange=i.exchange, symbol=i.symbol, tick_size=i.tick_size, lot_size=i.lot_size,
                instrument_type=i.instrument_type, segment=i.segment, name=i.name, token=i.instrument_token,
                expiry=i.expiry, strike=i.strike,
            ))
        if unreadable:
            log.warning("left out %d rows of Kite's instrument master that could not be read", unreadable)
        return rows
