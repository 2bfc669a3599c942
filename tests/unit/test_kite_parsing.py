"""Kite's real bodies (shared/kite-mocks, from zerodha/kiteconnect-mocks) read by the
gateway's parsing functions: every file that holds orders, trades, positions, margins,
instruments or postbacks, with exact Decimals and UTC times."""
from __future__ import annotations

import csv
import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from actors.brokers import kite_parsing as parse
from domain.enums import Exchange, Product, Side

MOCKS = Path(__file__).resolve().parents[3] / "shared" / "kite-mocks"
NOW = datetime(2026, 11, 30, 4, 0, tzinfo=timezone.utc)
D = Decimal

ORDER_FILES = ("orders.json", "order_info.json")
TRADE_FILES = ("trades.json", "order_trades.json")
MARGIN_FILES = ("margins.json", "margins_equity.json", "margin_commodity.json")
# What the gateway reads; everything else in the folder is listed with why it is not.
READ = {*ORDER_FILES, *TRADE_FILES, *MARGIN_FILES, "positions.json", "postback.json", "ltp.json",
        "order_response.json", "order_modify.json", "order_cancel.json"}
NOT_READ = {
    # other Kite products the OMS does not trade through
    "alerts_create.json", "alerts_create_ato.json", "alerts_delete.json", "alerts_get.json", "alerts_get_one.json",
    "alerts_history.json", "alerts_modify.json", "auctions_list.json", "autoslice_response.json",
    "gtt_delete_order.json", "gtt_get_order.json", "gtt_get_orders.json", "gtt_modify_order.json", "gtt_place_order.json",
    "mf_holdings.json", "mf_order_cancel.json", "mf_order_response.json", "mf_orders.json", "mf_orders_info.json",
    "mf_sip_cancel.json", "mf_sip_info.json", "mf_sip_modify.json", "mf_sip_place.json", "mf_sips.json",
    "convert_position.json", "holdings.json", "holdings_auth.json", "holdings_compact.json", "holdings_summary.json",
    # margin and charge calculators, market data and history: not built yet
    "basket_margins.json", "order_margins.json", "virtual_contract_note.json", "trigger_range.json",
    "quote.json", "ohlc.json", "historical_minute.json", "historical_oi.json",
    "ticker_full.json", "ticker_ltp.json", "ticker_quote.json",
    # the session (the daily login is not built yet)
    "generate_session.json", "session_logout.json", "profile.json", "full_profile.json",
}


def data(name: str):
    return json.loads((MOCKS / name).read_text())["data"]


def test_every_mock_file_is_either_read_or_set_aside_on_purpose():
    on_disk = {p.name for p in MOCKS.glob("*.json")}
    assert on_disk, f"no Kite mocks at {MOCKS}"
    assert on_disk - READ - NOT_READ == set(), "a new mock file: read it in these tests or say why not"
    assert READ <= on_disk


@pytest.mark.parametrize("name", ORDER_FILES)
def test_every_order_of_the_mocks_becomes_an_update(name):
    bodies = data(name)
    updates = [parse.order_update(body, now=NOW) for body in bodies]
    assert [u.broker_order_id for u in updates] == [b["order_id"] for b in bodies]
    assert [u.status for u in updates] == [b["status"] for b in bodies]
    for update, body in zip(updates, bodies):
        assert update.quantity == body["quantity"] and update.filled_quantity == body["filled_quantity"]
        assert update.at.tzinfo is timezone.utc
        assert update.price is None or isinstance(update.price, Decimal)


def test_order_fields_are_read_exactly():
    orders = {u.broker_order_id: u for u in (parse.order_update(b, now=NOW) for b in data("orders.json"))}
    complete = orders["300000000000000"]
    assert (complete.status, complete.price, complete.average_price) == ("COMPLETE", D("109.4"), D("109.4"))
    # 2021-05-31 15:20:28 in Kolkata is 09:50:28 UTC
    assert complete.at == datetime(2021, 5, 31, 9, 50, 28, tzinfo=timezone.utc)
    cancelled = orders["100000000000000"]
    assert (cancelled.trigger_price, cancelled.average_price) == (None, None)  # Kite writes 0 for "none"
    rejected = orders["220524001859672"]
    assert rejected.status == "REJECTED" and rejected.tag == "icebergord"
    assert len(max(orders, key=len)) == 19  # order ids are opaque strings, up to 19 digits


def test_tags_include_the_tags_list():
    bodies = {b["order_id"]: b for b in data("orders.json")}
    assert parse.order_tags(bodies["9000000000000000"]) == {"connect test order2", "XXXXX"}
    assert parse.order_tags(bodies["100000000000000"]) == frozenset()


def test_the_history_mock_walks_through_the_transient_statuses():
    statuses = [parse.order_update(b, now=NOW).status for b in data("order_info.json")]
    assert statuses[:3] == ["PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING"]
    assert "MODIFIED" in statuses


