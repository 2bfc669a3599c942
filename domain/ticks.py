"""Tick sizes: the price steps an exchange accepts.

Defaults follow NSE's table in force since 15 Apr 2025 (see shared/ZERODHA.md); an
instrument's own tick size, when known, always wins.
"""
from __future__ import annotations

from decimal import Context, Decimal, localcontext

from domain.enums import Exchange

# (upper bound exclusive, tick) for stocks and stock futures, by price.
EQUITY_TICKS: tuple[tuple[Decimal, Decimal], ...] = (
    (Decimal("250"), Decimal("0.01")),
    (Decimal("1000"), Decimal("0.05")),
    (Decimal("5000"), Decimal("0.10")),
    (Decimal("10000"), Decimal("0.50")),
    (Decimal("20000"), Decimal("1.00")),
)
EQUITY_TICK_ABOVE = Decimal("5.00")
OPTION_TICK = Decimal("0.05")
# Index futures (NIFTY, BANKNIFTY, ...) trade in 0.05 steps whatever their level; the
# stock table would wrongly demand 5.00 above 20,000.
INDEX_FUTURE_TICK = Decimal("0.05")
CHEAP_STOCK_OPTION_TICK = Decimal("0.01")
CHEAP_STOCK_OPTION_BELOW = Decimal("250")
CURRENCY_TICK = Decimal("0.0025")
# MCX contracts differ widely (gold 1.00, natural gas 0.10); without the instrument's
# own tick we accept any paisa.
COMMODITY_TICK = Decimal("0.01")
INDEX_UNDERLYINGS = frozenset(
    {"NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "NIFTYNXT50", "SENSEX", "BANKEX", "SENSEX50"}
)


def is_option(exchange: Exchange, symbol: str) -> bool:
    return exchange in (Exchange.NFO, Exchange.BFO) and symbol.endswith(("CE", "PE"))


def is_future(exchange: Exchange, symbol: str) -> bool:
    return exchange in (Exchange.NFO, Exchange.BFO, Exchange.CDS, Exchange.MCX) and symbol.endswith("FUT")


def _underlying(symbol: str) -> str:
    i = 0
    while i < len(symbol) and not symbol[i].isdigit():
        i += 1
    return symbol[:i]


def default_tick_size(exchange: Exchange, symbol: str, price: Decimal) -> Decimal:
    """The tick for ``price`` of ``symbol`` when the instrument's own is not known."""
    if exchange is Exchange.CDS:
        return CURRENCY_TICK
    if exchange is Exchange.MCX:
        return COMMODITY_TICK
    if is_future(exchange, symbol) and _underlying(symbol) in INDEX_UNDERLYINGS:
        return INDEX_FUTURE_TICK
    if is_option(exchange, symbol):
        if _underlying(symbol) not in INDEX_UNDERLYINGS and price < CHEAP_STOCK_OPTION_BELOW:
            return CHEAP_STOCK_OPTION_TICK
        return OPTION_TICK
    for bound, tick in EQUITY_TICKS:
        if price < bound:
            return tick
    return EQUITY_TICK_ABOVE


# Wide enough that no price a strategy could send overflows the division.
_WIDE = Context(prec=200)


def is_on_tick(price: Decimal, tick: Decimal) -> bool:
    if tick <= 0:
        return False
    with localcontext(_WIDE):
        steps = price / tick
        return steps == steps.to_integral_value()
