"""Kite's binary tick frames, packed by hand as Kite packs them, read back exactly."""
from __future__ import annotations

import struct
from datetime import datetime, timezone
from decimal import Decimal as D

import pytest

from actors.brokers.kite_ticks import (
    MODE_FULL,
    MODE_LTP,
    MODE_QUOTE,
    TickerParseError,
    mode_message,
    parse_text,
    parse_ticks,
    subscribe_message,
)

INFY = 408065  # NSE (segment 1): paise
NIFTY = 256265  # indices (segment 9): not tradable
USDINR = (1234 << 8) | 3  # CDS: prices in 1/10,000,000 of a rupee
WHEN = 1625462187  # 2021-07-05 05:16:27 UTC


def frame(*packets: bytes) -> bytes:
    return struct.pack(">H", len(packets)) + b"".join(struct.pack(">H", len(p)) + p for p in packets)


def ltp_packet(token: int, price: int) -> bytes:
    return struct.pack(">II", token, price)


def quote_packet(token: int) -> bytes:
    # last, last qty, average, volume, buy qty, sell qty, open, high, low, close
    return struct.pack(">11I", token, 157315, 1, 157033, 1175986, 256511, 360503, 156915, 157500, 156105, 156780)


def full_packet(token: int) -> bytes:
    head = quote_packet(token) + struct.pack(">5I", WHEN, 0, 0, 0, WHEN)
    buy = [(5, 157340, 1), (140, 157300, 2), (2, 157295, 1), (219, 157290, 7), (50, 157285, 1)]
    sell = [(172, 157370, 3), (44, 157375, 3), (302, 157385, 3), (141, 157390, 2), (724, 157395, 5)]
    depth = b"".join(struct.pack(">IIHxx", q, p, o) for q, p, o in buy + sell)
    return head + depth


def test_an_ltp_packet_is_the_token_and_the_price_in_paise():
    (tick,) = parse_ticks(frame(ltp_packet(INFY, 157315)))
    assert (tick.instrument_token, tick.mode, tick.tradable, tick.last_price) == (INFY, MODE_LTP, True, D("1573.15"))
    assert tick.volume is None and tick.buy_depth == ()


def test_a_frame_carries_several_packets_of_mixed_modes():
    ticks = parse_ticks(frame(ltp_packet(INFY, 100), quote_packet(INFY), ltp_packet(779521, 47000)))
    assert [(t.mode, t.last_price) for t in ticks] == [(MODE_LTP, D("1.00")), (MODE_QUOTE, D("1573.15")), (MODE_LTP, D("470.00"))]


def test_a_quote_packet_has_the_days_numbers():
    (tick,) = parse_ticks(frame(quote_packet(INFY)))
    # The same numbers as shared/kite-mocks/ticker_quote.json.
    assert tick.mode == MODE_QUOTE and tick.last_price == D("1573.15") and tick.average_price == D("1570.33")
    assert (tick.last_quantity, tick.volume, tick.buy_quantity, tick.sell_quantity) == (1, 1175986, 256511, 360503)
    assert (tick.open, tick.high, tick.low, tick.close) == (D("1569.15"), D("1575"), D("1561.05"), D("1567.8"))


def test_a_full_packet_adds_times_open_interest_and_five_levels_of_depth():
    (tick,) = parse_ticks(frame(full_packet(INFY)))
    at = datetime(2021, 7, 5, 5, 16, 27, tzinfo=timezone.utc)
    assert tick.mode == MODE_FULL and tick.last_trade_time == at and tick.exchange_time == at and tick.oi == 0
    assert [(level.price, level.quantity, level.orders) for level in tick.buy_depth][0] == (D("1573.4"), 5, 1)
    assert [level.price for level in tick.sell_depth] == [D("1573.7"), D("1573.75"), D("1573.85"), D("1573.9"), D("1573.95")]
    assert len(tick.buy_depth) == len(tick.sell_depth) == 5


def test_index_packets_are_not_tradable_and_carry_ohlc():
    quote = struct.pack(">7I", NIFTY, 1578020, 1580000, 1570000, 1571000, 1575000, 0)
    full = quote + struct.pack(">I", WHEN)
    first, second = parse_ticks(frame(quote, full))
    assert (first.mode, first.tradable, first.last_price, first.high, first.low) == (
        MODE_QUOTE, False, D("15780.20"), D("15800"), D("15700"))
    assert (first.open, first.close, first.exchange_time) == (D("15710"), D("15750"), None)
    assert second.mode == MODE_FULL and second.exchange_time == datetime(2021, 7, 5, 5, 16, 27, tzinfo=timezone.utc)


def test_currency_prices_are_in_ten_millionths():
    (tick,) = parse_ticks(frame(ltp_packet(USDINR, 834_512_500)))
    assert tick.last_price == D("83.45125")


def test_a_heartbeat_is_no_tick():
    assert parse_ticks(b"\x00") == [] and parse_ticks(b"") == []


@pytest.mark.parametrize("bad", [
    frame(b"\x00" * 12),  # no mode is 12 bytes
    struct.pack(">HH", 2, 8) + ltp_packet(INFY, 1),  # says two packets, holds one
    struct.pack(">HH", 1, 44) + ltp_packet(INFY, 1),  # a packet longer than the frame
])
def test_a_frame_that_breaks_the_format_is_refused(bad):
    with pytest.raises(TickerParseError):
        parse_ticks(bad)


def test_text_frames_and_the_requests_we_send():
    message = parse_text('{"type": "order", "data": {"order_id": "1", "status": "OPEN"}}')
    assert (message.kind, message.data["status"]) == ("order", "OPEN")
    assert parse_text('{"type": "error", "data": "bad"}').data == "bad"
    with pytest.raises(TickerParseError):
        parse_text("not json")
    assert subscribe_message([INFY]) == '{"a": "subscribe", "v": [408065]}'
    assert mode_message("ltp", [INFY, NIFTY]) == '{"a": "mode", "v": ["ltp", [408065, 256265]]}'
    with pytest.raises(ValueError):
        mode_message("everything", [INFY])