@pytest.mark.parametrize("name", TRADE_FILES)
def test_every_trade_of_the_mocks_becomes_a_broker_trade(name):
    bodies = data(name)
    trades = [parse.trade(body) for body in bodies]
    assert [t.trade_id for t in trades] == [b["trade_id"] for b in bodies]
    assert all(t.at.tzinfo is timezone.utc and t.quantity > 0 for t in trades)


def test_trade_prices_are_exact_decimals():
    trades = {t.trade_id: t for t in map(parse.trade, data("trades.json"))}
    cds = trades["40000000"]
    assert (cds.exchange, cds.product, cds.side, cds.price) == (Exchange.CDS, Product.MIS, Side.BUY, D("72.755"))
    assert trades["10000000"].price == D("420.65")
    assert trades["10000000"].at == datetime(2021, 5, 31, 3, 46, 39, tzinfo=timezone.utc)


def test_positions_are_read_with_kites_own_products():
    books = parse.positions(data("positions.json"))
    assert set(books) == {"net", "day"}
    assert len(books["net"]) == len(data("positions.json")["net"])
    lead = books["net"][0]
    assert (lead.symbol, lead.product, lead.quantity, lead.average_price, lead.multiplier) == (
        "LEADMINI17DECFUT", "NRML", 1, D("161.05"), D("1000"))
    assert "CO" in {p.product for p in books["net"]}


@pytest.mark.parametrize("name", MARGIN_FILES)
def test_margins_of_every_mock(name):
    segments = parse.margins(data(name))
    assert segments and all(isinstance(s.net, Decimal) for s in segments.values())


def test_margins_keep_kites_digits():
    equity = parse.margins(data("margins.json"))["equity"]
    assert equity.net == D("99725.05000000002")  # what Kite sent, not a float's binary tail
    assert (equity.cash, equity.debits, equity.span) == (D("245431.6"), D("145706.55"), D("101989"))


def test_the_postback_mock_is_an_update_and_its_checksum_is_checked():
    body = data_free("postback.json")
    update = parse.postback(body, now=NOW)
    assert (update.broker_order_id, update.status, update.filled_quantity, update.average_price) == (
        "220303000308932", "COMPLETE", 1, D("470"))
    signed = dict(body, checksum=parse.postback_checksum(body["order_id"], body["order_timestamp"], "s3cret"))
    assert parse.postback(signed, now=NOW, api_secret="s3cret").status == "COMPLETE"
    with pytest.raises(parse.KiteParseError, match="checksum"):
        parse.postback(signed, now=NOW, api_secret="another")


def data_free(name: str):
    return json.loads((MOCKS / name).read_text())  # a postback is the bare order, no envelope


def test_ltp_and_write_responses():
    assert parse.last_prices(data("ltp.json")) == {"NSE:INFY": D("1074.35")}
    for name in ("order_response.json", "order_modify.json", "order_cancel.json"):
        assert data(name) == {"order_id": "151220000000000"}


def test_instrument_dumps_if_the_mocks_have_them():
    # SOURCE.md: the *.csv dumps were not copied; read any that appear. The emulator's
    # dump is read through the client in test_kite_broker.py.
    for path in sorted(MOCKS.glob("instruments*.csv")):
        with path.open() as handle:
            instruments = [parse.instrument(row) for row in csv.DictReader(handle)]
        assert instruments and all(i.tick_size >= 0 for i in instruments), path.name


def test_an_instrument_row_as_the_client_returns_it():
    row = {"instrument_token": 408065, "exchange_token": "1594", "tradingsymbol": "INFY", "name": "INFOSYS",
           "last_price": 0.0, "expiry": "", "strike": 0.0, "tick_size": 0.05, "lot_size": 1,
           "instrument_type": "EQ", "segment": "NSE", "exchange": "NSE"}
    parsed = parse.instrument(row)
    assert (parsed.tick_size, parsed.lot_size, parsed.expiry) == (D("0.05"), 1, None)


def test_unknown_statuses_and_broken_bodies_are_refused_not_guessed():
    body = dict(data("orders.json")[1])
    with pytest.raises(parse.KiteParseError, match="unknown Kite order status"):
        parse.order_update(dict(body, status="TELEPORTED"), now=NOW)
    with pytest.raises(parse.KiteParseError, match="filled_quantity"):
        parse.order_update(dict(body, filled_quantity=1.5), now=NOW)
    with pytest.raises(parse.KiteParseError, match="order_id"):
        parse.order_update({k: v for k, v in body.items() if k != "order_id"}, now=NOW)


@pytest.mark.parametrize(
    ("raw", "exact"),
    [(0.1, D("0.1")), (2450.5, D("2450.5")), (99725.05000000002, D("99725.05000000002")), (72, D("72")),
     ("1498.05", D("1498.05")), (None, None)],
)
def test_kite_money_reads_a_float_by_its_shortest_repr(raw, exact):
    assert parse.kite_money(raw) == exact
    if exact is not None:
        assert str(parse.kite_money(raw)) == str(exact)


def test_kite_money_refuses_what_is_not_an_amount():
    for bad in (True, "abc", float("nan"), float("inf")):
        with pytest.raises(parse.KiteParseError):
            parse.kite_money(bad)
