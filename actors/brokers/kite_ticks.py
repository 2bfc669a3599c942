"""Kite's ticker wire format read into values: binary tick frames and text messages.

Pure functions, no I/O. The format (as kiteconnect 5.2.2's ``KiteTicker`` reads it):

- A binary frame holds a big-endian unsigned 16-bit count of packets, then each packet
  as a 16-bit length and that many bytes. A frame of one byte is a heartbeat.
- Every packet starts with the instrument token (unsigned 32-bit); its low byte is the
  segment. Prices are whole units of the segment's smallest step: paise (divide by 100)
  except currency (CDS, by 10,000,000) and BCD and NCO (by 10,000). Indices (segment 9)
  are not tradable.
- 8 bytes: ltp mode (token, last price). 28 / 32 bytes: an index in quote / full mode
  (last price, high, low, open, close, change; full adds the exchange time). 44 / 184
  bytes: quote / full mode (last price, last quantity, average price, volume, buy and
  sell quantities, open, high, low, close; full adds the last trade time, open interest
  with its day's high and low, the exchange time, and five levels of depth a side, 12
  bytes each: quantity, price, orders, 2 bytes of padding).
- Text frames are JSON: ``{"type": "order", "data": {...}}`` (an order update, the
  postback's shape), ``{"type": "error", "data": "..."}``, ``{"type": "message", ...}``.

Prices come out as exact Decimals (integer paise over the divisor), never floats.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

MODE_LTP, MODE_QUOTE, MODE_FULL = "ltp", "quote", "full"
MODES = (MODE_LTP, MODE_QUOTE, MODE_FULL)

# The segment in an instrument token's low byte (kiteconnect's EXCHANGE_MAP).
SEGMENTS = {"NSE": 1, "NFO": 2, "CDS": 3, "BSE": 4, "BFO": 5, "BCD": 6, "MCX": 7, "MCXSX": 8, "INDICES": 9, "NCO": 12}
_INDICES = SEGMENTS["INDICES"]
_DIVISORS = {SEGMENTS["CDS"]: Decimal(10_000_000), SEGMENTS["BCD"]: Decimal(10_000), SEGMENTS["NCO"]: Decimal(10_000)}
_PAISE = Decimal(100)


class TickerParseError(ValueError):
    """A ticker frame that does not follow Kite's format."""


@dataclass(frozen=True, slots=True)
class DepthLevel:
    price: Decimal
    quantity: int
    orders: int


@dataclass(frozen=True, slots=True)
class Tick:
    """One instrument's tick. Fields a mode does not carry are None (depth: empty)."""

    instrument_token: int
    mode: str
    tradable: bool
    last_price: Decimal
    last_quantity: int | None = None
    average_price: Decimal | None = None
    volume: int | None = None
    buy_quantity: int | None = None
    sell_quantity: int | None = None
    open: Decimal | None = None
    high: Decimal | None = None
    low: Decimal | None = None
    close: Decimal | None = None
    last_trade_time: datetime | None = None
    oi: int | None = None
    oi_day_high: int | None = None
    oi_day_low: int | None = None
    exchange_time: datetime | None = None
    buy_depth: tuple[DepthLevel, ...] = ()
    sell_depth: tuple[DepthLevel, ...] = ()


def price_divisor(instrument_token: int) -> Decimal:
    """What the token's segment's prices are divided by to make rupees."""
    return _DIVISORS.get(instrument_token & 0xFF, _PAISE)


def _u32(packet: bytes, at: int) -> int:
    return int(struct.unpack_from(">I", packet, at)[0])


def _time(seconds: int) -> datetime | None:
    return datetime.fromtimestamp(seconds, timezone.utc) if seconds else None


def split_packets(frame: bytes) -> list[bytes]:
    """The packets of a binary frame; none for a heartbeat."""
    if len(frame) < 2:
        return []
    (count,) = struct.unpack_from(">H", frame, 0)
    packets: list[bytes] = []
    at = 2
    for _ in range(count):
        if at + 2 > len(frame):
            raise TickerParseError(f"frame of {len(frame)} bytes ends before packet {len(packets) + 1} of {count}")
        (length,) = struct.unpack_from(">H", frame, at)
        at += 2
        if at + length > len(frame):
            raise TickerParseError(f"packet {len(packets) + 1} of {count} claims {length} bytes; the frame has {len(frame) - at}")
        packets.append(frame[at:at + length])
        at += length
    return packets


def parse_packet(packet: bytes) -> Tick:
    """One packet (its length tells its mode)."""
    size = len(packet)
    if size not in (8, 28, 32, 44, 184):
        raise TickerParseError(f"a tick packet is 8, 28, 32, 44 or 184 bytes, not {size}")
    token = _u32(packet, 0)
    divisor = price_divisor(token)

    def money(at: int) -> Decimal:
        return Decimal(_u32(packet, at)) / divisor

    tradable = token & 0xFF != _INDICES
    if size == 8:
        return Tick(token, MODE_LTP, tradable, money(4))
    if size in (28, 32):
        return Tick(
            token, MODE_QUOTE if size == 28 else MODE_FULL, tradable, money(4),
            high=money(8), low=money(12), open=money(16), close=money(20),
            exchange_time=_time(_u32(packet, 28)) if size == 32 else None,
        )
    quote = dict(
        last_quantity=_u32(packet, 8), average_price=money(12), volume=_u32(packet, 16),
        buy_quantity=_u32(packet, 20), sell_quantity=_u32(packet, 24),
        open=money(28), high=money(32), low=money(36), close=money(40),
    )
    if size == 44:
        return Tick(token, MODE_QUOTE, tradable, money(4), **quote)  # type: ignore[arg-type]
    levels = tuple(
        DepthLevel(price=money(at + 4), quantity=_u32(packet, at), orders=int(struct.unpack_from(">H", packet, at + 8)[0]))
        for at in range(64, 184, 12)
    )
    return Tick(
        token, MODE_FULL, tradable, money(4), **quote,  # type: ignore[arg-type]
        last_trade_time=_time(_u32(packet, 44)), oi=_u32(packet, 48), oi_day_high=_u32(packet, 52),
        oi_day_low=_u32(packet, 56), exchange_time=_time(_u32(packet, 60)),
        buy_depth=levels[:5], sell_depth=levels[5:],
    )


def parse_ticks(frame: bytes) -> list[Tick]:
    """Every tick of a binary frame (none for a heartbeat)."""
    return [parse_packet(packet) for packet in split_packets(frame)]


@dataclass(frozen=True, slots=True)
class TickerMessage:
    """A text frame: ``kind`` is Kite's ``type`` ("order", "error", "message", ...)."""

    kind: str
    data: Any


def parse_text(text: str) -> TickerMessage:
    try:
        body = json.loads(text)
    except ValueError as error:
        raise TickerParseError(f"a text frame that is not JSON ({error})") from None
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise TickerParseError("a text frame without a type")
    return TickerMessage(body["type"], body.get("data"))


def subscribe_message(tokens: list[int]) -> str:
    return json.dumps({"a": "subscribe", "v": tokens})


def unsubscribe_message(tokens: list[int]) -> str:
    return json.dumps({"a": "unsubscribe", "v": tokens})


def mode_message(mode: str, tokens: list[int]) -> str:
    if mode not in MODES:
        raise ValueError(f"mode: one of {MODES}, got {mode!r}")
    return json.dumps({"a": "mode", "v": [mode, tokens]})
